// osbuilder build times and output sizes: the `minimal` rootfs, its initrd in every compression,
// ext4 and erofs images. Goal (issue 5): minimal initrd <= 25 MB compressed with xz.
// Results: bench/results/osbuilder.json and a table on stdout (docs/benchmarks.md).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = process.cwd();
const osb = path.join(root, 'dist/osbuilder.mjs');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-bench-osb-'));
const out = path.join(root, 'bench/results/osbuilder.json');
const run = (args: string[]): number => {
  const t0 = performance.now();
  execFileSync(process.execPath, [osb, '--quiet', ...args], { stdio: ['ignore', 'ignore', 'inherit'] });
  return Math.round(performance.now() - t0) / 1000;
};
const size = (p: string): number => fs.statSync(p).size;
const MB = (n: number): number => Math.round((n / 1e6) * 10) / 10;
try {
  const rootfs = path.join(work, 'rootfs');
  const res: Record<string, any> = { date: new Date().toISOString(), cpus: os.cpus().length, loadavg: os.loadavg().map((x) => Math.round(x * 100) / 100) };
  res.rootfs_minimal = { seconds: run(['rootfs', 'minimal', '--output', rootfs]), bytes: Number(execFileSync('du', ['-sb', rootfs], { encoding: 'utf8' }).split('\t')[0]) };
  res.initrd = {};
  for (const c of ['none', 'gzip', 'lz4', 'zstd', 'xz']) {
    const f = path.join(work, `initrd-${c}.img`);
    res.initrd[c] = { seconds: run(['initrd', '--rootfs', rootfs, '--compression', c, '--output', f]), bytes: size(f) };
  }
  res.image = {};
  for (const fsType of ['ext4', 'erofs']) {
    const f = path.join(work, `disk-${fsType}.img`);
    res.image[fsType] = { seconds: run(['image', '--rootfs', rootfs, '--fs', fsType, '--output', f]), bytes: size(f) };
  }
  res.goal_minimal_initrd_xz_le_25_MB = res.initrd.xz.bytes <= 25e6;
  fs.writeFileSync(out, `${JSON.stringify(res, null, 2)}\n`);
  console.log('| output | build time | size |\n| --- | --- | --- |');
  console.log(`| minimal rootfs | ${res.rootfs_minimal.seconds} s | ${MB(res.rootfs_minimal.bytes)} MB |`);
  for (const [c, r] of Object.entries<any>(res.initrd)) console.log(`| initrd, ${c} | ${r.seconds} s | ${MB(r.bytes)} MB |`);
  for (const [t, r] of Object.entries<any>(res.image)) console.log(`| image, ${t} | ${r.seconds} s | ${MB(r.bytes)} MB |`);
  console.log(`goal minimal initrd (xz) <= 25 MB: ${res.goal_minimal_initrd_xz_le_25_MB ? 'met' : 'not met'}`);
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
