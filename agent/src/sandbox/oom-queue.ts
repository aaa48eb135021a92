// The sandbox's OOM events: container ids queued by the OOM watchers and
// handed to GetOOMEvent long polls, one event per call, oldest first (Kata:
// an mpsc channel read by get_oom_event). Events that nobody has asked for
// yet are kept (bounded), so an OOM between two polls is not lost.
import { cancelled } from './abort';
import type { RpcError } from '../rpc/status';

/** Most events kept while nobody polls; the oldest are dropped beyond it. */
export const MAX_QUEUED_OOM_EVENTS = 1024;

interface Waiter {
  resolve: (cid: string) => void;
  reject: (err: unknown) => void;
  detach: () => void;
}

export class OomQueue {
  private readonly events: string[] = [];
  private readonly waiters: Waiter[] = [];
  private closedWith?: RpcError;
  /** Events dropped because the queue was full. */
  dropped = 0;

  constructor(private readonly max = MAX_QUEUED_OOM_EVENTS) {}

  /** Queue an OOM kill of container `cid` (ignored once closed). */
  push(cid: string): void {
    if (this.closedWith) return;
    const w = this.waiters.shift();
    if (w) {
      w.detach();
      w.resolve(cid);
      return;
    }
    this.events.push(cid);
    while (this.events.length > this.max) {
      this.events.shift();
      this.dropped++;
    }
  }

  /** Events waiting for a poll. */
  get size(): number {
    return this.events.length;
  }

  /** Waiting polls. */
  get polling(): number {
    return this.waiters.length;
  }

  /**
   * The next event: at once when one is queued, else when the next OOM
   * happens. Rejects with CANCELLED when `signal` aborts (the call was
   * cancelled or its deadline passed), or with the close() error.
   */
  next(signal?: AbortSignal): Promise<string> {
    if (this.events.length > 0) return Promise.resolve(this.events.shift()!);
    if (this.closedWith) return Promise.reject(this.closedWith);
    if (signal?.aborted) return Promise.reject(abortError(signal));
    return new Promise<string>((resolve, reject) => {
      let onAbort: (() => void) | undefined;
      const w: Waiter = {
        resolve,
        reject,
        detach: () => {
          if (onAbort) signal?.removeEventListener('abort', onAbort);
        },
      };
      if (signal) {
        onAbort = () => {
          const i = this.waiters.indexOf(w);
          if (i >= 0) this.waiters.splice(i, 1);
          reject(abortError(signal));
        };
        signal.addEventListener('abort', onAbort, { once: true });
      }
      this.waiters.push(w);
    });
  }

  /** Fail every pending and later poll with `err` (the sandbox is gone). Queued events are dropped. */
  close(err: RpcError): void {
    if (this.closedWith) return;
    this.closedWith = err;
    this.events.length = 0;
    for (const w of this.waiters.splice(0)) {
      w.detach();
      w.reject(err);
    }
  }
}

function abortError(signal: AbortSignal): RpcError {
  return cancelled('GetOOMEvent', signal);
}
