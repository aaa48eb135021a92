// cgroup v2 (unified hierarchy).
import { invalidArgument } from '../rpc/status';
import { applyWrites, readPids, removeTree, waitUntil } from './common';
import { planV2 } from './convert';
import type { FsOps } from './fsops';
import { watchOomV2 } from './oom';
import { hugetlbSizes, parseFlatKeyed, parseIoStatV2, parseNum } from './parse';
import { normalizeRel, relParts } from './paths';
import type {
  BlkioStats,
  CgroupStats,
  Cgroups,
  CpuStats,
  FreezeOptions,
  HugetlbStats,
  LinuxResources,
  MemoryStats,
  OomWatcher,
  OomWatchOptions,
  PidsStats,
  RemoveOptions,
} from './types';
import { UNLIMITED } from './types';

function words(s: string | undefined): string[] {
  return (s ?? '').split(/\s+/).filter((w) => w !== '');
}

export function emptyBlkio(): BlkioStats {
  return {
    io_service_bytes_recursive: [],
    io_serviced_recursive: [],
    io_queued_recursive: [],
    io_service_time_recursive: [],
    io_wait_time_recursive: [],
    io_merged_recursive: [],
    io_time_recursive: [],
    sectors_recursive: [],
  };
}

/** Enable in `dir`'s cgroup.subtree_control every controller it has and does not yet delegate. Best effort. */
export function enableSubtreeControllers(ops: FsOps, dir: string): string[] {
  const avail = words(ops.read(`${dir}/cgroup.controllers`));
  if (avail.length === 0) return [];
  const cur = new Set(words(ops.read(`${dir}/cgroup.subtree_control`)));
  const want = avail.filter((c) => !cur.has(c));
  if (want.length === 0) return [];
  const file = `${dir}/cgroup.subtree_control`;
  try {
    ops.write(file, want.map((c) => `+${c}`).join(' '));
    return want;
  } catch {
    // one refused controller fails the whole write: go one by one
  }
  const ok: string[] = [];
  for (const c of want) {
    try {
      ops.write(file, `+${c}`);
      ok.push(c);
    } catch {
      // e.g. a threaded-only controller, or a parent with processes
    }
  }
  return ok;
}

/** hugetlb stats from v2 files in `dir` (hugetlb.<size>.current / .events). */
export function hugetlbStatsV2(ops: FsOps, dir: string): Record<string, HugetlbStats> {
  const out: Record<string, HugetlbStats> = {};
  for (const size of hugetlbSizes(ops.list(dir), 'current')) {
    out[size] = {
      usage: parseNum(ops.read(`${dir}/hugetlb.${size}.current`)) ?? 0,
      // cgroup v2 keeps no high-water mark for hugetlb.
      max_usage: 0,
      failcnt: parseFlatKeyed(ops.read(`${dir}/hugetlb.${size}.events`)).max ?? 0,
    };
  }
  return out;
}

export class CgroupsV2 implements Cgroups {
  readonly mode = 'v2' as const;
  constructor(
    readonly root: string,
    private readonly ops: FsOps,
  ) {}

  controllers(): string[] {
    return words(this.ops.read(`${this.root}/cgroup.controllers`));
  }

  path(rel: string): string {
    const n = normalizeRel(rel);
    return n === '/' ? this.root : this.root + n;
  }

  paths(rel: string): Record<string, string> {
    return { '': this.path(rel) };
  }

  exists(rel: string): boolean {
    return this.ops.isDir(this.path(rel));
  }

  create(rel: string): void {
    let dir = this.root;
    for (const p of relParts(rel)) {
      // Delegate controllers to the children of every ancestor (not the leaf:
      // it holds processes, and "no internal processes" forbids both).
      enableSubtreeControllers(this.ops, dir);
      dir = `${dir}/${p}`;
      this.ops.mkdir(dir);
    }
  }

  async remove(rel: string, opts: RemoveOptions = {}): Promise<void> {
    if (normalizeRel(rel) === '/') throw invalidArgument('refusing to remove the root cgroup');
    await removeTree(this.ops, this.path(rel), opts.busyTimeoutMs ?? 2000);
  }

  addProcess(rel: string, pid: number): void {
    this.ops.write(`${this.path(rel)}/cgroup.procs`, String(pid));
  }

  pids(rel: string, opts: { recursive?: boolean } = {}): number[] {
    return readPids(this.ops, this.path(rel), opts.recursive ?? false);
  }

