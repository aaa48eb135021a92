// Agent-core benchmarks (issue 2). One run measures, on a unix socket:
//  - Health.Check latency over ttrpc and gRPC against the real agent (dist/kata-agent.mjs),
//    next to a raw ttrpc-framing echo server and a plain grpc-js hello server;
//  - start-to-listening of the agent vs bare `node -e 0`;
//  - idle RSS of the agent before and after its first gRPC connection.
// Results: bench/results/agent-core.json (+ a table on stdout for docs/benchmarks.md).
import * as grpc from '@grpc/grpc-js';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { TtrpcClient } from '../agent/src/client/ttrpc';
import { methodInfo } from '../agent/src/rpc/proto';
import { encodeFrame, FrameDecoder, HEADER_LENGTH } from '../agent/src/rpc/ttrpc/codec';

const quick = process.argv.includes('--quick');
const N = quick ? 2000 : 20000;
const WARM = quick ? 300 : 2000;
const STARTS = quick ? 5 : 20;
const root = process.cwd();
const agentBin = path.join(root, 'dist/kata-agent.mjs');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-bench-'));
const check = methodInfo('grpc.Health', 'Check')!;
const checkReq = check.encodeRequest({ service: '' });

interface Lat { p50_us: number; p99_us: number; mean_us: number; n: number }
function stats(samples: number[]): Lat {
  const s = [...samples].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.floor(p * s.length))]!;
  return { p50_us: +q(0.5).toFixed(1), p99_us: +q(0.99).toFixed(1), mean_us: +(s.reduce((a, b) => a + b, 0) / s.length).toFixed(1), n: s.length };
}
async function measure(call: () => Promise<unknown>): Promise<Lat> {
  for (let i = 0; i < WARM; i++) await call();
  const out: number[] = [];
  for (let i = 0; i < N; i++) {
    const t = process.hrtime.bigint();
    await call();
    out.push(Number(process.hrtime.bigint() - t) / 1000);
  }
  return stats(out);
}
const connect = (p: string) => new Promise<net.Socket>((res, rej) => { const s = net.connect(p); s.once('connect', () => res(s)); s.once('error', rej); });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function rssKb(pid: number): number {
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0);
}

function startAgent(sock: string): Promise<{ child: ChildProcess; readyMs: number }> {
  const t0 = process.hrtime.bigint();
  const child = spawn(process.execPath, [agentBin, '--listen', `unix://${sock}`, '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d) => {
      buf += d;
      if (buf.includes('"msg":"listening"')) {
        child.stdout!.removeAllListeners('data');
        child.stdout!.resume();
        resolve({ child, readyMs: Number(process.hrtime.bigint() - t0) / 1e6 });
      }
    });
    child.once('exit', (c) => reject(new Error(`agent exited ${c}: ${buf}`)));
  });
}

// --- raw ttrpc framing echo: the floor for any ttrpc server written in Node -----------------
function echoServer(sock: string): Promise<net.Server> {
  const srv = net.createServer((c) => {
    const dec = new FrameDecoder();
    c.on('data', (d) => { for (const ev of dec.push(d)) if (ev.kind === 'frame') c.write(encodeFrame(ev.streamId, 2, 0, ev.payload)); });
  });
  return new Promise((r) => srv.listen(sock, () => r(srv)));
}
function framedCaller(s: net.Socket, payload: Uint8Array): () => Promise<void> {
  const dec = new FrameDecoder();
  let id = 1;
  const waiting = new Map<number, () => void>();
  s.on('data', (d) => { for (const ev of dec.push(d)) if (ev.kind === 'frame') waiting.get(ev.streamId)?.(); });
  return () => new Promise<void>((resolve) => { const sid = id; id += 2; waiting.set(sid, () => { waiting.delete(sid); resolve(); }); s.write(encodeFrame(sid, 1, 0, payload)); });
}

// --- plain grpc-js hello server (raw bytes, no protobuf) --------------------------------------
async function helloServer(sock: string): Promise<grpc.Server> {
  const server = new grpc.Server();
  const id = (b: Buffer) => b;
  server.addService({ Hello: { path: '/bench.Hello/Hello', requestStream: false, responseStream: false, requestSerialize: id, requestDeserialize: id, responseSerialize: id, responseDeserialize: id } } as grpc.ServiceDefinition, {
    Hello: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) => cb(null, Buffer.from([8, 1])),
  });
  await new Promise<void>((res, rej) => server.bindAsync(`unix://${sock}`, grpc.ServerCredentials.createInsecure(), (e) => (e ? rej(e) : res())));
  return server;
}
function grpcCaller(sock: string, pathName: string, payload: Buffer): { call: () => Promise<void>; close: () => void } {
  const client = new grpc.Client(`unix://${sock}`, grpc.credentials.createInsecure());
  const id = (b: Buffer) => b;
  return {
    call: () => new Promise<void>((res, rej) => client.makeUnaryRequest(pathName, id, id, payload, (e) => (e ? rej(e) : res()))),
    close: () => client.close(),
  };
}

