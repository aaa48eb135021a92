// ListProcesses (Kata 1.x) "table" format: a `ps -ef` style listing of the
// container's processes. Kata's agent runs `ps -ef` (or `ps <args>`) and
// keeps the header plus the lines whose PID column is one of the container's
// pids. A guest image may have no `ps`, so for the default arguments the
// table is built here from /proc, in procps' `ps -ef` layout:
//   UID          PID    PPID  C STIME TTY          TIME CMD
// Other arguments run `ps` as Kata does (filterPsOutput).
import { parseProcStat } from '../proc/stat';
import fs from 'node:fs';
import path from 'node:path';

export interface PsDeps {
  /** /proc of the agent's pid namespace. */
  procRoot: string;
  /** Clock ticks per second (sysconf(_SC_CLK_TCK)). */
  clockTicks: number;
  /** uid -> user name (default: /etc/passwd of the agent's root). */
  userName?: (uid: number) => string | undefined;
  /** "Now" in ms since the epoch (tests). */
  now?: () => number;
}

export interface ProcInfo {
  pid: number;
  ppid: number;
  uid: number;
  /** Seconds since boot at which the process started. */
  startSec: number;
  /** utime + stime, seconds. */
  cpuSec: number;
  ttyNr: number;
  comm: string;
  cmdline: string;
}

/** The /proc/<pid>/stat fields the table shows; undefined for a malformed line. */
export function procStatInfo(text: string): { comm: string; ppid: number; ttyNr: number; utime: number; stime: number; starttime: number } | undefined {
  try {
    const { comm, field } = parseProcStat(text);
    return { comm, ppid: field(4), ttyNr: field(7), utime: field(14), stime: field(15), starttime: field(22) };
  } catch {
    return undefined;
  }
}

function readProc(deps: PsDeps, pid: number): ProcInfo | undefined {
  const dir = path.join(deps.procRoot, String(pid));
  try {
    const st = procStatInfo(fs.readFileSync(path.join(dir, 'stat'), 'utf8'));
    if (!st) return undefined;
    const status = fs.readFileSync(path.join(dir, 'status'), 'utf8');
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1] ?? 0);
    let cmdline = '';
    try {
      cmdline = fs.readFileSync(path.join(dir, 'cmdline'), 'utf8').replace(/\0+$/, '').split('\0').join(' ');
    } catch {
      // kernel thread or gone
    }
    return {
      pid,
      ppid: st.ppid,
      uid,
      startSec: st.starttime / deps.clockTicks,
      cpuSec: (st.utime + st.stime) / deps.clockTicks,
      ttyNr: st.ttyNr,
      comm: st.comm,
      cmdline,
    };
  } catch {
    return undefined; // exited meanwhile
  }
}

/** tty_nr (dev_t) -> procps' TTY column: pts/N, ttyN, ttySN, or "?". */
export function ttyName(ttyNr: number): string {
  if (ttyNr === 0) return '?';
  const major = (ttyNr >> 8) & 0xfff;
  const minor = (ttyNr & 0xff) | ((ttyNr >> 12) & 0xfff00);
  if (major >= 136 && major <= 143) return `pts/${(major - 136) * 256 + minor}`;
  if (major === 4) return minor < 64 ? `tty${minor}` : `ttyS${minor - 64}`;
  if (major === 5 && minor === 1) return 'console';
  return '?';
}

function two(n: number): string {
  return String(n).padStart(2, '0');
}

/** procps TIME column: [DD-]HH:MM:SS of CPU time. */
export function formatCpuTime(sec: number): string {
  let s = Math.floor(sec);
  const days = Math.floor(s / 86400);
  s -= days * 86400;
  const hms = `${two(Math.floor(s / 3600))}:${two(Math.floor((s % 3600) / 60))}:${two(s % 60)}`;
  return days > 0 ? `${days}-${hms}` : hms;
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** procps STIME column: HH:MM when started today, else MonDD (or the year when older than a year). */
export function formatStartTime(startMs: number, nowMs: number): string {
  const d = new Date(startMs);
  const now = new Date(nowMs);
  if (d.toDateString() === now.toDateString()) return `${two(d.getHours())}:${two(d.getMinutes())}`;
  if (nowMs - startMs < 365 * 86400_000) return `${MONTHS[d.getMonth()]}${two(d.getDate())}`;
  return String(d.getFullYear());
}

function bootTimeSec(procRoot: string): number {
  try {
    return Number(/^btime\s+(\d+)/m.exec(fs.readFileSync(path.join(procRoot, 'stat'), 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

function passwdLookup(file = '/etc/passwd'): (uid: number) => string | undefined {
  let map: Map<number, string> | undefined;
  return (uid) => {
    if (!map) {
      map = new Map();
      try {
        for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
          const f = line.split(':');
          if (f.length >= 3 && f[0] && /^\d+$/.test(f[2]!)) map.set(Number(f[2]), f[0]);
        }
      } catch {
        // no passwd: numeric uids
      }
    }
    return map.get(uid);
  };
}

/** The `ps -ef` table of `pids` (processes that are gone are left out). */
export function psTable(pids: readonly number[], deps: PsDeps): string {
  const now = deps.now?.() ?? Date.now();
  const boot = bootTimeSec(deps.procRoot);
  const user = deps.userName ?? passwdLookup();
  const rows: string[][] = [['UID', 'PID', 'PPID', 'C', 'STIME', 'TTY', 'TIME', 'CMD']];
  for (const pid of [...pids].sort((a, b) => a - b)) {
    const p = readProc(deps, pid);
    if (!p) continue;
    const startMs = (boot + p.startSec) * 1000;
    const elapsed = Math.max(now / 1000 - boot - p.startSec, 0);
    const c = elapsed > 0 ? Math.min(Math.floor((p.cpuSec * 100) / elapsed), 99) : 0;
    let name = user(p.uid) ?? String(p.uid);
    if (name.length > 8) name = String(p.uid);
    rows.push([
      name,
      String(p.pid),
      String(p.ppid),
      String(c),
      formatStartTime(startMs, now),
      ttyName(p.ttyNr),
      formatCpuTime(p.cpuSec),
      p.cmdline !== '' ? p.cmdline : `[${p.comm}]`,
    ]);
  }
  // procps widths: UID 8 left, PID/PPID 7 right, C 2, STIME 5, TTY 8 left, TIME 8 right.
  const widths = [8, 7, 7, 2, 5, 8, 8];
  const right = [false, true, true, true, false, false, true];
  return (
    rows
      .map((r) =>
        r
          .map((cell, i) => {
            if (i === r.length - 1) return cell;
            const w = widths[i]!;
            return right[i] ? cell.padStart(w) : cell.padEnd(w);
          })
          .join(' '),
      )
      .join('\n') + '\n'
  );
}

/**
 * Kata's filtering of `ps` output: keep the header and the lines whose PID
 * column (found in the header) is one of `pids`. Throws when the header has
 * no PID column.
 */
export function filterPsOutput(out: string, pids: readonly number[]): string {
  const lines = out.split('\n');
  const header = lines[0] ?? '';
  const idx = header.trim().split(/\s+/).indexOf('PID');
  if (idx < 0) throw new Error('ps output has no PID column');
  const want = new Set(pids);
  const kept = [header];
  for (const line of lines.slice(1)) {
    if (line.trim() === '') continue;
    const f = line.trim().split(/\s+/);
    const pid = Number(f[idx]);
    if (Number.isInteger(pid) && want.has(pid)) kept.push(line);
  }
  return kept.join('\n') + '\n';
}
