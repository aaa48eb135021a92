// osbuilder pack: node's built-in ICU data cut to English (osbuilder/src/pack/icu.ts), on
// synthetic ICU packages and a synthetic ELF file with a dynamic symbol table.
import { describe, expect, it } from 'vitest';
import { readDynamicSymbols, vaddrToOffset } from '../../osbuilder/src/pack/elf';
import { findNodeIcu, IcuError, keepInSmallIcu, parseIcuPackage, shrinkIcuPackage, shrinkNodeIcu, writeIcuPackage, type IcuPackage } from '../../osbuilder/src/pack/icu';

/** An ICU data header (magic, UDataInfo for format CmnD, a copyright string), 32 bytes. */
function header(format = 'CmnD'): Buffer {
  const h = Buffer.alloc(32);
  h.writeUInt16LE(32, 0);
  h[2] = 0xda;
  h[3] = 0x27;
  h.writeUInt16LE(20, 4); // UDataInfo size
  h[10] = 2; // sizeofUChar
  h.write(format, 12, 'latin1');
  h[16] = 1; // formatVersion
  h.write('(c) test', 24, 'latin1');
  return h;
}

const item = (name: string, fill: number, len = 20): { name: string; data: Buffer } => ({ name: `icudt78l/${name}`, data: Buffer.alloc(len, fill) });

function pkg(): IcuPackage {
  return {
    header: header(),
    items: [
      item('brkitr/cjdict.dict', 1),
      item('coll/de.res', 2),
      item('coll/root.res', 3),
      item('de.res', 4, 33),
      item('en.res', 5, 7),
      item('ibm-1390_P110-2003.cnv', 6),
      item('pool.res', 7),
      item('res_index.res', 8),
      item('root.res', 9, 100),
      item('zoneinfo64.res', 10, 16),
    ],
  };
}

describe('ICU common data packages', () => {
  it('write then parse gives the same items, each 16-byte aligned, names in order', () => {
    const p = pkg();
    const buf = writeIcuPackage(p);
    const back = parseIcuPackage(buf);
    expect(back.header.equals(p.header)).toBe(true);
    expect(back.items.map((i) => i.name)).toEqual(p.items.map((i) => i.name));
    back.items.forEach((it, i) => {
      const orig = p.items[i]!.data;
      expect(it.data.subarray(0, orig.length).equals(orig)).toBe(true); // then zero padding to 16
      expect(it.data.subarray(orig.length).every((b) => b === 0)).toBe(true);
      expect(it.data.byteOffset - buf.byteOffset).toSatisfy((o: number) => (o - 32) % 16 === 0);
    });
    // Table of contents: count, then name/data offsets relative to the table.
    expect(buf.readUInt32LE(32)).toBe(10);
    expect(buf.toString('latin1', 32 + buf.readUInt32LE(36), 32 + buf.readUInt32LE(36) + 27)).toBe('icudt78l/brkitr/cjdict.dict');
  });

  it('refuses what is not a little-endian CmnD package', () => {
    expect(() => parseIcuPackage(Buffer.alloc(64))).toThrow(IcuError);
    expect(() => parseIcuPackage(writeIcuPackage({ ...pkg(), header: header('ResB') }))).toThrow(/format "ResB"/);
    const be = writeIcuPackage(pkg());
    be[8] = 1;
    expect(() => parseIcuPackage(be)).toThrow(/big-endian/);
    const bad = writeIcuPackage(pkg());
    bad.writeUInt32LE(1 << 30, 32 + 8); // first data offset far outside
    expect(() => parseIcuPackage(bad)).toThrow(IcuError);
  });

  it('the small profile keeps root and English locale data and the non-locale data', () => {
    for (const keep of ['root.res', 'en.res', 'en_US.res', 'en_US_POSIX.res', 'coll/root.res', 'coll/ucadata.icu', 'lang/en.res', 'curr/pool.res', 'pool.res', 'res_index.res', 'zoneinfo64.res', 'supplementalData.res', 'metaZones.res', 'icuver.res', 'cnvalias.icu', 'uts46.nrm', 'brkitr/root.res', 'brkitr/word.brk']) {
      expect(keepInSmallIcu(keep), keep).toBe(true);
    }
    for (const drop of ['de.res', 'zh_Hant_TW.res', 'ast_ES.res', 'coll/de_.res', 'coll/zh.res', 'lang/fr.res', 'unit/ja.res', 'ibm-1390_P110-2003.cnv', 'brkitr/cjdict.dict', 'translit/root.res', 'unames.icu']) {
      expect(keepInSmallIcu(drop), drop).toBe(false);
    }
    expect(shrinkIcuPackage(pkg()).items.map((i) => i.name.slice(9))).toEqual(['coll/root.res', 'en.res', 'pool.res', 'res_index.res', 'root.res', 'zoneinfo64.res']);
    expect(() => shrinkIcuPackage({ header: header(), items: [item('de.res', 1)] })).toThrow(/without root.res/);
  });
});

