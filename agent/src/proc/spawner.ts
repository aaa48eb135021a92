// The one way the agent starts a process: posix_spawn with explicit stdio
// (fds 0/1/2 carry O_CLOEXEC here, so nothing is inherited by accident),
// default signal dispositions, an empty signal mask, a new session by
// default, and every other fd closed. The pid is registered with the Reaper
// synchronously after posix_spawn returns, so its exit cannot be missed.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { SysError } from '../sys/libc';
import { close as sysClose, pipe2 as sysPipe2, O_CLOEXEC } from '../sys/misc';
import {
  O_RDONLY,
  O_WRONLY,
  posixSpawn,
  type SpawnAttrs,
  type SpawnFileAction,
} from '../sys/process';
import type { ExitStatus, Reaper } from './reaper';

const E = os.constants.errno;

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
export const DEFAULT_ENV: readonly string[] = [`PATH=${DEFAULT_PATH}`];

/**
 * A child's stdio slot: an fd the caller owns (dup2'd, caller closes it), /dev/null, a new pipe,
 * or a path the child opens itself (after setsid, so opening a tty without O_NOCTTY makes it the
 * child's controlling terminal: glibc applies POSIX_SPAWN_SETSID before the file actions).
 */
export type StdioSpec = number | 'null' | 'pipe' | { open: string; flags: number; mode?: number };

export interface SpawnOptions {
  /** Program: absolute/relative path, or a bare name looked up in the child's PATH. */
  file: string;
  /** argv including argv[0] (defaults to [file] when empty). */
  args: string[];
  /** KEY=VAL strings; default: a minimal PATH. */
  env?: string[];
  cwd?: string;
  stdin?: StdioSpec;
  stdout?: StdioSpec;
  stderr?: StdioSpec;
  /** Further fds to hand over: parent fd `from` becomes child fd `to` (caller keeps ownership of `from`). */
  extraFds?: Array<{ from: number; to: number }>;
  /** New session (default true). */
  setsid?: boolean;
  /** Put the child in process group `pgroup` (0 = its own). Only when setsid is false. */
  pgroup?: number;
  /** Signals whose disposition the child inherits instead of SIG_DFL (e.g. [13]: SIGPIPE ignored, as in the agent). */
  keepDisposition?: readonly number[];
}

export interface SpawnedProcess {
  pid: number;
  /** Resolves when the reaper has collected the child. Never rejects. */
  exited: Promise<ExitStatus>;
  stdin?: Writable;
  stdout?: Readable;
  stderr?: Readable;
}

export interface SpawnerDeps {
  spawn: (
    file: string,
    argv: readonly string[],
    envp: readonly string[],
    actions: readonly SpawnFileAction[],
    attrs: SpawnAttrs,
  ) => number;
  pipe2: (flags: number) => [number, number];
  close: (fd: number) => void;
  /** Resolve a bare program name against a PATH value; throws SysError ENOENT/EACCES. */
  resolve: (file: string, pathEnv: string) => string;
}

export const realSpawnerDeps: SpawnerDeps = {
  spawn: posixSpawn,
  pipe2: sysPipe2,
  close: sysClose,
  resolve: resolveInPath,
};

/**
 * execvp-style lookup, but against the *child's* PATH (glibc's posix_spawnp
 * would search the agent's own environment, which as PID 1 has no PATH).
 */
export function resolveInPath(file: string, pathEnv: string): string {
  if (file.includes('/')) return file;
  if (file === '') throw new SysError('posix_spawn', E.ENOENT, file);
  let sawEacces = false;
  for (const dir of pathEnv.split(':')) {
    const cand = path.join(dir === '' ? '.' : dir, file);
    let st: fs.Stats;
    try {
      st = fs.statSync(cand);
    } catch {
      continue;
    }
    if (!st.isFile()) continue;
    try {
      fs.accessSync(cand, fs.constants.X_OK);
      return cand;
    } catch {
      sawEacces = true;
    }
  }
  throw new SysError('posix_spawn', sawEacces ? E.EACCES : E.ENOENT, file);
}

/** What child fd `to` gets: a parent fd, or `path` opened in the child with `flags`. */
export interface FdMapping {
  to: number;
  from: number | { path: string; flags: number; mode?: number };
}

/**
 * Turn fd mappings into posix_spawn file actions that are correct whatever
 * the overlap between sources and targets (e.g. child 1 <- parent 2 and
 * child 2 <- parent 1): sources that are also the target of another mapping
 * are first copied above every fd involved. dup2(fd, fd) is used for
 * same-number mappings (glibc >= 2.29 clears FD_CLOEXEC for it). With
 * `closeOthers`, every other fd is closed in the child.
 */
