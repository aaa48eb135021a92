import fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import {
  blkioWeightToIoWeight,
  cpuMax,
  openCgroups,
  planV1,
  planV2,
  sharesToWeight,
  swapToV2,
  type LinuxResources,
  type PlannedWrite,
} from '../../agent/src/cgroups';
import type { PlanView } from '../../agent/src/cgroups/convert';
import { SysError } from '../../agent/src/sys/libc';
import { Code, RpcError, toStatus } from '../../agent/src/rpc/status';
import { cleanupTemps, copyTree, read } from './cgroups-helpers';

afterAll(cleanupTemps);

/** A PlanView over a map "controller/file" -> content. */
function view(files: Record<string, string> = {}): PlanView {
  return {
    has: (c, f) => `${c}/${f}` in files,
    read: (c, f) => files[`${c}/${f}`],
  };
}

const kv = (ws: PlannedWrite[]) => ws.map((w) => [w.controller ? `${w.controller}/${w.file}` : w.file, w.value]);

function rpcCode(f: () => unknown): Code | undefined {
  try {
    f();
  } catch (e) {
    return e instanceof RpcError ? e.code : undefined;
  }
  return undefined;
}

describe('conversions', () => {
  it.each([
    [0, 0],
    [1, 1], // clamped to 2
    [2, 1],
    [512, 20],
    [1024, 39],
    [262144, 10000],
    [10_000_000, 10000], // clamped
  ])('cpu shares %d -> cpu.weight %d', (shares, weight) => {
    expect(sharesToWeight(shares)).toBe(weight);
  });

  it.each([
    [0, 0],
    [10, 1],
    [100, 910],
    [500, 4950],
    [1000, 10000],
  ])('blkio weight %d -> io.weight %d', (w, v) => {
    expect(blkioWeightToIoWeight(w)).toBe(v);
  });

  it.each([
    [undefined, undefined, undefined],
    [0, 0, undefined],
    [50000, 100000, '50000 100000'],
    [-1, 100000, 'max 100000'],
    [-1, undefined, 'max'],
    [20000, undefined, '20000'],
    [undefined, 250000, 'max 250000'],
  ])('cpu.max from quota %s period %s -> %s', (q, p, out) => {
    expect(cpuMax(q, p)).toBe(out);
  });

  it.each([
    [undefined, undefined, undefined],
    [0, 1 << 20, undefined],
    [-1, 1 << 20, 'max'],
    [0, -1, 'max'], // unlimited memory, swap unset: swap unlimited too
    [3 << 20, 1 << 20, String(2 << 20)],
    [1 << 20, 1 << 20, '0'],
  ])('v2 swap.max from swap %s limit %s -> %s', (swap, limit, out) => {
    expect(swapToV2(swap, limit)).toBe(out);
  });

  it.each([
    ['swap < limit', 1 << 20, 2 << 20],
    ['swap without limit', 1 << 20, undefined],
    ['swap with unlimited memory', 1 << 20, -1],
    ['negative swap', -5, 1 << 20],
  ])('v2 swap conversion refuses %s', (_n, swap, limit) => {
    expect(rpcCode(() => swapToV2(swap, limit))).toBe(Code.INVALID_ARGUMENT);
  });
});

