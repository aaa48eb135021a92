import { describe, expect, it, vi } from 'vitest';
import { Reaper, toExitStatus, type ExitStatus } from '../../agent/src/proc/reaper';
import { WNOHANG, exitedStatus, signaledStatus, type WaitResult } from '../../agent/src/sys/process';

/** A fake waitpid: a queue of pending exits; ECHILD (-1) when `children` is 0, else 0 when empty. */
function fakeWait() {
  const pending: WaitResult[] = [];
  const calls: Array<[number, number]> = [];
  const state = { children: 1, throwNext: undefined as Error | undefined };
  const waitpid = (pid: number, options: number): WaitResult => {
    calls.push([pid, options]);
    if (state.throwNext) {
      const e = state.throwNext;
      state.throwNext = undefined;
      throw e;
    }
    const next = pending.shift();
    if (next) return next;
    return { pid: state.children > 0 ? 0 : -1, status: 0 };
  };
  const exit = (pid: number, code: number) => pending.push({ pid, status: exitedStatus(code) });
  const die = (pid: number, sig: number) => pending.push({ pid, status: signaledStatus(sig) });
  return { waitpid, pending, calls, state, exit, die };
}

describe('toExitStatus', () => {
  it('decodes exits, signals and ignores stops', () => {
    expect(toExitStatus(5, exitedStatus(3))).toEqual({ pid: 5, code: 3, raw: 0x300 });
    expect(toExitStatus(5, signaledStatus(9))).toEqual({ pid: 5, code: 137, signal: 9, raw: 9 });
    expect(toExitStatus(5, signaledStatus(11, true))).toMatchObject({ code: 139, signal: 11 });
    expect(toExitStatus(5, 0x137f)).toBeUndefined(); // stopped by SIGSTOP
    expect(toExitStatus(5, 0xffff)).toBeUndefined(); // continued
  });
});

