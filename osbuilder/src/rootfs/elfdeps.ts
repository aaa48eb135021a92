// Shared-library closure of ELF executables, read from the files themselves (not ldd: ldd runs
// the program's interpreter, which is wrong for a tree that is not the running system and
// unsafe for binaries of another machine). For each object: PT_INTERP, and from PT_DYNAMIC
// DT_NEEDED, DT_RPATH, DT_RUNPATH, DT_SONAME. Names are resolved the way glibc's ld.so does
// (elf/dl-load.c, in order):
//   - a name with a slash is a path;
//   - DT_RPATH of the object and then of the objects that loaded it, if it has no DT_RUNPATH;
//   - (LD_LIBRARY_PATH: ignored, a build should not depend on it);
//   - the object's own DT_RUNPATH;
//   - /etc/ld.so.cache of the tree (entries of the object's class and machine, baseline
//     ones: glibc-hwcaps subdirectory entries are skipped);
//   - the default directories (Debian's multiarch ones, then /lib64, /usr/lib64, /lib, /usr/lib).
// $ORIGIN in rpaths is the directory of the object. A candidate of the wrong class or machine
// is skipped, as ld.so does. Everything happens inside `root` (chroot semantics, see fsroot).
import fs from 'node:fs';
import path from 'node:path';
import { resolveInRoot } from './fsroot';

export const EM = { I386: 3, ARM: 40, X86_64: 62, AARCH64: 183, RISCV: 243, PPC64: 21, S390: 22 } as const;

export interface ElfInfo {
  bits: 32 | 64;
  littleEndian: boolean;
  /** e_machine. */
  machine: number;
  /** e_type: 2 executable, 3 shared object / PIE. */
  type: number;
  /** PT_INTERP (the program interpreter), if any. */
  interp?: string;
  needed: string[];
  rpath: string[];
  runpath: string[];
  soname?: string;
  /** Has a PT_DYNAMIC segment. */
  dynamic: boolean;
}

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const DT_NULL = 0;
const DT_NEEDED = 1;
const DT_STRTAB = 5;
const DT_STRSZ = 10;
const DT_SONAME = 14;
const DT_RPATH = 15;
const DT_RUNPATH = 29;

export class ElfError extends Error {
  override name = 'ElfError';
}

