// fs_group: re-own a volume to a group, as Kata's set_ownership /
// recursive_ownership_change do (src/agent/src/storage/mod.rs): every file and
// directory gets the group and group read/write (read-only volumes: read)
// permission, directories also group search permission and the setgid bit so
// new files inherit the group. Symlinks are skipped and never followed.
// With OnRootMismatch the walk is skipped when the volume root already has the
// group and those permission bits (including setgid).
import { FsGroupChangePolicy, type FsGroup, type StorageFs } from './types';

export const RW_MASK = 0o660;
export const RO_MASK = 0o440;
export const EXEC_MASK = 0o110;
export const MODE_SETGID = 0o2000;

export type FsGroupResult = 'skipped' | 'changed';

function join(dir: string, name: string): string {
  return dir.endsWith('/') ? `${dir}${name}` : `${dir}/${name}`;
}

/**
 * Apply `group` to the tree at `root` (a mount point). Throws the file
 * operation's error (the caller names the storage).
 */
export function applyFsGroup(fs: StorageFs, root: string, group: FsGroup, readOnly: boolean): FsGroupResult {
  const st = fs.stat(root);
  if (!st) throw Object.assign(new Error(`${root} does not exist`), { code: 'ENOENT' });
  if (group.policy === FsGroupChangePolicy.OnRootMismatch && st.gid === group.groupId) {
    const mask = (readOnly ? RO_MASK : RW_MASK) | EXEC_MASK;
    if ((st.mode & mask) === mask && (st.mode & MODE_SETGID) !== 0) return 'skipped';
  }
  reown(fs, root, group.groupId, readOnly);
  return 'changed';
}

function reown(fs: StorageFs, p: string, gid: number, readOnly: boolean): void {
  const st = fs.lstat(p);
  if (!st || st.kind === 'symlink') return;
  let mask = readOnly ? RO_MASK : RW_MASK;
  if (st.kind === 'dir') {
    for (const name of fs.readdir(p)) reown(fs, join(p, name), gid, readOnly);
    mask |= EXEC_MASK | MODE_SETGID;
  }
  fs.lchown(p, -1, gid);
  // chown may have cleared set-id bits: take the mode as it is now.
  const now = fs.lstat(p) ?? st;
  fs.chmod(p, (now.mode & 0o7777) | mask);
}
