// StorageManager: reference counts per mount point, shared storages, ordering,
// all-or-nothing add, release failures, UpdateEphemeralMounts.
import { describe, expect, it } from 'vitest';
import { Code, RpcError } from '../../agent/src/rpc/status';
import { StorageManager } from '../../agent/src/storage/manager';
import { parseStorage } from '../../agent/src/storage/spec';
import { MNT, MS, UMOUNT_NOFOLLOW } from '../../agent/src/sys/mount';
import { fakes, ROOT, type Fakes } from './storage-helpers';

function eph(name: string, extra: Record<string, unknown> = {}) {
  return parseStorage({ driver: 'ephemeral', source: 'tmpfs', fstype: 'tmpfs', mount_point: `${ROOT}/sandbox/ephemeral/${name}`, ...extra });
}
const mp = (name: string) => `${ROOT}/sandbox/ephemeral/${name}`;

async function rejects(p: Promise<unknown>): Promise<RpcError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(RpcError);
    return e as RpcError;
  }
  throw new Error('expected a rejection');
}

function setup(): Fakes & { m: StorageManager } {
  const f = fakes();
  return { ...f, m: new StorageManager({ root: ROOT, deps: f.deps }) };
}

describe('reference counting', () => {
  it('mounts a mount point once for several owners and unmounts it when the last lets go', async () => {
    const { m, sys, fs } = setup();
    expect(await m.add([eph('a')], 'c1')).toEqual([mp('a')]);
    expect(await m.add([eph('a')], 'c2')).toEqual([mp('a')]);
    expect(sys.mounts).toHaveLength(1);
    expect(m.list()[0]).toMatchObject({ refs: 2, owners: { c1: 1, c2: 1 } });
    expect(await m.release('c1')).toEqual([]);
    expect(sys.mounted()).toEqual([mp('a')]);
    expect(await m.release('c2')).toEqual([mp('a')]);
    expect(sys.umounts).toEqual([{ target: mp('a'), flags: UMOUNT_NOFOLLOW }]);
    expect(fs.node(mp('a'))).toBeUndefined();
    expect(fs.node(`${ROOT}/sandbox`)).toBeUndefined();
    expect(fs.node(ROOT)).toBeDefined();
    expect(m.list()).toEqual([]);
  });

  it('counts the same owner twice and drops all its references at once', async () => {
    const { m, sys } = setup();
    await m.add([eph('a'), eph('a')], 'c1');
    expect(m.list()[0]!.owners).toEqual({ c1: 2 });
    await m.release('c1');
    expect(sys.mounted()).toEqual([]);
  });

  it('treats differently spelled paths to one mount point as the same', async () => {
    const { m, sys } = setup();
    await m.add([eph('a')], 'c1');
    await m.add([eph('a', { mount_point: `${ROOT}//sandbox/./ephemeral/a/` })], 'c2');
    expect(sys.mounts).toHaveLength(1);
    expect(m.list()[0]!.refs).toBe(2);
  });

  it('refuses a different storage at a mount point in use (FAILED_PRECONDITION), leaving the first alone', async () => {
    const { m, sys } = setup();
    await m.add([eph('a', { options: ['size=1M'] })], 'c1');
    for (const other of [
      eph('a', { options: ['size=2M'] }),
      parseStorage({ driver: 'local', mount_point: mp('a') }),
      eph('a', { source: 'shm', options: ['size=1M'] }),
    ]) {
      const e = await rejects(m.add([other], 'c2'));
      expect(e.code).toBe(Code.FAILED_PRECONDITION);
      expect(e.message).toContain(mp('a'));
      expect(e.message).toContain('already holds ephemeral "tmpfs"');
    }
    expect(m.list()[0]).toMatchObject({ refs: 1, owners: { c1: 1 } });
    expect(sys.mounted()).toEqual([mp('a')]);
    // option order does not matter
    await m.add([eph('a', { options: ['size=1M'] })], 'c3');
    expect(m.list()[0]!.refs).toBe(2);
  });

  it('keeps shared storages until closeAll, however often they are released', async () => {
    const { m, sys } = setup();
    await m.add([eph('s', { shared: true }), eph('p')], 'c1');
    await m.add([eph('s')], 'c2'); // shared stays sticky
    await m.release('c1');
    await m.release('c2');
    expect(sys.mounted()).toEqual([mp('s')]);
    expect(m.list()[0]).toMatchObject({ mountPoint: mp('s'), refs: 0, shared: true });
    expect(await m.closeAll()).toEqual([mp('s')]);
    expect(sys.mounted()).toEqual([]);
  });

  it('closeAll unmounts everything, newest first (nested mounts come off before their parents)', async () => {
    const { m, sys, fs } = setup();
    fs.mkdirp('/srv/d');
    await m.add([parseStorage({ driver: 'ephemeral', mount_point: `${ROOT}/outer` })], 'sb');
    await m.add([parseStorage({ driver: 'bind', source: '/srv/d', mount_point: `${ROOT}/outer/inner` }), eph('x')], 'c1');
    await m.add([eph('y', { shared: true })], 'c2');
    sys.log.length = 0;
    expect(await m.closeAll()).toEqual([mp('y'), mp('x'), `${ROOT}/outer/inner`, `${ROOT}/outer`]);
    expect(sys.log).toEqual([`umount ${mp('y')} plain`, `umount ${mp('x')} plain`, `umount ${ROOT}/outer/inner plain`, `umount ${ROOT}/outer plain`]);
    expect(m.list()).toEqual([]);
  });

  it('releases only what reaches zero, newest first', async () => {
    const { m, sys } = setup();
    await m.add([eph('a'), eph('b'), eph('c')], 'c1');
    await m.add([eph('b')], 'c2');
    sys.log.length = 0;
    expect(await m.release('c1')).toEqual([mp('c'), mp('a')]);
    expect(sys.mounted()).toEqual([mp('b')]);
    expect(await m.release('nobody')).toEqual([]);
  });
});

