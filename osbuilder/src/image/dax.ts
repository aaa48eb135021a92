// The image header: the MBR(s) and, with DAX, the NVDIMM "pfn info block" that lets a guest map
// the image through an emulated NVDIMM (QEMU nvdimm / Cloud Hypervisor pmem) with DAX, as Kata's
// osbuilder image_builder.sh + nsdax.gpl.c lay it out:
//
//   without DAX                       with DAX (Kata's layout)
//   0      MBR: p1 at 1 MiB to end    0      MBR #1: p1 at 3 MiB to end (what a block device sees)
//   1 MiB  filesystem                 4 KiB  struct nd_pfn_sb, signature "NVDIMM_PFN_INFO",
//                                            dataoff 2 MiB, align 2 MiB, mode PFN_MODE_RAM
//                                     2 MiB  MBR #2: p1 at 1 MiB (of the 2 MiB-based pmem
//                                            device) to end, i.e. at 3 MiB of the file
//                                     3 MiB  filesystem
//
// The NVDIMM driver reads the info block at 4 KiB of the namespace (the whole file), and the
// pmem block device it then creates starts at dataoff, where it finds MBR #2. Kernels or VMMs
// without NVDIMM support see MBR #1, which points at the same filesystem.
import { buildMbr, SECTOR_SIZE } from './mbr';

export const MiB = 1024 * 1024;
/** Where the partition starts without DAX (Kata: rootfs_start=1 MiB). */
export const PARTITION_OFFSET = 1 * MiB;
/** Space for MBR #1 + the info block before the pmem data (Kata: dax_header_sz=2 MiB). */
export const DAX_HEADER_SIZE = 2 * MiB;
/** Alignment recorded in the info block (Kata: dax_alignment=2 MiB, for 2 MiB huge pages). */
export const DAX_ALIGNMENT = 2 * MiB;
/** Namespace-relative offset at which the NVDIMM driver looks for the info block (SZ_4K). */
export const PFN_INFO_OFFSET = 4096;
/** sizeof(struct nd_pfn_sb). */
export const PFN_INFO_SIZE = 4096;
/** 16 bytes: "NVDIMM_PFN_INFO" and its NUL. */
export const PFN_SIGNATURE = 'NVDIMM_PFN_INFO';
/** enum nd_pfn_mode { PFN_MODE_NONE, PFN_MODE_RAM, PFN_MODE_PMEM }: Kata uses RAM (page structs in RAM). */
export const PFN_MODE_NONE = 0;
export const PFN_MODE_RAM = 1;
export const PFN_MODE_PMEM = 2;
/** Kata writes minor version 2 (the version that added `align`). */
export const PFN_VERSION_MINOR = 2;

/** Byte offsets of struct nd_pfn_sb's fields (drivers/nvdimm/pfn.h; all little endian). */
export const PFN_FIELDS = {
  signature: 0, // u8[16]
  uuid: 16, // u8[16]
  parentUuid: 32, // u8[16]
  flags: 48, // le32
  versionMajor: 52, // le16
  versionMinor: 54, // le16
  dataoff: 56, // le64, relative to the namespace base
  npfns: 64, // le64
  mode: 72, // le32
  startPad: 76, // le32 (minor 1)
  endTrunc: 80, // le32 (minor 1)
  align: 84, // le32 (minor 2)
  // 88..4087 padding (zero)
  checksum: 4088, // le64
} as const;

/**
 * The kernel's nd_fletcher64 over `buf` read as little-endian u32 words: lo32 wraps at 2^32,
 * hi32 accumulates lo32; the result is hi32 << 32 | lo32 in 64 bits.
 */
export function ndFletcher64(buf: Uint8Array): bigint {
  if (buf.length % 4 !== 0) throw new RangeError('fletcher64 needs a multiple of 4 bytes');
  const v = new DataView(buf.buffer, buf.byteOffset, buf.length);
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < buf.length; i += 4) {
    lo = (lo + v.getUint32(i, true)) >>> 0;
    hi = (hi + lo) >>> 0; // only the low 32 bits of hi32 survive the shift
  }
  return (BigInt(hi) << 32n) | BigInt(lo);
}

export interface PfnInfo {
  dataOffset: number;
  alignment: number;
  mode?: number;
  versionMinor?: number;
}

/** The 4096-byte info block, checksum included (what Kata's nsdax writes at 4 KiB). */
export function buildPfnInfo(o: PfnInfo): Buffer {
  for (const [k, v] of [['dataOffset', o.dataOffset], ['alignment', o.alignment]] as const) {
    if (!Number.isSafeInteger(v) || v <= 0) throw new RangeError(`bad ${k} ${v}`);
  }
  if (o.alignment > 0xffff_ffff) throw new RangeError(`alignment ${o.alignment} does not fit 32 bits`);
  const b = Buffer.alloc(PFN_INFO_SIZE);
  b.write(PFN_SIGNATURE, PFN_FIELDS.signature, 'latin1'); // 15 chars + the NUL already there
  b.writeUInt16LE(o.versionMinor ?? PFN_VERSION_MINOR, PFN_FIELDS.versionMinor);
  b.writeBigUInt64LE(BigInt(o.dataOffset), PFN_FIELDS.dataoff);
  b.writeUInt32LE(o.mode ?? PFN_MODE_RAM, PFN_FIELDS.mode);
  b.writeUInt32LE(o.alignment, PFN_FIELDS.align);
  b.writeBigUInt64LE(ndFletcher64(b), PFN_FIELDS.checksum); // computed with the checksum field zero
  return b;
}

