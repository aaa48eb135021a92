// Node single executables: the SEA preparation blob (`node --experimental-sea-config`), its
// format (to check and measure it), and whether V8 accepts its code cache.
//
// Reproducibility: V8 seeds its string hashes from a random seed per process, and the hashes
// end up in the serialized code cache, so two blobs with a code cache differ in a few words.
// The blob is therefore generated with --random-seed fixed (V8 leaves --random-seed out of the
// flag hash it stamps into the cache, precisely so that code caches can be made predictably:
// the cache is still accepted by a node started without it, which checkCodeCache() verifies).
// NODE_OPTIONS is removed from the generator's environment: V8 flags there would change the
// flag hash, and the guest would reject the cache.
import fs from 'node:fs';
import path from 'node:path';
import { failedError } from '../util/errors';
import { runTool } from '../util/tools';

/** Blob header magic (src/node_sea.h kMagic). */
export const SEA_MAGIC = 0x143da20;
/** Blob flags (src/node_sea.h SeaFlags). */
export const SEA_FLAGS = { disableExperimentalSeaWarning: 1, useSnapshot: 2, useCodeCache: 4, includeAssets: 8 } as const;
/** Fixed V8 random seed for the blob generator (any constant works; see above). */
export const GENERATOR_SEED = 1;
/** Environment variables removed for node processes that must behave as in the guest. */
export const NODE_ENV_REMOVED = ['NODE_OPTIONS', 'NODE_EXTRA_CA_CERTS', 'NODE_DEBUG', 'NODE_DEBUG_NATIVE'];

export interface SeaConfig {
  main: string;
  output: string;
  disableExperimentalSEAWarning: boolean;
  useSnapshot: boolean;
  useCodeCache: boolean;
}

export function seaConfig(main: string, output: string, useCodeCache: boolean): SeaConfig {
  return { main, output, disableExperimentalSEAWarning: true, useSnapshot: false, useCodeCache };
}

export interface SeaBlob {
  flags: number;
  codePath: string;
  code: Buffer;
  codeCache?: Buffer;
}

/** Parse a SEA preparation blob (Node 20 layout: magic, flags, then u64-length-prefixed fields). */
export function parseSeaBlob(blob: Buffer): SeaBlob {
  if (blob.length < 8 || blob.readUInt32LE(0) !== SEA_MAGIC) throw new Error('not a SEA blob (bad magic)');
  const flags = blob.readUInt32LE(4);
  let o = 8;
  const field = (what: string): Buffer => {
    if (o + 8 > blob.length) throw new Error(`truncated SEA blob (${what})`);
    const n = Number(blob.readBigUInt64LE(o));
    o += 8;
    if (o + n > blob.length) throw new Error(`truncated SEA blob (${what})`);
    const s = blob.subarray(o, o + n);
    o += n;
    return s;
  };
  const codePath = field('code path').toString('utf8');
  const code = field('code');
  const codeCache = flags & SEA_FLAGS.useCodeCache ? field('code cache') : undefined;
  return { flags, codePath, code, codeCache };
}

/** The environment for node processes that stand for the guest's: without NODE_OPTIONS & co. */
export function cleanNodeEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const out = { ...env };
  for (const k of NODE_ENV_REMOVED) delete out[k];
  return out;
}

/** Generate the blob for `mainScript` with `node` (the binary it will be injected into). */
export async function makeSeaBlob(o: { node: string; mainScript: string; workDir: string; codeCache: boolean }): Promise<Buffer> {
  const out = path.join(o.workDir, 'sea-prep.blob');
  const cfg = path.join(o.workDir, 'sea-config.json');
  // Paths relative to workDir: the blob records the main script's path as given (no temp names).
  const main = path.relative(o.workDir, o.mainScript);
  if (main.startsWith('..') || path.isAbsolute(main)) throw new Error(`the main script ${o.mainScript} must be in ${o.workDir}`);
  fs.writeFileSync(cfg, `${JSON.stringify(seaConfig(main, 'sea-prep.blob', o.codeCache), null, 2)}\n`);
  await runTool(o.node, [`--random-seed=${GENERATOR_SEED}`, '--experimental-sea-config', cfg], { cwd: o.workDir, env: cleanNodeEnv() });
  if (!fs.existsSync(out)) throw failedError(`${o.node} --experimental-sea-config wrote no blob (node 20 or later is needed)`);
  return fs.readFileSync(out);
}

/**
 * Whether `node` (started as the guest starts it: no flags, no NODE_OPTIONS) accepts the blob's
 * code cache. Node compiles a single executable's main script as a CommonJS function with these
 * parameters; vm.compileFunction() with the cache tells whether V8 rejected it.
 */
export async function checkCodeCache(node: string, blobFile: string): Promise<{ accepted: boolean }> {
  const script = `
const fs = require('node:fs'), vm = require('node:vm');
const b = fs.readFileSync(process.argv[1]);
let o = 8;
const field = () => { const n = Number(b.readBigUInt64LE(o)); o += 8; const s = b.subarray(o, o + n); o += n; return s; };
const name = field().toString(), code = field().toString(), cache = field();
const f = vm.compileFunction(code, ['exports', 'require', 'module', '__filename', '__dirname'], { filename: name, cachedData: cache });
process.stdout.write(f.cachedDataRejected ? 'rejected' : 'accepted');
`;
  const r = await runTool(node, ['-e', script, blobFile], { env: cleanNodeEnv() });
  return { accepted: r.stdout.trim() === 'accepted' };
}
