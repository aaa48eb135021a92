// The little ELF surgery a Node single executable needs, in place of postject: the SEA blob
// becomes an ELF note named NODE_SEA_BLOB in a PT_NOTE segment that is mapped into memory, and
// the SEA fuse string in the binary is flipped from ":0" to ":1".
//
// How Node finds the blob (deps/postject/postject-api.h, Linux): it walks the main program's
// program headers (dl_iterate_phdr), and in every PT_NOTE segment, at load bias + p_vaddr, looks
// for a note whose name is NODE_SEA_BLOB; the note's descriptor is the blob. So the blob must be
// inside a PT_LOAD segment and a PT_NOTE header must point at it. A program header table has no
// spare entries, and moving it is what makes general-purpose injectors complex; two existing
// entries are reused instead, the header count staying the same:
//  - the PT_NOTE entry: the notes it described (build id, ABI tag) are copied to the new region,
//    followed by the NODE_SEA_BLOB note, and the entry now describes that region;
//  - the PT_PHDR entry becomes the PT_LOAD that maps the region (appended at the end of the file,
//    at an address above every other segment; offset and address aligned as the other PT_LOADs).
//    PT_PHDR only serves the dynamic linker to compute a position-independent executable's load
//    bias; a fixed-address executable (ET_EXEC, as Node's release binaries are) does not need it
//    (the kernel finds the table through e_phoff). PIE binaries are refused.
// The program headers are kept in the order the ELF specification asks for (PT_INTERP before any
// PT_LOAD, PT_LOAD entries sorted by address). Section headers are left as they are: the new data
// is in no section. The input must be stripped BEFORE injection (strip rewrites the file layout
// and does not know the new segment: a binary stripped afterwards crashes).
//
// Everything here is a pure function of its inputs (deterministic output).

export const SEA_NOTE_NAME = 'NODE_SEA_BLOB';
/** The fuse Node checks to know it is a single executable (its last character is flipped to 1). */
export const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

export const PT = { NULL: 0, LOAD: 1, DYNAMIC: 2, INTERP: 3, NOTE: 4, PHDR: 6, TLS: 7 } as const;
export const ET = { EXEC: 2, DYN: 3 } as const;
const PF_R = 4;
const PAGE = 0x1000;
const PHDR_SIZE = 56;

export interface ElfHeader {
  type: number;
  machine: number;
  phoff: number;
  phentsize: number;
  phnum: number;
  shoff: number;
  shentsize: number;
  shnum: number;
  shstrndx: number;
}

export interface ProgramHeader {
  type: number;
  flags: number;
  offset: number;
  vaddr: number;
  paddr: number;
  filesz: number;
  memsz: number;
  align: number;
}

export interface SectionHeader {
  name: string;
  type: number;
  flags: number;
  addr: number;
  offset: number;
  size: number;
}

export class ElfError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ElfError';
  }
}

const u64 = (b: Buffer, off: number): number => {
  const v = b.readBigUInt64LE(off);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ElfError(`value at offset ${off} is too large`);
  return Number(v);
};

/** The ELF header of a 64-bit little-endian ELF file; throws ElfError for anything else. */
export function readElfHeader(elf: Buffer): ElfHeader {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46) throw new ElfError('not an ELF file');
  if (elf[4] !== 2) throw new ElfError('not a 64-bit ELF file');
  if (elf[5] !== 1) throw new ElfError('not a little-endian ELF file');
  const h: ElfHeader = {
    type: elf.readUInt16LE(16),
    machine: elf.readUInt16LE(18),
    phoff: u64(elf, 32),
    shoff: u64(elf, 40),
    phentsize: elf.readUInt16LE(54),
    phnum: elf.readUInt16LE(56),
    shentsize: elf.readUInt16LE(58),
    shnum: elf.readUInt16LE(60),
    shstrndx: elf.readUInt16LE(62),
  };
  if (h.phnum > 0 && h.phentsize !== PHDR_SIZE) throw new ElfError(`unexpected program header size ${h.phentsize}`);
  if (h.phoff + h.phnum * PHDR_SIZE > elf.length) throw new ElfError('truncated program header table');
  return h;
}

