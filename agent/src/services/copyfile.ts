// CopyFile: the host pushes files (hostname, resolv.conf, config maps, ... when
// there is no shared filesystem) into the guest's shared containers
// directory, in chunks.
//
// Semantics follow the Kata agent's do_copy_file (src/agent/src/rpc.rs):
// - the destination must lie under the shared directory;
// - missing parent directories are created with dir_mode, and the immediate
//   parent is chowned to uid/gid;
// - file_mode's type bits select a directory (created/kept, chmod+chown), a
//   symlink (target = data) or a regular file;
// - a regular file is written chunk by chunk (data at offset) into a temp file
//   beside the destination; when its size reaches file_size it gets file_mode,
//   uid and gid and is renamed over the destination.
// Confinement: the path is resolved one component at a time from an fd of the
// shared directory with O_NOFOLLOW, so neither '..' (rejected up front) nor a
// symlink anywhere in the path can lead outside it; the final component is
// only ever replaced by rename/unlink, never written through.
// Deviations from Kata (all stricter or safer):
// - the temp name is derived from the whole final name (Kata's "x.tmp" makes
//   "x.a" and "x.b" share a temp file);
// - a chunk at offset > 0 needs the upload started at offset 0 (Kata would
//   create a file with a hole);
// - an existing destination is replaced atomically by rename at the end, not
//   deleted when the first chunk arrives; a directory in the way is removed;
// - chown happens before chmod so that setuid/setgid bits survive (chown
//   clears them); created parents get exactly dir_mode (no umask);
// - the shared directory itself is never chowned.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Handler } from '../rpc/dispatch';
import { Code, RpcError, invalidArgument } from '../rpc/status';
import { SysError } from '../sys/libc';
import {
  AT_FDCWD,
  AT_SYMLINK_NOFOLLOW,
  O,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  closeFd,
  fchmod,
  fchown,
  fchownat,
  mkdirat,
  openat,
  removeAllAt,
  renameat,
  symlinkat,
  unlinkat,
} from '../sys/fs';
import type { ResolvedDeps } from './deps';
import { bytesField, intField, stringField, wrapError } from './util';

const E = os.constants.errno;

/** Kata's IMPLICIT_DIRECTORY_PERMISSION_MASK and FILE_PERMISSION_MASK. */
export const DIR_PERM_MASK = 0o777;
export const FILE_PERM_MASK = 0o7777;

const NAME_MAX = 255;

export type CopyKind = 'file' | 'dir' | 'symlink';

export interface CopyFileArgs {
  path: string;
  fileSize: number;
  fileMode: number;
  dirMode: number;
  uid: number;
  gid: number;
  offset: number;
  data: Buffer;
  kind: CopyKind;
}

/** Validate and normalise a decoded CopyFileRequest. */
export function parseCopyFileRequest(req: Record<string, unknown>): CopyFileArgs {
  const p = stringField(req.path, 'CopyFile: path');
  const fileSize = intField(req.file_size, 'CopyFile: file_size', 0);
  const fileMode = intField(req.file_mode, 'CopyFile: file_mode', 0, 0xffffffff);
  const dirMode = intField(req.dir_mode, 'CopyFile: dir_mode', 0, 0xffffffff);
  // int32 on the wire; -1 means "leave unchanged" as for chown(2).
  const uid = intField(req.uid, 'CopyFile: uid', -1, 0x7fffffff);
  const gid = intField(req.gid, 'CopyFile: gid', -1, 0x7fffffff);
  const offset = intField(req.offset, 'CopyFile: offset', 0);
  const data = bytesField(req.data, 'CopyFile: data');
  const type = fileMode & S_IFMT;
  let kind: CopyKind;
  if (type === 0 || type === S_IFREG) kind = 'file';
  else if (type === S_IFDIR) kind = 'dir';
  else if (type === S_IFLNK) kind = 'symlink';
  else throw invalidArgument(`CopyFile ${p}: unsupported file type 0o${type.toString(8)} in file_mode 0o${fileMode.toString(8)}`);
  if (kind === 'file' && offset + data.length > fileSize) {
    throw invalidArgument(
      `CopyFile ${p}: chunk at offset ${offset} with ${data.length} bytes goes beyond file_size ${fileSize}`,
    );
  }
  if (kind === 'symlink') {
    if (data.length === 0) throw invalidArgument(`CopyFile ${p}: symlink without a target (data is empty)`);
    if (data.includes(0)) throw invalidArgument(`CopyFile ${p}: symlink target contains a NUL byte`);
  }
  return { path: p, fileSize, fileMode, dirMode, uid, gid, offset, data, kind };
}

/**
 * Split `p` into its components below `root`. Rejects relative paths, '..',
 * NUL bytes, over-long names, paths outside root and root itself.
 */