/** Parse an ELF file's header and dynamic section; undefined when it is not an ELF file. */
export function parseElf(buf: Buffer, what = 'file'): ElfInfo | undefined {
  if (buf.length < 16 || buf.readUInt32BE(0) !== 0x7f454c46) return undefined;
  const bits = buf[4] === 2 ? 64 : buf[4] === 1 ? 32 : 0;
  const le = buf[5] === 1 ? true : buf[5] === 2 ? false : undefined;
  if (!bits || le === undefined) throw new ElfError(`${what}: bad ELF class/data (${buf[4]}/${buf[5]})`);
  const need = (off: number, n: number): void => {
    if (off < 0 || off + n > buf.length) throw new ElfError(`${what}: truncated ELF (offset ${off})`);
  };
  const u16 = (o: number): number => (need(o, 2), le ? buf.readUInt16LE(o) : buf.readUInt16BE(o));
  const u32 = (o: number): number => (need(o, 4), le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const addr = (o: number): number => {
    if (bits === 32) return u32(o);
    need(o, 8);
    const v = le ? buf.readBigUInt64LE(o) : buf.readBigUInt64BE(o);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ElfError(`${what}: value out of range at ${o}`);
    return Number(v);
  };
  const type = u16(16);
  const machine = u16(18);
  const phoff = addr(bits === 64 ? 32 : 28);
  const phentsize = u16(bits === 64 ? 54 : 42);
  const phnum = u16(bits === 64 ? 56 : 44);
  const loads: Array<{ vaddr: number; offset: number; filesz: number }> = [];
  let interp: string | undefined;
  let dyn: { offset: number; size: number } | undefined;
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    const ptype = u32(ph);
    const offset = addr(bits === 64 ? ph + 8 : ph + 4);
    const vaddr = addr(bits === 64 ? ph + 16 : ph + 8);
    const filesz = addr(bits === 64 ? ph + 32 : ph + 16);
    if (ptype === PT_LOAD) loads.push({ vaddr, offset, filesz });
    else if (ptype === PT_INTERP) {
      need(offset, filesz);
      interp = buf.toString('latin1', offset, offset + filesz).replace(/\0.*$/s, '');
    } else if (ptype === PT_DYNAMIC) dyn = { offset, size: filesz };
  }
  const info: ElfInfo = { bits, littleEndian: le, machine, type, interp, needed: [], rpath: [], runpath: [], dynamic: dyn !== undefined };
  if (!dyn) return info;
  const entSize = bits === 64 ? 16 : 8;
  const entries: Array<[number, number]> = [];
  for (let o = dyn.offset; o + entSize <= dyn.offset + dyn.size; o += entSize) {
    const tag = addr(o);
    if (tag === DT_NULL) break;
    entries.push([tag, addr(o + entSize / 2)]);
  }
  const strtabVaddr = entries.find(([t]) => t === DT_STRTAB)?.[1];
  const strsz = entries.find(([t]) => t === DT_STRSZ)?.[1];
  if (strtabVaddr === undefined) return info;
  const seg = loads.find((l) => strtabVaddr >= l.vaddr && strtabVaddr < l.vaddr + l.filesz);
  if (!seg) throw new ElfError(`${what}: DT_STRTAB is outside every PT_LOAD segment`);
  const strtab = strtabVaddr - seg.vaddr + seg.offset;
  const str = (off: number): string => {
    const start = strtab + off;
    if (strsz !== undefined && off >= strsz) throw new ElfError(`${what}: string offset ${off} beyond DT_STRSZ`);
    need(start, 1);
    const end = buf.indexOf(0, start);
    if (end < 0) throw new ElfError(`${what}: unterminated string at ${start}`);
    return buf.toString('utf8', start, end);
  };
  for (const [tag, val] of entries) {
    if (tag === DT_NEEDED) info.needed.push(str(val));
    else if (tag === DT_SONAME) info.soname = str(val);
    else if (tag === DT_RPATH) info.rpath.push(...str(val).split(':').filter(Boolean));
    else if (tag === DT_RUNPATH) info.runpath.push(...str(val).split(':').filter(Boolean));
  }
  return info;
}

/** Read an ELF file (undefined if not ELF or unreadable). Reads the whole file only when it is ELF. */
export function readElf(file: string): ElfInfo | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return undefined;
  }
  try {
    const head = Buffer.alloc(4);
    if (fs.readSync(fd, head, 0, 4, 0) < 4 || head.readUInt32BE(0) !== 0x7f454c46) return undefined;
    return parseElf(fs.readFileSync(fd), file);
  } finally {
    fs.closeSync(fd);
  }
}

export function isElf(file: string): boolean {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const head = Buffer.alloc(4);
      return fs.readSync(fd, head, 0, 4, 0) === 4 && head.readUInt32BE(0) === 0x7f454c46;
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return false;
  }
}

export interface CacheEntry {
  name: string;
  path: string;
  flags: number;
  hwcap: bigint;
}

const NEW_MAGIC = 'glibc-ld.so.cache1.1';
const OLD_MAGIC = 'ld.so-1.7.0';

/** Parse /etc/ld.so.cache (glibc's new format, alone or after the old one), in file (= lookup) order. */
export function parseLdSoCache(buf: Buffer): CacheEntry[] {
  let base = 0;
  if (buf.toString('latin1', 0, OLD_MAGIC.length) === OLD_MAGIC) {
    const n = buf.readUInt32LE(12);
    base = 16 + n * 12;
    base = (base + 7) & ~7; // the new format follows, aligned
    if (buf.toString('latin1', base, base + NEW_MAGIC.length) !== NEW_MAGIC) return [];
  } else if (buf.toString('latin1', 0, NEW_MAGIC.length) !== NEW_MAGIC) {
    throw new ElfError('not a glibc ld.so.cache');
  }
  // The cache is written in the host's byte order: the library count must fit the file.
  const hdr = 48;
  const le = buf.readUInt32LE(base + 20) * 24 + hdr <= buf.length - base;
  const u32 = (o: number): number => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const nlibs = u32(base + 20);
  const entries: CacheEntry[] = [];
  const str = (off: number): string => {
    const end = buf.indexOf(0, off);
    return buf.toString('utf8', off, end < 0 ? buf.length : end);
  };
  for (let i = 0; i < nlibs; i++) {
    const e = base + hdr + i * 24;
    if (e + 24 > buf.length) throw new ElfError('truncated ld.so.cache');
    const flags = u32(e);
    const key = u32(e + 4);
    const value = u32(e + 8);
    const hwcap = le ? buf.readBigUInt64LE(e + 16) : buf.readBigUInt64BE(e + 16);
    // String offsets are from the start of the new-format header (the file's start when alone).
    entries.push({ flags, hwcap, name: str(base + key), path: str(base + value) });
  }
  return entries;
}

