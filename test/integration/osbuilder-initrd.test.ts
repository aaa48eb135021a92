// `osbuilder initrd` end to end: builds initrds from fixture trees through runCli, then checks
// them with independent tools: the real decompressors (lz4 -d, zstd -d, xz -d, gzip -d), GNU
// `cpio -t -v` and `cpio -i` (extracted and compared with the source tree), and a strict newc
// reader. Also: reproducibility (twice, after touching mtimes, from a tree created in another
// order), error cases (exit codes, one line, no output left), a missing compressor and a mount
// point inside the rootfs (in a private mount namespace).
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../osbuilder/src/cli';
import { initrdCommand } from '../../osbuilder/src/initrd/command';
import { COMPRESSIONS, MAGIC, type Compression } from '../../osbuilder/src/initrd/compress';
import { EXIT } from '../../osbuilder/src/util/errors';
import { humanBytes } from '../../osbuilder/src/util/progress';
import { REPO_ROOT, bundleEntry } from '../helpers/bundle';
import { readNewc } from '../helpers/osbuilder-cpio-reader';
import { rng } from '../helpers/prng';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-osb-initrd-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const EPOCH = 1_600_000_000;
const OLD = 1_500_000_000;

async function cli(args: string[], env: NodeJS.ProcessEnv = { SOURCE_DATE_EPOCH: String(EPOCH) }) {
  const r = { stdout: '', stderr: '', code: -1 as number };
  r.code = await runCli(['initrd', ...args], [initrdCommand], { stdout: (s) => void (r.stdout += s), stderr: (s) => void (r.stderr += s), env });
  return r;
}

const BIG = rng(5).bytes(1_500_000); // > the 1 MiB read chunk: several data chunks per file

/** A small rootfs with one of each kind of object; `reverse` creates everything in the opposite order. */
function makeTree(root: string, reverse = false): void {
  const steps: (() => void)[] = [];
  const file = (p: string, data: string | Buffer, mode = 0o644): void => void steps.push(() => {
    fs.mkdirSync(path.dirname(path.join(root, p)), { recursive: true });
    fs.writeFileSync(path.join(root, p), data);
    fs.chmodSync(path.join(root, p), mode);
  });
  const dir = (p: string, mode = 0o755): void => void steps.push(() => {
    fs.mkdirSync(path.join(root, p), { recursive: true });
    fs.chmodSync(path.join(root, p), mode);
  });
  dir('sbin');
  dir('usr/bin');
  dir('etc');
  dir('dev');
  dir('run');
  dir('root', 0o700);
  dir('tmp', 0o1777);
  file('sbin/init', '#!/bin/sh\nexec /bin/sh\n', 0o755);
  file('usr/bin/big', BIG, 0o755);
  file('usr/bin/su', 'setuid', 0o4755);
  file('etc/hostname', 'guest\n');
  file('etc/empty', '');
  for (const n of ['a', 'ab', 'abc', 'abcd', 'abcde']) file(`etc/odd/${n}`, n.repeat(n.length));
  file('etc/with space and ünïcode', 'x');
  file('root/secret', 'k', 0o600);
  steps.push(() => fs.symlinkSync('usr/bin', path.join(root, 'bin')));
  steps.push(() => fs.symlinkSync('/proc/self/mounts', path.join(root, 'etc/mtab'))); // dangling here: fine
  steps.push(() => execFileSync('mkfifo', ['-m', '0640', path.join(root, 'run/fifo')]));
  steps.push(() => execFileSync('mknod', ['-m', '0666', path.join(root, 'dev/null'), 'c', '1', '3']));
  steps.push(() => execFileSync('mknod', ['-m', '0660', path.join(root, 'dev/loop0'), 'b', '7', '0']));
  const dirs = 7; // the directory steps come first: entries are made in them
  const order = reverse ? [...steps.slice(0, dirs).reverse(), ...steps.slice(dirs).reverse()] : steps;
  for (const s of order) s();
  fs.linkSync(path.join(root, 'usr/bin/big'), path.join(root, 'usr/bin/big-link'));
  fs.utimesSync(path.join(root, 'etc/hostname'), OLD, OLD);
}

