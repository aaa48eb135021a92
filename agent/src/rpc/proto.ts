// The protocol schema: loaded from the descriptor that scripts/gen-descriptor.mjs
// compiles from agent/proto/*.proto (the one source of truth). Server (ttrpc and
// gRPC) and agent-ctl all encode and decode through this module.
import type protobuf from 'protobufjs/light.js';
import descriptor from './descriptor.generated.json';
import { resolveRef, subsetDescriptor, typeClosure, type DescNode } from './schema-subset';
import { scanFields, withoutFields } from './wire';

export const SERVICES = ['grpc.AgentService', 'grpc.Health'] as const;

/** Options used for every message -> plain object conversion (snake_case kept by the descriptor). */
export const toObjectOptions: protobuf.IConversionOptions = {
  longs: Number,
  enums: Number,
  defaults: true,
  arrays: true,
  objects: true,
};

export interface MethodInfo {
  service: string; // "grpc.AgentService"
  method: string; // "CreateContainer"
  path: string; // "/grpc.AgentService/CreateContainer" (gRPC path)
  requestType: protobuf.Type;
  responseType: protobuf.Type;
  requestStream: boolean;
  responseStream: boolean;
  decodeRequest(buf: Uint8Array): Record<string, any>;
  encodeRequest(obj: Record<string, any>): Uint8Array;
  decodeResponse(buf: Uint8Array): Record<string, any>;
  encodeResponse(obj: Record<string, any>): Uint8Array;
  /**
   * The response as buffers to send in order (their concatenation is encodeResponse(obj)).
   * A response type with a single `bytes` field (ReadStreamResponse) is not copied: a
   * tag-and-length prefix, then the bytes themselves.
   */
  encodeResponseChunks(obj: Record<string, any>): Uint8Array[];
}

let methodTable: Map<string, MethodInfo> | undefined;
let protobufjs: typeof protobuf | undefined;

/**
 * protobufjs itself is loaded (evaluated) on first use, not at start-up: nothing
 * on the agent's way to 'listening' needs it. esbuild bundles this require().
 */
function loadProtobufjs(): typeof protobuf {
  return (protobufjs ??= require('protobufjs/light.js') as typeof protobuf);
}

/** Types built from their part of the descriptor (typeClosure), by full name. */
const partialTypes = new Map<string, protobuf.Type>();

/**
 * Build what the first calls of a runtime need (the ttrpc envelopes and Health.Check's types)
 * now rather than on the first call: the agent calls this once it is listening.
 */
export function prepareSchema(): void {
  for (const t of ['ttrpc.Request', 'ttrpc.Response', 'grpc.CheckRequest', 'grpc.HealthCheckResponse']) lookupType(t);
}

/**
 * A message type by full name, built from its own part of the descriptor (the type and what its
 * fields need) on first use: no call pays for building the whole schema.
 */
export function lookupType(name: string): protobuf.Type {
  let t = partialTypes.get(name);
  if (!t) {
    const part = subsetDescriptor(descriptor as DescNode, typeClosure(descriptor as DescNode, name));
    t = loadProtobufjs().Root.fromJSON(part as protobuf.INamespace).lookupType(name);
    partialTypes.set(name, t);
  }
  return t;
}

export function decode(type: protobuf.Type, buf: Uint8Array): Record<string, any> {
  return type.toObject(type.decode(buf), toObjectOptions);
}

export function encode(type: protobuf.Type, obj: Record<string, any>): Uint8Array {
  return type.encode(type.fromObject(obj)).finish();
}

/**
 * CreateContainerRequest field 8 is `bool agent_pidns` in Kata 1.x and
 * `repeated SharedMount shared_mounts` in 2.x+. Accept both by wire type: a
 * varint field 8 is removed before decoding and surfaced as `agent_pidns`.
 */
function decodeCreateContainer(type: protobuf.Type, buf: Uint8Array): Record<string, any> {
  const fields = scanFields(buf);
  const legacy = fields.filter((f) => f.field === 8 && f.wireType === 0);
  const obj = decode(type, withoutFields(buf, legacy));
  obj.agent_pidns = legacy.length > 0 ? legacy[legacy.length - 1]!.value !== 0 : false;
  return obj;
}

