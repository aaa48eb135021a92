// Early mounts of a PID-1 agent: /proc, /sys, /dev, /dev/pts, /dev/shm, /run.
// Each is skipped when a file system of the same type is already mounted at the
// target, and a failure is logged and reported, never fatal.
import { MS } from '../sys/mount';
import { parseMountInfo, mountedType } from './mountinfo';
import { at, errMsg, type InitContext } from './sys';

export interface InitMount {
  source: string;
  /** Absolute guest path (joined onto the context root). */
  target: string;
  fstype: string;
  flags: number;
  data: string | null;
  /** Mode for creating the mount point when missing. */
  dirMode?: number;
}

export type MountStatus = 'mounted' | 'skipped' | 'failed';

export interface MountResult {
  /** Guest path (without the root prefix). */
  target: string;
  fstype: string;
  status: MountStatus;
  /** Mount data actually used (after fallbacks). */
  data?: string | null;
  error?: string;
}

export const EARLY_MOUNTS: readonly InitMount[] = [
  { source: 'proc', target: '/proc', fstype: 'proc', flags: MS.NOSUID | MS.NODEV | MS.NOEXEC, data: null },
  { source: 'sysfs', target: '/sys', fstype: 'sysfs', flags: MS.NOSUID | MS.NODEV | MS.NOEXEC, data: null },
  { source: 'dev', target: '/dev', fstype: 'devtmpfs', flags: MS.NOSUID, data: 'mode=0755' },
  {
    source: 'devpts',
    target: '/dev/pts',
    fstype: 'devpts',
    flags: MS.NOSUID | MS.NOEXEC,
    data: 'newinstance,ptmxmode=0666,mode=0620,gid=5',
  },
  { source: 'shm', target: '/dev/shm', fstype: 'tmpfs', flags: MS.NOSUID | MS.NODEV, data: 'mode=1777', dirMode: 0o1777 },
  { source: 'tmpfs', target: '/run', fstype: 'tmpfs', flags: MS.NOSUID | MS.NODEV, data: 'mode=0755' },
];

/** Symlinks a usable /dev needs (devtmpfs does not provide them); created only when missing. */
export const DEV_SYMLINKS: readonly [path: string, target: string][] = [
  ['/dev/fd', '/proc/self/fd'],
  ['/dev/stdin', '/proc/self/fd/0'],
  ['/dev/stdout', '/proc/self/fd/1'],
  ['/dev/stderr', '/proc/self/fd/2'],
];

/** What is mounted now, read from <root>/proc/self/mountinfo ([] before /proc is up). */
export function currentMounts(ctx: InitContext) {
  try {
    return parseMountInfo(ctx.sys.readFile(at(ctx.root, '/proc/self/mountinfo')));
  } catch {
    return [];
  }
}

/**
 * Mount one file system unless one of the same type is already there.
 * `fallbackData` (tried in order after `m.data` fails) lets a caller drop optional options.
 */
export function mountOnce(ctx: InitContext, m: InitMount, fallbackData: (string | null)[] = []): MountResult {
  const { sys, log } = ctx;
  const target = at(ctx.root, m.target);
  const present = mountedType(currentMounts(ctx), target);
  if (present === m.fstype) {
    log.debug({ target: m.target, fstype: m.fstype }, 'already mounted; skipping');
    return { target: m.target, fstype: m.fstype, status: 'skipped' };
  }
  try {
    if (!sys.exists(target)) sys.mkdir(target, m.dirMode ?? 0o755);
  } catch (e) {
    log.warn({ target: m.target, err: errMsg(e) }, 'cannot create mount point');
  }
  const attempts = [m.data, ...fallbackData];
  let last: unknown;
  for (let i = 0; i < attempts.length; i++) {
    const data = attempts[i]!;
    try {
      sys.mount(m.source, target, m.fstype, m.flags, data);
      log.debug({ target: m.target, fstype: m.fstype, data }, 'mounted');
      return { target: m.target, fstype: m.fstype, status: 'mounted', data };
    } catch (e) {
      last = e;
      if (i < attempts.length - 1) {
        log.debug({ target: m.target, fstype: m.fstype, data, err: errMsg(e) }, 'mount failed; retrying with fewer options');
      }
    }
  }
  log.error({ target: m.target, fstype: m.fstype, err: errMsg(last) }, 'mount failed');
  return { target: m.target, fstype: m.fstype, status: 'failed', error: errMsg(last) };
}

/** Make /dev/ptmx a symlink to pts/ptmx (the devpts instance's multiplexer). */
export function linkPtmx(ctx: InitContext): { ok: boolean; error?: string } {
  const p = at(ctx.root, '/dev/ptmx');
  try {
    if (ctx.sys.readlink(p) === 'pts/ptmx') return { ok: true };
    if (ctx.sys.exists(p) || ctx.sys.readlink(p) !== undefined) ctx.sys.unlink(p);
    ctx.sys.symlink('pts/ptmx', p);
    return { ok: true };
  } catch (e) {
    ctx.log.error({ path: '/dev/ptmx', err: errMsg(e) }, 'cannot link /dev/ptmx to pts/ptmx');
    return { ok: false, error: errMsg(e) };
  }
}

/** Create the /dev/fd, /dev/std{in,out,err} symlinks when missing; failures are logged. */
export function devSymlinks(ctx: InitContext): string[] {
  const made: string[] = [];
  for (const [path, target] of DEV_SYMLINKS) {
    const p = at(ctx.root, path);
    try {
      if (ctx.sys.exists(p) || ctx.sys.readlink(p) !== undefined) continue;
      ctx.sys.symlink(target, p);
      made.push(path);
    } catch (e) {
      ctx.log.warn({ path, err: errMsg(e) }, 'cannot create /dev symlink');
    }
  }
  return made;
}

/**
 * Mount the early file systems (default EARLY_MOUNTS, in order), then fix up /dev:
 * /dev/ptmx -> pts/ptmx when /dev/pts is in the table and mounted, plus the fd symlinks
 * when /dev is in the table. Never throws.
 */
export function earlyMounts(ctx: InitContext, table: readonly InitMount[] = EARLY_MOUNTS): MountResult[] {
  const results = table.map((m) => mountOnce(ctx, m));
  const pts = results.find((r) => r.target === '/dev/pts');
  if (pts && pts.status !== 'failed') {
    const r = linkPtmx(ctx);
    if (!r.ok) results.push({ target: '/dev/ptmx', fstype: 'symlink', status: 'failed', error: r.error });
  }
  if (results.some((r) => r.target === '/dev' && r.status !== 'failed')) devSymlinks(ctx);
  return results;
}
