// Mount-point confinement. A mount point the host names must be absolute, lie
// strictly under the storage root (default /run/kata-containers/), contain no
// "..", and lead through no symbolic link: existing components are checked
// with lstat (never followed) and missing ones are created one at a time, each
// checked again after its mkdir, so nothing a container planted in a shared
// directory can redirect a mount outside the root.
import path from 'node:path';
import { Code, RpcError, toStatus } from '../rpc/status';
import type { StorageFs } from './types';

export const DEFAULT_STORAGE_ROOT = '/run/kata-containers/';

/** Mode of directories created on the way to a mount point (Kata: MOUNT_PERM). */
export const MOUNT_DIR_MODE = 0o755;

function invalid(msg: string): RpcError {
  return new RpcError(Code.INVALID_ARGUMENT, msg);
}

function errCode(e: unknown): string | undefined {
  const c = (e as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : undefined;
}

/** Wrap a failed file operation as an RpcError whose code follows its errno. */
export function fsFailure(what: string, e: unknown): RpcError {
  if (e instanceof RpcError) return e;
  const detail = e instanceof Error ? e.message : String(e);
  return new RpcError(toStatus(e).code, `${what}: ${detail}`);
}

function normalise(p: string): string {
  const parts = p.split('/').filter((c) => c !== '' && c !== '.');
  return `/${parts.join('/')}`;
}

/**
 * Lexical checks of `p` against `root`: absolute, no ".." component, strictly
 * below root. Returns the normalised path (no "." or empty components, no
 * trailing slash).
 */
export function checkMountPoint(p: string, root: string, what = 'mount point'): string {
  const shown = JSON.stringify(p);
  if (p === '') throw invalid(`${what} is empty`);
  if (p.includes('\0')) throw invalid(`${what} ${shown} contains a NUL byte`);
  if (!p.startsWith('/')) throw invalid(`${what} ${shown} is not an absolute path`);
  if (p.split('/').includes('..')) throw invalid(`${what} ${shown} contains ".."`);
  const n = normalise(p);
  const r = normalise(root);
  const inside = r === '/' ? n !== '/' : n.startsWith(`${r}/`);
  if (!inside) throw invalid(`${what} ${shown} is not under ${r === '/' ? '/' : `${r}/`}`);
  return n;
}

export type TargetKind = 'dir' | 'file';

export interface Confined {
  /** The mount point below the real (symlink-free) root. */
  path: string;
  /** Directories / files created on the way, outermost first. */
  created: string[];
}

/** The real path of the storage root, created (mkdir -p) when missing. The root is configuration, so it may be reached through symlinks. */
export function realRoot(fs: StorageFs, root: string): string {
  const r = normalise(root);
  let cur = '';
  for (const c of r.split('/').filter(Boolean)) {
    cur += `/${c}`;
    if (fs.stat(cur)) continue;
    try {
      fs.mkdir(cur, MOUNT_DIR_MODE);
    } catch (e) {
      if (errCode(e) !== 'EEXIST') throw fsFailure(`storage root ${r}: mkdir ${cur}`, e);
    }
  }
  try {
    return fs.realpath(r);
  } catch (e) {
    throw fsFailure(`storage root ${r}: realpath`, e);
  }
}

/** Where `p` lies below the real root (after the lexical checks); creates nothing below the root. */
export function realTarget(fs: StorageFs, root: string, p: string, what = 'mount point'): string {
  const n = checkMountPoint(p, root, what);
  const rel = path.posix.relative(normalise(root), n);
  const base = realRoot(fs, root);
  return `${base === '/' ? '' : base}/${rel}`;
}

/**
 * Make `p` (already lexically checked to be under `root`) exist as a `kind`
 * without following any symlink below the root. Missing components are created
 * (directories 0755; a missing last component of kind 'file' as an empty file).
 * Throws INVALID_ARGUMENT naming the path when a component is a symlink or not
 * a directory, or when the last component exists as the wrong kind.
 */
export function confine(fs: StorageFs, root: string, p: string, kind: TargetKind, what = 'mount point'): Confined {
  const n = checkMountPoint(p, root, what);
  const rel = path.posix.relative(normalise(root), n);
  const base = realRoot(fs, root);
  const parts = rel.split('/');
  const created: string[] = [];
  const shown = JSON.stringify(p);
  let cur = base;
  try {
    for (let i = 0; i < parts.length; i++) {
      const last = i === parts.length - 1;
      const next = `${cur === '/' ? '' : cur}/${parts[i]}`;
      let st = fs.lstat(next);
      if (!st) {
        try {
          if (last && kind === 'file') fs.createFile(next, 0o644);
          else fs.mkdir(next, MOUNT_DIR_MODE);
          created.push(next);
        } catch (e) {
          if (errCode(e) !== 'EEXIST') throw fsFailure(`${what} ${shown}: cannot create ${next}`, e);
        }
        // Check what is there now (ours, or whatever won a race with us).
        st = fs.lstat(next);
        if (!st) throw new RpcError(Code.INTERNAL, `${what} ${shown}: ${next} vanished after it was created`);
      }
      if (st.kind === 'symlink') {
        throw invalid(`${what} ${shown} leads through the symbolic link ${next} (mount points must not contain symlinks)`);
      }
      if (!last && st.kind !== 'dir') throw invalid(`${what} ${shown}: ${next} is not a directory`);
      if (last && kind === 'dir' && st.kind !== 'dir') throw invalid(`${what} ${shown} exists and is not a directory`);
      if (last && kind === 'file' && st.kind === 'dir') throw invalid(`${what} ${shown} is a directory but the source is a file`);
      cur = next;
    }
  } catch (e) {
    removeCreated(fs, created);
    throw e;
  }
  return { path: cur, created };
}

/** Remove what confine() created, innermost first; anything not empty (or busy) stays. */
export function removeCreated(fs: StorageFs, created: readonly string[]): string[] {
  const left: string[] = [];
  for (const p of [...created].reverse()) {
    try {
      const st = fs.lstat(p);
      if (!st) continue;
      if (st.kind === 'dir') fs.rmdir(p);
      else fs.unlink(p);
    } catch {
      left.push(p);
    }
  }
  return left;
}