export function readProgramHeaders(elf: Buffer, h = readElfHeader(elf)): ProgramHeader[] {
  const out: ProgramHeader[] = [];
  for (let i = 0; i < h.phnum; i++) {
    const o = h.phoff + i * PHDR_SIZE;
    out.push({
      type: elf.readUInt32LE(o),
      flags: elf.readUInt32LE(o + 4),
      offset: u64(elf, o + 8),
      vaddr: u64(elf, o + 16),
      paddr: u64(elf, o + 24),
      filesz: u64(elf, o + 32),
      memsz: u64(elf, o + 40),
      align: u64(elf, o + 48),
    });
  }
  return out;
}

export function writeProgramHeader(buf: Buffer, off: number, p: ProgramHeader): void {
  buf.writeUInt32LE(p.type, off);
  buf.writeUInt32LE(p.flags, off + 4);
  buf.writeBigUInt64LE(BigInt(p.offset), off + 8);
  buf.writeBigUInt64LE(BigInt(p.vaddr), off + 16);
  buf.writeBigUInt64LE(BigInt(p.paddr), off + 24);
  buf.writeBigUInt64LE(BigInt(p.filesz), off + 32);
  buf.writeBigUInt64LE(BigInt(p.memsz), off + 40);
  buf.writeBigUInt64LE(BigInt(p.align), off + 48);
}

/** Section headers with their names (empty when the file has none). */
export function readSectionHeaders(elf: Buffer, h = readElfHeader(elf)): SectionHeader[] {
  if (h.shnum === 0 || h.shoff === 0) return [];
  if (h.shentsize !== 64 || h.shoff + h.shnum * 64 > elf.length) throw new ElfError('truncated section header table');
  const raw = [];
  for (let i = 0; i < h.shnum; i++) {
    const o = h.shoff + i * 64;
    raw.push({
      nameOff: elf.readUInt32LE(o),
      type: elf.readUInt32LE(o + 4),
      flags: u64(elf, o + 8),
      addr: u64(elf, o + 16),
      offset: u64(elf, o + 24),
      size: u64(elf, o + 32),
    });
  }
  const strtab = raw[h.shstrndx];
  const name = (off: number): string => {
    if (!strtab) return '';
    const start = strtab.offset + off;
    const end = elf.indexOf(0, start);
    return elf.toString('latin1', start, end < 0 ? start : end);
  };
  return raw.map((s) => ({ name: name(s.nameOff), type: s.type, flags: s.flags, addr: s.addr, offset: s.offset, size: s.size }));
}

export interface Note {
  name: string;
  type: number;
  desc: Buffer;
}

const align4 = (n: number): number => (n + 3) & ~3;
const alignUp = (n: number, a: number): number => Math.ceil(n / a) * a;

/** Encode one ELF note (4-byte alignment of name and descriptor, as PT_NOTE segments with p_align 4 use). */
export function encodeNote(n: Note): Buffer {
  const name = Buffer.from(`${n.name}\0`, 'latin1');
  const out = Buffer.alloc(12 + align4(name.length) + align4(n.desc.length));
  out.writeUInt32LE(name.length, 0);
  out.writeUInt32LE(n.desc.length, 4);
  out.writeUInt32LE(n.type, 8);
  name.copy(out, 12);
  n.desc.copy(out, 12 + align4(name.length));
  return out;
}

/** Decode the notes of a note segment (4-byte alignment). */
export function decodeNotes(seg: Buffer): Note[] {
  const out: Note[] = [];
  let o = 0;
  while (o + 12 <= seg.length) {
    const namesz = seg.readUInt32LE(o);
    const descsz = seg.readUInt32LE(o + 4);
    const type = seg.readUInt32LE(o + 8);
    const nameAt = o + 12;
    const descAt = nameAt + align4(namesz);
    if (descAt + descsz > seg.length) throw new ElfError('truncated note');
    out.push({ name: seg.toString('latin1', nameAt, nameAt + Math.max(0, namesz - 1)), type, desc: seg.subarray(descAt, descAt + descsz) });
    o = descAt + align4(descsz);
  }
  return out;
}

