// Node's built-in ICU data, cut down to what a guest agent can use.
//
// An official Node release binary carries ICU's full data (locale data for every language,
// charset converters, dictionaries for word breaking in Thai/Chinese/Khmer...) as one exported
// read-only symbol, `icudt<version><l|b>_dat`: 33 MB of the 99 MB binary for Node 20 (ICU 78),
// 8.4 MB of an xz-compressed initrd. The agent formats nothing for humans: it needs ICU only
// because V8 and Node initialise it (and for UTF-8/UTF-16/Latin-1, which ICU converts without
// data). Node's own `--with-intl=small-icu` build keeps English only; this does the same to an
// existing binary, in place, so nothing else in the binary moves:
//
// The symbol holds an ICU "common data" package (data format "CmnD"): a data header, then a
// table of contents (count, then {name offset, data offset} pairs relative to the table, names
// sorted as ICU binary-searches them), the names, and the items, each a self-contained ICU data
// file aligned to 16 bytes. `shrinkIcuPackage` writes a new package of the same layout holding
// the kept items (copied byte for byte, in the same order), and `shrinkNodeIcu` puts it at the
// symbol's address and fills the rest of the symbol with zeros (which compress to nothing).
// ICU reads the package through its table of contents only, so the zeros are never looked at.
//
// What the small profile removes: locale data of every locale but root and English (the same
// cut as Node's small-icu; Intl then formats every locale as English), legacy charset
// converters (`TextDecoder('shift_jis')` etc. report ERR_ENCODING_NOT_SUPPORTED), the word
// break dictionaries, transliteration rules and Unicode character names. Everything is checked
// by the pack step, which runs the result.
//
// Pure functions of their inputs (deterministic output).
import { ElfError, readDynamicSymbols, vaddrToOffset } from './elf';

export const ICU_PROFILES = ['small', 'full'] as const;
export type IcuProfile = (typeof ICU_PROFILES)[number];

/** Locales kept by the small profile (ICU's resource names). */
export const SMALL_ICU_LOCALES = new Set(['root', 'en', 'en_001', 'en_US', 'en_US_POSIX']);

const ALIGN = 16;
const alignUp = (n: number): number => Math.ceil(n / ALIGN) * ALIGN;

export interface IcuItem {
  /** Full item name as stored, e.g. `icudt78l/coll/root.res`. */
  name: string;
  data: Buffer;
}

export interface IcuPackage {
  /** The data header (ICU DataHeader, including the copyright string), copied as is. */
  header: Buffer;
  items: IcuItem[];
}

export class IcuError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IcuError';
  }
}

/**
 * Parse an ICU common data package (little-endian, format CmnD) held in `buf`; items run to the
 * next item's offset, the last one to the end of `buf` (its zero padding included).
 */
export function parseIcuPackage(buf: Buffer): IcuPackage {
  if (buf.length < 32) throw new IcuError('ICU data too short');
  const headerSize = buf.readUInt16LE(0);
  if (buf[2] !== 0xda || buf[3] !== 0x27) throw new IcuError('not ICU data (bad magic)');
  // UDataInfo: size u16, reserved u16, isBigEndian, charsetFamily, sizeofUChar, reserved, dataFormat[4]...
  if (buf[8] !== 0) throw new IcuError('big-endian ICU data is not supported');
  const format = buf.toString('latin1', 12, 16);
  if (format !== 'CmnD') throw new IcuError(`ICU data of format ${JSON.stringify(format)}, not a common data package (CmnD)`);
  if (headerSize < 24 || headerSize > buf.length) throw new IcuError(`bad ICU header size ${headerSize}`);
  const toc = headerSize;
  const count = buf.readUInt32LE(toc);
  if (count === 0 || toc + 4 + count * 8 > buf.length) throw new IcuError(`bad ICU table of contents (${count} items)`);
  const entries: { name: string; offset: number }[] = [];
  for (let i = 0; i < count; i++) {
    const nameOff = toc + buf.readUInt32LE(toc + 4 + i * 8);
    const dataOff = toc + buf.readUInt32LE(toc + 8 + i * 8);
    const end = buf.indexOf(0, nameOff);
    if (nameOff >= buf.length || end < 0 || dataOff > buf.length) throw new IcuError(`ICU item ${i} points outside the data`);
    entries.push({ name: buf.toString('latin1', nameOff, end), offset: dataOff });
  }
  for (let i = 1; i < count; i++) {
    if (entries[i]!.offset < entries[i - 1]!.offset) throw new IcuError('ICU items are not in offset order');
  }
  return {
    header: Buffer.from(buf.subarray(0, headerSize)),
    items: entries.map((e, i) => ({ name: e.name, data: buf.subarray(e.offset, i + 1 < count ? entries[i + 1]!.offset : buf.length) })),
  };
}

