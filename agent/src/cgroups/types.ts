// Shapes shared by the cgroup v1 and v2 implementations: the stats message
// (Kata's agent.proto CgroupStats, snake_case fields as protobufjs expects
// them), the OCI LinuxResources input (runtime-spec JSON, camelCase) and the
// Cgroups interface itself.

export type CgroupMode = 'v1' | 'v2' | 'hybrid';

// ---- CgroupStats (agent.proto) ----
// Counters are JS numbers: exact up to 2^53, which covers every real counter.
// "Unlimited" limits are reported as UNLIMITED (2^63 - 4096, what cgroup v1
// prints and what a double holds exactly), pids "max" as 0 (as Kata does).

export interface CpuUsage {
  /** Nanoseconds. */
  total_usage: number;
  percpu_usage: number[];
  usage_in_kernelmode: number;
  usage_in_usermode: number;
}
export interface ThrottlingData {
  periods: number;
  throttled_periods: number;
  /** Nanoseconds. */
  throttled_time: number;
}
export interface CpuStats {
  cpu_usage?: CpuUsage;
  throttling_data?: ThrottlingData;
}
export interface MemoryData {
  usage: number;
  max_usage: number;
  failcnt: number;
  limit: number;
}
export interface MemoryStats {
  cache: number;
  usage?: MemoryData;
  swap_usage?: MemoryData;
  kernel_usage?: MemoryData;
  use_hierarchy: boolean;
  stats: Record<string, number>;
}
export interface PidsStats {
  current: number;
  limit: number;
}
export interface BlkioStatsEntry {
  major: number;
  minor: number;
  op: string;
  value: number;
}
export interface BlkioStats {
  io_service_bytes_recursive: BlkioStatsEntry[];
  io_serviced_recursive: BlkioStatsEntry[];
  io_queued_recursive: BlkioStatsEntry[];
  io_service_time_recursive: BlkioStatsEntry[];
  io_wait_time_recursive: BlkioStatsEntry[];
  io_merged_recursive: BlkioStatsEntry[];
  io_time_recursive: BlkioStatsEntry[];
  sectors_recursive: BlkioStatsEntry[];
}
export interface HugetlbStats {
  usage: number;
  max_usage: number;
  failcnt: number;
}
export interface CgroupStats {
  cpu_stats?: CpuStats;
  memory_stats?: MemoryStats;
  pids_stats?: PidsStats;
  blkio_stats?: BlkioStats;
  /** Keyed by page size as the kernel names it ("2MB", "1GB"). */
  hugetlb_stats: Record<string, HugetlbStats>;
}

/** 2^63 - 4096: cgroup v1's "unlimited"; exactly representable as a double. */
export const UNLIMITED = 9223372036854771712;

// ---- OCI runtime-spec LinuxResources (the subset cgroups apply) ----

export interface LinuxMemory {
  limit?: number;
  reservation?: number;
  /** Memory + swap (v1 semantics). */
  swap?: number;
  kernel?: number;
  kernelTCP?: number;
  swappiness?: number;
  disableOOMKiller?: boolean;
}
export interface LinuxCPU {
  shares?: number;
  quota?: number;
  period?: number;
  realtimeRuntime?: number;
  realtimePeriod?: number;
  cpus?: string;
  mems?: string;
  idle?: number;
}
export interface LinuxPids {
  limit?: number;
}
export interface LinuxWeightDevice {
  major: number;
  minor: number;
  weight?: number;
  leafWeight?: number;
}
export interface LinuxThrottleDevice {
  major: number;
  minor: number;
  rate: number;
}
export interface LinuxBlockIO {
  weight?: number;
  leafWeight?: number;
  weightDevice?: LinuxWeightDevice[];
  throttleReadBpsDevice?: LinuxThrottleDevice[];
  throttleWriteBpsDevice?: LinuxThrottleDevice[];
  throttleReadIOPSDevice?: LinuxThrottleDevice[];
  throttleWriteIOPSDevice?: LinuxThrottleDevice[];
}
export interface LinuxHugepageLimit {
  pageSize: string;
  limit: number;
}
export interface LinuxResources {
  memory?: LinuxMemory | null;
  cpu?: LinuxCPU | null;
  pids?: LinuxPids | null;
  blockIO?: LinuxBlockIO | null;
  hugepageLimits?: LinuxHugepageLimit[] | null;
  /** cgroup v2 only: file name -> value, written verbatim. */
  unified?: Record<string, string> | null;
  // devices and network are not cgroup files here (devices: the OCI runtime's job).
  [k: string]: unknown;
}

// ---- the interface ----

export interface FreezeOptions {
  /** Give up after this long (default 5000 ms): RpcError DEADLINE_EXCEEDED. */
  timeoutMs?: number;
}

export interface RemoveOptions {
  /** Total time to keep retrying rmdir on EBUSY (default 2000 ms). */
  busyTimeoutMs?: number;
}

export interface OomWatchOptions {
  /** Fallback poll interval (default 1000 ms). */
  pollIntervalMs?: number;
  /** v1: use eventfd + cgroup.event_control (default true); polling runs either way. */
  useEventfd?: boolean;
}

export interface OomWatcher {
  /** Stop watching (idempotent). */
  close(): void;
  /** Re-read the counter now and fire onOom if it grew (what the timers do). */
  check(): void;
  /** How the watcher is notified: 'eventfd' | 'inotify' | 'poll' (for logs). */
  readonly via: string;
}

/**
 * One cgroup tree (v2 unified, or v1 per-controller hierarchies), addressed by
 * cgroupsPath-style paths relative to its root ("/kata/<sandbox>/<cid>").
 */
export interface Cgroups {
  readonly mode: CgroupMode;
  /** The mount root, e.g. /sys/fs/cgroup. */
  readonly root: string;
  /** Controllers available (v2: root cgroup.controllers; v1: mounted hierarchies). */
  controllers(): string[];
  /**
   * Absolute directory of cgroup `rel`. v1: in the hierarchy of `controller`
   * (default: pids, else memory, else the first one mounted).
   */
  path(rel: string, controller?: string): string;
  /** v1: controller -> directory of `rel` in each hierarchy; v2: { '': dir }. */
  paths(rel: string): Record<string, string>;
  exists(rel: string): boolean;
  /** mkdir -p (every hierarchy on v1), enabling controllers on the way down on v2. */
  create(rel: string): void;
  /** rmdir `rel` and its descendants, deepest first; retries EBUSY briefly. Missing: no-op. */
  remove(rel: string, opts?: RemoveOptions): Promise<void>;
  /** Move a process in (every hierarchy on v1). */
  addProcess(rel: string, pid: number): void;
  /** Processes in cgroup.procs (of `rel` only, or of its subtree too). Missing cgroup: []. */
  pids(rel: string, opts?: { recursive?: boolean }): number[];
  /** Never throws for missing cgroups or files (zero / omitted instead). */
  stats(rel: string): CgroupStats;
  /** Apply resources; returns the files written, in order. Throws SysError/RpcError naming the file. */
  update(rel: string, resources: LinuxResources): string[];
  /** Freeze or thaw, resolving once the kernel reports the state. */
  freeze(rel: string, frozen: boolean, opts?: FreezeOptions): Promise<void>;
  /** Call onOom each time the OOM killer's counter for `rel` grows. */
  watchOom(rel: string, onOom: () => void, opts?: OomWatchOptions): OomWatcher;
}
