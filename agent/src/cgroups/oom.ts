// OOM-kill watchers.
//
// Both versions fire on a growing kill counter, so every trigger path (poll,
// inotify, eventfd) can run the same check() without ever double-reporting:
//  - v2: memory.events "oom_kill"; fs.watch (inotify: the kernel signals
//    modifications of memory.events) plus a poll as fallback.
//  - v1: memory.oom_control "oom_kill" (kernel >= 4.13), polled; plus an
//    eventfd registered through cgroup.event_control so an OOM is noticed at
//    once. The eventfd fires when the OOM starts (before the kill is counted),
//    so a trigger re-checks the counter a few times shortly after. Kernels
//    without the counter, or cgroups with the OOM killer disabled, report
//    each eventfd notification itself. The eventfd is read as a stream through
//    a libuv Pipe handle. It is also signalled when the cgroup is removed:
//    then memory.oom_control is gone and the watcher closes itself.
// A watcher whose cgroup disappears closes itself.
import fs from 'node:fs';
import net from 'node:net';
import { SysError } from '../sys/libc';
import { eventfd } from '../sys/eventfd';
import { fdSocket } from '../transport/handles';
import { safeCall } from './common';
import type { FsOps } from './fsops';
import { parseFlatKeyed, parseOomControl } from './parse';
import type { OomWatcher, OomWatchOptions } from './types';

const ENOENT = 2;
const RECHECK_MS = [50, 250, 1000];

interface Base {
  close(): void;
  check(): void;
  timers: Set<NodeJS.Timeout>;
  closed: boolean;
}

function counterWatcher(file: string, read: () => number | undefined | null, onOom: () => void, pollMs: number): Base {
  // read(): undefined = no counter in the file; null = file gone.
  const first = read();
  if (first === null) throw new SysError('open', ENOENT, file);
  let last = first ?? 0;
  const timers = new Set<NodeJS.Timeout>();
  const self: Base = {
    closed: false,
    timers,
    close() {
      if (self.closed) return;
      self.closed = true;
      for (const t of timers) clearTimeout(t);
      timers.clear();
    },
    check() {
      if (self.closed) return;
      const n = read();
      if (n === null) {
        self.close();
        return;
      }
      if (n !== undefined && n > last) {
        last = n;
        safeCall(onOom);
      }
    },
  };
  const iv = setInterval(() => self.check(), pollMs);
  iv.unref();
  timers.add(iv);
  return self;
}

/** cgroup v2: fire when memory.events oom_kill grows. */
export function watchOomV2(ops: FsOps, dir: string, onOom: () => void, opts: OomWatchOptions = {}): OomWatcher {
  const file = `${dir}/memory.events`;
  const read = (): number | undefined | null => {
    const t = ops.read(file);
    return t === undefined ? null : parseFlatKeyed(t).oom_kill;
  };
  const base = counterWatcher(file, read, onOom, opts.pollIntervalMs ?? 1000);
  let watcher: fs.FSWatcher | undefined;
  let via = 'poll';
  try {
    watcher = fs.watch(file, { persistent: false }, () => base.check());
    watcher.on('error', () => {
      watcher?.close();
      watcher = undefined;
    });
    via = 'inotify';
  } catch {
    watcher = undefined;
  }
  const close = base.close;
  base.close = () => {
    watcher?.close();
    watcher = undefined;
    close();
  };
  return { close: () => base.close(), check: () => base.check(), via };
}

export interface V1OomDeps {
  eventfd: () => number;
  /** A readable stream over an fd it takes ownership of. */
  openStream: (fd: number) => net.Socket;
}

export const realV1OomDeps: V1OomDeps = {
  eventfd: () => eventfd(),
  openStream: (fd) => fdSocket(fd, { writable: false }),
};

/** cgroup v1: eventfd notification + memory.oom_control oom_kill counter. */
export function watchOomV1(
  ops: FsOps,
  dir: string,
  onOom: () => void,
  opts: OomWatchOptions = {},
  deps: V1OomDeps = realV1OomDeps,
): OomWatcher {
  const ctl = `${dir}/memory.oom_control`;
  const read = (): number | undefined | null => {
    const st = parseOomControl(ops.read(ctl));
    return st === undefined ? null : st.oomKill;
  };
  const base = counterWatcher(ctl, read, onOom, opts.pollIntervalMs ?? 1000);
  let sock: net.Socket | undefined;
  let via = 'poll';

  const onEvent = (): void => {
    if (base.closed) return;
    const st = parseOomControl(ops.read(ctl));
    if (st === undefined) {
      base.close(); // the cgroup was removed (that signals the eventfd too)
      return;
    }
    if (st.oomKill === undefined || st.oomKillDisable) {
      safeCall(onOom);
      return;
    }
    base.check();
    for (const ms of RECHECK_MS) {
      const t = setTimeout(() => {
        base.timers.delete(t);
        base.check();
      }, ms);
      t.unref();
      base.timers.add(t);
    }
  };

  if (opts.useEventfd !== false) {
    let efd = -1;
    let cfd = -1;
    try {
      efd = deps.eventfd();
      try {
        cfd = fs.openSync(ctl, 'r');
      } catch (e) {
        throw new SysError('open', Math.abs((e as NodeJS.ErrnoException).errno ?? ENOENT), ctl);
      }
      ops.write(`${dir}/cgroup.event_control`, `${efd} ${cfd}`);
      sock = deps.openStream(efd);
      efd = -1; // owned by the stream now
      sock.on('data', onEvent);
      sock.on('error', () => undefined);
      via = 'eventfd';
    } catch {
      sock = undefined; // fall back to polling the counter
    } finally {
      if (cfd >= 0) fs.closeSync(cfd);
      if (efd >= 0) fs.closeSync(efd);
    }
  }
  const close = base.close;
  base.close = () => {
    sock?.destroy();
    sock = undefined;
    close();
  };
  return { close: () => base.close(), check: () => base.check(), via };
}
