// Volume and swap RPCs (issue 4): GetVolumeStats (statfs), ResizeVolume (grow ext2/3/4 with
// resize2fs, xfs with xfs_growfs, after the host grew the device), AddSwap (a virtio-blk swap
// device by PCI path) and AddSwapPath (a swap file). Every path comes from the host: it must be
// absolute, free of '..', and resolve (symlinks followed) strictly below the volume root
// (/run/kata-containers), where the agent mounts what the host gives it.
import fs from 'node:fs';
import path from 'node:path';
import { parseMountInfo, type MountInfoEntry } from '../init/mountinfo';
import type { Logger } from '../log';
import { run as runProcess } from '../proc/run';
import type { Spawner } from '../proc/spawner';
import { MNT, umount2 } from '../sys/mount';
import { swapon } from '../sys/swap';
import type { Handler } from '../rpc/dispatch';
import { Code, RpcError, toStatus } from '../rpc/status';

export const VOLUME_ROOT = '/run/kata-containers';

/** csi.VolumeUsage.Unit */
const UNIT_BYTES = 1;
const UNIT_INODES = 2;

export interface VolumeStatFs {
  bsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
}

export interface ToolResult {
  code: number;
  stdout: string;
  stderr: string;
  /** The program could not be started (ENOENT: not installed). */
  missing?: boolean;
}

export interface VolumeDeps {
  log: Logger;
  /** Paths must resolve strictly below this directory (default /run/kata-containers). */
  root?: string;
  statfs(p: string): VolumeStatFs;
  mountInfo(): MountInfoEntry[];
  realpath(p: string): string;
  /** Size in bytes of the block device at `devPath` (from sysfs). */
  blockDeviceBytes(devPath: string): number;
  /** Run a tool to completion (resize2fs, xfs_growfs). */
  run(file: string, args: string[]): Promise<ToolResult>;
  swapon(p: string): void;
  /** stat(2) a path: undefined when fine, else the errno name (ENOTCONN for a dead FUSE/virtio-fs mount). */
  statError(p: string): string | undefined;
  umountDetach(p: string): void;
  /** Wait for a virtio-blk device by PCI path ("02/01"); resolves with its /dev path. */
  pciBlock(pciPath: string, signal?: AbortSignal): Promise<{ path: string }>;
  /** Kinds of a path: 'file', 'block', 'dir', 'other', or undefined when missing. */
  kind(p: string): 'file' | 'block' | 'dir' | 'other' | undefined;
}

function inside(child: string, parent: string): boolean {
  return child.startsWith(parent.endsWith('/') ? parent : `${parent}/`) && child !== parent;
}

/**
 * A host-given guest path, checked and resolved: absolute, no '..' component, existing, and
 * (after symlinks) strictly below `root`. Throws INVALID_ARGUMENT / NOT_FOUND naming `what`.
 */
export function confineHostPath(p: unknown, what: string, root: string, realpath: (p: string) => string): string {
  if (typeof p !== 'string' || p === '') throw new RpcError(Code.INVALID_ARGUMENT, `${what}: empty path`);
  if (p.includes('\0')) throw new RpcError(Code.INVALID_ARGUMENT, `${what}: path contains a NUL byte`);
  if (!path.posix.isAbsolute(p)) throw new RpcError(Code.INVALID_ARGUMENT, `${what}: ${JSON.stringify(p)} is not absolute`);
  if (p.split('/').includes('..')) throw new RpcError(Code.INVALID_ARGUMENT, `${what}: ${JSON.stringify(p)} contains '..'`);
  const normal = path.posix.normalize(p);
  if (!inside(normal, root)) throw new RpcError(Code.INVALID_ARGUMENT, `${what}: ${p} is not below ${root}`);
  let real: string;
  try {
    real = realpath(normal);
  } catch (err) {
    const st = toStatus(err);
    throw new RpcError(st.code === Code.NOT_FOUND ? Code.NOT_FOUND : st.code, `${what}: ${p}: ${st.message}`);
  }
  let realRoot = root;
  try {
    realRoot = realpath(root);
  } catch {
    // the root itself missing: `real` cannot be below it anyway
  }
  if (!inside(real, realRoot)) throw new RpcError(Code.INVALID_ARGUMENT, `${what}: ${p} resolves to ${real}, outside ${realRoot}`);
  return real;
}