/** Multiarch directory names (Debian) per ELF machine and class. */
function multiarch(machine: number, bits: number): string[] {
  switch (machine) {
    case EM.X86_64:
      return bits === 64 ? ['x86_64-linux-gnu'] : ['x86_64-linux-gnux32'];
    case EM.I386:
      return ['i386-linux-gnu'];
    case EM.AARCH64:
      return ['aarch64-linux-gnu'];
    case EM.ARM:
      return ['arm-linux-gnueabihf', 'arm-linux-gnueabi'];
    case EM.RISCV:
      return ['riscv64-linux-gnu'];
    case EM.PPC64:
      return ['powerpc64le-linux-gnu', 'powerpc64-linux-gnu'];
    case EM.S390:
      return ['s390x-linux-gnu'];
    default:
      return [];
  }
}

/** The default library directories for objects of this machine and class. */
export function defaultLibDirs(machine: number, bits: number): string[] {
  const ma = multiarch(machine, bits).flatMap((t) => [`/lib/${t}`, `/usr/lib/${t}`]);
  return [...ma, ...(bits === 64 ? ['/lib64', '/usr/lib64'] : []), '/lib', '/usr/lib'];
}

export interface ResolvedObject {
  /** The path the loader finds it at (inside the tree), e.g. /lib/x86_64-linux-gnu/libc.so.6. */
  path: string;
  /** The file on the host (every link followed inside the tree). */
  hostPath: string;
  /** The DT_NEEDED name, or 'interp' for the program interpreter, or 'root' for an input. */
  name: string;
  /** The object that needed it first (guest path). */
  neededBy?: string;
  info: ElfInfo;
  /** Other guest paths the same file is needed at (another name resolving to the same file). */
  aliases: string[];
}

export interface Closure {
  /** The inputs, interpreters and libraries, in load order (breadth first), each once. */
  objects: ResolvedObject[];
  /** Names that could not be resolved. */
  missing: Array<{ name: string; neededBy: string }>;
}

export interface ClosureOptions {
  /** The tree the paths are in (default /). */
  root?: string;
  /** Use <root>/etc/ld.so.cache (default true). */
  useCache?: boolean;
}

/** A library resolver for one tree; caches its ld.so.cache and the ELF headers it reads. */
export class LibResolver {
  readonly root: string;
  private cache: CacheEntry[] | undefined;
  private readonly infos = new Map<string, ElfInfo | null>();

  constructor(o: ClosureOptions = {}) {
    this.root = path.resolve(o.root ?? '/');
    if (o.useCache ?? true) {
      try {
        this.cache = parseLdSoCache(fs.readFileSync(resolveInRoot(this.root, '/etc/ld.so.cache')));
      } catch {
        this.cache = undefined;
      }
    }
  }

  /** ELF info of a guest path (undefined: missing or not ELF). */
  info(guestPath: string): ElfInfo | undefined {
    const host = resolveInRoot(this.root, guestPath);
    if (!this.infos.has(host)) {
      let i: ElfInfo | undefined;
      try {
        i = readElf(host);
      } catch {
        i = undefined;
      }
      this.infos.set(host, i ?? null);
    }
    return this.infos.get(host) ?? undefined;
  }

  private compatible(guestPath: string, like: ElfInfo): boolean {
    const i = this.info(guestPath);
    return i !== undefined && i.bits === like.bits && i.machine === like.machine && i.dynamic;
  }

