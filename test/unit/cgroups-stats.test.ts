import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openCgroups, UNLIMITED } from '../../agent/src/cgroups';
import { methodInfo } from '../../agent/src/rpc/proto';
import { cleanupTemps, copyTree, FIXTURES } from './cgroups-helpers';

afterAll(cleanupTemps);

const V1 = path.join(FIXTURES, 'cgroup-v1');
const V2 = path.join(FIXTURES, 'cgroup-v2');

describe('stats: cgroup v2', () => {
  const cg = openCgroups(V2);
  const s = cg.stats('/kata/sbx/c1');

  it('cpu: microseconds -> nanoseconds, throttling', () => {
    expect(s.cpu_stats).toEqual({
      cpu_usage: { total_usage: 2345678000, percpu_usage: [], usage_in_kernelmode: 345555000, usage_in_usermode: 2000123000 },
      throttling_data: { periods: 120, throttled_periods: 7, throttled_time: 456789000 },
    });
  });

  it('memory: current/max/peak/events, file as cache, memory.stat map, swap as memory+swap', () => {
    const m = s.memory_stats!;
    expect(m.cache).toBe(5242880);
    expect(m.usage).toEqual({ usage: 10485760, max_usage: 20971520, failcnt: 5, limit: 536870912 });
    expect(m.swap_usage).toEqual({ usage: 1048576 + 10485760, max_usage: 0, failcnt: 2, limit: UNLIMITED });
    expect(m.kernel_usage).toEqual({ usage: 1572864, max_usage: 0, failcnt: 0, limit: 0 });
    expect(m.use_hierarchy).toBe(true);
    expect(m.stats.anon).toBe(4194304);
    expect(m.stats.inactive_file).toBe(3145728);
    expect(m.stats.thp_fault_alloc).toBe(0);
    expect(Object.keys(m.stats)).toHaveLength(34);
  });

  it('pids', () => {
    expect(s.pids_stats).toEqual({ current: 2, limit: 100 });
  });

  it('io.stat -> io_service_bytes_recursive with Kata ops', () => {
    const b = s.blkio_stats!;
    expect(b.io_service_bytes_recursive).toEqual([
      { major: 8, minor: 0, op: 'read', value: 1282048 },
      { major: 8, minor: 0, op: 'write', value: 2195456 },
      { major: 8, minor: 0, op: 'rios', value: 124 },
      { major: 8, minor: 0, op: 'wios', value: 104 },
      { major: 8, minor: 0, op: 'dbytes', value: 0 },
      { major: 8, minor: 0, op: 'dios', value: 0 },
      { major: 253, minor: 0, op: 'read', value: 4096 },
      { major: 253, minor: 0, op: 'write', value: 0 },
      { major: 253, minor: 0, op: 'rios', value: 1 },
      { major: 253, minor: 0, op: 'wios', value: 0 },
      { major: 253, minor: 0, op: 'dbytes', value: 512 },
      { major: 253, minor: 0, op: 'dios', value: 1 },
    ]);
    expect(b.io_serviced_recursive).toEqual([]);
  });

  it('hugetlb per size (rsvd files are not sizes)', () => {
    expect(s.hugetlb_stats).toEqual({
      '1GB': { usage: 0, max_usage: 0, failcnt: 0 },
      '2MB': { usage: 2097152, max_usage: 0, failcnt: 2 },
    });
  });

  it('memory.max "max" -> UNLIMITED, pids.max "max" -> 0', () => {
    const root = copyTree('cgroup-v2');
    fs.writeFileSync(`${root}/kata/sbx/c1/memory.max`, 'max\n');
    fs.writeFileSync(`${root}/kata/sbx/c1/pids.max`, 'max\n');
    const t = openCgroups(root).stats('/kata/sbx/c1');
    expect(t.memory_stats!.usage!.limit).toBe(UNLIMITED);
    expect(t.pids_stats!.limit).toBe(0);
  });

  it('a cgroup without memory/pids/io files: those sections omitted, cpu present', () => {
    const t = cg.stats('/kata/sbx/c2');
    expect(t.cpu_stats!.cpu_usage!.total_usage).toBe(1500000);
    expect(t.cpu_stats!.throttling_data).toEqual({ periods: 0, throttled_periods: 0, throttled_time: 0 });
    expect(t.memory_stats).toBeUndefined();
    expect(t.pids_stats).toBeUndefined();
    expect(t.blkio_stats).toBeUndefined();
    expect(t.hugetlb_stats).toEqual({});
  });

  it('a missing cgroup: empty stats, no throw', () => {
    expect(cg.stats('/kata/sbx/gone')).toEqual({ hugetlb_stats: {} });
  });
});

