// StorageDeps backed by the real system: sys/mount (koffi) for mount(2) and
// umount2(2), node:fs for files, /proc/self/mountinfo for the mount table.
import fs from 'node:fs';
import { parseMountInfo } from '../init/mountinfo';
import type { Logger } from '../log';
import { mount, umount2 } from '../sys/mount';
import type { BlockDevices, FileKind, FileStat, StorageDeps, StorageFs } from './types';

function kindOf(st: fs.Stats): FileKind {
  if (st.isDirectory()) return 'dir';
  if (st.isFile()) return 'file';
  if (st.isSymbolicLink()) return 'symlink';
  if (st.isBlockDevice()) return 'block';
  if (st.isCharacterDevice()) return 'char';
  return 'other';
}

function toStat(st: fs.Stats | undefined): FileStat | undefined {
  return st && { kind: kindOf(st), mode: st.mode, uid: st.uid, gid: st.gid };
}

export const realStorageFs: StorageFs = {
  lstat: (p) => toStat(fs.lstatSync(p, { throwIfNoEntry: false })),
  stat: (p) => toStat(fs.statSync(p, { throwIfNoEntry: false })),
  realpath: (p) => fs.realpathSync(p),
  mkdir: (p, mode) => fs.mkdirSync(p, { mode }),
  rmdir: (p) => fs.rmdirSync(p),
  // (node opens every file close-on-exec)
  createFile: (p, mode) => {
    const c = fs.constants;
    fs.closeSync(fs.openSync(p, c.O_WRONLY | c.O_CREAT | c.O_EXCL | c.O_NOFOLLOW, mode));
  },
  unlink: (p) => fs.unlinkSync(p),
  lchown: (p, uid, gid) => fs.lchownSync(p, uid, gid),
  chmod: (p, mode) => fs.chmodSync(p, mode),
  readdir: (p) => fs.readdirSync(p),
  readFile: (p) => fs.readFileSync(p, 'utf8'),
  writeFile: (p, data) => fs.writeFileSync(p, data),
};

export interface RealStorageDepsOptions {
  devices: BlockDevices;
  log: Logger;
  hugepagesDir?: string;
}

export function realStorageDeps(opts: RealStorageDepsOptions): StorageDeps {
  return {
    mount,
    umount: umount2,
    mountInfo: () => parseMountInfo(fs.readFileSync('/proc/self/mountinfo', 'utf8')),
    fs: realStorageFs,
    devices: opts.devices,
    log: opts.log,
    ...(opts.hugepagesDir ? { hugepagesDir: opts.hugepagesDir } : {}),
  };
}
