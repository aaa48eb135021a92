import { describe, expect, it } from 'vitest';
import {
  FrameDecoder,
  HEADER_LENGTH,
  MAX_MESSAGE_LENGTH,
  MessageType,
  decodeRequest,
  decodeResponse,
  encodeFrame,
  encodeRequest,
  encodeResponse,
  encodeResponseFrame,
  readHeader,
  type DecodedEvent,
  type Frame,
} from '../../agent/src/rpc/ttrpc/codec';

const frame = (id: number, type: number, flags: number, payload: Buffer | string = ''): Buffer =>
  encodeFrame(id, type, flags, typeof payload === 'string' ? Buffer.from(payload) : payload);

/** Header only, with an arbitrary (possibly oversized) length. */
const header = (length: number, id: number, type = 1, flags = 0): Buffer => {
  const b = Buffer.alloc(HEADER_LENGTH);
  b.writeUInt32BE(length, 0);
  b.writeUInt32BE(id, 4);
  b[8] = type;
  b[9] = flags;
  return b;
};

const summary = (evs: DecodedEvent[]) =>
  evs.map((e) =>
    e.kind === 'frame'
      ? { kind: e.kind, id: e.streamId, type: e.type, flags: e.flags, payload: e.payload.toString('latin1') }
      : { kind: e.kind, id: e.streamId, length: e.length },
  );

function pushAll(d: FrameDecoder, chunks: Buffer[]): DecodedEvent[] {
  return chunks.flatMap((c) => d.push(c));
}

describe('frame header', () => {
  it('is 10 bytes big-endian: length, stream id, type, flags', () => {
    const f = frame(0x01020304, MessageType.RESPONSE, 0x5, 'abc');
    expect([...f.subarray(0, 10)]).toEqual([0, 0, 0, 3, 1, 2, 3, 4, 2, 5]);
    expect(f.subarray(10).toString()).toBe('abc');
    expect(readHeader(f)).toEqual({ length: 3, streamId: 0x01020304, type: 2, flags: 5 });
  });

  it('reads the full uint32 range of lengths and stream ids', () => {
    expect(readHeader(header(0xffffffff, 0xfffffffe, 0xff, 0xff))).toEqual({
      length: 0xffffffff,
      streamId: 0xfffffffe,
      type: 0xff,
      flags: 0xff,
    });
  });

  it('refuses to encode a payload over 4 MiB', () => {
    expect(MAX_MESSAGE_LENGTH).toBe(4194304);
    expect(() => encodeFrame(1, 1, 0, Buffer.alloc(MAX_MESSAGE_LENGTH + 1))).toThrow(/exceed maximum message size of 4194304/);
    expect(encodeFrame(1, 1, 0, Buffer.alloc(MAX_MESSAGE_LENGTH)).length).toBe(MAX_MESSAGE_LENGTH + HEADER_LENGTH);
  });
});