/** Every note of every PT_NOTE segment of the file. */
export function readNotes(elf: Buffer): Note[] {
  const notes: Note[] = [];
  for (const p of readProgramHeaders(elf)) {
    if (p.type === PT.NOTE && p.align <= 4) notes.push(...decodeNotes(elf.subarray(p.offset, p.offset + p.filesz)));
  }
  return notes;
}

/** Offsets of every occurrence of `needle` in `hay`. */
function findAll(hay: Buffer, needle: Buffer): number[] {
  const out: number[] = [];
  for (let i = hay.indexOf(needle); i >= 0; i = hay.indexOf(needle, i + 1)) out.push(i);
  return out;
}

/** The state of the SEA fuse: 'unset' (a plain node binary), 'set' (already a single executable) or 'absent'. */
export function seaFuseState(elf: Buffer): 'unset' | 'set' | 'absent' {
  const hits = findAll(elf, Buffer.from(`${SEA_FUSE}:`, 'latin1'));
  if (hits.length !== 1) return 'absent';
  return elf[hits[0]! + SEA_FUSE.length + 1] === 0x31 ? 'set' : 'unset';
}

/** The SEA blob of a single executable, or undefined. */
export function findSeaBlob(elf: Buffer): Buffer | undefined {
  return readNotes(elf).find((n) => n.name === SEA_NOTE_NAME)?.desc;
}

/**
 * Inject a SEA preparation blob (from `node --experimental-sea-config`) into a copy of a node
 * binary (ET_EXEC, x86-64 or aarch64, 64-bit little endian, stripped already): see the top of
 * this file. Returns the new file contents; the input is not modified.
 */
export function injectSeaBlob(node: Buffer, blob: Buffer): Buffer {
  const h = readElfHeader(node);
  if (h.type !== ET.EXEC) {
    throw new ElfError(`${h.type === ET.DYN ? 'a position-independent (ET_DYN)' : `an ELF type ${h.type}`} node binary is not supported: use an official Node release binary (ET_EXEC)`);
  }
  const fuse = seaFuseState(node);
  if (fuse === 'absent') throw new ElfError(`the binary has no (single) ${SEA_FUSE} fuse: not a node binary with single-executable support`);
  if (fuse === 'set') throw new ElfError('the binary is already a single executable (its SEA fuse is set)');
  if (blob.length === 0) throw new ElfError('empty SEA blob');

  const phdrs = readProgramHeaders(node, h);
  const phdrIdx = phdrs.findIndex((p) => p.type === PT.PHDR);
  if (phdrIdx < 0) throw new ElfError('no PT_PHDR program header to reuse');
  const noteIdx = phdrs.findIndex((p) => p.type === PT.NOTE && p.align <= 4);
  if (noteIdx < 0) throw new ElfError('no PT_NOTE program header (4-byte aligned) to reuse');
  const oldNote = phdrs[noteIdx]!;
  const oldNotes = decodeNotes(node.subarray(oldNote.offset, oldNote.offset + oldNote.filesz));
  if (oldNotes.some((n) => n.name === SEA_NOTE_NAME)) throw new ElfError('the binary already has a NODE_SEA_BLOB note');

  // The region: the old notes, then the SEA note (the blob as its descriptor).
  const region = Buffer.concat([...oldNotes.map(encodeNote), encodeNote({ name: SEA_NOTE_NAME, type: 0, desc: blob })]);
  const loads = phdrs.filter((p) => p.type === PT.LOAD);
  if (loads.length === 0) throw new ElfError('no PT_LOAD segment');
  // The segment alignment the binary was linked for (64 KiB on some arm64 builds), at least a page.
  const align = Math.max(PAGE, ...loads.map((p) => p.align));
  const regionOff = alignUp(node.length, align);
  const top = Math.max(...loads.map((p) => p.vaddr + p.memsz));
  const regionAddr = alignUp(top, align);

  const newLoad: ProgramHeader = { type: PT.LOAD, flags: PF_R, offset: regionOff, vaddr: regionAddr, paddr: regionAddr, filesz: region.length, memsz: region.length, align };
  const newNote: ProgramHeader = { type: PT.NOTE, flags: PF_R, offset: regionOff, vaddr: regionAddr, paddr: regionAddr, filesz: region.length, memsz: region.length, align: 4 };

  // New table: PT_PHDR dropped, the note entry replaced, the new PT_LOAD after the last PT_LOAD.
  const table: ProgramHeader[] = [];
  const lastLoad = phdrs.reduce((acc, p, i) => (p.type === PT.LOAD ? i : acc), -1);
  phdrs.forEach((p, i) => {
    if (i === phdrIdx) return;
    table.push(i === noteIdx ? newNote : p);
    if (i === lastLoad) table.push(newLoad);
  });

  const out = Buffer.alloc(regionOff + region.length);
  node.copy(out, 0);
  region.copy(out, regionOff);
  table.forEach((p, i) => writeProgramHeader(out, h.phoff + i * PHDR_SIZE, p));
  // Flip the fuse.
  const fuseAt = out.indexOf(Buffer.from(`${SEA_FUSE}:`, 'latin1'));
  out[fuseAt + SEA_FUSE.length + 1] = 0x31;
  return out;
}