describe('planV2', () => {
  const cases: Array<[string, LinuxResources, Array<[string, string]>, Record<string, string>?]> = [
    ['empty', {}, []],
    [
      'memory limit + swap + reservation',
      { memory: { limit: 256 << 20, swap: 512 << 20, reservation: 128 << 20 } },
      [
        ['memory.max', String(256 << 20)],
        ['memory.swap.max', String(256 << 20)],
        ['memory.low', String(128 << 20)],
      ],
      { '/memory.swap.max': 'max' },
    ],
    [
      'memory unlimited -> max, swap max too',
      { memory: { limit: -1 } },
      [
        ['memory.max', 'max'],
        ['memory.swap.max', 'max'],
      ],
      { '/memory.swap.max': 'max' },
    ],
    ['no swap accounting: swap skipped', { memory: { limit: 1 << 20, swap: 2 << 20 } }, [['memory.max', String(1 << 20)]]],
    ['zeros are "unchanged"', { memory: { limit: 0, reservation: 0, swap: 0 }, cpu: { shares: 0, quota: 0, period: 0 } }, []],
    ['swappiness/kernel/disableOOMKiller have no v2 file', { memory: { swappiness: 10, kernel: 1 << 20, kernelTCP: 1 << 20, disableOOMKiller: true } }, []],
    [
      'cpu shares quota period cpus mems',
      { cpu: { shares: 1024, quota: 50000, period: 100000, cpus: '0-1', mems: '0' } },
      [
        ['cpuset.cpus', '0-1'],
        ['cpuset.mems', '0'],
        ['cpu.weight', '39'],
        ['cpu.max', '50000 100000'],
      ],
    ],
    ['cpu quota -1 -> max', { cpu: { quota: -1, period: 100000 } }, [['cpu.max', 'max 100000']]],
    ['cpu idle when the file exists', { cpu: { idle: 1 } }, [['cpu.idle', '1']], { '/cpu.idle': '0' }],
    ['realtime ignored on v2', { cpu: { realtimeRuntime: 950000, realtimePeriod: 1000000 } }, []],
    ['pids limit', { pids: { limit: 64 } }, [['pids.max', '64']]],
    ['pids 0 -> max', { pids: { limit: 0 } }, [['pids.max', 'max']]],
    ['pids -1 -> max', { pids: { limit: -1 } }, [['pids.max', 'max']]],
    [
      'blockIO weight/devices/throttles (io.weight)',
      {
        blockIO: {
          weight: 500,
          leafWeight: 300,
          weightDevice: [{ major: 8, minor: 0, weight: 100 }],
          throttleReadBpsDevice: [{ major: 8, minor: 0, rate: 1048576 }],
          throttleWriteIOPSDevice: [{ major: 8, minor: 16, rate: 0 }],
        },
      },
      [
        ['io.weight', 'default 4950'],
        ['io.weight', '8:0 910'],
        ['io.max', '8:0 rbps=1048576'],
        ['io.max', '8:16 wiops=max'],
      ],
    ],
    [
      'blockIO with BFQ: io.bfq.weight takes blkio weights as they are',
      { blockIO: { weight: 500, weightDevice: [{ major: 8, minor: 0, weight: 100 }] } },
      [
        ['io.bfq.weight', '500'],
        ['io.bfq.weight', '8:0 100'],
      ],
      { '/io.bfq.weight': 'default 100' },
    ],
    [
      'hugepage limits',
      { hugepageLimits: [{ pageSize: '2MB', limit: 4 << 20 }, { pageSize: '1GB', limit: 0 }] },
      [
        ['hugetlb.2MB.max', String(4 << 20)],
        ['hugetlb.1GB.max', '0'],
      ],
    ],
    ['unified map', { unified: { 'memory.high': '1073741824', 'io.latency': '8:0 target=10' } }, [['memory.high', '1073741824'], ['io.latency', '8:0 target=10']]],
    ['devices/network are not cgroup files here', { devices: [{ allow: false, access: 'rwm' }], network: { classID: 5 } }, []],
  ];
  it.each(cases)('%s', (_n, res, out, files) => {
    // v2 files live in one directory: PlanView keys are "/<file>" (controller '').
    expect(kv(planV2(res, view(files)))).toEqual(out);
  });

  it.each([
    ['bad swappiness', { memory: { swappiness: 101 } }],
    ['non-integer limit', { memory: { limit: 1.5 } }],
    ['string limit that is not a number', { memory: { limit: 'lots' as unknown as number } }],
    ['bad cpus list', { cpu: { cpus: '0-1; rm -rf' } }],
    ['bad page size', { hugepageLimits: [{ pageSize: '../../x', limit: 1 }] }],
    ['unified key with a slash', { unified: { '../cgroup.procs': '1' } }],
    ['unified cgroup.* key', { unified: { 'cgroup.procs': '1' } }],
    ['device without major', { blockIO: { throttleReadBpsDevice: [{ minor: 0, rate: 1 } as never] } }],
    ['not an object', [] as unknown as LinuxResources],
  ])('refuses %s (INVALID_ARGUMENT)', (_n, res) => {
    expect(rpcCode(() => planV2(res as LinuxResources, view()))).toBe(Code.INVALID_ARGUMENT);
  });
});