/** AddSwapRequest.PCIPath (slot numbers, root bus first) as Kata's text form "02/01". */
export function pciPathFromSlots(slots: unknown): string {
  if (!Array.isArray(slots) || slots.length === 0) throw new RpcError(Code.INVALID_ARGUMENT, 'AddSwap: PCIPath is empty');
  if (slots.length > 8) throw new RpcError(Code.INVALID_ARGUMENT, `AddSwap: PCIPath has ${slots.length} levels (at most 8)`);
  return slots
    .map((s, i) => {
      if (!Number.isInteger(s) || s < 0 || s > 0x1f) throw new RpcError(Code.INVALID_ARGUMENT, `AddSwap: PCIPath[${i}] = ${String(s)} is not a PCI slot (0-31)`);
      return (s as number).toString(16).padStart(2, '0');
    })
    .join('/');
}

const EXT = new Set(['ext2', 'ext3', 'ext4']);

export interface VolumeHandlers {
  removeStaleVirtiofsShareMounts: Handler;
  getVolumeStats: Handler;
  resizeVolume: Handler;
  addSwap: Handler;
  addSwapPath: Handler;
}

export function makeVolumeHandlers(d: VolumeDeps): VolumeHandlers {
  const root = path.posix.normalize(d.root ?? VOLUME_ROOT);

  const getVolumeStats: Handler = (req) => {
    const p = confineHostPath(req.volume_guest_path, 'GetVolumeStats: volume_guest_path', root, d.realpath);
    let s: VolumeStatFs;
    try {
      s = d.statfs(p);
    } catch (err) {
      const st = toStatus(err);
      throw new RpcError(st.code, `GetVolumeStats ${p}: statfs: ${st.message}`);
    }
    const total = s.blocks * s.bsize;
    return {
      usage: [
        { available: s.bavail * s.bsize, total, used: total - s.bfree * s.bsize, unit: UNIT_BYTES },
        { available: s.ffree, total: s.files, used: s.files - s.ffree, unit: UNIT_INODES },
      ],
      volume_condition: { abnormal: false, message: '' },
    };
  };

  const resizeVolume: Handler = async (req) => {
    const p = confineHostPath(req.volume_guest_path, 'ResizeVolume: volume_guest_path', root, d.realpath);
    const size = Number(req.size ?? 0);
    if (!Number.isSafeInteger(size) || size < 0) throw new RpcError(Code.INVALID_ARGUMENT, `ResizeVolume ${p}: bad size ${String(req.size)}`);
    let mount: MountInfoEntry | undefined;
    for (const e of d.mountInfo()) if (e.mountPoint === p) mount = e; // the topmost
    if (!mount) throw new RpcError(Code.FAILED_PRECONDITION, `ResizeVolume ${p}: not a mount point (only a mounted block-device volume can be grown)`);
    if (d.kind(mount.source) !== 'block') {
      throw new RpcError(Code.FAILED_PRECONDITION, `ResizeVolume ${p}: mounted from ${mount.source} (${mount.fstype}), not a block device`);
    }
    const devBytes = d.blockDeviceBytes(mount.source);
    if (size > 0 && devBytes < size) {
      throw new RpcError(
        Code.FAILED_PRECONDITION,
        `ResizeVolume ${p}: the device ${mount.source} has ${devBytes} bytes, less than the ${size} asked for (the host grows the device first)`,
      );
    }
    let tool: [string, string[], string];
    if (EXT.has(mount.fstype)) tool = ['resize2fs', [mount.source], 'e2fsprogs'];
    else if (mount.fstype === 'xfs') tool = ['xfs_growfs', [p], 'xfsprogs'];
    else throw new RpcError(Code.FAILED_PRECONDITION, `ResizeVolume ${p}: cannot grow a ${mount.fstype} file system (ext2/3/4 and xfs can be grown)`);
    const [file, args, pkg] = tool;
    const r = await d.run(file, args);
    if (r.missing) throw new RpcError(Code.FAILED_PRECONDITION, `ResizeVolume ${p}: ${file} is not in the guest image (package ${pkg})`);
    if (r.code !== 0) {
      const why = (r.stderr.trim() || r.stdout.trim()).split('\n').slice(-3).join('; ');
      throw new RpcError(Code.INTERNAL, `ResizeVolume ${p}: ${file} ${args.join(' ')} exited ${r.code}: ${why}`);
    }
    d.log.info({ volume: p, device: mount.source, fstype: mount.fstype, deviceBytes: devBytes }, 'volume grown');
    return {};
  };

  const swapOn = (what: string, dev: string): void => {
    try {
      d.swapon(dev);
    } catch (err) {
      const st = toStatus(err);
      const code = (err as { code?: string }).code;
      // EINVAL: no swap signature (mkswap) or a file system that cannot hold swap; EBUSY: already on.
      const c = code === 'EINVAL' ? Code.INVALID_ARGUMENT : code === 'EBUSY' ? Code.ALREADY_EXISTS : st.code;
      throw new RpcError(c, `${what}: swapon ${dev}: ${st.message}`);
    }
    d.log.info({ swap: dev }, 'swap enabled');
  };

  const addSwap: Handler = async (req, ctx) => {
    const pci = pciPathFromSlots(req.PCIPath);
    const dev = await d.pciBlock(pci, ctx.signal);
    swapOn(`AddSwap ${pci}`, dev.path);
    return {};
  };

  const addSwapPath: Handler = (req) => {
    const p = confineHostPath(req.path, 'AddSwapPath: path', root, d.realpath);
    const k = d.kind(p);
    if (k !== 'file' && k !== 'block') throw new RpcError(Code.INVALID_ARGUMENT, `AddSwapPath: ${p} is not a regular file or block device`);
    swapOn('AddSwapPath', p);
    return {};
  };

  // Kata: after the host restarted virtiofsd, the guest's virtio-fs mounts below the shared
  // directory answer ENOTCONN ("Transport endpoint is not connected"); unmount those (lazily)
  // so the host can share them again. Healthy mounts are left alone.
  const removeStaleVirtiofsShareMounts: Handler = () => {
    const shared = path.posix.join(root, 'shared');
    const removed: string[] = [];
    const stale = d
      .mountInfo()
      .filter((e) => e.fstype === 'virtiofs' && (e.mountPoint === shared || inside(e.mountPoint, shared)))
      .map((e) => e.mountPoint)
      .reverse(); // deepest (latest) first
    for (const m of stale) {
      if (d.statError(m) !== 'ENOTCONN') continue;
      try {
        d.umountDetach(m);
        removed.push(m);
      } catch (err) {
        d.log.warn({ mount: m, err: String(err) }, 'cannot unmount a stale virtio-fs mount');
      }
    }
    if (removed.length > 0) d.log.info({ removed }, 'stale virtio-fs share mounts removed');
    return {};
  };

  return { removeStaleVirtiofsShareMounts, getVolumeStats, resizeVolume, addSwap, addSwapPath };
}

