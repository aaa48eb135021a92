// ttrpc wire format (pure): the 10-byte frame header, a streaming frame
// decoder, and the Request/Response envelopes (agent/proto/ttrpc.proto).
//
// Frame: uint32 payload length | uint32 stream id | uint8 type | uint8 flags
// (big-endian), then `length` payload bytes. Payloads above 4 MiB are refused:
// the decoder skips their bytes without buffering them and reports them so the
// server can answer RESOURCE_EXHAUSTED, as containerd/ttrpc does.
import type protobuf from 'protobufjs/light.js';
import { lookupType } from '../proto';

export const HEADER_LENGTH = 10;
export const MAX_MESSAGE_LENGTH = 4 << 20;

export const MessageType = {
  REQUEST: 1,
  RESPONSE: 2,
  DATA: 3,
} as const;

export const Flags = {
  REMOTE_CLOSED: 0x1,
  REMOTE_OPEN: 0x2,
  NO_DATA: 0x4,
} as const;

export interface FrameHeader {
  length: number;
  streamId: number;
  type: number;
  flags: number;
}

export interface Frame extends FrameHeader {
  kind: 'frame';
  /** Exactly `length` bytes; may be a view into a received chunk. */
  payload: Buffer;
}

/** A frame whose length exceeded MAX_MESSAGE_LENGTH; its payload was (or is being) discarded. */
export interface OversizedFrame extends FrameHeader {
  kind: 'oversized';
}

export type DecodedEvent = Frame | OversizedFrame;

export function readHeader(buf: Uint8Array, off = 0): FrameHeader {
  const b = buf;
  return {
    length: ((b[off]! << 24) >>> 0) + ((b[off + 1]! << 16) | (b[off + 2]! << 8) | b[off + 3]!),
    streamId: ((b[off + 4]! << 24) >>> 0) + ((b[off + 5]! << 16) | (b[off + 6]! << 8) | b[off + 7]!),
    type: b[off + 8]!,
    flags: b[off + 9]!,
  };
}

export function writeHeader(buf: Buffer, h: FrameHeader, off = 0): void {
  buf.writeUInt32BE(h.length >>> 0, off);
  buf.writeUInt32BE(h.streamId >>> 0, off + 4);
  buf[off + 8] = h.type & 0xff;
  buf[off + 9] = h.flags & 0xff;
}

/** Header + payload in one buffer. Throws if the payload is over the maximum. */
export function encodeFrame(streamId: number, type: number, flags: number, payload: Uint8Array = EMPTY): Buffer {
  if (payload.length > MAX_MESSAGE_LENGTH) {
    throw new RangeError(`message length ${payload.length} exceed maximum message size of ${MAX_MESSAGE_LENGTH}`);
  }
  const out = Buffer.allocUnsafe(HEADER_LENGTH + payload.length);
  writeHeader(out, { length: payload.length, streamId, type, flags });
  out.set(payload, HEADER_LENGTH);
  return out;
}

const EMPTY = new Uint8Array(0);
const EMPTY_BUF = Buffer.alloc(0);

/**
 * Incremental frame decoder: push() arbitrary chunks, get back the complete
 * frames (and oversized-frame events) they finish, in order. Holds at most one
 * header plus MAX_MESSAGE_LENGTH bytes of one pending payload.
 */
export class FrameDecoder {
  private chunks: Buffer[] = [];
  private size = 0; // bytes in chunks
  private header: FrameHeader | undefined; // parsed, waiting for its payload
  private discarding = 0; // bytes of an oversized payload still to skip

  constructor(private readonly maxLength = MAX_MESSAGE_LENGTH) {}

  /** Bytes received but not yet returned as part of a frame (partial header or payload). */
  get buffered(): number {
    return this.size;
  }

  /** True when the decoder is in the middle of a frame (EOF now would truncate it). */
  get midFrame(): boolean {
    return this.size > 0 || this.header !== undefined || this.discarding > 0;
  }

  push(chunk: Uint8Array): DecodedEvent[] {
    const out: DecodedEvent[] = [];
    let c = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    if (this.discarding > 0) {
      const n = Math.min(this.discarding, c.length);
      this.discarding -= n;
      c = c.subarray(n);
    }
    if (c.length > 0) {
      this.chunks.push(c);
      this.size += c.length;
    }
    for (;;) {
      if (this.header === undefined) {
        if (this.size < HEADER_LENGTH) break;
        const h = readHeader(this.take(HEADER_LENGTH));
        if (h.length > this.maxLength) {
          out.push({ kind: 'oversized', ...h });
          const n = Math.min(h.length, this.size);
          this.skip(n);
          this.discarding = h.length - n;
          if (this.discarding > 0) break; // size is 0 now
          continue;
        }
        this.header = h;
      }
      const h = this.header;
      if (this.size < h.length) break;
      this.header = undefined;
      out.push({ kind: 'frame', ...h, payload: h.length === 0 ? EMPTY_BUF : this.take(h.length) });
    }
    return out;
  }

