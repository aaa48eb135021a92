// osbuilder image, pure parts: the MBR bytes, the NVDIMM pfn info block (DAX header), the image
// layout, derived identifiers, the rootfs scan and init check, the ext4 size plan, dumpe2fs
// parsing, and option parsing (flags and Kata's environment names).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  buildMbr,
  decodeChs,
  encodeChs,
  lbaToChs,
  parseMbr,
  BOOT_SIGNATURE_OFFSET,
  DISK_SIGNATURE_OFFSET,
  PARTITION_TABLE_OFFSET,
} from '../../osbuilder/src/image/mbr';
import {
  buildPfnInfo,
  headerLayout,
  headerWrites,
  ndFletcher64,
  parsePfnInfo,
  partitionOffset,
  DAX_ALIGNMENT,
  DAX_HEADER_SIZE,
  MiB,
  PFN_INFO_OFFSET,
  PFN_INFO_SIZE,
} from '../../osbuilder/src/image/dax';
import {
  derivedU32,
  ext4JournalBlocks,
  ext4OverheadBytes,
  findInit,
  parseDumpe2fs,
  resolveInRoot,
  scanRootfs,
  uuidV5,
  type RootfsScan,
} from '../../osbuilder/src/image/fs';
import { imageOptions, planExt4, sourceDateEpoch, DEFAULT_IMAGE, MAX_IMAGE_BYTES } from '../../osbuilder/src/image/command';
import { EXIT, OsbuilderError } from '../../osbuilder/src/util/errors';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-osb-image-unit-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** The OsbuilderError `f` throws (fails the test when it throws nothing or something else). */
function osbError(f: () => unknown): OsbuilderError {
  try {
    f();
  } catch (err) {
    if (err instanceof OsbuilderError) return err;
    throw err;
  }
  throw new Error('expected an OsbuilderError');
}

