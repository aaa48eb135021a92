import fs from 'node:fs';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Code } from '../../agent/src/rpc/status';
import { componentsBelow, tempName } from '../../agent/src/services/copyfile';
import { call, callObject, cleanupTemps, makeServices, tempDir } from './services-helpers';

const COPY = 'grpc.AgentService/CopyFile';
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
const S_IFCHR = 0o020000;

let base: string;
let root: string; // the shared containers dir (not created: CopyFile creates it)
let outside: string;
let dispatcher: ReturnType<typeof makeServices>['dispatcher'];

beforeEach(() => {
  base = tempDir('copyfile-');
  root = path.join(base, 'shared');
  outside = path.join(base, 'outside');
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, 'target'), 'precious');
  ({ dispatcher } = makeServices({ paths: { sharedContainers: root } }));
});
afterEach(cleanupTemps);

function req(p: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return { path: p, file_size: 0, file_mode: S_IFREG | 0o644, dir_mode: 0o750, uid: 0, gid: 0, offset: 0, data: Buffer.alloc(0), ...over };
}

/** Send `content` as one chunk. */
function put(p: string, content: string, over: Record<string, unknown> = {}) {
  const data = Buffer.from(content);
  return call(dispatcher, COPY, req(p, { file_size: data.length, data, ...over }));
}

const mode = (p: string) => fs.lstatSync(p).mode & 0o7777;
const outsideUntouched = () => {
  expect(fs.readdirSync(outside)).toEqual(['target']);
  expect(fs.readFileSync(path.join(outside, 'target'), 'utf8')).toBe('precious');
};

describe('CopyFile path rules', () => {
  it.each([
    ['an empty path', () => '', Code.INVALID_ARGUMENT, /path is empty/],
    ['a relative path', () => 'shared/x', Code.INVALID_ARGUMENT, /must be absolute/],
    ['a path with ..', () => `${root}/../outside/target`, Code.INVALID_ARGUMENT, /'\.\.' path components/],
    ['a path with .. that stays inside', () => `${root}/a/../b`, Code.INVALID_ARGUMENT, /'\.\.'/],
    ['a path outside the shared dir', () => `${outside}/target`, Code.PERMISSION_DENIED, /outside/],
    ['a sibling sharing the prefix', () => `${root}x/f`, Code.PERMISSION_DENIED, /outside/],
    ['the shared dir itself', () => `${root}/`, Code.INVALID_ARGUMENT, /itself/],
    ['a NUL byte', () => `${root}/a\0b`, Code.INVALID_ARGUMENT, /NUL/],
  ])('rejects %s', async (_what, p, code, msg) => {
    const r = await put(p(), 'data');
    expect(r.code).toBe(code);
    expect(r.message).toMatch(msg);
    outsideUntouched();
    expect(fs.existsSync(path.join(base, 'b'))).toBe(false);
  });

  it('normalises empty and "." components', async () => {
    const r = await put(`${root}//a/./b.txt`, 'x');
    expect(r.code).toBe(Code.OK);
    expect(fs.readFileSync(path.join(root, 'a/b.txt'), 'utf8')).toBe('x');
  });

  it('componentsBelow splits below the root', () => {
    expect(componentsBelow('/run/shared/', '/run/shared/c1/rootfs/etc/hosts')).toEqual(['c1', 'rootfs', 'etc', 'hosts']);
    expect(() => componentsBelow('/run/shared', '/run/sharedX/a')).toThrow(/outside/);
  });

  it('refuses a symlinked directory that escapes the shared dir', async () => {
    fs.mkdirSync(root);
    fs.symlinkSync(outside, path.join(root, 'evil'));
    const r = await put(`${root}/evil/pwned`, 'x');
    expect(r.code).toBe(Code.PERMISSION_DENIED);
    expect(r.message).toMatch(/evil is a symlink/);
    outsideUntouched();
  });

  it('refuses a symlinked directory deeper in the path, and one that points inside', async () => {
    fs.mkdirSync(path.join(root, 'c1/real'), { recursive: true });
    fs.symlinkSync('/', path.join(root, 'c1/up'));
    fs.symlinkSync('real', path.join(root, 'c1/alias'));
    const up = await put(`${root}/c1/up${outside}/target`, 'x');
    expect(up.code).toBe(Code.PERMISSION_DENIED);
    const alias = await put(`${root}/c1/alias/f`, 'x');
    expect(alias.code).toBe(Code.PERMISSION_DENIED);
    expect(fs.readdirSync(path.join(root, 'c1/real'))).toEqual([]);
    outsideUntouched();
  });

  it('refuses a parent that is a regular file', async () => {
    fs.mkdirSync(root);
    fs.writeFileSync(path.join(root, 'file'), '');
    const r = await put(`${root}/file/x`, 'x');
    expect(r.code).toBe(Code.FAILED_PRECONDITION);
    expect(r.message).toMatch(/not a directory/);
  });

  it('replaces a symlink at the final component instead of writing through it', async () => {
    fs.mkdirSync(root);
    const link = path.join(root, 'hosts');
    fs.symlinkSync(path.join(outside, 'target'), link);
    const r = await put(link, 'new content');
    expect(r.code).toBe(Code.OK);
    expect(fs.lstatSync(link).isFile()).toBe(true);
    expect(fs.readFileSync(link, 'utf8')).toBe('new content');
    outsideUntouched();
  });

  it('does not follow a symlink planted at the temp name', async () => {
    fs.mkdirSync(root);
    const tmp = path.join(root, tempName('f'));
    fs.symlinkSync(path.join(outside, 'target'), tmp);
    // A later chunk must not write through it ...
    const later = await call(dispatcher, COPY, req(`${root}/f`, { file_size: 4, offset: 2, data: Buffer.from('zz') }));
    expect(later.code).toBe(Code.PERMISSION_DENIED);
    // ... and a new upload replaces it.
    expect((await put(`${root}/f`, 'safe')).code).toBe(Code.OK);
    expect(fs.readFileSync(path.join(root, 'f'), 'utf8')).toBe('safe');
    expect(fs.existsSync(tmp)).toBe(false);
    outsideUntouched();
  });
});