/** Serialize a package: header, table of contents, names, then the items 16-byte aligned. */
export function writeIcuPackage(pkg: IcuPackage): Buffer {
  const names = pkg.items.map((it) => Buffer.from(`${it.name}\0`, 'latin1'));
  const tocSize = 4 + pkg.items.length * 8;
  const namesSize = names.reduce((n, b) => n + b.length, 0);
  let dataAt = alignUp(tocSize + namesSize);
  const dataOffsets = pkg.items.map((it) => {
    const at = dataAt;
    dataAt = alignUp(at + it.data.length);
    return at;
  });
  const out = Buffer.alloc(pkg.header.length + dataAt);
  pkg.header.copy(out, 0);
  const toc = pkg.header.length;
  out.writeUInt32LE(pkg.items.length, toc);
  let nameAt = tocSize;
  pkg.items.forEach((it, i) => {
    out.writeUInt32LE(nameAt, toc + 4 + i * 8);
    out.writeUInt32LE(dataOffsets[i]!, toc + 8 + i * 8);
    names[i]!.copy(out, toc + nameAt);
    nameAt += names[i]!.length;
    it.data.copy(out, toc + dataOffsets[i]!);
  });
  return out;
}

/**
 * Whether the small profile keeps an item (`name` without the package prefix, e.g.
 * `coll/de.res`, `ibm-1390_P110-2003.cnv`, `zoneinfo64.res`).
 */
export function keepInSmallIcu(name: string): boolean {
  const slash = name.lastIndexOf('/');
  const dir = slash < 0 ? '' : name.slice(0, slash);
  const base = name.slice(slash + 1);
  const dot = base.lastIndexOf('.');
  const stem = dot < 0 ? base : base.slice(0, dot);
  const ext = dot < 0 ? '' : base.slice(dot + 1);
  if (ext === 'cnv' || ext === 'dict') return false; // charset converters, break dictionaries
  if (dir === 'translit' || name === 'unames.icu') return false;
  // Locale resources look like xx, xxx, xx_YY, xx_Latn_YY, de_ (collation aliases)...
  if (ext === 'res' && /^[a-z]{2,3}(_[A-Za-z0-9]*)*$/.test(stem) && stem !== 'pool' && stem !== 'res_index') return SMALL_ICU_LOCALES.has(stem);
  return true;
}

/** A package with only the items the small profile keeps. */
export function shrinkIcuPackage(pkg: IcuPackage): IcuPackage {
  const items = pkg.items.filter((it) => keepInSmallIcu(it.name.slice(it.name.indexOf('/') + 1)));
  if (!items.some((it) => it.name.slice(it.name.indexOf('/') + 1) === 'root.res')) throw new IcuError('ICU data without root.res: not a locale data package');
  return { header: pkg.header, items };
}

export interface IcuShrinkResult {
  /** The symbol (e.g. icudt78_dat). */
  symbol: string;
  /** Its size, and the size of the package now in it. */
  bytes: number;
  keptBytes: number;
  items: number;
  keptItems: number;
}

/** The built-in ICU data symbol of a node binary: name, file offset and size; undefined if none. */
export function findNodeIcu(elf: Buffer): { symbol: string; offset: number; size: number } | undefined {
  const sym = readDynamicSymbols(elf).find((s) => /^icudt\d+_dat$/.test(s.name) && s.size > 0);
  if (!sym) return undefined;
  const offset = vaddrToOffset(elf, sym.value, sym.size);
  if (offset === undefined) throw new ElfError(`${sym.name} is not in a loaded segment`);
  return { symbol: sym.name, offset, size: sym.size };
}

/**
 * Replace, in place in `elf`, node's built-in ICU data with its small profile (zero-padded to
 * the symbol's size). Returns undefined when the binary has no built-in ICU data.
 */
export function shrinkNodeIcu(elf: Buffer): IcuShrinkResult | undefined {
  const at = findNodeIcu(elf);
  if (!at) return undefined;
  const region = elf.subarray(at.offset, at.offset + at.size);
  const pkg = parseIcuPackage(region);
  const kept = shrinkIcuPackage(pkg);
  const small = writeIcuPackage(kept); // a copy: `region` can be overwritten now
  if (small.length > region.length) throw new IcuError('the small ICU package does not fit in place');
  small.copy(region, 0);
  region.fill(0, small.length);
  return { symbol: at.symbol, bytes: at.size, keptBytes: small.length, items: pkg.items.length, keptItems: kept.items.length };
}