describe('MBR', () => {
  it('one Linux partition at 1 MiB: signature 0x55AA, disk signature, entry fields, zero boot code and unused entries', () => {
    const b = buildMbr({ diskSignature: 0x12345678, partitions: [{ startLba: 2048, sectors: 260096 }] });
    expect(b.length).toBe(512);
    expect(b[510]).toBe(0x55);
    expect(b[511]).toBe(0xaa);
    expect(b.subarray(DISK_SIGNATURE_OFFSET, DISK_SIGNATURE_OFFSET + 4)).toEqual(Buffer.from([0x78, 0x56, 0x34, 0x12]));
    expect(b.subarray(0, 440).every((x) => x === 0)).toBe(true);
    expect(b.subarray(444, 446)).toEqual(Buffer.from([0, 0]));
    const e = b.subarray(PARTITION_TABLE_OFFSET, PARTITION_TABLE_OFFSET + 16);
    expect(e[0]).toBe(0x00); // not bootable
    expect([...e.subarray(1, 4)]).toEqual([32, 33, 0]); // CHS 0/32/33: what fdisk writes for LBA 2048
    expect(e[4]).toBe(0x83);
    // last LBA 262143 = cylinder 16, head 81, sector 1 (255 heads, 63 sectors/track)
    expect([...e.subarray(5, 8)]).toEqual([81, 1, 16]);
    expect(e.readUInt32LE(8)).toBe(2048);
    expect(e.readUInt32LE(12)).toBe(260096);
    expect(b.subarray(462, 510).every((x) => x === 0)).toBe(true);
  });

  it('LBA -> CHS in the 255/63 geometry, with the cylinder high bits in the sector byte and 1023/254/63 past the limit', () => {
    expect(lbaToChs(0)).toEqual({ cylinder: 0, head: 0, sector: 1 });
    expect(lbaToChs(62)).toEqual({ cylinder: 0, head: 0, sector: 63 });
    expect(lbaToChs(63)).toEqual({ cylinder: 0, head: 1, sector: 1 });
    expect(lbaToChs(16064)).toEqual({ cylinder: 0, head: 254, sector: 63 });
    expect(lbaToChs(16065)).toEqual({ cylinder: 1, head: 0, sector: 1 });
    expect(encodeChs(lbaToChs(300 * 16065))).toEqual([0, 0x41, 0x2c]); // cylinder 300 = 0x12c
    expect(encodeChs(lbaToChs(1023 * 16065 + 16064))).toEqual([0xfe, 0xff, 0xff]);
    expect(encodeChs(lbaToChs(1024 * 16065))).toEqual([0xfe, 0xff, 0xff]);
    expect(encodeChs(lbaToChs(0xffffffff))).toEqual([0xfe, 0xff, 0xff]);
    expect(decodeChs([7, 0x41, 0x2c])).toEqual({ head: 7, sector: 1, cylinder: 300 });
  });

  it('a large disk: the entry holds the LBA values; CHS is clamped', () => {
    const sectors = 0xffffffff - 2048 + 1; // up to the last addressable sector
    const b = buildMbr({ diskSignature: 1, partitions: [{ startLba: 2048, sectors, bootable: true, type: 0x0c }] });
    expect(b[446]).toBe(0x80);
    expect(b[450]).toBe(0x0c);
    expect([...b.subarray(451, 454)]).toEqual([0xfe, 0xff, 0xff]);
    expect(b.readUInt32LE(454)).toBe(2048);
    expect(b.readUInt32LE(458)).toBe(sectors);
  });

  it('parseMbr reads back what buildMbr writes; no 0x55AA, no table', () => {
    const parts = [
      { startLba: 2048, sectors: 4096 },
      { startLba: 8192, sectors: 100, type: 0x82, bootable: true },
    ];
    const b = buildMbr({ diskSignature: 0xdeadbeef, partitions: parts });
    const p = parseMbr(b)!;
    expect(p.diskSignature).toBe(0xdeadbeef);
    expect(p.partitions.map(({ slot, startLba, sectors, type, bootable }) => ({ slot, startLba, sectors, type, bootable }))).toEqual([
      { slot: 1, startLba: 2048, sectors: 4096, type: 0x83, bootable: false },
      { slot: 2, startLba: 8192, sectors: 100, type: 0x82, bootable: true },
    ]);
    expect(p.partitions[1]!.lastChs).toEqual(lbaToChs(8291));
    const bad = Buffer.from(b);
    bad[BOOT_SIGNATURE_OFFSET + 1] = 0;
    expect(parseMbr(bad)).toBeUndefined();
    expect(parseMbr(Buffer.alloc(100))).toBeUndefined();
  });

  it('refuses tables it cannot write', () => {
    expect(() => buildMbr({ diskSignature: 1, partitions: [{ startLba: 0, sectors: 10 }] })).toThrow(RangeError);
    expect(() => buildMbr({ diskSignature: 1, partitions: [{ startLba: 1, sectors: 0 }] })).toThrow(RangeError);
    expect(() => buildMbr({ diskSignature: 1, partitions: [{ startLba: 2048, sectors: 0xffffffff }] })).toThrow(/2 TiB/);
    expect(() => buildMbr({ diskSignature: 1, partitions: [{ startLba: 2048, sectors: 100 }, { startLba: 2100, sectors: 10 }] })).toThrow(/overlaps/);
    expect(() => buildMbr({ diskSignature: 1, partitions: Array.from({ length: 5 }, (_, i) => ({ startLba: 1 + i * 10, sectors: 10 })) })).toThrow(/at most 4/);
    expect(() => buildMbr({ diskSignature: -1, partitions: [] })).toThrow(/signature/);
    expect(() => buildMbr({ diskSignature: 2 ** 32, partitions: [] })).toThrow(/signature/);
    expect(() => buildMbr({ diskSignature: 1, partitions: [{ startLba: 1, sectors: 1, type: 0 }] })).toThrow(/type/);
  });
});

/** The kernel's nd_fletcher64, written independently with 64-bit BigInt arithmetic. */
function fletcherRef(b: Buffer): bigint {
  const M32 = 0xffffffffn;
  const M64 = 0xffffffffffffffffn;
  let lo = 0n;
  let hi = 0n;
  for (let i = 0; i < b.length; i += 4) {
    lo = (lo + BigInt(b.readUInt32LE(i))) & M32;
    hi = (hi + lo) & M64;
  }
  return ((hi << 32n) | lo) & M64;
}

