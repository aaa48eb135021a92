// osbuilder pack, pure parts: the ELF injection of a SEA blob (on synthetic ELF files), the SEA
// blob format, the koffi loader that replaces koffi's addon lookup, commit stamping, and the
// pack verb's command line.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import vm from 'node:vm';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../../osbuilder/src/cli';
import { debugSections } from '../../osbuilder/src/pack/agent';
import { koffiLoaderSource, KOFFI_ADDON } from '../../osbuilder/src/pack/bundle';
import { findRepoRoot, packCommand } from '../../osbuilder/src/pack/command';
import {
  decodeNotes,
  ElfError,
  encodeNote,
  ET,
  findSeaBlob,
  injectSeaBlob,
  machineArch,
  PT,
  readElfHeader,
  readInterpreter,
  readNotes,
  readProgramHeaders,
  readSectionHeaders,
  SEA_FUSE,
  seaFuseState,
  type ProgramHeader,
} from '../../osbuilder/src/pack/elf';
import { cleanNodeEnv, parseSeaBlob, SEA_FLAGS, SEA_MAGIC, seaConfig } from '../../osbuilder/src/pack/sea';
import { describeCommit, koffiAddonLocation } from '../../osbuilder/src/pack/stamp';
import { EXIT } from '../../osbuilder/src/util/errors';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-osb-pack-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

// ---------------------------------------------------------------------------------------------
// A synthetic ELF64 executable shaped like node's: PHDR, INTERP, two LOADs, DYNAMIC, NOTE
// (build id + ABI tag), GNU_STACK; the SEA fuse in its data; section headers (.text, .debug_info,
// .shstrtab) at the end.
// ---------------------------------------------------------------------------------------------

const BASE = 0x400000;
const BUILD_ID = Buffer.from('00112233445566778899aabbccddeeff01234567', 'hex');
const ABI_TAG = Buffer.from([0, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0]);

function ph(type: number, offset: number, size: number, o: Partial<ProgramHeader> = {}): ProgramHeader {
  return { type, flags: 4, offset, vaddr: BASE + offset, paddr: BASE + offset, filesz: size, memsz: size, align: 1, ...o };
}

function writePh(buf: Buffer, off: number, p: ProgramHeader): void {
  buf.writeUInt32LE(p.type, off);
  buf.writeUInt32LE(p.flags, off + 4);
  for (const [i, v] of [p.offset, p.vaddr, p.paddr, p.filesz, p.memsz, p.align].entries()) buf.writeBigUInt64LE(BigInt(v), off + 8 + i * 8);
}

