// Compression of the initrd, streamed: archive chunks go into the compressor as they are made
// and its output goes straight into the output file. Every format is one the kernel's
// initramfs decompressors read, with options chosen for that and for reproducibility:
//   gzip  node:zlib, level 9; its header has no file name and mtime 0 (bytes 4..7)
//   lz4   `lz4 -l -9`: the LEGACY frame format (magic 0x184C2102), the only one the kernel's
//         unlz4 understands
//   zstd  `zstd -19 -T1`: window 8 MiB at level 19 (the kernel allocates the window at boot;
//         --ultra levels would ask for 128 MiB); one worker, so the output does not depend on
//         the number of cores
//   xz    `xz --check=crc32 --lzma2=dict=1MiB -T1`: the kernel's XZ Embedded verifies CRC32
//         or nothing (not the default CRC64); a 1 MiB dictionary as the kernel's own initramfs
//         rule uses; single-threaded, so newer xz versions (threaded by default) write the same
// Environment variables that would change a tool's output (XZ_OPT, ZSTD_CLEVEL...) are
// removed from the tools' environment.
import fs from 'node:fs';
import { spawn } from 'node:child_process';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import { OsbuilderError, failedError } from '../util/errors';
import { requireTool } from '../util/tools';

export const COMPRESSIONS = ['none', 'gzip', 'lz4', 'zstd', 'xz'] as const;
export type Compression = (typeof COMPRESSIONS)[number];
export const DEFAULT_COMPRESSION: Compression = 'lz4';

export const isCompression = (s: string): s is Compression => (COMPRESSIONS as readonly string[]).includes(s);

/** The external compressors: tool and arguments (read stdin, write stdout). */
export const COMPRESSOR_TOOLS: Partial<Record<Compression, { tool: string; args: string[] }>> = {
  lz4: { tool: 'lz4', args: ['-l', '-9', '-q', '-c'] },
  zstd: { tool: 'zstd', args: ['-19', '-T1', '-q', '-c'] },
  xz: { tool: 'xz', args: ['--check=crc32', '--lzma2=dict=1MiB', '-T1', '-q', '-c'] },
};

/** The first bytes of each format's output (the lz4 one is the legacy frame magic). */
export const MAGIC: Record<Compression, Buffer> = {
  none: Buffer.from('070701', 'latin1'),
  gzip: Buffer.from([0x1f, 0x8b]),
  lz4: Buffer.from([0x02, 0x21, 0x4c, 0x18]),
  zstd: Buffer.from([0x28, 0xb5, 0x2f, 0xfd]),
  xz: Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]),
};

/** Variables that tools read for default options. */
const TOOL_ENV_OVERRIDES = ['XZ_OPT', 'XZ_DEFAULTS', 'ZSTD_CLEVEL', 'ZSTD_NBTHREADS', 'LZ4_CLEVEL', 'GZIP'];

/** The path of the compressor `c` needs (undefined: built in); MISSING naming the package when absent. */
export function checkCompressor(c: Compression): string | undefined {
  const t = COMPRESSOR_TOOLS[c];
  return t ? requireTool(t.tool, `for --compression ${c}`) : undefined;
}

/**
 * Write `source` to `outPath` (created, mode 0644) compressed with `c`. Resolves when the file is
 * complete; rejects (leaving a partial file for the caller to remove) when the source fails or
 * the compressor fails. A source error wins over the compressor's reaction to it.
 */
export async function compressTo(source: AsyncIterable<Buffer>, c: Compression, outPath: string, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  try {
    await compress(source, c, outPath, env);
  } catch (err) {
    // Errors of the archive (a name newc cannot hold...) or of the output (ENOSPC...): one line.
    if (err instanceof OsbuilderError) throw err;
    const e = err as NodeJS.ErrnoException;
    throw failedError(`writing ${outPath} failed: ${e.code && e.syscall ? `${e.syscall}: ${e.code}` : e.message}`);
  }
}

async function compress(source: AsyncIterable<Buffer>, c: Compression, outPath: string, env: NodeJS.ProcessEnv): Promise<void> {
  const input = Readable.from(source, { objectMode: false });
  if (c === 'none') {
    await pipeline(input, fs.createWriteStream(outPath, { mode: 0o644 }));
    return;
  }
  if (c === 'gzip') {
    await pipeline(input, zlib.createGzip({ level: 9 }), fs.createWriteStream(outPath, { mode: 0o644 }));
    return;
  }
  const t = COMPRESSOR_TOOLS[c]!;
  const file = checkCompressor(c)!;
  const toolEnv: NodeJS.ProcessEnv = { ...env, LC_ALL: 'C' };
  for (const k of TOOL_ENV_OVERRIDES) delete toolEnv[k];
  const fd = fs.openSync(outPath, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC, 0o644);
  let child;
  try {
    // stdout is the output file itself (dup2'ed into place by the spawn), stdin a pipe we feed.
    child = spawn(file, t.args, { env: toolEnv, stdio: ['pipe', fd, 'pipe'] });
  } finally {
    fs.closeSync(fd);
  }
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => void (stderr += d.toString()));
  const exited = new Promise<number | string>((resolve) => {
    child.once('error', (err) => resolve(err.message));
    child.once('close', (code, signal) => resolve(code ?? `signal ${signal}`));
  });
  let feedErr: unknown;
  try {
    await pipeline(input, child.stdin!);
  } catch (err) {
    feedErr = err;
  }
  const isPipeErr = (e: unknown): boolean => ['EPIPE', 'ERR_STREAM_PREMATURE_CLOSE', 'ERR_STREAM_DESTROYED'].includes((e as NodeJS.ErrnoException)?.code ?? '');
  if (feedErr !== undefined && !isPipeErr(feedErr)) {
    // Our side failed (a file could not be read...): stop the tool and report that.
    child.kill('SIGKILL');
    await exited;
    throw feedErr;
  }
  const code = await exited;
  if (code !== 0) {
    const tail = stderr.trim().split('\n').slice(-3).join('; ');
    throw failedError(`${t.tool} ${t.args.join(' ')} failed (${typeof code === 'number' ? `exit ${code}` : code})${tail ? `: ${tail}` : ''}`);
  }
  if (feedErr !== undefined) throw failedError(`${t.tool} stopped reading its input: ${(feedErr as Error).message}`);
}
