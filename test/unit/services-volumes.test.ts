// GetVolumeStats, ResizeVolume, AddSwap and AddSwapPath with fake system calls: path
// confinement, statfs arithmetic, which tool grows which file system, and the error codes.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { MountInfoEntry } from '../../agent/src/init/mountinfo';
import { nullLogger } from '../../agent/src/log';
import type { CallContext } from '../../agent/src/rpc/dispatch';
import { Code, RpcError } from '../../agent/src/rpc/status';
import { SysError } from '../../agent/src/sys/libc';
import { confineHostPath, makeVolumeHandlers, pciPathFromSlots, splitDev, type ToolResult, type VolumeDeps } from '../../agent/src/services/volumes';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-vol-unit-'));
const root = path.join(tmp, 'root');
fs.mkdirSync(path.join(root, 'vol'), { recursive: true });
fs.mkdirSync(path.join(tmp, 'outside'));
fs.symlinkSync(path.join(tmp, 'outside'), path.join(root, 'escape'));
fs.symlinkSync(path.join(root, 'vol'), path.join(root, 'alias'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const ctx = { protocol: 'ttrpc', signal: new AbortController().signal, metadata: {}, log: nullLogger() } as unknown as CallContext;

function mnt(mountPoint: string, source: string, fstype: string): MountInfoEntry {
  return { id: 1, parent: 0, mountPoint, optional: [], fstype, source, options: 'rw', superOptions: 'rw' };
}

function deps(over: Partial<VolumeDeps> = {}) {
  const runs: Array<[string, string[]]> = [];
  const swaps: string[] = [];
  const d: VolumeDeps & { runs: typeof runs; swaps: typeof swaps } = {
    runs,
    swaps,
    log: nullLogger(),
    root,
    statfs: () => ({ bsize: 4096, blocks: 1000, bfree: 400, bavail: 300, files: 500, ffree: 120 }),
    mountInfo: () => [],
    realpath: (p) => fs.realpathSync(p),
    blockDeviceBytes: () => 64 << 20,
    run: async (file, args): Promise<ToolResult> => {
      runs.push([file, args]);
      return { code: 0, stdout: '', stderr: '' };
    },
    swapon: (p) => void swaps.push(p),
    statError: () => undefined,
    umountDetach: () => undefined,
    pciBlock: async (pci) => ({ path: `/dev/vd-${pci.replace('/', '-')}` }),
    kind: () => 'block',
    ...over,
  };
  return d;
}

async function code(p: unknown): Promise<number> {
  try {
    await p;
  } catch (err) {
    return (err as RpcError).code;
  }
  return Code.OK;
}

describe('confineHostPath', () => {
  const rp = (p: string) => fs.realpathSync(p);
  it('accepts a path below the root, resolving symlinks that stay inside', () => {
    expect(confineHostPath(path.join(root, 'vol'), 'x', root, rp)).toBe(fs.realpathSync(path.join(root, 'vol')));
    expect(confineHostPath(path.join(root, 'alias'), 'x', root, rp)).toBe(fs.realpathSync(path.join(root, 'vol')));
  });
  it('refuses relative, "..", outside the root, the root itself, symlink escapes, NUL; missing -> NOT_FOUND', () => {
    const bad: Array<[unknown, Code, RegExp]> = [
      ['', Code.INVALID_ARGUMENT, /empty/],
      [42, Code.INVALID_ARGUMENT, /empty/],
      ['run/x', Code.INVALID_ARGUMENT, /not absolute/],
      [`${root}/vol/../vol`, Code.INVALID_ARGUMENT, /'\.\.'/],
      ['/etc', Code.INVALID_ARGUMENT, /not below/],
      [root, Code.INVALID_ARGUMENT, /not below/],
      [`${root}/escape`, Code.INVALID_ARGUMENT, /outside/],
      [`${root}/vol\0x`, Code.INVALID_ARGUMENT, /NUL/],
      [`${root}/missing`, Code.NOT_FOUND, /missing/],
    ];
    for (const [p, c, m] of bad) {
      let err: RpcError | undefined;
      try {
        confineHostPath(p, 'GetVolumeStats: volume_guest_path', root, rp);
      } catch (e) {
        err = e as RpcError;
      }
      expect(err?.code, String(p)).toBe(c);
      expect(err?.message, String(p)).toMatch(m);
      expect(err?.message).toContain('GetVolumeStats: volume_guest_path');
    }
  });
});

describe('pciPathFromSlots / splitDev', () => {
  it('slot numbers become Kata\'s hex path; bad slots are refused', () => {
    expect(pciPathFromSlots([2, 1])).toBe('02/01');
    expect(pciPathFromSlots([0x1f])).toBe('1f');
    for (const bad of [[], [32], [-1], [1.5], 'x', [1, 2, 3, 4, 5, 6, 7, 8, 9]]) expect(() => pciPathFromSlots(bad)).toThrow(RpcError);
  });
  it('decodes dev_t as glibc does (small and large numbers)', () => {
    expect(splitDev(0x0701n)).toEqual({ major: 7, minor: 1 });
    expect(splitDev(0xfe10n)).toEqual({ major: 254, minor: 16 });
    // major 0x123, minor 0x45678 (minor bits 8+ live in dev_t bits 20+)
    expect(splitDev(0x45612378n)).toEqual({ major: 0x123, minor: 0x45678 });
    expect(splitDev((0x1n << 44n) | 0x0100n)).toEqual({ major: 0x1000 | 1, minor: 0 });
  });
});

describe('GetVolumeStats', () => {
  it('bytes and inodes from statfs (used = total - free)', async () => {
    const h = makeVolumeHandlers(deps());
    const r = (await h.getVolumeStats({ volume_guest_path: path.join(root, 'vol') }, ctx)) as Record<string, any>;
    expect(r.usage).toEqual([
      { available: 300 * 4096, total: 1000 * 4096, used: 600 * 4096, unit: 1 },
      { available: 120, total: 500, used: 380, unit: 2 },
    ]);
    expect(r.volume_condition).toEqual({ abnormal: false, message: '' });
  });
  it('a path outside the root is INVALID_ARGUMENT and statfs is not called', async () => {
    let called = 0;
    const h = makeVolumeHandlers(deps({ statfs: () => (called++, { bsize: 1, blocks: 1, bfree: 1, bavail: 1, files: 1, ffree: 1 }) }));
    expect(await code(Promise.resolve().then(() => h.getVolumeStats({ volume_guest_path: '/etc' }, ctx)))).toBe(Code.INVALID_ARGUMENT);
    expect(called).toBe(0);
  });
});

describe('ResizeVolume', () => {
  const vol = fs.realpathSync(path.join(root, 'vol'));
  it('ext4: resize2fs on the mounted device; xfs: xfs_growfs on the mount point', async () => {
    for (const [fstype, expected] of [
      ['ext4', ['resize2fs', ['/dev/vdb']]],
      ['ext2', ['resize2fs', ['/dev/vdb']]],
      ['xfs', ['xfs_growfs', [vol]]],
    ] as const) {
      const d = deps({ mountInfo: () => [mnt('/', '/dev/vda', 'ext4'), mnt(vol, '/dev/vdb', fstype)] });
      await makeVolumeHandlers(d).resizeVolume({ volume_guest_path: vol, size: 32 << 20 }, ctx);
      expect(d.runs).toEqual([expected]);
    }
  });
  it('refuses: not a mount point, not a block device, a device smaller than asked, a file system that cannot grow', async () => {
    const cases: Array<[Partial<VolumeDeps>, number, Code, RegExp]> = [
      [{ mountInfo: () => [mnt('/', '/dev/vda', 'ext4')] }, 1, Code.FAILED_PRECONDITION, /not a mount point/],
      [{ mountInfo: () => [mnt(vol, 'tmpfs', 'tmpfs')], kind: () => 'other' }, 1, Code.FAILED_PRECONDITION, /not a block device/],
      [{ mountInfo: () => [mnt(vol, '/dev/vdb', 'ext4')] }, 128 << 20, Code.FAILED_PRECONDITION, /less than the 134217728 asked/],
      [{ mountInfo: () => [mnt(vol, '/dev/vdb', 'btrfs')] }, 1, Code.FAILED_PRECONDITION, /cannot grow a btrfs/],
    ];
    for (const [over, size, c, m] of cases) {
      const d = deps(over);
      let err: RpcError | undefined;
      try {
        await makeVolumeHandlers(d).resizeVolume({ volume_guest_path: vol, size }, ctx);
      } catch (e) {
        err = e as RpcError;
      }
      expect(err?.code).toBe(c);
      expect(err?.message).toMatch(m);
      expect(d.runs).toEqual([]);
    }
  });
  it('the tool missing from the image, or failing: a clear error with its output', async () => {
    const missing = deps({ mountInfo: () => [mnt(vol, '/dev/vdb', 'xfs')], run: async () => ({ code: 127, stdout: '', stderr: '', missing: true }) });
    await expect(makeVolumeHandlers(missing).resizeVolume({ volume_guest_path: vol, size: 0 }, ctx)).rejects.toMatchObject({
      code: Code.FAILED_PRECONDITION,
      message: expect.stringMatching(/xfs_growfs is not in the guest image \(package xfsprogs\)/),
    });
    const failing = deps({ mountInfo: () => [mnt(vol, '/dev/vdb', 'ext4')], run: async () => ({ code: 1, stdout: '', stderr: 'resize2fs 1.47.0\nBad magic number in super-block\n' }) });
    await expect(makeVolumeHandlers(failing).resizeVolume({ volume_guest_path: vol, size: 0 }, ctx)).rejects.toMatchObject({
      code: Code.INTERNAL,
      message: expect.stringMatching(/resize2fs \/dev\/vdb exited 1: .*Bad magic number/),
    });
  });
});

describe('AddSwap / AddSwapPath', () => {
  it('AddSwap waits for the device at the PCI path and enables swap on it', async () => {
    const d = deps();
    await makeVolumeHandlers(d).addSwap({ PCIPath: [2, 1] }, ctx);
    expect(d.swaps).toEqual(['/dev/vd-02-01']);
  });
  it('AddSwap: a device that never comes is the device layer\'s DEADLINE_EXCEEDED; no swapon', async () => {
    const d = deps({ pciBlock: async () => Promise.reject(new RpcError(Code.DEADLINE_EXCEEDED, 'timed out waiting for 02/01')) });
    await expect(makeVolumeHandlers(d).addSwap({ PCIPath: [2, 1] }, ctx)).rejects.toMatchObject({ code: Code.DEADLINE_EXCEEDED });
    expect(d.swaps).toEqual([]);
  });
  it('AddSwapPath: a file below the root; directories, escapes and unformatted files refused', async () => {
    const file = path.join(root, 'vol', 'swapfile');
    fs.writeFileSync(file, '');
    const d = deps({ kind: (p) => (fs.statSync(p).isDirectory() ? 'dir' : 'file') });
    const h = makeVolumeHandlers(d);
    await h.addSwapPath({ path: file }, ctx);
    expect(d.swaps).toEqual([fs.realpathSync(file)]);
    expect(await code(Promise.resolve().then(() => h.addSwapPath({ path: path.join(root, 'vol') }, ctx)))).toBe(Code.INVALID_ARGUMENT);
    expect(await code(Promise.resolve().then(() => h.addSwapPath({ path: `${root}/escape` }, ctx)))).toBe(Code.INVALID_ARGUMENT);
    const einval = deps({ kind: () => 'file', swapon: () => { throw new SysError('swapon', os.constants.errno.EINVAL, file); } });
    await expect(Promise.resolve().then(() => makeVolumeHandlers(einval).addSwapPath({ path: file }, ctx))).rejects.toMatchObject({
      code: Code.INVALID_ARGUMENT,
      message: expect.stringMatching(/AddSwapPath: swapon .*EINVAL/),
    });
    const ebusy = deps({ kind: () => 'file', swapon: () => { throw new SysError('swapon', os.constants.errno.EBUSY, file); } });
    await expect(Promise.resolve().then(() => makeVolumeHandlers(ebusy).addSwapPath({ path: file }, ctx))).rejects.toMatchObject({ code: Code.ALREADY_EXISTS });
  });
});

describe('RemoveStaleVirtiofsShareMounts', () => {
  it('lazily unmounts the virtio-fs mounts below <root>/shared that answer ENOTCONN, deepest first; leaves the rest', async () => {
    const shared = `${root}/shared`;
    const umounted: string[] = [];
    const d = deps({
      mountInfo: () => [
        mnt('/', '/dev/vda', 'ext4'),
        mnt(shared, 'kataShared', 'virtiofs'),
        mnt(`${shared}/containers/c1/rootfs`, 'kataShared', 'virtiofs'),
        mnt(`${shared}/containers/c2/rootfs`, 'kataShared', 'virtiofs'),
        mnt(`${root}/other`, 'tag', 'virtiofs'), // not below shared/
        mnt(`${shared}/tmp`, 'tmpfs', 'tmpfs'), // not virtio-fs
      ],
      statError: (p) => (p.endsWith('c2/rootfs') || p === shared || p.endsWith('/other') || p.endsWith('/tmp') ? 'ENOTCONN' : undefined),
      umountDetach: (p) => void umounted.push(p),
    });
    await makeVolumeHandlers(d).removeStaleVirtiofsShareMounts({}, ctx);
    expect(umounted).toEqual([`${shared}/containers/c2/rootfs`, shared]);
  });
});