describe('planV1', () => {
  const cases: Array<[string, LinuxResources, Array<[string, string]>, Record<string, string>?]> = [
    ['empty', {}, []],
    [
      'memory raise: memsw first (new swap above current limit)',
      { memory: { limit: 512 << 20, swap: 1024 << 20 } },
      [
        ['memory/memory.memsw.limit_in_bytes', String(1024 << 20)],
        ['memory/memory.limit_in_bytes', String(512 << 20)],
      ],
      { 'memory/memory.memsw.limit_in_bytes': '9223372036854771712', 'memory/memory.limit_in_bytes': String(256 << 20) },
    ],
    [
      'memory lower: limit first (new swap below current limit)',
      { memory: { limit: 32 << 20, swap: 32 << 20 } },
      [
        ['memory/memory.limit_in_bytes', String(32 << 20)],
        ['memory/memory.memsw.limit_in_bytes', String(32 << 20)],
      ],
      { 'memory/memory.memsw.limit_in_bytes': '9223372036854771712', 'memory/memory.limit_in_bytes': '9223372036854771712' },
    ],
    [
      'unlimited memory: memsw -1 first',
      { memory: { limit: -1 } },
      [
        ['memory/memory.memsw.limit_in_bytes', '-1'],
        ['memory/memory.limit_in_bytes', '-1'],
      ],
      { 'memory/memory.memsw.limit_in_bytes': '1048576', 'memory/memory.limit_in_bytes': '1048576' },
    ],
    ['no memsw (swap accounting off): swap skipped', { memory: { limit: 1 << 20, swap: 2 << 20 } }, [['memory/memory.limit_in_bytes', String(1 << 20)]]],
    [
      'reservation, swappiness 0, kernelTCP, disableOOMKiller; kernel ignored',
      { memory: { reservation: 64 << 20, swappiness: 0, kernel: 1 << 20, kernelTCP: 2 << 20, disableOOMKiller: true } },
      [
        ['memory/memory.soft_limit_in_bytes', String(64 << 20)],
        ['memory/memory.kmem.tcp.limit_in_bytes', String(2 << 20)],
        ['memory/memory.swappiness', '0'],
        ['memory/memory.oom_control', '1'],
      ],
      { 'memory/memory.kmem.tcp.limit_in_bytes': '0' },
    ],
    [
      'cpu: cpuset, shares, period before quota, realtime',
      { cpu: { shares: 512, quota: 25000, period: 50000, realtimePeriod: 1000000, realtimeRuntime: 950000, cpus: '1', mems: '0' } },
      [
        ['cpuset/cpuset.cpus', '1'],
        ['cpuset/cpuset.mems', '0'],
        ['cpu/cpu.shares', '512'],
        ['cpu/cpu.cfs_period_us', '50000'],
        ['cpu/cpu.cfs_quota_us', '25000'],
        ['cpu/cpu.rt_period_us', '1000000'],
        ['cpu/cpu.rt_runtime_us', '950000'],
      ],
    ],
    ['cpu quota -1 (unlimited)', { cpu: { quota: -1 } }, [['cpu/cpu.cfs_quota_us', '-1']]],
    ['pids', { pids: { limit: 10 } }, [['pids/pids.max', '10']]],
    ['pids <= 0 -> max', { pids: { limit: 0 } }, [['pids/pids.max', 'max']]],
    [
      'blkio (CFQ files)',
      {
        blockIO: {
          weight: 500,
          leafWeight: 300,
          weightDevice: [{ major: 8, minor: 0, weight: 100, leafWeight: 50 }],
          throttleReadBpsDevice: [{ major: 8, minor: 0, rate: 1048576 }],
          throttleWriteBpsDevice: [{ major: 8, minor: 0, rate: 2097152 }],
          throttleReadIOPSDevice: [{ major: 8, minor: 0, rate: 100 }],
          throttleWriteIOPSDevice: [{ major: 8, minor: 0, rate: 200 }],
        },
      },
      [
        ['blkio/blkio.weight', '500'],
        ['blkio/blkio.leaf_weight', '300'],
        ['blkio/blkio.weight_device', '8:0 100'],
        ['blkio/blkio.leaf_weight_device', '8:0 50'],
        ['blkio/blkio.throttle.read_bps_device', '8:0 1048576'],
        ['blkio/blkio.throttle.write_bps_device', '8:0 2097152'],
        ['blkio/blkio.throttle.read_iops_device', '8:0 100'],
        ['blkio/blkio.throttle.write_iops_device', '8:0 200'],
      ],
      { 'blkio/blkio.weight': '500' },
    ],
    [
      'blkio (BFQ only)',
      { blockIO: { weight: 200, weightDevice: [{ major: 8, minor: 0, weight: 100 }] } },
      [
        ['blkio/blkio.bfq.weight', '200'],
        ['blkio/blkio.bfq.weight_device', '8:0 100'],
      ],
      { 'blkio/blkio.bfq.weight': 'default 100' },
    ],
    ['hugepages', { hugepageLimits: [{ pageSize: '2MB', limit: 2 << 20 }] }, [['hugetlb/hugetlb.2MB.limit_in_bytes', String(2 << 20)]]],
  ];
  it.each(cases)('%s', (_n, res, out, files) => {
    expect(kv(planV1(res, view(files)))).toEqual(out);
  });

  it('hybrid without a v1 hugetlb: v2 file in the unified tree', () => {
    expect(kv(planV1({ hugepageLimits: [{ pageSize: '2MB', limit: 0 }] }, view(), { hugetlbV2: true }))).toEqual([['hugetlb.2MB.max', '0']]);
  });

  it.each([
    ['swap below limit', { memory: { limit: 2 << 20, swap: 1 << 20 } }, { 'memory/memory.memsw.limit_in_bytes': '1' }],
    ['swappiness > 100', { memory: { swappiness: 200 } }, {}],
    ['unified on v1', { unified: { 'memory.high': '1' } }, {}],
  ])('refuses %s', (_n, res, files) => {
    expect(rpcCode(() => planV1(res as LinuxResources, view(files)))).toBe(Code.INVALID_ARGUMENT);
  });
});

