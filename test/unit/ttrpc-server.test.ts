import net from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentClient } from '../../agent/src/client/agent';
import { Code, RpcError } from '../../agent/src/client/errors';
import { TtrpcClient } from '../../agent/src/client/ttrpc';
import { nullLogger } from '../../agent/src/log';
import { Dispatcher } from '../../agent/src/rpc/dispatch';
import { methodInfo } from '../../agent/src/rpc/proto';
import { serveTtrpc } from '../../agent/src/rpc/ttrpc/server';
import {
  FrameDecoder,
  HEADER_LENGTH,
  MAX_MESSAGE_LENGTH,
  MessageType,
  decodeResponse,
  encodeFrame,
  encodeRequest,
  type Frame,
} from '../../agent/src/rpc/ttrpc/codec';
import { closed, rawConnect, startTestServer, type TestServer } from '../helpers/rpc-server';

/** A raw ttrpc peer: sends arbitrary bytes, receives decoded frames. */
class Raw {
  private readonly frames: Frame[] = [];
  private readonly waiters: ((f: Frame) => void)[] = [];
  private readonly decoder = new FrameDecoder();
  constructor(readonly sock: net.Socket) {
    sock.on('data', (c: Buffer) => {
      for (const ev of this.decoder.push(c)) {
        if (ev.kind !== 'frame') throw new Error('oversized frame from server');
        const w = this.waiters.shift();
        if (w) w(ev);
        else this.frames.push(ev);
      }
    });
    sock.on('error', () => {});
  }
  static async connect(path: string): Promise<Raw> {
    return new Raw(await rawConnect(path));
  }
  next(): Promise<Frame> {
    const f = this.frames.shift();
    if (f) return Promise.resolve(f);
    return new Promise((r) => this.waiters.push(r));
  }
  get received(): number {
    return this.frames.length;
  }
  send(b: Buffer): void {
    this.sock.write(b);
  }
  request(id: number, service: string, method: string, payload: Uint8Array = Buffer.alloc(0), extra: { timeoutNano?: number; metadata?: { key: string; value: string }[] } = {}): void {
    this.send(encodeFrame(id, MessageType.REQUEST, 0, Buffer.from(encodeRequest({ service, method, payload, ...extra }))));
  }
  async response(): Promise<{ id: number; code: number; message: string; payload: Uint8Array }> {
    const f = await this.next();
    expect(f.type).toBe(MessageType.RESPONSE);
    const r = decodeResponse(f.payload);
    return { id: f.streamId, code: r.status.code, message: r.status.message, payload: r.payload };
  }
}

const check = methodInfo('grpc.Health', 'Check')!;
const wait = methodInfo('grpc.AgentService', 'WaitProcess')!;
const checkReq = Buffer.from(check.encodeRequest({ service: '' }));
const waitReq = (name: string) => Buffer.from(wait.encodeRequest({ container_id: name, exec_id: '' }));

let srv: TestServer;
beforeEach(async () => {
  srv = await startTestServer();
});
afterEach(async () => {
  await srv.close();
});

