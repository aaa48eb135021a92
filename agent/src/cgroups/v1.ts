// cgroup v1: one hierarchy per controller (or per group of co-mounted
// controllers, e.g. "cpu,cpuacct" with "cpu" and "cpuacct" symlinks), found by
// scanning the root. 'hybrid' is v1 plus a cgroup2 mount at <root>/unified:
// cgroups are also created there (membership only; its controllers are left
// as the host set them) and hugetlb is read/written there when it has no v1
// hierarchy.
import { invalidArgument } from '../rpc/status';
import { applyWrites, readPids, removeTree, waitUntil } from './common';
import { missingController, planV1 } from './convert';
import type { FsOps } from './fsops';
import { watchOomV1 } from './oom';
import { hugetlbSizes, parseBlkioV1, parseFlatKeyed, parseNum, parseNumList } from './parse';
import { normalizeRel, relParts } from './paths';
import type {
  BlkioStats,
  CgroupStats,
  Cgroups,
  FreezeOptions,
  HugetlbStats,
  LinuxResources,
  MemoryData,
  OomWatcher,
  OomWatchOptions,
  RemoveOptions,
} from './types';
import { emptyBlkio, hugetlbStatsV2 } from './v2';

/** Resource controllers a v1 hierarchy may carry ("name=systemd" & co. are skipped). */
export const V1_CONTROLLERS = [
  'cpu',
  'cpuacct',
  'cpuset',
  'memory',
  'devices',
  'freezer',
  'net_cls',
  'net_prio',
  'blkio',
  'perf_event',
  'hugetlb',
  'pids',
  'rdma',
  'misc',
] as const;

/** USER_HZ: the unit of cpuacct.stat (100 on every Linux architecture we run on). */
export const USER_HZ = 100;
const NS_PER_SEC = 1e9;

/** Order in which a default hierarchy is chosen for path()/pids(). */
const DEFAULT_ORDER = ['pids', 'memory', 'cpu', 'cpuacct', 'freezer', 'cpuset', 'devices', 'blkio'];

export class CgroupsV1 implements Cgroups {
  /** controller -> hierarchy root directory */
  private readonly hier = new Map<string, string>();
  /** distinct hierarchy roots (co-mounted controllers share one) */
  private readonly roots: string[] = [];
  private readonly unified?: string;

  constructor(
    readonly root: string,
    private readonly ops: FsOps,
    readonly mode: 'v1' | 'hybrid' = 'v1',
  ) {
    const known = new Set<string>(V1_CONTROLLERS);
    // Co-mounted controllers appear several times (the "cpu,cpuacct" mount and
    // its "cpu"/"cpuacct" symlinks): one hierarchy per real directory, named
    // by the entry that lists the most controllers (the mount itself).
    const byReal = new Map<string, { dir: string; ctrls: string[] }>();
    for (const name of ops.subdirs(root)) {
      if (name === 'unified') continue;
      const ctrls = name.split(',').filter((c) => known.has(c));
      if (ctrls.length === 0) continue;
      const dir = `${root}/${name}`;
      if (!ops.exists(`${dir}/cgroup.procs`)) continue; // not a mounted hierarchy
      const real = ops.realpath(dir);
      const prev = byReal.get(real);
      if (!prev) byReal.set(real, { dir, ctrls });
      else {
        if (ctrls.length > prev.ctrls.length) prev.dir = dir;
        prev.ctrls = [...new Set([...prev.ctrls, ...ctrls])];
      }
    }
    for (const { dir, ctrls } of byReal.values()) {
      this.roots.push(dir);
      for (const c of ctrls) if (!this.hier.has(c)) this.hier.set(c, dir);
    }
    if (mode === 'hybrid' && ops.exists(`${root}/unified/cgroup.procs`)) this.unified = `${root}/unified`;
  }

  controllers(): string[] {
    return [...this.hier.keys()].sort();
  }

