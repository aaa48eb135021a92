// osbuilder initrd's pieces: the newc encoder (checked by an independent reader), the streaming
// writer, the tree walk (order, inodes, hard links, clamped mtimes, added /dev/console and /init),
// init resolution inside the rootfs, and streamed compression errors.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import {
  HEADER_SIZE,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFIFO,
  S_IFLNK,
  S_IFREG,
  encodeEntry,
  encodeHeader,
  encodeTrailer,
  newcStream,
  pad4,
  type ArchiveEntry,
} from '../../osbuilder/src/initrd/cpio';
import { COMPRESSIONS, MAGIC, compressTo } from '../../osbuilder/src/initrd/compress';
import { devMajor, devMinor, findInit, planArchive, resolveInRoot, walkTree, type Plan } from '../../osbuilder/src/initrd/walk';
import { sourceDateEpoch } from '../../osbuilder/src/initrd/command';
import { EXIT, OsbuilderError } from '../../osbuilder/src/util/errors';
import { readNewc } from '../helpers/osbuilder-cpio-reader';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-osb-cpio-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function collect(gen: AsyncIterable<Buffer>): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for await (const c of gen) out.push(c);
  return out;
}

const base = { uid: 0, gid: 0, nlink: 1, mtime: 0, ino: 1 };

