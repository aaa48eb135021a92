// Directory-fd relative file syscalls that node:fs lacks: openat, mkdirat,
// symlinkat, fchownat, renameat, unlinkat and a readdir on an fd. They let
// callers walk a tree one component at a time with O_NOFOLLOW so that nothing
// outside a chosen root can be reached through symlinks or '..'.
//
// Names are passed as NUL-terminated byte buffers, so any byte string a
// directory may hold (not only valid UTF-8) can be named exactly.
import os from 'node:os';
import { SysError, check, errno, fn, koffi } from './libc';

const E = os.constants.errno;

/** open(2) flags (Linux, x86_64/aarch64 values). */
export const O = {
  RDONLY: 0,
  WRONLY: 0o1,
  RDWR: 0o2,
  CREAT: 0o100,
  EXCL: 0o200,
  NOCTTY: 0o400,
  TRUNC: 0o1000,
  APPEND: 0o2000,
  NONBLOCK: 0o4000,
  DIRECTORY: 0o200000,
  NOFOLLOW: 0o400000,
  CLOEXEC: 0o2000000,
  PATH: 0o10000000,
} as const;

export const AT_FDCWD = -100;
export const AT_SYMLINK_NOFOLLOW = 0x100;
export const AT_REMOVEDIR = 0x200;
export const AT_EMPTY_PATH = 0x1000;

/** File type bits of st_mode. */
export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;

/** d_type values of struct dirent. */
export const DT = { UNKNOWN: 0, FIFO: 1, CHR: 2, DIR: 4, BLK: 6, REG: 8, LNK: 10, SOCK: 12 } as const;

export type Name = string | Uint8Array;

/** A NUL-terminated copy of a name (strings are UTF-8 encoded). */
export function cstr(name: Name): Buffer {
  const bytes = typeof name === 'string' ? Buffer.from(name, 'utf8') : Buffer.from(name);
  if (bytes.includes(0)) throw new SysError('cstr', E.EINVAL, printable(name), 'name contains a NUL byte');
  return Buffer.concat([bytes, Buffer.from([0])]);
}

function printable(name: Name): string {
  return typeof name === 'string' ? name : Buffer.from(name).toString('utf8');
}

/** -1 ("leave unchanged") and 0..2^32-1 are valid owner ids; returns the unsigned form. */
function idArg(id: number): number {
  return id === -1 ? 0xffffffff : id >>> 0;
}

export function openat(dirfd: number, name: Name, flags: number, mode = 0): number {
  const f = fn('int openat(int dirfd, const uint8_t *path, int flags, unsigned int mode)');
  return check(f(dirfd, cstr(name), flags | O.CLOEXEC, mode) as number, 'openat', printable(name));
}

export function mkdirat(dirfd: number, name: Name, mode: number): void {
  const f = fn('int mkdirat(int dirfd, const uint8_t *path, unsigned int mode)');
  check(f(dirfd, cstr(name), mode) as number, 'mkdirat', printable(name));
}

/** Create a symlink `name` (relative to dirfd) whose content is `target`. */
export function symlinkat(target: Name, dirfd: number, name: Name): void {
  const f = fn('int symlinkat(const uint8_t *target, int dirfd, const uint8_t *path)');
  check(f(cstr(target), dirfd, cstr(name)) as number, 'symlinkat', printable(name));
}

export function fchownat(dirfd: number, name: Name, uid: number, gid: number, flags: number): void {
  const f = fn('int fchownat(int dirfd, const uint8_t *path, uint32_t uid, uint32_t gid, int flags)');
  check(f(dirfd, cstr(name), idArg(uid), idArg(gid), flags) as number, 'fchownat', printable(name));
}

export function fchown(fd: number, uid: number, gid: number): void {
  const f = fn('int fchown(int fd, uint32_t uid, uint32_t gid)');
  check(f(fd, idArg(uid), idArg(gid)) as number, 'fchown', undefined, `fd ${fd}`);
}

export function fchmod(fd: number, mode: number): void {
  const f = fn('int fchmod(int fd, unsigned int mode)');
  check(f(fd, mode) as number, 'fchmod', undefined, `fd ${fd}`);
}

export function renameat(olddirfd: number, oldname: Name, newdirfd: number, newname: Name): void {
  const f = fn('int renameat(int olddirfd, const uint8_t *oldpath, int newdirfd, const uint8_t *newpath)');
  check(
    f(olddirfd, cstr(oldname), newdirfd, cstr(newname)) as number,
    'renameat',
    printable(newname),
    `from ${printable(oldname)}`,
  );
}

export function unlinkat(dirfd: number, name: Name, flags = 0): void {
  const f = fn('int unlinkat(int dirfd, const uint8_t *path, int flags)');
  check(f(dirfd, cstr(name), flags) as number, 'unlinkat', printable(name));
}

export function closeFd(fd: number): void {
  check(fn('int close(int fd)')(fd) as number, 'close', undefined, `fd ${fd}`);
}

