// OCI LinuxResources -> the cgroup file writes that apply them, for v1 and v2.
// Pure planning (the few facts about the live tree it needs come through a
// PlanView), so every conversion is testable without a cgroup tree.
//
// A zero or absent value means "leave unchanged" (as runc/Kata treat them),
// except pids.limit (<= 0 means "max") and the explicit -1 "unlimited".
import { Code, RpcError, invalidArgument } from '../rpc/status';
import type { LinuxResources, LinuxThrottleDevice } from './types';

/** One write: `file` in the directory of `controller` ('' = the v2/unified dir). */
export interface PlannedWrite {
  controller: string;
  file: string;
  value: string;
}

export interface PlanView {
  /** Does `file` exist in the cgroup's directory for `controller`? */
  has(controller: string, file: string): boolean;
  /** Content of `file` (undefined if missing). */
  read(controller: string, file: string): string | undefined;
}

// ---- conversions (as runc/crun do them) ----

export const MIN_SHARES = 2;
export const MAX_SHARES = 262144;

/** cpu.shares (2..262144) -> cpu.weight (1..10000): 1 + ((shares - 2) * 9999) / 262142, rounded down. */
export function sharesToWeight(shares: number): number {
  if (shares === 0) return 0;
  const s = Math.min(MAX_SHARES, Math.max(MIN_SHARES, Math.trunc(shares)));
  return 1 + Math.floor(((s - 2) * 9999) / 262142);
}

/** blkio.weight (10..1000) -> io.weight (1..10000): 1 + ((w - 10) * 9999) / 990, rounded down. */
export function blkioWeightToIoWeight(weight: number): number {
  if (weight === 0) return 0;
  const w = Math.min(1000, Math.max(10, Math.trunc(weight)));
  return 1 + Math.floor(((w - 10) * 9999) / 990);
}

/**
 * cpu.max content from CFS quota/period (microseconds), or undefined when both
 * are unset. A quota <= 0 is "max"; the period is appended only when given
 * (the kernel keeps the current one otherwise).
 */
export function cpuMax(quota: number | undefined, period: number | undefined): string | undefined {
  const q = quota ?? 0;
  const p = period ?? 0;
  if (q === 0 && p === 0) return undefined;
  let s = q > 0 ? String(q) : 'max';
  if (p !== 0) s += ` ${p}`;
  return s;
}

/**
 * OCI memory.swap (memory+swap, v1 semantics) -> v2 memory.swap.max (swap
 * alone): -1 -> "max"; 0 -> unchanged, except that an unlimited memory limit
 * with no swap value makes swap unlimited too; otherwise swap - limit, which
 * needs a positive limit no larger than swap. Returns undefined for "leave".
 */
export function swapToV2(swap: number | undefined, limit: number | undefined): string | undefined {
  const s = swap ?? 0;
  const m = limit ?? 0;
  if (m === -1 && s === 0) return 'max';
  if (s === -1) return 'max';
  if (s === 0) return undefined;
  if (s < 0) throw invalidArgument(`resources.memory.swap: invalid value ${s}`);
  if (m === 0 || m === -1) throw invalidArgument('resources.memory.swap: cannot limit swap without a memory limit');
  if (m < 0) throw invalidArgument(`resources.memory.limit: invalid value ${m}`);
  if (s < m) throw invalidArgument(`resources.memory.swap (${s}) must be >= resources.memory.limit (${m})`);
  return String(s - m);
}

// ---- validation helpers ----

function int(v: unknown, what: string, opts: { min?: number } = {}): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'bigint') v = Number(v);
  if (typeof v === 'string' && /^-?\d+$/.test(v.trim())) v = Number(v.trim());
  if (typeof v !== 'number' || !Number.isFinite(v) || !Number.isInteger(v)) {
    throw invalidArgument(`${what}: not an integer: ${JSON.stringify(v)}`);
  }
  if (opts.min !== undefined && v < opts.min) throw invalidArgument(`${what}: invalid value ${v}`);
  return v;
}

/** 0 / absent -> undefined ("leave unchanged"). */
function setInt(v: unknown, what: string, min = -1): number | undefined {
  const n = int(v, what, { min });
  return n === 0 ? undefined : n;
}

function cpuList(v: unknown, what: string): string | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string' || !/^[0-9][0-9,\-\s]*$/.test(v)) throw invalidArgument(`${what}: invalid list ${JSON.stringify(v)}`);
  return v.trim();
}

const PAGE_SIZE = /^\d+(?:[KMGT]B)$/;

