// osbuilder image end to end: real mkfs.ext4/debugfs/mkfs.erofs builds from a small fixture
// tree, checked with independent tools: sfdisk (partition table), e2fsck -fn / debugfs (ext4),
// fsck.erofs --extract / dump.erofs (erofs), the DAX info block read by raw offsets; byte-identical
// rebuilds; and the error cases with their exit codes (a missing or failing mkfs is simulated
// in a private mount namespace).
import { execFileSync, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { build } from 'esbuild';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../osbuilder/src/cli';
import { imageCommand } from '../../osbuilder/src/image/command';
import { EXIT } from '../../osbuilder/src/util/errors';
import { REPO_ROOT } from '../helpers/bundle';
import { rng } from '../helpers/prng';

const MiB = 1024 * 1024;
const EPOCH = 1700000000;
const EPOCH_HEX = `0x${EPOCH.toString(16)}`;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-osb-image-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

for (const t of ['sfdisk', 'e2fsck', 'debugfs', 'dumpe2fs', 'fsck.erofs', 'dump.erofs', 'mkfs.erofs', 'mkfs.ext4', 'unshare']) {
  if (spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0) throw new Error(`${t} is needed by this test (apt-get install fdisk e2fsprogs erofs-utils util-linux)`);
}

async function image(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  const o = { stdout: '', stderr: '' };
  const code = await runCli(['image', ...args], [imageCommand], {
    stdout: (s) => void (o.stdout += s),
    stderr: (s) => void (o.stderr += s),
    env: { PATH: process.env.PATH, SOURCE_DATE_EPOCH: String(EPOCH), ...env },
  });
  return { code, ...o };
}

/** The fixture rootfs. `reverse` creates entries in the opposite order; `mtime` is every entry's mtime. */
function makeTree(root: string, o: { reverse?: boolean; mtime?: number; change?: boolean } = {}): void {
  const r = rng(7);
  const data = r.bytes(200 * 1024);
  const steps: (() => void)[] = [
    () => fs.mkdirSync(path.join(root, 'sbin'), { recursive: true }),
    () => fs.mkdirSync(path.join(root, 'etc'), { recursive: true }),
    () => fs.mkdirSync(path.join(root, 'usr/bin'), { recursive: true }),
    () => fs.mkdirSync(path.join(root, 'usr/lib/mod'), { recursive: true }),
    () => fs.mkdirSync(path.join(root, 'var/empty'), { recursive: true }),
    () => fs.mkdirSync(path.join(root, 'with space'), { recursive: true }),
  ];
  const files: (() => void)[] = [
    () => fs.writeFileSync(path.join(root, 'sbin/init'), '#!/bin/sh\nexec /usr/bin/tool\n', { mode: 0o755 }),
    () => fs.writeFileSync(path.join(root, 'etc/hostname'), o.change ? 'other\n' : 'guest\n'),
    () => fs.writeFileSync(path.join(root, 'etc/secret'), 'k', { mode: 0o600 }),
    () => fs.writeFileSync(path.join(root, 'etc/owned'), 'mine\n'),
    () => fs.writeFileSync(path.join(root, 'etc/big-uid'), 'far\n'), // erofs: an extended inode
    () => fs.writeFileSync(path.join(root, 'usr/lib/mod/data.bin'), data),
    () => fs.writeFileSync(path.join(root, 'usr/bin/tool'), '#!/bin/sh\necho tool\n', { mode: 0o755 }),
    () => fs.writeFileSync(path.join(root, 'with space/a file'), 'spaced\n'),
    () => fs.symlinkSync('../../sbin/init', path.join(root, 'usr/bin/sh')),
    () => fs.symlinkSync('/usr/share/zoneinfo/UTC', path.join(root, 'etc/localtime')),
    () => fs.symlinkSync('l'.repeat(100), path.join(root, 'etc/long')),
    () => execFileSync('mkfifo', [path.join(root, 'var/fifo')]),
  ];
  for (const s of o.reverse ? [...steps].reverse() : steps) s();
  for (const f of o.reverse ? [...files].reverse() : files) f();
  fs.linkSync(path.join(root, 'usr/bin/tool'), path.join(root, 'usr/bin/tool2'));
  fs.chmodSync(path.join(root, 'usr/bin/tool'), 0o4755);
  fs.chownSync(path.join(root, 'etc/owned'), 1000, 1000);
  fs.chownSync(path.join(root, 'etc/big-uid'), 70000, 70000);
  const t = o.mtime ?? 1_000_000;
  for (const p of walk(root)) fs.lutimesSync(p, t, t);
  fs.utimesSync(root, t, t);
}

function walk(root: string): string[] {
  const out: string[] = [];
  for (const name of fs.readdirSync(root).sort()) {
    const p = path.join(root, name);
    out.push(p);
    if (fs.lstatSync(p).isDirectory()) out.push(...walk(p));
  }
  return out;
}

/**
 * type, permissions, owner, content hash or link target of every entry below `root`.
 * `lossy`: what the extracting tools of Debian 12 cannot reproduce: debugfs rdump skips fifos
 * and, like fsck.erofs 1.5 --extract, drops setuid/setgid/sticky bits (checked separately).
 */
function describeTree(root: string, o: { owners: boolean; lossy?: 'rdump' | 'erofs' }): Record<string, string> {
  const d: Record<string, string> = {};
  for (const p of walk(root)) {
    const st = fs.lstatSync(p);
    const rel = path.relative(root, p);
    const owner = o.owners ? ` ${st.uid}:${st.gid}` : '';
    const mode = (st.mode & (o.lossy ? 0o777 : 0o7777)).toString(8);
    if (st.isSymbolicLink()) d[rel] = `link -> ${fs.readlinkSync(p)}`;
    else if (st.isDirectory()) d[rel] = `dir ${mode}${owner}`;
    else if (st.isFIFO()) {
      if (o.lossy !== 'rdump') d[rel] = `fifo ${mode}${owner}`;
    } else d[rel] = `file ${mode}${owner} ${crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex').slice(0, 16)}`;
  }
  return d;
}

/** The raw i_mode of an erofs inode: NID from dump.erofs, inode at meta_blkaddr * 4096 + nid * 32 (+4). */
function erofsRaw(part: string, guestPath: string): { mode: number; buildTime: bigint } {
  const nid = Number(/NID: (\d+)/.exec(execFileSync('dump.erofs', [`--path=${guestPath}`, part], { encoding: 'utf8' }))![1]);
  const b = fs.readFileSync(part);
  const sb = 1024;
  expect(b.readUInt32LE(sb)).toBe(0xe0f5e1e2);
  const meta = b.readUInt32LE(sb + 40);
  return { mode: b.readUInt16LE(meta * 4096 + nid * 32 + 4), buildTime: b.readBigUInt64LE(sb + 24) };
}

/** Copy `length` bytes (default: to the end) at `offset` of `file` into a new file. */
function extract(file: string, offset: number, out: string, length?: number): string {
  const size = fs.statSync(file).size;
  const end = length === undefined ? size : offset + length;
  const src = fs.openSync(file, 'r');
  const dst = fs.openSync(out, 'w');
  const buf = Buffer.alloc(4 * MiB);
  for (let pos = offset; pos < end; ) {
    const n = fs.readSync(src, buf, 0, Math.min(buf.length, end - pos), pos);
    fs.writeSync(dst, buf, 0, n, pos - offset);
    pos += n;
  }
  fs.closeSync(src);
  fs.closeSync(dst);
  return out;
}

interface SfdiskTable {
  label: string;
  id: string;
  partitions: { start: number; size: number; type: string; bootable?: boolean }[];
}
const sfdisk = (file: string): SfdiskTable => JSON.parse(execFileSync('sfdisk', ['--json', file], { encoding: 'utf8' })).partitiontable as SfdiskTable;
const tool = (file: string, args: string[]): { status: number | null; out: string } => {
  const r = spawnSync(file, args, { encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
};

/** The kernel's nd_fletcher64 (64-bit arithmetic), for the DAX info block. */
function fletcher(b: Buffer): bigint {
  let lo = 0n;
  let hi = 0n;
  for (let i = 0; i < b.length; i += 4) {
    lo = (lo + BigInt(b.readUInt32LE(i))) & 0xffffffffn;
    hi = (hi + lo) & 0xffffffffffffffffn;
  }
  return ((hi << 32n) | lo) & 0xffffffffffffffffn;
}

const uuidOf = (stdout: string): string => /UUID ([0-9a-f-]{36})/.exec(stdout)![1]!;

const rootA = path.join(tmp, 'rootfs-a');
const rootB = path.join(tmp, 'rootfs-b');

/** Wait until the wall clock's second changes: whatever leaks the build time would differ. */
async function nextSecond(): Promise<void> {
  const next = Math.floor(Date.now() / 1000) * 1000 + 1000;
  while (Date.now() < next) await new Promise((r) => setTimeout(r, 20));
}

beforeAll(async () => {
  makeTree(rootA);
  // Tree B: the same content created later (ctimes differ by at least a second), in reverse
  // order (another readdir order on some filesystems) and with other mtimes/atimes.
  await nextSecond();
  makeTree(rootB, { reverse: true, mtime: 2_000_000 });
});

describe('osbuilder image: ext4', () => {
  const out = path.join(tmp, 'out-ext4');
  fs.mkdirSync(out);
  const img = path.join(out, 'kata.img');
  let stdout = '';

  beforeAll(async () => {
    const r = await image(['--rootfs', rootA, '--output', img]);
    expect(r.stderr).toMatch(/\[1\/3\] scanning/); // progress on stderr
    expect(r.code, r.stderr).toBe(EXIT.OK);
    stdout = r.stdout;
  });

  it('is 128 MiB (the default alignment) and says so; nothing else is left beside it', () => {
    expect(fs.statSync(img).size).toBe(128 * MiB);
    expect(stdout).toMatch(new RegExp(`^${img.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: 134217728 bytes \\(128 MiB\\), ext4 `));
    expect(fs.readdirSync(out)).toEqual(['kata.img']);
  });

  it('has an MBR with one Linux partition from 1 MiB to the end, not bootable (sfdisk)', () => {
    const t = sfdisk(img);
    expect(t.label).toBe('dos');
    expect(t.id).toMatch(/^0x[0-9a-f]{8}$/);
    expect(t.id).not.toBe('0x00000000');
    expect(t.partitions).toEqual([{ node: `${img}1`, start: 2048, size: (127 * MiB) / 512, type: '83' }]);
    expect(tool('sfdisk', ['--verify', img]).out).toMatch(/No errors detected/);
  });

  it('holds a clean ext4 (e2fsck -fn) with the tree, owned by root, every time the epoch (debugfs)', () => {
    const part = extract(img, MiB, path.join(tmp, 'p.ext4'));
    const fsck = tool('e2fsck', ['-fn', part]);
    expect(fsck.status, fsck.out).toBe(0);
    expect(tool('dumpe2fs', ['-h', part]).out).toContain(`Filesystem UUID:          ${uuidOf(stdout)}`);
    const dump = path.join(tmp, 'rdump-ext4');
    fs.mkdirSync(dump);
    execFileSync('debugfs', ['-R', `rdump / ${dump}`, part], { stdio: 'ignore' });
    const got = describeTree(dump, { owners: false, lossy: 'rdump' });
    delete got['lost+found'];
    expect(got).toEqual(describeTree(rootA, { owners: false, lossy: 'rdump' }));
    expect(execFileSync('debugfs', ['-R', 'stat /usr/bin/tool', part], { encoding: 'utf8' })).toMatch(/Mode:\s+04755\s/);
    expect(execFileSync('debugfs', ['-R', 'ls -l /var', part], { encoding: 'utf8' })).toMatch(/\s10644\s.*\sfifo\s*$/m);
    const ls = execFileSync('debugfs', ['-R', 'ls -l /usr/bin', part], { encoding: 'utf8' });
    const ino = (name: string): string => new RegExp(`^\\s*(\\d+)\\s.*\\s${name}\\s*$`, 'm').exec(ls)![1]!;
    expect(ino('tool')).toBe(ino('tool2')); // hard link kept
    for (const f of ['/etc/owned', '/usr/bin/tool', '/etc/long', '/']) {
      const st = execFileSync('debugfs', ['-R', `stat ${f}`, part], { encoding: 'utf8' });
      expect(st, f).toMatch(/User:\s+0\s+Group:\s+0\s/);
      for (const field of ['ctime', 'atime', 'mtime', 'crtime']) expect(st, `${f} ${field}`).toMatch(new RegExp(`${field}: ${EPOCH_HEX}:`));
    }
  });

  it('is byte-identical when rebuilt later from a copy made later, in another order, with other mtimes', async () => {
    await nextSecond();
    const again = path.join(out, 'again.img');
    const r = await image(['--rootfs', rootB, '--output', again, '--quiet']);
    expect(r.code, r.stderr).toBe(EXIT.OK);
    expect(r.stderr).toBe('');
    expect(fs.readFileSync(again).equals(fs.readFileSync(img))).toBe(true);
    fs.rmSync(again);
  });

  it('--keep-owners keeps uid/gid; another tree gives another UUID and disk signature', async () => {
    const changed = path.join(tmp, 'rootfs-changed');
    makeTree(changed, { change: true });
    const kept = path.join(out, 'kept.img');
    const r = await image(['--rootfs', changed, '-o', kept, '--keep-owners', '--align', '4', '-r', '8', '--quiet']);
    expect(r.code, r.stderr).toBe(EXIT.OK);
    expect(fs.statSync(kept).size % (4 * MiB)).toBe(0);
    expect(uuidOf(r.stdout)).not.toBe(uuidOf(stdout));
    expect(sfdisk(kept).id).not.toBe(sfdisk(img).id);
    const part = extract(kept, MiB, path.join(tmp, 'kept.ext4'));
    expect(tool('e2fsck', ['-fn', part]).status).toBe(0);
    expect(execFileSync('debugfs', ['-R', 'stat /etc/owned', part], { encoding: 'utf8' })).toMatch(/User:\s+1000\s+Group:\s+1000\s/);
    const free = /Free blocks:\s+(\d+)/.exec(tool('dumpe2fs', ['-h', part]).out)![1]!;
    expect(Number(free) * 4096).toBeGreaterThanOrEqual(8 * MiB);
    fs.rmSync(kept);
  });
});

describe('osbuilder image: erofs', () => {
  const out = path.join(tmp, 'out-erofs');
  fs.mkdirSync(out);
  const img = path.join(out, 'kata.img');
  let stdout = '';

  beforeAll(async () => {
    const r = await image(['--rootfs', rootA, '--fs', 'erofs', '--align', '2', '-o', img]);
    expect(r.code, r.stderr).toBe(EXIT.OK);
    stdout = r.stdout;
  });

  it('partition at 1 MiB (sfdisk); a clean erofs with the tree, root-owned, times the epoch (fsck.erofs --extract)', () => {
    const size = fs.statSync(img).size;
    expect(size % (2 * MiB)).toBe(0);
    expect(sfdisk(img).partitions).toEqual([{ node: `${img}1`, start: 2048, size: (size - MiB) / 512, type: '83' }]);
    const part = extract(img, MiB, path.join(tmp, 'p.erofs'));
    const dir = path.join(tmp, 'x-erofs');
    const x = tool('fsck.erofs', [`--extract=${dir}`, part]);
    expect(x.status, x.out).toBe(0);
    expect(describeTree(dir, { owners: true, lossy: 'erofs' })).toEqual(
      Object.fromEntries(Object.entries(describeTree(rootA, { owners: true, lossy: 'erofs' })).map(([k, v]) => [k, v.replace(/ (1000|70000):\1 /, ' 0:0 ')])),
    );
    expect(fs.lstatSync(path.join(dir, 'etc/hostname')).mtimeMs).toBe(EPOCH * 1000);
    expect(fs.lstatSync(path.join(dir, 'usr/bin')).mtimeMs).toBe(EPOCH * 1000);
    const raw = erofsRaw(part, '/usr/bin/tool');
    expect(raw.mode).toBe(0o104755); // setuid kept in the image (the extractor drops it)
    expect(raw.buildTime).toBe(BigInt(EPOCH));
    const sb = tool('dump.erofs', ['-s', part]).out;
    expect(sb).toMatch(new RegExp(`Filesystem UUID:\\s+${uuidOf(stdout)}`));
    expect(tool('dump.erofs', ['--path=/etc/hostname', part]).out).toMatch(/Uid: 0\s+Gid: 0/);
  });

  it('is byte-identical when rebuilt later from the other copy', async () => {
    await nextSecond();
    const again = path.join(out, 'again.img');
    const r = await image(['--rootfs', rootB, '--fs', 'erofs', '--align', '2', '-o', again, '--quiet']);
    expect(r.code, r.stderr).toBe(EXIT.OK);
    expect(fs.readFileSync(again).equals(fs.readFileSync(img))).toBe(true);
    fs.rmSync(again);
  });

  it('--keep-owners: uids kept; an extended inode (uid over 65535) gets the epoch too; still byte-identical', async () => {
    const k1 = path.join(out, 'k1.img');
    const k2 = path.join(out, 'k2.img');
    for (const [root, file] of [[rootA, k1], [rootB, k2]] as const) {
      const r = await image(['--rootfs', root, '--fs', 'erofs', '--align', '2', '--keep-owners', '-o', file, '--quiet']);
      expect(r.code, r.stderr).toBe(EXIT.OK);
    }
    expect(fs.readFileSync(k1).equals(fs.readFileSync(k2))).toBe(true);
    const part = extract(k1, MiB, path.join(tmp, 'k.erofs'));
    const info = tool('dump.erofs', ['--path=/etc/big-uid', part]).out;
    expect(info).toMatch(/Inode size: 64\s/);
    expect(info).toMatch(/Uid: 70000\s+Gid: 70000/);
    const dir = path.join(tmp, 'x-keep');
    expect(tool('fsck.erofs', [`--extract=${dir}`, part]).status).toBe(0);
    expect(fs.lstatSync(path.join(dir, 'etc/big-uid')).mtimeMs).toBe(EPOCH * 1000);
    expect(fs.lstatSync(path.join(dir, 'etc/owned')).uid).toBe(1000);
    fs.rmSync(k1);
    fs.rmSync(k2);
  });
});

describe('osbuilder image: DAX header', () => {
  const out = path.join(tmp, 'out-dax');
  fs.mkdirSync(out);

  it("erofs: MBR #1 -> 3 MiB, NVDIMM_PFN_INFO at 4 KiB, MBR #2 at 2 MiB -> 1 MiB of the pmem device; no inline data", async () => {
    const img = path.join(out, 'dax.img');
    const r = await image(['--rootfs', rootA, '--fs', 'erofs', '--dax', '--align', '2', '-o', img, '--quiet']);
    expect(r.code, r.stderr).toBe(EXIT.OK);
    const size = fs.statSync(img).size;
    const sectors = (size - 3 * MiB) / 512;
    expect(sfdisk(img).partitions).toEqual([{ node: `${img}1`, start: 6144, size: sectors, type: '83' }]);
    const pmem = extract(img, 2 * MiB, path.join(tmp, 'pmem.img')); // what /dev/pmem0 shows
    expect(sfdisk(pmem).partitions).toEqual([{ node: `${pmem}1`, start: 2048, size: sectors, type: '83' }]);
    const b = Buffer.alloc(4096);
    const fd = fs.openSync(img, 'r');
    fs.readSync(fd, b, 0, 4096, 4096);
    fs.closeSync(fd);
    expect(b.subarray(0, 16).toString('latin1')).toBe('NVDIMM_PFN_INFO\0');
    expect(b.readUInt16LE(54)).toBe(2); // version_minor
    expect(b.readBigUInt64LE(56)).toBe(BigInt(2 * MiB)); // dataoff
    expect(b.readUInt32LE(72)).toBe(1); // PFN_MODE_RAM
    expect(b.readUInt32LE(84)).toBe(2 * MiB); // align
    const zeroed = Buffer.from(b);
    zeroed.fill(0, 4088);
    expect(b.readBigUInt64LE(4088)).toBe(fletcher(zeroed));
    const part = extract(img, 3 * MiB, path.join(tmp, 'dax.erofs'));
    expect(tool('fsck.erofs', [part]).status).toBe(0);
    expect(tool('dump.erofs', ['--path=/etc/hostname', part]).out).toMatch(/Layout: 0\s/); // flat plain: DAX-mappable
  });

  it('ext4: the filesystem at 3 MiB is clean; the image is a multiple of 128 MiB', async () => {
    const img = path.join(out, 'dax-ext4.img');
    const r = await image(['--rootfs', rootA, '--dax', '-o', img, '--quiet']);
    expect(r.code, r.stderr).toBe(EXIT.OK);
    expect(fs.statSync(img).size).toBe(128 * MiB);
    expect(sfdisk(img).partitions[0]!.start).toBe(6144);
    const part = extract(img, 3 * MiB, path.join(tmp, 'dax.ext4'));
    const fsck = tool('e2fsck', ['-fn', part]);
    expect(fsck.status, fsck.out).toBe(0);
    expect(tool('dumpe2fs', ['-h', part]).out).toMatch(/Block size:\s+4096/);
  });
});

/** Run the CLI (runCli + imageCommand, bundled) in a private mount namespace after `setup` (sh). */
let bundled: Promise<string> | undefined;
function cliBundle(): Promise<string> {
  bundled ??= (async () => {
    const outfile = path.join(REPO_ROOT, 'tmp', 'bundles', `osbuilder-image-cli-${process.pid}.mjs`);
    await build({
      stdin: {
        contents: `import { runCli } from './osbuilder/src/cli';
import { imageCommand } from './osbuilder/src/image/command';
process.exitCode = await runCli(process.argv.slice(2), [imageCommand], {
  stdout: (s) => void process.stdout.write(s), stderr: (s) => void process.stderr.write(s), env: process.env });
`,
        resolveDir: REPO_ROOT,
        sourcefile: 'osbuilder-image-cli.ts',
        loader: 'ts',
      },
      bundle: true,
      platform: 'node',
      format: 'esm',
      target: 'node20',
      outfile,
      logLevel: 'silent',
      banner: { js: "import { createRequire as __cr } from 'node:module'; const require = __cr(import.meta.url);" },
    });
    return outfile;
  })();
  return bundled;
}
afterAll(async () => {
  if (bundled) fs.rmSync(await bundled, { force: true });
});

async function inNamespace(setup: string, args: string[]): Promise<{ status: number | null; stderr: string }> {
  const cli = await cliBundle();
  const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', `${setup} && exec "$0" "$@"`, process.execPath, cli, 'image', ...args], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH, SOURCE_DATE_EPOCH: String(EPOCH) },
  });
  return { status: r.status, stderr: r.stderr };
}

describe('osbuilder image: errors (one line, exit code, nothing at --output)', () => {
  const out = path.join(tmp, 'out-err');
  fs.mkdirSync(out);
  const img = path.join(out, 'x.img');
  const oneLine = (s: string): void => expect(s.trim().split('\n'), s).toHaveLength(1);
  const nothingLeft = (): void => expect(fs.readdirSync(out)).toEqual([]);

  it('a rootfs that does not exist: 3', async () => {
    const r = await image(['--rootfs', path.join(tmp, 'nope'), '-o', img, '--quiet']);
    expect(r.code).toBe(EXIT.MISSING);
    expect(r.stderr).toMatch(/^osbuilder image: the rootfs .*nope does not exist/);
    oneLine(r.stderr);
    nothingLeft();
  });

  it('a rootfs without /sbin/init or /init (or a dangling one): 1', async () => {
    const noInit = path.join(tmp, 'no-init');
    fs.mkdirSync(path.join(noInit, 'sbin'), { recursive: true });
    fs.symlinkSync('/lib/systemd/systemd', path.join(noInit, 'sbin/init'));
    for (const fsType of ['ext4', 'erofs']) {
      const r = await image(['--rootfs', noInit, '--fs', fsType, '-o', img, '--quiet']);
      expect(r.code).toBe(EXIT.FAILED);
      expect(r.stderr).toMatch(/has no init/);
      oneLine(r.stderr);
      nothingLeft();
    }
  });

  it('bad command lines: 2', async () => {
    for (const args of [['--fs', 'xfs'], ['--align', 'x'], ['--dax', '--align', '1'], ['--frobnicate']]) {
      const r = await image(['--rootfs', rootA, '-o', img, '--quiet', ...args]);
      expect(r.code, args.join(' ')).toBe(EXIT.USAGE);
      oneLine(r.stderr);
    }
    nothingLeft();
  });

  it('an output inside the rootfs: 2, and the rootfs is left alone', async () => {
    const before = fs.readdirSync(rootA);
    const r = await image(['--rootfs', rootA, '-o', path.join(rootA, 'x.img'), '--quiet']);
    expect(r.code).toBe(EXIT.USAGE);
    expect(r.stderr).toMatch(/inside the rootfs/);
    expect(fs.readdirSync(rootA)).toEqual(before);
  });

  it('an output directory that does not exist: 3', async () => {
    const r = await image(['--rootfs', rootA, '-o', path.join(out, 'no/such/dir.img'), '--quiet']);
    expect(r.code).toBe(EXIT.MISSING);
    oneLine(r.stderr);
    nothingLeft();
  });

  it('mkfs.erofs not installed: 3, naming erofs-utils', async () => {
    const mkfs = execFileSync('sh', ['-c', 'command -v mkfs.erofs'], { encoding: 'utf8' }).trim();
    const r = await inNamespace(`mount --bind /dev/null ${fs.realpathSync(mkfs)}`, ['--rootfs', rootA, '--fs', 'erofs', '-o', img, '--quiet']);
    expect(r.status, r.stderr).toBe(EXIT.MISSING);
    expect(r.stderr).toMatch(/mkfs\.erofs is needed .* not installed \(apt-get install erofs-utils\)/);
    oneLine(r.stderr);
    nothingLeft();
  });

  it('mkfs.ext4 failing halfway: 1, with its message on one line; no partial image, no work files', async () => {
    const mkfs = execFileSync('sh', ['-c', 'command -v mkfs.ext4'], { encoding: 'utf8' }).trim();
    const fake = path.join(tmp, 'fake-mkfs');
    fs.writeFileSync(fake, '#!/bin/sh\necho "mkfs.ext4: something broke" >&2\necho "  at the end" >&2\nexit 7\n', { mode: 0o755 });
    const r = await inNamespace(`mount --bind ${fake} ${fs.realpathSync(mkfs)}`, ['--rootfs', rootA, '-o', img]);
    expect(r.status, r.stderr).toBe(EXIT.FAILED);
    const last = r.stderr.trim().split('\n').pop()!;
    expect(last).toBe('osbuilder image: mkfs.ext4 failed (exit 7): at the end');
    nothingLeft();
  });
});
