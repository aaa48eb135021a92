// fs_group: Kata's set_ownership / recursive_ownership_change rules, on the fake tree.
import { describe, expect, it } from 'vitest';
import { applyFsGroup } from '../../agent/src/storage/fsgroup';
import { StorageManager } from '../../agent/src/storage/manager';
import { parseStorage } from '../../agent/src/storage/spec';
import { FsGroupChangePolicy } from '../../agent/src/storage/types';
import { FakeFs, fakes, ROOT } from './storage-helpers';

const { Always, OnRootMismatch } = FsGroupChangePolicy;

function tree(): FakeFs {
  const fs = new FakeFs();
  fs.mkdirp('/vol', 0o755);
  fs.mkdirp('/vol/sub', 0o700);
  fs.file('/vol/a', 'x', 0o644);
  fs.file('/vol/sub/b', 'y', 0o4755); // setuid: chown clears it, the new mode must not bring it back
  fs.mkdirp('/outside', 0o755);
  fs.symlink('/outside', '/vol/link');
  return fs;
}

describe('applyFsGroup', () => {
  it('Always: group and group rw on files, rwx + setgid on directories, symlinks untouched', () => {
    const fs = tree();
    expect(applyFsGroup(fs, '/vol', { groupId: 1000, policy: Always }, false)).toBe('changed');
    expect(fs.node('/vol')).toMatchObject({ gid: 1000, mode: 0o2775 });
    expect(fs.node('/vol/sub')).toMatchObject({ gid: 1000, mode: 0o2770 });
    expect(fs.node('/vol/a')).toMatchObject({ gid: 1000, mode: 0o664 });
    expect(fs.node('/vol/sub/b')).toMatchObject({ gid: 1000, mode: 0o775 });
    expect(fs.node('/vol/link')).toMatchObject({ gid: 0 });
    expect(fs.node('/outside')).toMatchObject({ gid: 0, mode: 0o755 });
    expect(fs.calls.some((c) => c.includes('/vol/link') || c.includes('/outside'))).toBe(false);
    // children before their directory, uid left alone
    const chowns = fs.calls.filter((c) => c.startsWith('lchown'));
    expect(chowns).toEqual(['lchown /vol/a -1 1000', 'lchown /vol/sub/b -1 1000', 'lchown /vol/sub -1 1000', 'lchown /vol -1 1000']);
  });

  it('read-only volumes get group read (not write)', () => {
    const fs = tree();
    applyFsGroup(fs, '/vol', { groupId: 5, policy: Always }, true);
    expect(fs.node('/vol/a')).toMatchObject({ mode: 0o644 });
    expect(fs.node('/vol/sub')).toMatchObject({ mode: 0o2750 });
  });

  it('OnRootMismatch skips when the root already has the group, the permissions and setgid', () => {
    const fs = tree();
    const root = fs.node('/vol')!;
    root.gid = 1000;
    root.mode = 0o2770;
    expect(applyFsGroup(fs, '/vol', { groupId: 1000, policy: OnRootMismatch }, false)).toBe('skipped');
    expect(fs.calls).toEqual([]);
    expect(fs.node('/vol/a')!.gid).toBe(0);
  });

  it('OnRootMismatch still walks when setgid or a permission bit is missing, or the group differs', () => {
    for (const [gid, mode] of [[1000, 0o770], [1000, 0o2750], [999, 0o2770]] as const) {
      const fs = tree();
      Object.assign(fs.node('/vol')!, { gid, mode });
      expect(applyFsGroup(fs, '/vol', { groupId: 1000, policy: OnRootMismatch }, false), `${gid} ${mode.toString(8)}`).toBe('changed');
      expect(fs.node('/vol/a')!.gid).toBe(1000);
    }
  });

  it('Always walks even when the root matches', () => {
    const fs = tree();
    Object.assign(fs.node('/vol')!, { gid: 1000, mode: 0o2770 });
    expect(applyFsGroup(fs, '/vol', { groupId: 1000, policy: Always }, false)).toBe('changed');
    expect(fs.node('/vol/a')!.gid).toBe(1000);
  });
});

describe('fs_group through the manager', () => {
  it('is applied after the mount, with "ro" taken from the options', async () => {
    const f = fakes();
    const order: string[] = [];
    const m = new StorageManager({ root: ROOT, deps: { ...f.deps, mount: (...a) => (order.push('mount'), f.sys.mount(...a)) } });
    const origChown = f.fs.lchown.bind(f.fs);
    f.fs.lchown = (p, u, g) => (order.push(`lchown ${p}`), origChown(p, u, g));
    await m.add([parseStorage({ driver: 'mmioblk', source: '/dev/vdb', fstype: 'ext4', options: ['ro'], mount_point: `${ROOT}/v`, fs_group: { group_id: 42 } })], 'c1');
    expect(order).toEqual(['mount', `lchown ${ROOT}/v`]);
    expect(f.fs.node(`${ROOT}/v`)).toMatchObject({ gid: 42, mode: 0o2755 });
  });

  it('applies to local directories too, and not again when a second owner references the storage', async () => {
    const f = fakes();
    const m = new StorageManager({ root: ROOT, deps: f.deps });
    const s = parseStorage({ driver: 'local', mount_point: `${ROOT}/l`, fs_group: { group_id: 7, group_change_policy: 0 } });
    await m.add([s], 'c1');
    expect(f.fs.node(`${ROOT}/l`)).toMatchObject({ gid: 7, mode: 0o2775 });
    f.fs.calls.length = 0;
    await m.add([s], 'c2');
    expect(f.fs.calls).toEqual([]);
  });
});