async function main(): Promise<void> {
  const results: Record<string, unknown> = {
    date: new Date().toISOString(), node: process.version, cpus: os.cpus().length, cpu_model: os.cpus()[0]?.model, N, quick,
  };

  // Start-to-listening vs bare node.
  const bare: number[] = [];
  for (let i = 0; i < STARTS; i++) {
    const t = process.hrtime.bigint();
    spawnSync(process.execPath, ['-e', '0']);
    bare.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  const starts: number[] = [];
  for (let i = 0; i < STARTS; i++) {
    const sock = path.join(tmp, `start${i}.sock`);
    const { child, readyMs } = await startAgent(sock);
    starts.push(readyMs);
    child.kill('SIGKILL');
  }
  const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
  results.startup = { node_e0_ms: +med(bare).toFixed(1), agent_listening_ms: +med(starts).toFixed(1), ratio: +(med(starts) / med(bare)).toFixed(2), runs: STARTS };

  // The agent under test, plus RSS while idle.
  const agentSock = path.join(tmp, 'agent.sock');
  const { child: agent } = await startAgent(agentSock);
  await sleep(1000);
  const rssBefore = rssKb(agent.pid!);

  // ttrpc: agent vs raw echo (same payload: a ttrpc Request for Health.Check).
  const ttSock = await connect(agentSock);
  const tt = new TtrpcClient(ttSock);
  const ttrpcAgent = await measure(() => tt.call('grpc.Health', 'Check', checkReq));
  ttSock.destroy();
  const echoSock = path.join(tmp, 'echo.sock');
  const echo = await echoServer(echoSock);
  const es = await connect(echoSock);
  const { encodeRequest } = await import('../agent/src/rpc/ttrpc/codec');
  const raw = await measure(framedCaller(es, encodeRequest({ service: 'grpc.Health', method: 'Check', payload: checkReq })));
  es.destroy();
  echo.close();

  // gRPC: agent vs plain grpc-js hello, both with a grpc-js client.
  const ga = grpcCaller(agentSock, '/grpc.Health/Check', Buffer.from(checkReq));
  await ga.call();
  await sleep(1000);
  const rssAfter = rssKb(agent.pid!);
  const grpcAgent = await measure(ga.call);
  ga.close();
  const helloSock = path.join(tmp, 'hello.sock');
  const hello = await helloServer(helloSock);
  const gh = grpcCaller(helloSock, '/bench.Hello/Hello', Buffer.alloc(0));
  const grpcHello = await measure(gh.call);
  gh.close();
  hello.forceShutdown();
  agent.kill('SIGKILL');

  results.health_check = {
    ttrpc_agent: ttrpcAgent, ttrpc_raw_echo: raw, ttrpc_ratio_p50: +(ttrpcAgent.p50_us / raw.p50_us).toFixed(2),
    grpc_agent: grpcAgent, grpc_js_hello: grpcHello, grpc_ratio_p50: +(grpcAgent.p50_us / grpcHello.p50_us).toFixed(2),
  };
  results.rss = { idle_before_grpc_mb: +(rssBefore / 1024).toFixed(1), after_first_grpc_mb: +(rssAfter / 1024).toFixed(1) };

  fs.writeFileSync(path.join(root, 'bench/results/agent-core.json'), JSON.stringify(results, null, 2) + '\n');
  const h = results.health_check as any;
  const st = results.startup as any;
  const r = results.rss as any;
  console.log(`
| measure | value | reference | ratio | goal |
| --- | --- | --- | --- | --- |
| Health.Check over ttrpc, p50 / p99 | ${h.ttrpc_agent.p50_us} / ${h.ttrpc_agent.p99_us} us | raw framing echo ${h.ttrpc_raw_echo.p50_us} / ${h.ttrpc_raw_echo.p99_us} us | ${h.ttrpc_ratio_p50} | <= 2 |
| Health.Check over gRPC, p50 / p99 | ${h.grpc_agent.p50_us} / ${h.grpc_agent.p99_us} us | grpc-js hello ${h.grpc_js_hello.p50_us} / ${h.grpc_js_hello.p99_us} us | ${h.grpc_ratio_p50} | <= 1.2 |
| start to listening (median of ${st.runs}) | ${st.agent_listening_ms} ms | node -e 0: ${st.node_e0_ms} ms | ${st.ratio} | <= 1.5 |
| idle RSS before first gRPC connection | ${r.idle_before_grpc_mb} MB | | | <= 40 MB |
| RSS after first gRPC connection | ${r.after_first_grpc_mb} MB | | | |
`);
  fs.rmSync(tmp, { recursive: true, force: true });
  process.exit(0);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
