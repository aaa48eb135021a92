#!/usr/bin/env node
// Run a benchmark: builds dist/ (npm run build), bundles bench/<name>.ts with esbuild into
// tmp/ and runs it. For agent-core it also bundles the start-up "floor" reference: a
// process that does only what any agent built this way must do before 'listening'
// (ESM entry, koffi loaded, a pino logger on fd 1, a unix-socket listener), bundled
// with the same options as the agent.
// Usage: node bench/run.mjs [agent-core] [--quick]
import * as esbuild from 'esbuild';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, common, requireBuiltins, trimPino } from '../agent/scripts/build.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
if (args.includes('--help') || args.includes('-h')) {
  console.log(`Usage: npm run bench -- [NAME] [--quick] [--agent PATH] [--out FILE]

NAME: agent-core (default) | containers (root: crun in namespaces) | osbuilder | pack | vm (root: QEMU guests)
--quick: fewer calls and start-up runs (a smoke run; docs use a full run)
--agent PATH: benchmark another agent build instead of dist/kata-agent.mjs
--out FILE: write the results there instead of bench/results/NAME.json
--pin CPU: run the benchmark and every process it starts on that one CPU (taskset)
--no-pin: leave the latency servers' and client's CPUs to the scheduler (by default the
          client runs on one CPU and the servers on another during the latency rounds)
Prints a table (see docs/benchmarks.md).`);
  process.exit(0);
}
// Options that take a value; everything else not starting with '-' is the benchmark's name.
const VALUE_OPTS = new Set(['--agent', '--out', '--pin']);
const nameIdx = args.findIndex((a, i) => !a.startsWith('-') && !VALUE_OPTS.has(args[i - 1] ?? ''));
const name = nameIdx >= 0 ? args[nameIdx] : 'agent-core';
await build();

const out = path.join(root, 'tmp', `bench-${name}.mjs`);
await esbuild.build({
  entryPoints: [path.join(root, 'bench', `${name}.ts`)],
  outfile: out,
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  external: ['koffi', '@grpc/grpc-js'],
  banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  logLevel: 'warning',
});

const extra = [];
if (name === 'agent-core') {
  const floor = path.join(root, 'tmp', 'bench-floor.mjs');
  await esbuild.build({
    ...common,
    stdin: {
      contents: `
import koffi from 'koffi';
import fs from 'node:fs';
import net from 'node:net';
import { createLogger } from './agent/src/log';
koffi.load('libc.so.6');
const log = createLogger('info');
log.info('starting');
const sock = process.argv[2]!;
fs.rmSync(sock, { force: true });
net.createServer().listen(sock, () => log.info({ startup_ms: Math.round(process.uptime() * 1000) }, 'listening'));
`,
      resolveDir: root,
      sourcefile: 'bench-floor.ts',
      loader: 'ts',
    },
    outfile: floor,
    minifyWhitespace: true,
    minifySyntax: true,
    plugins: [requireBuiltins, trimPino],
  });
  extra.push('--floor', floor);
}

const rest = args.filter((_, i) => i !== nameIdx);
const pin = args.includes('--pin') ? args[args.indexOf('--pin') + 1] : undefined;
const cmd = [process.execPath, out, ...rest, ...extra];
// With --pin, taskset runs the benchmark on one CPU and every process it starts inherits that.
const r = pin ? spawnSync('taskset', ['-c', pin, ...cmd], { cwd: root, stdio: 'inherit' }) : spawnSync(cmd[0], cmd.slice(1), { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