function pageSize(v: unknown, i: number): string {
  if (typeof v !== 'string' || !PAGE_SIZE.test(v)) {
    throw invalidArgument(`resources.hugepageLimits[${i}].pageSize: invalid page size ${JSON.stringify(v)}`);
  }
  return v;
}

function dev(d: { major?: unknown; minor?: unknown } | undefined, what: string): string {
  const maj = int(d?.major, `${what}.major`, { min: 0 });
  const min = int(d?.minor, `${what}.minor`, { min: 0 });
  if (maj === undefined || min === undefined) throw invalidArgument(`${what}: major and minor are required`);
  return `${maj}:${min}`;
}

function throttles(list: LinuxThrottleDevice[] | undefined | null, what: string): Array<{ dev: string; rate: number }> {
  if (!list) return [];
  if (!Array.isArray(list)) throw invalidArgument(`${what}: not a list`);
  return list.map((t, i) => ({ dev: dev(t, `${what}[${i}]`), rate: int(t?.rate, `${what}[${i}].rate`, { min: 0 }) ?? 0 }));
}

function mustObject(r: unknown): LinuxResources {
  if (r === null || typeof r !== 'object' || Array.isArray(r)) throw invalidArgument('resources: not an object');
  return r as LinuxResources;
}

// ---- v1 ----