describe('all or nothing', () => {
  it('undoes what the call mounted and referenced when a later storage fails', async () => {
    const { m, sys, fs } = setup();
    await m.add([eph('pre')], 'c0');
    const before = m.list();
    sys.failMount = (c) => (c.target === mp('bad') ? 'ENOSPC' : undefined);
    const e = await rejects(m.add([eph('one'), eph('pre'), parseStorage({ driver: 'local', mount_point: mp('dir') }), eph('two'), eph('bad'), eph('never')], 'c1'));
    expect(e.message).toContain(mp('bad'));
    expect(e.message).toContain('ENOSPC');
    expect(m.list()).toEqual(before);
    expect(sys.mounted()).toEqual([mp('pre')]);
    // undone newest first
    expect(sys.umounts.map((u) => u.target)).toEqual([mp('two'), mp('one')]);
    for (const n of ['one', 'two', 'dir', 'bad', 'never']) expect(fs.node(mp(n)), n).toBeUndefined();
    // nothing of "never" was attempted
    expect(sys.log.some((l) => l.includes('never'))).toBe(false);
  });

  it('undoes the storage itself when its fs_group step fails', async () => {
    const { m, sys, fs } = setup();
    fs.failures.set(`lchown ${mp('g')}`, 'EROFS');
    const e = await rejects(m.add([eph('ok'), eph('g', { fs_group: { group_id: 7 } })], 'c1'));
    expect(e.message).toContain('fs_group 7');
    expect(e.message).toContain('EROFS');
    expect(sys.mounted()).toEqual([]);
    expect(m.list()).toEqual([]);
  });

  it('a second call for the same mount point waits for the first (one mount)', async () => {
    const { m, sys, devices } = setup();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    devices.pciBlock = async (p) => {
      devices.calls.push(`pci ${p}`);
      await gate;
      return { path: '/dev/vdb' };
    };
    const s = parseStorage({ driver: 'blk', source: '02/01', fstype: 'ext4', mount_point: `${ROOT}/blk` });
    const a = m.add([s], 'c1');
    const b = m.add([s], 'c2');
    await new Promise((r) => setTimeout(r, 5));
    expect(sys.mounts).toHaveLength(0);
    release();
    expect(await a).toEqual([`${ROOT}/blk`]);
    expect(await b).toEqual([`${ROOT}/blk`]);
    expect(sys.mounts).toHaveLength(1);
    expect(devices.calls).toEqual(['pci 02/01']);
    expect(m.list()[0]!.refs).toBe(2);
  });
});

