// File operations on a root file system under construction, with chroot semantics: a path
// like /sbin/init is resolved inside the tree, following its symlinks as the guest would
// (an absolute link target such as /usr/lib64/ld-linux-x86-64.so.2 -> /lib/x86_64-linux-gnu/...
// is taken relative to the tree, never to the build machine's /), so osbuilder never writes
// through a link onto the host.
import fs from 'node:fs';
import path from 'node:path';
import { failedError } from '../util/errors';

const MAX_LINKS = 40;

/**
 * The host path of `p` (absolute, as the guest sees it) inside `root`, every symlink followed
 * inside the tree (the last component too unless followLast is false). Components that do not
 * exist are appended as they are (so the result can be created).
 */
export function resolveInRoot(root: string, p: string, o: { followLast?: boolean } = {}): string {
  const followLast = o.followLast ?? true;
  const rootAbs = path.resolve(root);
  let parts = p.split('/').filter((c) => c !== '' && c !== '.');
  const cur: string[] = [];
  let links = 0;
  while (parts.length > 0) {
    const c = parts.shift()!;
    if (c === '..') {
      cur.pop();
      continue;
    }
    const host = path.join(rootAbs, ...cur, c);
    let st: fs.Stats | undefined;
    try {
      st = fs.lstatSync(host);
    } catch {
      st = undefined;
    }
    if (!st) {
      return path.join(rootAbs, ...cur, c, ...parts);
    }
    if (st.isSymbolicLink() && (parts.length > 0 || followLast)) {
      if (++links > MAX_LINKS) throw failedError(`too many levels of symbolic links resolving ${p} in ${root}`);
      const target = fs.readlinkSync(host);
      const tparts = target.split('/').filter((x) => x !== '' && x !== '.');
      if (target.startsWith('/')) cur.length = 0;
      parts = [...tparts, ...parts];
      continue;
    }
    cur.push(c);
  }
  return path.join(rootAbs, ...cur);
}

/** The guest path of a host path under root (the reverse of resolveInRoot, without links). */
export function guestPath(root: string, host: string): string {
  const rel = path.relative(path.resolve(root), host);
  return `/${rel.split(path.sep).join('/')}`.replace(/\/$/, '') || '/';
}

export function existsInRoot(root: string, p: string): boolean {
  return fs.existsSync(resolveInRoot(root, p));
}

/** mkdir -p inside the tree (through its links). */
export function mkdirInRoot(root: string, p: string, mode = 0o755): string {
  // The components resolveInRoot could not find are appended as they are (no links among
  // them), so creating the whole host path creates them inside the tree.
  const host = resolveInRoot(root, p);
  if (!fs.existsSync(host)) {
    fs.mkdirSync(path.dirname(host), { recursive: true, mode: 0o755 });
    fs.mkdirSync(host, { mode: mode & 0o777 });
    fs.chmodSync(host, mode);
  }
  return host;
}

/** Write a file (replacing one that is there: its link is replaced, not followed). */
export function writeFileInRoot(root: string, p: string, data: string | Buffer, mode = 0o644): string {
  mkdirInRoot(root, path.posix.dirname(p));
  const host = resolveInRoot(root, p, { followLast: false });
  fs.rmSync(host, { force: true, recursive: true });
  fs.writeFileSync(host, data, { mode });
  fs.chmodSync(host, mode);
  return host;
}

/** Copy a host file into the tree (content, not links), with `mode` (default: the source's). */
export function copyFileInRoot(root: string, src: string, p: string, mode?: number): string {
  mkdirInRoot(root, path.posix.dirname(p));
  const host = resolveInRoot(root, p, { followLast: false });
  fs.rmSync(host, { force: true, recursive: true });
  fs.copyFileSync(src, host);
  fs.chmodSync(host, mode ?? fs.statSync(src).mode & 0o7777);
  return host;
}

/** Create (or replace) the symlink p -> target. */
export function symlinkInRoot(root: string, target: string, p: string): string {
  mkdirInRoot(root, path.posix.dirname(p));
  const host = resolveInRoot(root, p, { followLast: false });
  fs.rmSync(host, { force: true, recursive: true });
  fs.symlinkSync(target, host);
  return host;
}

/** Every entry under dir (depth first, sorted), not following links. */
export function* walk(dir: string): Generator<{ path: string; st: fs.Stats }> {
  let names: string[];
  try {
    names = fs.readdirSync(dir).sort();
  } catch {
    return;
  }
  for (const n of names) {
    const p = path.join(dir, n);
    const st = fs.lstatSync(p);
    yield { path: p, st };
    if (st.isDirectory()) yield* walk(p);
  }
}

/** Bytes used by the tree (apparent sizes of regular files and links; hard links once). */
export function treeSize(dir: string): { bytes: number; files: number } {
  const seen = new Set<string>();
  let bytes = 0;
  let files = 0;
  for (const { st } of walk(dir)) {
    files++;
    if (st.isDirectory()) continue;
    if (st.nlink > 1) {
      const k = `${st.dev}:${st.ino}`;
      if (seen.has(k)) continue;
      seen.add(k);
    }
    bytes += st.size;
  }
  return { bytes, files };
}

/** Clamp every mtime/atime in the tree (and the tree itself) to at most `epoch` seconds. */
export function clampMtimes(dir: string, epoch: number): void {
  const clamp = (p: string, st: fs.Stats): void => {
    if (st.mtimeMs / 1000 <= epoch && st.atimeMs / 1000 <= epoch) return;
    const t = Math.min(st.mtimeMs / 1000, epoch);
    fs.lutimesSync(p, t, t);
  };
  const entries = [...walk(dir)];
  // Files first, then directories deepest first (changing an entry does not touch its parent's
  // mtime, but being careful costs nothing).
  for (const e of entries.reverse()) clamp(e.path, e.st);
  clamp(dir, fs.lstatSync(dir));
}
