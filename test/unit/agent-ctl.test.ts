import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { methods } from '../../agent/src/rpc/proto';
import { bundleEntry } from '../helpers/bundle';
import { startTestServer, type TestServer } from '../helpers/rpc-server';

let ctl: string;
let srv: TestServer;

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run the bundled agent-ctl (asynchronously: the test server lives in this process). */
function run(args: string[], opts: { input?: string; env?: Record<string, string> } = {}): Promise<Result> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [ctl, ...args],
      { timeout: 30_000, env: { ...process.env, AGENT_CTL_ADDR: '', ...opts.env } },
      (err, stdout, stderr) => {
        const code = err ? ((err as { code?: number }).code ?? -1) : 0;
        resolve({ code: typeof code === 'number' ? code : -1, stdout, stderr });
      },
    );
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    else child.stdin!.end();
  });
}

beforeAll(async () => {
  ctl = await bundleEntry('agent/bin/agent-ctl.ts');
  srv = await startTestServer();
}, 60_000);
afterAll(async () => {
  await srv?.close();
});

describe('agent-ctl', () => {
  for (const proto of ['ttrpc', 'grpc']) {
    it(`check and version over ${proto}`, async () => {
      const c = await run(['--addr', srv.addr, '--proto', proto, 'check']);
      expect(c).toMatchObject({ code: 0, stderr: '' });
      expect(JSON.parse(c.stdout)).toEqual({ status: 'SERVING' });
      const v = await run(['--addr', srv.addr, '--proto', proto, 'version']);
      expect(v.code).toBe(0);
      expect(JSON.parse(v.stdout)).toEqual({ grpc_version: '0.0.1', agent_version: 'test' });
    });

    it(`call with --json over ${proto}; the printed response is valid input again`, async () => {
      const r = await run(['--addr', srv.addr, '--proto', proto, 'call', 'GetGuestDetails', '--json', '{"mem_block_size": true}']);
      expect(r).toMatchObject({ code: 0, stderr: '' });
      const out = JSON.parse(r.stdout);
      expect(out.mem_block_size_bytes).toBe('18446744073709551615');
      expect(out.agent_details.version).toBe('test');
      const req = srv.handlers.contexts.filter((x) => x.method === 'GetGuestDetails').at(-1)!.req;
      expect(req.mem_block_size).toBe(true);
    });
  }

  it('takes the request from --json-file and from stdin, and METHOD in every spelling', async () => {
    const f = path.join(srv.dir, 'req.json');
    fs.writeFileSync(f, JSON.stringify({ container_id: 'from-file', OCI: { Hostname: 'h' } }));
    const r1 = await run(['--addr', srv.addr, 'call', 'grpc.AgentService/CreateContainer', '--json-file', f]);
    expect(r1).toMatchObject({ code: 0, stdout: '{}\n' });
    const r2 = await run(['--addr', srv.addr, 'call', '/grpc.AgentService/CreateContainer', '--json-file', '-'], { input: '{"container_id": "from-stdin"}' });
    expect(r2.code).toBe(0);
    const ids = srv.handlers.contexts.filter((x) => x.method === 'CreateContainer').map((x) => x.req.container_id);
    expect(ids.slice(-2)).toEqual(['from-file', 'from-stdin']);
    expect(srv.handlers.contexts.filter((x) => x.method === 'CreateContainer').at(-2)!.req.OCI.Hostname).toBe('h');
    const r3 = await run(['--addr', srv.addr, 'call', 'Health.Check']);
    expect(JSON.parse(r3.stdout)).toEqual({ status: 'SERVING' });
  });

  it('exits 1 with "CODE: message" when the agent returns an error status', async () => {
    const r = await run(['--addr', srv.addr, 'call', 'StartContainer', '--json', '{"container_id": "x"}']);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe('UNIMPLEMENTED: /grpc.AgentService/StartContainer is not implemented\n');
    const g = await run(['--addr', srv.addr, '--proto', 'grpc', 'call', 'SignalProcess', '--json', '{"exec_id": "e1"}']);
    expect(g.code).toBe(1);
    expect(g.stderr).toBe('NOT_FOUND: no such process e1\n');
  });

  it('exits 1 with DEADLINE_EXCEEDED when --timeout passes', async () => {
    const r = await run(['--addr', srv.addr, '--timeout', '0.2', 'call', 'WaitProcess', '--json', '{"container_id": "ctl-never"}']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^DEADLINE_EXCEEDED: /);
  });

  it('exits 2 on usage errors', async () => {
    const cases: [string[], RegExp][] = [
      [[], /^Usage: agent-ctl/],
      [['--addr', srv.addr], /^Usage: agent-ctl/],
      [['--addr', srv.addr, 'frobnicate'], /unknown command "frobnicate"/],
      [['--addr', srv.addr, '--bogus', 'check'], /Unknown option '--bogus'/],
      [['check'], /--addr is required/],
      [['--addr', 'nope://x', 'check'], /invalid address/],
      [['--addr', srv.addr, '--proto', 'http', 'check'], /--proto must be ttrpc or grpc/],
      [['--addr', srv.addr, '--timeout', 'soon', 'check'], /--timeout wants a number/],
      [['--addr', srv.addr, 'call'], /call needs exactly one METHOD/],
      [['--addr', srv.addr, 'call', 'NoSuchMethod'], /unknown method "NoSuchMethod"/],
      [['--addr', srv.addr, 'call', 'CreateContainer', '--json', '{not json'], /--json is not valid JSON/],
      [['--addr', srv.addr, 'call', 'CreateContainer', '--json', '{"contianer_id": "x"}'], /unknown field "contianer_id"/],
      [['--addr', srv.addr, 'call', 'CreateContainer', '--json', '{}', '--json-file', '/dev/null'], /not both/],
      [['--addr', srv.addr, 'call', 'CreateContainer', '--json-file', '/nonexistent.json'], /cannot read/],
      [['--addr', srv.addr, 'check', '--json', '{}'], /belong to the call command/],
      [['--addr', srv.addr, 'check', 'extra'], /takes no arguments/],
    ];
    for (const [args, msg] of cases) {
      const r = await run(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr, args.join(' ')).toMatch(msg);
      expect(r.stdout, args.join(' ')).toBe('');
    }
  });

  it('exits 3 when the agent cannot be reached', async () => {
    const r = await run(['--addr', `unix://${srv.dir}/missing.sock`, 'check']);
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/connect unix:\/\/.*missing\.sock.*ENOENT/);
    const g = await run(['--addr', `unix://${srv.dir}/missing.sock`, '--proto', 'grpc', 'check']);
    expect(g.code).toBe(3);
  });

  it('uses AGENT_CTL_ADDR when --addr is not given', async () => {
    const r = await run(['check'], { env: { AGENT_CTL_ADDR: srv.addr } });
    expect(r.code).toBe(0);
  });

  it('lists every method, and prints help for the tool and each command', async () => {
    const l = await run(['list']);
    expect(l.code).toBe(0);
    const names = l.stdout.trim().split('\n').map((line) => line.split(/\s+/)[0]);
    expect(names).toEqual([...methods().keys()]);
    expect(l.stdout).toContain('grpc.Health/Check');

    for (const args of [['--help'], ['-h'], ['help']]) {
      const h = await run(args);
      expect(h.code).toBe(0);
      expect(h.stdout).toMatch(/^Usage: agent-ctl --addr ADDR/);
      expect(h.stdout).toMatch(/Exit status:/);
    }
    for (const cmd of ['check', 'version', 'call', 'list']) {
      for (const args of [[cmd, '--help'], ['help', cmd]]) {
        const h = await run(args);
        expect(h.code, args.join(' ')).toBe(0);
        expect(h.stdout, args.join(' ')).toMatch(new RegExp(`^Usage: agent-ctl .*${cmd}`));
      }
    }
    const call = await run(['call', '--help']);
    expect(call.stdout).toContain('64-bit integers');
    expect(call.stdout).toContain('base64');
  });
});
