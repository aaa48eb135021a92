import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { EM, ElfError, elfClosure, LibResolver, parseElf, parseLdSoCache, readElf } from '../../osbuilder/src/rootfs/elfdeps';
import { resolveInRoot } from '../../osbuilder/src/rootfs/fsroot';
import { completeLibraries } from '../../osbuilder/src/rootfs/libs';
import { makeSkeleton } from '../../osbuilder/src/rootfs/distro-minimal';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-elfdeps-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

interface ElfSpec {
  bits?: 32 | 64;
  le?: boolean;
  machine?: number;
  type?: number;
  interp?: string;
  needed?: string[];
  rpath?: string;
  runpath?: string;
  soname?: string;
}

/** A minimal ELF file: header, PT_LOAD (the whole file), PT_INTERP, PT_DYNAMIC, a string table. */
function makeElf(s: ElfSpec): Buffer {
  const bits = s.bits ?? 64;
  const le = s.le ?? true;
  const ehsize = bits === 64 ? 64 : 52;
  const phentsize = bits === 64 ? 56 : 32;
  const base = 0x400000;
  const strs: string[] = [''];
  const strOff = (x: string): number => {
    const off = Buffer.byteLength(strs.join('\0')) + 1;
    strs.push(x);
    return off;
  };
  const dyn: Array<[number, number]> = [];
  for (const n of s.needed ?? []) dyn.push([1, strOff(n)]);
  if (s.soname) dyn.push([14, strOff(s.soname)]);
  if (s.rpath) dyn.push([15, strOff(s.rpath)]);
  if (s.runpath) dyn.push([29, strOff(s.runpath)]);
  const strtab = Buffer.from(`${strs.join('\0')}\0`);
  const phnum = 2 + (s.interp ? 1 : 0);
  const interpOff = ehsize + phnum * phentsize;
  const interp = s.interp ? Buffer.from(`${s.interp}\0`) : Buffer.alloc(0);
  const strtabOff = interpOff + interp.length;
  const dynOff = Math.ceil((strtabOff + strtab.length) / 8) * 8;
  const entSize = bits === 64 ? 16 : 8;
  dyn.push([5, base + strtabOff], [10, strtab.length], [0, 0]);
  const total = dynOff + dyn.length * entSize;
  const b = Buffer.alloc(total);
  const u16 = (o: number, v: number): number => (le ? b.writeUInt16LE(v, o) : b.writeUInt16BE(v, o));
  const u32 = (o: number, v: number): number => (le ? b.writeUInt32LE(v, o) : b.writeUInt32BE(v, o));
  const addr = (o: number, v: number): unknown => (bits === 32 ? u32(o, v) : le ? b.writeBigUInt64LE(BigInt(v), o) : b.writeBigUInt64BE(BigInt(v), o));
  b.write('\x7fELF', 0, 'latin1');
  b[4] = bits === 64 ? 2 : 1;
  b[5] = le ? 1 : 2;
  b[6] = 1;
  u16(16, s.type ?? 3);
  u16(18, s.machine ?? EM.X86_64);
  u32(20, 1);
  addr(bits === 64 ? 32 : 28, ehsize);
  u16(bits === 64 ? 52 : 40, ehsize);
  u16(bits === 64 ? 54 : 42, phentsize);
  u16(bits === 64 ? 56 : 44, phnum);
  const ph = (i: number, type: number, off: number, size: number): void => {
    const p = ehsize + i * phentsize;
    u32(p, type);
    if (bits === 64) {
      addr(p + 8, off);
      addr(p + 16, base + off);
      addr(p + 32, size);
      addr(p + 40, size);
    } else {
      addr(p + 4, off);
      addr(p + 8, base + off);
      addr(p + 16, size);
      addr(p + 20, size);
    }
  };
  let i = 0;
  if (s.interp) ph(i++, 3, interpOff, interp.length);
  ph(i++, 1, 0, total);
  ph(i++, 2, dynOff, dyn.length * entSize);
  interp.copy(b, interpOff);
  strtab.copy(b, strtabOff);
  dyn.forEach(([t, v], k) => {
    addr(dynOff + k * entSize, t);
    addr(dynOff + k * entSize + entSize / 2, v);
  });
  return b;
}

