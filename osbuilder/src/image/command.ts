// `osbuilder image`: a raw disk image from a rootfs directory, in the spirit of Kata's
// osbuilder image_builder.sh but without loop devices, parted or root: an MBR written by
// osbuilder, an ext4 (mkfs.ext4 -d) or erofs (mkfs.erofs) filesystem built as a separate file
// and copied into partition 1, optionally behind Kata's NVDIMM/DAX header. Reproducible: the
// same rootfs and options give the same bytes (UUIDs, hash seed and disk signatures are derived
// from a digest of the tree; every timestamp is SOURCE_DATE_EPOCH).
import { sourceDateEpoch } from '../util/epoch';
import fs from 'node:fs';
import path from 'node:path';
import { parseOptions } from '../cli';
import type { Command, CommandContext } from '../commands/types';
import { failedError, missingError, usageError } from '../util/errors';
import { writeAtomically } from '../util/output';
import { humanBytes } from '../util/progress';
import { checkRootfs } from '../util/rootfs';
import { requireTool } from '../util/tools';
import { DAX_ALIGNMENT, headerLayout, headerWrites, MiB, partitionOffset as partitionOffsetOf } from './dax';
import { MAX_LBA, SECTOR_SIZE } from './mbr';
import {
  buildErofs,
  buildExt4,
  derivedU32,
  ext4Inodes,
  ext4NeededInodes,
  ext4OverheadBytes,
  findInit,
  NoSpaceError,
  scanRootfs,
  uuidV5,
  type RootfsScan,
} from './fs';

export const DEFAULT_IMAGE = 'kata-containers.img';
/** Kata's mem_boundary_mb: images are a multiple of 128 MiB (memory hotplug granularity). */
export const DEFAULT_ALIGN_MIB = 128;
export const DEFAULT_BLOCK_SIZE = 4096;
export const FS_TYPES = ['ext4', 'erofs'] as const;
export type FsType = (typeof FS_TYPES)[number];
/** An MBR addresses 2^32 sectors. */
export const MAX_IMAGE_BYTES = (MAX_LBA + 1) * SECTOR_SIZE;