describe('unmount failures', () => {
  it('detaches lazily when a plain unmount fails (busy)', async () => {
    const { m, sys } = setup();
    await m.add([eph('a')], 'c1');
    sys.failUmount = (_t, flags) => (flags & MNT.DETACH ? undefined : 'EBUSY');
    expect(await m.release('c1')).toEqual([mp('a')]);
    expect(sys.log.slice(-2)).toEqual([`umount ${mp('a')} plain`, `umount ${mp('a')} detach`]);
    expect(sys.umounts).toEqual([{ target: mp('a'), flags: MNT.DETACH | UMOUNT_NOFOLLOW }]);
    expect(sys.mounted()).toEqual([]);
  });

  it('counts "not mounted" as done', async () => {
    const { m, sys } = setup();
    await m.add([eph('a')], 'c1');
    sys.table.length = 0; // someone else unmounted it
    expect(await m.release('c1')).toEqual([mp('a')]);
    expect(m.list()).toEqual([]);
  });

  it('keeps what cannot be unmounted, reports it, refuses it as a mount point, and closeAll tries again', async () => {
    const { m, sys } = setup();
    await m.add([eph('a'), eph('b')], 'c1');
    sys.failUmount = (t) => (t === mp('a') ? 'EPERM' : undefined);
    const e = await rejects(m.release('c1'));
    expect(e.code).toBe(Code.INTERNAL);
    expect(e.message).toContain(mp('a'));
    expect(e.message).toContain('EPERM');
    expect(sys.mounted()).toEqual([mp('a')]);
    expect(m.list()).toEqual([expect.objectContaining({ mountPoint: mp('a'), refs: 0, unmountError: expect.stringContaining('EPERM') })]);
    expect((await rejects(m.add([eph('a')], 'c2'))).code).toBe(Code.FAILED_PRECONDITION);
    sys.failUmount = undefined;
    expect(await m.closeAll()).toEqual([mp('a')]);
    expect(m.list()).toEqual([]);
  });
});

describe('updateEphemeral', () => {
  it('remounts a tmpfs with the new size, keeping its own flags and dropping fsgid', async () => {
    const { m, sys } = setup();
    await m.add([eph('a', { options: ['nosuid', 'nodev', 'size=64M', 'mode=1777'] })], 'c1');
    sys.mounts.length = 0;
    await m.updateEphemeral([eph('a', { options: ['remount', 'size=512M', 'fsgid=1000'] })]);
    expect(sys.mounts).toEqual([{ source: 'tmpfs', target: mp('a'), fstype: 'tmpfs', flags: MS.REMOUNT | MS.NOSUID | MS.NODEV, data: 'size=512M' }]);
    expect(m.list()[0]!.options).toEqual(['nosuid', 'nodev', 'mode=1777', 'size=512M']);
  });

  it('does nothing for empty options, and checks every entry before remounting any', async () => {
    const { m, sys } = setup();
    await m.add([eph('a'), parseStorage({ driver: 'local', mount_point: mp('l') })], 'c1');
    sys.mounts.length = 0;
    await m.updateEphemeral([eph('a'), eph('a', { options: ['remount', 'fsgid=5'] })]);
    expect(sys.mounts).toEqual([]);
    const cases: [ReturnType<typeof eph>, Code, string][] = [
      [eph('missing', { options: ['size=1M'] }), Code.NOT_FOUND, mp('missing')],
      [eph('l', { options: ['size=1M'] }), Code.NOT_FOUND, mp('l')],
      [parseStorage({ driver: 'local', mount_point: mp('l'), options: ['size=1M'] }), Code.INVALID_ARGUMENT, 'only ephemeral'],
      [eph('a', { fstype: 'hugetlbfs', options: ['size=1M'] }), Code.INVALID_ARGUMENT, 'only tmpfs'],
      [eph('/etc', { mount_point: '/etc', options: ['size=1M'] }), Code.INVALID_ARGUMENT, '/etc'],
    ];
    for (const [bad, code, msg] of cases) {
      const e = await rejects(m.updateEphemeral([eph('a', { options: ['remount', 'size=2M'] }), bad]));
      expect(e.code, msg).toBe(code);
      expect(e.message).toContain(msg);
    }
    expect(sys.mounts).toEqual([]);
  });

  it('reports a failed remount with the mount point and errno', async () => {
    const { m, sys } = setup();
    await m.add([eph('a')], 'c1');
    sys.failMount = () => 'EINVAL';
    const e = await rejects(m.updateEphemeral([eph('a', { options: ['remount', 'size=1'] })]));
    expect(e.code).toBe(Code.INVALID_ARGUMENT);
    expect(e.message).toContain(mp('a'));
    expect(e.message).toContain('EINVAL');
  });
});

