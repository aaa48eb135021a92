import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Code, ConnectionError, RpcError } from '../../agent/src/client/errors';
import { TtrpcClient } from '../../agent/src/client/ttrpc';
import {
  FrameDecoder,
  HEADER_LENGTH,
  MAX_MESSAGE_LENGTH,
  MessageType,
  decodeRequest,
  encodeFrame,
  encodeResponse,
  type TtrpcRequest,
} from '../../agent/src/rpc/ttrpc/codec';

/** A scripted ttrpc peer: records requests, the test decides what to answer. */
interface Fake {
  path: string;
  requests: (TtrpcRequest & { id: number; flags: number })[];
  sock(): Promise<net.Socket>;
  nextRequest(): Promise<TtrpcRequest & { id: number; flags: number }>;
  close(): Promise<void>;
}

async function fakeServer(): Promise<Fake> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-ttc-'));
  const p = path.join(dir, 's.sock');
  const requests: Fake['requests'] = [];
  const waiters: ((r: Fake['requests'][number]) => void)[] = [];
  let serverSock: net.Socket | undefined;
  const sockWaiters: ((s: net.Socket) => void)[] = [];
  const server = net.createServer((s) => {
    serverSock = s;
    s.on('error', () => {});
    for (const w of sockWaiters.splice(0)) w(s);
    const d = new FrameDecoder();
    s.on('data', (c: Buffer) => {
      for (const ev of d.push(c)) {
        if (ev.kind !== 'frame') continue;
        const r = { ...decodeRequest(ev.payload), id: ev.streamId, flags: ev.flags };
        requests.push(r);
        const w = waiters.shift();
        if (w) w(r);
      }
    });
  });
  await new Promise<void>((r) => server.listen(p, r));
  let seen = 0;
  return {
    path: p,
    requests,
    sock: () => (serverSock ? Promise.resolve(serverSock) : new Promise((r) => sockWaiters.push(r))),
    nextRequest: () => {
      if (requests.length > seen) return Promise.resolve(requests[seen++]!);
      return new Promise((r) => waiters.push((x) => (seen++, r(x))));
    },
    close: async () => {
      serverSock?.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

const connect = (p: string) =>
  new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect(p, () => resolve(s));
    s.once('error', reject);
  });

let fake: Fake;
let client: TtrpcClient;
beforeEach(async () => {
  fake = await fakeServer();
  client = new TtrpcClient(await connect(fake.path));
});
afterEach(async () => {
  client.close();
  await fake.close();
});

const respond = async (id: number, code: number, message: string, payload?: Uint8Array) =>
  (await fake.sock()).write(encodeFrame(id, MessageType.RESPONSE, 0, Buffer.from(encodeResponse({ code, message }, payload))));

