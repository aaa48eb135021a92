// The protocol schema: loaded from the descriptor that scripts/gen-descriptor.mjs
// compiles from agent/proto/*.proto (the one source of truth). Server (ttrpc and
// gRPC) and agent-ctl all encode and decode through this module.
import protobuf from 'protobufjs/light.js';
import descriptor from './descriptor.generated.json';
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
}

let root: protobuf.Root | undefined;
let methodTable: Map<string, MethodInfo> | undefined;

export function schemaRoot(): protobuf.Root {
  if (!root) {
    root = protobuf.Root.fromJSON(descriptor as protobuf.INamespace);
    root.resolveAll();
  }
  return root;
}

export function lookupType(name: string): protobuf.Type {
  return schemaRoot().lookupType(name);
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

/** All RPC methods of the services we serve, keyed "grpc.AgentService/Method". */
export function methods(): Map<string, MethodInfo> {
  if (methodTable) return methodTable;
  const table = new Map<string, MethodInfo>();
  const r = schemaRoot();
  for (const serviceName of SERVICES) {
    const service = r.lookupService(serviceName);
    for (const m of Object.values(service.methods)) {
      m.resolve();
      const requestType = m.resolvedRequestType!;
      const responseType = m.resolvedResponseType!;
      const special = serviceName === 'grpc.AgentService' && m.name === 'CreateContainer';
      table.set(`${serviceName}/${m.name}`, {
        service: serviceName,
        method: m.name,
        path: `/${serviceName}/${m.name}`,
        requestType,
        responseType,
        requestStream: !!m.requestStream,
        responseStream: !!m.responseStream,
        decodeRequest: special
          ? (buf) => decodeCreateContainer(requestType, buf)
          : (buf) => decode(requestType, buf),
        encodeRequest: (obj) => encode(requestType, obj),
        decodeResponse: (buf) => decode(responseType, buf),
        encodeResponse: (obj) => encode(responseType, obj),
      });
    }
  }
  methodTable = table;
  return table;
}

export function methodInfo(service: string, method: string): MethodInfo | undefined {
  return methods().get(`${service}/${method}`);
}