// A minimal ELF64 with one PT_LOAD mapping the whole file at 0x400000, and section headers for
// .dynsym (one symbol: `name` at the data) and .dynstr.
function elfWithSymbol(name: string, data: Buffer): { elf: Buffer; dataOff: number } {
  const BASE = 0x400000;
  const dataOff = 0x200;
  const dynstr = Buffer.from(`\0${name}\0`, 'latin1');
  const shstr = Buffer.from('\0.dynsym\0.dynstr\0.shstrtab\0', 'latin1');
  const dynsymOff = dataOff + data.length + 16 - ((data.length) % 16);
  const dynstrOff = dynsymOff + 48;
  const shstrOff = dynstrOff + dynstr.length;
  const shoff = Math.ceil((shstrOff + shstr.length) / 8) * 8;
  const f = Buffer.alloc(shoff + 4 * 64);
  f.writeUInt32BE(0x7f454c46, 0);
  f[4] = 2;
  f[5] = 1;
  f.writeUInt16LE(2, 16);
  f.writeUInt16LE(62, 18);
  f.writeBigUInt64LE(64n, 32); // phoff
  f.writeBigUInt64LE(BigInt(shoff), 40);
  f.writeUInt16LE(56, 54);
  f.writeUInt16LE(1, 56);
  f.writeUInt16LE(64, 58);
  f.writeUInt16LE(4, 60);
  f.writeUInt16LE(3, 62);
  // PT_LOAD
  f.writeUInt32LE(1, 64);
  f.writeUInt32LE(4, 68);
  f.writeBigUInt64LE(0n, 72);
  f.writeBigUInt64LE(BigInt(BASE), 80);
  f.writeBigUInt64LE(BigInt(BASE), 88);
  f.writeBigUInt64LE(BigInt(f.length), 96);
  f.writeBigUInt64LE(BigInt(f.length), 104);
  f.writeBigUInt64LE(0x1000n, 112);
  data.copy(f, dataOff);
  // dynsym: null symbol, then ours
  f.writeUInt32LE(1, dynsymOff + 24);
  f.writeBigUInt64LE(BigInt(BASE + dataOff), dynsymOff + 24 + 8);
  f.writeBigUInt64LE(BigInt(data.length), dynsymOff + 24 + 16);
  dynstr.copy(f, dynstrOff);
  shstr.copy(f, shstrOff);
  const sh = (i: number, nameOff: number, type: number, off: number, size: number): void => {
    const o = shoff + i * 64;
    f.writeUInt32LE(nameOff, o);
    f.writeUInt32LE(type, o + 4);
    f.writeBigUInt64LE(BigInt(off), o + 24);
    f.writeBigUInt64LE(BigInt(size), o + 32);
  };
  sh(1, 1, 11, dynsymOff, 48);
  sh(2, 9, 3, dynstrOff, dynstr.length);
  sh(3, 17, 3, shstrOff, shstr.length);
  return { elf: f, dataOff };
}

describe('node binary ICU data, in place', () => {
  it('finds the icudt<N>_dat symbol through .dynsym and a PT_LOAD', () => {
    const data = writeIcuPackage(pkg());
    const { elf, dataOff } = elfWithSymbol('icudt78_dat', data);
    expect(readDynamicSymbols(elf).map((s) => s.name)).toEqual(['', 'icudt78_dat']);
    expect(vaddrToOffset(elf, 0x400000 + dataOff, data.length)).toBe(dataOff);
    expect(vaddrToOffset(elf, 0x100, 1)).toBeUndefined();
    expect(findNodeIcu(elf)).toEqual({ symbol: 'icudt78_dat', offset: dataOff, size: data.length });
    expect(findNodeIcu(elfWithSymbol('other_dat', data).elf)).toBeUndefined();
  });

  it('replaces the package with the small one, zero-filled to the same size, nothing else touched', () => {
    const data = writeIcuPackage(pkg());
    const { elf, dataOff } = elfWithSymbol('icudt78_dat', data);
    const before = Buffer.from(elf);
    const r = shrinkNodeIcu(elf)!;
    expect(r).toEqual({ symbol: 'icudt78_dat', bytes: data.length, keptBytes: expect.any(Number), items: 10, keptItems: 6 });
    expect(r.keptBytes).toBeLessThan(data.length);
    expect(elf.length).toBe(before.length);
    expect(elf.subarray(0, dataOff).equals(before.subarray(0, dataOff))).toBe(true);
    expect(elf.subarray(dataOff + data.length).equals(before.subarray(dataOff + data.length))).toBe(true);
    const region = elf.subarray(dataOff, dataOff + data.length);
    expect(region.subarray(r.keptBytes).every((b) => b === 0)).toBe(true);
    const small = parseIcuPackage(region);
    expect(small.items.map((i) => i.name)).toEqual(shrinkIcuPackage(pkg()).items.map((i) => i.name));
    // Kept items are byte for byte the originals.
    const root = small.items.find((i) => i.name === 'icudt78l/root.res')!;
    expect(root.data.subarray(0, 100).equals(Buffer.alloc(100, 9))).toBe(true);
    // A binary without the symbol is left alone.
    const plain = elfWithSymbol('main', data).elf;
    const copy = Buffer.from(plain);
    expect(shrinkNodeIcu(plain)).toBeUndefined();
    expect(plain.equals(copy)).toBe(true);
  });
});
