import * as grpc from '@grpc/grpc-js';
import net from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentClient } from '../../agent/src/client/agent';
import { Code, ConnectionError, RpcError } from '../../agent/src/client/errors';
import { GrpcClient, grpcTimeout } from '../../agent/src/client/grpc';
import { nullLogger } from '../../agent/src/log';
import { createGrpcServer } from '../../agent/src/rpc/grpc';
import { methodInfo } from '../../agent/src/rpc/proto';
import { rawConnect, startTestServer, testHandlers, type TestServer } from '../helpers/rpc-server';

const identity = (b: Buffer) => b;

/** One unary call with a real grpc-js client; raw bytes in and out. */
function grpcCall(
  client: grpc.Client,
  path: string,
  req: Uint8Array,
  opts: { deadlineMs?: number; metadata?: Record<string, string> } = {},
): Promise<{ err: grpc.ServiceError | null; res?: Buffer }> {
  const md = new grpc.Metadata();
  for (const [k, v] of Object.entries(opts.metadata ?? {})) md.add(k, v);
  const callOpts: grpc.CallOptions = opts.deadlineMs !== undefined ? { deadline: Date.now() + opts.deadlineMs } : {};
  return new Promise((resolve) => {
    client.makeUnaryRequest(path, identity, identity, Buffer.from(req), md, callOpts, (err, res) => resolve({ err, res }));
  });
}

const check = methodInfo('grpc.Health', 'Check')!;
const create = methodInfo('grpc.AgentService', 'CreateContainer')!;
const wait = methodInfo('grpc.AgentService', 'WaitProcess')!;

let srv: TestServer;
let client: grpc.Client;
beforeEach(async () => {
  srv = await startTestServer();
  client = new grpc.Client(`unix://${srv.path}`, grpc.credentials.createInsecure());
});
afterEach(async () => {
  client.close();
  await srv.close();
});