describe('ttrpc server', () => {
  it('answers Health.Check on the request stream id', async () => {
    const raw = await Raw.connect(srv.path);
    raw.request(1, 'grpc.Health', 'Check', checkReq);
    const r = await raw.response();
    expect(r).toMatchObject({ id: 1, code: Code.OK });
    expect(check.decodeResponse(r.payload)).toEqual({ status: 1 });
    expect(srv.handlers.contexts[0]!.ctx.protocol).toBe('ttrpc');
    expect(srv.handlers.contexts[0]!.ctx.deadline).toBeUndefined();
    raw.sock.destroy();
  });

  it('runs requests of one connection concurrently and answers each as it completes', async () => {
    const raw = await Raw.connect(srv.path);
    raw.request(1, 'grpc.AgentService', 'WaitProcess', waitReq('A'));
    raw.request(3, 'grpc.AgentService', 'WaitProcess', waitReq('B'));
    await srv.handlers.started('WaitProcess', 2);
    raw.request(5, 'grpc.Health', 'Check', checkReq);
    expect((await raw.response()).id).toBe(5);
    srv.handlers.gate('B').open();
    expect(await raw.response()).toMatchObject({ id: 3, code: Code.OK });
    srv.handlers.gate('A').open();
    const a = await raw.response();
    expect(a).toMatchObject({ id: 1, code: Code.OK });
    expect(wait.decodeResponse(a.payload)).toEqual({ status: 7 });
    raw.sock.destroy();
  });

  it('turns timeout_nano into ctx.deadline and answers DEADLINE_EXCEEDED when it passes', async () => {
    const raw = await Raw.connect(srv.path);
    const before = Date.now();
    raw.request(1, 'grpc.AgentService', 'WaitProcess', waitReq('never'), { timeoutNano: 50e6 });
    const r = await raw.response();
    expect(r.id).toBe(1);
    expect(r.code).toBe(Code.DEADLINE_EXCEEDED);
    const { ctx } = srv.handlers.contexts.find((c) => c.method === 'WaitProcess')!;
    expect(ctx.deadline).toBeGreaterThanOrEqual(before + 50);
    expect(ctx.deadline).toBeLessThanOrEqual(Date.now() + 50);
    await new Promise<void>((resolve) => (ctx.signal.aborted ? resolve() : ctx.signal.addEventListener('abort', () => resolve())));
    expect(ctx.signal.aborted).toBe(true);
    raw.sock.destroy();
  });

  it('passes metadata to the handler (keys lowercased, repeated keys kept)', async () => {
    const c = AgentClient.fromSocket(await rawConnect(srv.path), 'ttrpc');
    const res = await c.call('ReadStdout', { container_id: 'c' }, { metadata: { 'X-Trace': ['1', '2'], other: 'v' }, timeoutMs: 60_000 });
    const info = JSON.parse(Buffer.from(res.data).toString());
    expect(info.protocol).toBe('ttrpc');
    expect(info.metadata).toEqual({ 'x-trace': ['1', '2'], other: ['v'] });
    expect(info.deadline).toBeGreaterThan(Date.now());
    c.close();
  });

  it('answers UNIMPLEMENTED for unknown services, unknown methods and unregistered methods', async () => {
    const raw = await Raw.connect(srv.path);
    raw.request(1, 'grpc.Nope', 'Check', checkReq);
    raw.request(3, 'grpc.Health', 'Nope', checkReq);
    raw.request(5, 'grpc.AgentService', 'StartContainer');
    const rs = [await raw.response(), await raw.response(), await raw.response()].sort((a, b) => a.id - b.id);
    expect(rs.map((r) => r.code)).toEqual([Code.UNIMPLEMENTED, Code.UNIMPLEMENTED, Code.UNIMPLEMENTED]);
    expect(rs[2]!.message).toContain('StartContainer');
    raw.sock.destroy();
  });

  it('answers INVALID_ARGUMENT for an undecodable method payload and an undecodable Request', async () => {
    const raw = await Raw.connect(srv.path);
    raw.request(1, 'grpc.Health', 'Check', Buffer.from([0x0a, 0x7f, 0x01])); // truncated string field
    const r1 = await raw.response();
    expect(r1).toMatchObject({ id: 1, code: Code.INVALID_ARGUMENT });
    expect(r1.message).toMatch(/cannot decode CheckRequest/);
    raw.send(encodeFrame(3, MessageType.REQUEST, 0, Buffer.from([0x0a, 0x50, 0x41]))); // truncated envelope
    const r2 = await raw.response();
    expect(r2).toMatchObject({ id: 3, code: Code.INVALID_ARGUMENT });
    expect(r2.message).toMatch(/unmarshal request error/);
    // still serving
    raw.request(5, 'grpc.Health', 'Check', checkReq);
    expect(await raw.response()).toMatchObject({ id: 5, code: Code.OK });
    raw.sock.destroy();
  });

  it('ignores response and unknown frame types, rejects data frames, even and reused stream ids', async () => {
    const raw = await Raw.connect(srv.path);
    raw.send(encodeFrame(1, MessageType.RESPONSE, 0, Buffer.from([0x0a, 0x00])));
    raw.send(encodeFrame(3, 0x7f, 0xff, Buffer.from('future')));
    raw.send(encodeFrame(5, MessageType.DATA, 0x1, Buffer.from('x')));
    const d = await raw.response();
    expect(d).toMatchObject({ id: 5, code: Code.INVALID_ARGUMENT, message: 'StreamID is no longer active' });
    raw.send(encodeFrame(8, MessageType.REQUEST, 0, Buffer.from(encodeRequest({ service: 'grpc.Health', method: 'Check' }))));
    expect(await raw.response()).toMatchObject({ id: 8, code: Code.INVALID_ARGUMENT, message: 'StreamID must be odd for client initiated streams' });
    raw.request(9, 'grpc.Health', 'Check', checkReq);
    expect(await raw.response()).toMatchObject({ id: 9, code: Code.OK });
    raw.request(7, 'grpc.Health', 'Check', checkReq); // lower than 9
    expect(await raw.response()).toMatchObject({ id: 7, code: Code.INVALID_ARGUMENT, message: 'StreamID cannot be re-used and must increment' });
    raw.request(11, 'grpc.Health', 'Check', checkReq);
    expect(await raw.response()).toMatchObject({ id: 11, code: Code.OK });
    // nothing was sent for the ignored frames (ids 1 and 3)
    expect(raw.received).toBe(0);
    expect(srv.handlers.contexts.filter((c) => c.method === 'Check')).toHaveLength(2);
    raw.sock.destroy();
  });

  it('answers RESOURCE_EXHAUSTED for a frame over 4 MiB, skips it, and serves the next one', async () => {
    const raw = await Raw.connect(srv.path);
    const hdr = Buffer.alloc(HEADER_LENGTH);
    hdr.writeUInt32BE(MAX_MESSAGE_LENGTH + 1, 0);
    hdr.writeUInt32BE(1, 4);
    hdr[8] = MessageType.REQUEST;
    raw.send(hdr);
    const r = await raw.response();
    expect(r).toEqual({ id: 1, code: Code.RESOURCE_EXHAUSTED, message: 'message length 4194305 exceed maximum message size of 4194304', payload: expect.anything() });
    // the skipped bytes look like frames; none of them may be decoded
    const junk = encodeFrame(3, MessageType.REQUEST, 0, Buffer.from(encodeRequest({ service: 'grpc.Health', method: 'Check' })));
    const body = Buffer.alloc(MAX_MESSAGE_LENGTH + 1);
    for (let off = 0; off + junk.length <= body.length; off += junk.length) junk.copy(body, off);
    raw.send(body);
    raw.request(5, 'grpc.Health', 'Check', checkReq);
    expect(await raw.response()).toMatchObject({ id: 5, code: Code.OK });
    expect(srv.handlers.contexts).toHaveLength(1);
    raw.sock.destroy();
  });

  it('accepts a request frame of exactly 4 MiB', async () => {
    const raw = await Raw.connect(srv.path);
    // CheckRequest with a large unknown field 15 (skipped by the decoder)
    const envelopeFor = (n: number) => {
      const blob = Buffer.alloc(n, 0x61);
      const payload = Buffer.concat([Buffer.from([0x7a]), varint(n), blob]);
      return Buffer.from(encodeRequest({ service: 'grpc.Health', method: 'Check', payload }));
    };
    let n = MAX_MESSAGE_LENGTH - 64;
    let env = envelopeFor(n);
    n += MAX_MESSAGE_LENGTH - env.length;
    env = envelopeFor(n);
    if (env.length !== MAX_MESSAGE_LENGTH) env = envelopeFor(n + (MAX_MESSAGE_LENGTH - env.length));
    expect(env.length).toBe(MAX_MESSAGE_LENGTH);
    raw.send(encodeFrame(1, MessageType.REQUEST, 0, env));
    expect(await raw.response()).toMatchObject({ id: 1, code: Code.OK });
    raw.sock.destroy();
  });

  it('closes the connection when the client ends inside a frame', async () => {
    const raw = await Raw.connect(srv.path);
    const f = encodeFrame(1, MessageType.REQUEST, 0, Buffer.from(encodeRequest({ service: 'grpc.Health', method: 'Check' })));
    raw.sock.end(f.subarray(0, f.length - 3));
    await closed(raw.sock);
    await srv.ttrpcConns[0]!.closed;
    expect(srv.handlers.contexts).toHaveLength(0);
  });

  it('answers requests already running when the client half-closes, then ends', async () => {
    await srv.close();
    srv = await startTestServer({ allowHalfOpen: true });
    const raw = new Raw(await new Promise<net.Socket>((resolve) => {
      const s = net.connect({ path: srv.path, allowHalfOpen: true }, () => resolve(s));
    }));
    raw.request(1, 'grpc.AgentService', 'WaitProcess', waitReq('H'));
    await srv.handlers.started('WaitProcess', 1);
    raw.sock.end();
    srv.handlers.gate('H').open();
    expect(await raw.response()).toMatchObject({ id: 1, code: Code.OK });
    await closed(raw.sock);
  });

  it('survives a client that vanishes mid-call: the call is aborted and its response dropped', async () => {
    const raw = await Raw.connect(srv.path);
    raw.request(1, 'grpc.AgentService', 'WaitProcess', waitReq('V'));
    await srv.handlers.started('WaitProcess', 1);
    const { ctx } = srv.handlers.contexts[0]!;
    raw.sock.destroy();
    await srv.ttrpcConns[0]!.closed;
    expect(ctx.signal.aborted).toBe(true);
    srv.handlers.gate('V').open(); // the handler finishes after the client left
    await new Promise((r) => setTimeout(r, 20));
    // a new connection is served normally
    const c = AgentClient.fromSocket(await rawConnect(srv.path));
    expect(await c.check()).toEqual({ status: 1 });
    c.close();
  });

  it('close() aborts running calls and drops the connection', async () => {
    const c = new TtrpcClient(await rawConnect(srv.path));
    const p = c.call('grpc.AgentService', 'WaitProcess', waitReq('X'));
    await srv.handlers.started('WaitProcess', 1);
    srv.ttrpcConns[0]!.close();
    await expect(p).rejects.toMatchObject({ name: 'ConnectionError', code: Code.UNAVAILABLE });
    expect(srv.handlers.contexts[0]!.ctx.signal.aborted).toBe(true);
  });

  it('on a byte stream without connection boundaries (virtio-serial), stream 1 again starts a new host session', async () => {
    await srv.close();
    srv = await startTestServer({ ttrpc: { newSessionOnStreamOne: true } });
    const raw = await Raw.connect(srv.path);
    raw.request(1, 'grpc.Health', 'Check', checkReq);
    expect(await raw.response()).toMatchObject({ id: 1, code: Code.OK });
    raw.request(3, 'grpc.Health', 'Check', checkReq);
    expect(await raw.response()).toMatchObject({ id: 3, code: Code.OK });
    // The next client on the same stream starts at 1 again: served, and its numbering continues.
    raw.request(1, 'grpc.Health', 'Check', checkReq);
    expect(await raw.response()).toMatchObject({ id: 1, code: Code.OK });
    raw.request(3, 'grpc.Health', 'Check', checkReq);
    expect(await raw.response()).toMatchObject({ id: 3, code: Code.OK });
    // Any other reuse is still refused.
    raw.request(3, 'grpc.Health', 'Check', checkReq);
    expect(await raw.response()).toMatchObject({ id: 3, code: Code.INVALID_ARGUMENT, message: 'StreamID cannot be re-used and must increment' });
    raw.sock.destroy();
  });

  it('stops reading new requests while maxInFlight calls run', async () => {
    await srv.close();
    srv = await startTestServer({ ttrpc: { maxInFlight: 2 } });
    const c = new TtrpcClient(await rawConnect(srv.path));
    const ps = ['M1', 'M2', 'M3'].map((n) => c.call('grpc.AgentService', 'WaitProcess', waitReq(n)));
    await srv.handlers.started('WaitProcess', 2);
    await new Promise((r) => setTimeout(r, 50));
    expect(srv.handlers.contexts.map((x) => x.req.container_id)).toEqual(['M1', 'M2']);
    srv.handlers.gate('M1').open();
    await srv.handlers.started('WaitProcess', 3);
    expect(srv.handlers.contexts[2]!.req.container_id).toBe('M3');
    srv.handlers.gate('M2').open();
    srv.handlers.gate('M3').open();
    await Promise.all(ps);
    c.close();
  });

  it('answers RESOURCE_EXHAUSTED instead of sending a response over 4 MiB', async () => {
    const d = new Dispatcher(nullLogger());
    d.register('grpc.AgentService/ReadStdout', () => ({ data: Buffer.alloc(MAX_MESSAGE_LENGTH) }));
    d.register('grpc.Health/Check', () => ({ status: 1 }));
    const server = net.createServer((s) => serveTtrpc(s, d, nullLogger()));
    const p = `${srv.dir}/big.sock`;
    await new Promise<void>((r) => server.listen(p, r));
    try {
      const c = AgentClient.fromSocket(await rawConnect(p));
      const err = await c.call('ReadStdout', {}).catch((e) => e);
      expect(err).toBeInstanceOf(RpcError);
      expect(err.code).toBe(Code.RESOURCE_EXHAUSTED);
      expect(err.message).toMatch(/^response message length \d+ exceed maximum message size of 4194304$/);
      expect(await c.check()).toEqual({ status: 1 });
      c.close();
    } finally {
      server.close();
    }
  });

  it('maps handler errors to their status', async () => {
    const c = AgentClient.fromSocket(await rawConnect(srv.path));
    const err = await c.call('SignalProcess', { container_id: 'c', exec_id: 'e1' }).catch((e) => e);
    expect(err).toBeInstanceOf(RpcError);
    expect(err.code).toBe(Code.NOT_FOUND);
    expect(err.message).toBe('no such process e1');
    c.close();
  });
});

function varint(n: number): Buffer {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return Buffer.from(out);
}
