import { afterEach, describe, expect, it } from 'vitest';
import { Code } from '../../agent/src/rpc/status';
import { ISSUE2_METHODS } from '../../agent/src/services';
import { AGENT_VERSION, API_VERSION } from '../../agent/src/version';
import { call, cleanupTemps, makeServices } from './services-helpers';

afterEach(cleanupTemps);

describe('grpc.Health', () => {
  it('Check answers SERVING over the wire', async () => {
    const { dispatcher } = makeServices();
    const r = await call(dispatcher, 'grpc.Health/Check', { service: 'anything' });
    expect(r.code).toBe(Code.OK);
    expect(r.res).toEqual({ status: 1 });
  });

  it('Version reports the API and agent versions', async () => {
    const { dispatcher } = makeServices();
    const r = await call(dispatcher, 'grpc.Health/Version', {});
    expect(r.code).toBe(Code.OK);
    expect(r.res).toEqual({ grpc_version: API_VERSION, agent_version: AGENT_VERSION });
    expect(AGENT_VERSION).not.toBe('');
  });
});

describe('registerIssue2Services', () => {
  it('registers exactly the issue-2 methods', () => {
    const { dispatcher } = makeServices();
    for (const m of ISSUE2_METHODS) expect(dispatcher.has(m), m).toBe(true);
    expect(dispatcher.has('grpc.AgentService/CreateContainer')).toBe(false);
  });
});