describe('CopyFile regular files', () => {
  it('assembles chunks; the final name appears only when file_size is reached', async () => {
    const dest = path.join(root, 'c1', 'resolv.conf');
    const content = Buffer.from('nameserver 10.0.0.1\nsearch example.com\n');
    const chunks = [content.subarray(0, 7), content.subarray(7, 20), content.subarray(20)];
    let offset = 0;
    for (const [i, chunk] of chunks.entries()) {
      const r = await call(dispatcher, COPY, req(dest, { file_size: content.length, offset, data: chunk }));
      expect(r.code, r.message).toBe(Code.OK);
      offset += chunk.length;
      if (i < chunks.length - 1) {
        expect(fs.existsSync(dest)).toBe(false);
        expect(fs.existsSync(path.join(root, 'c1', tempName('resolv.conf')))).toBe(true);
      }
    }
    expect(fs.readFileSync(dest)).toEqual(content);
    expect(fs.readdirSync(path.join(root, 'c1'))).toEqual(['resolv.conf']);
  });

  it('keeps the old file in place until the new one is complete (atomic replace)', async () => {
    const dest = path.join(root, 'hostname');
    expect((await put(dest, 'old-name')).code).toBe(Code.OK);
    await call(dispatcher, COPY, req(dest, { file_size: 8, offset: 0, data: Buffer.from('new-') }));
    expect(fs.readFileSync(dest, 'utf8')).toBe('old-name');
    await call(dispatcher, COPY, req(dest, { file_size: 8, offset: 4, data: Buffer.from('name') }));
    expect(fs.readFileSync(dest, 'utf8')).toBe('new-name');
  });

  it('applies file_mode (incl. setgid), uid and gid; created parents get dir_mode', async () => {
    const dest = path.join(root, 'c1', 'vol', 'cfg', 'app.conf');
    const r = await put(dest, 'k=v', { file_mode: S_IFREG | 0o2750, dir_mode: 0o770, uid: 1234, gid: 5678 });
    expect(r.code, r.message).toBe(Code.OK);
    const st = fs.statSync(dest);
    expect([st.mode & 0o7777, st.uid, st.gid]).toEqual([0o2750, 1234, 5678]);
    for (const d of ['c1', 'c1/vol', 'c1/vol/cfg']) expect(mode(path.join(root, d)), d).toBe(0o770); // exactly, whatever the umask
    // As Kata: only the immediate parent is chowned.
    expect([fs.statSync(path.join(root, 'c1/vol/cfg')).uid, fs.statSync(path.join(root, 'c1/vol/cfg')).gid]).toEqual([1234, 5678]);
    expect(fs.statSync(path.join(root, 'c1/vol')).uid).toBe(0);
  });

  it('never chowns the shared dir itself; uid/gid -1 leave ownership alone', async () => {
    fs.mkdirSync(root, { mode: 0o755 });
    expect((await put(path.join(root, 'top'), 'x', { uid: 42, gid: 43 })).code).toBe(Code.OK);
    expect([fs.statSync(root).uid, mode(root)]).toEqual([0, 0o755]);
    expect(fs.statSync(path.join(root, 'top')).uid).toBe(42);
    expect((await put(path.join(root, 'top'), 'y', { uid: -1, gid: -1 })).code).toBe(Code.OK);
    expect(fs.statSync(path.join(root, 'top')).uid).toBe(0); // new file by root, not chowned
  });

  it('keeps existing parent directories and their modes', async () => {
    fs.mkdirSync(path.join(root, 'c1'), { recursive: true, mode: 0o755 });
    fs.chmodSync(path.join(root, 'c1'), 0o755);
    fs.mkdirSync(path.join(root, 'c1', 'd'), { mode: 0o700 });
    fs.chmodSync(path.join(root, 'c1', 'd'), 0o700);
    expect((await put(path.join(root, 'c1/d/f'), 'x', { dir_mode: 0o777 })).code).toBe(Code.OK);
    expect([mode(path.join(root, 'c1')), mode(path.join(root, 'c1/d'))]).toEqual([0o755, 0o700]);
  });

  it('writes an empty file in one request', async () => {
    const r = await call(dispatcher, COPY, req(path.join(root, 'empty'), { file_size: 0 }));
    expect(r.code).toBe(Code.OK);
    expect(fs.readFileSync(path.join(root, 'empty'))).toEqual(Buffer.alloc(0));
  });

  it('replaces a directory tree at the destination (as Kata)', async () => {
    fs.mkdirSync(path.join(root, 'x/sub'), { recursive: true });
    fs.writeFileSync(path.join(root, 'x/sub/f'), 'old');
    fs.symlinkSync(outside, path.join(root, 'x/escape'));
    expect((await put(path.join(root, 'x'), 'file now')).code).toBe(Code.OK);
    expect(fs.readFileSync(path.join(root, 'x'), 'utf8')).toBe('file now');
    outsideUntouched();
  });

  it('rejects a chunk beyond file_size, and a chunk without an upload in progress', async () => {
    const beyond = await call(dispatcher, COPY, req(path.join(root, 'f'), { file_size: 3, data: Buffer.from('four') }));
    expect(beyond.code).toBe(Code.INVALID_ARGUMENT);
    expect(beyond.message).toMatch(/beyond file_size 3/);
    const orphan = await call(dispatcher, COPY, req(path.join(root, 'f'), { file_size: 8, offset: 4, data: Buffer.from('tail') }));
    expect(orphan.code).toBe(Code.FAILED_PRECONDITION);
    expect(orphan.message).toMatch(/no upload in progress/);
    expect(fs.existsSync(path.join(root, 'f'))).toBe(false);
  });

  it.each([
    ['negative offset', { offset: -1 }],
    ['negative file_size', { file_size: -5 }],
    ['uid below -1', { uid: -2 }],
    ['a character device', { file_mode: S_IFCHR | 0o600 }],
  ])('rejects %s', async (_what, over) => {
    const r = await callObject(dispatcher, COPY, req(path.join(root, 'f'), over));
    expect(r.code).toBe(Code.INVALID_ARGUMENT);
    expect(fs.existsSync(path.join(root, 'f'))).toBe(false);
  });

  it('keeps interleaved uploads of different files apart (x.txt and x.json)', async () => {
    const a = Buffer.from('A'.repeat(10));
    const b = Buffer.from('B'.repeat(12));
    const pa = path.join(root, 'c', 'x.txt');
    const pb = path.join(root, 'c', 'x.json');
    const results = await Promise.all([
      call(dispatcher, COPY, req(pa, { file_size: 10, offset: 0, data: a.subarray(0, 5) })),
      call(dispatcher, COPY, req(pb, { file_size: 12, offset: 0, data: b.subarray(0, 6) })),
    ]);
    results.push(
      ...(await Promise.all([
        call(dispatcher, COPY, req(pb, { file_size: 12, offset: 6, data: b.subarray(6) })),
        call(dispatcher, COPY, req(pa, { file_size: 10, offset: 5, data: a.subarray(5) })),
      ])),
    );
    for (const r of results) expect(r.code, r.message).toBe(Code.OK);
    expect(fs.readFileSync(pa)).toEqual(a);
    expect(fs.readFileSync(pb)).toEqual(b);
    expect(fs.readdirSync(path.join(root, 'c')).sort()).toEqual(['x.json', 'x.txt']);
  });

  it('derives a bounded temp name for very long file names', () => {
    const long = 'n'.repeat(250);
    expect(Buffer.byteLength(tempName(long))).toBeLessThanOrEqual(255);
    expect(tempName(long)).not.toBe(tempName(`${'n'.repeat(249)}m`));
    expect(tempName('a.txt')).not.toBe(tempName('a.json'));
  });
});

