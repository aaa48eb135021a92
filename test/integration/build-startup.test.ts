// The built agent (dist/kata-agent.mjs, as agent/scripts/build.mjs shapes it) must reach
// 'listening' without loading what it only needs later: protobufjs and the schema (built
// right after 'listening'), grpc-js and node:http2 (first gRPC connection), node:crypto
// (CopyFile), perf_hooks, worker_threads (pino's transports, left out of the bundle). And
// it must still answer over ttrpc and gRPC afterwards, which loads them.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AGENT, AGENT_CTL, ROOT } from '../helpers/agent-ns';

// Preload: when the agent writes its 'listening' log line, print what is loaded at that
// moment; print it again on SIGUSR2 (after the test's calls).
const PRELOAD = `
const fs = require('fs');
const report = (tag) => {
  const mods = process.moduleLoadList.filter((m) => m.startsWith('NativeModule ')).map((m) => m.slice(13));
  const files = Object.keys(require.cache).map((f) => require('path').basename(f));
  process.stderr.write('@@' + JSON.stringify({ tag, mods, files }) + '\\n');
};
const orig = fs.writeSync;
let done = false;
fs.writeSync = function (fd, buf, ...rest) {
  const r = orig.call(this, fd, buf, ...rest);
  if (!done && fd === 1 && String(buf).includes('"msg":"listening"')) { done = true; report('listening'); }
  return r;
};
process.on('SIGUSR2', () => report('later'));
`;

interface Report {
  tag: string;
  mods: string[];
  files: string[];
}

describe('built agent start-up', () => {
  it('listens before loading protobufjs, grpc-js, http2, crypto, perf_hooks or worker_threads, and loads them when needed', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-startup-'));
    const preload = path.join(dir, 'preload.cjs');
    fs.writeFileSync(preload, PRELOAD);
    const sock = path.join(dir, 'agent.sock');
    const env = { ...process.env };
    delete env.NODE_OPTIONS;
    const child = spawn(process.execPath, ['--require', preload, AGENT, '--listen', `unix://${sock}`], {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.resume();
    const reports: Report[] = [];
    let err = '';
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      for (const line of err.split('\n').filter((l) => l.startsWith('@@'))) {
        const r = JSON.parse(line.slice(2)) as Report;
        if (!reports.some((x) => x.tag === r.tag)) reports.push(r);
      }
    });
    const waitFor = async (tag: string): Promise<Report> => {
      for (let i = 0; i < 300; i++) {
        const r = reports.find((x) => x.tag === tag);
        if (r) return r;
        await new Promise((res) => setTimeout(res, 50));
      }
      throw new Error(`no '${tag}' report; stderr: ${err}`);
    };
    try {
      const atListen = await waitFor('listening');
      for (const m of ['http2', 'crypto', 'perf_hooks', 'worker_threads']) expect(atListen.mods, m).not.toContain(m);
      expect(atListen.files).not.toContain('protobufjs.cjs');
      expect(atListen.mods).toContain('net');

      const ctl = (args: string[]) =>
        new Promise<string>((resolve, reject) => {
          const c = spawn(process.execPath, [AGENT_CTL, '--addr', `unix://${sock}`, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
          let out = '';
          c.stdout.on('data', (d: Buffer) => (out += d.toString()));
          c.stderr.on('data', (d: Buffer) => (out += d.toString()));
          c.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`agent-ctl ${args.join(' ')}: ${code}: ${out}`))));
        });
      expect(JSON.parse(await ctl(['check']))).toEqual({ status: 'SERVING' });
      expect(JSON.parse(await ctl(['--proto', 'grpc', 'check']))).toEqual({ status: 'SERVING' });

      child.kill('SIGUSR2');
      const later = await waitFor('later');
      expect(later.files).toContain('protobufjs.cjs');
      expect(later.mods).toContain('http2');
    } finally {
      child.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