export function planFdActions(mappings: readonly FdMapping[], closeOthers = true): SpawnFileAction[] {
  const targets = new Set<number>();
  let max = -1;
  for (const m of mappings) {
    if (!Number.isInteger(m.to) || m.to < 0) throw new SysError('posix_spawn', E.EBADF, undefined, `target fd ${m.to}`);
    if (targets.has(m.to)) throw new SysError('posix_spawn', E.EINVAL, undefined, `fd ${m.to} given twice`);
    targets.add(m.to);
    max = Math.max(max, m.to);
    if (typeof m.from === 'number') {
      if (!Number.isInteger(m.from) || m.from < 0) {
        throw new SysError('posix_spawn', E.EBADF, undefined, `source fd ${m.from}`);
      }
      max = Math.max(max, m.from);
    }
  }
  const actions: SpawnFileAction[] = [];
  // A source must be saved when some other mapping writes over its number.
  const clobbered = (fd: number): boolean =>
    mappings.some((m) => m.to === fd && m.from !== fd);
  const saved = new Map<number, number>();
  let next = max + 1;
  for (const m of mappings) {
    if (typeof m.from !== 'number' || m.from === m.to || saved.has(m.from) || !clobbered(m.from)) continue;
    saved.set(m.from, next);
    actions.push({ op: 'dup2', fd: m.from, newfd: next });
    next++;
  }
  for (const m of mappings) {
    if (typeof m.from !== 'number') continue;
    actions.push({ op: 'dup2', fd: saved.get(m.from) ?? m.from, newfd: m.to });
  }
  for (const m of mappings) {
    if (typeof m.from === 'number') continue;
    actions.push({ op: 'open', fd: m.to, path: m.from.path, flags: m.from.flags, ...(m.from.mode !== undefined ? { mode: m.from.mode } : {}) });
  }
  const topTarget = Math.max(-1, ...targets);
  if (closeOthers) {
    for (let fd = 0; fd < topTarget; fd++) if (!targets.has(fd)) actions.push({ op: 'close', fd });
    actions.push({ op: 'closefrom', from: topTarget + 1 });
  } else {
    for (const tmp of saved.values()) actions.push({ op: 'close', fd: tmp });
  }
  return actions;
}

function envPath(env: readonly string[]): string {
  for (let i = env.length - 1; i >= 0; i--) {
    const kv = env[i]!;
    if (kv.startsWith('PATH=')) return kv.slice(5);
  }
  return DEFAULT_PATH;
}

export class Spawner {
  constructor(
    private readonly reaper: Reaper,
    private readonly deps: SpawnerDeps = realSpawnerDeps,
  ) {}

  /**
   * Start a process. Throws SysError('posix_spawn', ...) when it cannot be
   * started (ENOENT, EACCES, EBADF for a bad stdio fd, ...); no fd leaks then.
   * The reaper must be started for `exited` to resolve.
   */
  spawn(opts: SpawnOptions): SpawnedProcess {
    const env = opts.env ?? [...DEFAULT_ENV];
    const file = this.deps.resolve(opts.file, envPath(env));
    const argv = opts.args.length > 0 ? opts.args : [opts.file];

    const parentEnds: { stdin?: number; stdout?: number; stderr?: number } = {};
    const childEnds: number[] = [];
    const mappings: FdMapping[] = [];
    const slots = [
      ['stdin', 0, opts.stdin ?? 'null', O_RDONLY],
      ['stdout', 1, opts.stdout ?? 'null', O_WRONLY],
      ['stderr', 2, opts.stderr ?? 'null', O_WRONLY],
    ] as const;
    let pid: number;
    try {
      for (const [name, fd, spec, nullFlags] of slots) {
        if (spec === 'null') mappings.push({ to: fd, from: { path: '/dev/null', flags: nullFlags } });
        else if (typeof spec === 'object') mappings.push({ to: fd, from: { path: spec.open, flags: spec.flags, ...(spec.mode !== undefined ? { mode: spec.mode } : {}) } });
        else if (spec === 'pipe') {
          const [r, w] = this.deps.pipe2(O_CLOEXEC);
          const [mine, theirs] = fd === 0 ? [w, r] : [r, w];
          parentEnds[name] = mine;
          childEnds.push(theirs);
          mappings.push({ to: fd, from: theirs });
        } else mappings.push({ to: fd, from: spec });
      }
      for (const x of opts.extraFds ?? []) mappings.push({ to: x.to, from: x.from });
      const actions: SpawnFileAction[] = [];
      if (opts.cwd !== undefined) actions.push({ op: 'chdir', path: opts.cwd });
      actions.push(...planFdActions(mappings));
      const setsid = opts.setsid ?? true;
      pid = this.deps.spawn(file, argv, env, actions, {
        setsid,
        pgroup: setsid ? undefined : opts.pgroup,
        keepDisposition: opts.keepDisposition,
      });
    } catch (err) {
      for (const fd of [...childEnds, ...Object.values(parentEnds)]) this.closeQuietly(fd);
      throw err;
    }
    // Register before anything can yield to the event loop (and thus to the reaper).
    const exited = new Promise<ExitStatus>((resolve) => {
      this.reaper.watch(pid, resolve, { justSpawned: true });
    });
    for (const fd of childEnds) this.closeQuietly(fd);

    const proc: SpawnedProcess = { pid, exited };
    if (parentEnds.stdin !== undefined) {
      proc.stdin = new net.Socket({ fd: parentEnds.stdin, readable: false, writable: true });
    }
    if (parentEnds.stdout !== undefined) {
      proc.stdout = new net.Socket({ fd: parentEnds.stdout, readable: true, writable: false });
    }
    if (parentEnds.stderr !== undefined) {
      proc.stderr = new net.Socket({ fd: parentEnds.stderr, readable: true, writable: false });
    }
    return proc;
  }

  private closeQuietly(fd: number): void {
    try {
      this.deps.close(fd);
    } catch {
      // already closed: nothing to do
    }
  }
}
