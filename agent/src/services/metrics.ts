// GetMetrics: agent process and guest OS metrics in the Prometheus text
// exposition format (version 0.0.4), with the metric names and labels of the
// Kata agent (src/agent/src/metrics.rs) so host-side tooling (kata-monitor)
// sees the same series. Every source is read from <proc>; an unreadable
// source is skipped (logged at debug), never an error, as in Kata.
import { parseProcStat } from '../proc/stat';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import type { Handler } from '../rpc/dispatch';
import type { ResolvedDeps } from './deps';

type Labels = Record<string, string>;

interface Sample {
  labels: Labels;
  value: number;
}

interface Family {
  name: string;
  help: string;
  type: 'gauge' | 'counter';
  samples: Sample[];
}

/** Accumulates metric families and renders them in the text format. */
export class Exposition {
  private readonly families = new Map<string, Family>();

  family(name: string, help: string, type: 'gauge' | 'counter' = 'gauge'): (value: number, labels?: Labels) => void {
    let f = this.families.get(name);
    if (!f) {
      f = { name, help, type, samples: [] };
      this.families.set(name, f);
    }
    const fam = f;
    return (value, labels = {}) => {
      fam.samples.push({ labels, value });
    };
  }

  render(): string {
    const out: string[] = [];
    const names = [...this.families.keys()].sort();
    for (const name of names) {
      const f = this.families.get(name)!;
      if (f.samples.length === 0) continue;
      out.push(`# HELP ${name} ${escapeHelp(f.help)}`);
      out.push(`# TYPE ${name} ${f.type}`);
      for (const s of f.samples) {
        const keys = Object.keys(s.labels);
        const labels = keys.length === 0 ? '' : `{${keys.map((k) => `${k}="${escapeLabel(s.labels[k]!)}"`).join(',')}}`;
        out.push(`${name}${labels} ${formatValue(s.value)}`);
      }
    }
    return out.length === 0 ? '' : `${out.join('\n')}\n`;
  }
}

