// Parsers for cgroup file formats (pure, tolerant: malformed lines are skipped).
import type { BlkioStatsEntry } from './types';
import { UNLIMITED } from './types';

/** A single number; "max" -> `max`; missing/garbage -> undefined. */
export function parseNum(text: string | undefined, max = UNLIMITED): number | undefined {
  if (text === undefined) return undefined;
  const t = text.trim();
  if (t === 'max') return max;
  if (!/^-?\d+$/.test(t)) return undefined;
  return Number(t);
}

/** Flat keyed ("key value" per line) -> map of the numeric entries. */
export function parseFlatKeyed(text: string | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  if (text === undefined) return out;
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length !== 2 || !/^\d+$/.test(f[1]!)) continue;
    out[f[0]!] = Number(f[1]);
  }
  return out;
}

/** Space separated numbers (cpuacct.usage_percpu). */
export function parseNumList(text: string | undefined): number[] {
  if (text === undefined) return [];
  return text
    .trim()
    .split(/\s+/)
    .filter((w) => /^\d+$/.test(w))
    .map(Number);
}

/** Nested keyed: "<key> k1=v1 k2=v2" per line (io.stat, io.max). */
export function parseNestedKeyed(text: string | undefined): Array<{ key: string; values: Record<string, number> }> {
  const out: Array<{ key: string; values: Record<string, number> }> = [];
  if (text === undefined) return out;
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 1 || f[0] === '') continue;
    const values: Record<string, number> = {};
    for (const kv of f.slice(1)) {
      const i = kv.indexOf('=');
      if (i <= 0) continue;
      const v = kv.slice(i + 1);
      if (/^\d+$/.test(v)) values[kv.slice(0, i)] = Number(v);
    }
    out.push({ key: f[0]!, values });
  }
  return out;
}

function majMin(s: string): [number, number] | undefined {
  const m = /^(\d+):(\d+)$/.exec(s);
  return m ? [Number(m[1]), Number(m[2])] : undefined;
}

/**
 * cgroup v1 blkio files: "maj:min Op value" (io_service_bytes and friends) or
 * "maj:min value" (time, sectors). The trailing "Total N" line (no device) is
 * dropped; ops are lowercased as Kata reports them.
 */
export function parseBlkioV1(text: string | undefined): BlkioStatsEntry[] {
  const out: BlkioStatsEntry[] = [];
  if (text === undefined) return out;
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    const dev = f[0] ? majMin(f[0]) : undefined;
    if (!dev) continue;
    if (f.length === 3 && /^\d+$/.test(f[2]!)) {
      out.push({ major: dev[0], minor: dev[1], op: f[1]!.toLowerCase(), value: Number(f[2]) });
    } else if (f.length === 2 && /^\d+$/.test(f[1]!)) {
      out.push({ major: dev[0], minor: dev[1], op: '', value: Number(f[1]) });
    }
  }
  return out;
}

/** cgroup v2 io.stat -> Kata's entries: read, write, rios, wios, dbytes, dios per device. */
export function parseIoStatV2(text: string | undefined): BlkioStatsEntry[] {
  const ops: Array<[string, string]> = [
    ['rbytes', 'read'],
    ['wbytes', 'write'],
    ['rios', 'rios'],
    ['wios', 'wios'],
    ['dbytes', 'dbytes'],
    ['dios', 'dios'],
  ];
  const out: BlkioStatsEntry[] = [];
  for (const { key, values } of parseNestedKeyed(text)) {
    const dev = majMin(key);
    if (!dev) continue;
    for (const [k, op] of ops) {
      const v = values[k];
      if (v !== undefined) out.push({ major: dev[0], minor: dev[1], op, value: v });
    }
  }
  return out;
}

/** memory.oom_control (v1): oom_kill_disable, under_oom, oom_kill (kernel >= 4.13). */
export function parseOomControl(text: string | undefined): { oomKillDisable: boolean; underOom: boolean; oomKill?: number } | undefined {
  if (text === undefined) return undefined;
  const m = parseFlatKeyed(text);
  return { oomKillDisable: m.oom_kill_disable === 1, underOom: m.under_oom === 1, oomKill: m.oom_kill };
}

/** Page sizes named by hugetlb.<size>.<suffix> files in a directory listing. */
export function hugetlbSizes(names: readonly string[], suffix: string): string[] {
  const re = new RegExp(`^hugetlb\\.([^.]+)\\.${suffix.replace(/\./g, '\\.')}$`);
  const out: string[] = [];
  for (const n of names) {
    const m = re.exec(n);
    if (m) out.push(m[1]!);
  }
  return out.sort();
}