describe('newc encoder', () => {
  it('writes the header fields as 8 upper-case hex digits after the magic, then the name, NUL and padding', () => {
    const h = encodeHeader({ name: 'abc', ino: 0x1a, mode: S_IFREG | 0o644, uid: 0, gid: 0, nlink: 1, mtime: 0x5f5e1000, filesize: 5, devmajor: 0, devminor: 0, rdevmajor: 0, rdevminor: 0 });
    const expected =
      '070701' +
      '0000001A' + // ino
      '000081A4' + // mode
      '00000000' + // uid
      '00000000' + // gid
      '00000001' + // nlink
      '5F5E1000' + // mtime
      '00000005' + // filesize
      '00000000' + '00000000' + '00000000' + '00000000' + // dev, rdev
      '00000004' + // namesize (with the NUL)
      '00000000' + // check
      'abc\0' +
      '\0\0'; // 110 + 4 = 114 -> padded to 116
    expect(h.toString('latin1')).toBe(expected);
    expect(h.length).toBe(116);
  });

  it('pads header+name to a multiple of 4 for every name length (odd and even)', () => {
    for (let len = 1; len <= 12; len++) {
      const name = 'n'.repeat(len);
      const h = encodeHeader({ ...base, name, mode: S_IFREG | 0o600, filesize: 0 });
      expect(h.length % 4).toBe(0);
      const namesize = len + 1;
      expect(h.length).toBe(HEADER_SIZE + namesize + pad4(HEADER_SIZE + namesize));
      expect(h.length - (HEADER_SIZE + namesize)).toBeLessThan(4);
      // The reader finds the name, its NUL, and only zero padding.
      const [rec] = readNewc(Buffer.concat([h, encodeTrailer()]));
      expect(rec!.name).toBe(name);
      expect(rec!.namesize).toBe(namesize);
    }
    expect([0, 1, 2, 3, 4, 5].map(pad4)).toEqual([0, 3, 2, 1, 0, 3]);
  });

  it('encodes empty files, data of every length mod 4, symlinks, devices, fifos and the trailer; the reader decodes them back', () => {
    const entries: [ArchiveEntry, Buffer][] = [
      [{ ...base, ino: 1, name: '.', mode: S_IFDIR | 0o755, nlink: 3, filesize: 0 }, Buffer.alloc(0)],
      [{ ...base, ino: 2, name: 'empty', mode: S_IFREG | 0o644, filesize: 0 }, Buffer.alloc(0)],
      [{ ...base, ino: 3, name: 'one', mode: S_IFREG | 0o644, filesize: 1 }, Buffer.from('x')],
      [{ ...base, ino: 4, name: 'two', mode: S_IFREG | 0o644, filesize: 2 }, Buffer.from('xy')],
      [{ ...base, ino: 5, name: 'three', mode: S_IFREG | 0o755, filesize: 3 }, Buffer.from('xyz')],
      [{ ...base, ino: 6, name: 'four', mode: S_IFREG | 0o4755, filesize: 4 }, Buffer.from('wxyz')],
      [{ ...base, ino: 7, name: 'link', mode: S_IFLNK | 0o777, filesize: 9 }, Buffer.from('/bin/busy')],
      [{ ...base, ino: 8, name: 'dev/console', mode: S_IFCHR | 0o600, filesize: 0, rdevmajor: 5, rdevminor: 1 }, Buffer.alloc(0)],
      [{ ...base, ino: 9, name: 'dev/sda', mode: S_IFBLK | 0o660, filesize: 0, rdevmajor: 8, rdevminor: 0 }, Buffer.alloc(0)],
      [{ ...base, ino: 10, name: 'fifo', mode: S_IFIFO | 0o644, filesize: 0, mtime: 1234567890 }, Buffer.alloc(0)],
    ];
    const archive = Buffer.concat([...entries.map(([e, d]) => encodeEntry(e, d)), encodeTrailer()]);
    const recs = readNewc(archive);
    expect(recs).toHaveLength(entries.length + 1);
    entries.forEach(([e, d], i) => {
      const r = recs[i]!;
      expect(r.name).toBe(e.name);
      expect(r.ino).toBe(e.ino);
      expect(r.mode).toBe(e.mode);
      expect(r.nlink).toBe(e.nlink);
      expect(r.mtime).toBe(e.mtime);
      expect(r.filesize).toBe(d.length);
      expect(r.data.equals(d)).toBe(true);
      expect([r.rdevmajor, r.rdevminor]).toEqual([e.rdevmajor ?? 0, e.rdevminor ?? 0]);
      expect([r.uid, r.gid, r.devmajor, r.devminor, r.check]).toEqual([0, 0, 0, 0, 0]);
    });
    const t = recs.at(-1)!;
    expect(t).toMatchObject({ name: 'TRAILER!!!', ino: 0, mode: 0, nlink: 1, filesize: 0, namesize: 11 });
    // The trailer is the last thing in the archive, padded: 110 + 11 -> 124.
    expect(encodeTrailer().length).toBe(124);
    expect(archive.length - t.offset).toBe(124);
  });

  it('rejects what newc cannot hold: fields beyond 32 bits, empty names, NUL in names, data of the wrong size', () => {
    expect(() => encodeHeader({ ...base, name: 'big', mode: S_IFREG | 0o644, filesize: 2 ** 32 })).toThrow(/filesize .* 32 bits/);
    expect(() => encodeHeader({ ...base, name: 'neg', mode: S_IFREG | 0o644, filesize: 0, mtime: -1 })).toThrow(/mtime/);
    expect(() => encodeHeader({ ...base, name: '', mode: S_IFREG, filesize: 0 })).toThrow(/empty name/);
    expect(() => encodeHeader({ ...base, name: 'a\0b', mode: S_IFREG, filesize: 0 })).toThrow(/NUL/);
    expect(() => encodeHeader({ ...base, name: 'x'.repeat(4096), mode: S_IFREG, filesize: 0 })).toThrow(/longer than the kernel accepts/);
    expect(() => encodeEntry({ ...base, name: 'f', mode: S_IFREG, filesize: 3 }, Buffer.from('ab'))).toThrow(/2 bytes of data for filesize 3/);
  });

  it('keeps names as bytes (not necessarily UTF-8)', () => {
    const name = Buffer.from([0x66, 0xff, 0xfe, 0x2f, 0x61]); // "f\xff\xfe/a"
    const recs = readNewc(Buffer.concat([encodeEntry({ ...base, name, mode: S_IFREG | 0o644, filesize: 0 }), encodeTrailer()]));
    expect(recs[0]!.nameBytes.equals(name)).toBe(true);
  });
});

