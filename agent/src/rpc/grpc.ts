// gRPC transport: a @grpc/grpc-js Server fed with connections the agent's own
// listener accepted (createConnectionInjector), serving grpc.AgentService and
// grpc.Health through the same Dispatcher as ttrpc.
//
// grpc-js (and node:http2 with it) is imported dynamically on the first gRPC
// connection, so an agent that only ever speaks ttrpc never loads it: the
// build splits it into its own chunk.
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type * as GrpcJs from '@grpc/grpc-js';
import type { CallContext, Dispatcher } from './dispatch';
import { methods, SERVICES, type MethodInfo } from './proto';
import { Code, RpcError, toStatus } from './status';

export interface GrpcServer {
  /** Hand an accepted connection (client preface possibly unshifted back) to the gRPC server. */
  inject(sock: Duplex): void;
  /** Stop serving: running calls are cancelled and every injected connection is closed. */
  close(): Promise<void>;
}

export interface GrpcServerOptions {
  /** Largest request/response message in bytes (default 4 MiB, the ttrpc limit too). */
  maxMessageLength?: number;
  /**
   * Ping each client after this much silence (default 2 min) and drop it when
   * the ack does not come within keepaliveTimeoutMs (default 20 s). Besides
   * dead peers this reaps clients that half-closed in the middle of an HTTP/2
   * frame: node:http2 never notices their EOF and would keep the socket forever.
   */
  keepaliveTimeMs?: number;
  keepaliveTimeoutMs?: number;
}

/** setTimeout's limit; longer deadlines are treated as none. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Marks a request that failed to decode, so the handler can answer INVALID_ARGUMENT (grpc-js would say INTERNAL). */
const DECODE_ERROR = Symbol('decodeError');
interface DecodeFailure {
  [DECODE_ERROR]: string;
}

let grpcModule: Promise<typeof GrpcJs> | undefined;

/** Load @grpc/grpc-js once (the dynamic import is what keeps it out of the agent's startup). */
export function loadGrpc(): Promise<typeof GrpcJs> {
  grpcModule ??= import('@grpc/grpc-js').then((m) => ((m as { default?: typeof GrpcJs }).default ?? m) as typeof GrpcJs);
  return grpcModule;
}

/** Whether grpc-js has been requested in this process (for tests and metrics). */
export function grpcLoaded(): boolean {
  return grpcModule !== undefined;
}

function metadataOf(md: GrpcJs.Metadata): Record<string, string[]> {
  const out: Record<string, string[]> = Object.create(null);
  const json = md.toJSON();
  for (const key of Object.keys(json)) {
    out[key] = (json[key] ?? []).map((v) => (typeof v === 'string' ? v : Buffer.from(v).toString('base64')));
  }
  return out;
}

function serviceDefinition(
  serviceName: string,
  infos: MethodInfo[],
): GrpcJs.ServiceDefinition<GrpcJs.UntypedServiceImplementation> {
  const def: Record<string, GrpcJs.MethodDefinition<Record<string, any>, Record<string, any>>> = {};
  for (const info of infos) {
    if (info.service !== serviceName) continue;
    def[info.method] = {
      path: info.path,
      requestStream: info.requestStream,
      responseStream: info.responseStream,
      requestSerialize: (obj) => Buffer.from(info.encodeRequest(obj)),
      requestDeserialize: (buf) => {
        try {
          return info.decodeRequest(buf);
        } catch (err) {
          return { [DECODE_ERROR]: `${info.path}: cannot decode ${info.requestType.name}: ${(err as Error).message}` } as DecodeFailure as unknown as Record<string, any>;
        }
      },
      responseSerialize: (obj) => Buffer.from(info.encodeResponse(obj)),
      responseDeserialize: (buf) => info.decodeResponse(buf),
      originalName: info.method,
    };
  }
  return def as GrpcJs.ServiceDefinition<GrpcJs.UntypedServiceImplementation>;
}

