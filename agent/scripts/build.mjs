#!/usr/bin/env node
// Build: proto descriptor, then esbuild bundles of the executables into dist/.
// grpc-js is split into its own chunk and loaded on the first gRPC connection.
import * as esbuild from 'esbuild';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { generate } from './gen-descriptor.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
process.chdir(root);
generate();

const entries = {
  'kata-agent': 'agent/bin/kata-agent.ts',
  'agent-ctl': 'agent/bin/agent-ctl.ts',
};
const result = await esbuild.build({
  entryPoints: entries,
  outdir: 'dist',
  outExtension: { '.js': '.mjs' },
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  chunkNames: 'chunks/[name]-[hash]',
  external: ['koffi'],
  minifyWhitespace: false,
  legalComments: 'none',
  sourcemap: false,
  metafile: true,
  banner: {
    js: "#!/usr/bin/env node\nimport { createRequire as __gkCreateRequire } from 'node:module'; const require = __gkCreateRequire(import.meta.url);",
  },
  logLevel: 'warning',
});
for (const name of Object.keys(entries)) fs.chmodSync(path.join('dist', `${name}.mjs`), 0o755);
const outs = Object.entries(result.metafile.outputs).map(([f, o]) => `${f} ${(o.bytes / 1024).toFixed(0)} KiB`);
console.log(`built ${outs.join(', ')}`);
