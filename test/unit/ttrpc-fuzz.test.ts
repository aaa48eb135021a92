import type net from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentClient } from '../../agent/src/client/agent';
import { methods } from '../../agent/src/rpc/proto';
import {
  FrameDecoder,
  HEADER_LENGTH,
  MAX_MESSAGE_LENGTH,
  MessageType,
  decodeResponse,
  encodeFrame,
  encodeRequest,
} from '../../agent/src/rpc/ttrpc/codec';
import { fuzzSeed, rng, type Rng } from '../helpers/prng';
import { closed, rawConnect, startTestServer, type TestServer } from '../helpers/rpc-server';

const SEED = fuzzSeed(0x5eed1);
const CONNECTIONS = 8;
const FRAMES_PER_CONNECTION = 500;

const allMethods = [...methods().values()];

function header(r: Rng, length: number, id: number, type: number): Buffer {
  const h = Buffer.alloc(HEADER_LENGTH);
  h.writeUInt32BE(length >>> 0, 0);
  h.writeUInt32BE(id >>> 0, 4);
  h[8] = type;
  h[9] = r.int(0, 255);
  return h;
}

/** Weighted choice of the fuzz item kind (per mille). */
function kind(r: Rng): number {
  const x = r.int(0, 999);
  if (x < 200) return 0;
  if (x < 350) return 1;
  if (x < 500) return 2;
  if (x < 600) return 3;
  if (x < 700) return 4;
  if (x < 800) return 5;
  if (x < 802) return 6; // oversized: 4 MiB of bytes each, keep it rare
  if (x < 805) return 8; // garbage mid-stream: desynchronises the rest
  return 9;
}

/** One fuzz item: mostly frames, some valid, most broken in some way. */
function item(r: Rng, nextId: () => number, k = kind(r)): { bytes: Buffer } {
  const m = r.pick(allMethods);
  const validPayload = () => Buffer.from(m.encodeRequest({}));
  switch (k) {
    case 0: // a valid request with a valid (empty) message, sometimes with a deadline and metadata
      return {
        bytes: encodeFrame(
          nextId(),
          MessageType.REQUEST,
          0,
          Buffer.from(
            encodeRequest({
              service: m.service,
              method: m.method,
              payload: validPayload(),
              timeoutNano: r.bool() ? r.int(1, 50) * 1e6 : 0,
              metadata: r.bool(0.3) ? [{ key: r.bytes(4).toString('hex'), value: 'v' }] : [],
            }),
          ),
        ),
      };
    case 1: // valid envelope, random method payload
      return {
        bytes: encodeFrame(nextId(), MessageType.REQUEST, 0, Buffer.from(encodeRequest({ service: m.service, method: m.method, payload: r.bytes(r.int(0, 64)) }))),
      };
    case 2: {
      // valid envelope with mutated bytes
      const env = Buffer.from(encodeRequest({ service: m.service, method: m.method, payload: validPayload(), timeoutNano: 1e9 }));
      for (let i = r.int(1, 4); i > 0; i--) env[r.int(0, env.length - 1)] = r.int(0, 255);
      return { bytes: encodeFrame(nextId(), MessageType.REQUEST, 0, env) };
    }
    case 3: // random envelope bytes
      return { bytes: encodeFrame(nextId(), MessageType.REQUEST, r.int(0, 255), r.bytes(r.int(0, 100))) };
    case 4: // random type, flags and stream id (odd or even, reused or not)
      return { bytes: encodeFrame(r.int(0, 2 ** 32 - 1), r.int(0, 255), r.int(0, 255), r.bytes(r.int(0, 40))) };
    case 5: // data frames on random streams
      return { bytes: encodeFrame(r.int(0, 100), MessageType.DATA, r.int(0, 7), r.bytes(r.int(0, 20))) };
    case 6: {
      // oversized frame followed by exactly its bytes (then framing continues)
      const len = MAX_MESSAGE_LENGTH + r.int(1, 2048);
      return { bytes: Buffer.concat([header(r, len, nextId(), MessageType.REQUEST), r.bytes(len)]) };
    }
    case 7: // a header announcing more bytes than will ever come (only as a connection's last item)
      return { bytes: header(r, r.int(1, 2 ** 32 - 1), nextId(), r.int(0, 4)) };
    case 8: // raw garbage: desynchronises framing from here on
      return { bytes: r.bytes(r.int(1, 30)) };
    default: // a request that blocks until the connection goes away (or a deadline)
      return {
        bytes: encodeFrame(
          nextId(),
          MessageType.REQUEST,
          0,
          Buffer.from(
            encodeRequest({
              service: 'grpc.AgentService',
              method: 'WaitProcess',
              payload: Buffer.from(methods().get('grpc.AgentService/WaitProcess')!.encodeRequest({ container_id: `fuzz-${r.int(0, 1e6)}` })),
              timeoutNano: r.bool() ? r.int(1, 20) * 1e6 : 0,
            }),
          ),
        ),
      };
  }
}