function fakeNode(o: { type?: number; fuse?: '0' | '1' | 'none' | 'twice'; phdr?: boolean; interp?: string; loadAlign?: number } = {}): Buffer {
  const f = Buffer.alloc(0x3000);
  f.writeUInt32BE(0x7f454c46, 0);
  f[4] = 2; // 64-bit
  f[5] = 1; // little endian
  f[6] = 1;
  f.writeUInt16LE(o.type ?? ET.EXEC, 16);
  f.writeUInt16LE(62, 18); // x86-64
  f.writeBigUInt64LE(64n, 32); // e_phoff
  f.writeUInt16LE(56, 54);
  const interp = Buffer.from(`${o.interp ?? '/lib64/ld-linux-x86-64.so.2'}\0`);
  const notes = Buffer.concat([encodeNote({ name: 'GNU', type: 3, desc: BUILD_ID }), encodeNote({ name: 'GNU', type: 1, desc: ABI_TAG })]);
  const phnum = 7;
  const interpAt = 64 + phnum * 56;
  const notesAt = interpAt + interp.length + ((4 - ((interpAt + interp.length) % 4)) % 4);
  interp.copy(f, interpAt);
  notes.copy(f, notesAt);
  const fuseText = (v: string): Buffer => Buffer.from(`${SEA_FUSE}:${v}\0`);
  if (o.fuse !== 'none') fuseText(o.fuse === '1' ? '1' : '0').copy(f, 0x1100);
  if (o.fuse === 'twice') fuseText('0').copy(f, 0x1200);
  const table: ProgramHeader[] = [
    o.phdr === false ? ph(PT.NULL, 0, 0) : ph(PT.PHDR, 64, phnum * 56, { align: 8 }),
    ph(PT.INTERP, interpAt, interp.length),
    ph(PT.LOAD, 0, 0x1000, { align: o.loadAlign ?? 0x1000 }),
    // RW segment with a .bss: memsz > filesz.
    ph(PT.LOAD, 0x1000, 0x800, { flags: 6, memsz: 0x1800, vaddr: BASE + 0x11000, paddr: BASE + 0x11000, align: o.loadAlign ?? 0x1000 }),
    ph(PT.DYNAMIC, 0x1000, 0x100, { flags: 6, vaddr: BASE + 0x11000, paddr: BASE + 0x11000, align: 8 }),
    ph(PT.NOTE, notesAt, notes.length, { align: 4 }),
    { type: 0x6474e551, flags: 6, offset: 0, vaddr: 0, paddr: 0, filesz: 0, memsz: 0, align: 16 }, // GNU_STACK
  ];
  f.writeUInt16LE(table.length, 56);
  table.forEach((p, i) => writePh(f, 64 + i * 56, p));
  // Section headers at 0x2000: null, .text, .debug_info, .shstrtab.
  const shstr = Buffer.from('\0.text\0.debug_info\0.shstrtab\0');
  shstr.copy(f, 0x1f00);
  const sh = (i: number, name: number, type: number, off: number, size: number): void => {
    const at = 0x2000 + i * 64;
    f.writeUInt32LE(name, at);
    f.writeUInt32LE(type, at + 4);
    f.writeBigUInt64LE(BigInt(off), at + 24);
    f.writeBigUInt64LE(BigInt(size), at + 32);
  };
  sh(1, 1, 1, 0x800, 0x100);
  sh(2, 7, 1, 0x1e00, 0x10);
  sh(3, 19, 3, 0x1f00, shstr.length);
  f.writeBigUInt64LE(0x2000n, 40); // e_shoff
  f.writeUInt16LE(64, 58);
  f.writeUInt16LE(4, 60);
  f.writeUInt16LE(3, 62);
  return f;
}

const BLOB = Buffer.from('a SEA blob of 27 bytes here');

describe('ELF: reading', () => {
  it('reads the header, program headers, sections, notes and interpreter of an executable', () => {
    const f = fakeNode();
    const h = readElfHeader(f);
    expect(h).toMatchObject({ type: ET.EXEC, machine: 62, phoff: 64, phnum: 7, shnum: 4 });
    expect(machineArch(h.machine)).toBe('x64');
    expect(machineArch(183)).toBe('arm64');
    expect(readProgramHeaders(f).map((p) => p.type)).toEqual([PT.PHDR, PT.INTERP, PT.LOAD, PT.LOAD, PT.DYNAMIC, PT.NOTE, 0x6474e551]);
    expect(readSectionHeaders(f).map((s) => s.name)).toEqual(['', '.text', '.debug_info', '.shstrtab']);
    expect(debugSections(f)).toEqual(['.debug_info']);
    expect(readNotes(f)).toEqual([
      { name: 'GNU', type: 3, desc: BUILD_ID },
      { name: 'GNU', type: 1, desc: ABI_TAG },
    ]);
    expect(readInterpreter(f)).toBe('/lib64/ld-linux-x86-64.so.2');
    expect(seaFuseState(f)).toBe('unset');
    expect(findSeaBlob(f)).toBeUndefined();
  });

  it('rejects what is not a 64-bit little-endian ELF file', () => {
    expect(() => readElfHeader(Buffer.from('#!/bin/sh\necho hi\n'.padEnd(80)))).toThrow(/not an ELF file/);
    const f = fakeNode();
    f[4] = 1;
    expect(() => readElfHeader(f)).toThrow(/not a 64-bit/);
    const g = fakeNode();
    g.writeUInt16LE(200, 56); // phnum past the end of the file
    expect(() => readElfHeader(g.subarray(0, 0x200))).toThrow(/truncated program header table/);
  });

  it('notes round-trip, names and descriptors padded to 4 bytes', () => {
    const n = { name: 'NODE_SEA_BLOB', type: 0, desc: Buffer.from('12345') };
    const enc = encodeNote(n);
    expect(enc.length).toBe(12 + 16 + 8);
    expect(enc.readUInt32LE(0)).toBe(14); // name size counts the NUL
    expect(enc.readUInt32LE(4)).toBe(5);
    expect(decodeNotes(Buffer.concat([enc, encodeNote({ name: 'GNU', type: 3, desc: BUILD_ID })]))).toEqual([n, { name: 'GNU', type: 3, desc: BUILD_ID }]);
    expect(() => decodeNotes(enc.subarray(0, 20))).toThrow(/truncated note/);
  });
});