/** A glibc new-format ld.so.cache with these entries, in this order. */
function makeCache(entries: Array<{ name: string; path: string; flags?: number; hwcap?: bigint }>): Buffer {
  const hdr = 48;
  const strBase = hdr + entries.length * 24;
  const strs: Buffer[] = [];
  let off = strBase;
  const str = (s: string): number => {
    const o = off;
    strs.push(Buffer.from(`${s}\0`));
    off += Buffer.byteLength(s) + 1;
    return o;
  };
  const b = Buffer.alloc(strBase);
  b.write('glibc-ld.so.cache1.1', 0, 'latin1');
  b.writeUInt32LE(entries.length, 20);
  entries.forEach((e, i) => {
    const p = hdr + i * 24;
    b.writeInt32LE(e.flags ?? 0x0303, p);
    b.writeUInt32LE(str(e.name), p + 4);
    b.writeUInt32LE(str(e.path), p + 8);
    b.writeBigUInt64LE(e.hwcap ?? 0n, p + 16);
  });
  b.writeUInt32LE(off - strBase, 24);
  return Buffer.concat([b, ...strs]);
}

function put(root: string, p: string, data: Buffer | string): void {
  const host = path.join(root, p);
  fs.mkdirSync(path.dirname(host), { recursive: true });
  fs.writeFileSync(host, data, { mode: 0o755 });
}

const X64 = process.arch === 'x64';

describe('ELF parsing', () => {
  it('reads interpreter, DT_NEEDED, rpath, runpath and soname (64-bit little-endian)', () => {
    const info = parseElf(makeElf({ interp: '/lib64/ld.so', needed: ['liba.so.1', 'libb.so.2'], rpath: '$ORIGIN/../lib:/opt/x', runpath: '/r', soname: 'libself.so.9' }))!;
    expect(info).toMatchObject({ bits: 64, littleEndian: true, machine: EM.X86_64, type: 3, interp: '/lib64/ld.so', dynamic: true });
    expect(info.needed).toEqual(['liba.so.1', 'libb.so.2']);
    expect(info.rpath).toEqual(['$ORIGIN/../lib', '/opt/x']);
    expect(info.runpath).toEqual(['/r']);
    expect(info.soname).toBe('libself.so.9');
  });

  it('reads 32-bit big-endian files', () => {
    const info = parseElf(makeElf({ bits: 32, le: false, machine: 8, needed: ['libc.so.6'], type: 2 }))!;
    expect(info).toMatchObject({ bits: 32, littleEndian: false, machine: 8, type: 2, needed: ['libc.so.6'], interp: undefined });
  });

  it('returns undefined for non-ELF data and throws on truncated ELF files', () => {
    expect(parseElf(Buffer.from('#!/bin/sh\necho hi\n'))).toBeUndefined();
    expect(parseElf(Buffer.alloc(0))).toBeUndefined();
    const elf = makeElf({ needed: ['liba.so'] });
    expect(() => parseElf(elf.subarray(0, 80))).toThrow(ElfError);
  });

  it('agrees with readelf on the build machine\'s crun', () => {
    const info = readElf('/usr/bin/crun')!;
    const out = execFileSync('readelf', ['-d', '-l', '/usr/bin/crun'], { encoding: 'utf8' });
    const needed = [...out.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
    expect(info.needed).toEqual(needed);
    expect(info.interp).toBe(/\[Requesting program interpreter: ([^\]]+)\]/.exec(out)![1]);
    expect(readElf('/etc/hostname')).toBeUndefined();
  });
});

describe('ld.so.cache', () => {
  it('parses the build machine\'s cache as ldconfig -p lists it', () => {
    const entries = parseLdSoCache(fs.readFileSync('/etc/ld.so.cache'));
    const out = execFileSync('ldconfig', ['-p'], { encoding: 'utf8' });
    expect(entries.length).toBe(Number(/^(\d+) libs found/.exec(out)![1]));
    const listed = [...out.matchAll(/^\s+(\S+) \(([^)]*)\) => (\S+)$/gm)].map((m) => `${m[1]} ${m[3]}`);
    expect(entries.map((e) => `${e.name} ${e.path}`)).toEqual(listed);
  });

  it('parses a synthetic cache, in order, with flags and hwcaps', () => {
    const e = parseLdSoCache(makeCache([{ name: 'liba.so.1', path: '/x/liba.so.1' }, { name: 'libb.so', path: '/y/libb.so', flags: 0x0003, hwcap: 5n }]));
    expect(e).toEqual([
      { name: 'liba.so.1', path: '/x/liba.so.1', flags: 0x0303, hwcap: 0n },
      { name: 'libb.so', path: '/y/libb.so', flags: 0x0003, hwcap: 5n },
    ]);
    expect(() => parseLdSoCache(Buffer.from('not a cache at all, really'))).toThrow(/not a glibc ld.so.cache/);
  });
});