/** Every frame the server sends must be a well-formed response. */
function checkServerOutput(sock: net.Socket, problems: string[]): void {
  const d = new FrameDecoder();
  sock.on('data', (c: Buffer) => {
    for (const ev of d.push(c)) {
      if (ev.kind !== 'frame' || ev.type !== MessageType.RESPONSE || ev.flags !== 0) {
        problems.push(`unexpected frame from server: ${JSON.stringify({ kind: ev.kind, type: ev.type, id: ev.streamId })}`);
        continue;
      }
      try {
        decodeResponse(ev.payload);
      } catch (err) {
        problems.push(`undecodable response: ${(err as Error).message}`);
      }
    }
  });
}

let srv: TestServer;
beforeEach(async () => {
  srv = await startTestServer();
});
afterEach(async () => {
  await srv.close();
});

describe(`ttrpc fuzz (seed ${SEED}; replay with GK_FUZZ_SEED=${SEED})`, () => {
  it(`survives ${CONNECTIONS * FRAMES_PER_CONNECTION} mutated and random frames and still answers Health.Check`, async () => {
    const r = rng(SEED);
    const problems: string[] = [];
    let sent = 0;
    await Promise.all(
      Array.from({ length: CONNECTIONS }, async () => {
        const sock = await rawConnect(srv.path);
        sock.on('error', () => {});
        checkServerOutput(sock, problems);
        let id = 1;
        const nextId = () => (r.bool(0.9) ? (id += 2) : r.int(0, 50));
        const parts: Buffer[] = [];
        for (let i = 0; i < FRAMES_PER_CONNECTION; i++) {
          parts.push(item(r, nextId).bytes);
          sent++;
        }
        // end half of the connections inside a frame that never completes
        if (r.bool()) parts.push(item(r, nextId, r.pick([7, 8])).bytes);
        // write in random chunks, yielding so the server interleaves connections
        const all = Buffer.concat(parts);
        for (let off = 0; off < all.length && !sock.destroyed; ) {
          const n = Math.min(all.length - off, r.bool(0.1) ? r.int(65536, 1 << 20) : r.int(1, 4096));
          if (!sock.write(all.subarray(off, off + n))) await new Promise((res) => sock.once('drain', res));
          off += n;
          if (r.bool(0.2)) await new Promise((res) => setImmediate(res));
        }
        if (r.bool(0.5)) sock.end();
        else sock.destroy();
        if (!sock.destroyed) setTimeout(() => sock.destroy(), 2000).unref();
        await closed(sock);
      }),
    );
    expect(sent).toBe(CONNECTIONS * FRAMES_PER_CONNECTION);
    // every served connection ends (no leaked calls keeping one open)
    await Promise.all(srv.ttrpcConns.map((c) => c.closed));
    // calls cut short by the close finish a few microtasks later
    for (let i = 0; i < 100 && srv.ttrpcConns.some((c) => c.inFlight > 0); i++) await new Promise((res) => setTimeout(res, 10));
    expect(srv.ttrpcConns.map((c) => c.inFlight)).toEqual(srv.ttrpcConns.map(() => 0));
    expect(problems).toEqual([]);
    // the fuzzing reached the handlers
    expect(srv.handlers.contexts.length).toBeGreaterThan(0);

    const c = AgentClient.fromSocket(await rawConnect(srv.path), 'ttrpc');
    expect(await c.check({ timeoutMs: 5000 })).toEqual({ status: 1 });
    c.close();
  }, 60_000);
});