describe('ELF: injecting a SEA blob', () => {
  it('adds a mapped PT_NOTE with the old notes and NODE_SEA_BLOB, in place of PT_PHDR and the old PT_NOTE; flips the fuse', () => {
    const f = fakeNode();
    const before = Buffer.from(f);
    const out = injectSeaBlob(f, BLOB);
    expect(f.equals(before)).toBe(true); // input untouched

    const phs = readProgramHeaders(out);
    expect(phs).toHaveLength(7); // same count: the table did not move
    expect(phs.map((p) => p.type)).toEqual([PT.INTERP, PT.LOAD, PT.LOAD, PT.LOAD, PT.DYNAMIC, PT.NOTE, 0x6474e551]);
    const loads = phs.filter((p) => p.type === PT.LOAD);
    // PT_LOAD entries in ascending address order, the new one last, above everything (bss included).
    expect(loads.map((p) => p.vaddr)).toEqual([...loads.map((p) => p.vaddr)].sort((a, b) => a - b));
    const load = loads[2]!;
    const note = phs.find((p) => p.type === PT.NOTE)!;
    expect(load.vaddr).toBeGreaterThanOrEqual(BASE + 0x11000 + 0x1800);
    expect(load.vaddr % 0x1000).toBe(load.offset % 0x1000);
    expect(load.offset).toBe(0x3000); // the end of the file, page-aligned
    expect(load.flags).toBe(4); // read-only
    // The note segment is exactly the new loaded region.
    expect(note).toMatchObject({ offset: load.offset, vaddr: load.vaddr, filesz: load.filesz, memsz: load.memsz, align: 4 });
    expect(out.length).toBe(load.offset + load.filesz);
    // Old notes first (build id kept), then the blob.
    const notes = readNotes(out);
    expect(notes.map((n) => n.name)).toEqual(['GNU', 'GNU', 'NODE_SEA_BLOB']);
    expect(notes[0]!.desc).toEqual(BUILD_ID);
    expect(findSeaBlob(out)).toEqual(BLOB);
    // Fuse set; nothing else before the appended region changed except the program header table.
    expect(seaFuseState(out)).toBe('set');
    const fuseAt = out.indexOf(`${SEA_FUSE}:`);
    const diff: number[] = [];
    for (let i = 0; i < f.length; i++) if (out[i] !== f[i]) diff.push(i);
    expect(diff.every((i) => (i >= 64 && i < 64 + 7 * 56) || i === fuseAt + SEA_FUSE.length + 1)).toBe(true);
    // Interpreter and section headers still readable.
    expect(readInterpreter(out)).toBe('/lib64/ld-linux-x86-64.so.2');
    expect(readSectionHeaders(out).map((s) => s.name)).toEqual(['', '.text', '.debug_info', '.shstrtab']);
  });

  it('aligns the new segment as the binary segments are (64 KiB on some arm64 builds)', () => {
    const load = readProgramHeaders(injectSeaBlob(fakeNode({ loadAlign: 0x10000 }), BLOB)).filter((p) => p.type === PT.LOAD)[2]!;
    expect(load.align).toBe(0x10000);
    expect(load.offset % 0x10000).toBe(0);
    expect(load.vaddr % 0x10000).toBe(0);
    expect(load.vaddr).toBeGreaterThanOrEqual(BASE + 0x11000 + 0x1800);
  });

  it('is deterministic', () => {
    expect(injectSeaBlob(fakeNode(), BLOB).equals(injectSeaBlob(fakeNode(), BLOB))).toBe(true);
  });

  it('refuses a PIE, a binary without the fuse (or with two), an already injected one, an empty blob', () => {
    expect(() => injectSeaBlob(fakeNode({ type: ET.DYN }), BLOB)).toThrow(/position-independent/);
    expect(() => injectSeaBlob(fakeNode({ fuse: 'none' }), BLOB)).toThrow(/no \(single\) NODE_SEA_FUSE/);
    expect(() => injectSeaBlob(fakeNode({ fuse: 'twice' }), BLOB)).toThrow(ElfError);
    expect(() => injectSeaBlob(fakeNode({ fuse: '1' }), BLOB)).toThrow(/already a single executable/);
    expect(() => injectSeaBlob(injectSeaBlob(fakeNode(), BLOB), BLOB)).toThrow(/already a single executable/);
    expect(() => injectSeaBlob(fakeNode({ phdr: false }), BLOB)).toThrow(/no PT_PHDR/);
    expect(() => injectSeaBlob(fakeNode(), Buffer.alloc(0))).toThrow(/empty SEA blob/);
  });

  it('reads a musl interpreter', () => {
    expect(readInterpreter(fakeNode({ interp: '/lib/ld-musl-x86_64.so.1' }))).toBe('/lib/ld-musl-x86_64.so.1');
  });
});

