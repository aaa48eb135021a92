// Client-side errors. RPC failures reported by the agent are RpcError (from
// rpc/status); failures of the connection itself are ConnectionError, a
// RpcError with code UNAVAILABLE so callers that only look at codes still work.
import { Code, RpcError } from '../rpc/status';

export { Code, RpcError };

/** The connection could not be made, or broke before the answer arrived. */
export class ConnectionError extends RpcError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(Code.UNAVAILABLE, message);
    this.name = 'ConnectionError';
    if (options?.cause !== undefined) (this as { cause?: unknown }).cause = options.cause;
  }
}

/** A malformed address, method name or request (agent-ctl exit 2). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Per-call options shared by the ttrpc and gRPC clients. */
export interface CallOptions {
  /** Deadline relative to now, in ms; sent to the agent and enforced locally. */
  timeoutMs?: number;
  /** Call metadata (keys are lowercased). */
  metadata?: Record<string, string | string[]>;
}

export function metadataPairs(md: CallOptions['metadata']): { key: string; value: string }[] {
  const out: { key: string; value: string }[] = [];
  if (!md) return out;
  for (const [k, v] of Object.entries(md)) {
    for (const value of Array.isArray(v) ? v : [v]) out.push({ key: k.toLowerCase(), value });
  }
  return out;
}