describe('list', () => {
  it('reports each storage in creation order', async () => {
    const { m, devices, fs } = setup();
    devices.map.set('pci 02/01', '/dev/vdb');
    fs.mkdirp('/srv');
    await m.add([parseStorage({ driver: 'blk', source: '02/01', fstype: 'ext4', options: ['ro', 'data=ordered'], mount_point: `${ROOT}/b` })], 'c1');
    await m.add([parseStorage({ driver: 'local', options: ['mode=0700'], mount_point: `${ROOT}/l`, shared: true })], 'sb');
    expect(m.list()).toEqual([
      { mountPoint: `${ROOT}/b`, driver: 'blk', source: '02/01', fstype: 'ext4', options: ['ro', 'data=ordered'], device: '/dev/vdb', owners: { c1: 1 }, refs: 1, shared: false, state: 'mounted' },
      { mountPoint: `${ROOT}/l`, driver: 'local', source: '', fstype: '', options: ['mode=0700'], owners: { sb: 1 }, refs: 1, shared: true, state: 'directory' },
    ]);
  });
});

describe('a storage root reached through a symlink (configuration)', () => {
  it('mounts at the real path and matches later requests by it', async () => {
    const f = fakes();
    f.fs.mkdirp('/var');
    f.fs.symlink(ROOT, '/var/kata');
    const m = new StorageManager({ root: '/var/kata/', deps: f.deps });
    expect(await m.add([parseStorage({ driver: 'ephemeral', mount_point: '/var/kata/e/x' })], 'c1')).toEqual([`${ROOT}/e/x`]);
    expect(f.sys.mounts[0]!.target).toBe(`${ROOT}/e/x`);
    await m.add([parseStorage({ driver: 'ephemeral', mount_point: '/var/kata/e//x' })], 'c2');
    expect(m.list()[0]!.refs).toBe(2);
    // the real path is not under the configured root lexically: refused
    expect((await rejects(m.add([parseStorage({ driver: 'ephemeral', mount_point: `${ROOT}/e/x` })], 'c3'))).code).toBe(Code.INVALID_ARGUMENT);
    await m.closeAll();
    expect(f.sys.mounted()).toEqual([]);
  });
});

describe('rollback that cannot unmount', () => {
  it('keeps the stuck storage listed (no owners) for closeAll, and still reports the original error', async () => {
    const f = fakes();
    const m = new StorageManager({ root: ROOT, deps: f.deps });
    f.sys.failMount = (c) => (c.target === mp('b') ? 'ENOSPC' : undefined);
    f.sys.failUmount = () => 'EPERM';
    const e = await rejects(m.add([eph('a'), eph('b')], 'c1'));
    expect(e.message).toContain('ENOSPC');
    expect(m.list()).toEqual([expect.objectContaining({ mountPoint: mp('a'), refs: 0, unmountError: expect.stringContaining('EPERM') })]);
    f.sys.failUmount = undefined;
    expect(await m.closeAll()).toEqual([mp('a')]);
    expect(f.sys.mounted()).toEqual([]);
  });
});