export function componentsBelow(root: string, p: string): string[] {
  if (p === '') throw invalidArgument('CopyFile: path is empty');
  if (p.includes('\0')) throw invalidArgument(`CopyFile ${JSON.stringify(p)}: path contains a NUL byte`);
  if (!p.startsWith('/')) throw invalidArgument(`CopyFile ${p}: path must be absolute (under ${root})`);
  const parts = p.split('/').filter((c) => c !== '' && c !== '.');
  if (parts.includes('..')) throw invalidArgument(`CopyFile ${p}: '..' path components are not allowed`);
  const rootParts = path.resolve(root).split('/').filter((c) => c !== '');
  const under = rootParts.every((c, i) => parts[i] === c);
  if (!under) throw new RpcError(Code.PERMISSION_DENIED, `CopyFile ${p}: path is outside ${root}`);
  const rest = parts.slice(rootParts.length);
  if (rest.length === 0) throw invalidArgument(`CopyFile ${p}: path names ${root} itself, not a file below it`);
  for (const c of rest) {
    if (Buffer.byteLength(c) > NAME_MAX) throw invalidArgument(`CopyFile ${p}: component ${c.slice(0, 32)}... is longer than ${NAME_MAX} bytes`);
  }
  return rest;
}

/** The temp file for an upload to `leaf`: unique per final name, in the same directory. */
export function tempName(leaf: string): string {
  const readable = `.${leaf}.kata-copy.tmp`;
  if (Buffer.byteLength(readable) <= NAME_MAX) return readable;
  return `.kata-copy.${crypto.createHash('sha256').update(leaf).digest('hex').slice(0, 32)}.tmp`;
}

type EntryKind = 'dir' | 'file' | 'symlink' | 'other';

/** What `name` in `dirFd` is, without following a symlink; null when missing. */
function kindAt(dirFd: number, name: string): EntryKind | null {
  let fd: number;
  try {
    fd = openat(dirFd, name, O.PATH | O.NOFOLLOW);
  } catch (err) {
    if ((err as SysError).errno === E.ENOENT) return null;
    throw err;
  }
  try {
    const st = fs.fstatSync(fd);
    if (st.isSymbolicLink()) return 'symlink';
    if (st.isDirectory()) return 'dir';
    if (st.isFile()) return 'file';
    return 'other';
  } finally {
    closeFd(fd);
  }
}

function symlinkRefused(p: string, shown: string, root: string): RpcError {
  return new RpcError(
    Code.PERMISSION_DENIED,
    `CopyFile ${p}: ${shown} is a symlink; symlinks are not followed below ${root}`,
  );
}

/** Open directory `name` in `dirFd` without following symlinks; null when missing. */
function openDir(dirFd: number, name: string, p: string, shown: string, root: string): number | null {
  try {
    return openat(dirFd, name, O.RDONLY | O.DIRECTORY | O.NOFOLLOW);
  } catch (err) {
    const e = (err as SysError).errno;
    if (e === E.ENOENT) return null;
    if (e === E.ELOOP) throw symlinkRefused(p, shown, root);
    if (e === E.ENOTDIR) {
      if (kindAt(dirFd, name) === 'symlink') throw symlinkRefused(p, shown, root);
      throw new RpcError(Code.FAILED_PRECONDITION, `CopyFile ${p}: ${shown} exists and is not a directory`);
    }
    throw err;
  }
}

/** Rename `tmp` over `leaf` in `dirFd`, removing a directory that is in the way. */
function replaceWith(dirFd: number, tmp: string, leaf: string): void {
  if (kindAt(dirFd, leaf) === 'dir') removeAllAt(dirFd, leaf);
  renameat(dirFd, tmp, dirFd, leaf);
}

/** Perform one CopyFile request below `root` (created when missing). */
export function copyFile(root: string, a: CopyFileArgs): void {
  const rest = componentsBelow(root, a.path);
  fs.mkdirSync(root, { recursive: true, mode: 0o755 });
  const fds: number[] = [];
  try {
    const rootFd = openat(AT_FDCWD, root, O.RDONLY | O.DIRECTORY);
    fds.push(rootFd);
    let dirFd = rootFd;
    for (let i = 0; i < rest.length - 1; i++) {
      const c = rest[i]!;
      const shown = path.join(root, ...rest.slice(0, i + 1));
      let fd = openDir(dirFd, c, a.path, shown, root);
      if (fd === null) {
        let created = false;
        try {
          mkdirat(dirFd, c, a.dirMode & DIR_PERM_MASK);
          created = true;
        } catch (err) {
          if ((err as SysError).errno !== E.EEXIST) throw err;
        }
        fd = openDir(dirFd, c, a.path, shown, root);
        if (fd === null) throw new RpcError(Code.ABORTED, `CopyFile ${a.path}: ${shown} vanished while being created`);
        if (created) fchmod(fd, a.dirMode & DIR_PERM_MASK);
      }
      fds.push(fd);
      dirFd = fd;
    }
    // Kata chowns the immediate parent (created or not); never the shared dir itself.
    if (rest.length > 1) fchown(dirFd, a.uid, a.gid);
    const leaf = rest[rest.length - 1]!;
    switch (a.kind) {
      case 'dir':
        copyDir(dirFd, leaf, a, root);
        break;
      case 'symlink':
        copySymlink(dirFd, leaf, a);
        break;
      case 'file':
        copyChunk(dirFd, leaf, a, root);
        break;
    }
  } finally {
    for (const fd of fds.reverse()) {
      try {
        closeFd(fd);
      } catch {
        /* nothing useful to do */
      }
    }
  }
}

