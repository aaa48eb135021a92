// In-process agent RPC server for tests of the ttrpc/gRPC layer and agent-ctl:
// a Dispatcher with a few test handlers behind a unix socket, connections
// routed by the real sniffer to serveTtrpc or the (lazily created) gRPC server.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from 'pino';
import { nullLogger } from '../../agent/src/log';
import { Dispatcher, type CallContext } from '../../agent/src/rpc/dispatch';
import { createGrpcServer, type GrpcServer, type GrpcServerOptions } from '../../agent/src/rpc/grpc';
import { notFound } from '../../agent/src/rpc/status';
import { serveTtrpc, type TtrpcConnection, type TtrpcServeOptions } from '../../agent/src/rpc/ttrpc/server';
import { sniff } from '../../agent/src/transport/sniff';

/** A promise with its resolve function, for handlers that wait on the test. */
export class Gate {
  readonly promise: Promise<void>;
  open!: () => void;
  constructor() {
    this.promise = new Promise<void>((r) => (this.open = r));
  }
}

export interface TestHandlers {
  dispatcher: Dispatcher;
  /** Contexts of the calls that reached a handler, in arrival order. */
  contexts: { method: string; req: Record<string, any>; ctx: CallContext }[];
  /** WaitProcess with container_id NAME blocks until gates.get(NAME).open() (created on demand). */
  gate(name: string): Gate;
  /** Resolves when a handler for `method` has started `n` times in total. */
  started(method: string, n: number): Promise<void>;
}

/**
 * Handlers:
 *   grpc.Health/Check      -> {status: 1} (SERVING)
 *   grpc.Health/Version    -> {grpc_version: '0.0.1', agent_version: 'test'}
 *   WaitProcess            -> blocks on gate(container_id) (or until the call is aborted), then {status: 7}
 *   CreateContainer        -> {} (records the decoded request, agent_pidns included)
 *   ReadStdout             -> {data: JSON of {protocol, deadline?, metadata}} of its context
 *   SignalProcess          -> throws NOT_FOUND "no such process <exec_id>"
 *   GetGuestDetails        -> {mem_block_size_bytes: '18446744073709551615', agent_details: {version: 'test'}}
 * Everything else is unregistered (UNIMPLEMENTED).
 */
export function testHandlers(log: Logger = nullLogger()): TestHandlers {
  const dispatcher = new Dispatcher(log);
  const contexts: TestHandlers['contexts'] = [];
  const gates = new Map<string, Gate>();
  const waiters: { method: string; n: number; resolve: () => void }[] = [];
  const gate = (name: string): Gate => {
    let g = gates.get(name);
    if (!g) gates.set(name, (g = new Gate()));
    return g;
  };
  const counts = new Map<string, number>();
  const record = (method: string, req: Record<string, any>, ctx: CallContext): void => {
    contexts.push({ method, req, ctx });
    const count = (counts.get(method) ?? 0) + 1;
    counts.set(method, count);
    for (const w of waiters) if (w.method === method && count >= w.n) w.resolve();
  };
  const started = (method: string, n: number): Promise<void> =>
    new Promise<void>((resolve) => {
      if ((counts.get(method) ?? 0) >= n) resolve();
      else waiters.push({ method, n, resolve });
    });

  dispatcher.register('grpc.Health/Check', (req, ctx) => {
    record('Check', req, ctx);
    return { status: 1 };
  });
  dispatcher.register('grpc.Health/Version', (req, ctx) => {
    record('Version', req, ctx);
    return { grpc_version: '0.0.1', agent_version: 'test' };
  });
  dispatcher.register('grpc.AgentService/WaitProcess', async (req, ctx) => {
    record('WaitProcess', req, ctx);
    await new Promise<void>((resolve) => {
      gate(req.container_id).promise.then(resolve);
      ctx.signal.addEventListener('abort', () => resolve(), { once: true });
    });
    return { status: 7 };
  });
  dispatcher.register('grpc.AgentService/CreateContainer', (req, ctx) => {
    record('CreateContainer', req, ctx);
    return {};
  });
  dispatcher.register('grpc.AgentService/ReadStdout', (req, ctx) => {
    record('ReadStdout', req, ctx);
    const info = { protocol: ctx.protocol, deadline: ctx.deadline, metadata: ctx.metadata };
    return { data: Buffer.from(JSON.stringify(info)) };
  });
  dispatcher.register('grpc.AgentService/SignalProcess', (req, ctx) => {
    record('SignalProcess', req, ctx);
    throw notFound(`no such process ${req.exec_id}`);
  });
  dispatcher.register('grpc.AgentService/GetGuestDetails', (req, ctx) => {
    record('GetGuestDetails', req, ctx);
    return { mem_block_size_bytes: '18446744073709551615', agent_details: { version: 'test' } };
  });
  return { dispatcher, contexts, gate, started };
}

export interface TestServer {
  dir: string;
  path: string;
  /** "unix://<path>" */
  addr: string;
  handlers: TestHandlers;
  /** ttrpc connections served so far. */
  ttrpcConns: TtrpcConnection[];
  /** Server-side sockets accepted so far. */
  sockets: net.Socket[];
  grpc(): Promise<GrpcServer>;
  close(): Promise<void>;
}

export interface TestServerOptions {
  handlers?: TestHandlers;
  log?: Logger;
  ttrpc?: TtrpcServeOptions;
  grpc?: GrpcServerOptions;
  /** net.Server allowHalfOpen (default false, like the agent's listeners). */
  allowHalfOpen?: boolean;
}

export async function startTestServer(opts: TestServerOptions = {}): Promise<TestServer> {
  const log = opts.log ?? nullLogger();
  const handlers = opts.handlers ?? testHandlers(log);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-rpc-'));
  const sockPath = path.join(dir, 'agent.sock');
  const ttrpcConns: TtrpcConnection[] = [];
  const sockets: net.Socket[] = [];
  let grpcServer: Promise<GrpcServer> | undefined;
  const grpc = (): Promise<GrpcServer> => (grpcServer ??= createGrpcServer(handlers.dispatcher, log, opts.grpc));

  const server = net.createServer({ allowHalfOpen: opts.allowHalfOpen ?? false }, (sock) => {
    sockets.push(sock);
    sock.on('error', () => {});
    void sniff(sock, {
      onTtrpc: (s) => ttrpcConns.push(serveTtrpc(s, handlers.dispatcher, log, opts.ttrpc)),
      onGrpc: (s) => {
        grpc().then(
          (g) => g.inject(s),
          () => s.destroy(),
        );
      },
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(sockPath, () => resolve());
  });
  return {
    dir,
    path: sockPath,
    addr: `unix://${sockPath}`,
    handlers,
    ttrpcConns,
    sockets,
    grpc,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      if (grpcServer) await (await grpcServer).close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Raw socket helper: write bytes, read decoded frames one by one. */
export async function rawConnect(sockPath: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(sockPath);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** Wait until `sock` is closed. */
export function closed(sock: net.Socket): Promise<void> {
  return new Promise((resolve) => {
    if (sock.closed) resolve();
    else sock.once('close', () => resolve());
  });
}
