// The real agent (dist/kata-agent.mjs) as PID 1 of private PID+mount+UTS namespaces,
// driven over ttrpc and gRPC by the real agent-ctl, then fuzzed over both protocols.
import fs from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeFrame, encodeRequest, FrameDecoder, decodeResponse } from '../../agent/src/rpc/ttrpc/codec';
import { methodInfo } from '../../agent/src/rpc/proto';
import { fuzzSeed, rng } from '../helpers/prng';
import { agentCtl, connectUnix, isRoot, startNsAgent, type NsAgent } from '../helpers/agent-ns';

const prng = (seed: number): (() => number) => rng(fuzzSeed(seed)).next;

describe.skipIf(!isRoot)('agent as PID 1 in its own namespaces', () => {
  let agent: NsAgent;

  beforeAll(async () => {
    agent = await startNsAgent();
  });
  afterAll(async () => {
    await agent?.stop();
  });

  it('runs the PID-1 init: mounts proc, sysfs, devtmpfs, devpts, /dev/shm, /run and cgroup2', () => {
    const init = agent.logLines().find((l) => l.msg === 'init done');
    expect(init?.mode).toBe('pid1');
    // What the agent's mount namespace holds, seen through its /proc/<pid>/mountinfo.
    const mi = fs.readFileSync(`/proc/${agent.agentPid}/mountinfo`, 'utf8');
    const types = new Map(mi.split('\n').filter(Boolean).map((l) => {
      const f = l.split(' ');
      const sep = f.indexOf('-');
      return [f[4], f[sep + 1]] as [string, string];
    }));
    expect(types.get('/proc')).toBe('proc');
    expect(types.get('/sys')).toBe('sysfs');
    expect(types.get('/dev')).toBe('devtmpfs');
    expect(types.get('/dev/pts')).toBe('devpts');
    expect(types.get('/dev/shm')).toBe('tmpfs');
    expect(types.get('/run')).toBe('tmpfs');
    expect(types.get('/sys/fs/cgroup')).toBe('cgroup2');
    expect(fs.readlinkSync(`/proc/${agent.agentPid}/root/dev/ptmx`)).toBe('pts/ptmx');
  });

  it('moves itself into its own cgroup (/kata-agent) on cgroup v2, once listening', async () => {
    const deadline = Date.now() + 10_000;
    let cg = '';
    // The move happens before its log line, which reaches us through a pipe: wait for both.
    const logged = () => agent.logLines().find((l) => /agent cgroup/.test(l.msg));
    while (Date.now() < deadline) {
      cg = fs.readFileSync(`/proc/${agent.agentPid}/cgroup`, 'utf8');
      if (/^0::\/kata-agent$/m.test(cg) && logged()) break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(cg).toMatch(/^0::\/kata-agent$/m);
    expect(logged()).toBeDefined();
  });

  it('is a session leader and reports itself as init_daemon', () => {
    const stat = fs.readFileSync(`/proc/${agent.agentPid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    expect(Number(fields[3])).toBe(agent.agentPid); // session id == own pid (host view)
    const r = agentCtl(['--addr', agent.addr, 'call', 'GetGuestDetails', '--json', '{"mem_block_size": true}']);
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout);
    expect(res.agent_details.init_daemon).toBe(true);
    expect(Number(res.mem_block_size_bytes)).toBe(
      parseInt(fs.readFileSync('/sys/devices/system/memory/block_size_bytes', 'utf8'), 16),
    );
  });

  it('answers Health.Check over ttrpc and over gRPC on the same listener', () => {
    for (const proto of ['ttrpc', 'grpc']) {
      const r = agentCtl(['--addr', agent.addr, '--proto', proto, 'check']);
      expect(r.code, `${proto}: ${r.stderr}`).toBe(0);
      expect(JSON.parse(r.stdout).status).toBe('SERVING');
    }
    const v = agentCtl(['--addr', agent.addr, '--proto', 'grpc', 'version']);
    expect(v.code, v.stderr).toBe(0);
    expect(JSON.parse(v.stdout).agent_version).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('CopyFile writes under the shared directory of the guest, and refuses escapes', () => {
    const data = Buffer.from('hello from the host\n').toString('base64');
    const dest = '/run/kata-containers/shared/containers/c1/hello.txt';
    for (const proto of ['ttrpc', 'grpc']) {
      const r = agentCtl([
        '--addr', agent.addr, '--proto', proto, 'call', 'CopyFile', '--json',
        JSON.stringify({ path: dest, file_size: 20, file_mode: 0o100640, dir_mode: 0o750, uid: 0, gid: 0, offset: 0, data }),
      ]);
      expect(r.code, r.stderr).toBe(0);
      const p = `/proc/${agent.agentPid}/root${dest}`;
      expect(fs.readFileSync(p, 'utf8')).toBe('hello from the host\n');
      expect(fs.statSync(p).mode & 0o7777).toBe(0o640);
    }
    const bad = agentCtl([
      '--addr', agent.addr, 'call', 'CopyFile', '--json',
      JSON.stringify({ path: '/run/kata-containers/shared/containers/../../../etc/evil', file_size: 1, file_mode: 0o100644, offset: 0, data: 'eA==' }),
    ]);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/INVALID_ARGUMENT|PERMISSION_DENIED/);
    expect(fs.existsSync(`/proc/${agent.agentPid}/root/etc/evil`)).toBe(false);
  });

  it('answers RPCs of later issues with UNIMPLEMENTED naming the method, over both protocols', () => {
    for (const proto of ['ttrpc', 'grpc']) {
      const r = agentCtl(['--addr', agent.addr, '--proto', proto, 'call', 'SetPolicy', '--json', '{"policy": "x"}']);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/UNIMPLEMENTED.*SetPolicy/);
    }
  });

  it('GetMetrics returns Prometheus text with agent and guest series', () => {
    const r = agentCtl(['--addr', agent.addr, 'call', 'GetMetrics', '--json', '{}']);
    expect(r.code, r.stderr).toBe(0);
    const text: string = JSON.parse(r.stdout).metrics;
    expect(text).toMatch(/^# TYPE kata_agent_/m);
    expect(text).toMatch(/^kata_guest_meminfo\{item="mem_total"\} \d+/m);
    expect(text).toMatch(/^kata_guest_load\{item="load1"\} [\d.]+/m);
  });

  it('survives thousands of mutated ttrpc frames and still answers Health', async () => {
    const rnd = prng(0x5eed1);
    const check = methodInfo('grpc.Health', 'Check')!;
    const good = encodeRequest({ service: 'grpc.Health', method: 'Check', payload: check.encodeRequest({ service: '' }) });
    let sent = 0;
    for (let conn = 0; conn < 40; conn++) {
      const s = await connectUnix(agent.sock);
      s.on('error', () => undefined);
      s.on('data', () => undefined);
      const chunks: Buffer[] = [];
      for (let i = 0; i < 100; i++) {
        const kind = rnd();
        let frame: Buffer;
        if (kind < 0.5) {
          // a valid request frame with a few bytes flipped (header or body)
          frame = encodeFrame(1 + 2 * i, 1, 0, good);
          const flips = 1 + Math.floor(rnd() * 4);
          for (let f = 0; f < flips; f++) frame[Math.floor(rnd() * frame.length)] = Math.floor(rnd() * 256);
        } else if (kind < 0.8) {
          // a well-formed frame whose payload is random bytes
          const body = Buffer.from(Array.from({ length: Math.floor(rnd() * 64) }, () => Math.floor(rnd() * 256)));
          frame = encodeFrame(1 + 2 * i, 1 + Math.floor(rnd() * 3), Math.floor(rnd() * 8), body);
        } else if (kind < 0.9) {
          // a request naming random services/methods with random payloads
          const names = ['grpc.AgentService', 'grpc.Health', 'x', '', 'grpc.AgentService/../x'];
          const methods = ['CopyFile', 'Check', 'CreateContainer', 'NoSuch', ''];
          const body = Buffer.from(Array.from({ length: Math.floor(rnd() * 32) }, () => Math.floor(rnd() * 256)));
          frame = encodeFrame(1 + 2 * i, 1, 0, encodeRequest({
            service: names[Math.floor(rnd() * names.length)]!,
            method: methods[Math.floor(rnd() * methods.length)]!,
            payload: body,
          }));
        } else {
          // a header announcing an oversized or odd length, followed by a little data
          const h = Buffer.alloc(10);
          h.writeUInt32BE(Math.floor(rnd() * 0xffffffff), 0);
          h.writeUInt32BE(Math.floor(rnd() * 0xffffffff), 4);
          h[8] = Math.floor(rnd() * 256);
          frame = Buffer.concat([h, Buffer.alloc(Math.floor(rnd() * 16))]);
        }
        chunks.push(frame);
        sent++;
      }
      s.write(Buffer.concat(chunks));
      // Half the connections vanish mid-stream; the others end politely.
      if (conn % 2) s.destroy();
      else s.end();
    }
    expect(sent).toBe(4000);
    await new Promise((r) => setTimeout(r, 300));

    // A fresh connection still gets a proper answer, by hand and with agent-ctl.
    const s = await connectUnix(agent.sock);
    const dec = new FrameDecoder();
    const reply = new Promise<Buffer>((resolve) => {
      s.on('data', (d) => {
        for (const ev of dec.push(d)) if (ev.kind === 'frame' && ev.streamId === 1) resolve(ev.payload);
      });
    });
    s.write(encodeFrame(1, 1, 0, good));
    const res = decodeResponse(await reply);
    s.destroy();
    expect(res.status.code).toBe(0);
    expect(check.decodeResponse(res.payload).status).toBe(1);
    expect(agentCtl(['--addr', agent.addr, 'check']).code).toBe(0);
    expect(fs.existsSync(`/proc/${agent.agentPid}`)).toBe(true);
  });

  it('survives malformed gRPC (random HTTP/2 bytes and garbage messages) and still answers Health', async () => {
    const rnd = prng(0xbadc0de);
    const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');
    // 1) raw: the preface followed by random bytes / mutated frames
    for (let conn = 0; conn < 30; conn++) {
      const s = await connectUnix(agent.sock);
      s.on('error', () => undefined);
      s.on('data', () => undefined);
      const junk = Buffer.from(Array.from({ length: 64 + Math.floor(rnd() * 2000) }, () => Math.floor(rnd() * 256)));
      s.write(Buffer.concat([preface, junk]));
      if (conn % 2) s.destroy();
      else s.end();
    }
    // 2) protocol-correct HTTP/2 carrying garbage gRPC messages to real and unknown methods
    const session = http2.connect('http://agent', { createConnection: () => net.connect(agent.sock) });
    session.on('error', () => undefined);
    const paths = ['/grpc.AgentService/CopyFile', '/grpc.Health/Check', '/grpc.AgentService/NoSuch', '/nope', '/grpc.AgentService/CreateContainer'];
    const statuses: string[] = [];
    await Promise.all(
      Array.from({ length: 300 }, () => new Promise<void>((resolve) => {
        const body = Buffer.from(Array.from({ length: Math.floor(rnd() * 40) }, () => Math.floor(rnd() * 256)));
        const msg = Buffer.alloc(5 + body.length);
        msg[0] = rnd() < 0.9 ? 0 : 1; // sometimes claim compression
        msg.writeUInt32BE(rnd() < 0.8 ? body.length : Math.floor(rnd() * 1e6), 1);
        body.copy(msg, 5);
        const req = session.request({
          ':method': 'POST',
          ':path': paths[Math.floor(rnd() * paths.length)]!,
          'content-type': 'application/grpc',
          te: 'trailers',
        });
        req.on('error', () => resolve());
        req.on('trailers', (t) => statuses.push(String(t['grpc-status'])));
        req.on('response', (h) => {
          if (h['grpc-status'] !== undefined) statuses.push(String(h['grpc-status']));
        });
        req.on('close', () => resolve());
        req.on('data', () => undefined);
        req.end(msg);
      })),
    );
    session.close();
    // Every request got a gRPC status, and none of them crashed the agent.
    expect(statuses.length).toBeGreaterThan(200);
    expect(statuses.every((s) => /^\d+$/.test(s))).toBe(true);
    for (const proto of ['grpc', 'ttrpc']) {
      const r = agentCtl(['--addr', agent.addr, '--proto', proto, 'check']);
      expect(r.code, r.stderr).toBe(0);
    }
  });

  it('ignores SIGINT as PID 1 (a ^C on the console must not power off)', async () => {
    process.kill(agent.agentPid, 'SIGINT');
    await new Promise((r) => setTimeout(r, 300));
    expect(agent.logLines().some((l) => /SIGINT ignored/.test(l.msg))).toBe(true);
    expect(agentCtl(['--addr', agent.addr, 'check']).code).toBe(0);
  });

  it('powers off (ends its PID namespace) on SIGTERM as PID 1', async () => {
    process.kill(agent.agentPid, 'SIGTERM');
    const code = await Promise.race([agent.exited, new Promise((r) => setTimeout(() => r('timeout'), 15_000))]);
    expect(code).not.toBe('timeout');
    const lines = agent.logLines();
    expect(lines.some((l) => l.msg === 'stopping' && /SIGTERM/.test(l.reason))).toBe(true);
    expect(lines.some((l) => l.msg === 'shutting down')).toBe(true);
    expect(fs.existsSync(path.join(agent.dir, 'agent.sock'))).toBe(false);
  });
});
