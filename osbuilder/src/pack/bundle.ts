// The agent as ONE CommonJS script, the form Node 20's single-executable support runs: every
// module (grpc-js, protobufjs, pino...) inlined, where `npm run build` makes dist/kata-agent.mjs
// plus lazily loaded chunks. The bundling plugins of agent/scripts/build.mjs are reused (node
// builtins and koffi through require(), pino trimmed), so the code is shaped as in dist/.
//
// koffi: a single executable's `require` loads only Node's built-in modules, so koffi's
// JavaScript is bundled too and its loader of the native addon (src/static.cjs, which
// require()s @koromix/koffi-<platform>) is replaced by one that process.dlopen()s the addon
// shipped beside the executable (KOFFI_ADDON, in the same directory as process.execPath).
//
// The git commit is stamped by an esbuild define (__GUESTKIT_COMMIT__, read by
// agent/src/version.ts and printed by `kata-agent --version`); the version is package.json's,
// bundled as it is in dist/.
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type * as Esbuild from 'esbuild';
import { failedError, missingError } from '../util/errors';

/** File name of koffi's native addon, installed beside the agent executable. */
export const KOFFI_ADDON = 'koffi.node';
/** The define that carries the commit into the bundle (see agent/src/version.ts). */
export const COMMIT_DEFINE = '__GUESTKIT_COMMIT__';
export const AGENT_ENTRY = 'agent/bin/kata-agent.ts';

/** The module that replaces koffi's addon loader inside the single executable. */
export function koffiLoaderSource(addonName = KOFFI_ADDON): string {
  return `// koffi's native addon, beside the executable (osbuilder pack). The kernel starts PID 1 as
// /init or /sbin/init (symlinks to it) before /proc is mounted, so node cannot read
// /proc/self/exe and process.execPath is the symlink: resolve it.
const fs = require('node:fs');
const path = require('node:path');
function executable() {
  try {
    return fs.realpathSync(process.execPath);
  } catch {
    return process.execPath;
  }
}
function loadStatic() {
  const file = path.join(path.dirname(executable()), ${JSON.stringify(addonName)});
  const mod = { exports: {} };
  try {
    process.dlopen(mod, file);
  } catch (err) {
    throw new Error('cannot load the koffi addon ' + file + ': ' + err.message);
  }
  return mod.exports;
}
module.exports = { loadStatic };
`;
}

/** esbuild plugin: bundle koffi's CommonJS entry, with its addon loader replaced (see above). */
export function koffiSeaPlugin(koffiEntry: string, addonName = KOFFI_ADDON): Esbuild.Plugin {
  const koffiDir = path.dirname(koffiEntry) + path.sep;
  return {
    name: 'koffi-sea',
    setup(b) {
      // `import koffi from 'koffi'` in the agent is turned into require('koffi') by the
      // require-builtins plugin (namespace gk-require); that require (or any) lands here.
      b.onResolve({ filter: /^koffi$/ }, (a) => (a.kind === 'import-statement' && a.namespace === 'file' ? undefined : { path: koffiEntry }));
      b.onResolve({ filter: /^\.\/src\/static\.cjs$/ }, (a) => (a.importer.startsWith(koffiDir) ? { path: 'koffi-static', namespace: 'gk-koffi-sea' } : undefined));
      b.onLoad({ filter: /.*/, namespace: 'gk-koffi-sea' }, () => ({ contents: koffiLoaderSource(addonName), loader: 'js' }));
    },
  };
}

export interface SeaBundle {
  /** The CommonJS script. */
  code: Buffer;
  /** Input files (relative to the repository) and their sizes in bytes. */
  inputs: Record<string, number>;
  warnings: string[];
}

/** esbuild's JS API from the repository's node_modules (osbuilder itself does not bundle it). */
export function loadEsbuild(repoRoot: string): typeof Esbuild {
  const req = createRequire(path.join(repoRoot, 'package.json'));
  try {
    return req('esbuild') as typeof Esbuild;
  } catch (err) {
    throw missingError(`esbuild is needed to bundle the agent but cannot be loaded from ${repoRoot}: ${(err as Error).message}`, 'run npm ci in the repository');
  }
}

interface BuildScript {
  requireBuiltins: Esbuild.Plugin;
  trimPino: Esbuild.Plugin;
}

/** Bundle agent/bin/kata-agent.ts into one CommonJS script for a single executable. */
export async function bundleAgentForSea(o: { repoRoot: string; commit: string; minify?: boolean }): Promise<SeaBundle> {
  const esbuild = loadEsbuild(o.repoRoot);
  const req = createRequire(path.join(o.repoRoot, 'package.json'));
  let koffiEntry: string;
  try {
    koffiEntry = req.resolve('koffi');
  } catch {
    throw missingError(`koffi is not installed in ${o.repoRoot}`, 'run npm ci in the repository');
  }
  const scripts = path.join(o.repoRoot, 'agent/scripts');
  // The protocol descriptor is generated from agent/proto (not committed): as `npm run build` does.
  const gen = (await import(pathToFileURL(path.join(scripts, 'gen-descriptor.mjs')).href)) as { generate(): string };
  gen.generate();
  const build = (await import(pathToFileURL(path.join(scripts, 'build.mjs')).href)) as BuildScript;
  const minify = o.minify ?? true;
  let res: Esbuild.BuildResult & { outputFiles: Esbuild.OutputFile[]; metafile: Esbuild.Metafile };
  try {
    res = await esbuild.build({
      absWorkingDir: o.repoRoot,
      entryPoints: [AGENT_ENTRY],
      outfile: 'kata-agent.cjs',
      bundle: true,
      platform: 'node',
      target: 'node20',
      format: 'cjs',
      write: false,
      metafile: true,
      legalComments: 'none',
      sourcemap: false,
      minifyWhitespace: minify,
      minifySyntax: minify,
      define: { [COMMIT_DEFINE]: JSON.stringify(o.commit) },
      plugins: [koffiSeaPlugin(koffiEntry), build.requireBuiltins, build.trimPino],
      logLevel: 'silent',
    });
  } catch (err) {
    const errors = (err as { errors?: Esbuild.Message[] }).errors;
    const first = errors?.[0];
    const where = first?.location ? `${first.location.file}:${first.location.line}: ` : '';
    throw failedError(`bundling the agent failed: ${first ? `${where}${first.text}` : (err as Error).message}`);
  }
  const out = res.outputFiles[0];
  if (!out) throw failedError('bundling the agent produced no output');
  const inputs: Record<string, number> = {};
  for (const [f, i] of Object.entries(res.metafile.inputs)) inputs[f] = i.bytes;
  return {
    code: Buffer.from(out.contents),
    inputs,
    warnings: res.warnings.map((w) => `${w.location ? `${w.location.file}:${w.location.line}: ` : ''}${w.text}`),
  };
}