  private defaultController(): string | undefined {
    return DEFAULT_ORDER.find((c) => this.hier.has(c)) ?? [...this.hier.keys()][0];
  }

  private join(base: string, rel: string): string {
    const n = normalizeRel(rel);
    return n === '/' ? base : base + n;
  }

  /** Directory of `rel` in `controller`'s hierarchy, or undefined if that is not mounted. */
  private dirOf(controller: string, rel: string): string | undefined {
    if (controller === '') return this.unified ? this.join(this.unified, rel) : undefined;
    const h = this.hier.get(controller);
    return h === undefined ? undefined : this.join(h, rel);
  }

  path(rel: string, controller?: string): string {
    const c = controller ?? this.defaultController();
    const dir = c === undefined ? undefined : this.dirOf(c, rel);
    if (dir === undefined) throw missingController(controller ?? 'any', normalizeRel(rel));
    return dir;
  }

  paths(rel: string): Record<string, string> {
    const out: Record<string, string> = {};
    for (const c of this.controllers()) out[c] = this.dirOf(c, rel)!;
    if (this.unified) out[''] = this.join(this.unified, rel);
    return out;
  }

  exists(rel: string): boolean {
    return this.roots.some((h) => this.ops.isDir(this.join(h, rel)));
  }

  create(rel: string): void {
    const parts = relParts(rel);
    const cpuset = this.hier.get('cpuset');
    for (const h of this.roots) {
      let dir = h;
      for (const p of parts) {
        const parent = dir;
        dir = `${dir}/${p}`;
        const existed = this.ops.isDir(dir);
        this.ops.mkdir(dir);
        // A new v1 cpuset starts with empty cpus/mems and refuses tasks: inherit the parent's.
        if (h === cpuset && !existed) this.fillCpuset(parent, dir);
      }
    }
    if (this.unified) {
      let dir = this.unified;
      try {
        for (const p of parts) this.ops.mkdir((dir = `${dir}/${p}`));
      } catch {
        // membership in the unified tree is best effort in hybrid mode
      }
    }
  }

  private fillCpuset(parent: string, dir: string): void {
    for (const f of ['cpuset.cpus', 'cpuset.mems']) {
      const cur = this.ops.read(`${dir}/${f}`);
      if (cur === undefined || cur.trim() !== '') continue;
      const p = this.ops.read(`${parent}/${f}`)?.trim();
      if (p) this.ops.write(`${dir}/${f}`, p);
    }
  }