describe('NVDIMM pfn info block (DAX header)', () => {
  it('fletcher64: sums of little-endian words, lo wraps at 32 bits, hi keeps its low 32 bits', () => {
    const words = (...w: number[]): Buffer => {
      const b = Buffer.alloc(w.length * 4);
      w.forEach((x, i) => b.writeUInt32LE(x, i * 4));
      return b;
    };
    expect(ndFletcher64(words(1, 2, 3))).toBe((10n << 32n) | 6n);
    expect(ndFletcher64(words(0xffffffff, 2))).toBe(1n); // hi = 0x1_0000_0000 -> shifted out
    expect(() => ndFletcher64(Buffer.alloc(3))).toThrow(RangeError);
    const r = Buffer.alloc(4096);
    for (let i = 0; i < r.length; i++) r[i] = (i * 7919 + 13) & 0xff;
    expect(ndFletcher64(r)).toBe(fletcherRef(r));
  });

  it("Kata's block: signature, version 0.2, dataoff 2 MiB, mode RAM, align 2 MiB, zero uuids/padding, checksum", () => {
    const b = buildPfnInfo({ dataOffset: DAX_HEADER_SIZE, alignment: DAX_ALIGNMENT });
    expect(b.length).toBe(4096);
    expect(b.subarray(0, 16)).toEqual(Buffer.from('NVDIMM_PFN_INFO\0', 'latin1'));
    expect(b.subarray(16, 48).every((x) => x === 0)).toBe(true); // uuid, parent_uuid
    expect(b.readUInt32LE(48)).toBe(0); // flags
    expect(b.readUInt16LE(52)).toBe(0); // version_major
    expect(b.readUInt16LE(54)).toBe(2); // version_minor
    expect(b.readBigUInt64LE(56)).toBe(2n * 1024n * 1024n); // dataoff
    expect(b.readBigUInt64LE(64)).toBe(0n); // npfns
    expect(b.readUInt32LE(72)).toBe(1); // PFN_MODE_RAM
    expect(b.readUInt32LE(76)).toBe(0); // start_pad
    expect(b.readUInt32LE(80)).toBe(0); // end_trunc
    expect(b.readUInt32LE(84)).toBe(2 * 1024 * 1024); // align
    expect(b.subarray(88, 4088).every((x) => x === 0)).toBe(true);
    const zeroed = Buffer.from(b);
    zeroed.fill(0, 4088);
    expect(b.readBigUInt64LE(4088)).toBe(fletcherRef(zeroed));
    // Golden value, from a separate (Python) implementation of the kernel's algorithm.
    expect(b.readBigUInt64LE(4088)).toBe(0x685b032be3943830n);
  });

  it('parsePfnInfo reads the fields and checks the checksum like nd_pfn_validate', () => {
    const b = buildPfnInfo({ dataOffset: 4 * MiB, alignment: 2 * MiB, mode: 2, versionMinor: 3 });
    const p = parsePfnInfo(b);
    expect(p).toMatchObject({ signature: 'NVDIMM_PFN_INFO', versionMajor: 0, versionMinor: 3, dataOffset: 4194304n, mode: 2, alignment: 2097152, checksumOk: true });
    const bad = Buffer.from(b);
    bad[100] = 1; // padding must be covered by the checksum
    expect(parsePfnInfo(bad).checksumOk).toBe(false);
    expect(() => buildPfnInfo({ dataOffset: 0, alignment: 1 })).toThrow(RangeError);
  });
});

describe('image layout', () => {
  it('without DAX: one MBR, the partition from 1 MiB to the end', () => {
    const l = headerLayout(128 * MiB, false);
    expect(l).toEqual({ totalBytes: 128 * MiB, dax: false, partitionOffset: MiB, partitionBytes: 127 * MiB });
    const w = headerWrites(l, { disk: 0xabcdef01, pmem: 5 });
    expect(w.map((x) => [x.offset, x.data.length])).toEqual([[0, 512]]);
    const m = parseMbr(w[0]!.data)!;
    expect(m.diskSignature).toBe(0xabcdef01);
    expect(m.partitions.map((p) => [p.startLba, p.sectors, p.type, p.bootable])).toEqual([[2048, (127 * MiB) / 512, 0x83, false]]);
  });

  it("with DAX (Kata's layout): MBR #1 -> 3 MiB, info block at 4 KiB, MBR #2 at 2 MiB -> 1 MiB of the pmem device", () => {
    expect(partitionOffset(true)).toBe(3 * MiB);
    const l = headerLayout(128 * MiB, true);
    expect(l.partitionOffset).toBe(3 * MiB);
    expect(l.partitionBytes).toBe(125 * MiB);
    const w = headerWrites(l, { disk: 7, pmem: 9 });
    expect(w.map((x) => [x.offset, x.data.length])).toEqual([
      [0, 512],
      [PFN_INFO_OFFSET, PFN_INFO_SIZE],
      [2 * MiB, 512],
    ]);
    const m1 = parseMbr(w[0]!.data)!;
    const m2 = parseMbr(w[2]!.data)!;
    expect(m1.diskSignature).toBe(7);
    expect(m2.diskSignature).toBe(9);
    expect(m1.partitions.map((p) => [p.startLba, p.sectors])).toEqual([[6144, (125 * MiB) / 512]]);
    expect(m2.partitions.map((p) => [p.startLba, p.sectors])).toEqual([[2048, (125 * MiB) / 512]]);
    // Both point at the same bytes: MBR #2's sectors count from the pmem data offset.
    expect(2 * MiB + m2.partitions[0]!.startLba * 512).toBe(m1.partitions[0]!.startLba * 512);
    const info = parsePfnInfo(w[1]!.data);
    expect(info.dataOffset).toBe(BigInt(2 * MiB));
    expect(info.checksumOk).toBe(true);
  });

  it('refuses sizes that are not whole MiB (DAX: 2 MiB) or leave no partition', () => {
    expect(() => headerLayout(128 * MiB + 512, false)).toThrow(RangeError);
    expect(() => headerLayout(3 * MiB, true)).toThrow(/DAX/);
    expect(() => headerLayout(MiB, false)).toThrow(/no room/);
    expect(() => headerLayout(2 * MiB, true)).toThrow(/no room/);
  });
});

