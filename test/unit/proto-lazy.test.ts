// agent/src/rpc/proto.ts builds its method table from the plain descriptor (no protobufjs)
// and resolves types on first use: the table must be exactly what protobufjs itself sees.
import protobuf from 'protobufjs/light.js';
import { describe, expect, it } from 'vitest';
import descriptor from '../../agent/src/rpc/descriptor.generated.json';
import { methodInfo, methods, prepareSchema, SERVICES } from '../../agent/src/rpc/proto';

describe('proto method table', () => {
  const root = protobuf.Root.fromJSON(descriptor as protobuf.INamespace);
  const expected = SERVICES.flatMap((s) =>
    Object.values(root.lookupService(s).methods).map((m) => {
      m.resolve();
      return {
        key: `${s}/${m.name}`,
        path: `/${s}/${m.name}`,
        requestStream: !!m.requestStream,
        responseStream: !!m.responseStream,
        requestType: m.resolvedRequestType!.fullName,
        responseType: m.resolvedResponseType!.fullName,
      };
    }),
  );

  it('lists every method of every service, in protobufjs order, with its streaming flags', () => {
    const table = methods();
    expect(expected.length).toBeGreaterThan(30);
    expect([...table.keys()]).toEqual(expected.map((e) => e.key));
    for (const e of expected) {
      const info = table.get(e.key)!;
      expect({ path: info.path, requestStream: info.requestStream, responseStream: info.responseStream }, e.key).toEqual({
        path: e.path,
        requestStream: e.requestStream,
        responseStream: e.responseStream,
      });
    }
  });

  it('resolves request and response types to the ones protobufjs resolves', () => {
    prepareSchema();
    for (const e of expected) {
      const info = methods().get(e.key)!;
      expect([info.requestType.fullName, info.responseType.fullName], e.key).toEqual([e.requestType, e.responseType]);
    }
  });

  it('encodes and decodes like protobufjs', () => {
    const info = methodInfo('grpc.AgentService', 'MemHotplugByProbe')!;
    const t = root.lookupType('grpc.MemHotplugByProbeRequest');
    const obj = { memHotplugProbeAddr: [1, 2, 300] };
    const bytes = info.encodeRequest(obj);
    expect(Buffer.from(bytes)).toEqual(Buffer.from(t.encode(t.fromObject(obj)).finish()));
    expect(info.decodeRequest(bytes)).toEqual({ memHotplugProbeAddr: [1, 2, 300] });
    const check = methodInfo('grpc.Health', 'Check')!;
    expect(check.decodeResponse(check.encodeResponse({ status: 1 }))).toEqual({ status: 1 });
  });

  it('passes encode/decode functions around unbound', () => {
    const { encodeResponse, decodeResponse } = methodInfo('grpc.Health', 'Check')!;
    expect(decodeResponse(encodeResponse({ status: 2 }))).toEqual({ status: 2 });
  });

  it('knows nothing of unknown methods', () => {
    expect(methodInfo('grpc.Health', 'Nope')).toBeUndefined();
    expect(methodInfo('grpc.Nope', 'Check')).toBeUndefined();
  });
});

describe('encodeResponseChunks', () => {
  it('ReadStreamResponse (one bytes field): a tag-and-length prefix and the data itself, equal to encodeResponse', () => {
    const info = methodInfo('grpc.AgentService', 'ReadStdout')!;
    for (const n of [1, 127, 128, 70_000, 1 << 20]) {
      const data = Buffer.alloc(n, 0x61);
      const parts = info.encodeResponseChunks({ data });
      expect(parts).toHaveLength(2);
      expect(parts[1]).toBe(data);
      expect(Buffer.concat(parts).equals(Buffer.from(info.encodeResponse({ data })))).toBe(true);
      expect(Buffer.from(info.decodeResponse(Buffer.concat(parts)).data).equals(data)).toBe(true);
    }
    // proto3: empty bytes are not encoded at all
    expect(info.encodeResponseChunks({ data: Buffer.alloc(0) })).toEqual([]);
    expect(Buffer.from(info.encodeResponse({ data: Buffer.alloc(0) })).length).toBe(0);
  });

  it('any other response type: one buffer, encodeResponse', () => {
    const info = methodInfo('grpc.AgentService', 'WaitProcess')!;
    const parts = info.encodeResponseChunks({ status: 137 });
    expect(parts).toHaveLength(1);
    expect(Buffer.from(parts[0]!).equals(Buffer.from(info.encodeResponse({ status: 137 })))).toBe(true);
    const check = methodInfo('grpc.Health', 'Check')!;
    expect(Buffer.concat(check.encodeResponseChunks({ status: 1 })).equals(Buffer.from(check.encodeResponse({ status: 1 })))).toBe(true);
  });
});
