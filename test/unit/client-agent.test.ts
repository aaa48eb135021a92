import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentClient, checkFields, jsonConversion, resolveMethod } from '../../agent/src/client/agent';
import { Code, ConnectionError, RpcError, UsageError } from '../../agent/src/client/errors';
import { lookupType, methods } from '../../agent/src/rpc/proto';
import { startTestServer, type TestServer } from '../helpers/rpc-server';

describe('resolveMethod', () => {
  it('accepts the usual spellings of a method', () => {
    for (const name of [
      'CreateContainer',
      'AgentService.CreateContainer',
      'AgentService/CreateContainer',
      'grpc.AgentService.CreateContainer',
      'grpc.AgentService/CreateContainer',
      '/grpc.AgentService/CreateContainer',
    ]) {
      expect(resolveMethod(name).path, name).toBe('/grpc.AgentService/CreateContainer');
    }
    for (const name of ['Health.Check', 'grpc.Health/Check', '/grpc.Health/Check', 'Check']) {
      expect(resolveMethod(name).path, name).toBe('/grpc.Health/Check');
    }
  });

  it('throws UsageError for unknown methods', () => {
    for (const name of ['Nope', 'Health.Nope', 'grpc.Nope/Check', 'createcontainer', '']) {
      expect(() => resolveMethod(name), name).toThrow(UsageError);
    }
  });

  it('resolves every method of the protocol by its full name', () => {
    for (const [full, info] of methods()) expect(resolveMethod(full)).toBe(info);
  });
});

describe('checkFields', () => {
  const req = lookupType('grpc.CreateContainerRequest');

  it('accepts known fields at every level, maps and repeated messages', () => {
    expect(() =>
      checkFields(req, {
        container_id: 'c',
        OCI: { Version: '1.0', Annotations: { a: 'b' }, Process: { Args: ['sh'] } },
        storages: [{ driver: 'virtio-fs', mount_point: '/m' }],
      }),
    ).not.toThrow();
  });

  it('rejects unknown fields with their path', () => {
    expect(() => checkFields(req, { contianer_id: 'c' })).toThrow(/grpc.CreateContainerRequest: unknown field "contianer_id"/);
    expect(() => checkFields(req, { OCI: { Process: { Argz: [] } } })).toThrow(/grpc.CreateContainerRequest.OCI.Process: unknown field "Argz"/);
    expect(() => checkFields(req, { storages: [{}, { nope: 1 }] })).toThrow(/storages\[1\]: unknown field "nope"/);
    expect(() => checkFields(req, { storages: {} })).toThrow(/expected a JSON array/);
    expect(() => checkFields(req, [])).toThrow(/expected a JSON object/);
  });
});

describe('JSON conversion', () => {
  it('round-trips 64-bit values, enums and bytes through printed JSON', () => {
    const t = lookupType('grpc.GuestDetailsResponse');
    const msg = t.fromObject({ mem_block_size_bytes: '18446744073709551615', agent_details: { version: 'x' } });
    const json = JSON.parse(JSON.stringify(t.toObject(msg, jsonConversion)));
    expect(json.mem_block_size_bytes).toBe('18446744073709551615');
    const again = t.toObject(t.fromObject(json), jsonConversion);
    expect(again).toEqual(json);

    const h = lookupType('grpc.HealthCheckResponse');
    expect(h.toObject(h.fromObject({ status: 1 }), jsonConversion)).toEqual({ status: 'SERVING' });
    expect(h.toObject(h.fromObject({ status: 'NOT_SERVING' }), jsonConversion)).toEqual({ status: 'NOT_SERVING' });

    const w = lookupType('grpc.WriteStreamRequest');
    const printed = w.toObject(w.fromObject({ data: Buffer.from([0, 255, 1]) }), jsonConversion);
    expect(printed.data).toBe('AP8B');
    expect([...(w.fromObject(printed) as unknown as { data: Uint8Array }).data]).toEqual([0, 255, 1]);
  });
});

describe('AgentClient', () => {
  let srv: TestServer;
  beforeEach(async () => {
    srv = await startTestServer();
  });
  afterEach(async () => {
    await srv.close();
  });

  for (const proto of ['ttrpc', 'grpc'] as const) {
    it(`${proto}: calls by name with plain objects and reports errors`, async () => {
      const c = await AgentClient.connect(srv.addr, { proto });
      expect(c.proto).toBe(proto);
      expect(await c.check()).toEqual({ status: 1 });
      expect(await c.call('Health.Version', { service: 'x' })).toEqual({ grpc_version: '0.0.1', agent_version: 'test' });
      expect(srv.handlers.contexts.find((x) => x.method === 'Version')!.req).toEqual({ service: 'x' });
      const err = await c.call('StartContainer', { container_id: 'c' }).catch((e) => e);
      expect(err).toBeInstanceOf(RpcError);
      expect(err).not.toBeInstanceOf(ConnectionError);
      expect(err.code).toBe(Code.UNIMPLEMENTED);
      await expect(c.call('NoSuchMethod', {})).rejects.toBeInstanceOf(UsageError);
      c.close();
      await expect(c.check()).rejects.toBeInstanceOf(ConnectionError);
    });
  }

  it('connect() rejects with ConnectionError for a missing socket and UsageError for a bad address', async () => {
    await expect(AgentClient.connect(`unix://${srv.dir}/nope.sock`)).rejects.toBeInstanceOf(ConnectionError);
    await expect(AgentClient.connect('nope://x')).rejects.toBeInstanceOf(UsageError);
  });
});