describe('derived identifiers', () => {
  it('uuidV5 is RFC 4122 version 5 (the standard test vector) and stable', () => {
    expect(uuidV5('www.example.com', '6ba7b810-9dad-11d1-80b4-00c04fd430c8')).toBe('2ed6657d-e927-568b-95e1-2665a8aea6a2');
    const a = uuidV5('x');
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(uuidV5('x')).toBe(a);
    expect(uuidV5('y')).not.toBe(a);
  });

  it('derivedU32: deterministic, non-zero 32-bit', () => {
    const v = derivedU32('a');
    expect(v).toBe(derivedU32('a'));
    expect(v).not.toBe(derivedU32('b'));
    expect(Number.isInteger(v) && v > 0 && v <= 0xffffffff).toBe(true);
  });
});

describe('rootfs scan and init', () => {
  const mk = (name: string): string => {
    const root = path.join(tmp, name);
    fs.mkdirSync(path.join(root, 'sbin'), { recursive: true });
    fs.mkdirSync(path.join(root, 'etc'));
    fs.mkdirSync(path.join(root, 'usr/bin'), { recursive: true });
    fs.writeFileSync(path.join(root, 'usr/bin/agent'), '#!/bin/sh\n', { mode: 0o755 });
    fs.symlinkSync('/usr/bin/agent', path.join(root, 'sbin/init'));
    fs.writeFileSync(path.join(root, 'etc/hostname'), 'guest\n');
    fs.linkSync(path.join(root, 'etc/hostname'), path.join(root, 'etc/hostname2'));
    fs.symlinkSync('x'.repeat(80), path.join(root, 'etc/long'));
    return root;
  };

  it('counts entries, files, hard links; the digest covers content and modes, not times', () => {
    const a = mk('scan-a');
    const s = scanRootfs(a, { blockSize: 4096, ignoreOwners: true });
    expect(s).toMatchObject({ entries: 9, files: 2, dirs: 4, symlinks: 2, hardlinks: 1, special: 0, inodes: 8, bytes: 16 });
    // 4 dirs (1 block each) + the root dir + 2 files + the long symlink
    expect(s.ext4ContentBytes).toBe((5 + 2 + 1) * 4096);
    expect(s.digest).toMatch(/^[0-9a-f]{64}$/);
    fs.utimesSync(path.join(a, 'etc/hostname'), 1, 1);
    expect(scanRootfs(a, { blockSize: 4096, ignoreOwners: true }).digest).toBe(s.digest);
    fs.writeFileSync(path.join(a, 'etc/hostname'), 'guesT\n');
    const s2 = scanRootfs(a, { blockSize: 4096, ignoreOwners: true });
    expect(s2.digest).not.toBe(s.digest);
    fs.chmodSync(path.join(a, 'etc/hostname'), 0o600);
    expect(scanRootfs(a, { blockSize: 4096, ignoreOwners: true }).digest).not.toBe(s2.digest);
  });

  it('owners are in the digest unless ignored', () => {
    const a = mk('scan-own');
    const before = scanRootfs(a, { blockSize: 4096, ignoreOwners: false }).digest;
    const ignored = scanRootfs(a, { blockSize: 4096, ignoreOwners: true }).digest;
    fs.lchownSync(path.join(a, 'etc/hostname'), 1234, 1234);
    expect(scanRootfs(a, { blockSize: 4096, ignoreOwners: false }).digest).not.toBe(before);
    expect(scanRootfs(a, { blockSize: 4096, ignoreOwners: true }).digest).toBe(ignored);
  });

  it('init: symlinks resolve inside the rootfs; /init is the fallback; dangling or non-executable is no init', () => {
    const a = mk('init-a');
    expect(resolveInRoot(a, '/sbin/init')).toBe(path.join(a, 'usr/bin/agent'));
    expect(findInit(a)).toBe('/sbin/init');
    fs.symlinkSync('../../../../..', path.join(a, 'up'));
    expect(resolveInRoot(a, '/up/etc/hostname')).toBe(path.join(a, 'etc/hostname')); // .. stops at the root
    fs.rmSync(path.join(a, 'usr/bin/agent'));
    expect(findInit(a)).toBeUndefined(); // dangling (the host's /usr/bin/agent does not count)
    fs.writeFileSync(path.join(a, 'init'), 'x', { mode: 0o644 });
    expect(findInit(a)).toBeUndefined();
    fs.chmodSync(path.join(a, 'init'), 0o755);
    expect(findInit(a)).toBe('/init');
    fs.symlinkSync('loop', path.join(a, 'loop'));
    expect(resolveInRoot(a, '/loop')).toBeUndefined();
  });
});

