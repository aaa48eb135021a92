// The runner's alternative kernel: Debian's cloud kernel (linux-image-cloud-amd64), when no
// osbuilder kernel is there. It has virtio PCI, the virtio console, vsock, virtio-blk, FUSE/virtio-fs
// and overlayfs as modules (and no 9p at all), so the runner puts a second archive in front of the
// initrd: those modules (with their dependencies, from modules.dep) and /init.modules, which loads
// them with busybox's insmod and then executes the agent (it stays PID 1); the kernel runs it with
// rdinit=/init.modules. The kernel unpacks concatenated archives in order; the uncompressed one goes
// first because an lz4 (legacy format) member has no end marker and swallows whatever follows it.
// The modules go under usr/lib/modules: an entry for `lib` would replace a merged-/usr rootfs's
// /lib -> usr/lib link with a directory.
import fs from 'node:fs';
import path from 'node:path';
import { encodeEntry, encodeTrailer, S_IFDIR, S_IFREG } from '../initrd/cpio';

/** What the agent and the VM devices need from the cloud kernel, in load order (deps resolved). */
export const CLOUD_KERNEL_MODULES = [
  'virtio_pci',
  'virtio_console',
  'virtio_blk',
  'virtio_rng',
  'virtio_scsi',
  'vmw_vsock_virtio_transport',
  'fuse',
  'virtiofs',
  'overlay',
] as const;

export interface DebianKernel {
  kernel: string;
  release: string;
  modulesDir: string;
}

/** The newest /boot/vmlinuz-*-cloud-<arch> whose modules are installed. */
export function findDebianCloudKernel(bootDir = '/boot', modulesRoot = '/lib/modules'): DebianKernel | undefined {
  let names: string[];
  try {
    names = fs.readdirSync(bootDir).filter((n) => /^vmlinuz-.+-cloud-(amd64|arm64)$/.test(n));
  } catch {
    return undefined;
  }
  names.sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  for (const n of names.reverse()) {
    const release = n.slice('vmlinuz-'.length);
    const modulesDir = path.join(modulesRoot, release);
    if (fs.existsSync(path.join(modulesDir, 'modules.dep'))) return { kernel: path.join(bootDir, n), release, modulesDir };
  }
  return undefined;
}

/** modules.dep as module name -> { file (relative), deps (relative files) }. */
export function parseModulesDep(text: string): Map<string, { file: string; deps: string[] }> {
  const out = new Map<string, { file: string; deps: string[] }>();
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const file = line.slice(0, colon).trim();
    const deps = line.slice(colon + 1).trim().split(/\s+/).filter(Boolean);
    out.set(moduleName(file), { file, deps });
  }
  return out;
}

/** kernel/fs/fuse/virtiofs.ko(.xz|.zst) -> virtiofs (dashes as underscores, as the kernel names them). */
export const moduleName = (file: string): string => path.basename(file).replace(/\.ko(\.\w+)?$/, '').replace(/-/g, '_');

/**
 * The module files to load, dependencies before the modules needing them, each once. Names built
 * into the kernel (modules.builtin) are skipped; an unknown name is an error.
 */
export function moduleLoadOrder(dep: Map<string, { file: string; deps: string[] }>, names: readonly string[], builtin: Set<string> = new Set()): string[] {
  const order: string[] = [];
  const visiting = new Set<string>();
  const visit = (name: string, why: string): void => {
    if (builtin.has(name)) return;
    const m = dep.get(name);
    if (!m) throw new Error(`module ${name}${why} is not in modules.dep`);
    if (order.includes(m.file)) return;
    if (visiting.has(name)) throw new Error(`module dependency loop at ${name}`);
    visiting.add(name);
    for (const d of m.deps) visit(moduleName(d), ` (needed by ${name})`);
    visiting.delete(name);
    order.push(m.file);
  };
  for (const n of names) visit(n, '');
  return order;
}

/** Where the overlay's init script is (run with rdinit=). */
export const OVERLAY_INIT = '/init.modules';

/** The overlay's init: load the modules, then become the agent. */
export function overlayInit(release: string, files: readonly string[], agent = '/usr/bin/kata-agent'): string {
  const lines = [
    '#!/bin/sh',
    '# osbuilder run: the Debian cloud kernel has the virtio drivers as modules: load them, then',
    '# execute the agent (it stays PID 1).',
    ...files.map((f) => `/bin/busybox insmod /usr/lib/modules/${release}/${f} || echo "osbuilder run: cannot load ${moduleName(f)}" >&2`),
    `exec ${agent} "$@"`,
  ];
  return `${lines.join('\n')}\n`;
}

/** Write the overlay archive (uncompressed newc: the modules and /init.modules). Returns the module names loaded. */
export function writeModulesOverlay(k: DebianKernel, out: string, names: readonly string[] = CLOUD_KERNEL_MODULES): string[] {
  const dep = parseModulesDep(fs.readFileSync(path.join(k.modulesDir, 'modules.dep'), 'utf8'));
  const builtinFile = path.join(k.modulesDir, 'modules.builtin');
  const builtin = new Set(fs.existsSync(builtinFile) ? fs.readFileSync(builtinFile, 'utf8').split('\n').filter(Boolean).map(moduleName) : []);
  const files = moduleLoadOrder(dep, names, builtin);
  for (const f of files) if (/\.(xz|zst|gz)$/.test(f)) throw new Error(`${f}: compressed modules are not supported by busybox insmod here`);
  const dirs = new Set<string>();
  for (const f of files) for (let d = path.posix.dirname(`usr/lib/modules/${k.release}/${f}`); d !== '.'; d = path.posix.dirname(d)) dirs.add(d);
  const parts: Buffer[] = [];
  let ino = 1;
  for (const d of [...dirs].sort()) parts.push(encodeEntry({ name: d, ino: ino++, mode: S_IFDIR | 0o755, uid: 0, gid: 0, nlink: 2, mtime: 0, filesize: 0 }));
  const file = (name: string, data: Buffer, mode: number): void => void parts.push(encodeEntry({ name, ino: ino++, mode: S_IFREG | mode, uid: 0, gid: 0, nlink: 1, mtime: 0, filesize: data.length }, data));
  for (const f of files) file(`usr/lib/modules/${k.release}/${f}`, fs.readFileSync(path.join(k.modulesDir, f)), 0o644);
  file(OVERLAY_INIT.slice(1), Buffer.from(overlayInit(k.release, files)), 0o755);
  parts.push(encodeTrailer());
  fs.writeFileSync(out, Buffer.concat(parts));
  return files.map(moduleName);
}
