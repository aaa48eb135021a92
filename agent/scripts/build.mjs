#!/usr/bin/env node
// Build: proto descriptor, then esbuild bundles of the executables into dist/.
//
// Start-up is part of the product (the agent is PID 1 of every sandbox), so the
// agent bundle is shaped for it (measured in docs/benchmarks.md):
// - dist/kata-agent.mjs is one file: everything needed up to 'listening' and for
//   ttrpc, with no shared chunks to resolve, read and link at start;
// - @grpc/grpc-js (and node:http2 with it) is its own bundle,
//   dist/chunks/grpc-js.mjs, imported only on the first gRPC connection;
// - protobufjs is its own bundle too, dist/chunks/protobufjs.cjs, required once
//   the agent is listening (to build the schema) rather than parsed at start;
// - node builtins and koffi are loaded with require() rather than ESM `import`:
//   no ESM facade per builtin (which touches every lazy getter, e.g. fs streams),
//   no CJS-in-ESM translation of koffi, and modules reached only through a
//   dynamic import() (e.g. CopyFile's node:crypto) stay unloaded until used;
// - pino is trimmed to what the agent uses (see trimPino): no transports or
//   worker threads, since the agent logs synchronously to a file descriptor;
// - whitespace and syntax are minified (identifiers are kept, so stack traces in
//   the logs stay readable).
// agent-ctl is built separately (with its own chunks for its lazily loaded dialers).
import * as esbuild from 'esbuild';
import fs from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { generate } from './gen-descriptor.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export const banner = {
  js: "#!/usr/bin/env node\nimport { createRequire as __gkCreateRequire } from 'node:module'; const require = __gkCreateRequire(import.meta.url);",
};
export const common = {
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  outExtension: { '.js': '.mjs' },
  external: ['koffi'],
  legalComments: 'none',
  sourcemap: false,
  metafile: true,
  banner,
  logLevel: 'warning',
};

/** The agent's dynamic import('@grpc/grpc-js') loads the separately built dist/chunks/grpc-js.mjs. */
const grpcChunk = {
  name: 'grpc-chunk',
  setup(b) {
    b.onResolve({ filter: /^@grpc\/grpc-js$/ }, (args) => {
      if (args.kind !== 'dynamic-import') {
        return { errors: [{ text: '@grpc/grpc-js must only be loaded with import() in the agent (see agent/src/rpc/grpc.ts)' }] };
      }
      return { path: './chunks/grpc-js.mjs', external: true };
    });
  },
};

/**
 * protobufjs is needed only once the agent is listening (agent/src/rpc/proto.ts
 * require()s it on first use): it is its own CommonJS file, dist/chunks/protobufjs.cjs,
 * so the agent's start-up does not even parse it.
 */
const protobufChunk = {
  name: 'protobufjs-chunk',
  setup(b) {
    b.onResolve({ filter: /^protobufjs\/light\.js$/ }, (args) => {
      if (args.kind !== 'require-call') {
        return { errors: [{ text: 'protobufjs must only be loaded with require() in the agent (see agent/src/rpc/proto.ts)' }] };
      }
      return { path: './chunks/protobufjs.cjs', external: true };
    });
  },
};

/**
 * ESM imports of node builtins and koffi in our sources become require() calls
 * (see above), through small ES module shims: `export default` the module plus, for
 * builtins, its plain (non-getter) properties as named exports, so esbuild needs no
 * CommonJS interop copy (__toESM) of each module at start.
 */
const builtins = new Set(builtinModules);
const nodeRequire = createRequire(import.meta.url);
export const requireBuiltins = {
  name: 'require-builtins',
  setup(b) {
    b.onResolve({ filter: /^(node:)?[a-z_/]+$|^koffi$/ }, (args) => {
      if (args.namespace === 'gk-require' || args.importer.includes(`${path.sep}node_modules${path.sep}`)) return undefined;
      if (args.kind !== 'import-statement') return undefined;
      const bare = args.path.replace(/^node:/, '');
      if (args.path !== 'koffi' && !builtins.has(bare)) return undefined;
      return { path: args.path, namespace: 'gk-require' };
    });
    b.onLoad({ filter: /.*/, namespace: 'gk-require' }, (args) => {
      const lines = [`const m = require(${JSON.stringify(args.path)});`, 'export default m;'];
      if (args.path !== 'koffi') {
        const mod = nodeRequire(args.path);
        const names = Object.getOwnPropertyNames(mod).filter(
          (k) => /^[A-Za-z_$][\w$]*$/.test(k) && k !== 'default' && 'value' in Object.getOwnPropertyDescriptor(mod, k),
        );
        if (names.length) lines.push(`export const { ${names.join(', ')} } = m;`);
      }
      return { contents: lines.join('\n'), loader: 'js' };
    });
  },
};