describe('ext4 sizing', () => {
  it("libext2fs's default journal sizes", () => {
    expect(ext4JournalBlocks(1000)).toBe(0);
    expect(ext4JournalBlocks(32767)).toBe(1024);
    expect(ext4JournalBlocks(32768)).toBe(4096);
    expect(ext4JournalBlocks(512 * 1024)).toBe(16384);
    expect(ext4JournalBlocks(100 * 1024 * 1024)).toBe(262144);
  });

  it('overhead: the journal, inode tables (1/64 at 256-byte inodes per 16 KiB) and a margin', () => {
    const o = ext4OverheadBytes(1024 * MiB, 4096, 0);
    expect(o).toBeGreaterThan(16 * MiB + 16 * MiB); // journal + inode tables
    expect(o).toBeLessThan(64 * MiB);
    expect(ext4OverheadBytes(1024 * MiB, 4096, 1_000_000)).toBeGreaterThan(o + 200 * MiB); // forced inodes
  });

  const scan = (bytes: number, inodes = 100): RootfsScan => ({ entries: inodes, files: inodes, dirs: 0, symlinks: 0, special: 0, hardlinks: 0, bytes, ext4ContentBytes: bytes, inodes, digest: '' });

  it('plan: the smallest multiple of the alignment that holds the tree, the free space and the overhead', () => {
    const p = planExt4(scan(100 * MiB), { freeBytes: 50 * MiB, alignBytes: 128 * MiB, partitionOffset: MiB, blockSize: 4096 });
    expect(p.totalBytes).toBe(256 * MiB);
    expect(p.fsBytes).toBe(255 * MiB);
    expect(p.inodes).toBe(Math.floor((255 * MiB) / 16384));
    const tight = planExt4(scan(100 * MiB), { freeBytes: 0, alignBytes: MiB, partitionOffset: MiB, blockSize: 4096 });
    expect(tight.totalBytes % MiB).toBe(0);
    expect(tight.fsBytes - ext4OverheadBytes(tight.fsBytes, 4096, 0)).toBeGreaterThanOrEqual(100 * MiB);
    expect(tight.fsBytes - MiB - ext4OverheadBytes(tight.fsBytes - MiB, 4096, 0)).toBeLessThan(100 * MiB);
    const bigger = planExt4(scan(100 * MiB), { freeBytes: 0, alignBytes: MiB, partitionOffset: MiB, blockSize: 4096, minTotal: tight.totalBytes + 10 * MiB });
    expect(bigger.totalBytes).toBe(tight.totalBytes + 10 * MiB);
    expect(osbError(() => planExt4(scan(MAX_IMAGE_BYTES), { freeBytes: 0, alignBytes: MiB, partitionOffset: MiB, blockSize: 4096 })).exitCode).toBe(EXIT.FAILED);
  });

  it('dumpe2fs: header counts and the in-use inodes from the free ranges of each group', () => {
    const text = [
      'Inode count:              48',
      'Block count:              100',
      'Free blocks:              55',
      'Block size:               4096',
      'First inode:              11',
      'Inodes per group:         16',
      '',
      'Group 0: (Blocks 0-32767) csum 0x1 [ITABLE_ZEROED]',
      '  Free inodes: 14-15',
      'Group 1: (Blocks 32768-65535) csum 0x2 [INODE_UNINIT]',
      '  Free inodes: 17, 19-32',
      'Group 2: (Blocks 65536-99) csum 0x3',
      '  Free inodes: ',
    ].join('\n');
    const i = parseDumpe2fs(text);
    expect(i).toMatchObject({ blockSize: 4096, freeBlocks: 55, inodeCount: 48, firstIno: 11 });
    expect(i.used).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 16, 18, ...Array.from({ length: 16 }, (_, k) => 33 + k)]);
    expect(() => parseDumpe2fs('nothing')).toThrow(OsbuilderError);
  });
});

