// Minimal protobuf wire-format helpers (pure) used where the generated types
// are not enough: the 1.x/2.x field-8 split of CreateContainerRequest.

/** Read a varint at `pos`; returns [value, nextPos]. Throws on truncation. */
export function readVarint(buf: Uint8Array, pos: number): [number, number] {
  let result = 0;
  let shift = 0;
  for (;;) {
    if (pos >= buf.length) throw new Error('truncated varint');
    const b = buf[pos++]!;
    if (shift < 28) result |= (b & 0x7f) << shift;
    else result += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) return [result >>> 0 === result ? result : result, pos];
    shift += 7;
    if (shift > 63) throw new Error('varint too long');
  }
}

export interface RawField {
  field: number;
  wireType: number;
  start: number; // offset of the tag
  end: number; // offset after the value
  value?: number; // for varints
}

/** Split a message into its top-level fields without decoding them. */
export function scanFields(buf: Uint8Array): RawField[] {
  const out: RawField[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const start = pos;
    const [tag, p1] = readVarint(buf, pos);
    pos = p1;
    const field = Math.floor(tag / 8);
    const wireType = tag & 7;
    if (field === 0) throw new Error('field number 0');
    let value: number | undefined;
    switch (wireType) {
      case 0: {
        const [v, p2] = readVarint(buf, pos);
        value = v;
        pos = p2;
        break;
      }
      case 1:
        pos += 8;
        break;
      case 2: {
        const [len, p2] = readVarint(buf, pos);
        pos = p2 + len;
        break;
      }
      case 5:
        pos += 4;
        break;
      default:
        throw new Error(`unsupported wire type ${wireType}`);
    }
    if (pos > buf.length) throw new Error('truncated field');
    out.push({ field, wireType, start, end: pos, value });
  }
  return out;
}

/** Remove the given raw fields from a message, returning the remaining bytes. */
export function withoutFields(buf: Uint8Array, drop: RawField[]): Uint8Array {
  if (drop.length === 0) return buf;
  const parts: Uint8Array[] = [];
  let pos = 0;
  for (const f of drop) {
    parts.push(buf.subarray(pos, f.start));
    pos = f.end;
  }
  parts.push(buf.subarray(pos));
  return Buffer.concat(parts);
}