describe('SEA blob', () => {
  const field = (b: Buffer): Buffer => {
    const n = Buffer.alloc(8);
    n.writeBigUInt64LE(BigInt(b.length));
    return Buffer.concat([n, b]);
  };
  const blob = (flags: number, cache?: Buffer): Buffer => {
    const head = Buffer.alloc(8);
    head.writeUInt32LE(SEA_MAGIC, 0);
    head.writeUInt32LE(flags, 4);
    return Buffer.concat([head, field(Buffer.from('kata-agent.cjs')), field(Buffer.from('main()')), ...(cache ? [field(cache)] : [])]);
  };

  it('parses the main script path, code and code cache', () => {
    const b = parseSeaBlob(blob(SEA_FLAGS.disableExperimentalSeaWarning | SEA_FLAGS.useCodeCache, Buffer.from([1, 2, 3])));
    expect(b).toEqual({ flags: 5, codePath: 'kata-agent.cjs', code: Buffer.from('main()'), codeCache: Buffer.from([1, 2, 3]) });
    expect(parseSeaBlob(blob(SEA_FLAGS.disableExperimentalSeaWarning)).codeCache).toBeUndefined();
  });

  it('rejects a bad magic and truncated blobs', () => {
    expect(() => parseSeaBlob(Buffer.alloc(16))).toThrow(/bad magic/);
    const b = blob(SEA_FLAGS.useCodeCache, Buffer.alloc(100));
    expect(() => parseSeaBlob(b.subarray(0, b.length - 1))).toThrow(/truncated SEA blob \(code cache\)/);
  });

  it('config: no experimental warning, no snapshot, code cache as asked', () => {
    expect(seaConfig('kata-agent.cjs', 'x.blob', true)).toEqual({
      main: 'kata-agent.cjs',
      output: 'x.blob',
      disableExperimentalSEAWarning: true,
      useSnapshot: false,
      useCodeCache: true,
    });
  });

  it('node processes standing for the guest run without NODE_OPTIONS', () => {
    const env = cleanNodeEnv({ PATH: '/bin', NODE_OPTIONS: '--max-old-space-size=100', NODE_EXTRA_CA_CERTS: '/x.pem' });
    expect(env).toEqual({ PATH: '/bin' });
  });
});

describe('koffi loader inside the single executable', () => {
  function run(execPath: string, dlopen: (m: { exports: unknown }, file: string) => void): { loadStatic(): unknown } {
    const module = { exports: {} as { loadStatic(): unknown } };
    const req = (id: string): unknown => {
      if (id === 'node:path') return path;
      if (id === 'node:fs') return fs;
      throw new Error(`only builtins: ${id}`);
    };
    vm.runInNewContext(koffiLoaderSource(), { module, require: req, process: { execPath, dlopen } });
    return module.exports;
  }

  it('dlopens the addon beside the executable and returns its exports', () => {
    const seen: string[] = [];
    const m = run('/usr/bin/kata-agent', (mod, file) => {
      seen.push(file);
      mod.exports = { version: '3.3.4' };
    });
    expect(m.loadStatic()).toEqual({ version: '3.3.4' });
    expect(seen).toEqual([`/usr/bin/${KOFFI_ADDON}`]);
  });

  it('follows a symlink to the executable (PID 1 started as /init before /proc is mounted)', () => {
    const dir = path.join(tmp, 'koffi-link');
    fs.mkdirSync(path.join(dir, 'usr/bin'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'usr/bin/kata-agent'), '');
    fs.symlinkSync('usr/bin/kata-agent', path.join(dir, 'init'));
    const seen: string[] = [];
    run(path.join(dir, 'init'), (_mod, file) => void seen.push(file)).loadStatic();
    expect(seen).toEqual([path.join(dir, 'usr/bin', KOFFI_ADDON)]);
  });

  it('names the addon it could not load', () => {
    const m = run('/opt/x/kata-agent', () => {
      throw new Error('cannot open shared object file');
    });
    expect(() => m.loadStatic()).toThrow('cannot load the koffi addon /opt/x/koffi.node: cannot open shared object file');
  });
});