describe('FrameDecoder', () => {
  const stream = Buffer.concat([
    frame(1, 1, 0, 'hello'),
    frame(3, 1, 0, ''),
    frame(5, 3, 0x5, 'x'.repeat(300)),
    frame(7, 2, 0x2, 'end'),
  ]);
  const expected = [
    { kind: 'frame', id: 1, type: 1, flags: 0, payload: 'hello' },
    { kind: 'frame', id: 3, type: 1, flags: 0, payload: '' },
    { kind: 'frame', id: 5, type: 3, flags: 5, payload: 'x'.repeat(300) },
    { kind: 'frame', id: 7, type: 2, flags: 2, payload: 'end' },
  ];

  it('decodes several frames merged into one chunk', () => {
    const d = new FrameDecoder();
    expect(summary(d.push(stream))).toEqual(expected);
    expect(d.midFrame).toBe(false);
    expect(d.buffered).toBe(0);
  });

  it('decodes the same frames fed one byte at a time', () => {
    const d = new FrameDecoder();
    const chunks = [...stream].map((b) => Buffer.from([b]));
    expect(summary(pushAll(d, chunks))).toEqual(expected);
  });

  it('decodes them for every split point into two chunks', () => {
    for (let i = 0; i <= stream.length; i++) {
      const d = new FrameDecoder();
      const evs = pushAll(d, [stream.subarray(0, i), stream.subarray(i)]);
      expect(summary(evs), `split at ${i}`).toEqual(expected);
    }
  });

  it('reports a partial frame as midFrame and emits nothing until it completes', () => {
    const d = new FrameDecoder();
    const f = frame(9, 1, 0, 'payload');
    expect(d.push(f.subarray(0, 4))).toEqual([]);
    expect(d.midFrame).toBe(true);
    expect(d.push(f.subarray(4, 12))).toEqual([]);
    expect(d.midFrame).toBe(true);
    expect(summary(d.push(f.subarray(12)))).toEqual([{ kind: 'frame', id: 9, type: 1, flags: 0, payload: 'payload' }]);
    expect(d.midFrame).toBe(false);
  });

  it('yields a zero-length payload as an empty buffer', () => {
    const d = new FrameDecoder();
    const [ev] = d.push(header(0, 11, 1)) as Frame[];
    expect(ev!.kind).toBe('frame');
    expect(ev!.payload.length).toBe(0);
  });

  it('accepts a payload of exactly 4 MiB', () => {
    const payload = Buffer.alloc(MAX_MESSAGE_LENGTH, 0xab);
    const d = new FrameDecoder();
    const f = frame(13, 1, 0, payload);
    // in 64 KiB chunks, like a socket delivers it
    const evs: DecodedEvent[] = [];
    for (let off = 0; off < f.length; off += 65536) evs.push(...d.push(f.subarray(off, off + 65536)));
    expect(evs).toHaveLength(1);
    const ev = evs[0] as Frame;
    expect(ev.kind).toBe('frame');
    expect(ev.length).toBe(MAX_MESSAGE_LENGTH);
    expect(ev.payload.equals(payload)).toBe(true);
  });

  it('discards a 4 MiB + 1 payload without buffering it, then decodes the next frame', () => {
    const d = new FrameDecoder();
    const evs: DecodedEvent[] = [];
    evs.push(...d.push(header(MAX_MESSAGE_LENGTH + 1, 15)));
    expect(summary(evs)).toEqual([{ kind: 'oversized', id: 15, length: MAX_MESSAGE_LENGTH + 1 }]);
    let maxBuffered = 0;
    const junk = Buffer.alloc(65536, 0x01); // would decode as frames if not skipped
    let left = MAX_MESSAGE_LENGTH + 1;
    while (left > 0) {
      const n = Math.min(left, junk.length);
      evs.push(...d.push(junk.subarray(0, n)));
      maxBuffered = Math.max(maxBuffered, d.buffered);
      left -= n;
    }
    expect(maxBuffered).toBe(0);
    expect(evs).toHaveLength(1);
    evs.push(...d.push(frame(17, 1, 0, 'after')));
    expect(summary(evs.slice(1))).toEqual([{ kind: 'frame', id: 17, type: 1, flags: 0, payload: 'after' }]);
  });

  it('handles an oversized frame whose header, skipped bytes and next frame share chunks', () => {
    const big = 5 << 20;
    const all = Buffer.concat([frame(1, 1, 0, 'a'), header(big, 3), Buffer.alloc(big, 0x07), frame(5, 1, 0, 'b')]);
    for (const split of [5, 11, 15, 20, 20 + big - 1, 20 + big, 21 + big]) {
      const d = new FrameDecoder();
      const evs = pushAll(d, [all.subarray(0, split), all.subarray(split)]);
      expect(summary(evs), `split at ${split}`).toEqual([
        { kind: 'frame', id: 1, type: 1, flags: 0, payload: 'a' },
        { kind: 'oversized', id: 3, length: big },
        { kind: 'frame', id: 5, type: 1, flags: 0, payload: 'b' },
      ]);
    }
  });

  it('stays in discard mode across chunks and counts the skipped bytes exactly', () => {
    const d = new FrameDecoder(100); // small limit to keep it readable
    expect(summary(d.push(header(101, 1)))).toEqual([{ kind: 'oversized', id: 1, length: 101 }]);
    expect(d.push(Buffer.alloc(100))).toEqual([]);
    expect(d.midFrame).toBe(true);
    // the last skipped byte plus a full frame in one chunk
    const evs = d.push(Buffer.concat([Buffer.from([0xee]), frame(3, 1, 0, 'ok')]));
    expect(summary(evs)).toEqual([{ kind: 'frame', id: 3, type: 1, flags: 0, payload: 'ok' }]);
    expect(d.midFrame).toBe(false);
  });
});

