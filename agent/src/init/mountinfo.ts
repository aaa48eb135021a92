// /proc/self/mountinfo parsing (enough to tell what is mounted where).

export interface MountInfoEntry {
  id: number;
  parent: number;
  /** Mount point, unescaped (\040 -> space). */
  mountPoint: string;
  /** Optional fields (propagation), e.g. ["shared:12", "master:3"]. */
  optional: string[];
  fstype: string;
  source: string;
  options: string;
  superOptions: string;
}

function unescape(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Parse mountinfo text; malformed lines are skipped. */
export function parseMountInfo(text: string): MountInfoEntry[] {
  const out: MountInfoEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    const f = line.split(' ');
    const sep = f.indexOf('-', 6);
    if (f.length < 7 || sep < 0 || f.length < sep + 3) continue;
    out.push({
      id: Number(f[0]),
      parent: Number(f[1]),
      mountPoint: unescape(f[4]!),
      options: f[5]!,
      optional: f.slice(6, sep),
      fstype: f[sep + 1]!,
      source: unescape(f[sep + 2]!),
      superOptions: f[sep + 3] ?? '',
    });
  }
  return out;
}

/** The file system type visible at mountPoint (the last, i.e. topmost, mount there), if any. */
export function mountedType(entries: readonly MountInfoEntry[], mountPoint: string): string | undefined {
  const mp = mountPoint.length > 1 ? mountPoint.replace(/\/+$/, '') : mountPoint;
  let t: string | undefined;
  for (const e of entries) if (e.mountPoint === mp) t = e.fstype;
  return t;
}