describe('gRPC server (grpc-js client, connections injected from our own net.Server)', () => {
  it('answers Health.Check', async () => {
    const { err, res } = await grpcCall(client, '/grpc.Health/Check', check.encodeRequest({ service: '' }));
    expect(err).toBeNull();
    expect(check.decodeResponse(res!)).toEqual({ status: 1 });
    expect(srv.handlers.contexts[0]!.ctx.protocol).toBe('grpc');
  });

  it('answers UNIMPLEMENTED for an unregistered method and for an unknown path', async () => {
    const a = await grpcCall(client, '/grpc.AgentService/StartContainer', new Uint8Array());
    expect(a.err?.code).toBe(Code.UNIMPLEMENTED);
    expect(a.err?.details).toContain('/grpc.AgentService/StartContainer is not implemented');
    const b = await grpcCall(client, '/grpc.Nope/Check', new Uint8Array());
    expect(b.err?.code).toBe(Code.UNIMPLEMENTED);
  });

  it('decodes a Kata 1.x CreateContainerRequest with a varint field 8 as agent_pidns', async () => {
    // container_id = "c1" (field 1), agent_pidns = true (field 8, varint)
    const legacy = Buffer.from([0x0a, 2, 0x63, 0x31, 0x40, 0x01]);
    const { err } = await grpcCall(client, '/grpc.AgentService/CreateContainer', legacy);
    expect(err).toBeNull();
    const req = srv.handlers.contexts.find((c) => c.method === 'CreateContainer')!.req;
    expect(req.container_id).toBe('c1');
    expect(req.agent_pidns).toBe(true);
    expect(req.shared_mounts).toEqual([]);
  });

  it('decodes a 2.x CreateContainerRequest with shared_mounts in field 8', async () => {
    const bytes = create.encodeRequest({ container_id: 'c2', shared_mounts: [{ name: 'm', src_ctr: 'a' }] });
    const { err } = await grpcCall(client, '/grpc.AgentService/CreateContainer', bytes);
    expect(err).toBeNull();
    const req = srv.handlers.contexts.find((c) => c.method === 'CreateContainer')!.req;
    expect(req.agent_pidns).toBe(false);
    expect(req.shared_mounts).toHaveLength(1);
    expect(req.shared_mounts[0]).toMatchObject({ name: 'm', src_ctr: 'a' });
  });

  it('answers INVALID_ARGUMENT (not INTERNAL) for an undecodable request', async () => {
    const { err } = await grpcCall(client, '/grpc.Health/Check', Buffer.from([0x0a, 0x7f, 0x01]));
    expect(err?.code).toBe(Code.INVALID_ARGUMENT);
    expect(err?.details).toMatch(/cannot decode CheckRequest/);
    expect(srv.handlers.contexts).toHaveLength(0);
  });

  it('maps handler errors to their status', async () => {
    const info = methodInfo('grpc.AgentService', 'SignalProcess')!;
    const { err } = await grpcCall(client, info.path, info.encodeRequest({ container_id: 'c', exec_id: 'e9' }));
    expect(err?.code).toBe(Code.NOT_FOUND);
    expect(err?.details).toBe('no such process e9');
  });

  it('passes the deadline and metadata to the handler and aborts its signal when the deadline passes', async () => {
    const before = Date.now();
    const { err } = await grpcCall(client, wait.path, wait.encodeRequest({ container_id: 'never' }), {
      deadlineMs: 100,
      metadata: { 'x-trace': 'abc' },
    });
    expect(err?.code).toBe(Code.DEADLINE_EXCEEDED);
    const { ctx } = srv.handlers.contexts.find((c) => c.method === 'WaitProcess')!;
    expect(ctx.deadline).toBeGreaterThanOrEqual(before);
    expect(ctx.metadata['x-trace']).toEqual(['abc']);
    await new Promise<void>((resolve) => (ctx.signal.aborted ? resolve() : ctx.signal.addEventListener('abort', () => resolve())));
  });

  it('aborts the handler signal when the client cancels', async () => {
    const call = client.makeUnaryRequest(
      wait.path,
      identity,
      identity,
      Buffer.from(wait.encodeRequest({ container_id: 'cancel-me' })),
      () => {},
    );
    await srv.handlers.started('WaitProcess', 1);
    const { ctx } = srv.handlers.contexts[0]!;
    expect(ctx.deadline).toBeUndefined();
    call.cancel();
    await new Promise<void>((resolve) => (ctx.signal.aborted ? resolve() : ctx.signal.addEventListener('abort', () => resolve())));
    expect(ctx.signal.aborted).toBe(true);
  });

  it('keeps serving after a client drops its connection mid-call', async () => {
    const c = AgentClient.fromSocket(await rawConnect(srv.path), 'grpc');
    const p = c.call('WaitProcess', { container_id: 'drop' }).catch((e) => e);
    await srv.handlers.started('WaitProcess', 1);
    const { ctx } = srv.handlers.contexts[0]!;
    c.close();
    expect(await p).toBeInstanceOf(ConnectionError);
    await new Promise<void>((resolve) => (ctx.signal.aborted ? resolve() : ctx.signal.addEventListener('abort', () => resolve())));
    srv.handlers.gate('drop').open();
    const { err, res } = await grpcCall(client, '/grpc.Health/Check', check.encodeRequest({}));
    expect(err).toBeNull();
    expect(check.decodeResponse(res!)).toEqual({ status: 1 });
  });

  it('refuses connections injected after close()', async () => {
    const g = await createGrpcServer(testHandlers().dispatcher, nullLogger());
    await g.close();
    const [a, b] = await socketPair();
    g.inject(a);
    await new Promise<void>((resolve) => b.once('close', () => resolve()));
    expect(a.destroyed).toBe(true);
  });
});