describe('library resolution (ld.so order, inside a tree)', () => {
  const root = path.join(tmp, 'tree');
  const lib = (needed: string[] = [], extra: ElfSpec = {}): Buffer => makeElf({ needed, ...extra });
  // /usr/bin/app: RPATH $ORIGIN/../lib/app; needs liba (rpath), libb (default dirs), libc (cache).
  put(root, '/usr/bin/app', makeElf({ type: 2, interp: '/lib64/ld-test.so.2', needed: ['liba.so.1', 'libb.so.2', 'libc.so.6'], rpath: '$ORIGIN/../lib/app' }));
  put(root, '/usr/lib64/ld-test.so.2', lib([], { soname: 'ld-test.so.2' }));
  fs.symlinkSync('/usr/lib64', path.join(root, 'lib64')); // absolute: must resolve inside the tree
  put(root, '/usr/lib/app/liba.so.1', lib(['libd.so.4', 'ld-test.so.2']));
  put(root, '/opt/d/libd.so.4', lib());
  // A 32-bit libb in the first default directory is skipped for the 64-bit one after it.
  put(root, '/lib/x86_64-linux-gnu/libb.so.2', makeElf({ bits: 32, machine: EM.I386 }));
  put(root, '/usr/lib/x86_64-linux-gnu/libb.so.2', lib(['libd.so.4']));
  put(root, '/srv/cache-only/libc.so.6', lib());
  put(root, '/srv/hwcaps/libc.so.6', lib()); // listed first, but for a glibc-hwcaps level
  put(root, '/etc/ld.so.cache', makeCache([
    { name: 'libc.so.6', path: '/srv/hwcaps/libc.so.6', hwcap: 1n << 62n },
    { name: 'libc.so.6', path: '/srv/cache-only/libc.so.6' },
    { name: 'libd.so.4', path: '/opt/d/libd.so.4' },
  ]));

  it('follows the loader\'s order: rpath ($ORIGIN), cache (baseline entries), default dirs (right class only)', () => {
    const c = elfClosure(['/usr/bin/app'], { root });
    expect(c.missing).toEqual([]);
    expect(c.objects.map((o) => [o.name, o.path])).toEqual([
      ['root', '/usr/bin/app'],
      ['interp', '/lib64/ld-test.so.2'],
      ['liba.so.1', '/usr/lib/app/liba.so.1'],
      ['libb.so.2', '/usr/lib/x86_64-linux-gnu/libb.so.2'],
      ['libc.so.6', '/srv/cache-only/libc.so.6'],
      ['libd.so.4', '/opt/d/libd.so.4'],
    ]);
    // Everything was read inside the tree, the absolute /lib64 link included.
    for (const o of c.objects) expect(o.hostPath.startsWith(root)).toBe(true);
  });

  it('reports what cannot be found, with who needs it', () => {
    const r = path.join(tmp, 'tree-missing');
    put(r, '/bin/x', makeElf({ type: 2, interp: '/lib/ld-none.so', needed: ['libnope.so.1'] }));
    const c = elfClosure(['/bin/x', '/bin/absent'], { root: r, useCache: false });
    expect(c.missing).toEqual([
      { name: '/bin/absent', neededBy: '(input)' },
      { name: '/lib/ld-none.so', neededBy: '/bin/x' },
      { name: 'libnope.so.1', neededBy: '/bin/x' },
    ]);
  });

  it('DT_RPATH is inherited by what an object loads; DT_RUNPATH is not, and disables DT_RPATH', () => {
    const r = path.join(tmp, 'tree-runpath');
    put(r, '/opt/p/libdep.so', lib());
    put(r, '/usr/lib/x86_64-linux-gnu/libmid.so', lib(['libdep.so']));
    put(r, '/bin/rpath', makeElf({ type: 2, needed: ['libmid.so'], rpath: '/opt/p' }));
    put(r, '/bin/runpath', makeElf({ type: 2, needed: ['libmid.so'], runpath: '/opt/p' }));
    put(r, '/bin/both', makeElf({ type: 2, needed: ['libdep.so'], rpath: '/opt/p', runpath: '/nowhere' }));
    const res = new LibResolver({ root: r, useCache: false });
    expect(res.closure(['/bin/rpath']).missing).toEqual([]);
    expect(res.closure(['/bin/runpath']).missing).toEqual([{ name: 'libdep.so', neededBy: '/usr/lib/x86_64-linux-gnu/libmid.so' }]);
    expect(res.closure(['/bin/both']).missing).toEqual([{ name: 'libdep.so', neededBy: '/bin/both' }]);
  });

  it('resolveInRoot keeps absolute links, "..", and link loops inside the tree', () => {
    const r = path.join(tmp, 'tree-links');
    put(r, '/etc/passwd', 'tree\n');
    fs.symlinkSync('/', path.join(r, 'up'));
    fs.symlinkSync('../../../../..', path.join(r, 'dots'));
    fs.symlinkSync('loop2', path.join(r, 'loop1'));
    fs.symlinkSync('loop1', path.join(r, 'loop2'));
    expect(resolveInRoot(r, '/up/etc/passwd')).toBe(path.join(r, 'etc/passwd'));
    expect(resolveInRoot(r, '/dots/etc/passwd')).toBe(path.join(r, 'etc/passwd'));
    expect(resolveInRoot(r, '/../../etc/passwd')).toBe(path.join(r, 'etc/passwd'));
    expect(resolveInRoot(r, '/up', { followLast: false })).toBe(path.join(r, 'up'));
    expect(resolveInRoot(r, '/new/dir/file')).toBe(path.join(r, 'new/dir/file'));
    expect(() => resolveInRoot(r, '/loop1')).toThrow(/too many levels of symbolic links/);
  });
});

