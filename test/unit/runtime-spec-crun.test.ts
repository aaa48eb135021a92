// The converted and rewritten busybox spec, run for real by crun (and runc
// when installed): the OCI runtimes accept our JSON (uint64 RLIM_INFINITY,
// seccomp errnoRet, capabilities, sysctls) and apply it. Root only; each run
// is in a private mount namespace (on this hybrid-cgroup host the runtime
// needs /sys/fs/cgroup/unified unmounted), with its own --root state dir.
import { execFileSync, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { grpcSpecToOci, ociSpecToJson, rewriteForGuest, validateSpec, type OciSpec } from '../../agent/src/runtime/spec';
import { readFixture, viaWire } from './runtime-spec-helpers';

const isRoot = process.getuid?.() === 0;
const which = (names: string[]) => names.find((p) => fs.existsSync(p));
const runtimes: Array<[string, string]> = [];
for (const [name, paths] of [
  ['crun', ['/usr/bin/crun', '/usr/local/bin/crun']],
  ['runc', ['/usr/sbin/runc', '/usr/bin/runc', '/usr/local/sbin/runc']],
] as const) {
  const found = which([...paths]);
  if (found) runtimes.push([name, found]);
}
const canRun = isRoot && fs.existsSync('/bin/busybox') && runtimes.length > 0;

const CG_PARENT = `guestkit-spec-test-${process.pid}`;
const temps: string[] = [];

afterAll(() => {
  for (const d of temps) fs.rmSync(d, { recursive: true, force: true });
  for (const ctrl of fs.existsSync('/sys/fs/cgroup') ? fs.readdirSync('/sys/fs/cgroup') : []) {
    const parent = path.join('/sys/fs/cgroup', ctrl, CG_PARENT);
    if (!fs.existsSync(parent)) continue;
    for (const child of fs.readdirSync(parent, { withFileTypes: true })) {
      if (child.isDirectory()) fs.rmdirSync(path.join(parent, child.name));
    }
    fs.rmdirSync(parent);
  }
});

function hardLimitUnlimited(flag: string): boolean {
  return execFileSync('sh', ['-c', `ulimit -H${flag}`], { encoding: 'utf8' }).trim() === 'unlimited';
}

/** The busybox fixture made runnable here: no tty, a reporting command, no host-file mounts, a small seccomp profile. */
function busyboxSpec(rootfs: string, id: string): { spec: OciSpec; netSysctls: Record<string, string> } {
  const s = readFixture('kata-busybox.grpc.json');
  s.Process.Terminal = false;
  s.Process.Args = [
    '/bin/sh',
    '-c',
    'echo hello; grep -E "^(CapEff|CapBnd|NoNewPrivs|Seccomp):" /proc/self/status; echo nofile=$(ulimit -n) core=$(ulimit -c); ' +
      'echo shm_rmid_forced=$(cat /proc/sys/kernel/shm_rmid_forced); echo hostname=$(hostname); ' +
      'mkdir /tmp/x 2>&1 || true; hostname other 2>&1 || true',
  ];
  s.Process.Rlimits = [
    { Type: 'RLIMIT_NOFILE', Hard: 1024, Soft: 1000 },
    ...(hardLimitUnlimited('c') ? [{ Type: 'RLIMIT_CORE', Hard: '18446744073709551615', Soft: '18446744073709551615' }] : []),
  ];
  s.Mounts = s.Mounts.filter((m: any) => !m.source.startsWith('/run/kata-containers') && m.destination !== '/sys/fs/cgroup');
  s.Linux.Seccomp = {
    DefaultAction: 'SCMP_ACT_ALLOW',
    Architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'],
    Syscalls: [
      { Names: ['mkdir', 'mkdirat'], Action: 'SCMP_ACT_ERRNO', errnoret: 38 }, // ENOSYS
      { Names: ['sethostname'], Action: 'SCMP_ACT_ERRNO' }, // no errnoRet: EPERM
      { Names: ['kexec_load'], Action: 'SCMP_ACT_KILL', errnoret: 0 }, // errnoret without meaning: left out
    ],
  };
  const g = viaWire(s);
  validateSpec(g);
  const { spec, netSysctls } = rewriteForGuest(grpcSpecToOci(g), {
    containerId: id,
    sandboxPidns: false,
    sharedNamespaces: {},
    cgroupsPath: `/${CG_PARENT}/${id}`,
    rootfsPath: rootfs,
  });
  return { spec, netSysctls };
}

function makeBundle(): { bundle: string; rootfs: string } {
  const bundle = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-spec-'));
  temps.push(bundle);
  const rootfs = path.join(bundle, 'rootfs');
  for (const d of ['bin', 'proc', 'dev', 'sys', 'etc', 'tmp']) fs.mkdirSync(path.join(rootfs, d), { recursive: true });
  fs.copyFileSync('/bin/busybox', path.join(rootfs, 'bin/busybox'));
  fs.chmodSync(path.join(rootfs, 'bin/busybox'), 0o755);
  for (const a of ['sh', 'echo', 'grep', 'cat', 'mkdir', 'hostname']) fs.symlinkSync('busybox', path.join(rootfs, 'bin', a));
  return { bundle, rootfs };
}

function run(runtime: string, bundle: string, spec: OciSpec, id: string) {
  fs.writeFileSync(path.join(bundle, 'config.json'), ociSpecToJson(spec, 2));
  const state = path.join(bundle, 'state');
  fs.mkdirSync(state);
  const script = `umount /sys/fs/cgroup/unified 2>/dev/null; exec "$0" --root "$1" run --bundle "$2" "$3"`;
  return spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, runtime, state, bundle, id], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: 60_000,
  });
}