interface DescriptorNamespace {
  nested?: Record<string, DescriptorNamespace>;
  methods?: Record<string, { requestType: string; responseType: string; requestStream?: boolean; responseStream?: boolean }>;
}

/**
 * One method of the table. Built from the plain descriptor without protobufjs:
 * the schema (protobufjs reflection, ~10 ms to build) is only built the first time
 * a request/response type is needed, not on the agent's way to 'listening'.
 */
class Method implements MethodInfo {
  readonly path: string;
  private reqType?: protobuf.Type;
  private resType?: protobuf.Type;

  constructor(
    readonly service: string,
    readonly method: string,
    readonly requestStream: boolean,
    readonly responseStream: boolean,
  ) {
    this.path = `/${service}/${method}`;
    this.decodeRequest =
      service === 'grpc.AgentService' && method === 'CreateContainer'
        ? (buf) => decodeCreateContainer(this.requestType, buf)
        : (buf) => decode(this.requestType, buf);
  }

  private resolve(): void {
    const scope = this.service.split('.');
    const m = serviceNode(this.service).methods![this.method]!;
    this.reqType = lookupType(resolveRef(descriptor as DescNode, scope.slice(0, -1), m.requestType).join('.'));
    this.resType = lookupType(resolveRef(descriptor as DescNode, scope.slice(0, -1), m.responseType).join('.'));
  }

  get requestType(): protobuf.Type {
    if (!this.reqType) this.resolve();
    return this.reqType!;
  }

  get responseType(): protobuf.Type {
    if (!this.resType) this.resolve();
    return this.resType!;
  }

  // Own properties (not prototype methods), so they can be passed around unbound.
  readonly decodeRequest: (buf: Uint8Array) => Record<string, any>;
  readonly encodeRequest = (obj: Record<string, any>): Uint8Array => encode(this.requestType, obj);
  readonly decodeResponse = (buf: Uint8Array): Record<string, any> => decode(this.responseType, buf);
  readonly encodeResponse = (obj: Record<string, any>): Uint8Array => encode(this.responseType, obj);

  /** The single bytes field of the response type (name and wire tag), or null. */
  private bytesOnly?: { name: string; tag: number } | null;

  readonly encodeResponseChunks = (obj: Record<string, any>): Uint8Array[] => {
    if (this.bytesOnly === undefined) {
      const fields = this.responseType.fieldsArray;
      const f = fields.length === 1 ? fields[0]! : undefined;
      this.bytesOnly = f && f.type === 'bytes' && !f.repeated && !f.map && f.id < 16 ? { name: f.name, tag: (f.id << 3) | 2 } : null;
    }
    const b = this.bytesOnly;
    const data = b ? (obj[b.name] as unknown) : undefined;
    if (!b || !(data instanceof Uint8Array) || Object.keys(obj).some((k) => k !== b.name && obj[k] !== undefined)) {
      return [this.encodeResponse(obj)];
    }
    if (data.length === 0) return []; // proto3: a default value is not encoded
    const prefix = Buffer.allocUnsafe(6);
    let pos = 0;
    prefix[pos++] = b.tag;
    let v = data.length;
    while (v > 0x7f) {
      prefix[pos++] = (v & 0x7f) | 0x80;
      v >>>= 7;
    }
    prefix[pos++] = v;
    return [prefix.subarray(0, pos), data];
  };
}

function serviceNode(serviceName: string): DescriptorNamespace {
  let ns: DescriptorNamespace | undefined = descriptor as DescriptorNamespace;
  for (const part of serviceName.split('.')) ns = ns?.nested?.[part];
  if (!ns?.methods) throw new Error(`protocol descriptor has no service ${serviceName}`);
  return ns;
}

/** All RPC methods of the services we serve, keyed "grpc.AgentService/Method". */
export function methods(): Map<string, MethodInfo> {
  if (methodTable) return methodTable;
  const table = new Map<string, MethodInfo>();
  for (const serviceName of SERVICES) {
    const ns = serviceNode(serviceName);
    for (const [name, m] of Object.entries(ns.methods!)) {
      table.set(`${serviceName}/${name}`, new Method(serviceName, name, !!m.requestStream, !!m.responseStream));
    }
  }
  methodTable = table;
  return table;
}

export function methodInfo(service: string, method: string): MethodInfo | undefined {
  return methods().get(`${service}/${method}`);
}