describe('TtrpcClient', () => {
  it('sends unary requests on odd stream ids 1, 3, 5 with service, method and payload', async () => {
    const ps = [1, 2, 3].map((i) => client.call('grpc.Health', 'Check', Buffer.from([i])));
    for (let i = 0; i < 3; i++) await fake.nextRequest();
    expect(fake.requests.map((r) => r.id)).toEqual([1, 3, 5]);
    expect(fake.requests.map((r) => [r.service, r.method, [...r.payload], r.flags, r.timeoutNano])).toEqual([
      ['grpc.Health', 'Check', [1], 0, 0],
      ['grpc.Health', 'Check', [2], 0, 0],
      ['grpc.Health', 'Check', [3], 0, 0],
    ]);
    for (const id of [5, 1, 3]) await respond(id, 0, '', Buffer.from([id]));
    expect((await Promise.all(ps)).map((b) => [...b])).toEqual([[1], [3], [5]]);
    expect(client.inFlight).toBe(0);
  });

  it('sends timeout_nano and metadata', async () => {
    const p = client.call('s', 'm', Buffer.alloc(0), { timeoutMs: 1500, metadata: { K: ['a', 'b'], z: 'c' } });
    const r = await fake.nextRequest();
    expect(r.timeoutNano).toBe(1500e6);
    expect(r.metadata.map((m) => [m.key, m.value])).toEqual([
      ['k', 'a'],
      ['k', 'b'],
      ['z', 'c'],
    ]);
    await respond(r.id, 0, '');
    expect((await p).length).toBe(0);
  });

  it('rejects with RpcError carrying the status of an error response', async () => {
    const p = client.call('s', 'm', Buffer.alloc(0));
    const r = await fake.nextRequest();
    await respond(r.id, Code.NOT_FOUND, 'gone');
    const err = await p.catch((e) => e);
    expect(err).toBeInstanceOf(RpcError);
    expect(err).not.toBeInstanceOf(ConnectionError);
    expect([err.code, err.message]).toEqual([Code.NOT_FOUND, 'gone']);
  });

  it('rejects DEADLINE_EXCEEDED locally when the answer is late, and ignores the late answer', async () => {
    const p = client.call('s', 'm', Buffer.alloc(0), { timeoutMs: 30 });
    const r = await fake.nextRequest();
    await expect(p).rejects.toMatchObject({ code: Code.DEADLINE_EXCEEDED });
    await respond(r.id, 0, '');
    const p2 = client.call('s', 'm', Buffer.alloc(0));
    const r2 = await fake.nextRequest();
    expect(r2.id).toBe(3);
    await respond(r2.id, 0, '', Buffer.from('x'));
    expect(Buffer.from(await p2).toString()).toBe('x');
  });

  it('rejects every waiting call with ConnectionError when the connection drops', async () => {
    const ps = [client.call('s', 'a', Buffer.alloc(0)), client.call('s', 'b', Buffer.alloc(0))];
    await fake.nextRequest();
    await fake.nextRequest();
    (await fake.sock()).destroy();
    for (const p of ps) await expect(p).rejects.toBeInstanceOf(ConnectionError);
    await expect(client.call('s', 'c', Buffer.alloc(0))).rejects.toBeInstanceOf(ConnectionError);
  });

  it('rejects RESOURCE_EXHAUSTED for an oversized response and keeps working after it', async () => {
    const p1 = client.call('s', 'big', Buffer.alloc(0));
    const r1 = await fake.nextRequest();
    const s = await fake.sock();
    const hdr = Buffer.alloc(HEADER_LENGTH);
    hdr.writeUInt32BE(MAX_MESSAGE_LENGTH + 10, 0);
    hdr.writeUInt32BE(r1.id, 4);
    hdr[8] = MessageType.RESPONSE;
    s.write(hdr);
    s.write(Buffer.alloc(MAX_MESSAGE_LENGTH + 10));
    await expect(p1).rejects.toMatchObject({ code: Code.RESOURCE_EXHAUSTED });
    const p2 = client.call('s', 'small', Buffer.alloc(0));
    await respond((await fake.nextRequest()).id, 0, '', Buffer.from('ok'));
    expect(Buffer.from(await p2).toString()).toBe('ok');
  });

  it('refuses to send a request over 4 MiB', async () => {
    await expect(client.call('s', 'm', Buffer.alloc(MAX_MESSAGE_LENGTH))).rejects.toMatchObject({ code: Code.RESOURCE_EXHAUSTED });
  });

  it('ignores data frames and responses for streams it never opened', async () => {
    const p = client.call('s', 'm', Buffer.alloc(0));
    const r = await fake.nextRequest();
    const s = await fake.sock();
    s.write(encodeFrame(r.id, MessageType.DATA, 0, Buffer.from('x')));
    s.write(encodeFrame(99, MessageType.RESPONSE, 0, Buffer.from(encodeResponse({ code: 0, message: '' }))));
    await respond(r.id, 0, '', Buffer.from('y'));
    expect(Buffer.from(await p).toString()).toBe('y');
  });
});
