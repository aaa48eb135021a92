// A minimal container root file system from the static /bin/busybox, and a
// minimal OCI config (like `crun spec`, without a terminal by default) for
// runtime tests.
import fs from 'node:fs';
import path from 'node:path';

export const BUSYBOX = '/bin/busybox';

export const APPLETS = [
  'sh', 'true', 'false', 'echo', 'cat', 'sleep', 'ls', 'ps', 'head', 'tail', 'dd', 'id', 'env', 'stty', 'tty', 'kill', 'grep',
] as const;

/** Populate `dir` (created if needed) with bin/busybox + applet links, etc/passwd+group and empty mount points. */
export function makeBusyboxRootfs(dir: string): string {
  fs.mkdirSync(path.join(dir, 'bin'), { recursive: true });
  fs.copyFileSync(BUSYBOX, path.join(dir, 'bin/busybox'));
  fs.chmodSync(path.join(dir, 'bin/busybox'), 0o755);
  for (const a of APPLETS) {
    const link = path.join(dir, 'bin', a);
    if (!fs.existsSync(link)) fs.symlinkSync('busybox', link);
  }
  for (const d of ['dev', 'proc', 'sys', 'tmp', 'etc', 'root']) fs.mkdirSync(path.join(dir, d), { recursive: true });
  fs.chmodSync(path.join(dir, 'tmp'), 0o1777);
  fs.writeFileSync(path.join(dir, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n');
  fs.writeFileSync(path.join(dir, 'etc/group'), 'root:x:0:\ntty:x:5:\nnogroup:x:65534:\n');
  return dir;
}

export type NamespaceType = 'pid' | 'network' | 'ipc' | 'uts' | 'mount' | 'user' | 'cgroup';

export interface MinimalConfigOptions {
  args: string[];
  terminal?: boolean;
  cgroupsPath?: string;
  /** linux.resources (default: deny all devices, as `crun spec`). */
  resources?: Record<string, unknown>;
  /** Namespaces to create (default pid, network, ipc, uts, mount). */
  namespaces?: NamespaceType[];
  env?: string[];
  cwd?: string;
  /** root.path (default "rootfs", relative to the bundle). */
  rootPath?: string;
  readonlyRoot?: boolean;
  hostname?: string;
}

/** A minimal OCI runtime spec (shape of `crun spec` output; rootless false). */
export function minimalOciConfig(o: MinimalConfigOptions): Record<string, unknown> {
  const caps = ['CAP_AUDIT_WRITE', 'CAP_KILL', 'CAP_NET_BIND_SERVICE'];
  const linux: Record<string, unknown> = {
    resources: o.resources ?? { devices: [{ allow: false, access: 'rwm' }] },
    namespaces: (o.namespaces ?? ['pid', 'network', 'ipc', 'uts', 'mount']).map((type) => ({ type })),
    maskedPaths: [
      '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
      '/proc/timer_stats', '/proc/sched_debug', '/sys/firmware', '/proc/scsi',
    ],
    readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
  };
  if (o.cgroupsPath !== undefined) linux.cgroupsPath = o.cgroupsPath;
  return {
    ociVersion: '1.0.2',
    process: {
      terminal: o.terminal ?? false,
      user: { uid: 0, gid: 0 },
      args: o.args,
      env: o.env ?? ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'TERM=xterm'],
      cwd: o.cwd ?? '/',
      capabilities: { bounding: caps, effective: caps, permitted: caps, ambient: caps, inheritable: [] },
      rlimits: [{ type: 'RLIMIT_NOFILE', hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: o.rootPath ?? 'rootfs', readonly: o.readonlyRoot ?? true },
    hostname: o.hostname ?? 'container',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc' },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      {
        destination: '/dev/pts',
        type: 'devpts',
        source: 'devpts',
        options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
      },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    ],
    linux,
  };
}

/** A process.json for `exec` (same defaults as minimalOciConfig's process). */
export function minimalProcess(args: string[], terminal = false): Record<string, unknown> {
  return (minimalOciConfig({ args, terminal }).process as Record<string, unknown>);
}
