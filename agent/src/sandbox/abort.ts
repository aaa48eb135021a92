// Cancellation of long waits by the call's AbortSignal (connection gone, deadline).
import { Code, RpcError } from '../rpc/status';

/** The status for a wait ended by `signal`: its reason when that is an RpcError, else CANCELLED. */
export function cancelled(what: string, signal: AbortSignal): RpcError {
  const reason: unknown = signal.reason;
  if (reason instanceof RpcError) return reason;
  const why = reason instanceof Error ? reason.message : reason !== undefined ? String(reason) : 'aborted';
  return new RpcError(Code.CANCELLED, `${what} cancelled: ${why}`);
}

/** `p`, or a rejection with cancelled(what) as soon as `signal` aborts (the listener is removed either way). */
export function raceAbort<T>(p: Promise<T>, signal: AbortSignal | undefined, what: string): Promise<T> {
  if (!signal) return p;
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(cancelled(what, signal));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