describe('stats: cgroup v1', () => {
  const cg = openCgroups(V1);
  const s = cg.stats('/kata/sbx/c1');

  it('cpuacct usage (ns counters preferred) and cpu.stat throttling', () => {
    expect(s.cpu_stats).toEqual({
      cpu_usage: {
        total_usage: 2345678901,
        percpu_usage: [1234567890, 1111111011],
        usage_in_kernelmode: 300654321,
        usage_in_usermode: 2000123456,
      },
      throttling_data: { periods: 120, throttled_periods: 7, throttled_time: 456789012 },
    });
  });

  it('cpuacct.stat ticks (USER_HZ) -> ns when the ns counters are missing', () => {
    const c2 = cg.stats('/kata/sbx/c2').cpu_stats!.cpu_usage!;
    expect(c2.usage_in_usermode).toBe(1_500_000_000);
    expect(c2.usage_in_kernelmode).toBe(250_000_000);
    expect(c2.percpu_usage).toEqual([1000000000, 750000000]);
  });

  it('memory: usage, memsw as swap, kmem as kernel, stat map, use_hierarchy', () => {
    const m = s.memory_stats!;
    expect(m.cache).toBe(5242880);
    expect(m.usage).toEqual({ usage: 10485760, max_usage: 20971520, failcnt: 3, limit: 536870912 });
    expect(m.swap_usage).toEqual({ usage: 11534336, max_usage: 22020096, failcnt: 0, limit: 1073741824 });
    expect(m.kernel_usage).toEqual({ usage: 1048576, max_usage: 2097152, failcnt: 0, limit: UNLIMITED });
    expect(m.use_hierarchy).toBe(true);
    expect(m.stats.total_rss).toBe(4194304);
    expect(m.stats.hierarchical_memory_limit).toBe(536870912);
  });

  it('pids: "max" -> limit 0', () => {
    expect(s.pids_stats).toEqual({ current: 2, limit: 0 });
  });

  it('blkio: throttle counters (BFQ files empty, no CFQ), Total lines dropped, ops lowercased', () => {
    const b = s.blkio_stats!;
    expect(b.io_service_bytes_recursive).toHaveLength(12);
    expect(b.io_service_bytes_recursive[0]).toEqual({ major: 8, minor: 0, op: 'read', value: 1282048 });
    expect(b.io_service_bytes_recursive.map((e) => e.op).slice(0, 6)).toEqual(['read', 'write', 'sync', 'async', 'discard', 'total']);
    expect(b.io_service_bytes_recursive[11]).toEqual({ major: 253, minor: 0, op: 'total', value: 4096 });
    expect(b.io_serviced_recursive.find((e) => e.op === 'total')).toEqual({ major: 8, minor: 0, op: 'total', value: 228 });
    expect(b.io_queued_recursive).toEqual([]);
  });

  it('blkio: CFQ files when present (time and sectors without op)', () => {
    const b = cg.stats('/kata/sbx/c2').blkio_stats!;
    expect(b.io_service_bytes_recursive.find((e) => e.op === 'write')).toEqual({ major: 8, minor: 16, op: 'write', value: 16384 });
    expect(b.io_serviced_recursive).toHaveLength(5);
    expect(b.io_queued_recursive.find((e) => e.op === 'write')!.value).toBe(1);
    expect(b.io_service_time_recursive.find((e) => e.op === 'total')!.value).toBe(3000);
    expect(b.io_wait_time_recursive.find((e) => e.op === 'total')!.value).toBe(30);
    expect(b.io_merged_recursive).toHaveLength(5);
    expect(b.io_time_recursive).toEqual([{ major: 8, minor: 16, op: '', value: 42 }]);
    expect(b.sectors_recursive).toEqual([{ major: 8, minor: 16, op: '', value: 48 }]);
  });

  it('hugetlb from v1 files', () => {
    expect(s.hugetlb_stats).toEqual({
      '1GB': { usage: 0, max_usage: 0, failcnt: 0 },
      '2MB': { usage: 4194304, max_usage: 6291456, failcnt: 1 },
    });
  });

  it('sections of controllers the cgroup is not in are omitted; a missing cgroup gives empty stats', () => {
    const c2 = cg.stats('/kata/sbx/c2');
    expect(c2.memory_stats).toBeUndefined();
    expect(c2.pids_stats).toBeUndefined();
    expect(c2.hugetlb_stats).toEqual({});
    expect(cg.stats('/nope')).toEqual({ hugetlb_stats: {} });
  });

  it('hybrid: hugetlb from the unified tree when there is no v1 hugetlb hierarchy', () => {
    const root = copyTree('cgroup-v1');
    fs.rmSync(`${root}/hugetlb`, { recursive: true });
    fs.mkdirSync(`${root}/unified/kata/sbx/c1`, { recursive: true });
    fs.writeFileSync(`${root}/unified/cgroup.controllers`, 'hugetlb\n');
    fs.writeFileSync(`${root}/unified/cgroup.procs`, '');
    fs.writeFileSync(`${root}/unified/kata/sbx/c1/hugetlb.2MB.current`, '6291456\n');
    fs.writeFileSync(`${root}/unified/kata/sbx/c1/hugetlb.2MB.events`, 'max 4\n');
    const h = openCgroups(root);
    expect(h.mode).toBe('hybrid');
    expect(h.stats('/kata/sbx/c1').hugetlb_stats).toEqual({ '2MB': { usage: 6291456, max_usage: 0, failcnt: 4 } });
  });
});

describe('stats encode as agent.proto CgroupStats', () => {
  it.each([
    ['v1', V1],
    ['v2', V2],
  ])('%s stats survive a StatsContainerResponse round trip', (_v, root) => {
    const s = openCgroups(root).stats('/kata/sbx/c1');
    const info = methodInfo('grpc.AgentService', 'StatsContainer')!;
    const back = info.decodeResponse(info.encodeResponse({ cgroup_stats: s })) as { cgroup_stats: typeof s };
    const c = back.cgroup_stats;
    expect(c.cpu_stats!.cpu_usage!.total_usage).toBe(s.cpu_stats!.cpu_usage!.total_usage);
    expect(c.memory_stats!.usage!.limit).toBe(s.memory_stats!.usage!.limit);
    expect(c.memory_stats!.stats).toEqual(s.memory_stats!.stats);
    expect(c.hugetlb_stats['2MB']).toEqual(s.hugetlb_stats['2MB']);
    expect(c.blkio_stats!.io_service_bytes_recursive).toEqual(s.blkio_stats!.io_service_bytes_recursive);
  });
});
