// A client of the agent protocol over ttrpc or gRPC, on any dial() address.
// Used by agent-ctl and by tests.
import type { Duplex } from 'node:stream';
import type protobuf from 'protobufjs/light.js';
import { methodInfo, methods, type MethodInfo } from '../rpc/proto';
import { dial, type DialOptions } from './dial';
import { UsageError, type CallOptions } from './errors';
import { GrpcClient } from './grpc';
import { TtrpcClient } from './ttrpc';

export type Proto = 'ttrpc' | 'grpc';

export interface ConnectOptions extends DialOptions {
  proto?: Proto;
}

/**
 * Find a method by any of the names people use:
 * "CreateContainer" (AgentService implied; a name only Health has also works),
 * "Health.Check", "grpc.Health.Check", "grpc.AgentService/CreateContainer",
 * "/grpc.AgentService/CreateContainer", "AgentService/CreateContainer".
 */
export function resolveMethod(name: string): MethodInfo {
  const n = name.trim().replace(/^\//, '');
  const slash = n.lastIndexOf('/');
  const dot = n.lastIndexOf('.');
  const cut = slash >= 0 ? slash : dot;
  let info: MethodInfo | undefined;
  if (cut < 0) {
    info = methodInfo('grpc.AgentService', n);
    if (!info) {
      const matches = [...methods().values()].filter((m) => m.method === n);
      if (matches.length === 1) info = matches[0];
    }
  } else {
    let service = n.slice(0, cut);
    const method = n.slice(cut + 1);
    if (!service.includes('.')) service = `grpc.${service}`;
    info = methodInfo(service, method);
  }
  if (!info) throw new UsageError(`unknown method ${JSON.stringify(name)} (agent-ctl list shows them all)`);
  return info;
}

/** protobufjs conversion options under which printed JSON converts back losslessly with fromObject. */
export const jsonConversion: protobuf.IConversionOptions = {
  longs: String,
  enums: String,
  bytes: String,
  defaults: true,
  arrays: true,
  objects: true,
  oneofs: false,
};

/** Reject object keys the message type does not have (fromObject would silently drop them). */
export function checkFields(type: protobuf.Type, obj: unknown, where = type.fullName.replace(/^\./, '')): void {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    throw new UsageError(`${where}: expected a JSON object`);
  }
  for (const [key, value] of Object.entries(obj)) {
    const field = type.fields[key];
    if (!field) {
      throw new UsageError(`${where}: unknown field ${JSON.stringify(key)} (fields: ${Object.keys(type.fields).join(', ') || 'none'})`);
    }
    field.resolve();
    const sub = field.resolvedType;
    if (!sub || !('fields' in sub) || value === null || value === undefined) continue;
    const subType = sub as protobuf.Type;
    if (field.map) {
      if (typeof value !== 'object' || Array.isArray(value)) throw new UsageError(`${where}.${key}: expected a JSON object (map)`);
      for (const [k, v] of Object.entries(value)) checkFields(subType, v, `${where}.${key}[${k}]`);
    } else if (field.repeated) {
      if (!Array.isArray(value)) throw new UsageError(`${where}.${key}: expected a JSON array`);
      value.forEach((v, i) => checkFields(subType, v, `${where}.${key}[${i}]`));
    } else if (!subType.fullName.startsWith('.google.protobuf.')) {
      checkFields(subType, value, `${where}.${key}`);
    }
  }
}

export class AgentClient {
  private constructor(
    readonly proto: Proto,
    private readonly ttrpc: TtrpcClient | undefined,
    private readonly grpc: GrpcClient | undefined,
  ) {}

  /** Dial `addr` (see dial.ts for the forms) and speak `proto` (default ttrpc) on it. */
  static async connect(addr: string, opts: ConnectOptions = {}): Promise<AgentClient> {
    const sock = await dial(addr, opts);
    return AgentClient.fromSocket(sock, opts.proto ?? 'ttrpc');
  }

  /** Use an already connected stream. */
  static fromSocket(sock: Duplex, proto: Proto = 'ttrpc'): AgentClient {
    if (proto === 'grpc') return new AgentClient(proto, undefined, new GrpcClient(sock));
    if (proto === 'ttrpc') return new AgentClient(proto, new TtrpcClient(sock), undefined);
    throw new UsageError(`unknown protocol ${String(proto)} (want ttrpc or grpc)`);
  }

  /** Encoded request in, encoded response out. */
  callBytes(info: MethodInfo, payload: Uint8Array, opts?: CallOptions): Promise<Uint8Array> {
    if (this.ttrpc) return this.ttrpc.call(info.service, info.method, payload, opts);
    return this.grpc!.call(info.path, payload, opts);
  }

  /**
   * Call a method by name (see resolveMethod) with a plain request object
   * (snake_case fields, protobufjs fromObject rules); resolves with the plain
   * response object (proto.ts conversion: longs and enums as numbers).
   * Rejects with RpcError for an agent status, ConnectionError for transport failures.
   */
  async call(method: string | MethodInfo, req: Record<string, any> = {}, opts?: CallOptions): Promise<Record<string, any>> {
    const info = typeof method === 'string' ? resolveMethod(method) : method;
    const res = await this.callBytes(info, info.encodeRequest(req), opts);
    return info.decodeResponse(res);
  }

  /** Health.Check; resolves with {status} (1 = SERVING). */
  check(opts?: CallOptions): Promise<Record<string, any>> {
    return this.call('grpc.Health/Check', { service: '' }, opts);
  }

  /** Health.Version; resolves with {grpc_version, agent_version}. */
  version(opts?: CallOptions): Promise<Record<string, any>> {
    return this.call('grpc.Health/Version', { service: '' }, opts);
  }

  close(): void {
    this.ttrpc?.close();
    this.grpc?.close();
  }
}