  /** Remove and return the first n buffered bytes (a view when they lie in one chunk). */
  private take(n: number): Buffer {
    this.size -= n;
    const first = this.chunks[0]!;
    if (first.length === n) {
      this.chunks.shift();
      return first;
    }
    if (first.length > n) {
      this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    while (off < n) {
      const c = this.chunks[0]!;
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(k);
    }
    return out;
  }

  private skip(n: number): void {
    this.size -= n;
    while (n > 0) {
      const c = this.chunks[0]!;
      if (c.length <= n) {
        n -= c.length;
        this.chunks.shift();
      } else {
        this.chunks[0] = c.subarray(n);
        n = 0;
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Envelopes

export interface KeyValue {
  key: string;
  value: string;
}

export interface TtrpcRequest {
  service: string;
  method: string;
  payload: Uint8Array;
  /** Relative timeout in ns; 0 = none. A number (precision loss above 2^53 ns is irrelevant). */
  timeoutNano: number;
  metadata: KeyValue[];
}

export interface RpcStatus {
  code: number;
  message: string;
}

export interface TtrpcResponse {
  status: RpcStatus;
  payload: Uint8Array;
}

let requestType: protobuf.Type | undefined;
let responseType: protobuf.Type | undefined;

function reqType(): protobuf.Type {
  return (requestType ??= lookupType('ttrpc.Request'));
}

function resType(): protobuf.Type {
  return (responseType ??= lookupType('ttrpc.Response'));
}

function longToNumber(v: unknown): number {
  if (typeof v === 'number') return v;
  if (v && typeof (v as { toNumber?: unknown }).toNumber === 'function') return (v as { toNumber(): number }).toNumber();
  return 0;
}

/** Decode a ttrpc.Request; throws on malformed protobuf. */
export function decodeRequest(buf: Uint8Array): TtrpcRequest {
  const m = reqType().decode(buf) as unknown as {
    service: string;
    method: string;
    payload: Uint8Array;
    timeout_nano: unknown;
    metadata: KeyValue[];
  };
  return {
    service: m.service,
    method: m.method,
    payload: m.payload,
    timeoutNano: longToNumber(m.timeout_nano),
    metadata: m.metadata,
  };
}

export function encodeRequest(req: Partial<TtrpcRequest> & { service: string; method: string }): Uint8Array {
  const m: Record<string, unknown> = { service: req.service, method: req.method };
  if (req.payload && req.payload.length > 0) m.payload = req.payload;
  const t = Math.floor(req.timeoutNano ?? 0);
  if (t > 0) m.timeout_nano = t;
  if (req.metadata && req.metadata.length > 0) m.metadata = req.metadata;
  return reqType().encode(m).finish();
}

/** Append `v` (0 <= v < 2^32) as a protobuf varint at out[pos]; returns the new position. */
function putVarint(out: Buffer, pos: number, v: number): number {
  while (v > 0x7f) {
    out[pos++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  out[pos++] = v;
  return pos;
}

/**
 * A whole RESPONSE frame whose message is a ttrpc.Response, as a list of buffers to write
 * in order. For an OK status the payload's chunks are not copied: the frame header, the
 * Response's fields and the payload's length prefix go into one small buffer, the chunks
 * follow as they are (the bytes are those of encodeFrame(.., encodeResponse(OK, payload))).
 * Throws RangeError beyond MAX_MESSAGE_LENGTH.
 */
export function encodeResponseFrame(streamId: number, status: RpcStatus, payload: readonly Uint8Array[] = []): Uint8Array[] {
  let n = 0;
  for (const c of payload) n += c.length;
  if (status.code !== 0 || status.message || n === 0) {
    let joined: Uint8Array | undefined;
    if (n > 0) joined = payload.length === 1 ? payload[0] : Buffer.concat(payload, n);
    return [encodeFrame(streamId, MessageType.RESPONSE, 0, encodeResponse(status, joined))];
  }
  // Response{status = {} (field 1: 0x0a 0x00), payload = field 2 (0x12, varint length, bytes)}
  const head = Buffer.allocUnsafe(HEADER_LENGTH + 2 + 1 + 5);
  let pos = HEADER_LENGTH;
  head[pos++] = 0x0a;
  head[pos++] = 0x00;
  head[pos++] = 0x12;
  pos = putVarint(head, pos, n);
  const length = pos - HEADER_LENGTH + n;
  if (length > MAX_MESSAGE_LENGTH) {
    throw new RangeError(`message length ${length} exceed maximum message size of ${MAX_MESSAGE_LENGTH}`);
  }
  writeHeader(head, { length, streamId, type: MessageType.RESPONSE, flags: 0 });
  return [head.subarray(0, pos), ...payload];
}

/** Encode a ttrpc.Response. Default-valued fields are left out, as ttrpc-go does; the status is always present. */
export function encodeResponse(status: RpcStatus, payload?: Uint8Array): Uint8Array {
  const st: Record<string, unknown> = {};
  if (status.code !== 0) st.code = status.code;
  if (status.message) st.message = status.message;
  const m: Record<string, unknown> = { status: st };
  if (payload && payload.length > 0) m.payload = payload;
  return resType().encode(m).finish();
}

/** Decode a ttrpc.Response; a missing status means OK. Throws on malformed protobuf. */
export function decodeResponse(buf: Uint8Array): TtrpcResponse {
  const m = resType().decode(buf) as unknown as { status?: { code?: number; message?: string } | null; payload: Uint8Array };
  return {
    status: { code: m.status?.code ?? 0, message: m.status?.message ?? '' },
    payload: m.payload,
  };
}
