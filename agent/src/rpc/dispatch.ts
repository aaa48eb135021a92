// The method table shared by the ttrpc and gRPC servers:
// "grpc.AgentService/CopyFile" -> handler. Handles decoding, deadlines,
// status mapping and logging so transports and services stay thin.
import type { Logger } from 'pino';
import { Code, RpcError, toStatus } from './status';
import { methodInfo, type MethodInfo } from './proto';

export interface CallContext {
  protocol: 'ttrpc' | 'grpc';
  /** Absolute deadline in ms since the epoch (Date.now() clock), if the caller sent one. */
  deadline?: number;
  /** Aborted when the deadline passes or the caller goes away. */
  signal: AbortSignal;
  metadata: Record<string, string[]>;
  log: Logger;
}

export type Handler = (req: Record<string, any>, ctx: CallContext) => unknown | Promise<unknown>;

export interface Status {
  code: Code;
  message: string;
}

export interface BytesResult {
  status: Status;
  /** The encoded response as buffers to send in order (MethodInfo.encodeResponseChunks). */
  payload?: Uint8Array[];
}

/** Which issue brings an RPC that is not served yet, for the UNIMPLEMENTED message. */
export type PlannedFn = (method: string) => string | undefined;

export class Dispatcher {
  private readonly handlers = new Map<string, Handler>();

  constructor(
    private readonly log: Logger,
    private readonly planned: PlannedFn = () => undefined,
  ) {}

  register(fullMethod: string, handler: Handler): void {
    const [service, method] = fullMethod.split('/');
    if (!service || !method || !methodInfo(service, method)) {
      throw new Error(`register: ${fullMethod} is not a method of the protocol`);
    }
    this.handlers.set(fullMethod, handler);
    this.log.trace({ method: fullMethod }, 'handler registered');
  }

  has(fullMethod: string): boolean {
    return this.handlers.has(fullMethod);
  }

  /** ttrpc path: payload bytes in, status + payload bytes out. Never throws. */
  async callBytes(service: string, method: string, payload: Uint8Array, ctx: CallContext): Promise<BytesResult> {
    const info = methodInfo(service, method);
    if (!info) {
      ctx.log.warn({ service, method }, 'unknown method');
      return {
        status: {
          code: Code.UNIMPLEMENTED,
          message: methodInfoMissing(service, method),
        },
      };
    }
    let req: Record<string, any>;
    try {
      req = info.decodeRequest(payload);
    } catch (err) {
      ctx.log.warn({ method: info.path, err: String(err) }, 'undecodable request');
      return {
        status: { code: Code.INVALID_ARGUMENT, message: `${info.path}: cannot decode ${info.requestType.name}: ${(err as Error).message}` },
      };
    }
    try {
      const res = await this.callObject(info, req, ctx);
      return { status: { code: Code.OK, message: '' }, payload: info.encodeResponseChunks(res) };
    } catch (err) {
      return { status: toStatus(err) };
    }
  }

  /** gRPC path (and the inner half of callBytes): decoded request in, plain response object out; throws RpcError. */
  async callObject(info: MethodInfo, req: Record<string, any>, ctx: CallContext): Promise<Record<string, any>> {
    const full = `${info.service}/${info.method}`;
    const handler = this.handlers.get(full);
    if (!handler) {
      const plan = this.planned(info.method);
      throw new RpcError(
        Code.UNIMPLEMENTED,
        `${info.path} is not implemented${plan ? ` yet (planned: ${plan})` : ''}`,
      );
    }
    // Timed (and the log entry built) only when it will be logged: this is every call's path.
    const debug = ctx.log.isLevelEnabled('debug');
    const started = debug ? process.hrtime.bigint() : 0n;
    try {
      const res = await withDeadline(Promise.resolve().then(() => handler(req, ctx)), ctx, info.path);
      if (debug) ctx.log.debug({ method: info.path, us: Number(process.hrtime.bigint() - started) / 1000 }, 'rpc ok');
      return (res ?? {}) as Record<string, any>;
    } catch (err) {
      const st = toStatus(err);
      ctx.log.warn({ method: info.path, code: Code[st.code], err: st.message }, 'rpc failed');
      throw err instanceof RpcError ? err : new RpcError(st.code, st.message);
    }
  }
}

/**
 * A handler whose implementation is loaded on its first call (keeps modules off the agent's
 * start-up path). Concurrent first calls share one load; a failed load is retried on the next call.
 */
export function lazyHandler(load: () => Promise<Handler>): Handler {
  let handler: Handler | undefined;
  let loading: Promise<Handler> | undefined;
  return async (req, ctx) => {
    if (!handler) {
      loading ??= load().finally(() => {
        loading = undefined;
      });
      handler = await loading;
    }
    return handler(req, ctx);
  };
}

function methodInfoMissing(service: string, method: string): string {
  return `unknown method ${service}/${method}`;
}

/** setTimeout's limit. */
const MAX_TIMER_MS = 2 ** 31 - 1;

function withDeadline<T>(p: Promise<T>, ctx: CallContext, path: string): Promise<T> {
  if (ctx.deadline === undefined) return p;
  const left = ctx.deadline - Date.now();
  // setTimeout fires at once beyond 2^31-1 ms (~24.8 days): treat such deadlines as none.
  if (left > MAX_TIMER_MS) return p;
  if (left <= 0) return Promise.reject(new RpcError(Code.DEADLINE_EXCEEDED, `${path}: deadline exceeded before start`));
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new RpcError(Code.DEADLINE_EXCEEDED, `${path}: deadline exceeded after ${left} ms`)), left);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}
