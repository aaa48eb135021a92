// Helpers shared by the v1 and v2 implementations.
import { Code, RpcError } from '../rpc/status';
import { isMissing, type FsOps } from './fsops';
import type { PlannedWrite } from './convert';

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Poll `done` (10 ms, backing off to 100 ms) until true; DEADLINE_EXCEEDED after timeoutMs. */
export async function waitUntil(done: (attempt: number) => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let delay = 10;
  for (let attempt = 0; ; attempt++) {
    if (done(attempt)) return;
    if (Date.now() >= deadline) throw new RpcError(Code.DEADLINE_EXCEEDED, `timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(delay);
    delay = Math.min(delay * 2, 100);
  }
}

/**
 * rmdir `dir` and every cgroup below it, deepest first. EBUSY (tasks still
 * leaving) is retried with backoff for up to busyTimeoutMs; a missing
 * directory is fine.
 */
export async function removeTree(ops: FsOps, dir: string, busyTimeoutMs: number): Promise<void> {
  if (!ops.isDir(dir)) return;
  for (const sub of ops.subdirs(dir)) await removeTree(ops, `${dir}/${sub}`, busyTimeoutMs);
  const deadline = Date.now() + busyTimeoutMs;
  let delay = 10;
  for (;;) {
    try {
      ops.rmdir(dir);
      return;
    } catch (e) {
      if (isMissing(e)) return;
      if ((e as { code?: string }).code !== 'EBUSY' || Date.now() >= deadline) throw e;
    }
    await sleep(delay);
    delay = Math.min(delay * 2, 100);
  }
}

/** cgroup.procs of `dir` (and of every cgroup below it when recursive); [] if missing. */
export function readPids(ops: FsOps, dir: string, recursive: boolean): number[] {
  const out: number[] = [];
  const text = ops.read(`${dir}/cgroup.procs`);
  if (text !== undefined) {
    for (const w of text.split('\n')) {
      const t = w.trim();
      if (/^\d+$/.test(t)) out.push(Number(t));
    }
  }
  if (recursive) for (const sub of ops.subdirs(dir)) out.push(...readPids(ops, `${dir}/${sub}`, true));
  return out;
}

/** Execute planned writes; `dirOf` maps a controller to the cgroup's directory. Returns files written. */
export function applyWrites(ops: FsOps, writes: readonly PlannedWrite[], dirOf: (controller: string, file: string) => string): string[] {
  const done: string[] = [];
  for (const w of writes) {
    const file = `${dirOf(w.controller, w.file)}/${w.file}`;
    ops.write(file, w.value);
    done.push(file);
  }
  return done;
}

/** Run `onOom` without letting a throwing callback escape into a timer. */
export function safeCall(f: () => void): void {
  try {
    f();
  } catch {
    // the caller's callback must not take the watcher (or PID 1) down
  }
}
