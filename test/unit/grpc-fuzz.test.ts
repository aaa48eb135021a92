import * as grpc from '@grpc/grpc-js';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { methodInfo } from '../../agent/src/rpc/proto';
import { HTTP2_PREFACE } from '../../agent/src/transport/sniff';
import { fuzzSeed, rng, type Rng } from '../helpers/prng';
import { closed, rawConnect, startTestServer, type TestServer } from '../helpers/rpc-server';

const SEED = fuzzSeed(0x6f22);
const CONNECTIONS = 40;

/** An HTTP/2 frame: 24-bit length, type, flags, 31-bit stream id, payload. */
function h2frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const h = Buffer.alloc(9);
  h.writeUIntBE(payload.length, 0, 3);
  h[3] = type;
  h[4] = flags;
  h.writeUInt32BE(stream & 0x7fffffff, 5);
  return Buffer.concat([h, payload]);
}

const EMPTY_SETTINGS = h2frame(4, 0, 0, Buffer.alloc(0));

/** Bytes a broken or hostile gRPC client might send after the preface. */
function junk(r: Rng): Buffer {
  const parts: Buffer[] = [];
  if (r.bool(0.7)) parts.push(EMPTY_SETTINGS);
  for (let i = r.int(1, 12); i > 0; i--) {
    switch (r.int(0, 3)) {
      case 0: // random frame of a known type (DATA..CONTINUATION) on a random stream
        parts.push(h2frame(r.int(0, 9), r.int(0, 255), r.int(0, 9), r.bytes(r.int(0, 64))));
        break;
      case 1: // HEADERS with a random HPACK block (END_HEADERS, maybe END_STREAM)
        parts.push(h2frame(1, 4 | r.int(0, 1), 2 * r.int(0, 5) + 1, r.bytes(r.int(1, 80))));
        break;
      case 2: // random frame of an unknown type
        parts.push(h2frame(r.int(10, 255), r.int(0, 255), r.int(0, 100), r.bytes(r.int(0, 32))));
        break;
      default: // plain random bytes
        parts.push(r.bytes(r.int(1, 200)));
    }
  }
  return Buffer.concat(parts);
}

const check = methodInfo('grpc.Health', 'Check')!;

let srv: TestServer;
beforeEach(async () => {
  // short keepalive so sessions of clients that half-closed mid-frame are reaped quickly
  srv = await startTestServer({ grpc: { keepaliveTimeMs: 200, keepaliveTimeoutMs: 200 } });
});
afterEach(async () => {
  await srv.close();
});

describe(`gRPC fuzz (seed ${SEED}; replay with GK_FUZZ_SEED=${SEED})`, () => {
  it(`survives ${CONNECTIONS} connections of random bytes after the HTTP/2 preface and still answers Health.Check`, async () => {
    const r = rng(SEED);
    let bytes = 0;
    for (let batch = 0; batch < CONNECTIONS; batch += 8) {
      await Promise.all(
        Array.from({ length: Math.min(8, CONNECTIONS - batch) }, async () => {
          const sock = await rawConnect(srv.path);
          sock.on('error', () => {});
          sock.resume(); // swallow whatever the server answers (SETTINGS, GOAWAY, ...)
          const data = Buffer.concat([HTTP2_PREFACE, junk(r)]);
          bytes += data.length;
          for (let off = 0; off < data.length; ) {
            const n = r.int(1, 64);
            sock.write(data.subarray(off, off + n));
            off += n;
            if (r.bool(0.3)) await new Promise((res) => setImmediate(res));
          }
          if (r.bool()) setTimeout(() => sock.destroy(), r.int(0, 50));
          else sock.end(); // the server must close its side too, whatever state the session is in
          await closed(sock);
        }),
      );
    }
    expect(bytes).toBeGreaterThan(CONNECTIONS * HTTP2_PREFACE.length);
    expect(srv.sockets).toHaveLength(CONNECTIONS);
    await Promise.all(srv.sockets.map((s) => closed(s)));

    const client = new grpc.Client(`unix://${srv.path}`, grpc.credentials.createInsecure());
    const res = await new Promise<Buffer>((resolve, reject) =>
      client.makeUnaryRequest(
        check.path,
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.from(check.encodeRequest({})),
        new grpc.Metadata(),
        { deadline: Date.now() + 5000 },
        (err, value) => (err ? reject(err) : resolve(value!)),
      ),
    );
    expect(check.decodeResponse(res)).toEqual({ status: 1 });
    client.close();
  }, 60_000);
});