describe('GrpcClient / AgentClient over gRPC (node:http2 on the dialled socket)', () => {
  it('calls Health.Check and Version', async () => {
    const c = AgentClient.fromSocket(await rawConnect(srv.path), 'grpc');
    expect(await c.check()).toEqual({ status: 1 });
    expect(await c.version()).toEqual({ grpc_version: '0.0.1', agent_version: 'test' });
    c.close();
  });

  it('runs calls concurrently on one connection', async () => {
    const c = AgentClient.fromSocket(await rawConnect(srv.path), 'grpc');
    const a = c.call('WaitProcess', { container_id: 'GA' });
    await srv.handlers.started('WaitProcess', 1);
    expect(await c.check()).toEqual({ status: 1 });
    srv.handlers.gate('GA').open();
    expect(await a).toEqual({ status: 7 });
    c.close();
  });

  it('reports agent errors as RpcError with code and message', async () => {
    const c = AgentClient.fromSocket(await rawConnect(srv.path), 'grpc');
    const e1 = await c.call('StartContainer', {}).catch((e) => e);
    expect(e1).toBeInstanceOf(RpcError);
    expect(e1.code).toBe(Code.UNIMPLEMENTED);
    const e2 = await c.call('SignalProcess', { exec_id: 'p%c 1' }).catch((e) => e);
    expect([e2.code, e2.message]).toEqual([Code.NOT_FOUND, 'no such process p%c 1']);
    c.close();
  });

  it('sends grpc-timeout and metadata', async () => {
    const c = AgentClient.fromSocket(await rawConnect(srv.path), 'grpc');
    const before = Date.now();
    // (node:http2 joins repeated header fields into one "a, b" value on the
    // server side, so repeated keys are not checked here)
    const res = await c.call('ReadStdout', {}, { timeoutMs: 60_000, metadata: { 'X-Id': '1', other: 'two' } });
    const info = JSON.parse(Buffer.from(res.data).toString());
    expect(info.protocol).toBe('grpc');
    expect(info.metadata['x-id']).toEqual(['1']);
    expect(info.metadata.other).toEqual(['two']);
    expect(info.deadline).toBeGreaterThanOrEqual(before + 59_000);
    const err = await c.call('WaitProcess', { container_id: 'slow' }, { timeoutMs: 50 }).catch((e) => e);
    expect(err.code).toBe(Code.DEADLINE_EXCEEDED);
    c.close();
  });

  it('keeps 64-bit values intact', async () => {
    const c = AgentClient.fromSocket(await rawConnect(srv.path), 'grpc');
    const info = methodInfo('grpc.AgentService', 'GetGuestDetails')!;
    const bytes = await c.callBytes(info, info.encodeRequest({}));
    const msg = info.responseType.toObject(info.responseType.decode(bytes), { longs: String });
    expect(msg.mem_block_size_bytes).toBe('18446744073709551615');
    c.close();
  });

  it('fails with ConnectionError when the peer does not speak HTTP/2', async () => {
    const server = net.createServer((s) => s.end('garbage that is not http2\n'));
    const p = `${srv.dir}/nothttp2.sock`;
    await new Promise<void>((r) => server.listen(p, r));
    const c = new GrpcClient(await rawConnect(p));
    await expect(c.call('/grpc.Health/Check', new Uint8Array())).rejects.toBeInstanceOf(ConnectionError);
    c.close();
    server.close();
  });

  it('formats grpc-timeout within 8 digits', () => {
    expect(grpcTimeout(1500)).toBe('1500m');
    expect(grpcTimeout(0.2)).toBe('1m');
    expect(grpcTimeout(99_999_999)).toBe('99999999m');
    expect(grpcTimeout(100_000_000)).toBe('100000S');
    expect(grpcTimeout(1e15)).toBe('99999999H');
  });
});

function socketPair(): Promise<[net.Socket, net.Socket]> {
  return new Promise((resolve) => {
    const server = net.createServer((a) => {
      server.close();
      resolve([a, b]);
    });
    let b: net.Socket;
    server.listen(0, '127.0.0.1', () => {
      b = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
      b.on('error', () => {});
    });
  });
}
