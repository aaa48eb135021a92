// Bundle a TypeScript entry into a runnable .mjs (for tests that must run code
// in a separate process, e.g. as PID 1 in a fresh PID namespace). The output
// goes under <repo>/tmp/bundles/ so that node resolves the external `koffi`
// from <repo>/node_modules by walking up the directory tree.
import { build } from 'esbuild';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The nearest directory above this file (or its bundle) holding package.json. */
export const REPO_ROOT = findRoot(path.dirname(fileURLToPath(import.meta.url)));

function findRoot(start: string): string {
  for (let dir = start; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) return path.resolve(start, '../..');
  }
}

const cache = new Map<string, Promise<string>>();

/** Bundle `entryTs` (absolute, or relative to the repo root); returns the .mjs path. */
export function bundleEntry(entryTs: string): Promise<string> {
  const entry = path.resolve(REPO_ROOT, entryTs);
  let p = cache.get(entry);
  if (!p) {
    p = doBundle(entry);
    cache.set(entry, p);
    p.catch(() => cache.delete(entry));
  }
  return p;
}

async function doBundle(entry: string): Promise<string> {
  const dir = path.join(REPO_ROOT, 'tmp', 'bundles');
  fs.mkdirSync(dir, { recursive: true });
  const res = await build({
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: ['koffi'],
    absWorkingDir: REPO_ROOT,
    outfile: path.join(dir, 'out.mjs'),
    write: false,
    logLevel: 'silent',
    // Bundled CommonJS dependencies (pino) may call require().
    banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
  });
  const code = res.outputFiles[0]!.contents;
  // Named by content: concurrent test processes share a file, reruns do not pile up.
  const tag = crypto.createHash('sha1').update(code).digest('hex').slice(0, 12);
  const out = path.join(dir, `${path.basename(entry, '.ts')}-${tag}.mjs`);
  if (!fs.existsSync(out)) {
    const tmp = `${out}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, code);
    fs.renameSync(tmp, out);
  }
  return out;
}