const F_DUPFD_CLOEXEC = 1030;

let direntType: ReturnType<typeof koffi.struct> | undefined;
function dirent() {
  // glibc struct dirent (== dirent64 on 64-bit Linux).
  direntType ??= koffi.struct({
    d_ino: 'uint64',
    d_off: 'int64',
    d_reclen: 'uint16',
    d_type: 'uint8',
    d_name: koffi.array('uint8', 256, 'Typed'),
  });
  return direntType;
}

export interface DirEntry {
  /** The raw name bytes (without NUL). */
  name: Buffer;
  /** DT_* value; DT.UNKNOWN when the filesystem does not report it. */
  type: number;
}

/**
 * List the entries of the open directory `fd` ('.' and '..' excluded). The fd
 * stays open and owned by the caller (a duplicate is handed to fdopendir).
 */
export function readdirFd(fd: number): DirEntry[] {
  const dup = check(fn('int fcntl(int fd, int cmd, int arg)')(fd, F_DUPFD_CLOEXEC, 0) as number, 'fcntl', undefined, `F_DUPFD_CLOEXEC fd ${fd}`);
  const dir = fn('void *fdopendir(int fd)')(dup);
  if (!dir) {
    const err = errno();
    closeFd(dup);
    throw new SysError('fdopendir', err, undefined, `fd ${fd}`);
  }
  const readdir = fn('void *readdir(void *dir)');
  const entries: DirEntry[] = [];
  try {
    // fdopendir on a duplicate shares the file offset: start from the top.
    fn('void rewinddir(void *dir)')(dir);
    for (;;) {
      koffi.errno(0);
      const ent = readdir(dir);
      if (!ent) {
        const err = errno();
        if (err !== 0) throw new SysError('readdir', err, undefined, `fd ${fd}`);
        break;
      }
      const d = koffi.decode(ent, dirent()) as { d_type: number; d_name: Uint8Array };
      const raw = Buffer.from(d.d_name.buffer, d.d_name.byteOffset, d.d_name.byteLength);
      const end = raw.indexOf(0);
      const name = Buffer.from(raw.subarray(0, end < 0 ? raw.length : end));
      if (name.length === 1 && name[0] === 0x2e) continue;
      if (name.length === 2 && name[0] === 0x2e && name[1] === 0x2e) continue;
      entries.push({ name, type: d.d_type });
    }
  } finally {
    fn('int closedir(void *dir)')(dir);
  }
  return entries;
}

/**
 * Remove `name` in directory `dirfd`, recursively when it is a directory,
 * never following symlinks (a symlink is removed itself). Missing is fine.
 */
export function removeAllAt(dirfd: number, name: Name): void {
  try {
    unlinkat(dirfd, name, 0);
    return;
  } catch (err) {
    const code = (err as SysError).errno;
    if (code === E.ENOENT) return;
    if (code !== E.EISDIR && code !== E.EPERM) throw err;
  }
  let fd: number;
  try {
    fd = openat(dirfd, name, O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
  } catch (err) {
    if ((err as SysError).errno === E.ENOENT) return;
    throw err;
  }
  try {
    for (const ent of readdirFd(fd)) removeAllAt(fd, ent.name);
  } finally {
    closeFd(fd);
  }
  try {
    unlinkat(dirfd, name, AT_REMOVEDIR);
  } catch (err) {
    if ((err as SysError).errno !== E.ENOENT) throw err;
  }
}

/** memfd_create(2) flags and fcntl(2) file seals (F_ADD_SEALS / F_GET_SEALS). */
export const MFD = { CLOEXEC: 0x1, ALLOW_SEALING: 0x2 } as const;
export const F_ADD_SEALS = 1033;
export const F_GET_SEALS = 1034;
export const F_SEAL = { SEAL: 0x1, SHRINK: 0x2, GROW: 0x4, WRITE: 0x8 } as const;

/** An anonymous memory-backed file; returns its fd (always close-on-exec). */
export function memfdCreate(name: string, flags: number = MFD.ALLOW_SEALING): number {
  const f = fn('int memfd_create(const char *name, unsigned int flags)');
  return check(f(name, flags | MFD.CLOEXEC) as number, 'memfd_create', name);
}

/** Add seals to a memfd (fcntl F_ADD_SEALS). */
export function addSeals(fd: number, seals: number): void {
  const f = fn('int fcntl(int fd, int cmd, int arg)');
  check(f(fd, F_ADD_SEALS, seals) as number, 'fcntl', undefined, `F_ADD_SEALS fd ${fd}`);
}

/** The seals of a file (fcntl F_GET_SEALS); EINVAL for files that cannot be sealed. */
export function getSeals(fd: number): number {
  const f = fn('int fcntl(int fd, int cmd, int arg)');
  return check(f(fd, F_GET_SEALS, 0) as number, 'fcntl', undefined, `F_GET_SEALS fd ${fd}`);
}
