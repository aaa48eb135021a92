#!/usr/bin/env node
// Run a benchmark: bundles bench/<name>.ts with esbuild into tmp/ and runs it.
// Usage: node bench/run.mjs [agent-core] [--quick]
import * as esbuild from 'esbuild';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
if (args.includes('--help') || args.includes('-h')) {
  console.log('Usage: npm run bench -- [NAME] [--quick]\n\nNAME: agent-core (default)\nWrites bench/results/NAME.json and prints a table.');
  process.exit(0);
}
const name = args.find((a) => !a.startsWith('-')) ?? 'agent-core';
const build = spawnSync(process.execPath, ['agent/scripts/build.mjs'], { cwd: root, stdio: 'inherit' });
if (build.status !== 0) process.exit(build.status ?? 1);
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
const r = spawnSync(process.execPath, [out, ...args.filter((a) => a !== name)], { cwd: root, stdio: 'inherit' });
process.exit(r.status ?? 1);
