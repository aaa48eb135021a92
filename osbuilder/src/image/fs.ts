// The root filesystem of a disk image, built from a directory without mounting anything (no
// loop device, no root needed for the filesystem itself):
// - ext4: mkfs.ext4 -d, e2fsck -fyD (directory indexes, as Kata), then one debugfs pass that
//   pins every inode's timestamps (and, by default, owners) — e2fsprogs 1.47.0 (Debian 12) copies each file's ctime from the source
//   tree and has no timestamp clamping yet (that came with 1.47.1), so without that pass two
//   builds of the same tree differ.
// - erofs: mkfs.erofs -T <epoch> -U <uuid> [--all-root], which is reproducible by itself.
// Also here: the rootfs scan (entry count, space estimate, a digest of everything that ends up
// in the filesystem, from which the UUIDs are derived) and the /sbin/init check.
import { resolveInRoot as resolveGuestPath } from '../util/rootfs';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { failedError } from '../util/errors';
import { runTool } from '../util/tools';

// ---------------------------------------------------------------------------------------------
// Derived identifiers

/** Namespace of osbuilder's name-based (version 5) UUIDs; a fixed constant, never change it. */
export const OSBUILDER_UUID_NAMESPACE = '0b5e6a1d-7c3f-4d2e-9a8b-6f1c2d3e4a5b';

