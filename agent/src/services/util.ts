// Request validation helpers shared by the issue-2 services.
import { RpcError, invalidArgument, toStatus } from '../rpc/status';

/** A decoded `bytes` field as a Buffer (protobufjs gives Buffer/Uint8Array; tolerate arrays and base64). */
export function bytesField(v: unknown, name: string): Buffer {
  if (v === undefined || v === null) return Buffer.alloc(0);
  if (Buffer.isBuffer(v)) return v;
  if (v instanceof Uint8Array) return Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  if (Array.isArray(v) && v.every((b) => Number.isInteger(b) && b >= 0 && b <= 255)) return Buffer.from(v as number[]);
  if (typeof v === 'string') return Buffer.from(v, 'base64');
  throw invalidArgument(`${name} must be bytes`);
}

/** A decoded integer field: must be a safe integer within [min, max]. */
export function intField(v: unknown, name: string, min = Number.MIN_SAFE_INTEGER, max = Number.MAX_SAFE_INTEGER): number {
  const n = v === undefined || v === null ? 0 : typeof v === 'bigint' ? Number(v) : (v as number);
  if (typeof n !== 'number' || !Number.isFinite(n) || !Number.isInteger(n)) {
    throw invalidArgument(`${name} must be an integer, got ${String(v)}`);
  }
  if (!Number.isSafeInteger(n)) throw invalidArgument(`${name} ${String(v)} is too large to handle exactly`);
  if (n < min) throw invalidArgument(`${name} must be >= ${min}, got ${n}`);
  if (n > max) throw invalidArgument(`${name} must be <= ${max}, got ${n}`);
  return n;
}

export function boolField(v: unknown): boolean {
  return v === true;
}

export function stringField(v: unknown, name: string): string {
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw invalidArgument(`${name} must be a string`);
  return v;
}

/**
 * Re-throw any error as an RpcError whose message starts with `what`, keeping
 * the status code toStatus() assigns (ENOENT -> NOT_FOUND, ...).
 */
export function wrapError(what: string, err: unknown): RpcError {
  if (err instanceof RpcError) return err;
  const st = toStatus(err);
  return new RpcError(st.code, `${what}: ${st.message}`);
}
