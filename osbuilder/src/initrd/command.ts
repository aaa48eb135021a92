// `osbuilder initrd`: pack a rootfs directory into a (compressed) newc cpio initrd, written by
// osbuilder itself and streamed: tree walk -> headers and file data -> compressor -> a temporary
// output file renamed into place at the end. Reproducible: the same tree gives the same bytes.
import { sourceDateEpoch } from '../util/epoch';
import fs from 'node:fs';
import path from 'node:path';
import { parseOptions } from '../cli';
import type { Command, CommandContext } from '../commands/types';
import { missingError, usageError } from '../util/errors';
import { writeAtomically } from '../util/output';
import { humanBytes } from '../util/progress';
import { encodeTrailer, newcStream } from './cpio';
import { COMPRESSIONS, DEFAULT_COMPRESSION, checkCompressor, compressTo, isCompression, type Compression } from './compress';
import { checkRootfs } from '../util/rootfs';
import { findInit, planArchive, walkTree } from './walk';

export const DEFAULT_INITRD = 'kata-containers-initrd.img';

const HELP = `Usage: osbuilder initrd [--rootfs DIR] [--compression C] [--output FILE]
       osbuilder initrd [options] DIR

Pack a rootfs directory into an initrd: a newc cpio archive written by osbuilder itself
(no cpio tool needed), compressed for the kernel's initramfs decompressors. The output is
reproducible: entries sorted bytewise by path, owner root:root, mtimes clamped to
SOURCE_DATE_EPOCH, inode numbers assigned in archive order.

The rootfs must have an init: /init, or /sbin/init when there is no /init at all (symlinks
are followed inside the rootfs). With only /sbin/init, the archive gets an /init -> /sbin/init
symlink (the kernel runs /init from an initramfs). A /dev/console character device (5:1,
0600) is added when the tree has none: the kernel opens it before init runs.
Hard links inside the tree are kept as hard links (newc semantics: one inode number, the data
stored once, with the last link). The walk stays on the rootfs's file system. Files must be
smaller than 4 GiB (newc limit).

Options:
  --rootfs DIR        the rootfs directory (env ROOTFS_DIR; or as the argument)
  --compression C     none, gzip, lz4, zstd or xz (default: ${DEFAULT_COMPRESSION})
                        gzip  built in (zlib, level 9)
                        lz4   lz4 -l -9 (legacy format: the one the kernel reads)
                        zstd  zstd -19 -T1
                        xz    xz --check=crc32 --lzma2=dict=1MiB -T1
  --output FILE, -o   the initrd to write (default: ${DEFAULT_INITRD}); written to a
                      temporary file beside it and renamed at the end
  --quiet             no progress output

Environment:
  ROOTFS_DIR          the rootfs directory when --rootfs is not given (Kata osbuilder name)
  SOURCE_DATE_EPOCH   newest mtime in the archive, in seconds (default: the time of the
                      last git commit of osbuilder's repository, else 0)

Output: the initrd's size on stdout; progress (files, bytes) on stderr.

Examples:
  osbuilder initrd --rootfs ./rootfs --output kata-containers-initrd.img
  ROOTFS_DIR=./rootfs osbuilder initrd --compression zstd -o initrd.zst

Exit codes: 0 written; 1 the rootfs has no usable init, a file could not be read, or the
compressor failed; 2 bad command line; 3 the rootfs does not exist or cannot be read, or
the compressor (lz4, zstd, xz) is not installed; 130 interrupted.
`;

/**
 * SOURCE_DATE_EPOCH from the environment; else the committer time of the last commit of the
 * git repository `repoDir` is in; else 0. A malformed value is a usage error.
 */
export { sourceDateEpoch };



export interface InitrdResult {
  output: string;
  compression: Compression;
  /** Bytes of the written (compressed) file. */
  size: number;
  /** Bytes of the uncompressed cpio archive. */
  cpioBytes: number;
  entries: number;
  added: string[];
}

/** Build the initrd (the command without option parsing). */
export async function buildInitrd(
  o: { rootfs: string; output: string; compression: Compression; epoch: number },
  ctx: Pick<CommandContext, 'progress' | 'env'>,
): Promise<InitrdResult> {
  checkCompressor(o.compression); // a missing tool fails before any work
  checkRootfs('initrd', o.rootfs);
  const outDir = path.dirname(path.resolve(o.output));
  if (!fs.existsSync(outDir)) throw missingError(`the output directory ${outDir} does not exist`, `create it first: mkdir -p ${outDir}`);
  if (fs.existsSync(o.output) && fs.statSync(o.output).isDirectory()) throw usageError(`the output ${o.output} is a directory`, 'give a file name to --output');
  const init = findInit(o.rootfs);
  const p = ctx.progress(2);

  p.step(`scanning ${o.rootfs}`);
  const nodes = walkTree(o.rootfs, { onProgress: (n) => p.update(`${n} entries`) });
  const plan = planArchive(nodes, { epoch: o.epoch, addInitLink: init.path === '/sbin/init' });
  p.done(`${nodes.length} entries, ${plan.files} files, ${humanBytes(plan.dataBytes)}${plan.added.length ? `; adding ${plan.added.map((a) => `/${a}`).join(', ')}` : ''}`);

  p.step(`writing ${o.output} (${o.compression})`);
  let cpioBytes = 0;
  let written = 0;
  await writeAtomically(o.output, async (tmp) => {
    const stream = newcStream(plan.entries(), {
      onEntry: (n, bytes) => {
        written = n;
        cpioBytes = bytes;
        p.update(`${n}/${plan.count} entries, ${humanBytes(bytes)}`);
      },
    });
    await compressTo(stream, o.compression, tmp, ctx.env);
  });
  cpioBytes += encodeTrailer().length;
  const size = fs.statSync(o.output).size;
  p.done(`${written} entries, ${humanBytes(cpioBytes)} of cpio -> ${humanBytes(size)}`);
  return { output: o.output, compression: o.compression, size, cpioBytes, entries: plan.count, added: plan.added };
}

export const initrdCommand: Command = {
  name: 'initrd',
  summary: 'pack a rootfs directory into a compressed cpio initrd',
  help: HELP,
  async run(args, ctx) {
    const { values, positionals } = parseOptions(
      'initrd',
      args,
      {
        rootfs: { type: 'string' },
        compression: { type: 'string' },
        output: { type: 'string', short: 'o' },
      },
      { positionals: 1 },
    );
    if (values.rootfs !== undefined && positionals.length > 0) throw usageError('give the rootfs either as --rootfs or as the argument, not both');
    const rootfs = values.rootfs ?? positionals[0] ?? ctx.env.ROOTFS_DIR;
    if (!rootfs) throw usageError('no rootfs given', 'use --rootfs DIR or set ROOTFS_DIR');
    const compression = values.compression ?? DEFAULT_COMPRESSION;
    if (!isCompression(compression)) throw usageError(`unknown compression ${JSON.stringify(compression)}`, `one of ${COMPRESSIONS.join(', ')}`);
    const output = values.output ?? DEFAULT_INITRD;
    if (output === '') throw usageError('--output is empty');
    const epoch = sourceDateEpoch(ctx.env);
    const r = await buildInitrd({ rootfs, output, compression, epoch }, ctx);
    ctx.out(`${r.output}: ${r.size} bytes (${humanBytes(r.size)}, ${r.compression}, ${r.entries} entries)`);
  },
};