  async remove(rel: string, opts: RemoveOptions = {}): Promise<void> {
    if (normalizeRel(rel) === '/') throw invalidArgument('refusing to remove the root cgroup');
    const t = opts.busyTimeoutMs ?? 2000;
    const results = await Promise.allSettled(this.roots.map((h) => removeTree(this.ops, this.join(h, rel), t)));
    if (this.unified) await removeTree(this.ops, this.join(this.unified, rel), t).catch(() => undefined);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  addProcess(rel: string, pid: number): void {
    let first: unknown;
    for (const h of this.roots) {
      try {
        this.ops.write(`${this.join(h, rel)}/cgroup.procs`, String(pid));
      } catch (e) {
        first ??= e;
      }
    }
    if (this.unified) {
      try {
        this.ops.write(`${this.join(this.unified, rel)}/cgroup.procs`, String(pid));
      } catch {
        // best effort (hybrid)
      }
    }
    if (first !== undefined) throw first;
  }

  pids(rel: string, opts: { recursive?: boolean } = {}): number[] {
    const c = this.defaultController();
    if (c === undefined) return [];
    return readPids(this.ops, this.dirOf(c, rel)!, opts.recursive ?? false);
  }

  stats(rel: string): CgroupStats {
    const out: CgroupStats = { hugetlb_stats: {} };
    const at = (c: string): ((f: string) => string | undefined) | undefined => {
      const dir = this.dirOf(c, rel);
      if (dir === undefined || !this.ops.isDir(dir)) return undefined;
      return (f) => this.ops.read(`${dir}/${f}`);
    };

    const acct = at('cpuacct');
    const cpu = at('cpu');
    if (acct || cpu) {
      out.cpu_stats = {};
      if (acct) {
        const st = parseFlatKeyed(acct('cpuacct.stat'));
        // Prefer the nanosecond counters; cpuacct.stat is in USER_HZ ticks.
        const user = parseNum(acct('cpuacct.usage_user')) ?? ((st.user ?? 0) * NS_PER_SEC) / USER_HZ;
        const sys = parseNum(acct('cpuacct.usage_sys')) ?? ((st.system ?? 0) * NS_PER_SEC) / USER_HZ;
        out.cpu_stats.cpu_usage = {
          total_usage: parseNum(acct('cpuacct.usage')) ?? 0,
          percpu_usage: parseNumList(acct('cpuacct.usage_percpu')),
          usage_in_kernelmode: Math.round(sys),
          usage_in_usermode: Math.round(user),
        };
      }
      if (cpu) {
        const st = parseFlatKeyed(cpu('cpu.stat'));
        out.cpu_stats.throttling_data = {
          periods: st.nr_periods ?? 0,
          throttled_periods: st.nr_throttled ?? 0,
          throttled_time: st.throttled_time ?? 0,
        };
      }
    }

    const mem = at('memory');
    if (mem) {
      const data = (prefix: string): MemoryData => ({
        usage: parseNum(mem(`${prefix}usage_in_bytes`)) ?? 0,
        max_usage: parseNum(mem(`${prefix}max_usage_in_bytes`)) ?? 0,
        failcnt: parseNum(mem(`${prefix}failcnt`)) ?? 0,
        limit: parseNum(mem(`${prefix}limit_in_bytes`)) ?? 0,
      });
      const stat = parseFlatKeyed(mem('memory.stat'));
      out.memory_stats = {
        cache: stat.cache ?? 0,
        usage: data('memory.'),
        use_hierarchy: parseNum(mem('memory.use_hierarchy')) === 1,
        stats: stat,
      };
      if (mem('memory.memsw.usage_in_bytes') !== undefined) out.memory_stats.swap_usage = data('memory.memsw.');
      if (mem('memory.kmem.usage_in_bytes') !== undefined) out.memory_stats.kernel_usage = data('memory.kmem.');
    }

    const pids = at('pids');
    if (pids) {
      out.pids_stats = { current: parseNum(pids('pids.current')) ?? 0, limit: parseNum(pids('pids.max'), 0) ?? 0 };
    }

    const blk = at('blkio');
    if (blk) out.blkio_stats = blkioStatsV1(blk);

    const huge = this.dirOf('hugetlb', rel);
    if (huge !== undefined) out.hugetlb_stats = hugetlbStatsV1(this.ops, huge);
    else if (this.unified) out.hugetlb_stats = hugetlbStatsV2(this.ops, this.join(this.unified, rel));
    return out;
  }

  update(rel: string, resources: LinuxResources): string[] {
    const hugetlbV2 = !this.hier.has('hugetlb') && this.unified !== undefined;
    const writes = planV1(
      resources,
      {
        has: (c, f) => {
          const d = this.dirOf(c, rel);
          return d !== undefined && this.ops.exists(`${d}/${f}`);
        },
        read: (c, f) => {
          const d = this.dirOf(c, rel);
          return d === undefined ? undefined : this.ops.read(`${d}/${f}`);
        },
      },
      { hugetlbV2 },
    );
    return applyWrites(this.ops, writes, (c, f) => {
      const d = this.dirOf(c, rel);
      if (d === undefined) throw missingController(c || 'unified', f);
      return d;
    });
  }

  async freeze(rel: string, frozen: boolean, opts: FreezeOptions = {}): Promise<void> {
    const dir = this.path(rel, 'freezer');
    const want = frozen ? 'FROZEN' : 'THAWED';
    const file = `${dir}/freezer.state`;
    this.ops.write(file, want);
    await waitUntil(
      (attempt) => {
        const st = this.ops.read(file)?.trim();
        if (st === undefined || st === want) return true;
        // A freeze can stall on a task that will not stop (FREEZING): ask again now and then.
        if (attempt > 0 && attempt % 10 === 0) this.ops.write(file, want);
        return false;
      },
      opts.timeoutMs ?? 5000,
      `${dir} to become ${want}`,
    ).catch((e) => {
      if (frozen) {
        try {
          this.ops.write(file, 'THAWED'); // do not leave it half frozen
        } catch {
          // already reported by the timeout
        }
      }
      throw e;
    });
  }

  watchOom(rel: string, onOom: () => void, opts?: OomWatchOptions): OomWatcher {
    return watchOomV1(this.ops, this.path(rel, 'memory'), onOom, opts);
  }
}

/** v1 blkio stats: CFQ files, else BFQ, else the throttle counters (as runc and Kata). */
export function blkioStatsV1(read: (f: string) => string | undefined): BlkioStats {
  const b = emptyBlkio();
  const pick = (...files: string[]): string | undefined => {
    for (const f of files) {
      const t = read(f);
      if (t !== undefined && parseBlkioV1(t).length > 0) return t;
    }
    return undefined;
  };
  const cfq = read('blkio.io_serviced_recursive');
  if (cfq !== undefined && parseBlkioV1(cfq).length > 0) {
    b.io_service_bytes_recursive = parseBlkioV1(read('blkio.io_service_bytes_recursive'));
    b.io_serviced_recursive = parseBlkioV1(cfq);
    b.io_queued_recursive = parseBlkioV1(read('blkio.io_queued_recursive'));
    b.io_service_time_recursive = parseBlkioV1(read('blkio.io_service_time_recursive'));
    b.io_wait_time_recursive = parseBlkioV1(read('blkio.io_wait_time_recursive'));
    b.io_merged_recursive = parseBlkioV1(read('blkio.io_merged_recursive'));
    b.io_time_recursive = parseBlkioV1(read('blkio.time_recursive'));
    b.sectors_recursive = parseBlkioV1(read('blkio.sectors_recursive'));
    return b;
  }
  const bfq = read('blkio.bfq.io_serviced_recursive');
  if (bfq !== undefined && parseBlkioV1(bfq).length > 0) {
    b.io_service_bytes_recursive = parseBlkioV1(read('blkio.bfq.io_service_bytes_recursive'));
    b.io_serviced_recursive = parseBlkioV1(bfq);
    return b;
  }
  b.io_service_bytes_recursive = parseBlkioV1(pick('blkio.throttle.io_service_bytes_recursive', 'blkio.throttle.io_service_bytes'));
  b.io_serviced_recursive = parseBlkioV1(pick('blkio.throttle.io_serviced_recursive', 'blkio.throttle.io_serviced'));
  return b;
}

/** hugetlb stats from v1 files (hugetlb.<size>.usage_in_bytes / max_usage_in_bytes / failcnt). */
export function hugetlbStatsV1(ops: FsOps, dir: string): Record<string, HugetlbStats> {
  const out: Record<string, HugetlbStats> = {};
  if (!ops.isDir(dir)) return out;
  for (const size of hugetlbSizes(ops.list(dir), 'usage_in_bytes')) {
    out[size] = {
      usage: parseNum(ops.read(`${dir}/hugetlb.${size}.usage_in_bytes`)) ?? 0,
      max_usage: parseNum(ops.read(`${dir}/hugetlb.${size}.max_usage_in_bytes`)) ?? 0,
      failcnt: parseNum(ops.read(`${dir}/hugetlb.${size}.failcnt`)) ?? 0,
    };
  }
  return out;
}