/** ldd's view: DT_NEEDED name -> path, and the interpreter. */
function ldd(file: string): { libs: Record<string, string>; interp?: string } {
  const out = execFileSync('ldd', [file], { encoding: 'utf8' });
  const libs: Record<string, string> = {};
  let interp: string | undefined;
  for (const line of out.split('\n')) {
    const m = /^\s*(\S+) => (\S+) \(0x[0-9a-f]+\)$/.exec(line);
    if (m) libs[m[1]!] = m[2]!;
    else if (/^\s*(\/\S+) \(0x[0-9a-f]+\)$/.test(line)) interp = line.trim().split(' ')[0];
  }
  return { libs, interp };
}

describe.runIf(X64 && fs.existsSync('/usr/bin/crun'))('closure of real executables, cross-checked with ldd', () => {
  const node = fs.realpathSync(process.execPath);
  for (const exe of ['/usr/bin/crun', node]) {
    it(`${exe}: the same libraries at the same paths as ldd`, () => {
      const c = elfClosure([exe]);
      expect(c.missing).toEqual([]);
      const ours = Object.fromEntries(c.objects.filter((o) => o.name !== 'root' && o.name !== 'interp').map((o) => [o.name, o.path]));
      const theirs = ldd(exe);
      expect(ours).toEqual(theirs.libs);
      expect(c.objects.find((o) => o.name === 'interp')?.path).toBe(theirs.interp);
      expect(Object.keys(ours).length).toBeGreaterThan(3);
    });
  }

  it('completeLibraries copies exactly that closure into an empty tree, once each, and the tree then resolves alone', () => {
    const r = path.join(tmp, 'complete');
    makeSkeleton(r, true);
    fs.mkdirSync(path.join(r, 'usr/bin'), { recursive: true });
    fs.copyFileSync('/usr/bin/crun', path.join(r, 'usr/bin/crun'));
    fs.copyFileSync(node, path.join(r, 'usr/bin/node'));
    const res = completeLibraries(r, ['/usr/bin/crun', '/usr/bin/node']);
    expect(res.missing).toEqual([]);
    const want = new Set([...Object.keys(ldd('/usr/bin/crun').libs), ...Object.keys(ldd(node).libs)]);
    // The interpreter once (libc's and node's DT_NEEDED on it are met by its soname), every library once.
    expect(res.copied.filter((p) => p.includes('ld-linux'))).toHaveLength(1);
    expect(new Set(res.copied.map((p) => path.basename(p)).filter((n) => !n.startsWith('ld-linux')))).toEqual(want);
    expect(new Set(res.copied).size).toBe(res.copied.length);
    const again = new LibResolver({ root: r }).closure(['/usr/bin/crun', '/usr/bin/node']);
    expect(again.missing).toEqual([]);
    for (const o of again.objects) expect(o.hostPath.startsWith(r)).toBe(true);
    // Nothing left to copy.
    expect(completeLibraries(r, ['/usr/bin/crun', '/usr/bin/node']).copied).toEqual([]);
  });
});