describe('Request / Response envelopes', () => {
  it('decodes a Request built by hand with containerd/ttrpc field numbers', () => {
    // service=1, method=2, payload=3 (bytes), timeout_nano=4 (int64), metadata=5 {key=1, value=2}
    const kv = Buffer.from([0x0a, 1, 0x6b, 0x12, 1, 0x76]); // key "k", value "v"
    const bytes = Buffer.concat([
      Buffer.from([0x0a, 3]),
      Buffer.from('svc'),
      Buffer.from([0x12, 2]),
      Buffer.from('mt'),
      Buffer.from([0x1a, 2, 0xde, 0xad]),
      Buffer.from([0x20, 0x80, 0x94, 0xeb, 0xdc, 0x03]), // 1e9
      Buffer.from([0x2a, kv.length]),
      kv,
    ]);
    const r = decodeRequest(bytes);
    expect(r.service).toBe('svc');
    expect(r.method).toBe('mt');
    expect([...r.payload]).toEqual([0xde, 0xad]);
    expect(r.timeoutNano).toBe(1e9);
    expect(r.metadata.map((m) => ({ key: m.key, value: m.value }))).toEqual([{ key: 'k', value: 'v' }]);
  });

  it('round-trips a Request, including a large timeout', () => {
    const bytes = encodeRequest({
      service: 'grpc.Health',
      method: 'Check',
      payload: Buffer.from([1, 2, 3]),
      timeoutNano: 3600e9,
      metadata: [
        { key: 'a', value: '1' },
        { key: 'a', value: '2' },
      ],
    });
    const r = decodeRequest(bytes);
    expect(r).toMatchObject({ service: 'grpc.Health', method: 'Check', timeoutNano: 3600e9 });
    expect([...r.payload]).toEqual([1, 2, 3]);
    expect(r.metadata.map((m) => m.value)).toEqual(['1', '2']);
  });

  it('a Request without timeout or metadata decodes with timeoutNano 0', () => {
    const r = decodeRequest(encodeRequest({ service: 's', method: 'm' }));
    expect(r.timeoutNano).toBe(0);
    expect(r.metadata).toEqual([]);
    expect(r.payload.length).toBe(0);
  });

  it('encodes an OK Response with an empty status message, like ttrpc-go', () => {
    expect([...encodeResponse({ code: 0, message: '' })]).toEqual([0x0a, 0x00]);
    expect([...encodeResponse({ code: 0, message: '' }, Buffer.from([8, 1]))]).toEqual([0x0a, 0x00, 0x12, 0x02, 0x08, 0x01]);
  });

  it('encodes an error status as google.rpc.Status {code=1, message=2}', () => {
    const b = encodeResponse({ code: 12, message: 'nope' });
    expect([...b]).toEqual([0x0a, 8, 0x08, 12, 0x12, 4, ...Buffer.from('nope')]);
    expect(decodeResponse(b)).toEqual({ status: { code: 12, message: 'nope' }, payload: expect.anything() });
    expect(decodeResponse(b).payload.length).toBe(0);
  });

  it('treats a Response without status as OK and ignores status details', () => {
    expect(decodeResponse(Buffer.alloc(0)).status).toEqual({ code: 0, message: '' });
    // status { code: 5, details: [Any{type_url: "t"}] }
    const any = Buffer.from([0x0a, 1, 0x74]);
    const st = Buffer.concat([Buffer.from([0x08, 5, 0x1a, any.length]), any]);
    const res = decodeResponse(Buffer.concat([Buffer.from([0x0a, st.length]), st]));
    expect(res.status).toEqual({ code: 5, message: '' });
  });

  it('throws on malformed protobuf', () => {
    expect(() => decodeRequest(Buffer.from([0x0a, 10, 1]))).toThrow();
    expect(() => decodeResponse(Buffer.from([0xff, 0xff, 0xff]))).toThrow();
  });
});