describe('update on fake trees', () => {
  it('v2: writes the files and returns them', () => {
    const root = copyTree('cgroup-v2');
    const cg = openCgroups(root);
    const dir = `${root}/kata/sbx/c1`;
    const files = cg.update('/kata/sbx/c1', {
      memory: { limit: 64 << 20, swap: 96 << 20 },
      cpu: { shares: 2048, quota: 150000, period: 100000 },
      pids: { limit: 32 },
      hugepageLimits: [{ pageSize: '2MB', limit: 0 }],
    });
    expect(files).toEqual([
      `${dir}/cpu.weight`,
      `${dir}/cpu.max`,
      `${dir}/memory.max`,
      `${dir}/memory.swap.max`,
      `${dir}/pids.max`,
      `${dir}/hugetlb.2MB.max`,
    ]);
    expect(read(`${dir}/memory.max`)).toBe(String(64 << 20));
    expect(read(`${dir}/memory.swap.max`)).toBe(String(32 << 20));
    expect(read(`${dir}/cpu.weight`)).toBe('79'); // 1 + floor(2046 * 9999 / 262142)
    expect(read(`${dir}/cpu.max`)).toBe('150000 100000');
    expect(read(`${dir}/pids.max`)).toBe('32');
    expect(read(`${dir}/hugetlb.2MB.max`)).toBe('0');
  });

  it('v2: a file the cgroup lacks is a SysError naming it (NOT_FOUND), nothing created', () => {
    const root = copyTree('cgroup-v2');
    const cg = openCgroups(root);
    let err: unknown;
    try {
      cg.update('/kata/sbx/c2', { pids: { limit: 5 } });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SysError);
    expect((err as SysError).path).toBe(`${root}/kata/sbx/c2/pids.max`);
    expect((err as SysError).code).toBe('ENOENT');
    expect(toStatus(err).code).toBe(Code.NOT_FOUND);
    expect(fs.existsSync(`${root}/kata/sbx/c2/pids.max`)).toBe(false);
  });

  it('v1: writes go to each controller hierarchy (co-mounted cpu via its symlink)', () => {
    const root = copyTree('cgroup-v1');
    const cg = openCgroups(root);
    const files = cg.update('/kata/sbx/c1', {
      memory: { limit: 32 << 20, swap: 32 << 20 },
      cpu: { shares: 256, cpus: '1' },
      pids: { limit: -1 },
    });
    expect(files).toEqual([
      `${root}/cpuset/kata/sbx/c1/cpuset.cpus`,
      `${root}/cpu,cpuacct/kata/sbx/c1/cpu.shares`,
      `${root}/memory/kata/sbx/c1/memory.limit_in_bytes`,
      `${root}/memory/kata/sbx/c1/memory.memsw.limit_in_bytes`,
      `${root}/pids/kata/sbx/c1/pids.max`,
    ]);
    expect(read(`${root}/cpu,cpuacct/kata/sbx/c1/cpu.shares`)).toBe('256');
    expect(read(`${root}/memory/kata/sbx/c1/memory.limit_in_bytes`)).toBe(String(32 << 20));
    expect(read(`${root}/memory/kata/sbx/c1/memory.memsw.limit_in_bytes`)).toBe(String(32 << 20));
    expect(read(`${root}/pids/kata/sbx/c1/pids.max`)).toBe('max');
    expect(read(`${root}/cpuset/kata/sbx/c1/cpuset.cpus`)).toBe('1');
  });

  it('v1: a controller that is not mounted is FAILED_PRECONDITION naming it', () => {
    const root = copyTree('cgroup-v1');
    fs.rmSync(`${root}/hugetlb`, { recursive: true });
    const cg = openCgroups(root);
    let err: unknown;
    try {
      cg.update('/kata/sbx/c1', { hugepageLimits: [{ pageSize: '2MB', limit: 1 }] });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RpcError);
    expect((err as RpcError).code).toBe(Code.FAILED_PRECONDITION);
    expect((err as Error).message).toMatch(/hugetlb/);
  });
});
