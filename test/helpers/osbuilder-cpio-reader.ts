// A small, strict newc ("070701") cpio reader for the tests: an independent decoder of what
// osbuilder's writer produces. It checks the magic, that every field is 8 upper-case hex digits,
// the NUL after each name, that every padding byte is zero and 4-byte alignment, and that the
// archive ends right after TRAILER!!!'s padding.

export interface NewcRecord {
  /** Offset of the header in the archive. */
  offset: number;
  name: string;
  nameBytes: Buffer;
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  mtime: number;
  filesize: number;
  devmajor: number;
  devminor: number;
  rdevmajor: number;
  rdevminor: number;
  namesize: number;
  check: number;
  data: Buffer;
}

const FIELDS = ['ino', 'mode', 'uid', 'gid', 'nlink', 'mtime', 'filesize', 'devmajor', 'devminor', 'rdevmajor', 'rdevminor', 'namesize', 'check'] as const;

function zeros(buf: Buffer, from: number, to: number, what: string): void {
  if (to > buf.length) throw new Error(`${what}: archive truncated at ${buf.length} (needs ${to})`);
  for (let i = from; i < to; i++) if (buf[i] !== 0) throw new Error(`${what}: padding byte at ${i} is ${buf[i]}, not 0`);
}

/** Decode a whole archive (the trailer included as the last record). Throws on any deviation. */
export function readNewc(buf: Buffer, o: { allowTrailingZeros?: boolean } = {}): NewcRecord[] {
  const out: NewcRecord[] = [];
  let off = 0;
  for (;;) {
    if (off % 4 !== 0) throw new Error(`header at ${off} is not 4-byte aligned`);
    if (off + 110 > buf.length) throw new Error(`archive truncated: header at ${off}`);
    const magic = buf.toString('latin1', off, off + 6);
    if (magic !== '070701') throw new Error(`bad magic ${JSON.stringify(magic)} at ${off}`);
    const v: Record<string, number> = {};
    FIELDS.forEach((f, i) => {
      const s = buf.toString('latin1', off + 6 + i * 8, off + 14 + i * 8);
      if (!/^[0-9A-F]{8}$/.test(s)) throw new Error(`field ${f} at ${off} is ${JSON.stringify(s)}, not 8 upper-case hex digits`);
      v[f] = parseInt(s, 16);
    });
    const namesize = v.namesize!;
    if (namesize < 1) throw new Error(`namesize 0 at ${off}`);
    const nameStart = off + 110;
    const nameBytes = buf.subarray(nameStart, nameStart + namesize - 1);
    if (buf[nameStart + namesize - 1] !== 0) throw new Error(`name at ${nameStart} is not NUL terminated`);
    if (nameBytes.includes(0)) throw new Error(`name at ${nameStart} contains a NUL`);
    let p = nameStart + namesize;
    const afterName = p + ((4 - (p % 4)) % 4);
    zeros(buf, p, afterName, `after the name ${nameBytes.toString()}`);
    p = afterName;
    const filesize = v.filesize!;
    if (p + filesize > buf.length) throw new Error(`data of ${nameBytes.toString()} truncated`);
    const data = buf.subarray(p, p + filesize);
    p += filesize;
    const afterData = p + ((4 - (p % 4)) % 4);
    zeros(buf, p, afterData, `after the data of ${nameBytes.toString()}`);
    const rec = { offset: off, name: nameBytes.toString('utf8'), nameBytes, data, ...v } as NewcRecord;
    out.push(rec);
    off = afterData;
    if (rec.name === 'TRAILER!!!') break;
  }
  if (off !== buf.length) {
    if (!o.allowTrailingZeros) throw new Error(`${buf.length - off} bytes after the trailer`);
    zeros(buf, off, buf.length, 'after the trailer');
  }
  return out;
}
