// Mount option words -> mount(2) flags and data, the way Kata's
// parse_mount_options does (kata-sys-util mount.rs): flag words become MS_*
// bits, everything else joins the data string; "loop" is refused and the data
// must fit in one page. Propagation words are kept apart: mount(2) treats them
// as a separate operation, so they are applied after the mount.
import { Code, RpcError } from '../rpc/status';
import { MS, parseMountOptions } from '../sys/mount';

const PROPAGATION: Record<string, number> = {
  shared: MS.SHARED,
  rshared: MS.SHARED | MS.REC,
  private: MS.PRIVATE,
  rprivate: MS.PRIVATE | MS.REC,
  slave: MS.SLAVE,
  rslave: MS.SLAVE | MS.REC,
  unbindable: MS.UNBINDABLE,
  runbindable: MS.UNBINDABLE | MS.REC,
};

/** Flags that only change how a mount is made (never per-mount attributes). */
const OPERATION_WORDS = new Set(['remount', 'bind', 'rbind']);

/** Per-mount flags a bind mount can only get through a later MS_REMOUNT|MS_BIND. */
export const PER_MOUNT_FLAGS =
  MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC | MS.NOATIME | MS.NODIRATIME | MS.RELATIME | MS.STRICTATIME;

/** Longest data string mount(2) takes (one page, with its NUL). */
export const MAX_MOUNT_DATA = 4095;

export interface ParsedOptions {
  flags: number;
  data: string;
  /** MS_SHARED/PRIVATE/SLAVE/UNBINDABLE (| MS_REC) to apply after mounting; 0 for none. */
  propagation: number;
  /** The flag words (in order), for merging on remount. */
  flagWords: string[];
  dataWords: string[];
  /** "remount", "bind", "rbind" when present. */
  operations: string[];
}

const FLAG_WORDS = new Set([
  'ro', 'rw', 'nosuid', 'suid', 'nodev', 'dev', 'noexec', 'exec', 'sync', 'async', 'dirsync', 'noatime', 'atime',
  'nodiratime', 'diratime', 'relatime', 'norelatime', 'strictatime', 'lazytime', 'defaults',
]);

/** Split option words into flags / data / propagation. Throws INVALID_ARGUMENT naming `where`. */
export function parseOptions(words: readonly string[], where: string): ParsedOptions {
  const flagWords: string[] = [];
  const dataWords: string[] = [];
  const operations: string[] = [];
  let propagation = 0;
  for (const w of words) {
    if (w === 'loop') throw new RpcError(Code.INVALID_ARGUMENT, `${where}: the mount option "loop" is not supported`);
    const p = PROPAGATION[w];
    if (p !== undefined) {
      propagation = p;
      continue;
    }
    if (OPERATION_WORDS.has(w)) operations.push(w);
    else if (FLAG_WORDS.has(w)) flagWords.push(w);
    else dataWords.push(w);
  }
  const { flags } = parseMountOptions(flagWords);
  const data = dataWords.join(',');
  if (Buffer.byteLength(data) > MAX_MOUNT_DATA) {
    throw new RpcError(Code.INVALID_ARGUMENT, `${where}: mount options are ${Buffer.byteLength(data)} bytes, more than mount(2) takes (${MAX_MOUNT_DATA})`);
  }
  return { flags, data, propagation, flagWords, dataWords, operations };
}

/** The value of the last `key=value` word, if any. */
export function optionValue(words: readonly string[], key: string): string | undefined {
  let v: string | undefined;
  for (const w of words) if (w.startsWith(`${key}=`)) v = w.slice(key.length + 1);
  return v;
}

/** `words` without any `key=...` word. */
export function withoutOption(words: readonly string[], key: string): string[] {
  return words.filter((w) => !w.startsWith(`${key}=`));
}

/** Parse a byte size: plain bytes or with a k/m/g (binary) suffix ("2M", "1G", "524288000"). */
export function parseSize(s: string): number | undefined {
  const m = /^(\d+)([kKmMgG]?)$/.exec(s.trim());
  if (!m) return undefined;
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g'];
  const n = Number(m[1]) * mult;
  return Number.isSafeInteger(n) ? n : undefined;
}