/** RFC 4122 version 5 UUID (SHA-1, name-based): the same name always gives the same UUID. */
export function uuidV5(name: string, namespace = OSBUILDER_UUID_NAMESPACE): string {
  const ns = Buffer.from(namespace.replace(/-/g, ''), 'hex');
  if (ns.length !== 16) throw new RangeError(`bad namespace UUID ${namespace}`);
  const h = crypto.createHash('sha1').update(ns).update(name, 'utf8').digest().subarray(0, 16);
  h[6] = (h[6]! & 0x0f) | 0x50;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const x = h.toString('hex');
  return `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
}

/** A non-zero 32-bit value derived from `name` (MBR disk signatures: 0 means "none" to some tools). */
export function derivedU32(name: string): number {
  const h = crypto.createHash('sha256').update(name, 'utf8').digest();
  for (let i = 0; i + 4 <= h.length; i += 4) {
    const v = h.readUInt32LE(i);
    if (v !== 0) return v;
  }
  return 1;
}

// ---------------------------------------------------------------------------------------------
// The rootfs scan

export interface RootfsScan {
  /** Entries below the root (the root itself not counted). */
  entries: number;
  files: number;
  dirs: number;
  symlinks: number;
  /** Other entries (devices, fifos, sockets). */
  special: number;
  /** Paths that are a second (third...) name of an already seen inode. */
  hardlinks: number;
  /** Sum of regular file sizes (each inode once). */
  bytes: number;
  /** Estimated ext4 data + directory blocks, in bytes, for the block size scanned with. */
  ext4ContentBytes: number;
  /** Inodes the ext4 filesystem needs for the tree (reserved ones not included). */
  inodes: number;

  /** sha256 (hex) of every path, type, mode, owner (unless ignored), size, link target and file content. */
  digest: string;
}

export interface ScanOptions {
  /** ext4 block size the space estimate is for. */
  blockSize: number;
  /** Leave uid/gid out of the digest (they are forced to 0 in the image). */
  ignoreOwners: boolean;
  /** Called every 256 entries and at the end. */
  onProgress?: (s: { entries: number; bytes: number }) => void;
}

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

/** ext4 blocks of one directory of `names` (metadata_csum: a 12-byte tail per leaf block). */
function ext4DirBlocks(names: Buffer[], blockSize: number): number {
  let bytes = 24; // "." and ".."
  for (const n of names) bytes += 8 + ((n.length + 3) & ~3);
  const leaves = Math.ceil((bytes * 1.15) / (blockSize - 12)); // leaves are never packed full
  return leaves <= 1 ? 1 : leaves + 1 + Math.ceil(leaves / Math.floor(blockSize / 8)); // + htree index blocks
}

/** Blocks of a regular file of `size` bytes of which `allocated` are allocated in the source. */
function ext4FileBlocks(size: number, allocated: number, blockSize: number): number {
  const data = Math.ceil(Math.min(size, allocated + blockSize) / blockSize);
  // Extents cover up to 32768 blocks; more than 4 need extent index blocks.
  const extents = Math.ceil(data / 32768) * 2; // group boundaries split extents too
  const index = extents > 4 ? Math.ceil(extents / Math.floor((blockSize - 12) / 12)) : 0;
  return data + index;
}

const byBytes = (a: Buffer, b: Buffer): number => Buffer.compare(a, b);

/**
 * Walk `root` (sorted by byte order, without following symlinks), hashing what the image will
 * hold. Throws FAILED for an unreadable entry.
 */
export function scanRootfs(root: string, o: ScanOptions): RootfsScan {
  const digest = crypto.createHash('sha256');
  const s: RootfsScan = { entries: 0, files: 0, dirs: 0, symlinks: 0, special: 0, hardlinks: 0, bytes: 0, ext4ContentBytes: 0, inodes: 0, digest: '' };
  let blocks = 0;
  const seen = new Map<string, Buffer>(); // dev:ino -> first path (hard links)
  const buf = Buffer.allocUnsafe(1 << 20);
  const rootBuf = Buffer.from(path.resolve(root));

  const walkDir = (dirPath: Buffer, rel: Buffer): void => {
    let names: Buffer[];
    try {
      names = (fs.readdirSync(dirPath, { encoding: 'buffer' }) as Buffer[]).sort(byBytes);
    } catch (err) {
      throw failedError(`cannot read ${dirPath.toString()}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    blocks += ext4DirBlocks(names, o.blockSize);
    for (const name of names) {
      const p = Buffer.concat([dirPath, Buffer.from('/'), name]);
      const r = rel.length ? Buffer.concat([rel, Buffer.from('/'), name]) : name;
      visit(p, r);
    }
  };

  const visit = (p: Buffer, rel: Buffer): void => {
    let st: fs.BigIntStats;
    try {
      st = fs.lstatSync(p, { bigint: true });
    } catch (err) {
      throw failedError(`cannot read ${p.toString()}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    s.entries++;
    const mode = Number(st.mode);
    const type = mode & S_IFMT;
    digest.update(rel).update('\0');
    digest.update(`${type.toString(8)} ${(mode & 0o7777).toString(8)} ${o.ignoreOwners ? '' : `${st.uid}:${st.gid}`}\0`);
    if (type !== S_IFDIR && st.nlink > 1n) {
      const key = `${st.dev}:${st.ino}`;
      const first = seen.get(key);
      if (first) {
        s.hardlinks++;
        digest.update('=').update(first).update('\0');
        return;
      }
      seen.set(key, rel);
    }
    s.inodes++;
    if (type === S_IFDIR) {
      s.dirs++;
      digest.update('\0');
      walkDir(p, rel);
    } else if (type === S_IFREG) {
      s.files++;
      const size = Number(st.size);
      s.bytes += size;
      blocks += ext4FileBlocks(size, Number(st.blocks) * 512, o.blockSize);
      digest.update(`${size}\0`).update(hashFile(p, buf)).update('\0');
    } else if (type === S_IFLNK) {
      s.symlinks++;
      const target = fs.readlinkSync(p, { encoding: 'buffer' });
      if (target.length >= 60) blocks += 1; // fast symlinks live in the inode
      digest.update(target).update('\0');
    } else {
      s.special++;
      digest.update(`${st.rdev}\0`);
    }
    if (s.entries % 256 === 0) o.onProgress?.({ entries: s.entries, bytes: s.bytes });
  };

  walkDir(rootBuf, Buffer.alloc(0));
  s.ext4ContentBytes = blocks * o.blockSize;
  s.digest = digest.digest('hex');
  o.onProgress?.({ entries: s.entries, bytes: s.bytes });
  return s;
}

function hashFile(p: Buffer, buf: Buffer): Buffer {
  const h = crypto.createHash('sha256');
  let fd: number;
  try {
    fd = fs.openSync(p, 'r');
  } catch (err) {
    throw failedError(`cannot read ${p.toString()}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest();
}

/**
 * Resolve `guestPath` inside `root` as the guest would see it (util/rootfs resolveInRoot). Returns
 * the host path, or undefined when it does not resolve.
 */
export function resolveInRoot(root: string, guestPath: string): string | undefined {
  const r = resolveGuestPath(root, guestPath);
  return r.ok ? path.join(root, r.rel) : undefined;
}

/** The rootfs's init (/sbin/init, else /init) when it is an executable regular file. */
export function findInit(root: string): string | undefined {
  for (const p of ['/sbin/init', '/init']) {
    const r = resolveGuestPath(root, p);
    if (r.ok && r.stat.isFile() && (r.stat.mode & 0o111) !== 0) return p;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// ext4

export const EXT4_INODE_SIZE = 256;
export const EXT4_INODE_RATIO = 16384;
/** ext4 features: Debian 12's mke2fs.conf defaults, pinned so the host's config cannot change the image. */
export const EXT4_FEATURES =
  'sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr,has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize';
/** First non-reserved inode (lost+found). */
const EXT4_FIRST_INO = 11;

/** libext2fs's default journal size (blocks) for a filesystem of `blocks` blocks (1.47). */
export function ext4JournalBlocks(blocks: number): number {
  if (blocks < 2048) return 0;
  if (blocks < 32768) return 1024;
  if (blocks < 256 * 1024) return 4096;
  if (blocks < 512 * 1024) return 8192;
  if (blocks < 4096 * 1024) return 16384;
  if (blocks < 8192 * 1024) return 32768;
  if (blocks < 16384 * 1024) return 65536;
  if (blocks < 32768 * 1024) return 131072;
  return 262144;
}

/** The number of inodes mkfs.ext4 will create for `fsBytes` (before rounding to whole groups). */
export function ext4Inodes(fsBytes: number, neededInodes: number): number {
  return Math.max(Math.floor(fsBytes / EXT4_INODE_RATIO), neededInodes);
}

/** Inodes to ask for with -N: the tree, the reserved ones and room for the guest to create files. */
export function ext4NeededInodes(scan: RootfsScan): number {
  return Math.ceil(scan.inodes * 1.1) + EXT4_FIRST_INO + 1024;
}

/**
 * Blocks of an ext4 filesystem of `fsBytes` that the metadata takes (superblocks and group
 * descriptors with their backups, reserved GDT blocks, bitmaps, inode tables, journal, root
 * and lost+found), plus a 1 % margin.
 */
export function ext4OverheadBytes(fsBytes: number, blockSize: number, neededInodes: number): number {
  const blocks = Math.floor(fsBytes / blockSize);
  const perGroup = blockSize * 8;
  const groups = Math.max(1, Math.ceil(blocks / perGroup));
  const descPerBlock = blockSize / 64;
  const gdt = Math.ceil(groups / descPerBlock);
  const growthGroups = Math.ceil(Math.min(2 ** 32, blocks * 1024) / perGroup);
  const rsvGdt = Math.max(0, Math.min(Math.ceil(growthGroups / descPerBlock) - gdt, blockSize / 4));
  let backups = 0;
  for (let g = 0; g < groups; g++) if (hasSuperBackup(g)) backups++;
  const inodes = ext4Inodes(fsBytes, neededInodes);
  const inodesPerBlock = blockSize / EXT4_INODE_SIZE;
  const itable = Math.ceil(Math.ceil(inodes / groups) / inodesPerBlock) * groups;
  const meta = backups * (1 + gdt + rsvGdt) + 2 * groups + itable + ext4JournalBlocks(blocks) + Math.ceil(16384 / blockSize) + 2;
  return (meta + Math.ceil(blocks / 100) + 16) * blockSize;
}

function hasSuperBackup(g: number): boolean {
  if (g <= 1) return true;
  for (const base of [3, 5, 7]) {
    let p = base;
    while (p < g) p *= base;
    if (p === g) return true;
  }
  return false;
}

export interface Ext4Build {
  mkfs: string;
  e2fsck: string;
  debugfs: string;
  dumpe2fs: string;
  rootfs: string;
  /** The filesystem file to create (overwritten). */
  out: string;
  /** Where mke2fs.conf and the debugfs script go. */
  workDir: string;
  fsBytes: number;
  blockSize: number;
  uuid: string;
  hashSeed: string;
  /** SOURCE_DATE_EPOCH: every inode's atime/ctime/mtime/crtime. */
  epoch: number;
  /** Make every file owned by 0:0. */
  allRoot: boolean;
  /** -N: at least this many inodes. */
  inodes: number;
  env?: NodeJS.ProcessEnv;
}

export interface Ext4Result {
  freeBytes: number;
  inodes: number;
  usedInodes: number;
}

/** Thrown when the tree does not fit: build again bigger. */
export class NoSpaceError extends Error {}

const mke2fsConf = (blockSize: number): string => `[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	enable_periodic_fsck = 0
	blocksize = ${blockSize}
	inode_size = ${EXT4_INODE_SIZE}
	inode_ratio = ${EXT4_INODE_RATIO}
	reserved_ratio = 0
	lazy_itable_init = false
	lazy_journal_init = false

[fs_types]
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
`;

/** Environment for e2fsprogs: nothing from the caller's MKE2FS_* / locale / time zone leaks in. */
function e2fsEnv(b: { workDir: string; epoch: number; env?: NodeJS.ProcessEnv }): NodeJS.ProcessEnv {
  return {
    PATH: (b.env ?? process.env).PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    LC_ALL: 'C',
    TZ: 'UTC',
    MKE2FS_CONFIG: path.join(b.workDir, 'mke2fs.conf'),
    // The library's clock (superblock times, new inodes). e2fsprogs treats 0 as "unset", so
    // an epoch of 0 runs the library at 1 s; the inodes are set to 0 afterwards all the same.
    E2FSPROGS_FAKE_TIME: String(Math.max(1, b.epoch)),
    E2FSCK_TIME: String(Math.max(1, b.epoch)), // e2fsck's clock (last check time)
    SOURCE_DATE_EPOCH: String(b.epoch),
  };
}

/** The last non-empty line of a tool's output, for one-line errors. */
function lastLine(stderr: string): string {
  const lines = stderr.trim().split('\n').map((l) => l.trim()).filter(Boolean);
  return lines[lines.length - 1] ?? 'no message';
}

export async function buildExt4(b: Ext4Build): Promise<Ext4Result> {
  fs.writeFileSync(path.join(b.workDir, 'mke2fs.conf'), mke2fsConf(b.blockSize));
  fs.rmSync(b.out, { force: true });
  fs.closeSync(fs.openSync(b.out, 'w'));
  fs.truncateSync(b.out, b.fsBytes);
  const env = e2fsEnv(b);
  const blocks = Math.floor(b.fsBytes / b.blockSize);
  const args = [
    '-F', '-q', '-t', 'ext4',
    '-b', String(b.blockSize), '-I', String(EXT4_INODE_SIZE), '-N', String(b.inodes), '-m', '0',
    '-O', EXT4_FEATURES,
    '-U', b.uuid,
    '-E', `hash_seed=${b.hashSeed},root_owner=0:0,lazy_itable_init=0,lazy_journal_init=0,nodiscard`,
    '-d', b.rootfs,
    b.out, String(blocks),
  ];
  const r = await runTool(b.mkfs, args, { env, allowFail: true });
  if (r.code !== 0) {
    const msg = `${r.stderr}\n${r.stdout}`;
    if (/Could not allocate block|No space left|no free space|Could not allocate inode|inode_alloc/i.test(msg)) {
      throw new NoSpaceError(lastLine(msg));
    }
    throw failedError(`mkfs.ext4 failed (exit ${r.code}): ${lastLine(msg)}`);
  }
  // As Kata's image_builder.sh (fsck.ext4 -D -y): index and compact the directories mkfs -d
  // wrote linearly. Exit 1 means "modified", which is the point.
  const f = await runTool(b.e2fsck, ['-f', '-y', '-D', b.out], { env, allowFail: true });
  if (f.code > 1) throw failedError(`e2fsck -fyD failed (exit ${f.code}): ${lastLine(`${f.stdout}\n${f.stderr}`)}`);
  const info = await dumpExt4(b.dumpe2fs, b.out, env);
  // Pin the inodes: times to the epoch (ctime otherwise leaks from the source tree), owners to 0.
  const lines: string[] = [];
  for (const ino of info.used) {
    if (ino !== 2 && ino !== 7 && ino !== 8 && ino < info.firstIno) continue; // unused reserved inodes
    for (const field of ['atime', 'ctime', 'mtime', 'crtime']) lines.push(`sif <${ino}> ${field} @${b.epoch}`);
    if (b.allRoot && (ino === 2 || ino >= info.firstIno)) lines.push(`sif <${ino}> uid 0`, `sif <${ino}> gid 0`);
  }
  const script = path.join(b.workDir, 'debugfs.cmds');
  fs.writeFileSync(script, `${lines.join('\n')}\n`);
  const d = await runTool(b.debugfs, ['-w', '-f', script, b.out], { env, allowFail: true });
  const problem = d.stderr.split('\n').find((l) => l.trim() && !/^debugfs \d/.test(l.trim()));
  if (d.code !== 0 || problem) throw failedError(`debugfs could not set the inode times: ${problem?.trim() ?? `exit ${d.code}`}`);
  return { freeBytes: info.freeBlocks * info.blockSize, inodes: info.inodeCount, usedInodes: info.used.length };
}

export interface Ext4Info {
  blockSize: number;
  freeBlocks: number;
  inodeCount: number;
  firstIno: number;
  /** In-use inode numbers, ascending (from the inode bitmaps). */
  used: number[];
}

/** Parse `dumpe2fs` output: header counts and the in-use inodes from each group's free ranges. */
export function parseDumpe2fs(text: string): Ext4Info {
  const num = (label: string): number => {
    const m = new RegExp(`^${label}:\\s+(\\d+)`, 'm').exec(text);
    if (!m) throw failedError(`dumpe2fs output has no "${label}"`);
    return Number(m[1]);
  };
  const perGroup = num('Inodes per group');
  const inodeCount = num('Inode count');
  const info: Ext4Info = { blockSize: num('Block size'), freeBlocks: num('Free blocks'), inodeCount, firstIno: num('First inode'), used: [] };
  let group = -1;
  for (const line of text.split('\n')) {
    const g = /^Group (\d+):/.exec(line);
    if (g) {
      group = Number(g[1]);
      continue;
    }
    const f = /^\s+Free inodes:\s*(.*)$/.exec(line);
    if (!f || group < 0) continue;
    const first = group * perGroup + 1;
    const last = Math.min((group + 1) * perGroup, inodeCount);
    const free = new Set<number>();
    for (const part of f[1]!.split(',').map((x) => x.trim()).filter(Boolean)) {
      const [a, z] = part.split('-').map(Number);
      for (let i = a!; i <= (z ?? a!); i++) free.add(i);
    }
    for (let i = first; i <= last; i++) if (!free.has(i)) info.used.push(i);
  }
  return info;
}

async function dumpExt4(dumpe2fs: string, file: string, env: NodeJS.ProcessEnv): Promise<Ext4Info> {
  const r = await runTool(dumpe2fs, [file], { env, allowFail: true });
  if (r.code !== 0) throw failedError(`dumpe2fs ${file} failed: ${lastLine(r.stderr)}`);
  return parseDumpe2fs(r.stdout);
}

// ---------------------------------------------------------------------------------------------
// erofs

export interface ErofsBuild {
  mkfs: string;
  rootfs: string;
  out: string;
  uuid: string;
  epoch: number;
  allRoot: boolean;
  /** No inline (tail-packed) file data, so every file can be mapped with FSDAX (Kata: -Enoinline_data). */
  noInlineData: boolean;
  env?: NodeJS.ProcessEnv;
}

/**
 * Build the erofs image; resolves with its size in bytes. -T<epoch> is the build time and every
 * inode's mtime, but only while SOURCE_DATE_EPOCH is NOT in mkfs.erofs's environment: with it,
 * erofs-utils 1.5 clamps instead (older mtimes stay, in extended inodes: the tree's mtimes leak).
 */
export async function buildErofs(b: ErofsBuild): Promise<number> {
  fs.rmSync(b.out, { force: true });
  const args = ['--quiet', `-T${b.epoch}`, `-U${b.uuid}`];
  if (b.allRoot) args.push('--all-root');
  if (b.noInlineData) args.push('-Enoinline_data');
  args.push(b.out, b.rootfs);
  const env: NodeJS.ProcessEnv = { PATH: (b.env ?? process.env).PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C', TZ: 'UTC' }; // no SOURCE_DATE_EPOCH: see above
  const r = await runTool(b.mkfs, args, { env, allowFail: true });
  if (r.code !== 0) throw failedError(`mkfs.erofs failed (exit ${r.code}): ${lastLine(`${r.stderr}\n${r.stdout}`)}`);
  return fs.statSync(b.out).size;
}
