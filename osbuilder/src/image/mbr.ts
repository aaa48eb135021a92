// A classic MBR (DOS) partition table, written byte by byte: no parted/sfdisk needed, and the
// result depends only on the arguments (the disk signature is given, never random).
//
// Sector 0 layout (512 bytes): 440 bytes of boot code (left zero: the image is not booted
// through a BIOS boot loader), the 32-bit disk signature at 440, two zero bytes at 444, four
// 16-byte partition entries at 446, and the boot signature 0x55 0xAA at 510.
// A partition entry: status (0x80 bootable, 0x00 not), CHS of the first sector (3 bytes), type,
// CHS of the last sector (3 bytes), first LBA (u32 LE), number of sectors (u32 LE).

export const SECTOR_SIZE = 512;
export const MBR_SIZE = 512;
/** Offset of the disk signature (a.k.a. NT disk identifier) in sector 0. */
export const DISK_SIGNATURE_OFFSET = 440;
export const PARTITION_TABLE_OFFSET = 446;
export const PARTITION_ENTRY_SIZE = 16;
export const BOOT_SIGNATURE_OFFSET = 510;
/** Partition type "Linux" (any native Linux filesystem). */
export const PART_TYPE_LINUX = 0x83;
/** The largest LBA value an MBR entry can hold. */
export const MAX_LBA = 0xffff_ffff;

/** The CHS geometry every partitioning tool has used since the 1990s for LBA disks. */
export const CHS_HEADS = 255;
export const CHS_SECTORS_PER_TRACK = 63;
/** CHS fields of sectors beyond cylinder 1023 are "1023/254/63" (encoded fe ff ff). */
const CHS_MAX_CYLINDER = 1023;

export interface MbrPartition {
  /** First sector (LBA), > 0. */
  startLba: number;
  /** Number of sectors, > 0. */
  sectors: number;
  /** Partition type; default 0x83 (Linux). */
  type?: number;
  /** Status byte 0x80; default false. */
  bootable?: boolean;
}

export interface Mbr {
  /** 32-bit disk signature (unsigned). */
  diskSignature: number;
  /** Up to four primary partitions, in slot order. */
  partitions: MbrPartition[];
}

export interface Chs {
  cylinder: number;
  head: number;
  sector: number;
}

/** The CHS address of `lba` in the 255/63 geometry, clamped to 1023/254/63 past cylinder 1023. */
export function lbaToChs(lba: number): Chs {
  if (!Number.isSafeInteger(lba) || lba < 0) throw new RangeError(`bad LBA ${lba}`);
  const perCylinder = CHS_HEADS * CHS_SECTORS_PER_TRACK;
  const cylinder = Math.floor(lba / perCylinder);
  if (cylinder > CHS_MAX_CYLINDER) return { cylinder: CHS_MAX_CYLINDER, head: CHS_HEADS - 1, sector: CHS_SECTORS_PER_TRACK };
  return { cylinder, head: Math.floor(lba / CHS_SECTORS_PER_TRACK) % CHS_HEADS, sector: (lba % CHS_SECTORS_PER_TRACK) + 1 };
}

/** The three bytes of a CHS field: head; sector (bits 0-5) with cylinder bits 8-9 (bits 6-7); cylinder bits 0-7. */
export function encodeChs(c: Chs): [number, number, number] {
  return [c.head & 0xff, (c.sector & 0x3f) | ((c.cylinder >> 2) & 0xc0), c.cylinder & 0xff];
}

export function decodeChs(b: ArrayLike<number>): Chs {
  return { head: b[0]!, sector: b[1]! & 0x3f, cylinder: ((b[1]! & 0xc0) << 2) | b[2]! };
}