describe('stamps and addon choice', () => {
  const sha = '6f17d79c0123456789abcdef0123456789abcdef';
  it('commit: the hash, -dirty with changes, unknown without a hash', () => {
    expect(describeCommit(`${sha}\n`, '')).toBe(sha);
    expect(describeCommit(sha, ' M agent/src/main.ts\n')).toBe(`${sha}-dirty`);
    expect(describeCommit(sha, undefined)).toBe(sha);
    expect(describeCommit('', '')).toBe('unknown');
    expect(describeCommit(undefined, undefined)).toBe('unknown');
    expect(describeCommit('fatal: not a git repository', '')).toBe('unknown');
  });

  it('koffi addon: glibc or musl build by the interpreter, per arch', () => {
    expect(koffiAddonLocation('x64', '/lib64/ld-linux-x86-64.so.2')).toEqual({ pkg: '@koromix/koffi-linux-x64', file: 'linux_x64/koffi.node' });
    expect(koffiAddonLocation('x64', '/lib/ld-musl-x86_64.so.1')).toEqual({ pkg: '@koromix/koffi-linux-x64', file: 'musl_x64/koffi.node' });
    expect(koffiAddonLocation('arm64', '/lib/ld-linux-aarch64.so.1')).toEqual({ pkg: '@koromix/koffi-linux-arm64', file: 'linux_arm64/koffi.node' });
  });
});

describe('osbuilder pack command line', () => {
  function io() {
    const o = { stdout: '', stderr: '' };
    return { o, io: { stdout: (s: string) => void (o.stdout += s), stderr: (s: string) => void (o.stderr += s), env: {} } };
  }

  it('--output is required; unknown options and arguments are usage errors', async () => {
    for (const args of [['pack'], ['pack', '--bogus'], ['pack', '--output', tmp, 'extra'], ['pack', '--output', tmp, '--icu', 'tiny']]) {
      const a = io();
      expect(await runCli(args, [packCommand], a.io)).toBe(EXIT.USAGE);
      expect(a.o.stderr.trim().split('\n')).toHaveLength(1);
    }
  });

  it('a missing node binary or repository is MISSING (3)', async () => {
    const a = io();
    expect(await runCli(['pack', '--output', tmp, '--node', path.join(tmp, 'no-node')], [packCommand], a.io)).toBe(EXIT.MISSING);
    expect(a.o.stderr).toContain('no-node does not exist');
    const b = io();
    expect(await runCli(['pack', '--output', tmp, '--repo', tmp], [packCommand], b.io)).toBe(EXIT.USAGE);
    expect(b.o.stderr).toContain('is not a guestkit repository');
  });

  it('--help documents the outputs, options and exit codes', async () => {
    const a = io();
    expect(await runCli(['pack', '--help'], [packCommand], a.io)).toBe(EXIT.OK);
    for (const s of ['--output DIR', '--node PATH', '--no-code-cache', '--icu small|full', '/usr/bin/kata-agent', '/usr/bin/koffi.node', 'Exit codes']) expect(a.o.stdout).toContain(s);
  });

  it('finds the repository above a start directory', () => {
    const root = path.join(tmp, 'repo');
    fs.mkdirSync(path.join(root, 'dist'), { recursive: true });
    fs.writeFileSync(path.join(root, 'package.json'), '{"name":"guestkit"}');
    expect(findRepoRoot([path.join(root, 'dist')])).toBe(root);
    expect(findRepoRoot([os.tmpdir()])).toBeUndefined();
  });
});