/** The program interpreter (PT_INTERP) of an executable, or undefined (static binaries). */
export function readInterpreter(elf: Buffer): string | undefined {
  const p = readProgramHeaders(elf).find((x) => x.type === PT.INTERP);
  if (!p) return undefined;
  const end = elf.indexOf(0, p.offset);
  return elf.toString('latin1', p.offset, end < 0 || end > p.offset + p.filesz ? p.offset + p.filesz : end);
}

/** Node's name (process.arch) for an ELF machine number. */
export function machineArch(machine: number): string | undefined {
  return ({ 62: 'x64', 183: 'arm64', 3: 'ia32', 40: 'arm', 243: 'riscv64', 258: 'loong64' } as Record<number, string>)[machine];
}

export interface DynamicSymbol {
  name: string;
  value: number;
  size: number;
}

const SHT_DYNSYM = 11;

/** The dynamic symbols (.dynsym, names from .dynstr): they survive `strip --strip-all`. */
export function readDynamicSymbols(elf: Buffer): DynamicSymbol[] {
  const sections = readSectionHeaders(elf);
  const dynsym = sections.find((s) => s.type === SHT_DYNSYM);
  const dynstr = sections.find((s) => s.name === '.dynstr');
  if (!dynsym || !dynstr) return [];
  if (dynsym.offset + dynsym.size > elf.length || dynstr.offset + dynstr.size > elf.length) throw new ElfError('truncated dynamic symbol table');
  const out: DynamicSymbol[] = [];
  for (let o = dynsym.offset; o + 24 <= dynsym.offset + dynsym.size; o += 24) {
    const nameAt = dynstr.offset + elf.readUInt32LE(o);
    const end = elf.indexOf(0, nameAt);
    out.push({ name: elf.toString('latin1', nameAt, end < 0 ? nameAt : end), value: u64(elf, o + 8), size: u64(elf, o + 16) });
  }
  return out;
}

/** The file offset of `size` bytes at virtual address `vaddr`, if a PT_LOAD maps them from the file. */
export function vaddrToOffset(elf: Buffer, vaddr: number, size = 1): number | undefined {
  for (const p of readProgramHeaders(elf)) {
    if (p.type === PT.LOAD && vaddr >= p.vaddr && vaddr + size <= p.vaddr + p.filesz) return p.offset + (vaddr - p.vaddr);
  }
  return undefined;
}