function checkPartitions(parts: MbrPartition[]): void {
  if (parts.length > 4) throw new RangeError(`an MBR holds at most 4 primary partitions, not ${parts.length}`);
  const spans: [number, number][] = [];
  for (const [i, p] of parts.entries()) {
    if (!Number.isSafeInteger(p.startLba) || p.startLba < 1) throw new RangeError(`partition ${i + 1}: bad start LBA ${p.startLba}`);
    if (!Number.isSafeInteger(p.sectors) || p.sectors < 1) throw new RangeError(`partition ${i + 1}: bad size ${p.sectors} sectors`);
    if (p.startLba > MAX_LBA || p.sectors > MAX_LBA || p.startLba + p.sectors - 1 > MAX_LBA) {
      throw new RangeError(`partition ${i + 1}: beyond the 2 TiB an MBR can address`);
    }
    const type = p.type ?? PART_TYPE_LINUX;
    if (!Number.isInteger(type) || type < 1 || type > 0xff) throw new RangeError(`partition ${i + 1}: bad type ${type}`);
    for (const [s, e] of spans) {
      if (p.startLba <= e && p.startLba + p.sectors - 1 >= s) throw new RangeError(`partition ${i + 1} overlaps another one`);
    }
    spans.push([p.startLba, p.startLba + p.sectors - 1]);
  }
}

/** The 512 bytes of an MBR sector. Throws RangeError for a table that cannot be written. */
export function buildMbr(mbr: Mbr): Buffer {
  const sig = mbr.diskSignature;
  if (!Number.isInteger(sig) || sig < 0 || sig > 0xffff_ffff) throw new RangeError(`bad disk signature ${sig}`);
  checkPartitions(mbr.partitions);
  const b = Buffer.alloc(MBR_SIZE);
  b.writeUInt32LE(sig, DISK_SIGNATURE_OFFSET);
  for (const [i, p] of mbr.partitions.entries()) {
    const o = PARTITION_TABLE_OFFSET + i * PARTITION_ENTRY_SIZE;
    b[o] = p.bootable ? 0x80 : 0x00;
    b.set(encodeChs(lbaToChs(p.startLba)), o + 1);
    b[o + 4] = p.type ?? PART_TYPE_LINUX;
    b.set(encodeChs(lbaToChs(p.startLba + p.sectors - 1)), o + 5);
    b.writeUInt32LE(p.startLba, o + 8);
    b.writeUInt32LE(p.sectors, o + 12);
  }
  b[BOOT_SIGNATURE_OFFSET] = 0x55;
  b[BOOT_SIGNATURE_OFFSET + 1] = 0xaa;
  return b;
}

export interface ParsedPartition extends Required<MbrPartition> {
  /** Entry slot, 1-4. */
  slot: number;
  firstChs: Chs;
  lastChs: Chs;
}

/** Read an MBR sector back (the used entries only); undefined without the 0x55AA signature. */
export function parseMbr(sector: Uint8Array): { diskSignature: number; partitions: ParsedPartition[] } | undefined {
  if (sector.length < MBR_SIZE) return undefined;
  const b = Buffer.from(sector.buffer, sector.byteOffset, MBR_SIZE);
  if (b[BOOT_SIGNATURE_OFFSET] !== 0x55 || b[BOOT_SIGNATURE_OFFSET + 1] !== 0xaa) return undefined;
  const partitions: ParsedPartition[] = [];
  for (let i = 0; i < 4; i++) {
    const o = PARTITION_TABLE_OFFSET + i * PARTITION_ENTRY_SIZE;
    const type = b[o + 4]!;
    if (type === 0) continue;
    partitions.push({
      slot: i + 1,
      bootable: b[o] === 0x80,
      type,
      firstChs: decodeChs(b.subarray(o + 1, o + 4)),
      lastChs: decodeChs(b.subarray(o + 5, o + 8)),
      startLba: b.readUInt32LE(o + 8),
      sectors: b.readUInt32LE(o + 12),
    });
  }
  return { diskSignature: b.readUInt32LE(DISK_SIGNATURE_OFFSET), partitions };
}