describe('newcStream', () => {
  it('streams entries with data sources, gathering small pieces into chunks, and ends with the trailer', async () => {
    const big = Buffer.alloc(300_000, 7);
    let pulls = 0;
    const entries: ArchiveEntry[] = [
      { ...base, ino: 1, name: 'small', mode: S_IFREG | 0o644, filesize: 5, data: Buffer.from('hello') },
      {
        ...base,
        ino: 2,
        name: 'big',
        mode: S_IFREG | 0o644,
        filesize: big.length + 3,
        data: async function* () {
          pulls++;
          yield big.subarray(0, 100_000);
          yield big.subarray(100_000);
          yield Buffer.from('end');
        },
      },
      ...Array.from({ length: 200 }, (_, i): ArchiveEntry => ({ ...base, ino: 3 + i, name: `d/${i}`, mode: S_IFREG | 0o644, filesize: 1, data: Buffer.from('z') })),
    ];
    const seen: [number, number][] = [];
    const chunks = await collect(newcStream(entries, { chunkSize: 4096, onEntry: (n, bytes) => seen.push([n, bytes]) }));
    const archive = Buffer.concat(chunks);
    const recs = readNewc(archive);
    expect(recs.map((r) => r.name)).toEqual(['small', 'big', ...Array.from({ length: 200 }, (_, i) => `d/${i}`), 'TRAILER!!!']);
    expect(recs[1]!.data.equals(Buffer.concat([big, Buffer.from('end')]))).toBe(true);
    expect(pulls).toBe(1);
    // 200 tiny entries do not become 200 chunks; no chunk is much bigger than the chunk size
    // unless it is a data chunk passed through as it is.
    expect(chunks.length).toBeLessThan(40);
    for (const c of chunks) expect(c.length <= 4096 + 200 || c.length === 100_000 || c.length === 200_000).toBe(true);
    expect(seen).toHaveLength(202);
    expect(seen.at(-1)![0]).toBe(202);
    expect(seen.at(-1)![1]).toBe(archive.length - encodeTrailer().length);
  });

  it('fails when a data source gives more or fewer bytes than the filesize', async () => {
    const short: ArchiveEntry = { ...base, name: 'f', mode: S_IFREG | 0o644, filesize: 10, data: async function* () { yield Buffer.from('abc'); } };
    await expect(collect(newcStream([short]))).rejects.toThrow(/gave 3 bytes for filesize 10/);
    const long: ArchiveEntry = { ...base, name: 'f', mode: S_IFREG | 0o644, filesize: 2, data: async function* () { yield Buffer.from('abc'); } };
    await expect(collect(newcStream([long]))).rejects.toThrow(/more than bytes for filesize 2/);
  });
});