  /**
   * Resolve a DT_NEEDED name for `from` (guest path + info), `rpathChain` being the DT_RPATH lists
   * (already $ORIGIN-expanded) of the objects that loaded it. The guest path, or undefined.
   */
  resolve(name: string, from: { path: string; info: ElfInfo }, rpathChain: string[][] = []): string | undefined {
    if (name.includes('/')) return fs.existsSync(resolveInRoot(this.root, name)) ? name : undefined;
    const origin = path.posix.dirname(from.path);
    const expand = (dirs: string[]): string[] => dirs.map((d) => d.replace(/\$(ORIGIN|\{ORIGIN\})/g, origin));
    const inDirs = (dirs: string[]): string | undefined => {
      for (const d of dirs) {
        const p = path.posix.join(d.startsWith('/') ? d : path.posix.join('/', d), name);
        if (this.compatible(p, from.info)) return p;
      }
      return undefined;
    };
    let hit: string | undefined;
    if (from.info.runpath.length === 0) {
      for (const dirs of [expand(from.info.rpath), ...rpathChain]) if ((hit = inDirs(dirs))) return hit;
    } else if ((hit = inDirs(expand(from.info.runpath)))) return hit;
    if (this.cache) {
      for (const e of this.cache) {
        if (e.name !== name || e.hwcap !== 0n) continue;
        if ((e.flags & 0xff) !== 3 && (e.flags & 0xff) !== 1) continue; // ELF libc6 / ELF
        if (this.compatible(e.path, from.info)) return e.path;
      }
    }
    return inDirs(defaultLibDirs(from.info.machine, from.info.bits));
  }

  /** The closure of `inputs` (guest paths): their interpreters and every library they need. */
  closure(inputs: string[]): Closure {
    const objects: ResolvedObject[] = [];
    const missing: Closure['missing'] = [];
    const byHost = new Map<string, ResolvedObject>();
    const loadedNames = new Map<string, string>(); // DT_NEEDED name or soname -> guest path
    const queue: Array<{ obj: ResolvedObject; chain: string[][] }> = [];
    const add = (obj: ResolvedObject, chain: string[][]): void => {
      const seen = byHost.get(obj.hostPath);
      if (seen) {
        if (seen.path !== obj.path && !seen.aliases.includes(obj.path)) seen.aliases.push(obj.path);
        return;
      }
      byHost.set(obj.hostPath, obj);
      objects.push(obj);
      if (obj.info.soname) loadedNames.set(obj.info.soname, obj.path);
      queue.push({ obj, chain });
    };
    for (const p of inputs) {
      const info = this.info(p);
      if (!info) {
        missing.push({ name: p, neededBy: '(input)' });
        continue;
      }
      add({ path: p, hostPath: resolveInRoot(this.root, p), name: 'root', info, aliases: [] }, []);
    }
    // Each executable's interpreter goes right after the inputs (it is loaded with them).
    for (const { obj } of [...queue]) {
      if (!obj.info.interp) continue;
      const ii = this.info(obj.info.interp);
      if (!ii) missing.push({ name: obj.info.interp, neededBy: obj.path });
      else add({ path: obj.info.interp, hostPath: resolveInRoot(this.root, obj.info.interp), name: 'interp', neededBy: obj.path, info: ii, aliases: [] }, []);
    }
    while (queue.length > 0) {
      const { obj, chain } = queue.shift()!;
      const origin = path.posix.dirname(obj.path);
      const own = obj.info.rpath.map((d) => d.replace(/\$(ORIGIN|\{ORIGIN\})/g, origin));
      const childChain = obj.info.runpath.length === 0 ? [own, ...chain] : chain;
      for (const name of obj.info.needed) {
        const known = loadedNames.get(name);
        if (known) continue;
        const p = this.resolve(name, obj, chain);
        if (!p) {
          if (!missing.some((m) => m.name === name)) missing.push({ name, neededBy: obj.path });
          continue;
        }
        loadedNames.set(name, p);
        add({ path: p, hostPath: resolveInRoot(this.root, p), name, neededBy: obj.path, info: this.info(p)!, aliases: [] }, childChain);
      }
    }
    return { objects, missing };
  }
}

/** Shortcut: the closure of `inputs` in `root` (default the build machine). */
export function elfClosure(inputs: string[], o: ClosureOptions = {}): Closure {
  return new LibResolver(o).closure(inputs);
}