describe('CopyFile directories and symlinks', () => {
  it('creates a directory with file_mode (sticky bit kept) and owner', async () => {
    const dir = path.join(root, 'c1', 'tmpdir');
    const r = await call(dispatcher, COPY, req(dir, { file_mode: S_IFDIR | 0o1777, uid: 7, gid: 8 }));
    expect(r.code, r.message).toBe(Code.OK);
    const st = fs.lstatSync(dir);
    expect([st.isDirectory(), st.mode & 0o7777, st.uid, st.gid]).toEqual([true, 0o1777, 7, 8]);
  });

  it('keeps an existing directory with its content, and replaces a file by a directory', async () => {
    fs.mkdirSync(path.join(root, 'd'), { recursive: true });
    fs.writeFileSync(path.join(root, 'd', 'keep'), 'k');
    fs.writeFileSync(path.join(root, 'wasfile'), 'f');
    expect((await call(dispatcher, COPY, req(path.join(root, 'd'), { file_mode: S_IFDIR | 0o700 }))).code).toBe(Code.OK);
    expect((await call(dispatcher, COPY, req(path.join(root, 'wasfile'), { file_mode: S_IFDIR | 0o755 }))).code).toBe(Code.OK);
    expect(fs.readFileSync(path.join(root, 'd', 'keep'), 'utf8')).toBe('k');
    expect(mode(path.join(root, 'd'))).toBe(0o700);
    expect(fs.lstatSync(path.join(root, 'wasfile')).isDirectory()).toBe(true);
  });

  it('replaces a symlink by a directory instead of following it', async () => {
    fs.mkdirSync(root);
    fs.symlinkSync(outside, path.join(root, 'd'));
    const r = await call(dispatcher, COPY, req(path.join(root, 'd'), { file_mode: S_IFDIR | 0o700 }));
    expect(r.code).toBe(Code.OK);
    expect(fs.lstatSync(path.join(root, 'd')).isDirectory()).toBe(true);
    expect(mode(outside)).not.toBe(0o700);
    outsideUntouched();
  });

  it('creates a symlink whose target is data (which may point anywhere), owned by uid/gid', async () => {
    const link = path.join(root, 'cm', '..data');
    const r = await call(dispatcher, COPY, req(link, { file_mode: S_IFLNK | 0o777, data: Buffer.from('..2024_01_01'), uid: 11, gid: 12 }));
    expect(r.code, r.message).toBe(Code.OK);
    expect(fs.readlinkSync(link)).toBe('..2024_01_01');
    expect([fs.lstatSync(link).uid, fs.lstatSync(link).gid]).toEqual([11, 12]);
    // Replacing a file by a symlink, and a symlink by another.
    fs.writeFileSync(path.join(root, 'cm', 'key'), 'old');
    expect((await call(dispatcher, COPY, req(path.join(root, 'cm', 'key'), { file_mode: S_IFLNK, data: Buffer.from('..data/key') }))).code).toBe(Code.OK);
    expect((await call(dispatcher, COPY, req(link, { file_mode: S_IFLNK, data: Buffer.from(outside) }))).code).toBe(Code.OK);
    expect(fs.readlinkSync(path.join(root, 'cm', 'key'))).toBe('..data/key');
    expect(fs.readlinkSync(link)).toBe(outside);
    expect(fs.readdirSync(path.join(root, 'cm')).sort()).toEqual(['..data', 'key']);
    outsideUntouched();
  });

  it('rejects a symlink without a target', async () => {
    const r = await call(dispatcher, COPY, req(path.join(root, 'l'), { file_mode: S_IFLNK | 0o777 }));
    expect(r.code).toBe(Code.INVALID_ARGUMENT);
    expect(r.message).toMatch(/without a target/);
  });
});