describe('tree walk and archive plan', () => {
  function tree(name: string): string {
    const root = path.join(tmp, name);
    fs.mkdirSync(root, { recursive: true });
    return root;
  }
  const list = (p: Plan): ArchiveEntry[] => [...p.entries()];
  const names = (p: Plan): string[] => list(p).map((e) => Buffer.from(e.name as Buffer).toString('latin1'));

  it('sorts bytewise by path with parents before children, root "." first', () => {
    const root = tree('order');
    for (const d of ['a', 'a/b', 'B', 'a-b', 'a.b']) fs.mkdirSync(path.join(root, d), { recursive: true });
    for (const f of ['a/b/c', 'a/z', 'a-b/x', '-dash', 'Z']) fs.writeFileSync(path.join(root, f), '');
    fs.writeFileSync(Buffer.from(path.join(root, 'hi\xff'), 'latin1'), '');
    const nodes = walkTree(root);
    const rels = nodes.map((n) => n.rel.toString('latin1'));
    expect(rels).toEqual(['.', '-dash', 'B', 'Z', 'a', 'a-b', 'a-b/x', 'a.b', 'a/b', 'a/b/c', 'a/z', 'hi\xff']);
    for (let i = 2; i < nodes.length; i++) expect(Buffer.compare(nodes[i - 1]!.rel, nodes[i]!.rel)).toBe(-1);
  });

  it('assigns inodes 1, 2, 3... in archive order, uid/gid 0, clamps mtimes, counts directory links', () => {
    const root = tree('meta');
    fs.mkdirSync(path.join(root, 'dev'));
    fs.mkdirSync(path.join(root, 'etc/x'), { recursive: true });
    fs.mkdirSync(path.join(root, 'etc/y'));
    fs.writeFileSync(path.join(root, 'etc/old'), 'old');
    fs.writeFileSync(path.join(root, 'etc/new'), 'new');
    fs.chownSync(path.join(root, 'etc/new'), 1000, 1000);
    fs.utimesSync(path.join(root, 'etc/old'), 1000, 1000);
    fs.utimesSync(path.join(root, 'etc/new'), 4_000_000_000, 4_000_000_000);
    const plan = planArchive(walkTree(root), { epoch: 2000 });
    const byName = new Map(list(plan).map((e) => [Buffer.from(e.name as Buffer).toString(), e]));
    expect(list(plan).map((e) => e.ino)).toEqual(list(plan).map((_, i) => i + 1));
    for (const e of list(plan)) expect([e.uid, e.gid]).toEqual([0, 0]);
    expect(byName.get('etc/old')!.mtime).toBe(1000);
    expect(byName.get('etc/new')!.mtime).toBe(2000);
    expect(byName.get('etc')!.nlink).toBe(4); // 2 + x, y
    expect(byName.get('.')!.nlink).toBe(4); // 2 + dev, etc
    expect(byName.get('etc/x')!.nlink).toBe(2);
    expect(plan.added).toEqual(['dev/console']);
    expect(byName.get('dev/console')).toMatchObject({ mode: S_IFCHR | 0o600, rdevmajor: 5, rdevminor: 1, mtime: 2000, filesize: 0 });
    expect(names(plan)).toEqual(['.', 'dev', 'dev/console', 'etc', 'etc/new', 'etc/old', 'etc/x', 'etc/y']);
  });

  it('adds /dev (and /dev/console) when missing, keeps an existing /dev/console, and adds init -> /sbin/init on request', () => {
    const root = tree('console');
    fs.mkdirSync(path.join(root, 'sbin'));
    const p1 = planArchive(walkTree(root), { epoch: 5, addInitLink: true });
    expect(p1.added).toEqual(['dev', 'dev/console', 'init']);
    expect(names(p1)).toEqual(['.', 'dev', 'dev/console', 'init', 'sbin']);
    const init = list(p1)[3]!;
    expect(init).toMatchObject({ mode: S_IFLNK | 0o777, filesize: 10 });
    expect(init.data).toEqual(Buffer.from('/sbin/init'));
    expect(list(p1)[0]!.nlink).toBe(4); // ., dev, sbin
    fs.mkdirSync(path.join(root, 'dev'));
    fs.writeFileSync(path.join(root, 'dev/console'), '');
    const p2 = planArchive(walkTree(root), { epoch: 5 });
    expect(p2.added).toEqual([]);
    expect(list(p2).find((e) => e.name.toString() === 'dev/console')!.mode).toBe(S_IFREG | 0o644);
  });

  it('hard links within the tree share one inode, carry the link count, and the data goes with the last link', async () => {
    const root = tree('links');
    fs.writeFileSync(path.join(root, 'b'), 'shared');
    fs.linkSync(path.join(root, 'b'), path.join(root, 'a'));
    fs.linkSync(path.join(root, 'b'), path.join(root, 'c'));
    fs.writeFileSync(path.join(root, 'solo'), 'solo');
    fs.writeFileSync(path.join(tmp, 'outside'), 'o');
    fs.linkSync(path.join(tmp, 'outside'), path.join(root, 'linked-outside'));
    const plan = planArchive(walkTree(root), { epoch: 5, addConsole: false });
    const archive = Buffer.concat(await collect(newcStream(plan.entries())));
    const recs = readNewc(archive);
    const r = (n: string) => recs.find((x) => x.name === n)!;
    expect([r('a').ino, r('b').ino, r('c').ino]).toEqual([2, 2, 2]);
    expect([r('a').nlink, r('b').nlink, r('c').nlink]).toEqual([3, 3, 3]);
    expect([r('a').filesize, r('b').filesize, r('c').filesize]).toEqual([0, 0, 6]);
    expect(r('c').data.toString()).toBe('shared');
    // The next object gets the next number: inodes stay dense.
    expect(r('linked-outside')).toMatchObject({ ino: 3, nlink: 1, filesize: 1 });
    expect(r('solo')).toMatchObject({ ino: 4, nlink: 1 });
    expect(plan.files).toBe(3);
    expect(plan.dataBytes).toBe(6 + 1 + 4);
  });

  it('records symlink targets as data; splits Linux dev_t numbers like glibc', async () => {
    const root = tree('special');
    fs.symlinkSync('../target/with odd length', path.join(root, 'sym'));
    const rdev = (8n << 8n) | 17n; // 8:17
    expect([devMajor(rdev), devMinor(rdev)]).toEqual([8, 17]);
    const big = (259n << 8n) | (0x12345n & 0xffn) | ((0x12345n & ~0xffn) << 12n); // 259:0x12345
    expect([devMajor(big), devMinor(big)]).toEqual([259, 0x12345]);
    const plan = planArchive(walkTree(root), { epoch: 5, addConsole: false });
    const recs = readNewc(Buffer.concat(await collect(newcStream(plan.entries()))));
    expect(recs[1]).toMatchObject({ name: 'sym', mode: S_IFLNK | 0o777, filesize: 25 });
    expect(recs[1]!.data.toString()).toBe('../target/with odd length');
  });

  it('rejects a top-level TRAILER!!! file (it would end the archive early)', () => {
    const root = tree('trailer');
    fs.writeFileSync(path.join(root, 'TRAILER!!!'), '');
    expect(() => planArchive(walkTree(root), { epoch: 0 })).toThrow(/TRAILER!!!/);
  });

  it('reads file data lazily, while the archive streams, and fails when a file changed size', async () => {
    const root = tree('lazy');
    fs.writeFileSync(path.join(root, 'f'), 'abcdef');
    const plan = planArchive(walkTree(root), { epoch: 5, addConsole: false });
    fs.writeFileSync(path.join(root, 'f'), 'abc'); // shrank after the walk
    await expect(collect(newcStream(plan.entries()))).rejects.toThrow(/shrank while the initrd was being written/);
    fs.writeFileSync(path.join(root, 'f'), 'abcdefgh'); // grew
    await expect(collect(newcStream(plan.entries()))).rejects.toThrow(/grew while the initrd was being written/);
  });
});