function escapeHelp(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

function escapeLabel(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return 'NaN';
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  return String(v);
}

function num(s: string | undefined): number {
  if (s === undefined) return 0;
  const n = Number(s);
  return Number.isFinite(n) ? n : 0;
}

/** "Key:   value [kB]" files (/proc/meminfo, /proc/self/status, /proc/self/io). */
export function parseKeyValue(text: string): Map<string, { value: number; unit?: string }> {
  const m = new Map<string, { value: number; unit?: string }>();
  for (const line of text.split('\n')) {
    const i = line.indexOf(':');
    if (i <= 0) continue;
    const key = line.slice(0, i).trim();
    const parts = line.slice(i + 1).trim().split(/\s+/);
    if (parts[0] === undefined || parts[0] === '' || !/^-?\d+$/.test(parts[0])) continue;
    m.set(key, { value: Number(parts[0]), unit: parts[1] });
  }
  return m;
}

// Kata's kata_agent_proc_status items and the /proc/self/status keys they come from (values in kB).
const PROC_STATUS_ITEMS: [string, string][] = [
  ['vmpeak', 'VmPeak'],
  ['vmsize', 'VmSize'],
  ['vmlck', 'VmLck'],
  ['vmpin', 'VmPin'],
  ['vmhwm', 'VmHWM'],
  ['vmrss', 'VmRSS'],
  ['rssanon', 'RssAnon'],
  ['rssfile', 'RssFile'],
  ['rssshmem', 'RssShmem'],
  ['vmdata', 'VmData'],
  ['vmstk', 'VmStk'],
  ['vmexe', 'VmExe'],
  ['vmlib', 'VmLib'],
  ['vmpte', 'VmPTE'],
  ['vmswap', 'VmSwap'],
  ['hugetlbpages', 'HugetlbPages'],
  ['voluntary_ctxt_switches', 'voluntary_ctxt_switches'],
  ['nonvoluntary_ctxt_switches', 'nonvoluntary_ctxt_switches'],
];

const IO_ITEMS = ['rchar', 'wchar', 'syscr', 'syscw', 'read_bytes', 'write_bytes', 'cancelled_write_bytes'];

// Kata's kata_guest_meminfo items and their /proc/meminfo keys (values converted to bytes).
const MEMINFO_ITEMS: [string, string][] = [
  ['mem_total', 'MemTotal'],
  ['mem_free', 'MemFree'],
  ['mem_available', 'MemAvailable'],
  ['buffers', 'Buffers'],
  ['cached', 'Cached'],
  ['swap_cached', 'SwapCached'],
  ['active', 'Active'],
  ['inactive', 'Inactive'],
  ['active_anon', 'Active(anon)'],
  ['inactive_anon', 'Inactive(anon)'],
  ['active_file', 'Active(file)'],
  ['inactive_file', 'Inactive(file)'],
  ['unevictable', 'Unevictable'],
  ['mlocked', 'Mlocked'],
  ['high_total', 'HighTotal'],
  ['high_free', 'HighFree'],
  ['low_total', 'LowTotal'],
  ['low_free', 'LowFree'],
  ['mmap_copy', 'MmapCopy'],
  ['swap_total', 'SwapTotal'],
  ['swap_free', 'SwapFree'],
  ['dirty', 'Dirty'],
  ['writeback', 'Writeback'],
  ['anon_pages', 'AnonPages'],
  ['mapped', 'Mapped'],
  ['shmem', 'Shmem'],
  ['slab', 'Slab'],
  ['s_reclaimable', 'SReclaimable'],
  ['s_unreclaim', 'SUnreclaim'],
  ['kernel_stack', 'KernelStack'],
  ['page_tables', 'PageTables'],
  ['quicklists', 'Quicklists'],
  ['nfs_unstable', 'NFS_Unstable'],
  ['bounce', 'Bounce'],
  ['writeback_tmp', 'WritebackTmp'],
  ['commit_limit', 'CommitLimit'],
  ['committed_as', 'Committed_AS'],
  ['vmalloc_total', 'VmallocTotal'],
  ['vmalloc_used', 'VmallocUsed'],
  ['vmalloc_chunk', 'VmallocChunk'],
  ['hardware_corrupted', 'HardwareCorrupted'],
  ['anon_hugepages', 'AnonHugePages'],
  ['shmem_hugepages', 'ShmemHugePages'],
  ['shmem_pmd_mapped', 'ShmemPmdMapped'],
  ['cma_total', 'CmaTotal'],
  ['cma_free', 'CmaFree'],
  ['hugepages_total', 'HugePages_Total'],
  ['hugepages_free', 'HugePages_Free'],
  ['hugepages_rsvd', 'HugePages_Rsvd'],
  ['hugepages_surp', 'HugePages_Surp'],
  ['hugepagesize', 'Hugepagesize'],
  ['direct_map_4k', 'DirectMap4k'],
  ['direct_map_4M', 'DirectMap4M'],
  ['direct_map_2M', 'DirectMap2M'],
  ['direct_map_1G', 'DirectMap1G'],
  ['hugetlb', 'Hugetlb'],
  ['per_cpu', 'Percpu'],
  ['k_reclaimable', 'KReclaimable'],
];

const CPU_TIME_ITEMS = ['user', 'nice', 'system', 'idle', 'iowait', 'irq', 'softirq', 'steal', 'guest', 'guest_nice'];

const DISKSTAT_ITEMS = [
  'reads',
  'merged',
  'sectors_read',
  'time_reading',
  'writes',
  'writes_merged',
  'sectors_written',
  'time_writing',
  'in_progress',
  'time_in_progress',
  'weighted_time_in_progress',
  'discards',
  'discards_merged',
  'sectors_discarded',
  'time_discarding',
  'flushes',
  'time_flushing',
];

const NETDEV_ITEMS = [
  'recv_bytes',
  'recv_packets',
  'recv_errs',
  'recv_drop',
  'recv_fifo',
  'recv_frame',
  'recv_compressed',
  'recv_multicast',
  'sent_bytes',
  'sent_packets',
  'sent_errs',
  'sent_drop',
  'sent_fifo',
  'sent_colls',
  'sent_carrier',
  'sent_compressed',
];

/** Filesystem types whose usage Kata reports. */
const REAL_FS_TYPES = new Set(['ext4', 'xfs', 'btrfs', 'vfat', 'overlay']);

export class MetricsCollector {
  private scrapes = 0;

  constructor(private readonly d: ResolvedDeps) {}

  private read(rel: string, log: Logger): string | undefined {
    const file = path.join(this.d.paths.proc, rel);
    try {
      return fs.readFileSync(file, 'utf8');
    } catch (err) {
      log.debug({ file, err: (err as Error).message }, 'metrics source unreadable');
      return undefined;
    }
  }

  collect(log: Logger = this.d.log): string {
    const x = new Exposition();
    this.scrapes++;
    x.family('kata_agent_scrape_count', 'Metrics scrape count', 'counter')(this.scrapes);
    this.agentMetrics(x, log);
    this.guestMetrics(x, log);
    return x.render();
  }

  private agentMetrics(x: Exposition, log: Logger): void {
    const tps = this.d.sys.clockTicksPerSecond();
    const stat = this.read('self/stat', log);
    if (stat !== undefined) {
      try {
        const f = parseProcStat(stat).field;
        x.family('kata_agent_threads', 'Agent process threads')(f(20));
        x.family('kata_agent_total_time', 'Agent process total time (user + system CPU seconds)')((f(14) + f(15)) / tps);
        x.family('kata_agent_total_vm', 'Agent process total VM size (bytes)')(f(23));
        x.family('kata_agent_total_rss', 'Agent process total RSS size (bytes)')(f(24) * this.d.sys.pageSize());
        const ps = x.family('kata_agent_proc_stat', 'Agent process statistics (clock ticks).');
        ps(f(14), { item: 'utime' });
        ps(f(15), { item: 'stime' });
        ps(f(16), { item: 'cutime' });
        ps(f(17), { item: 'cstime' });
        // Not in Kata: start time in seconds since the epoch (starttime ticks after boot + btime).
        const btime = this.bootTime(log);
        if (btime !== undefined) {
          x.family('kata_agent_start_time_seconds', 'Agent process start time since the Unix epoch (seconds)')(btime + f(22) / tps);
        }
      } catch (err) {
        log.debug({ err: (err as Error).message }, 'cannot parse self/stat');
      }
    }
    const status = this.read('self/status', log);
    if (status !== undefined) {
      const kv = parseKeyValue(status);
      const g = x.family('kata_agent_proc_status', 'Agent process status.');
      for (const [item, key] of PROC_STATUS_ITEMS) g(kv.get(key)?.value ?? 0, { item });
    }
    const io = this.read('self/io', log);
    if (io !== undefined) {
      const kv = parseKeyValue(io);
      const g = x.family('kata_agent_io_stat', 'Agent process IO statistics.');
      for (const item of IO_ITEMS) g(kv.get(item)?.value ?? 0, { item });
    }
    // Not in Kata: open file descriptors.
    try {
      const n = fs.readdirSync(path.join(this.d.paths.proc, 'self/fd')).length;
      x.family('kata_agent_open_fds', 'Agent process open file descriptors')(n);
    } catch (err) {
      log.debug({ err: (err as Error).message }, 'cannot list self/fd');
    }
  }

  private bootTime(log: Logger): number | undefined {
    const stat = this.read('stat', log);
    const m = stat === undefined ? null : /^btime\s+(\d+)/m.exec(stat);
    return m ? Number(m[1]) : undefined;
  }

  private guestMetrics(x: Exposition, log: Logger): void {
    const loadavg = this.read('loadavg', log);
    if (loadavg !== undefined) {
      const p = loadavg.trim().split(/\s+/);
      const load = x.family('kata_guest_load', 'Guest system load.');
      load(num(p[0]), { item: 'load1' });
      load(num(p[1]), { item: 'load5' });
      load(num(p[2]), { item: 'load15' });
      const tasks = /^(\d+)\/(\d+)$/.exec(p[3] ?? '');
      if (tasks) {
        const t = x.family('kata_guest_tasks', 'Guest system tasks (runnable / total).');
        t(Number(tasks[1]), { item: 'cur' });
        t(Number(tasks[2]), { item: 'max' });
      }
    }

    const diskstats = this.read('diskstats', log);
    if (diskstats !== undefined) {
      const g = x.family('kata_guest_diskstat', 'Disks statistics in system.');
      for (const line of diskstats.split('\n')) {
        const p = line.trim().split(/\s+/);
        if (p.length < 14) continue;
        const disk = p[2]!;
        DISKSTAT_ITEMS.forEach((item, i) => g(num(p[3 + i]), { disk, item }));
      }
    }

    const vmstat = this.read('vmstat', log);
    if (vmstat !== undefined) {
      const g = x.family('kata_guest_vm_stat', 'Guest virtual memory statistics.');
      for (const line of vmstat.split('\n')) {
        const m = /^(\S+)\s+(-?\d+)$/.exec(line.trim());
        if (m) g(Number(m[2]), { item: m[1]! });
      }
    }

    const stat = this.read('stat', log);
    if (stat !== undefined) {
      // Kata reports CPU times in milliseconds; the aggregate line is cpu="total".
      const tps = this.d.sys.clockTicksPerSecond();
      const g = x.family('kata_guest_cpu_time', 'Guest CPU statistics (milliseconds).');
      for (const line of stat.split('\n')) {
        const m = /^cpu(\d*)\s+(.*)$/.exec(line);
        if (!m) continue;
        const cpu = m[1] === '' ? 'total' : m[1]!;
        const vals = m[2]!.trim().split(/\s+/);
        CPU_TIME_ITEMS.forEach((item, i) => g((num(vals[i]) * 1000) / tps, { cpu, item }));
      }
    }

    const netdev = this.read('net/dev', log);
    if (netdev !== undefined) {
      const g = x.family('kata_guest_netdev_stat', 'Guest net devices statistics.');
      for (const line of netdev.split('\n')) {
        const i = line.indexOf(':');
        if (i < 0) continue;
        const iface = line.slice(0, i).trim();
        const vals = line.slice(i + 1).trim().split(/\s+/);
        if (iface === '' || vals.length < NETDEV_ITEMS.length || !/^\d+$/.test(vals[0]!)) continue;
        NETDEV_ITEMS.forEach((item, k) => g(num(vals[k]), { interface: iface, item }));
      }
    }

    const meminfo = this.read('meminfo', log);
    if (meminfo !== undefined) {
      const kv = parseKeyValue(meminfo);
      const g = x.family('kata_guest_meminfo', 'Statistics about memory usage in the system.');
      for (const [item, key] of MEMINFO_ITEMS) {
        const e = kv.get(key);
        const bytes = e === undefined ? 0 : e.unit === 'kB' ? e.value * 1024 : e.value;
        g(bytes, { item });
      }
    }

    this.filesystemMetrics(x, log);
  }

  private filesystemMetrics(x: Exposition, log: Logger): void {
    const mountinfo = this.read('self/mountinfo', log);
    if (mountinfo === undefined) return;
    const bytes = x.family('kata_guest_filesystem_bytes', 'Guest filesystem space usage in bytes.');
    const inodes = x.family('kata_guest_filesystem_inodes', 'Guest filesystem inode usage.');
    const seen = new Set<string>();
    for (const line of mountinfo.split('\n')) {
      const m = parseMountinfoLine(line);
      if (!m || !REAL_FS_TYPES.has(m.fstype)) continue;
      if (m.superOptions.split(',').includes('ro')) continue;
      if (seen.has(m.majmin)) continue;
      seen.add(m.majmin);
      const device = m.source.split('/').pop() || m.majmin;
      let st;
      try {
        st = this.d.sys.statfs(m.mountPoint);
      } catch (err) {
        log.debug({ mount: m.mountPoint, err: (err as Error).message }, 'statfs failed');
        continue;
      }
      const labels = (item: string) => ({ mount: m.mountPoint, device, item });
      const total = st.blocks * st.bsize;
      const avail = st.bfree * st.bsize;
      bytes(total, labels('total'));
      bytes(Math.max(0, total - avail), labels('used'));
      bytes(avail, labels('available'));
      inodes(st.files, labels('total'));
      inodes(Math.max(0, st.files - st.ffree), labels('used'));
      inodes(st.ffree, labels('available'));
    }
  }
}

interface MountinfoEntry {
  majmin: string;
  mountPoint: string;
  fstype: string;
  source: string;
  superOptions: string;
}

function unescapeOctal(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** One line of /proc/<pid>/mountinfo (proc(5)). */
export function parseMountinfoLine(line: string): MountinfoEntry | undefined {
  const f = line.trim().split(' ');
  const sep = f.indexOf('-');
  if (f.length < 10 || sep < 6) return undefined;
  return {
    majmin: f[2]!,
    mountPoint: unescapeOctal(f[4]!),
    fstype: f[sep + 1] ?? '',
    source: unescapeOctal(f[sep + 2] ?? ''),
    superOptions: f[sep + 3] ?? '',
  };
}

export function makeGetMetrics(d: ResolvedDeps): Handler {
  const collector = new MetricsCollector(d);
  return (_req, ctx) => ({ metrics: collector.collect(ctx.log) });
}