describe('options', () => {
  const env = { SOURCE_DATE_EPOCH: '1700000000' };

  it('flags, with defaults: ext4, Kata image name, no free space, 128 MiB alignment, 4 KiB blocks, no DAX', () => {
    expect(imageOptions(['--rootfs', 'r'], env)).toEqual({
      rootfs: 'r',
      output: DEFAULT_IMAGE,
      fs: 'ext4',
      freeSpaceMiB: 0,
      alignMiB: 128,
      dax: false,
      blockSize: 4096,
      keepOwners: false,
      epoch: 1700000000,
    });
    expect(imageOptions(['r', '-f', 'erofs', '-o', 'x.img', '-r', '64', '--align', '2', '--dax', '--keep-owners'], env)).toMatchObject({
      rootfs: 'r',
      fs: 'erofs',
      output: 'x.img',
      freeSpaceMiB: 64,
      alignMiB: 2,
      dax: true,
      keepOwners: true,
    });
  });

  it("Kata's environment names, the flags win", () => {
    const kenv = { ...env, ROOTFS_DIR: '/rf', FS_TYPE: 'erofs', IMAGE: 'k.img', ROOT_FREE_SPACE: '10', BLOCK_SIZE: '4096' };
    expect(imageOptions([], kenv)).toMatchObject({ rootfs: '/rf', fs: 'erofs', output: 'k.img', freeSpaceMiB: 10, blockSize: 4096 });
    expect(imageOptions(['--rootfs', 'r', '--fs', 'ext4', '-o', 'o.img', '--free-space', '1', '--block-size', '1024'], kenv)).toMatchObject({
      rootfs: 'r',
      fs: 'ext4',
      output: 'o.img',
      freeSpaceMiB: 1,
      blockSize: 1024,
    });
  });

  it('bad command lines are usage errors', () => {
    const bad: [string[], NodeJS.ProcessEnv, RegExp][] = [
      [[], env, /no rootfs/],
      [['r', '--rootfs', 'r'], env, /either/],
      [['r', '--fs', 'xfs'], env, /unsupported filesystem "xfs"/],
      [['r'], { ...env, FS_TYPE: 'btrfs' }, /FS_TYPE/],
      [['r', '--free-space', '-1'], env, /--free-space/],
      [['r', '--free-space', '1.5'], env, /not a whole number/],
      [['r'], { ...env, ROOT_FREE_SPACE: 'lots' }, /ROOT_FREE_SPACE/],
      [['r', '--align', '0'], env, /--align/],
      [['r', '--block-size', '512'], env, /block size 512/],
      [['r', '--fs', 'erofs', '--block-size', '1024'], env, /erofs needs/],
      [['r', '--dax', '--block-size', '2048'], env, /--dax needs/],
      [['r', '--dax', '--align', '3'], env, /multiple of 2/],
      [['r', '--output', ''], env, /empty/],
      [['r', '--bogus'], env, /bogus/],
      [['r'], { SOURCE_DATE_EPOCH: 'yesterday' }, /SOURCE_DATE_EPOCH/],
    ];
    for (const [args, e, re] of bad) {
      const err = osbError(() => imageOptions(args, e));
      expect(err.exitCode, args.join(' ')).toBe(EXIT.USAGE);
      expect(err.message, args.join(' ')).toMatch(re);
    }
  });

  it('SOURCE_DATE_EPOCH: the environment, else the last git commit (a number)', () => {
    expect(sourceDateEpoch({ SOURCE_DATE_EPOCH: '0' })).toBe(0);
    expect(sourceDateEpoch({ SOURCE_DATE_EPOCH: '4294967295' })).toBe(4294967295);
    expect(osbError(() => sourceDateEpoch({ SOURCE_DATE_EPOCH: '4294967296' })).exitCode).toBe(EXIT.USAGE);
    expect(Number.isInteger(sourceDateEpoch({}))).toBe(true);
  });
});