describe('init inside the rootfs', () => {
  function rootfs(name: string): string {
    const root = path.join(tmp, 'init-' + name);
    fs.mkdirSync(root, { recursive: true });
    return root;
  }
  const exe = (p: string): void => {
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, '#!/bin/sh\n', { mode: 0o755 });
  };

  it('follows symlinks inside the rootfs: absolute targets start at the rootfs, merged /usr works, .. stops at the root', () => {
    const root = rootfs('merged');
    exe(path.join(root, 'usr/lib/systemd/systemd'));
    fs.mkdirSync(path.join(root, 'usr/sbin'), { recursive: true });
    fs.symlinkSync('usr/sbin', path.join(root, 'sbin'));
    fs.symlinkSync('/usr/lib/systemd/systemd', path.join(root, 'usr/sbin/init'));
    expect(findInit(root)).toEqual({ path: '/sbin/init', resolved: '/usr/lib/systemd/systemd' });
    expect(resolveInRoot(root, '/../../../usr/./lib/systemd/../systemd/systemd')).toMatchObject({ ok: true, rel: '/usr/lib/systemd/systemd' });
    fs.symlinkSync('../../../../../usr/sbin/init', path.join(root, 'init'));
    expect(findInit(root)).toEqual({ path: '/init', resolved: '/usr/lib/systemd/systemd' });
  });

  it('does not look outside: an absolute symlink to a host file missing from the rootfs is no init', () => {
    const root = rootfs('host');
    fs.mkdirSync(path.join(root, 'sbin'));
    expect(fs.existsSync('/bin/sh')).toBe(true);
    fs.symlinkSync('/bin/sh', path.join(root, 'sbin/init'));
    expect(() => findInit(root)).toThrow(/\/sbin\/init: \/bin does not exist/);
  });

  it('names what is wrong: missing, not executable, a directory, a symlink loop, a broken /init', () => {
    const err = (root: string): OsbuilderError => {
      try {
        findInit(root);
      } catch (e) {
        return e as OsbuilderError;
      }
      throw new Error('findInit did not throw');
    };
    const empty = rootfs('empty');
    expect(err(empty).message).toMatch(/has no usable init: \/init: \/init does not exist; \/sbin\/init: \/sbin does not exist/);
    expect(err(empty).exitCode).toBe(EXIT.FAILED);
    const noexec = rootfs('noexec');
    fs.mkdirSync(path.join(noexec, 'sbin'));
    fs.writeFileSync(path.join(noexec, 'sbin/init'), '', { mode: 0o644 });
    expect(err(noexec).message).toMatch(/\/sbin\/init is not executable/);
    const dir = rootfs('dir');
    fs.mkdirSync(path.join(dir, 'sbin/init'), { recursive: true });
    expect(err(dir).message).toMatch(/\/sbin\/init is not a regular file/);
    const loop = rootfs('loop');
    fs.symlinkSync('/init2', path.join(loop, 'init'));
    fs.symlinkSync('/init', path.join(loop, 'init2'));
    expect(err(loop).message).toMatch(/too many levels of symbolic links/);
    const broken = rootfs('broken');
    exe(path.join(broken, 'sbin/init'));
    fs.symlinkSync('/nowhere', path.join(broken, 'init'));
    expect(err(broken).message).toMatch(/\/init: \/nowhere does not exist$/);
    expect(err(broken).message).not.toMatch(/sbin/);
  });
});

