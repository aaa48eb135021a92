// The one and only waiter of the agent. As PID 1 (or a child subreaper) the
// agent inherits every orphan in its namespace; nothing else may call wait*,
// or exits would be stolen. On SIGCHLD (and on a 1 s safety tick, since
// signals coalesce and can be missed around start/stop) it loops
// waitpid(-1, WNOHANG) until nothing is left, hands each status to whoever
// watches that pid, and quietly reaps (and counts) the rest.
import type { Logger } from '../log';
import { nullLogger } from '../log';
import {
  WEXITSTATUS,
  WIFEXITED,
  WIFSIGNALED,
  WNOHANG,
  WTERMSIG,
  waitpid as sysWaitpid,
  type WaitResult,
} from '../sys/process';

export interface ExitStatus {
  pid: number;
  /** Exit status, or 128 + signal when killed by a signal (shell convention). */
  code: number;
  /** The terminating signal, when signalled. */
  signal?: number;
  /** Raw wait status. */
  raw: number;
}

export type ExitCallback = (st: ExitStatus) => void;

export interface ReaperDeps {
  waitpid: (pid: number, options: number) => WaitResult;
}

export interface WatchOptions {
  /**
   * The pid was just returned by posix_spawn: it cannot have been reaped yet,
   * so any cached status for that pid belongs to an earlier process that had
   * the same number (pid reuse) and is dropped rather than delivered.
   */
  justSpawned?: boolean;
}

export interface ReaperStats {
  /** Exits delivered to a watcher. */
  dispatched: number;
  /** Exits of pids nobody was watching when they were reaped. */
  orphansReaped: number;
  /** Unwatched statuses currently kept for a later watch(). */
  cached: number;
  watching: number;
}

const DEFAULT_CACHE_SIZE = 256;
const SAFETY_INTERVAL_MS = 1000;

/** Decode a raw wait status; undefined for stop/continue notifications. */
export function toExitStatus(pid: number, raw: number): ExitStatus | undefined {
  if (WIFEXITED(raw)) return { pid, code: WEXITSTATUS(raw), raw };
  if (WIFSIGNALED(raw)) {
    const signal = WTERMSIG(raw);
    return { pid, code: 128 + signal, signal, raw };
  }
  return undefined;
}

export class Reaper {
  /** Called for every reaped pid nobody was watching. */
  onOrphan?: (st: ExitStatus) => void;

  private readonly watchers = new Map<number, ExitCallback[]>();
  /** Statuses of unwatched pids, oldest first (Map keeps insertion order). */
  private readonly early = new Map<number, ExitStatus>();
  private timer?: NodeJS.Timeout;
  private running = false;
  private reaping = false;
  private dispatched = 0;
  private orphans = 0;
  private readonly onSignal = (): void => {
    this.reapAll();
  };

  constructor(
    private readonly deps: ReaperDeps = { waitpid: sysWaitpid },
    private readonly log: Logger = nullLogger(),
    private readonly cacheSize = DEFAULT_CACHE_SIZE,
  ) {}

  /** Install the SIGCHLD listener and the safety tick, then reap anything already pending. */
  start(): void {
    if (this.running) return;
    this.running = true;
    process.on('SIGCHLD', this.onSignal);
    this.timer = setInterval(this.onSignal, SAFETY_INTERVAL_MS);
    this.updateRef();
    this.reapAll();
  }

  stop(): void {
    if (!this.running) return;
    this.running = false;
    process.off('SIGCHLD', this.onSignal);
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  get started(): boolean {
    return this.running;
  }

  /**
   * Call `cb` once when `pid` exits. If its status was already reaped (and
   * cached) the callback runs synchronously, before watch() returns.
   * Returns a function that cancels the watch.
   */
  watch(pid: number, cb: ExitCallback, opts: WatchOptions = {}): () => void {
    const cached = this.early.get(pid);
    if (cached) {
      this.early.delete(pid);
      if (!opts.justSpawned) {
        this.dispatched++;
        this.invoke(cb, cached);
        return () => {};
      }
      this.log.debug({ pid }, 'reaper: dropped stale status of a reused pid');
    }
    let list = this.watchers.get(pid);
    if (!list) this.watchers.set(pid, (list = []));
    list.push(cb);
    this.updateRef();
    return () => {
      const l = this.watchers.get(pid);
      if (!l) return;
      const i = l.indexOf(cb);
      if (i >= 0) l.splice(i, 1);
      if (l.length === 0) this.watchers.delete(pid);
      this.updateRef();
    };
  }

  /** Reap every child that has changed state. Returns how many were reaped. Never throws. */
  reapAll(): number {
    // A callback could (indirectly) re-enter; the outer loop will pick up
    // whatever is left.
    if (this.reaping) return 0;
    this.reaping = true;
    let n = 0;
    try {
      for (;;) {
        let r: WaitResult;
        try {
          r = this.deps.waitpid(-1, WNOHANG);
        } catch (err) {
          this.log.error({ err }, 'reaper: waitpid failed');
          break;
        }
        if (r.pid <= 0) break; // 0: none ready; -1: no children at all
        n++;
        const st = toExitStatus(r.pid, r.status);
        if (!st) continue; // stopped/continued: not an exit
        this.deliver(st);
      }
    } finally {
      this.reaping = false;
    }
    return n;
  }

  stats(): ReaperStats {
    return {
      dispatched: this.dispatched,
      orphansReaped: this.orphans,
      cached: this.early.size,
      watching: this.watchers.size,
    };
  }

  private deliver(st: ExitStatus): void {
    const list = this.watchers.get(st.pid);
    if (list) {
      this.watchers.delete(st.pid);
      this.updateRef();
      this.dispatched++;
      for (const cb of list) this.invoke(cb, st);
      return;
    }
    this.orphans++;
    this.log.debug({ pid: st.pid, code: st.code, signal: st.signal }, 'reaper: reaped unwatched process');
    this.early.delete(st.pid);
    this.early.set(st.pid, st);
    while (this.early.size > this.cacheSize) {
      const oldest = this.early.keys().next().value as number;
      this.early.delete(oldest);
    }
    if (this.onOrphan) {
      try {
        this.onOrphan(st);
      } catch (err) {
        this.log.error({ err, pid: st.pid }, 'reaper: onOrphan hook threw');
      }
    }
  }

  /**
   * Like a child_process handle, a watched child keeps the event loop alive
   * (SIGCHLD listeners do not): the safety tick is ref'd exactly while
   * someone waits for an exit.
   */
  private updateRef(): void {
    if (!this.timer) return;
    if (this.watchers.size > 0) this.timer.ref();
    else this.timer.unref();
  }

  private invoke(cb: ExitCallback, st: ExitStatus): void {
    try {
      cb(st);
    } catch (err) {
      this.log.error({ err, pid: st.pid }, 'reaper: exit callback threw');
    }
  }
}