const HELP = `Usage: osbuilder image [--rootfs DIR] [--fs ext4|erofs] [--output FILE] [options]
       osbuilder image [options] DIR

Build a raw disk image from a rootfs directory: an MBR partition table with one Linux
partition (type 0x83, not bootable) holding an ext4 or erofs filesystem of the tree. No
loop device, mount or parted is used: the filesystem is built into a separate file
(mkfs.ext4 -d then e2fsck -fyD to index the directories, as Kata does; or mkfs.erofs) and
copied into place behind a partition table that osbuilder writes itself.

Layout (as Kata's image_builder.sh):
  without --dax  MBR at 0, the partition from 1 MiB to the end of the image
  with --dax     MBR #1 at 0 (partition from 3 MiB to the end), the NVDIMM pfn info block
                 ("NVDIMM_PFN_INFO", data offset 2 MiB, alignment 2 MiB, mode RAM) at
                 4 KiB, and MBR #2 at 2 MiB (partition from 1 MiB of the pmem device, i.e.
                 3 MiB of the file): a guest reading the image as an NVDIMM (pmem, DAX) and
                 one reading it as a disk both find the filesystem

Size: ext4: the tree (blocks, directories, inodes) + --free-space + the filesystem's own
metadata (journal, inode tables, group descriptors), plus the partition offset, rounded
up to --align; the filesystem fills the partition. erofs: the compact read-only image
mkfs.erofs makes, plus the partition offset, rounded up to --align (--free-space does not
apply to a read-only filesystem and is ignored).

Reproducible: the same tree and options give the same bytes. The filesystem UUID, the ext4
directory hash seed and the MBR disk signatures are derived (UUID version 5 / SHA-256)
from a digest of the tree's paths, types, modes, owners, sizes, link targets and file
contents and of the options. Every inode's times are SOURCE_DATE_EPOCH: ext4 gets one
debugfs pass after mkfs.ext4 that pins atime/ctime/mtime/crtime (e2fsprogs 1.47.0 copies
ctime from the tree); erofs gets -T (and mkfs.erofs does not see SOURCE_DATE_EPOCH, with
which erofs-utils 1.5 would keep older mtimes instead). ext4 features, inode size and
ratio are fixed, whatever the host's /etc/mke2fs.conf says. Files are owned by root:root
unless --keep-owners.

The rootfs must have an init: /sbin/init or /init, an executable file (symlinks are
followed inside the rootfs).

Options:
  --rootfs DIR        the rootfs directory (env ROOTFS_DIR; or as the argument)
  --fs, -f TYPE       ext4 (default) or erofs (env FS_TYPE)
  --output, -o FILE   the image to write (env IMAGE; default: ${DEFAULT_IMAGE}); written
                      to a temporary file beside it and renamed at the end
  --free-space, -r N  MiB of free space in the ext4 filesystem (env ROOT_FREE_SPACE;
                      default 0; ext4 only)
  --align N           the image size is a multiple of N MiB (default ${DEFAULT_ALIGN_MIB}, as Kata;
                      with --dax a multiple of 2)
  --dax               add the NVDIMM/DAX header (see Layout); the filesystem then has
                      4 KiB blocks, and erofs stores no inline file data (-Enoinline_data)
  --block-size N      ext4 block size: 1024, 2048 or 4096 (env BLOCK_SIZE; default 4096;
                      erofs and --dax need 4096)
  --keep-owners       keep the tree's uid/gid instead of making every file root:root
  --quiet             no progress output

Environment:
  ROOTFS_DIR, FS_TYPE, IMAGE, ROOT_FREE_SPACE, BLOCK_SIZE
                      Kata osbuilder names for --rootfs, --fs, --output, --free-space,
                      --block-size (the options win)
  SOURCE_DATE_EPOCH   every timestamp in the filesystem, in seconds (default: the time of
                      the last git commit of osbuilder's repository, else 0)

Tools: mkfs.ext4, e2fsck, debugfs, dumpe2fs (e2fsprogs) for ext4; mkfs.erofs (erofs-utils)
for erofs.

Output: the image's size on stdout; progress on stderr.

Examples:
  osbuilder image --rootfs ./rootfs --output kata-containers.img
  osbuilder image --rootfs ./rootfs --fs erofs --dax -o kata-containers.img
  ROOTFS_DIR=./rootfs ROOT_FREE_SPACE=64 osbuilder image -o rootfs.img --align 1

Exit codes: 0 written; 1 the rootfs has no init or cannot be read, or mkfs failed; 2 bad
command line; 3 the rootfs or the output directory does not exist, or a tool is not
installed; 130 interrupted.
`;

/**
 * SOURCE_DATE_EPOCH from the environment; else the committer time of the last commit of the git
 * repository osbuilder runs from; else 0. A malformed value is a usage error.
 */
export { sourceDateEpoch };

export interface ImageOptions {
  rootfs: string;
  output: string;
  fs: FsType;
  /** ext4 free space, MiB. */
  freeSpaceMiB: number;
  alignMiB: number;
  dax: boolean;
  blockSize: number;
  /** Keep the tree's owners (default: everything root:root). */
  keepOwners: boolean;
  epoch: number;
}

export interface ImageResult {
  output: string;
  fs: FsType;
  totalBytes: number;
  partitionOffset: number;
  partitionBytes: number;
  /** Bytes the filesystem image occupies (erofs: its size; ext4: the partition). */
  fsBytes: number;
  /** ext4: free bytes in the filesystem. */
  freeBytes?: number;
  uuid: string;
  diskSignature: number;
  scan: RootfsScan;
}

/** The image size for an ext4 tree: the smallest multiple of `alignBytes` that fits, at least `minTotal`. */
export function planExt4(
  scan: RootfsScan,
  o: { freeBytes: number; alignBytes: number; partitionOffset: number; blockSize: number; minTotal?: number },
): { totalBytes: number; fsBytes: number; inodes: number } {
  const needed = ext4NeededInodes(scan);
  const want = scan.ext4ContentBytes + o.freeBytes;
  const tooBig = (): never => {
    throw failedError(`the image would be larger than the 2 TiB an MBR can address`);
  };
  if (o.partitionOffset + want > MAX_IMAGE_BYTES) tooBig();
  // The overhead grows with the size: iterate to the fixed point (a few rounds), then step up.
  let est = want;
  for (let i = 0; i < 8; i++) est = Math.min(MAX_IMAGE_BYTES, want + ext4OverheadBytes(Math.max(est, o.blockSize * 64), o.blockSize, needed));
  let k = Math.max(1, Math.ceil(Math.max(o.minTotal ?? 0, o.partitionOffset + est) / o.alignBytes));
  for (;;) {
    const totalBytes = k * o.alignBytes;
    if (totalBytes > MAX_IMAGE_BYTES) tooBig();
    const fsBytes = totalBytes - o.partitionOffset;
    if (fsBytes - ext4OverheadBytes(fsBytes, o.blockSize, needed) >= want) return { totalBytes, fsBytes, inodes: ext4Inodes(fsBytes, needed) };
    k++;
  }
}