describe('compression and epoch', () => {
  it('gzip output has no file name and mtime 0 in its header and round-trips', async () => {
    const out = path.join(tmp, 'g.gz');
    const data = Buffer.from('some cpio bytes '.repeat(1000));
    await compressTo((async function* () { yield data; })(), 'gzip', out);
    const gz = fs.readFileSync(out);
    expect(gz.subarray(0, 2)).toEqual(MAGIC.gzip);
    expect(gz[3]).toBe(0); // FLG: no FNAME, FCOMMENT, FEXTRA
    expect(gz.readUInt32LE(4)).toBe(0); // MTIME
    expect(zlib.gunzipSync(gz).equals(data)).toBe(true);
  });

  it('a failing source fails the compression for every format (the compressor is stopped, no hang)', async () => {
    for (const c of COMPRESSIONS) {
      const out = path.join(tmp, `fail.${c}`);
      const src = (async function* () {
        yield Buffer.alloc(200_000, 1);
        throw new OsbuilderError(`source broke (${c})`);
      })();
      await expect(compressTo(src, c, out)).rejects.toThrow(`source broke (${c})`);
    }
  });

  it('other errors of the archive or the output become one-line FAILED errors', async () => {
    const bad = newcStream([{ ...base, name: 'x', mode: S_IFREG | 0o644, filesize: 1, data: Buffer.alloc(0) }]);
    const err = await compressTo(bad, 'none', path.join(tmp, 'bad.cpio')).catch((e: unknown) => e as OsbuilderError);
    expect(err).toBeInstanceOf(OsbuilderError);
    expect(err!.exitCode).toBe(EXIT.FAILED);
    expect(err!.message).toMatch(/^writing .*bad\.cpio failed: cpio newc: x: the data source gave 0 bytes for filesize 1$/);
    const full = await compressTo((async function* () { yield Buffer.alloc(10); })(), 'gzip', '/dev/full').catch((e: unknown) => e as OsbuilderError);
    expect(full!.message).toBe('writing /dev/full failed: write: ENOSPC');
  });

  it('SOURCE_DATE_EPOCH: taken from the environment, validated; else the last commit time, else 0', () => {
    expect(sourceDateEpoch({ SOURCE_DATE_EPOCH: '1700000000' })).toBe(1700000000);
    expect(sourceDateEpoch({ SOURCE_DATE_EPOCH: '0' })).toBe(0);
    for (const bad of ['-1', '1.5', 'yesterday', '4294967296']) {
      try {
        sourceDateEpoch({ SOURCE_DATE_EPOCH: bad });
        throw new Error('accepted ' + bad);
      } catch (e) {
        expect((e as OsbuilderError).exitCode).toBe(EXIT.USAGE);
      }
    }
    const notRepo = fs.mkdtempSync(path.join(tmp, 'norepo-'));
    expect(sourceDateEpoch({}, notRepo)).toBe(0);
    const fromGit = sourceDateEpoch({}, path.dirname(new URL(import.meta.url).pathname));
    expect(fromGit).toBeGreaterThan(1_600_000_000);
  });
});