/** major/minor of a dev_t (glibc's encoding: 12+20 bits of major, 8+24 bits of minor). */
export function splitDev(rdev: bigint): { major: number; minor: number } {
  const major = ((rdev & 0xfff00n) >> 8n) | ((rdev & 0xfffff00000000000n) >> 32n);
  const minor = (rdev & 0xffn) | ((rdev & 0xffffff00000n) >> 12n);
  return { major: Number(major), minor: Number(minor) };
}

/** Block device size in bytes from /sys/dev/block/<major>:<minor>/size (512-byte sectors). */
export function sysfsBlockBytes(devPath: string, sysRoot = '/sys'): number {
  const st = fs.statSync(devPath, { bigint: true });
  if (!st.isBlockDevice()) throw new RpcError(Code.FAILED_PRECONDITION, `${devPath} is not a block device`);
  const { major, minor } = splitDev(st.rdev);
  const sectors = Number(fs.readFileSync(path.join(sysRoot, 'dev/block', `${major}:${minor}`, 'size'), 'utf8').trim());
  return sectors * 512;
}

export function pathKind(p: string): 'file' | 'block' | 'dir' | 'other' | undefined {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    return undefined;
  }
  if (st.isFile()) return 'file';
  if (st.isBlockDevice()) return 'block';
  if (st.isDirectory()) return 'dir';
  return 'other';
}

/** VolumeDeps on the real system; `pciBlock` comes from the device layer. */
export function realVolumeDeps(o: { log: Logger; spawner: Spawner; pciBlock: VolumeDeps['pciBlock']; root?: string }): VolumeDeps {
  return {
    log: o.log,
    root: o.root,
    statfs: (p) => {
      const s = fs.statfsSync(p);
      return { bsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree };
    },
    mountInfo: () => parseMountInfo(fs.readFileSync('/proc/self/mountinfo', 'utf8')),
    realpath: (p) => fs.realpathSync(p),
    blockDeviceBytes: (p) => sysfsBlockBytes(p),
    run: async (file, args) => {
      try {
        const r = await runProcess(o.spawner, file, args, { timeoutMs: 10 * 60_000 });
        return { code: r.code, stdout: r.stdout, stderr: r.stderr };
      } catch (err) {
        if ((err as { code?: string }).code === 'ENOENT') return { code: 127, stdout: '', stderr: '', missing: true };
        throw err;
      }
    },
    swapon: (p) => swapon(p),
    statError: (p) => {
      try {
        fs.statSync(p);
        return undefined;
      } catch (err) {
        return (err as { code?: string }).code ?? 'EIO';
      }
    },
    umountDetach: (p) => umount2(p, MNT.DETACH),
    pciBlock: o.pciBlock,
    kind: pathKind,
  };
}