function copyDir(parentFd: number, leaf: string, a: CopyFileArgs, root: string): void {
  // Keep an existing directory (Kata: for backwards compatibility); replace anything else.
  const kind = kindAt(parentFd, leaf);
  if (kind !== null && kind !== 'dir') unlinkat(parentFd, leaf, 0);
  if (kind !== 'dir') {
    try {
      mkdirat(parentFd, leaf, a.fileMode & DIR_PERM_MASK);
    } catch (err) {
      if ((err as SysError).errno !== E.EEXIST) throw err;
    }
  }
  const fd = openDir(parentFd, leaf, a.path, a.path, root);
  if (fd === null) throw new RpcError(Code.ABORTED, `CopyFile ${a.path}: directory vanished while being created`);
  try {
    fchown(fd, a.uid, a.gid);
    fchmod(fd, a.fileMode & FILE_PERM_MASK);
  } finally {
    closeFd(fd);
  }
}

function copySymlink(parentFd: number, leaf: string, a: CopyFileArgs): void {
  // Symlinks have no permissions on Linux: file_mode's permission bits are ignored.
  const tmp = tempName(leaf);
  removeAllAt(parentFd, tmp);
  symlinkat(a.data, parentFd, tmp);
  try {
    fchownat(parentFd, tmp, a.uid, a.gid, AT_SYMLINK_NOFOLLOW);
    replaceWith(parentFd, tmp, leaf);
  } catch (err) {
    try {
      unlinkat(parentFd, tmp, 0);
    } catch {
      /* already gone */
    }
    throw err;
  }
}

function copyChunk(parentFd: number, leaf: string, a: CopyFileArgs, root: string): void {
  const tmp = tempName(leaf);
  const shownTmp = path.join(path.dirname(a.path), tmp);
  let fd: number;
  if (a.offset === 0) {
    // A new upload: start from a fresh temp file.
    removeAllAt(parentFd, tmp);
    fd = openat(parentFd, tmp, O.RDWR | O.CREAT | O.EXCL | O.NOFOLLOW | O.NONBLOCK, 0o600);
  } else {
    try {
      fd = openat(parentFd, tmp, O.RDWR | O.NOFOLLOW | O.NONBLOCK);
    } catch (err) {
      const e = (err as SysError).errno;
      if (e === E.ENOENT) {
        throw new RpcError(
          Code.FAILED_PRECONDITION,
          `CopyFile ${a.path}: chunk at offset ${a.offset} but no upload in progress (the chunk at offset 0 must come first)`,
        );
      }
      if (e === E.ELOOP) throw symlinkRefused(a.path, shownTmp, root);
      throw err;
    }
  }
  let done = false;
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new RpcError(Code.FAILED_PRECONDITION, `CopyFile ${a.path}: ${shownTmp} is not a regular file`);
    let off = 0;
    while (off < a.data.length) {
      off += fs.writeSync(fd, a.data, off, a.data.length - off, a.offset + off);
    }
    const size = fs.fstatSync(fd).size;
    if (size < a.fileSize) return; // more chunks to come
    if (size > a.fileSize) {
      throw new RpcError(
        Code.FAILED_PRECONDITION,
        `CopyFile ${a.path}: upload is ${size} bytes, more than file_size ${a.fileSize}; restart it at offset 0`,
      );
    }
    fchown(fd, a.uid, a.gid);
    fchmod(fd, a.fileMode & FILE_PERM_MASK);
    done = true;
  } finally {
    closeFd(fd);
  }
  if (done) replaceWith(parentFd, tmp, leaf);
}

export function makeCopyFile(d: ResolvedDeps): Handler {
  const root = d.paths.sharedContainers;
  return (req) => {
    const args = parseCopyFileRequest(req);
    try {
      copyFile(root, args);
    } catch (err) {
      throw wrapError(`CopyFile ${args.path}`, err);
    }
    return {};
  };
}