const roundUp = (n: number, m: number): number => Math.ceil(n / m) * m;



/** Granularity of the zero test when copying (holes in the output where the source is zero). */
const SPARSE_BLOCK = 64 * 1024;

/** Copy `src` into `fd` at `offset`, skipping all-zero blocks (the output stays sparse). */
function copyInto(src: string, fd: number, offset: number, onProgress: (done: number, total: number) => void): void {
  const total = fs.statSync(src).size;
  const chunk = 4 * MiB;
  const buf = Buffer.alloc(chunk);
  const zero = Buffer.alloc(SPARSE_BLOCK);
  const s = fs.openSync(src, 'r');
  try {
    let pos = 0;
    while (pos < total) {
      const n = fs.readSync(s, buf, 0, Math.min(chunk, total - pos), pos);
      if (n === 0) throw failedError(`${src} ended early at ${pos} of ${total} bytes`);
      for (let at = 0; at < n; at += SPARSE_BLOCK) {
        const len = Math.min(SPARSE_BLOCK, n - at);
        if (buf.compare(zero, 0, len, at, at + len) === 0) continue;
        let w = 0;
        while (w < len) w += fs.writeSync(fd, buf, at + w, len - w, offset + pos + at + w);
      }
      pos += n;
      onProgress(pos, total);
    }
  } finally {
    fs.closeSync(s);
  }
}