describe('encodeResponseFrame (a response frame in pieces, payload not copied)', () => {
  const joined = (parts: Uint8Array[]): Buffer => Buffer.concat(parts);
  const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff));

  it('is byte for byte encodeFrame(encodeResponse(OK, payload)) across varint length boundaries and chunkings', () => {
    for (const n of [1, 2, 127, 128, 300, 16383, 16384, 65536, 2_097_151, 2_097_152, MAX_MESSAGE_LENGTH - 8]) {
      const p = bytes(n);
      const expected = encodeFrame(7, MessageType.RESPONSE, 0, encodeResponse({ code: 0, message: '' }, p));
      for (const chunks of [[p], [p.subarray(0, 1), p.subarray(1)], [p.subarray(0, n >> 1), Buffer.alloc(0), p.subarray(n >> 1)]]) {
        const parts = encodeResponseFrame(7, { code: 0, message: '' }, chunks);
        expect(joined(parts).equals(expected), `n=${n}`).toBe(true);
        // The payload buffers themselves are handed over, not copies.
        expect(parts).toHaveLength(chunks.length + 1);
        chunks.forEach((c, i) => expect(parts[i + 1]).toBe(c));
      }
    }
  });

  it('an empty payload, an error status and a non-OK status with a payload use the plain encoder', () => {
    const cases: Array<[{ code: number; message: string }, Uint8Array[]]> = [
      [{ code: 0, message: '' }, []],
      [{ code: 0, message: '' }, [Buffer.alloc(0)]],
      [{ code: 5, message: 'container c1 not found' }, []],
      [{ code: 13, message: 'partial' }, [bytes(10), bytes(20)]],
    ];
    for (const [st, chunks] of cases) {
      const all = Buffer.concat(chunks);
      const expected = encodeFrame(3, MessageType.RESPONSE, 0, encodeResponse(st, all.length > 0 ? all : undefined));
      const parts = encodeResponseFrame(3, st, chunks);
      expect(parts).toHaveLength(1);
      expect(joined(parts).equals(expected)).toBe(true);
    }
  });

  it('refuses a message beyond MAX_MESSAGE_LENGTH (RangeError), counting the Response fields', () => {
    const limit = MAX_MESSAGE_LENGTH - 2 - 1 - 4; // status (2), payload tag (1), 4-byte length
    expect(() => encodeResponseFrame(1, { code: 0, message: '' }, [Buffer.alloc(limit)])).not.toThrow();
    expect(() => encodeResponseFrame(1, { code: 0, message: '' }, [Buffer.alloc(limit), Buffer.alloc(1)])).toThrow(RangeError);
  });

  it('decodes back through FrameDecoder and decodeResponse', () => {
    const p = bytes(100_000);
    const d = new FrameDecoder();
    const events = encodeResponseFrame(9, { code: 0, message: '' }, [p.subarray(0, 5), p.subarray(5)]).flatMap((b) => d.push(Buffer.from(b)));
    expect(events).toHaveLength(1);
    const f = events[0] as Frame;
    expect(f.streamId).toBe(9);
    expect(f.type).toBe(MessageType.RESPONSE);
    const r = decodeResponse(f.payload);
    expect(r.status.code).toBe(0);
    expect(Buffer.from(r.payload).equals(p)).toBe(true);
  });
});