  stats(rel: string): CgroupStats {
    const dir = this.path(rel);
    const out: CgroupStats = { hugetlb_stats: {} };
    if (!this.ops.isDir(dir)) return out;
    const r = (f: string): string | undefined => this.ops.read(`${dir}/${f}`);

    const cpuStat = r('cpu.stat');
    if (cpuStat !== undefined) {
      const c = parseFlatKeyed(cpuStat);
      const cpu: CpuStats = {
        // cgroup v2 counts microseconds; the message carries nanoseconds.
        cpu_usage: {
          total_usage: (c.usage_usec ?? 0) * 1000,
          percpu_usage: [],
          usage_in_kernelmode: (c.system_usec ?? 0) * 1000,
          usage_in_usermode: (c.user_usec ?? 0) * 1000,
        },
        throttling_data: {
          periods: c.nr_periods ?? 0,
          throttled_periods: c.nr_throttled ?? 0,
          throttled_time: (c.throttled_usec ?? 0) * 1000,
        },
      };
      out.cpu_stats = cpu;
    }

    const current = r('memory.current');
    if (current !== undefined) {
      const stat = parseFlatKeyed(r('memory.stat'));
      const events = parseFlatKeyed(r('memory.events'));
      const usage = parseNum(current) ?? 0;
      const limit = parseNum(r('memory.max')) ?? 0;
      const mem: MemoryStats = {
        cache: stat.file ?? 0,
        usage: { usage, max_usage: parseNum(r('memory.peak')) ?? 0, failcnt: events.max ?? 0, limit },
        use_hierarchy: true,
        stats: stat,
      };
      const swapCur = parseNum(r('memory.swap.current'));
      if (swapCur !== undefined) {
        // Reported as memory+swap, like cgroup v1's memsw (runc does the same).
        const swapMax = parseNum(r('memory.swap.max')) ?? 0;
        mem.swap_usage = {
          usage: swapCur + usage,
          max_usage: 0,
          failcnt: parseFlatKeyed(r('memory.swap.events')).fail ?? 0,
          limit: swapMax === UNLIMITED || limit === UNLIMITED ? UNLIMITED : swapMax + limit,
        };
      }
      const kernel = stat.kernel ?? (stat.kernel_stack ?? 0) + (stat.slab ?? 0) + (stat.percpu ?? 0) + (stat.pagetables ?? 0);
      mem.kernel_usage = { usage: kernel, max_usage: 0, failcnt: 0, limit: 0 };
      out.memory_stats = mem;
    }

    const pidsCur = r('pids.current');
    if (pidsCur !== undefined) {
      const pids: PidsStats = { current: parseNum(pidsCur) ?? 0, limit: parseNum(r('pids.max'), 0) ?? 0 };
      out.pids_stats = pids;
    }

    const io = r('io.stat');
    if (io !== undefined) {
      const b = emptyBlkio();
      b.io_service_bytes_recursive = parseIoStatV2(io);
      out.blkio_stats = b;
    }

    out.hugetlb_stats = hugetlbStatsV2(this.ops, dir);
    return out;
  }

  update(rel: string, resources: LinuxResources): string[] {
    const dir = this.path(rel);
    const writes = planV2(resources, {
      has: (_c, f) => this.ops.exists(`${dir}/${f}`),
      read: (_c, f) => this.ops.read(`${dir}/${f}`),
    });
    return applyWrites(this.ops, writes, () => dir);
  }

  async freeze(rel: string, frozen: boolean, opts: FreezeOptions = {}): Promise<void> {
    const dir = this.path(rel);
    this.ops.write(`${dir}/cgroup.freeze`, frozen ? '1' : '0');
    const want = frozen ? 1 : 0;
    await waitUntil(
      () => {
        const ev = this.ops.read(`${dir}/cgroup.events`);
        if (ev === undefined) return true; // cgroup gone: nothing left to wait for
        const f = parseFlatKeyed(ev).frozen;
        return f === undefined || f === want;
      },
      opts.timeoutMs ?? 5000,
      `${dir} to become ${frozen ? 'frozen' : 'thawed'}`,
    );
  }

  watchOom(rel: string, onOom: () => void, opts?: OomWatchOptions): OomWatcher {
    return watchOomV2(this.ops, this.path(rel), onOom, opts);
  }
}