/** The writes that apply `resources` on cgroup v1 (one directory per controller). */
export function planV1(resources: LinuxResources, view: PlanView, opts: { hugetlbV2?: boolean } = {}): PlannedWrite[] {
  const r = mustObject(resources);
  const out: PlannedWrite[] = [];
  const w = (controller: string, file: string, value: string | number): void => {
    out.push({ controller, file, value: String(value) });
  };

  const cpu = r.cpu;
  if (cpu) {
    const cpus = cpuList(cpu.cpus, 'resources.cpu.cpus');
    const mems = cpuList(cpu.mems, 'resources.cpu.mems');
    if (cpus !== undefined) w('cpuset', 'cpuset.cpus', cpus);
    if (mems !== undefined) w('cpuset', 'cpuset.mems', mems);
    const shares = setInt(cpu.shares, 'resources.cpu.shares', 0);
    if (shares !== undefined) w('cpu', 'cpu.shares', shares);
    const period = setInt(cpu.period, 'resources.cpu.period', 0);
    const quota = setInt(cpu.quota, 'resources.cpu.quota');
    if (period !== undefined) w('cpu', 'cpu.cfs_period_us', period);
    if (quota !== undefined) w('cpu', 'cpu.cfs_quota_us', quota);
    const rtPeriod = setInt(cpu.realtimePeriod, 'resources.cpu.realtimePeriod', 0);
    const rtRuntime = setInt(cpu.realtimeRuntime, 'resources.cpu.realtimeRuntime');
    if (rtPeriod !== undefined) w('cpu', 'cpu.rt_period_us', rtPeriod);
    if (rtRuntime !== undefined) w('cpu', 'cpu.rt_runtime_us', rtRuntime);
    const idle = int(cpu.idle, 'resources.cpu.idle', { min: 0 });
    if (idle !== undefined && view.has('cpu', 'cpu.idle')) w('cpu', 'cpu.idle', idle);
  }

  const mem = r.memory;
  if (mem) {
    const limit = setInt(mem.limit, 'resources.memory.limit');
    let swap = setInt(mem.swap, 'resources.memory.swap');
    const memsw = view.has('memory', 'memory.memsw.limit_in_bytes');
    // Unlimited memory with no swap value: swap unlimited too (else the old memsw caps it).
    if (limit === -1 && swap === undefined && memsw) swap = -1;
    if (swap !== undefined && !memsw) swap = undefined; // no swap accounting: nothing to limit
    if (limit !== undefined && swap !== undefined) {
      if (swap !== -1 && limit !== -1 && swap < limit) {
        throw invalidArgument(`resources.memory.swap (${swap}) must be >= resources.memory.limit (${limit})`);
      }
      // memsw >= memory at every step: raise memsw first when the new value
      // exceeds the current memory limit, else lower memory first.
      const cur = Number((view.read('memory', 'memory.limit_in_bytes') ?? '0').trim()) || 0;
      if (swap === -1 || cur < swap) {
        w('memory', 'memory.memsw.limit_in_bytes', swap);
        w('memory', 'memory.limit_in_bytes', limit);
      } else {
        w('memory', 'memory.limit_in_bytes', limit);
        w('memory', 'memory.memsw.limit_in_bytes', swap);
      }
    } else {
      if (limit !== undefined) w('memory', 'memory.limit_in_bytes', limit);
      if (swap !== undefined) w('memory', 'memory.memsw.limit_in_bytes', swap);
    }
    const reservation = setInt(mem.reservation, 'resources.memory.reservation');
    if (reservation !== undefined) w('memory', 'memory.soft_limit_in_bytes', reservation);
    // memory.kmem.limit_in_bytes is gone from current kernels; runc ignores it too.
    const kernelTCP = setInt(mem.kernelTCP, 'resources.memory.kernelTCP');
    if (kernelTCP !== undefined && view.has('memory', 'memory.kmem.tcp.limit_in_bytes')) {
      w('memory', 'memory.kmem.tcp.limit_in_bytes', kernelTCP);
    }
    const swappiness = int(mem.swappiness, 'resources.memory.swappiness');
    if (swappiness !== undefined && swappiness !== -1) {
      if (swappiness < 0 || swappiness > 100) {
        throw invalidArgument(`resources.memory.swappiness: ${swappiness} is outside 0..100`);
      }
      w('memory', 'memory.swappiness', swappiness);
    }
    if (mem.disableOOMKiller === true) w('memory', 'memory.oom_control', 1);
  }

  if (r.pids) {
    const limit = int(r.pids.limit, 'resources.pids.limit');
    if (limit !== undefined) w('pids', 'pids.max', limit > 0 ? String(limit) : 'max');
  }

  const bio = r.blockIO;
  if (bio) {
    const bfq = !view.has('blkio', 'blkio.weight') && view.has('blkio', 'blkio.bfq.weight');
    const weight = setInt(bio.weight, 'resources.blockIO.weight', 0);
    if (weight !== undefined) w('blkio', bfq ? 'blkio.bfq.weight' : 'blkio.weight', weight);
    const leaf = setInt(bio.leafWeight, 'resources.blockIO.leafWeight', 0);
    if (leaf !== undefined) w('blkio', 'blkio.leaf_weight', leaf);
    (bio.weightDevice ?? []).forEach((d, i) => {
      const what = `resources.blockIO.weightDevice[${i}]`;
      const dv = dev(d, what);
      const dw = setInt(d.weight, `${what}.weight`, 0);
      const dl = setInt(d.leafWeight, `${what}.leafWeight`, 0);
      if (dw !== undefined) w('blkio', bfq ? 'blkio.bfq.weight_device' : 'blkio.weight_device', `${dv} ${dw}`);
      if (dl !== undefined) w('blkio', 'blkio.leaf_weight_device', `${dv} ${dl}`);
    });
    const th: Array<[keyof typeof bio, string]> = [
      ['throttleReadBpsDevice', 'blkio.throttle.read_bps_device'],
      ['throttleWriteBpsDevice', 'blkio.throttle.write_bps_device'],
      ['throttleReadIOPSDevice', 'blkio.throttle.read_iops_device'],
      ['throttleWriteIOPSDevice', 'blkio.throttle.write_iops_device'],
    ];
    for (const [key, file] of th) {
      for (const t of throttles(bio[key] as LinuxThrottleDevice[] | undefined, `resources.blockIO.${String(key)}`)) {
        w('blkio', file, `${t.dev} ${t.rate}`);
      }
    }
  }

  (r.hugepageLimits ?? []).forEach((h, i) => {
    const size = pageSize(h?.pageSize, i);
    const limit = int(h?.limit, `resources.hugepageLimits[${i}].limit`, { min: 0 }) ?? 0;
    if (opts.hugetlbV2) w('', `hugetlb.${size}.max`, limit);
    else w('hugetlb', `hugetlb.${size}.limit_in_bytes`, limit);
  });

  if (r.unified && Object.keys(r.unified).length > 0) {
    throw invalidArgument('resources.unified needs cgroup v2; this guest runs cgroup v1');
  }
  return out;
}

// ---- v2 ----

const UNIFIED_KEY = /^[a-z][a-z0-9_]*\.[a-z0-9_.]+$/;

function v2limit(n: number): string {
  return n === -1 ? 'max' : String(n);
}