export interface ParsedPfnInfo {
  signature: string;
  uuid: Buffer;
  parentUuid: Buffer;
  flags: number;
  versionMajor: number;
  versionMinor: number;
  dataOffset: bigint;
  npfns: bigint;
  mode: number;
  startPad: number;
  endTrunc: number;
  alignment: number;
  checksum: bigint;
  /** The stored checksum matches the block (as the kernel's nd_pfn_validate checks it). */
  checksumOk: boolean;
}

export function parsePfnInfo(block: Uint8Array): ParsedPfnInfo {
  if (block.length < PFN_INFO_SIZE) throw new RangeError('an info block is 4096 bytes');
  const b = Buffer.from(block.buffer, block.byteOffset, PFN_INFO_SIZE);
  const zeroed = Buffer.from(b);
  zeroed.fill(0, PFN_FIELDS.checksum, PFN_FIELDS.checksum + 8);
  const checksum = b.readBigUInt64LE(PFN_FIELDS.checksum);
  const nul = b.subarray(0, 16).indexOf(0);
  return {
    signature: b.subarray(0, nul < 0 ? 16 : nul).toString('latin1'),
    uuid: Buffer.from(b.subarray(16, 32)),
    parentUuid: Buffer.from(b.subarray(32, 48)),
    flags: b.readUInt32LE(PFN_FIELDS.flags),
    versionMajor: b.readUInt16LE(PFN_FIELDS.versionMajor),
    versionMinor: b.readUInt16LE(PFN_FIELDS.versionMinor),
    dataOffset: b.readBigUInt64LE(PFN_FIELDS.dataoff),
    npfns: b.readBigUInt64LE(PFN_FIELDS.npfns),
    mode: b.readUInt32LE(PFN_FIELDS.mode),
    startPad: b.readUInt32LE(PFN_FIELDS.startPad),
    endTrunc: b.readUInt32LE(PFN_FIELDS.endTrunc),
    alignment: b.readUInt32LE(PFN_FIELDS.align),
    checksum,
    checksumOk: checksum === ndFletcher64(zeroed),
  };
}

export interface HeaderLayout {
  totalBytes: number;
  dax: boolean;
  /** File offset of the filesystem (partition 1). */
  partitionOffset: number;
  /** Size of the filesystem region: from partitionOffset to the end of the image. */
  partitionBytes: number;
}

/** File offset of partition 1 (the filesystem): 1 MiB, or 3 MiB behind the DAX header. */
export function partitionOffset(dax: boolean): number {
  return dax ? DAX_HEADER_SIZE + PARTITION_OFFSET : PARTITION_OFFSET;
}

/** Where things go in an image of `totalBytes` (a multiple of 1 MiB; with DAX, of 2 MiB). */
export function headerLayout(totalBytes: number, dax: boolean): HeaderLayout {
  const offset = partitionOffset(dax);
  if (!Number.isSafeInteger(totalBytes) || totalBytes % MiB !== 0) throw new RangeError(`image size ${totalBytes} is not a whole number of MiB`);
  if (dax && totalBytes % DAX_ALIGNMENT !== 0) throw new RangeError(`a DAX image size must be a multiple of ${DAX_ALIGNMENT} bytes`);
  if (totalBytes <= offset) throw new RangeError(`image size ${totalBytes} leaves no room for the partition`);
  return { totalBytes, dax, partitionOffset: offset, partitionBytes: totalBytes - offset };
}

export interface HeaderWrite {
  offset: number;
  data: Buffer;
}

/**
 * The bytes to write at the start of the image (everything else before partitionOffset is
 * zero). `signatures` are the disk signatures of MBR #1 and (DAX) MBR #2.
 */
export function headerWrites(layout: HeaderLayout, signatures: { disk: number; pmem?: number }): HeaderWrite[] {
  const sectors = layout.partitionBytes / SECTOR_SIZE;
  const writes: HeaderWrite[] = [
    { offset: 0, data: buildMbr({ diskSignature: signatures.disk, partitions: [{ startLba: layout.partitionOffset / SECTOR_SIZE, sectors }] }) },
  ];
  if (layout.dax) {
    writes.push({ offset: PFN_INFO_OFFSET, data: buildPfnInfo({ dataOffset: DAX_HEADER_SIZE, alignment: DAX_ALIGNMENT }) });
    const pmemSig = signatures.pmem ?? signatures.disk;
    writes.push({
      offset: DAX_HEADER_SIZE,
      data: buildMbr({ diskSignature: pmemSig, partitions: [{ startLba: PARTITION_OFFSET / SECTOR_SIZE, sectors }] }),
    });
  }
  return writes;
}