function unaryHandler(info: MethodInfo, dispatcher: Dispatcher, log: Logger): GrpcJs.handleUnaryCall<Record<string, any>, Record<string, any>> {
  return (call, callback) => {
    const reply = (err: unknown, res?: Record<string, any>): void => {
      try {
        if (err === null) callback(null, res);
        else {
          const st = toStatus(err);
          callback({ code: st.code as number as GrpcJs.status, details: st.message });
        }
      } catch (e) {
        log.debug({ method: info.path, err: String(e) }, 'grpc reply failed');
      }
    };
    const req = call.request as Record<string | symbol, any>;
    if (req && typeof req[DECODE_ERROR] === 'string') {
      log.warn({ method: info.path, err: req[DECODE_ERROR] }, 'undecodable request');
      reply(new RpcError(Code.INVALID_ARGUMENT, req[DECODE_ERROR]));
      return;
    }
    const ac = new AbortController();
    const onCancel = (): void => ac.abort(new Error('call cancelled'));
    call.once('cancelled', onCancel);
    let deadline: number | undefined;
    const dl = call.getDeadline();
    const dlMs = dl instanceof Date ? dl.getTime() : dl;
    if (Number.isFinite(dlMs) && dlMs - Date.now() <= MAX_TIMER_MS) deadline = dlMs;
    const ctx: CallContext = {
      protocol: 'grpc',
      deadline,
      signal: ac.signal,
      metadata: metadataOf(call.metadata),
      log,
    };
    // The call is over once the Dispatcher answers (also on DEADLINE_EXCEEDED):
    // abort the signal so a handler still running is told to stop.
    const over = (): void => {
      call.off('cancelled', onCancel);
      ac.abort(new Error('call finished'));
    };
    dispatcher.callObject(info, req, ctx).then(
      (res) => {
        over();
        reply(null, res);
      },
      (err) => {
        over();
        reply(err);
      },
    );
  };
}

/** Build a grpc-js Server for the dispatcher's protocol (loads grpc-js). */
export async function createGrpcServer(dispatcher: Dispatcher, log: Logger, opts: GrpcServerOptions = {}): Promise<GrpcServer> {
  const grpc = await loadGrpc();
  const glog = log.child({ proto: 'grpc' });
  const max = opts.maxMessageLength ?? 4 << 20;
  const server = new grpc.Server({
    'grpc.max_receive_message_length': max,
    'grpc.max_send_message_length': max,
    'grpc.keepalive_time_ms': opts.keepaliveTimeMs ?? 120_000,
    'grpc.keepalive_timeout_ms': opts.keepaliveTimeoutMs ?? 20_000,
  });
  const infos = [...methods().values()];
  for (const serviceName of SERVICES) {
    const def = serviceDefinition(serviceName, infos);
    const impl: GrpcJs.UntypedServiceImplementation = {};
    for (const info of infos) {
      if (info.service !== serviceName) continue;
      if (info.requestStream || info.responseStream) {
        throw new Error(`${info.path}: streaming methods are not supported`);
      }
      impl[info.method] = unaryHandler(info, dispatcher, glog) as GrpcJs.UntypedHandleCall;
    }
    server.addService(def, impl);
  }
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  let closed = false;
  return {
    inject(sock: Duplex): void {
      if (closed) {
        sock.destroy();
        return;
      }
      // http2 reports socket errors on the session; keep a listener so a
      // reset before the session exists can never be an unhandled 'error'.
      sock.on('error', (err: Error) => glog.debug({ err: err.message }, 'grpc socket error'));
      injector.injectConnection(sock);
    },
    close(): Promise<void> {
      if (closed) return Promise.resolve();
      closed = true;
      injector.destroy();
      server.forceShutdown();
      return Promise.resolve();
    },
  };
}

let shared: { dispatcher: Dispatcher; server: Promise<GrpcServer> } | undefined;

/**
 * The process-wide gRPC server, created on first use (first gRPC connection).
 * Later calls return the same server; a different dispatcher is an error.
 */
export function sharedGrpcServer(dispatcher: Dispatcher, log: Logger): Promise<GrpcServer> {
  if (shared) {
    if (shared.dispatcher !== dispatcher) return Promise.reject(new Error('sharedGrpcServer: already created for another dispatcher'));
    return shared.server;
  }
  const server = createGrpcServer(dispatcher, log);
  shared = { dispatcher, server };
  server.catch(() => {
    if (shared?.server === server) shared = undefined; // let a later connection retry
  });
  return server;
}

/** Close and forget the shared server (agent shutdown, tests). */
export async function closeSharedGrpcServer(): Promise<void> {
  const s = shared;
  shared = undefined;
  if (s) await (await s.server.catch(() => undefined))?.close();
}