/**
 * pino as the agent uses it: a synchronous destination on a file descriptor, on
 * the main thread. Left out of the bundle: pino.transport() and its worker-thread
 * machinery (never used); worker_threads, which pino loads only to read
 * isMainThread (the agent is never a worker); and node:assert, which sonic-boom
 * needs only when a destination is closed (loaded then).
 */
export const trimPino = {
  name: 'trim-pino',
  setup(b) {
    const stubs = {
      transport: "module.exports = function transport() { throw new Error('pino transports are not included in this build'); };",
      mainThread: 'module.exports = { isMainThread: true };',
      lazyAssert: "module.exports = function assert(...args) { return require('node:assert')(...args); };",
    };
    const inPkg = (dir, pkg) => new RegExp(`[\\\\/]node_modules[\\\\/]${pkg}([\\\\/]|$)`).test(dir + path.sep);
    b.onResolve({ filter: /^\.\/(lib\/)?transport$/ }, (a) => (inPkg(a.resolveDir, 'pino') ? { path: 'transport', namespace: 'gk-stub' } : undefined));
    b.onResolve({ filter: /^worker_threads$/ }, (a) => (inPkg(a.resolveDir, 'pino') ? { path: 'mainThread', namespace: 'gk-stub' } : undefined));
    b.onResolve({ filter: /^assert$/ }, (a) => (inPkg(a.resolveDir, 'sonic-boom') ? { path: 'lazyAssert', namespace: 'gk-stub' } : undefined));
    b.onLoad({ filter: /.*/, namespace: 'gk-stub' }, (a) => ({ contents: stubs[a.path], loader: 'js' }));
  },
};

/** Build dist/ (what `npm run build` runs). The plugins above are also used by bench/run.mjs. */
export async function build() {
  process.chdir(root);
  generate();
  const agent = esbuild.build({
    ...common,
    entryPoints: { 'kata-agent': 'agent/bin/kata-agent.ts' },
    outdir: 'dist',
    splitting: false,
    minifyWhitespace: true,
    minifySyntax: true,
    plugins: [grpcChunk, protobufChunk, requireBuiltins, trimPino],
  });
  const grpcJs = esbuild.build({
    ...common,
    entryPoints: { 'grpc-js': '@grpc/grpc-js' },
    outdir: 'dist/chunks',
    splitting: false,
    minifyWhitespace: true,
    minifySyntax: true,
  });
  const protobufJs = esbuild.build({
    ...common,
    entryPoints: { protobufjs: 'protobufjs/light.js' },
    outdir: 'dist/chunks',
    format: 'cjs',
    outExtension: { '.js': '.cjs' },
    banner: undefined,
    splitting: false,
    minifyWhitespace: true,
    minifySyntax: true,
  });
  const ctl = esbuild.build({
    ...common,
    entryPoints: { 'agent-ctl': 'agent/bin/agent-ctl.ts' },
    outdir: 'dist',
    splitting: true,
    chunkNames: 'chunks/[name]-[hash]',
  });
  // osbuilder (host tool; runs on the build machine, Node's own modules only).
  const osb = esbuild.build({
    ...common,
    entryPoints: { osbuilder: 'osbuilder/bin/osbuilder.ts' },
    outdir: 'dist',
    splitting: false,
  });
  const results = await Promise.all([agent, grpcJs, protobufJs, ctl, osb]);

  for (const name of ['kata-agent', 'agent-ctl', 'osbuilder']) fs.chmodSync(path.join('dist', `${name}.mjs`), 0o755);
  // Drop chunks left over from earlier builds (their names carry content hashes).
  const outputs = new Set(results.flatMap((r) => Object.keys(r.metafile.outputs)).map((f) => path.resolve(f)));
  for (const f of fs.readdirSync('dist/chunks')) {
    const p = path.resolve('dist/chunks', f);
    if (!outputs.has(p)) fs.rmSync(p, { force: true });
  }
  const outs = results.flatMap((r) => Object.entries(r.metafile.outputs)).map(([f, o]) => `${f} ${(o.bytes / 1024).toFixed(0)} KiB`);
  console.log(`built ${outs.join(', ')}`);
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) await build();