/** Build the image (the command without option parsing). */
export async function buildImage(o: ImageOptions, ctx: Pick<CommandContext, 'progress' | 'env'>): Promise<ImageResult> {
  // Everything that can be missing fails before any work.
  const tools =
    o.fs === 'ext4'
      ? {
          mkfs: requireTool('mkfs.ext4', 'to build an ext4 image'),
          e2fsck: requireTool('e2fsck', 'to build an ext4 image'),
          debugfs: requireTool('debugfs', 'to build a reproducible ext4 image'),
          dumpe2fs: requireTool('dumpe2fs', 'to build a reproducible ext4 image'),
        }
      : { mkfs: requireTool('mkfs.erofs', 'to build an erofs image') };
  checkRootfs('image', o.rootfs);
  const outDir = path.dirname(path.resolve(o.output));
  if (!fs.existsSync(outDir)) throw missingError(`the output directory ${outDir} does not exist`, `create it first: mkdir -p ${outDir}`);
  const rootReal = fs.realpathSync(o.rootfs);
  const rel = path.relative(rootReal, fs.realpathSync(outDir));
  if (rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel))) throw usageError(`the output ${o.output} is inside the rootfs ${o.rootfs}`, 'write the image elsewhere');
  const init = findInit(o.rootfs);
  if (!init) throw failedError(`the rootfs ${o.rootfs} has no init: neither /sbin/init nor /init is an executable file`, 'install the agent, systemd or busybox as /sbin/init');

  const partitionOffset = partitionOffsetOf(o.dax);
  const alignBytes = o.alignMiB * MiB;
  const p = ctx.progress(3);

  p.step(`scanning ${o.rootfs}`);
  const scan = scanRootfs(o.rootfs, {
    blockSize: o.blockSize,
    ignoreOwners: !o.keepOwners,
    onProgress: (s) => p.update(`${s.entries} entries, ${humanBytes(s.bytes)}`),
  });
  p.done(`${scan.entries} entries, ${scan.files} files, ${humanBytes(scan.bytes)}; init ${init}`);

  const name = [
    'guestkit-osbuilder-image/1',
    o.fs,
    o.blockSize,
    o.dax ? 'dax' : 'nodax',
    o.keepOwners ? 'owners' : 'root',
    o.epoch,
    o.fs === 'ext4' ? o.freeSpaceMiB : 0,
    o.alignMiB,
    scan.digest,
  ].join(':');
  const uuid = uuidV5(`${name}:filesystem-uuid`);
  const signatures = { disk: derivedU32(`${name}:mbr`), pmem: derivedU32(`${name}:mbr-pmem`) };

  let result: ImageResult | undefined;
  await writeAtomically(o.output, async (tmp) => {
    const work = fs.mkdtempSync(path.join(outDir, `.${path.basename(o.output)}.work-`));
    const cleanup = (): void => fs.rmSync(work, { recursive: true, force: true });
    process.once('exit', cleanup);
    try {
      const fsFile = path.join(work, `rootfs.${o.fs}`);
      let totalBytes: number;
      let fsBytes: number;
      let freeBytes: number | undefined;
      if (o.fs === 'ext4') {
        const t = tools as { mkfs: string; e2fsck: string; debugfs: string; dumpe2fs: string };
        const wantFree = o.freeSpaceMiB * MiB;
        let minTotal = 0;
        p.step('mkfs.ext4');
        for (let attempt = 1; ; attempt++) {
          const plan = planExt4(scan, { freeBytes: wantFree, alignBytes, partitionOffset, blockSize: o.blockSize, minTotal });
          p.update(`${humanBytes(plan.fsBytes)}${attempt > 1 ? ` (attempt ${attempt})` : ''}`);
          try {
            const r = await buildExt4({
              ...t,
              rootfs: o.rootfs,
              out: fsFile,
              workDir: work,
              fsBytes: plan.fsBytes,
              blockSize: o.blockSize,
              uuid,
              hashSeed: uuidV5(`${name}:ext4-hash-seed`),
              epoch: o.epoch,
              allRoot: !o.keepOwners,
              inodes: plan.inodes,
              env: ctx.env,
            });
            if (r.freeBytes >= wantFree) {
              totalBytes = plan.totalBytes;
              fsBytes = plan.fsBytes;
              freeBytes = r.freeBytes;
              p.done(`${humanBytes(plan.fsBytes)}, ${humanBytes(r.freeBytes)} free, ${r.usedInodes}/${r.inodes} inodes used${attempt > 1 ? `, attempt ${attempt}` : ''}`);
              break;
            }
          } catch (err) {
            if (!(err instanceof NoSpaceError)) throw err;
          }
          if (attempt >= 6) throw failedError(`the tree does not fit in ${humanBytes(plan.fsBytes)} of ext4 after ${attempt} attempts`);
          // Grow by a tenth (at least one alignment step) and build again: deterministic.
          minTotal = plan.totalBytes + roundUp(Math.max(alignBytes, plan.totalBytes / 10), alignBytes);
          p.update(`the tree did not fit in ${humanBytes(plan.fsBytes)}; trying ${humanBytes(minTotal - partitionOffset)}`);
        }
      } else {
        if (o.freeSpaceMiB > 0) p.note('--free-space / ROOT_FREE_SPACE is ignored for erofs (read-only)');
        p.step(`mkfs.erofs${o.dax ? ' (no inline data, for DAX)' : ''}`);
        fsBytes = await buildErofs({
          mkfs: tools.mkfs,
          rootfs: o.rootfs,
          out: fsFile,
          uuid,
          epoch: o.epoch,
          allRoot: !o.keepOwners,
          noInlineData: o.dax,
          env: ctx.env,
        });
        totalBytes = roundUp(partitionOffset + fsBytes, alignBytes);
        if (totalBytes > MAX_IMAGE_BYTES) throw failedError('the image would be larger than the 2 TiB an MBR can address');
        p.done(humanBytes(fsBytes));
      }

      const layout = headerLayout(totalBytes!, o.dax);
      p.step(`writing ${o.output}`);
      const fd = fs.openSync(tmp, 'w');
      try {
        fs.ftruncateSync(fd, layout.totalBytes);
        for (const w of headerWrites(layout, signatures)) fs.writeSync(fd, w.data, 0, w.data.length, w.offset);
        copyInto(fsFile, fd, layout.partitionOffset, (done, total) => p.update(`${humanBytes(done)} of ${humanBytes(total)}`));
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      p.done(`${humanBytes(layout.totalBytes)}`);
      result = {
        output: o.output,
        fs: o.fs,
        totalBytes: layout.totalBytes,
        partitionOffset: layout.partitionOffset,
        partitionBytes: layout.partitionBytes,
        fsBytes: fsBytes!,
        freeBytes,
        uuid,
        diskSignature: signatures.disk,
        scan,
      };
    } finally {
      cleanup();
      process.off('exit', cleanup);
    }
  });
  return result!;
}