describe.skipIf(!canRun)('the rewritten busybox spec under a real OCI runtime', () => {
  it.each(runtimes)('%s runs it with capabilities, seccomp, rlimits and sysctls applied', (_name, runtime) => {
    const id = `t${crypto.randomBytes(6).toString('hex')}`;
    const { bundle, rootfs } = makeBundle();
    const { spec, netSysctls } = busyboxSpec(rootfs, id);
    expect(netSysctls).toEqual({ 'net.ipv4.ping_group_range': '0 2147483647' });
    const r = run(runtime, bundle, spec, id);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = r.stdout;
    expect(out).toContain('hello\n');
    // containerd's default capability set: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
    // NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP = 0xa80425fb.
    expect(out).toMatch(/CapEff:\s+00000000a80425fb/);
    expect(out).toMatch(/CapBnd:\s+00000000a80425fb/);
    expect(out).toMatch(/NoNewPrivs:\s+0/);
    expect(out).toMatch(/Seccomp:\s+2/);
    expect(out).toContain('nofile=1000');
    if (hardLimitUnlimited('c')) expect(out).toContain('core=unlimited'); // 18446744073709551615 parsed exactly
    expect(out).toContain('shm_rmid_forced=1'); // kernel.shm_rmid_forced applied in the new ipc namespace
    expect(out).toContain('hostname=busybox'); // new uts namespace: the spec's hostname
    expect(out).toMatch(/mkdir: can't create directory '\/tmp\/x': Function not implemented/); // errnoRet 38
    expect(out).toMatch(/hostname: sethostname: Operation not permitted/); // default errno EPERM
  });

  it.each(runtimes)('%s refuses a net.* sysctl without a network namespace (why the rewrite moves them out)', (_name, runtime) => {
    const id = `t${crypto.randomBytes(6).toString('hex')}`;
    const { bundle, rootfs } = makeBundle();
    const { spec, netSysctls } = busyboxSpec(rootfs, id);
    spec.linux!.sysctl = { ...(spec.linux!.sysctl ?? {}), ...netSysctls };
    const r = run(runtime, bundle, spec, id);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/net\.ipv4\.ping_group_range/);
  });
});