describe('Reaper', () => {
  it('dispatches known pids with their exit codes, using waitpid(-1, WNOHANG)', () => {
    const w = fakeWait();
    const r = new Reaper({ waitpid: w.waitpid });
    const got: ExitStatus[] = [];
    r.watch(10, (s) => got.push(s));
    r.watch(11, (s) => got.push(s));
    w.exit(11, 7);
    w.exit(10, 0);
    expect(r.reapAll()).toBe(2);
    expect(got).toEqual([
      { pid: 11, code: 7, raw: exitedStatus(7) },
      { pid: 10, code: 0, raw: 0 },
    ]);
    expect(w.calls.every(([pid, opt]) => pid === -1 && opt === WNOHANG)).toBe(true);
    expect(r.stats()).toMatchObject({ dispatched: 2, orphansReaped: 0, watching: 0 });
  });

  it('reports a signalled exit as 128+signal with the signal', () => {
    const w = fakeWait();
    const r = new Reaper({ waitpid: w.waitpid });
    const cb = vi.fn();
    r.watch(20, cb);
    w.die(20, 9);
    r.reapAll();
    expect(cb).toHaveBeenCalledExactlyOnceWith({ pid: 20, code: 137, signal: 9, raw: 9 });
  });

  it('calls every watcher of a pid once, and an unwatched callback not at all', () => {
    const w = fakeWait();
    const r = new Reaper({ waitpid: w.waitpid });
    const a = vi.fn();
    const b = vi.fn();
    const c = vi.fn();
    r.watch(30, a);
    r.watch(30, b);
    const cancel = r.watch(30, c);
    cancel();
    w.exit(30, 1);
    r.reapAll();
    w.exit(30, 2); // a later process with the same pid, now unwatched
    r.reapAll();
    expect(a).toHaveBeenCalledTimes(1);
    expect(b).toHaveBeenCalledTimes(1);
    expect(c).not.toHaveBeenCalled();
  });

  it('reaps, counts and reports unknown orphans', () => {
    const w = fakeWait();
    const r = new Reaper({ waitpid: w.waitpid });
    const orphans: number[] = [];
    r.onOrphan = (s) => orphans.push(s.pid);
    const known = vi.fn();
    r.watch(2, known);
    for (const pid of [100, 101, 2, 102]) w.exit(pid, 0);
    expect(r.reapAll()).toBe(4);
    expect(orphans).toEqual([100, 101, 102]);
    expect(known).toHaveBeenCalledOnce();
    expect(r.stats()).toMatchObject({ orphansReaped: 3, dispatched: 1 });
    expect(w.pending).toHaveLength(0);
  });

  it('keeps the status of a pid that exits before watch() and delivers it synchronously', () => {
    const w = fakeWait();
    const r = new Reaper({ waitpid: w.waitpid });
    w.exit(40, 5);
    r.reapAll();
    const cb = vi.fn();
    r.watch(40, cb);
    expect(cb).toHaveBeenCalledExactlyOnceWith({ pid: 40, code: 5, raw: exitedStatus(5) });
    // consumed: a second watch waits for a new exit
    const cb2 = vi.fn();
    r.watch(40, cb2);
    expect(cb2).not.toHaveBeenCalled();
    expect(r.stats().cached).toBe(0);
  });

  it('drops a cached status for a just-spawned (reused) pid instead of delivering it', () => {
    const w = fakeWait();
    const r = new Reaper({ waitpid: w.waitpid });
    w.exit(50, 1);
    r.reapAll();
    const cb = vi.fn();
    r.watch(50, cb, { justSpawned: true });
    expect(cb).not.toHaveBeenCalled();
    w.exit(50, 0);
    r.reapAll();
    expect(cb).toHaveBeenCalledExactlyOnceWith({ pid: 50, code: 0, raw: 0 });
  });

  it('bounds the early-exit cache, evicting the oldest', () => {
    const w = fakeWait();
    const r = new Reaper({ waitpid: w.waitpid }, undefined, 4);
    for (let pid = 1; pid <= 10; pid++) w.exit(pid, pid);
    r.reapAll();
    expect(r.stats()).toMatchObject({ cached: 4, orphansReaped: 10 });
    const old = vi.fn();
    r.watch(6, old);
    expect(old).not.toHaveBeenCalled();
    const recent = vi.fn();
    r.watch(7, recent);
    expect(recent).toHaveBeenCalledWith(expect.objectContaining({ pid: 7, code: 7 }));
  });

  it('drains every exit on one (coalesced) SIGCHLD and stops at 0 or ECHILD', () => {
    const w = fakeWait();
    const r = new Reaper({ waitpid: w.waitpid });
    const seen: number[] = [];
    for (let pid = 200; pid < 300; pid++) {
      r.watch(pid, (s) => seen.push(s.pid));
      w.exit(pid, 0);
    }
    r.start();
    try {
      // start() reaps what is pending already; queue more and send one signal.
      expect(seen).toHaveLength(100);
      for (let pid = 300; pid < 350; pid++) {
        r.watch(pid, (s) => seen.push(s.pid));
        w.exit(pid, 0);
      }
      w.state.children = 0; // after these, waitpid reports ECHILD
      const before = w.calls.length;
      process.emit('SIGCHLD' as NodeJS.Signals, 'SIGCHLD' as NodeJS.Signals);
      expect(seen).toHaveLength(150);
      expect(new Set(seen).size).toBe(150);
      expect(w.calls.length - before).toBe(51); // 50 exits + the ECHILD that ends the loop
    } finally {
      r.stop();
    }
    // stopped: a signal no longer reaps
    w.exit(999, 0);
    process.emit('SIGCHLD' as NodeJS.Signals, 'SIGCHLD' as NodeJS.Signals);
    expect(w.pending).toHaveLength(1);
  });

  it('survives a throwing callback, hook and waitpid', () => {
    const w = fakeWait();
    const r = new Reaper({ waitpid: w.waitpid });
    r.onOrphan = () => {
      throw new Error('hook');
    };
    const after = vi.fn();
    r.watch(1, () => {
      throw new Error('cb');
    });
    r.watch(3, after);
    w.exit(1, 0);
    w.exit(2, 0);
    w.exit(3, 0);
    expect(() => r.reapAll()).not.toThrow();
    expect(after).toHaveBeenCalledOnce();
    w.state.throwNext = new Error('EINVAL');
    w.exit(4, 0);
    expect(r.reapAll()).toBe(0);
    expect(r.reapAll()).toBe(1);
  });
  it('keeps the event loop alive exactly while a pid is watched', () => {
    const w = fakeWait();
    const r = new Reaper({ waitpid: w.waitpid });
    r.start();
    try {
      const timer = (r as unknown as { timer: NodeJS.Timeout }).timer;
      expect(timer.hasRef()).toBe(false);
      const cancel = r.watch(60, () => {});
      r.watch(61, () => {});
      expect(timer.hasRef()).toBe(true);
      cancel();
      expect(timer.hasRef()).toBe(true);
      w.exit(61, 0);
      r.reapAll();
      expect(timer.hasRef()).toBe(false);
    } finally {
      r.stop();
    }
  });
});