const tool = (file: string, args: string[], input?: Buffer): Buffer => execFileSync(file, args, { input, maxBuffer: 1 << 28 });

function decompress(c: Compression, data: Buffer): Buffer {
  switch (c) {
    case 'none':
      return data;
    case 'gzip':
      return tool('gzip', ['-d', '-c'], data);
    case 'lz4':
      return tool('lz4', ['-d', '-c'], data);
    case 'zstd':
      return tool('zstd', ['-d', '-c'], data);
    case 'xz':
      return tool('xz', ['-d', '-c'], data);
  }
}

/** Every path under root (relative), sorted. */
function listTree(root: string, rel = ''): string[] {
  const out: string[] = [];
  for (const name of fs.readdirSync(path.join(root, rel)).sort()) {
    const p = rel ? `${rel}/${name}` : name;
    out.push(p);
    const st = fs.lstatSync(path.join(root, p));
    if (st.isDirectory()) out.push(...listTree(root, p));
  }
  return out;
}

describe('osbuilder initrd', () => {
  const src = path.join(tmp, 'rootfs');
  const outs = new Map<Compression, Buffer>();

  beforeAll(async () => {
    makeTree(src);
    for (const c of COMPRESSIONS) {
      const out = path.join(tmp, `initrd.${c}`);
      const r = await cli(['--rootfs', src, '--compression', c, '--output', out]);
      expect(r.stderr).not.toMatch(/error/);
      expect(r.code).toBe(EXIT.OK);
      const size = fs.statSync(out).size;
      // The size on stdout, progress (files, bytes) on stderr.
      expect(r.stdout).toBe(`${out}: ${size} bytes (${humanBytes(size)}, ${c}, 30 entries)\n`);
      expect(r.stderr).toMatch(/\[1\/2\] scanning .*: done in [\d.]+ s \(28 entries, 12 files, 1\.4 MiB; adding \/dev\/console, \/init\)/);
      expect(r.stderr).toMatch(/\[2\/2\] writing .* \(.*\): done in [\d.]+ s \(30 entries, .* of cpio -> /);
      outs.set(c, fs.readFileSync(out));
    }
    // No temporary file is left beside the outputs.
    expect(fs.readdirSync(tmp).filter((n) => n.includes('.tmp-'))).toEqual([]);
  });

  it('writes each format with its magic: lz4 in the legacy frame format, xz with CRC32 checks, gzip without name or mtime', () => {
    for (const c of COMPRESSIONS) expect(outs.get(c)!.subarray(0, MAGIC[c].length)).toEqual(MAGIC[c]);
    expect(outs.get('lz4')!.readUInt32LE(0)).toBe(0x184c2102);
    const xz = outs.get('xz')!;
    expect(xz[7]).toBe(0x01); // stream flags: check type 1 = CRC32
    expect(tool('xz', ['--robot', '--list', '-v', path.join(tmp, 'initrd.xz')]).toString()).toMatch(/\tCRC32\t/);
    const gz = outs.get('gzip')!;
    expect(gz[3]).toBe(0);
    expect(gz.readUInt32LE(4)).toBe(0);
  });

  it('every compressed output decompresses (with the real tools) to exactly the uncompressed archive', () => {
    const raw = outs.get('none')!;
    for (const c of COMPRESSIONS) expect(decompress(c, outs.get(c)!).equals(raw), c).toBe(true);
    expect(zlib.gunzipSync(outs.get('gzip')!).equals(raw)).toBe(true);
  });

  it('is a well-formed newc archive: sorted, dense inodes, root-owned, clamped mtimes, the trailer last', () => {
    const recs = readNewc(outs.get('none')!);
    const names = recs.map((r) => r.name);
    expect(names.at(-1)).toBe('TRAILER!!!');
    const body = recs.slice(0, -1);
    expect(body[0]!.name).toBe('.');
    for (let i = 2; i < body.length; i++) expect(Buffer.compare(body[i - 1]!.nameBytes, body[i]!.nameBytes)).toBe(-1);
    const inos = [...new Set(body.map((r) => r.ino))];
    expect(inos).toEqual(inos.map((_, i) => i + 1));
    for (const r of body) {
      expect([r.uid, r.gid]).toEqual([0, 0]);
      expect(r.mtime).toBe(r.name === 'etc/hostname' ? OLD : EPOCH);
    }
    const by = new Map(body.map((r) => [r.name, r]));
    expect(by.get('dev/console')).toMatchObject({ mode: 0o020600, rdevmajor: 5, rdevminor: 1 });
    expect(by.get('init')!.data.toString()).toBe('/sbin/init');
    expect(by.get('dev/loop0')).toMatchObject({ mode: 0o060660, rdevmajor: 7, rdevminor: 0 });
  });

  it('GNU cpio lists it and extracts it to a copy of the source tree (+ /dev/console and /init)', () => {
    const listing = tool('cpio', ['-t', '-v', '--quiet'], decompress('lz4', outs.get('lz4')!)).toString().trim().split('\n');
    expect(listing).toHaveLength(30);
    const line = (name: string) => listing.find((l) => l.endsWith(` ${name}`) || l.includes(` ${name} -> `))!;
    expect(line('dev/console')).toMatch(/^crw------- +1 root +root +5, +1 /);
    expect(line('dev/loop0')).toMatch(/^brw-rw---- +1 root +root +7, +0 /);
    expect(line('run/fifo')).toMatch(/^prw-r----- /);
    expect(line('bin')).toMatch(/^lrwxrwxrwx .* bin -> usr\/bin$/);
    expect(line('usr/bin/su')).toMatch(/^-rwsr-xr-x /);
    expect(line('tmp')).toMatch(/^drwxrwxrwt /);

    const dest = path.join(tmp, 'extracted');
    fs.mkdirSync(dest);
    const r = spawnSync('cpio', ['-i', '-d', '-m', '--quiet', '--no-absolute-filenames', '-D', dest], { input: decompress('xz', outs.get('xz')!) });
    expect(r.stderr.toString()).toBe('');
    expect(r.status).toBe(0);

    expect(listTree(dest)).toEqual([...listTree(src), 'dev/console', 'init'].sort());
    for (const p of listTree(src)) {
      const a = fs.lstatSync(path.join(src, p));
      const b = fs.lstatSync(path.join(dest, p));
      expect(b.mode.toString(8), p).toBe(a.mode.toString(8));
      if (a.isFile()) expect(fs.readFileSync(path.join(dest, p)).equals(fs.readFileSync(path.join(src, p))), p).toBe(true);
      if (a.isSymbolicLink()) expect(fs.readlinkSync(path.join(dest, p))).toBe(fs.readlinkSync(path.join(src, p)));
      if (a.isCharacterDevice() || a.isBlockDevice()) expect(b.rdev).toBe(a.rdev);
      // (cpio -i -m sets a directory's mtime before it fills it: only other objects keep theirs.)
      if (!a.isSymbolicLink() && !a.isDirectory()) expect(b.mtimeMs / 1000, p).toBe(p === 'etc/hostname' ? OLD : EPOCH);
    }
    // The hard link is restored as a hard link.
    const big = fs.statSync(path.join(dest, 'usr/bin/big'));
    expect(fs.statSync(path.join(dest, 'usr/bin/big-link')).ino).toBe(big.ino);
    expect(big.nlink).toBe(2);
    expect(fs.readlinkSync(path.join(dest, 'init'))).toBe('/sbin/init');
    expect(fs.lstatSync(path.join(dest, 'dev/console')).rdev).toBe((5 << 8) | 1);
  });

  it('is reproducible: a second run, mtimes touched into the future, and a tree created in another order give the same bytes', async () => {
    const touchAll = (root: string, t: number): void => {
      for (const p of listTree(root)) if (p !== 'etc/hostname') fs.lutimesSync(path.join(root, p), t, t);
      fs.utimesSync(root, t, t);
    };
    const other = path.join(tmp, 'rootfs-reverse');
    makeTree(other, true);
    touchAll(src, Math.floor(Date.now() / 1000) + 1_000_000);
    for (const c of COMPRESSIONS) {
      for (const [i, tree] of [src, other].entries()) {
        const out = path.join(tmp, `again-${i}.${c}`);
        const r = await cli(['--rootfs', tree, '--compression', c, '-o', out, '--quiet']);
        expect(r.code).toBe(EXIT.OK);
        expect(r.stderr).toBe('');
        expect(fs.readFileSync(out).equals(outs.get(c)!), `${c} from ${tree}`).toBe(true);
      }
    }
    // A different SOURCE_DATE_EPOCH does change the archive (the clamp is really applied).
    const out = path.join(tmp, 'other-epoch');
    expect((await cli(['--rootfs', src, '--compression', 'none', '-o', out, '--quiet'], { SOURCE_DATE_EPOCH: String(EPOCH + 1) })).code).toBe(EXIT.OK);
    const recs = readNewc(fs.readFileSync(out));
    expect(recs.find((r) => r.name === 'etc/empty')!.mtime).toBe(EPOCH + 1);
  });

  it('takes the rootfs from ROOTFS_DIR (Kata) or the argument (here a symlink to it), defaults to lz4', async () => {
    const out = path.join(tmp, 'from-env.img');
    const r = await cli(['-o', out, '--quiet'], { SOURCE_DATE_EPOCH: String(EPOCH), ROOTFS_DIR: src });
    expect(r.code).toBe(EXIT.OK);
    expect(fs.readFileSync(out).equals(outs.get('lz4')!)).toBe(true);
    const out2 = path.join(tmp, 'from-arg.img');
    const link = path.join(tmp, 'rootfs-link');
    fs.symlinkSync(src, link);
    expect((await cli([link, '-o', out2, '--quiet'])).code).toBe(EXIT.OK);
    expect(fs.readFileSync(out2).equals(outs.get('lz4')!)).toBe(true);
  });
});

describe('osbuilder initrd errors', () => {
  const errDir = path.join(tmp, 'errors');
  beforeAll(() => fs.mkdirSync(errDir, { recursive: true }));

  async function fails(args: string[], code: number, msg: RegExp, env?: NodeJS.ProcessEnv): Promise<void> {
    const out = path.join(errDir, 'out.img');
    const r = await cli([...args, '-o', out, '--quiet'], env);
    expect(r.code).toBe(code);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/^osbuilder initrd: [^\n]*\n$/);
    expect(r.stderr).toMatch(msg);
    expect(fs.readdirSync(errDir)).toEqual([]); // no output, no temporary
  }

  it('a missing rootfs is MISSING (3); a file as rootfs is USAGE (2); no rootfs at all is USAGE', async () => {
    await fails(['--rootfs', path.join(tmp, 'nope')], EXIT.MISSING, /the rootfs .*nope does not exist/);
    const f = path.join(tmp, 'a-file');
    fs.writeFileSync(f, '');
    await fails(['--rootfs', f], EXIT.USAGE, /is not a directory/);
    await fails([], EXIT.USAGE, /no rootfs given \(use --rootfs DIR or set ROOTFS_DIR\)/, {});
  });

  it('a rootfs without a usable init fails (1), also when /sbin/init points at a host file, and an existing output is kept', async () => {
    const noInit = path.join(tmp, 'no-init');
    fs.mkdirSync(path.join(noInit, 'etc'), { recursive: true });
    await fails(['--rootfs', noInit], EXIT.FAILED, /has no usable init: \/init: \/init does not exist; \/sbin\/init: \/sbin does not exist/);
    fs.mkdirSync(path.join(noInit, 'sbin'));
    fs.symlinkSync('/bin/sh', path.join(noInit, 'sbin/init'));
    await fails(['--rootfs', noInit], EXIT.FAILED, /\/sbin\/init: \/bin does not exist/);
    const keep = path.join(tmp, 'keep.img');
    fs.writeFileSync(keep, 'previous');
    const r = await cli(['--rootfs', noInit, '-o', keep]);
    expect(r.code).toBe(EXIT.FAILED);
    expect(fs.readFileSync(keep, 'utf8')).toBe('previous');
  });

  it('bad options are USAGE (2): unknown compression, unknown option, a bad SOURCE_DATE_EPOCH; a missing output directory is MISSING', async () => {
    const src = path.join(tmp, 'rootfs');
    await fails(['--rootfs', src, '--compression', 'bzip2'], EXIT.USAGE, /unknown compression "bzip2" \(one of none, gzip, lz4, zstd, xz\)/);
    await fails(['--rootfs', src, '--level', '9'], EXIT.USAGE, /--level/);
    await fails(['--rootfs', src], EXIT.USAGE, /SOURCE_DATE_EPOCH="soon"/, { SOURCE_DATE_EPOCH: 'soon' });
    const asDir = await cli(['--rootfs', src, '-o', errDir, '--quiet']);
    expect(asDir.code).toBe(EXIT.USAGE);
    expect(asDir.stderr).toBe(`osbuilder initrd: the output ${errDir} is a directory (give a file name to --output)\n`);
    const r = await cli(['--rootfs', src, '-o', path.join(tmp, 'no/such/dir/x.img')]);
    expect(r.code).toBe(EXIT.MISSING);
    expect(r.stderr).toMatch(/^osbuilder initrd: the output directory .* does not exist/);
  });
});

