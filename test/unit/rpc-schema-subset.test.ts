// The protocol descriptor in parts (agent/src/rpc/schema-subset.ts): type references resolved as
// protobuf does, the closure of what a message needs, and, for every message of the descriptor,
// a type built from its part that has the same fields, ids, rules and field types as the one built
// from the whole descriptor.
import protobuf from 'protobufjs/light.js';
import { describe, expect, it } from 'vitest';
import descriptor from '../../agent/src/rpc/descriptor.generated.json';
import { lookupType, methods } from '../../agent/src/rpc/proto';
import { resolveRef, subsetDescriptor, typeClosure, type DescNode } from '../../agent/src/rpc/schema-subset';

const root = descriptor as DescNode;

/** Every message type's full name. */
function allMessages(node: DescNode = root, prefix: string[] = []): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(node.nested ?? {})) {
    const p = [...prefix, k];
    if (v.fields) out.push(p.join('.'));
    out.push(...allMessages(v, p));
  }
  return out;
}

const shape = (t: protobuf.Type): unknown =>
  t.fieldsArray.map((f) => {
    f.resolve();
    return { name: f.name, id: f.id, type: f.type, rule: f.rule ?? null, map: f.map, resolved: f.resolvedType ? f.resolvedType.fullName : null };
  });

describe('descriptor parts', () => {
  it('resolves references from the innermost scope outwards, and absolute ones from the root', () => {
    expect(resolveRef(root, ['grpc', 'CreateContainerRequest'], 'Storage')).toEqual(['grpc', 'Storage']);
    expect(resolveRef(root, ['grpc', 'HealthCheckResponse'], 'ServingStatus')).toEqual(['grpc', 'HealthCheckResponse', 'ServingStatus']);
    expect(resolveRef(root, ['grpc'], 'google.protobuf.Empty')).toEqual(['google', 'protobuf', 'Empty']);
    expect(resolveRef(root, ['grpc'], '.types.Interface')).toEqual(['types', 'Interface']);
    expect(() => resolveRef(root, ['grpc'], 'NoSuchType')).toThrow(/no type NoSuchType/);
  });

  it("a message's closure: itself, its fields' types, the messages enclosing a nested type", () => {
    expect([...typeClosure(root, 'grpc.CheckRequest')]).toEqual(['grpc.CheckRequest']);
    expect(typeClosure(root, 'grpc.HealthCheckResponse')).toEqual(new Set(['grpc.HealthCheckResponse', 'grpc.HealthCheckResponse.ServingStatus']));
    const cc = typeClosure(root, 'grpc.CreateContainerRequest');
    for (const t of ['grpc.Spec', 'grpc.Process', 'grpc.Storage', 'grpc.Device', 'grpc.Linux']) expect(cc.has(t), t).toBe(true);
    expect(cc.has('grpc.ReadStreamResponse')).toBe(false);
    const part = subsetDescriptor(root, typeClosure(root, 'grpc.HealthCheckResponse'));
    expect(Object.keys(part.nested!)).toEqual(['grpc']);
    expect(Object.keys(part.nested!.grpc!.nested!)).toEqual(['HealthCheckResponse']);
    expect(part.nested!.grpc!.methods).toBeUndefined();
  });

  it('every message built from its own part has the shape it has in the whole schema', () => {
    const whole = protobuf.Root.fromJSON(descriptor as protobuf.INamespace);
    whole.resolveAll();
    const names = allMessages();
    expect(names.length).toBeGreaterThan(100);
    for (const name of names) {
      const part = protobuf.Root.fromJSON(subsetDescriptor(root, typeClosure(root, name)) as protobuf.INamespace);
      expect(shape(part.lookupType(name)), name).toEqual(shape(whole.lookupType(name)));
    }
  });

  it('the method table resolves every request and response type through parts', () => {
    for (const m of methods().values()) {
      expect(m.requestType.fullName, m.path).toMatch(/^\.\w/);
      expect(m.responseType.fullName, m.path).toMatch(/^\.\w/);
    }
    expect(lookupType('grpc.CheckRequest').fullName).toBe('.grpc.CheckRequest');
  });
});