/** The writes that apply `resources` on cgroup v2 (all in the cgroup's one directory). */
export function planV2(resources: LinuxResources, view: PlanView): PlannedWrite[] {
  const r = mustObject(resources);
  const out: PlannedWrite[] = [];
  const w = (file: string, value: string | number): void => {
    out.push({ controller: '', file, value: String(value) });
  };

  const cpu = r.cpu;
  if (cpu) {
    const cpus = cpuList(cpu.cpus, 'resources.cpu.cpus');
    const mems = cpuList(cpu.mems, 'resources.cpu.mems');
    if (cpus !== undefined) w('cpuset.cpus', cpus);
    if (mems !== undefined) w('cpuset.mems', mems);
    const shares = setInt(cpu.shares, 'resources.cpu.shares', 0);
    if (shares !== undefined) w('cpu.weight', sharesToWeight(shares));
    const max = cpuMax(setInt(cpu.quota, 'resources.cpu.quota'), setInt(cpu.period, 'resources.cpu.period', 0));
    if (max !== undefined) w('cpu.max', max);
    const idle = int(cpu.idle, 'resources.cpu.idle', { min: 0 });
    if (idle !== undefined && view.has('', 'cpu.idle')) w('cpu.idle', idle);
    // Realtime (cpu.rt_*) has no cgroup v2 interface: ignored, as crun does.
    setInt(cpu.realtimePeriod, 'resources.cpu.realtimePeriod', 0);
    setInt(cpu.realtimeRuntime, 'resources.cpu.realtimeRuntime');
  }

  const mem = r.memory;
  if (mem) {
    const limit = setInt(mem.limit, 'resources.memory.limit');
    const swap = swapToV2(setInt(mem.swap, 'resources.memory.swap'), limit);
    if (limit !== undefined) w('memory.max', v2limit(limit));
    // Without swap accounting there is no memory.swap.max, and nothing to limit.
    if (swap !== undefined && view.has('', 'memory.swap.max')) w('memory.swap.max', swap);
    const reservation = setInt(mem.reservation, 'resources.memory.reservation');
    if (reservation !== undefined) w('memory.low', v2limit(reservation));
    const swappiness = int(mem.swappiness, 'resources.memory.swappiness');
    if (swappiness !== undefined && swappiness !== -1 && (swappiness < 0 || swappiness > 100)) {
      throw invalidArgument(`resources.memory.swappiness: ${swappiness} is outside 0..100`);
    }
    // swappiness, kernel, kernelTCP and disableOOMKiller have no v2 files: ignored.
  }

  if (r.pids) {
    const limit = int(r.pids.limit, 'resources.pids.limit');
    if (limit !== undefined) w('pids.max', limit > 0 ? String(limit) : 'max');
  }

  const bio = r.blockIO;
  if (bio) {
    const bfq = view.has('', 'io.bfq.weight');
    const weight = setInt(bio.weight, 'resources.blockIO.weight', 0);
    if (weight !== undefined) {
      if (bfq) w('io.bfq.weight', weight);
      else w('io.weight', `default ${blkioWeightToIoWeight(weight)}`);
    }
    setInt(bio.leafWeight, 'resources.blockIO.leafWeight', 0); // no v2 equivalent
    (bio.weightDevice ?? []).forEach((d, i) => {
      const what = `resources.blockIO.weightDevice[${i}]`;
      const dv = dev(d, what);
      const dw = setInt(d.weight, `${what}.weight`, 0);
      if (dw === undefined) return;
      if (bfq) w('io.bfq.weight', `${dv} ${dw}`);
      else w('io.weight', `${dv} ${blkioWeightToIoWeight(dw)}`);
    });
    const th: Array<[keyof typeof bio, string]> = [
      ['throttleReadBpsDevice', 'rbps'],
      ['throttleWriteBpsDevice', 'wbps'],
      ['throttleReadIOPSDevice', 'riops'],
      ['throttleWriteIOPSDevice', 'wiops'],
    ];
    for (const [key, k] of th) {
      // Rate 0 removes a v1 throttle rule; the v2 equivalent is "max".
      for (const t of throttles(bio[key] as LinuxThrottleDevice[] | undefined, `resources.blockIO.${String(key)}`)) {
        w('io.max', `${t.dev} ${k}=${t.rate === 0 ? 'max' : t.rate}`);
      }
    }
  }

  (r.hugepageLimits ?? []).forEach((h, i) => {
    const size = pageSize(h?.pageSize, i);
    const limit = int(h?.limit, `resources.hugepageLimits[${i}].limit`, { min: 0 }) ?? 0;
    w(`hugetlb.${size}.max`, limit);
  });

  if (r.unified) {
    if (typeof r.unified !== 'object' || Array.isArray(r.unified)) throw invalidArgument('resources.unified: not a map');
    for (const [k, v] of Object.entries(r.unified)) {
      if (!UNIFIED_KEY.test(k) || k.startsWith('cgroup.')) {
        throw invalidArgument(`resources.unified: refusing to write ${JSON.stringify(k)}`);
      }
      if (typeof v !== 'string') throw invalidArgument(`resources.unified[${k}]: not a string`);
      w(k, v);
    }
  }
  return out;
}

export function missingController(controller: string, file: string): RpcError {
  return new RpcError(Code.FAILED_PRECONDITION, `cgroup controller ${controller} is not available (needed to write ${file})`);
}
