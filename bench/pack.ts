// Packed-agent benchmark (issue 5, osbuilder pack): what the single executable costs and gains.
//  - sizes: node as installed, stripped; the agent as dist/ ships it (kata-agent.mjs + chunks)
//    and as one CommonJS script; the SEA blob with and without V8 code cache; the packed
//    executable; koffi's addon; with --compress, the executable compressed (zstd -19, xz -6,
//    gzip -9: what it adds to an initrd; ~2.5 min);
//  - start-up: spawn -> '"msg":"listening"' on a unix socket (as bench/agent-core.ts measures
//    it), interleaved runs of `node dist/kata-agent.mjs`, the packed executable with code cache
//    and without, and `node -e 0` (spawn -> exit) for scale; plus the agent's own startup_ms
//    (process.uptime() at 'listening') and its RSS at 'listening';
//  - reproducibility: two packs from the same inputs, compared byte for byte.
// Results: bench/results/pack.json and a table on stdout for docs/benchmarks.md.
// Run: npm run bench -- pack [--quick] [--compress]
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { packAgent, stripNode } from '../osbuilder/src/pack/agent';
import { bundleAgentForSea } from '../osbuilder/src/pack/bundle';
import { findSeaBlob } from '../osbuilder/src/pack/elf';
import { cleanNodeEnv, parseSeaBlob } from '../osbuilder/src/pack/sea';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const compress = argv.includes('--compress');
const STARTS = quick ? 8 : 30;
const root = process.cwd();
const outFile = path.join(root, 'bench/results/pack.json');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-bench-pack-'));
const env = cleanNodeEnv();
const log = (s: string): void => void process.stderr.write(`${s}\n`);

const r1 = (x: number): number => Math.round(x * 10) / 10;
const r2 = (x: number): number => Math.round(x * 100) / 100;
const mib = (n: number): number => r2(n / 1048576);
const median = (a: number[]): number => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const size = (f: string): number => fs.statSync(f).size;
const sha256 = (f: string): string => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');

const children = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  fs.rmSync(tmp, { recursive: true, force: true });
});

interface Start {
  readyMs: number;
  ownMs: number;
  rssKb: number;
}

/** Spawn `cmd` and resolve once it logs 'listening' (ms since spawn, its own startup_ms, its RSS then). */
function start(cmd: string[]): Promise<Start> {
  const t0 = process.hrtime.bigint();
  const child = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'pipe', 'inherit'], env });
  children.add(child);
  return new Promise((resolve, reject) => {
    let buf = '';
    child.stdout!.on('data', (d: Buffer) => {
      if (buf.includes('"msg":"listening"')) return;
      buf += d.toString();
      if (!buf.includes('"msg":"listening"')) return;
      const readyMs = Number(process.hrtime.bigint() - t0) / 1e6;
      const line = buf.split('\n').find((l) => l.includes('"msg":"listening"')) ?? '';
      const status = fs.readFileSync(`/proc/${child.pid}/status`, 'utf8');
      const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
      child.once('exit', () => resolve({ readyMs, ownMs: Number(/"startup_ms":(\d+)/.exec(line)?.[1] ?? NaN), rssKb }));
      child.kill('SIGKILL');
    });
    child.once('exit', (c) => {
      if (!buf.includes('"msg":"listening"')) reject(new Error(`${cmd.join(' ')} exited ${c}: ${buf}`));
    });
  });
}

function bareNode(): Promise<number> {
  const t0 = process.hrtime.bigint();
  const child = spawn(process.execPath, ['-e', '0'], { stdio: 'ignore', env });
  return new Promise((res, rej) => {
    child.once('error', rej);
    child.once('exit', () => res(Number(process.hrtime.bigint() - t0) / 1e6));
  });
}

function compressed(file: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, cmd] of [
    ['zstd_19', ['zstd', '-19', '-T0', '-q', '-c', file]],
    ['xz_6', ['xz', '-6', '-T0', '-c', file]],
    ['gzip_9', ['gzip', '-9', '-c', file]],
  ] as const) {
    log(`  ${cmd.slice(0, 2).join(' ')}...`);
    const r = spawnSync(cmd[0], cmd.slice(1), { maxBuffer: 1 << 30 });
    if (r.status === 0) out[name] = mib(r.stdout.length);
  }
  return out;
}