describe('osbuilder initrd in a private mount namespace', () => {
  let bundle = '';
  beforeAll(async () => {
    const entry = path.join(REPO_ROOT, 'tmp', 'osbuilder-initrd-cli.ts');
    fs.mkdirSync(path.dirname(entry), { recursive: true });
    fs.writeFileSync(
      entry,
      `import { runCli } from '../osbuilder/src/cli';
import { initrdCommand } from '../osbuilder/src/initrd/command';
process.exitCode = await runCli(process.argv.slice(2), [initrdCommand], {
  stdout: (s) => void process.stdout.write(s), stderr: (s) => void process.stderr.write(s), env: process.env });
`,
    );
    bundle = await bundleEntry(entry);
  });

  /** Run `script` (sh) in a new mount namespace; $NODE and $CLI are set. */
  function inNamespace(script: string) {
    const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-ec', script], {
      env: { ...process.env, NODE: process.execPath, CLI: bundle, SOURCE_DATE_EPOCH: String(EPOCH) },
      encoding: 'utf8',
    });
    return { code: r.status, stdout: r.stdout, stderr: r.stderr };
  }

  it('a missing compressor is MISSING (3), naming the package to install, and leaves no output', () => {
    const out = path.join(tmp, 'ns-lz4.img');
    const lz4 = execFileSync('sh', ['-c', 'command -v lz4'], { encoding: 'utf8' }).trim();
    const r = inNamespace(`mount --bind /dev/null ${lz4}; exec "$NODE" "$CLI" initrd --rootfs ${path.join(tmp, 'rootfs')} -o ${out}`);
    expect(r.code).toBe(EXIT.MISSING);
    expect(r.stderr).toBe('osbuilder initrd: lz4 is needed for --compression lz4 but is not installed (apt-get install lz4)\n');
    expect(fs.existsSync(out)).toBe(false);
  });

  it('does not descend into a file system mounted inside the rootfs', () => {
    const root = path.join(tmp, 'with-mount');
    fs.mkdirSync(path.join(root, 'proc'), { recursive: true });
    fs.mkdirSync(path.join(root, 'sbin'));
    fs.writeFileSync(path.join(root, 'sbin/init'), '', { mode: 0o755 });
    const out = path.join(tmp, 'ns-mount.img');
    const r = inNamespace(`mount -t tmpfs none ${root}/proc; echo x > ${root}/proc/inside; exec "$NODE" "$CLI" initrd --rootfs ${root} --compression none -o ${out} --quiet`);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(EXIT.OK);
    const names = readNewc(fs.readFileSync(out)).map((x) => x.name);
    expect(names).toContain('proc');
    expect(names).not.toContain('proc/inside');
    expect(fs.existsSync(path.join(root, 'proc/inside'))).toBe(false); // the mount was private
  });
});
