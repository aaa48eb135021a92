// A newc ("070701", SVR4 without CRC) cpio writer: the archive format the kernel's initramfs
// unpacker reads. Pure: no file system access; entries come with their data (a buffer, or an
// async source of chunks read while the archive streams out).
//
// Layout of one entry: a 110-byte ASCII header ("070701" + 13 fields of 8 upper-case hex digits:
// ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor,
// namesize, check), the name with its NUL (namesize counts the NUL), zero padding so that
// header+name end on a multiple of 4, then `filesize` bytes of data and zero padding to a
// multiple of 4 again. The archive ends with an entry named "TRAILER!!!".
//
// Hard links (newc semantics): every link of a file carries the same ino and the link count;
// only the LAST link in the archive carries the data, the others have filesize 0. Both GNU
// cpio and the kernel (init/initramfs.c, which opens a later link without truncating it)
// restore one file with several names from that.

export const NEWC_MAGIC = '070701';
export const HEADER_SIZE = 110;
export const TRAILER_NAME = 'TRAILER!!!';
/** The kernel's unpacker skips names longer than PATH_MAX (4096, NUL included). */
export const MAX_NAME_BYTES = 4095;
export const MAX_FIELD = 0xffffffff;

/** File type bits of st_mode. */
export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;

export interface NewcHeader {
  /** Path inside the archive (no leading "/"): bytes, or a string (UTF-8). */
  name: Buffer | string;
  ino: number;
  /** Full st_mode: type bits and permission bits. */
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  /** Seconds since the epoch. */
  mtime: number;
  filesize: number;
  devmajor?: number;
  devminor?: number;
  rdevmajor?: number;
  rdevminor?: number;
}

/** A source of a file's bytes, read while the archive is written. */
export type DataSource = Buffer | (() => AsyncIterable<Buffer>);

export interface ArchiveEntry extends NewcHeader {
  /** Exactly `filesize` bytes (absent: no data, filesize must be 0). */
  data?: DataSource;
}

/** Bytes of zero padding after `n` bytes to reach a multiple of 4. */
export function pad4(n: number): number {
  return (4 - (n % 4)) % 4;
}

function hex8(field: string, v: number): string {
  if (!Number.isInteger(v) || v < 0 || v > MAX_FIELD) throw new RangeError(`cpio newc: ${field} ${v} does not fit in 32 bits`);
  return v.toString(16).toUpperCase().padStart(8, '0');
}

function nameBytes(name: Buffer | string): Buffer {
  const b = typeof name === 'string' ? Buffer.from(name, 'utf8') : name;
  if (b.length === 0) throw new RangeError('cpio newc: empty name');
  if (b.includes(0)) throw new RangeError('cpio newc: name contains a NUL byte');
  if (b.length > MAX_NAME_BYTES) throw new RangeError(`cpio newc: name of ${b.length} bytes is longer than the kernel accepts (${MAX_NAME_BYTES})`);
  return b;
}

/** The header of one entry, with its name, NUL and padding (a multiple of 4 bytes long). */
export function encodeHeader(h: NewcHeader): Buffer {
  const name = nameBytes(h.name);
  const namesize = name.length + 1;
  const fields = [
    hex8('ino', h.ino),
    hex8('mode', h.mode),
    hex8('uid', h.uid),
    hex8('gid', h.gid),
    hex8('nlink', h.nlink),
    hex8('mtime', h.mtime),
    hex8('filesize', h.filesize),
    hex8('devmajor', h.devmajor ?? 0),
    hex8('devminor', h.devminor ?? 0),
    hex8('rdevmajor', h.rdevmajor ?? 0),
    hex8('rdevminor', h.rdevminor ?? 0),
    hex8('namesize', namesize),
    hex8('check', 0),
  ];
  const total = HEADER_SIZE + namesize + pad4(HEADER_SIZE + namesize);
  const out = Buffer.alloc(total); // zero filled: the NUL and the padding
  out.write(NEWC_MAGIC + fields.join(''), 0, 'latin1');
  name.copy(out, HEADER_SIZE);
  return out;
}

const ZEROS = Buffer.alloc(4);

/** Zero padding after `filesize` bytes of data. */
export function dataPadding(filesize: number): Buffer {
  return ZEROS.subarray(0, pad4(filesize));
}

/** The TRAILER!!! entry that ends an archive. */
export function encodeTrailer(): Buffer {
  return encodeHeader({ name: TRAILER_NAME, ino: 0, mode: 0, uid: 0, gid: 0, nlink: 1, mtime: 0, filesize: 0 });
}

/** One whole entry with in-memory data (header, data, padding). */
export function encodeEntry(e: NewcHeader, data: Buffer = Buffer.alloc(0)): Buffer {
  if (data.length !== e.filesize) throw new RangeError(`cpio newc: ${String(e.name)}: ${data.length} bytes of data for filesize ${e.filesize}`);
  return Buffer.concat([encodeHeader(e), data, dataPadding(data.length)]);
}

export interface StreamOptions {
  /** Small pieces are gathered into chunks of about this size (default 1 MiB). */
  chunkSize?: number;
  /** Called after each entry is fully emitted: entries so far, archive bytes so far. */
  onEntry?: (entries: number, bytes: number) => void;
}

/**
 * The archive as a stream of chunks: each entry's header, its data (pulled from its source
 * only when the consumer asks for more) and padding, then the trailer. Memory use is bounded
 * by the chunk size and the data sources' chunks, never by the archive. Throws if a data
 * source yields a different number of bytes than the entry's filesize.
 */
export async function* newcStream(entries: Iterable<ArchiveEntry> | AsyncIterable<ArchiveEntry>, o: StreamOptions = {}): AsyncGenerator<Buffer> {
  const chunkSize = o.chunkSize ?? 1 << 20;
  let pending: Buffer[] = [];
  let pendingLen = 0;
  let total = 0;
  let count = 0;
  const take = (): Buffer => {
    const b = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingLen);
    pending = [];
    pendingLen = 0;
    return b;
  };
  const add = (b: Buffer): void => {
    if (b.length === 0) return;
    pending.push(b);
    pendingLen += b.length;
    total += b.length;
  };
  for await (const e of entries) {
    add(encodeHeader(e));
    let got = 0;
    if (e.data !== undefined) {
      if (Buffer.isBuffer(e.data)) {
        got = e.data.length;
        if (got === e.filesize) add(e.data);
      } else {
        for await (const chunk of e.data()) {
          got += chunk.length;
          if (got > e.filesize) break;
          if (chunk.length >= chunkSize / 2) {
            // Big chunks go out as they are (no copy into the pending buffer).
            if (pendingLen > 0) yield take();
            total += chunk.length;
            yield chunk;
          } else {
            add(chunk);
            if (pendingLen >= chunkSize) yield take();
          }
        }
      }
    }
    if (got !== e.filesize) throw new RangeError(`cpio newc: ${String(e.name)}: the data source gave ${got > e.filesize ? 'more than' : got} bytes for filesize ${e.filesize}`);
    add(dataPadding(e.filesize));
    count++;
    o.onEntry?.(count, total);
    if (pendingLen >= chunkSize) yield take();
  }
  add(encodeTrailer());
  yield take();
}