async function main(): Promise<void> {
  const distAgent = path.join(root, 'dist/kata-agent.mjs');
  if (!fs.existsSync(distAgent)) throw new Error('dist/kata-agent.mjs is missing: npm run build');
  const node = process.execPath;

  log('packing (with code cache, twice; without code cache)...');
  const t0 = performance.now();
  const withCache = await packAgent({ outDir: path.join(tmp, 'cache'), repoRoot: root });
  const packMs = performance.now() - t0;
  const again = await packAgent({ outDir: path.join(tmp, 'cache2'), repoRoot: root });
  const noCache = await packAgent({ outDir: path.join(tmp, 'nocache'), repoRoot: root, codeCache: false });
  const blobWith = parseSeaBlob(findSeaBlob(fs.readFileSync(withCache.executable))!);
  const blobWithout = parseSeaBlob(findSeaBlob(fs.readFileSync(noCache.executable))!);
  const stripped = path.join(tmp, 'node.stripped');
  await stripNode(node, stripped);
  const bundle = await bundleAgentForSea({ repoRoot: root, commit: withCache.commit });
  const chunks = fs.readdirSync(path.join(root, 'dist/chunks')).map((f) => path.join(root, 'dist/chunks', f));
  const distAgentBytes = size(distAgent) + ['grpc-js.mjs', 'protobufjs.cjs'].reduce((n, f) => n + (fs.existsSync(path.join(root, 'dist/chunks', f)) ? size(path.join(root, 'dist/chunks', f)) : 0), 0);

  const sizes = {
    node_mib: mib(size(node)),
    node_stripped_mib: mib(size(stripped)),
    dist_agent_kib: Math.round(distAgentBytes / 1024),
    dist_agent_note: 'dist/kata-agent.mjs + chunks/grpc-js.mjs + chunks/protobufjs.cjs (what `node dist/kata-agent.mjs` loads)',
    dist_chunks_total_kib: Math.round(chunks.reduce((n, f) => n + size(f), 0) / 1024),
    sea_bundle_kib: Math.round(bundle.code.length / 1024),
    code_cache_kib: Math.round((blobWith.codeCache?.length ?? 0) / 1024),
    blob_with_cache_kib: Math.round(findSeaBlob(fs.readFileSync(withCache.executable))!.length / 1024),
    blob_without_cache_kib: Math.round(findSeaBlob(fs.readFileSync(noCache.executable))!.length / 1024),
    executable_mib: mib(withCache.bytes),
    executable_without_cache_mib: mib(noCache.bytes),
    koffi_addon_kib: Math.round(size(withCache.files[1]!.src) / 1024),
    compressed_executable_mib: compress ? compressed(withCache.executable) : null,
  };
  if (blobWithout.codeCache) throw new Error('the pack without code cache has one');

  log(`start-up: ${STARTS} x (node -e 0, node dist/kata-agent.mjs, packed + code cache, packed without)`);
  const targets: Record<string, (sock: string) => string[]> = {
    node_dist: (s) => [node, distAgent, '--listen', `unix://${s}`, '--log-level', 'info'],
    packed_code_cache: (s) => [withCache.executable, '--listen', `unix://${s}`, '--log-level', 'info'],
    packed_no_code_cache: (s) => [noCache.executable, '--listen', `unix://${s}`, '--log-level', 'info'],
  };
  const runs: Record<string, Start[]> = Object.fromEntries(Object.keys(targets).map((k) => [k, []]));
  const bare: number[] = [];
  // One untimed start of each first (page cache).
  for (const [k, cmd] of Object.entries(targets)) await start(cmd(path.join(tmp, `warm-${k}.sock`)));
  for (let i = 0; i < STARTS; i++) {
    bare.push(await bareNode());
    // Rotate the order every run.
    const names = Object.keys(targets);
    for (let j = 0; j < names.length; j++) {
      const k = names[(i + j) % names.length]!;
      runs[k]!.push(await start(targets[k]!(path.join(tmp, `${k}-${i}.sock`))));
    }
  }
  const sum = (s: Start[]): Record<string, number> => ({
    listening_ms: r1(median(s.map((x) => x.readyMs))),
    listening_min_ms: r1(Math.min(...s.map((x) => x.readyMs))),
    own_startup_ms: r1(median(s.map((x) => x.ownMs))),
    rss_at_listening_mib: mib(median(s.map((x) => x.rssKb)) * 1024),
  });
  const startup = {
    runs: STARTS,
    node_e0_ms: r1(median(bare)),
    node_dist: sum(runs.node_dist!),
    packed_code_cache: sum(runs.packed_code_cache!),
    packed_no_code_cache: sum(runs.packed_no_code_cache!),
    ratio_packed_to_node_dist: r2(median(runs.packed_code_cache!.map((x) => x.readyMs)) / median(runs.node_dist!.map((x) => x.readyMs))),
    ratio_no_cache_to_node_dist: r2(median(runs.packed_no_code_cache!.map((x) => x.readyMs)) / median(runs.node_dist!.map((x) => x.readyMs))),
  };

  const results = {
    date: new Date().toISOString(),
    quick,
    machine: { node: process.version, v8: process.versions.v8, kernel: `${os.type()} ${os.release()}`, arch: os.arch(), cpus: os.cpus().length, loadavg: os.loadavg().map(r2) },
    pack: { version: withCache.version, commit: withCache.commit, pack_ms: Math.round(packMs) },
    sizes,
    startup,
    reproducible: {
      executable_identical: sha256(withCache.executable) === sha256(again.executable),
      koffi_identical: sha256(withCache.files[1]!.src) === sha256(again.files[1]!.src),
      note: 'the SEA blob is made with node --random-seed=1: with a random seed V8 string hashes in the code cache differ between runs',
    },
    method: 'spawn -> first "msg":"listening" on stdout, unix socket, --log-level info, NODE_OPTIONS/NODE_EXTRA_CA_CERTS removed; medians over interleaved runs (order rotated per run), after one untimed start of each',
  };
  fs.mkdirSync(path.dirname(outFile), { recursive: true });
  fs.writeFileSync(outFile, `${JSON.stringify(results, null, 2)}\n`);

  const s = startup;
  const c = sizes.compressed_executable_mib;
  console.log(`
| agent as | on disk | start to listening (median of ${s.runs}) | own startup_ms | RSS at listening |
|---|---|---|---|---|
| \`node dist/kata-agent.mjs\` (node ${sizes.node_mib} MiB + ${sizes.dist_agent_kib} KiB) | ${r1(sizes.node_mib + sizes.dist_agent_kib / 1024)} MiB | ${s.node_dist.listening_ms} ms | ${s.node_dist.own_startup_ms} ms | ${s.node_dist.rss_at_listening_mib} MiB |
| packed, code cache (one executable + koffi ${sizes.koffi_addon_kib} KiB) | ${sizes.executable_mib} MiB | ${s.packed_code_cache.listening_ms} ms (${s.ratio_packed_to_node_dist}x) | ${s.packed_code_cache.own_startup_ms} ms | ${s.packed_code_cache.rss_at_listening_mib} MiB |
| packed, no code cache | ${sizes.executable_without_cache_mib} MiB | ${s.packed_no_code_cache.listening_ms} ms (${s.ratio_no_cache_to_node_dist}x) | ${s.packed_no_code_cache.own_startup_ms} ms | ${s.packed_no_code_cache.rss_at_listening_mib} MiB |
| \`node -e 0\` (spawn to exit, for scale) | | ${s.node_e0_ms} ms | | |

Sizes: node ${sizes.node_mib} MiB, stripped ${sizes.node_stripped_mib} MiB; agent bundle ${sizes.sea_bundle_kib} KiB as one CommonJS script, code cache ${sizes.code_cache_kib} KiB${c ? `; executable compressed: zstd -19 ${c.zstd_19} MiB, xz -6 ${c.xz_6} MiB, gzip -9 ${c.gzip_9} MiB` : ''}.
Reproducible: ${results.reproducible.executable_identical ? 'two packs byte-identical' : 'two packs DIFFER'}. Pack time ${results.pack.pack_ms} ms.`);
}

await main();