function intOption(value: string | undefined, what: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(Number(value))) {
    throw usageError(`${what} ${JSON.stringify(value)} is not a whole number`, 'see osbuilder image --help');
  }
  return Number(value);
}

/** Options from the command line and Kata's environment names (the options win). */
export function imageOptions(args: string[], env: NodeJS.ProcessEnv): ImageOptions {
  const { values, positionals } = parseOptions(
    'image',
    args,
    {
      rootfs: { type: 'string' },
      fs: { type: 'string', short: 'f' },
      output: { type: 'string', short: 'o' },
      'free-space': { type: 'string', short: 'r' },
      align: { type: 'string' },
      dax: { type: 'boolean' },
      'block-size': { type: 'string' },
      'keep-owners': { type: 'boolean' },
    },
    { positionals: 1 },
  );
  if (values.rootfs !== undefined && positionals.length > 0) throw usageError('give the rootfs either as --rootfs or as the argument, not both');
  const rootfs = values.rootfs ?? positionals[0] ?? env.ROOTFS_DIR;
  if (!rootfs) throw usageError('no rootfs given', 'use --rootfs DIR or set ROOTFS_DIR');
  const fsType = values.fs ?? (env.FS_TYPE || 'ext4');
  if (!(FS_TYPES as readonly string[]).includes(fsType)) {
    throw usageError(`unsupported filesystem ${JSON.stringify(fsType)}${values.fs === undefined ? ' (from FS_TYPE)' : ''}`, `one of ${FS_TYPES.join(', ')}`);
  }
  const output = values.output ?? (env.IMAGE || DEFAULT_IMAGE);
  if (output === '') throw usageError('--output is empty');
  const freeSpaceMiB =
    values['free-space'] !== undefined ? intOption(values['free-space'], '--free-space')! : (intOption(env.ROOT_FREE_SPACE || undefined, 'ROOT_FREE_SPACE') ?? 0);
  const alignMiB = values.align !== undefined ? intOption(values.align, '--align')! : DEFAULT_ALIGN_MIB;
  if (alignMiB < 1) throw usageError('--align must be at least 1 (MiB)');
  const blockSize =
    values['block-size'] !== undefined ? intOption(values['block-size'], '--block-size')! : (intOption(env.BLOCK_SIZE || undefined, 'BLOCK_SIZE') ?? DEFAULT_BLOCK_SIZE);
  if (![1024, 2048, 4096].includes(blockSize)) throw usageError(`block size ${blockSize} is not 1024, 2048 or 4096`);
  const dax = values.dax === true;
  if (fsType === 'erofs' && blockSize !== 4096) throw usageError(`erofs needs a block size of 4096, not ${blockSize}`);
  if (dax && blockSize !== 4096) throw usageError(`--dax needs a block size of 4096, not ${blockSize}`);
  if (dax && (alignMiB * MiB) % DAX_ALIGNMENT !== 0) throw usageError(`with --dax, --align must be a multiple of ${DAX_ALIGNMENT / MiB} (MiB), not ${alignMiB}`);
  return {
    rootfs,
    output,
    fs: fsType as FsType,
    freeSpaceMiB,
    alignMiB,
    dax,
    blockSize,
    keepOwners: values['keep-owners'] === true,
    epoch: sourceDateEpoch(env),
  };
}

export const imageCommand: Command = {
  name: 'image',
  summary: 'build a raw disk image (MBR + ext4 or erofs, optional DAX header) from a rootfs',
  help: HELP,
  async run(args, ctx) {
    const o = imageOptions(args, ctx.env);
    const r = await buildImage(o, ctx);
    const free = r.freeBytes !== undefined ? `, ${humanBytes(r.freeBytes)} free` : '';
    ctx.out(
      `${r.output}: ${r.totalBytes} bytes (${humanBytes(r.totalBytes)}), ${r.fs} ${humanBytes(r.fsBytes)}${free} in partition 1 at ${r.partitionOffset / MiB} MiB${o.dax ? ' behind a DAX header' : ''}, UUID ${r.uuid}`,
    );
  },
};
