// A guest root file system on the build machine: checked as an input, and paths in it resolved
// as the guest would see them (chroot semantics), for the init check of initrd and image.
import fs from 'node:fs';
import path from 'node:path';
import { failedError, missingError, usageError } from './errors';

/** The rootfs given to `verb`: an existing, readable directory (MISSING / USAGE otherwise). */
export function checkRootfs(verb: string, dir: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw missingError(`the rootfs ${dir} does not exist`, 'build one with osbuilder rootfs');
    throw missingError(`the rootfs ${dir} cannot be read: ${code ?? (err as Error).message}`);
  }
  if (!st.isDirectory()) throw usageError(`the rootfs ${dir} is not a directory`, `see osbuilder ${verb} --help`);
  try {
    fs.accessSync(dir, fs.constants.R_OK | fs.constants.X_OK);
    fs.readdirSync(dir);
  } catch (err) {
    throw missingError(`the rootfs ${dir} cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
}

export type Resolved =
  | { ok: true; rel: string; stat: fs.Stats }
  | { ok: false; reason: string };

/**
 * Resolve `p` inside `root` as if `root` were "/" (chroot semantics): absolute symlink targets
 * start again at the root, ".." stops at the root, nothing outside the tree is looked at.
 */
export function resolveInRoot(root: string, p: string): Resolved {
  const todo = p.split('/').filter((c) => c !== '' && c !== '.');
  const cur: string[] = [];
  let links = 0;
  while (todo.length > 0) {
    const c = todo.shift()!;
    if (c === '..') {
      cur.pop();
      continue;
    }
    const abs = path.join(root, ...cur, c);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(abs);
    } catch {
      return { ok: false, reason: `/${[...cur, c].join('/')} does not exist` };
    }
    if (st.isSymbolicLink()) {
      if (++links > 40) return { ok: false, reason: `too many levels of symbolic links at /${[...cur, c].join('/')}` };
      const t = fs.readlinkSync(abs);
      if (t.startsWith('/')) cur.length = 0;
      todo.unshift(...t.split('/').filter((x) => x !== '' && x !== '.'));
      continue;
    }
    if (todo.length > 0 && !st.isDirectory()) return { ok: false, reason: `/${[...cur, c].join('/')} is not a directory` };
    cur.push(c);
  }
  const rel = cur.join('/');
  return { ok: true, rel: `/${rel}`, stat: fs.lstatSync(path.join(root, rel)) };
}

export interface InitCheck {
  /** "/init" or "/sbin/init": the first that resolves to an executable file. */
  path: '/init' | '/sbin/init';
  /** What it resolves to inside the rootfs. */
  resolved: string;
}

/**
 * The rootfs's init: /init (what the kernel runs from an initramfs) or, when there is no /init
 * at all, /sbin/init; symlinks are followed inside the rootfs. Throws FAILED naming what is
 * wrong when it is not an executable regular file (an /init that exists but is broken is an
 * error too: the kernel would not fall back to /sbin/init).
 */
export function findInit(root: string): InitCheck {
  const problems: string[] = [];
  for (const p of ['/init', '/sbin/init'] as const) {
    const r = resolveInRoot(root, p);
    if (!r.ok) {
      problems.push(`${p}: ${r.reason}`);
      if (p === '/init' && lexists(path.join(root, 'init'))) break;
      continue;
    }
    const via = r.rel === p ? '' : ` (-> ${r.rel})`;
    if (!r.stat.isFile()) problems.push(`${p}${via} is not a regular file`);
    else if ((r.stat.mode & 0o111) === 0) problems.push(`${p}${via} is not executable`);
    else return { path: p, resolved: r.rel };
    if (p === '/init') break;
  }
  throw failedError(`the rootfs ${root} has no usable init: ${problems.join('; ')}`, 'the kernel runs /init from an initrd; build the rootfs with osbuilder rootfs, or give it an executable /init or /sbin/init');
}

/** Whether a path exists, a dangling symlink included. */
export function lexists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

