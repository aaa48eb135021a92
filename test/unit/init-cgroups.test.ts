import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { cgroupMounts, parseProcCgroups, v1Controllers, type InitContext } from '../../agent/src/init';
import { captureLogger, FakeInitSys, type FakeOptions } from '../helpers/init-fake';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixture = (name: string) => fs.readFileSync(path.join(here, '../fixtures/init', name), 'utf8');
const PROC_CGROUPS = fixture('proc-cgroups.txt');
const CONTROLLERS = fixture('cgroup.controllers');

// nosuid|nodev|noexec|relatime
const CG = '0x20000e';

function setup(opts: FakeOptions = {}) {
  const sys = new FakeInitSys({
    dirs: ['/sys/fs/cgroup'],
    ...opts,
    files: {
      '/proc/cgroups': PROC_CGROUPS,
      '/sys/fs/cgroup/cgroup.controllers': CONTROLLERS,
      '/sys/fs/cgroup/cgroup.subtree_control': '\n',
      ...opts.files,
    },
  });
  const { log, lines } = captureLogger();
  const ctx: InitContext = { sys, log, root: opts.root ?? '/' };
  return { sys, lines, ctx };
}

const v2 = { unifiedCgroupHierarchy: true, cgroupNoV1: [] as string[] };
const v1 = (noV1: string[] = []) => ({ unifiedCgroupHierarchy: false, cgroupNoV1: noV1 });

describe('/proc/cgroups', () => {
  it('parses enabled and disabled controllers, skipping the header and junk', () => {
    const cg = parseProcCgroups(PROC_CGROUPS + 'bogus\nx\ty\tz\tw\n');
    expect(cg).toHaveLength(14);
    expect(cg.find((c) => c.name === 'rdma')).toEqual({ name: 'rdma', hierarchy: 0, numCgroups: 1, enabled: false });
    expect(cg.find((c) => c.name === 'memory')!.enabled).toBe(true);
  });

  it('v1Controllers: enabled ones minus cgroup_no_v1 ("all" excludes every one)', () => {
    const cg = parseProcCgroups(PROC_CGROUPS);
    expect(v1Controllers(cg, [])).toEqual([
      'cpuset', 'cpu', 'cpuacct', 'blkio', 'memory', 'devices', 'freezer', 'net_cls', 'perf_event', 'net_prio', 'hugetlb', 'pids', 'misc',
    ]);
    expect(v1Controllers(cg, ['memory', 'net_cls'])).not.toContain('memory');
    expect(v1Controllers(cg, ['memory', 'net_cls'])).toHaveLength(11);
    expect(v1Controllers(cg, ['all'])).toEqual([]);
  });
});

describe('cgroupMounts: cgroup2 (default)', () => {
  it('mounts cgroup2 with nsdelegate and favordynmods and enables every available controller for children', () => {
    const { sys, ctx, lines } = setup();
    const r = cgroupMounts(v2, ctx);
    expect(r.version).toBe(2);
    expect(sys.callsOf('mount')).toEqual([`mount cgroup2 /sys/fs/cgroup cgroup2 ${CG} nsdelegate,favordynmods`]);
    expect(sys.writes).toEqual([
      ['/sys/fs/cgroup/cgroup.subtree_control', '+cpuset +cpu +io +memory +hugetlb +pids +rdma +misc'],
    ]);
    expect(r.mounts).toEqual([{ target: '/sys/fs/cgroup', fstype: 'cgroup2', status: 'mounted', data: 'nsdelegate,favordynmods' }]);
    expect(r.controllersEnabled).toEqual(['cpuset', 'cpu', 'io', 'memory', 'hugetlb', 'pids', 'rdma', 'misc']);
    expect(r.errors).toEqual([]);
    expect(lines.filter((l) => l.level === 'error' || l.level === 'warn')).toEqual([]);
  });

  it('enables only controllers listed in cgroup.controllers', () => {
    const { sys, ctx } = setup({ files: { '/sys/fs/cgroup/cgroup.controllers': 'memory pids\n' } });
    cgroupMounts(v2, ctx);
    expect(sys.writes).toEqual([['/sys/fs/cgroup/cgroup.subtree_control', '+memory +pids']]);
  });

  it('a kernel without favordynmods (< 6.0): nsdelegate alone', () => {
    const { sys, ctx } = setup({ failMount: (m) => (m.data?.includes('favordynmods') ? 'EINVAL' : undefined) });
    const r = cgroupMounts(v2, ctx);
    expect(sys.callsOf('mount')).toEqual([
      `mount cgroup2 /sys/fs/cgroup cgroup2 ${CG} nsdelegate,favordynmods`,
      `mount cgroup2 /sys/fs/cgroup cgroup2 ${CG} nsdelegate`,
    ]);
    expect(r.mounts[0]).toMatchObject({ status: 'mounted', data: 'nsdelegate' });
  });

  it('falls back to a mount without nsdelegate when the kernel rejects it', () => {
    const { sys, ctx, lines } = setup({ failMount: (m) => (m.data?.includes('nsdelegate') ? 'EINVAL' : undefined) });
    const r = cgroupMounts(v2, ctx);
    expect(sys.callsOf('mount')).toEqual([
      `mount cgroup2 /sys/fs/cgroup cgroup2 ${CG} nsdelegate,favordynmods`,
      `mount cgroup2 /sys/fs/cgroup cgroup2 ${CG} nsdelegate`,
      `mount cgroup2 /sys/fs/cgroup cgroup2 ${CG} null`,
    ]);
    expect(r.mounts[0]).toMatchObject({ status: 'mounted', data: null });
    expect(r.controllersEnabled).toHaveLength(8);
    expect(lines.filter((l) => l.level === 'error')).toEqual([]);
  });

  it('when cgroup2 cannot be mounted at all: logged, no controller writes, no throw', () => {
    const { sys, ctx, lines } = setup({ failMount: () => 'ENODEV' });
    const r = cgroupMounts(v2, ctx);
    expect(r.mounts[0]).toMatchObject({ status: 'failed', error: expect.stringContaining('ENODEV') });
    expect(sys.writes).toEqual([]);
    expect(lines.filter((l) => l.level === 'error').map((l) => l.msg)).toEqual(['mount failed']);
  });

  it('skips the mount when cgroup2 is already there, still enabling controllers', () => {
    const { sys, ctx } = setup({ mountinfo: fixture('mountinfo-cgroup2.txt') });
    const r = cgroupMounts(v2, ctx);
    expect(r.mounts[0]!.status).toBe('skipped');
    expect(sys.callsOf('mount')).toEqual([]);
    expect(sys.writes).toHaveLength(1);
  });

  it('writes only the controllers not yet enabled; nothing when all are', () => {
    const some = setup({ files: { '/sys/fs/cgroup/cgroup.subtree_control': 'cpu memory\n' } });
    cgroupMounts(v2, some.ctx);
    expect(some.sys.writes).toEqual([['/sys/fs/cgroup/cgroup.subtree_control', '+cpuset +io +hugetlb +pids +rdma +misc']]);

    const all = setup({ files: { '/sys/fs/cgroup/cgroup.subtree_control': CONTROLLERS } });
    const r = cgroupMounts(v2, all.ctx);
    expect(all.sys.writes).toEqual([]);
    expect(r.controllersEnabled).toEqual([]);
  });

  it('when enabling all at once fails, enables one by one and logs the failures', () => {
    const { sys, ctx, lines } = setup({
      failWrite: (_p, d) => (d.includes(' ') || d === '+rdma' || d === '+misc' ? 'EINVAL' : undefined),
    });
    const r = cgroupMounts(v2, ctx);
    expect(r.controllersEnabled).toEqual(['cpuset', 'cpu', 'io', 'memory', 'hugetlb', 'pids']);
    expect(r.controllersFailed).toEqual(['rdma', 'misc']);
    expect(r.errors).toHaveLength(2);
    expect(r.errors[0]).toMatch(/enable controller rdma: .*EINVAL/);
    expect(sys.writes.map((w) => w[1])).toEqual(['+cpuset', '+cpu', '+io', '+memory', '+hugetlb', '+pids']);
    expect(lines.filter((l) => l.level === 'warn').map((l) => l.controller)).toEqual(['rdma', 'misc']);
  });

  it('an unreadable cgroup.controllers is logged and reported', () => {
    const { sys, ctx, lines } = setup();
    sys.files.delete('/sys/fs/cgroup/cgroup.controllers');
    const r = cgroupMounts(v2, ctx);
    expect(r.errors).toHaveLength(1);
    expect(r.errors[0]).toMatch(/^cgroup\.controllers: /);
    expect(lines.some((l) => l.level === 'error' && l.msg === 'cannot read cgroup.controllers')).toBe(true);
  });
});

describe('cgroupMounts: cgroup v1 (systemd.unified_cgroup_hierarchy=0)', () => {
  const ALL_V1 = ['cpuset', 'cpu', 'cpuacct', 'blkio', 'memory', 'devices', 'freezer', 'net_cls', 'perf_event', 'net_prio', 'hugetlb', 'pids', 'misc'];

  it('tmpfs on /sys/fs/cgroup, one hierarchy per enabled controller, then the tmpfs read-only', () => {
    const { sys, ctx, lines } = setup();
    const r = cgroupMounts(v1(), ctx);
    expect(r.version).toBe(1);
    expect(sys.callsOf('mount')).toEqual([
      'mount tmpfs /sys/fs/cgroup tmpfs 0xe mode=755',
      ...ALL_V1.map((c) => `mount cgroup /sys/fs/cgroup/${c} cgroup ${CG} ${c}`),
      'mount tmpfs /sys/fs/cgroup tmpfs 0x2f mode=755', // remount|ro|nosuid|nodev|noexec
    ]);
    // mount points are created before each controller is mounted; rdma (disabled) never appears
    expect(sys.callsOf('mkdir')).toEqual(ALL_V1.map((c) => `mkdir /sys/fs/cgroup/${c} 755`));
    expect(sys.calls.join('\n')).not.toContain('rdma');
    expect(sys.writes).toEqual([['/sys/fs/cgroup/memory/memory.use_hierarchy', '1']]);
    expect(r.mounts.every((m) => m.status === 'mounted')).toBe(true);
    expect(r.errors).toEqual([]);
    expect(lines.filter((l) => l.level === 'error' || l.level === 'warn')).toEqual([]);
  });

  it('respects cgroup_no_v1 (a list)', () => {
    const { sys, ctx, lines } = setup();
    const r = cgroupMounts(v1(['memory', 'net_cls', 'net_prio']), ctx);
    const mounted = r.mounts.filter((m) => m.fstype === 'cgroup').map((m) => m.target.split('/').pop());
    expect(mounted).toEqual(ALL_V1.filter((c) => !['memory', 'net_cls', 'net_prio'].includes(c)));
    expect(sys.writes).toEqual([]); // no memory hierarchy => no use_hierarchy
    expect(lines.find((l) => l.msg === 'cgroup v1 controllers excluded by cgroup_no_v1')?.controllers).toEqual(['memory', 'net_cls', 'net_prio']);
  });

  it('cgroup_no_v1=all leaves only the tmpfs', () => {
    const { sys, ctx } = setup();
    const r = cgroupMounts(v1(['all']), ctx);
    expect(r.mounts.map((m) => m.fstype)).toEqual(['tmpfs']);
    expect(sys.callsOf('mount')).toHaveLength(2); // tmpfs + read-only remount
  });

  it('a failing controller is logged and the others are still mounted', () => {
    const { sys, ctx, lines } = setup({ failMount: (m) => (m.data === 'cpuacct' ? 'EBUSY' : undefined) });
    const r = cgroupMounts(v1(), ctx);
    expect(r.mounts.find((m) => m.target === '/sys/fs/cgroup/cpuacct')).toMatchObject({ status: 'failed' });
    expect(r.mounts.filter((m) => m.status === 'mounted')).toHaveLength(ALL_V1.length); // tmpfs + 12 others
    expect(lines.filter((l) => l.level === 'error').map((l) => l.target)).toEqual(['/sys/fs/cgroup/cpuacct']);
    expect(sys.callsOf('mount').at(-1)).toContain('0x2f');
  });

  it('already mounted hierarchies are skipped; a tmpfs someone else mounted is not remounted', () => {
    const mi = [
      '20 1 0:21 / /proc rw - proc proc rw',
      '31 21 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw',
      '32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu',
    ].join('\n');
    const { sys, ctx } = setup({ mountinfo: mi });
    const r = cgroupMounts(v1(), ctx);
    expect(r.mounts.filter((m) => m.status === 'skipped').map((m) => m.target)).toEqual(['/sys/fs/cgroup', '/sys/fs/cgroup/cpu']);
    expect(sys.callsOf('mount').some((c) => c.includes('0x2f'))).toBe(false);
    expect(sys.callsOf('mount')).toHaveLength(ALL_V1.length - 1);
  });

  it('failing tmpfs: nothing else is attempted', () => {
    const { sys, ctx } = setup({ failMount: (m) => (m.fstype === 'tmpfs' ? 'ENOMEM' : undefined) });
    const r = cgroupMounts(v1(), ctx);
    expect(r.mounts).toHaveLength(1);
    expect(sys.callsOf('mount')).toHaveLength(1);
  });

  it('an unreadable /proc/cgroups is logged; only the tmpfs is mounted', () => {
    const { sys, ctx, lines } = setup();
    sys.files.delete('/proc/cgroups');
    const r = cgroupMounts(v1(), ctx);
    expect(r.mounts.map((m) => m.fstype)).toEqual(['tmpfs']);
    expect(r.errors[0]).toMatch(/^\/proc\/cgroups: /);
    expect(lines.some((l) => l.level === 'error' && String(l.msg).includes('/proc/cgroups'))).toBe(true);
  });

  it('a failing read-only remount is logged and reported', () => {
    const { ctx, lines } = setup({ failMount: (m) => (m.flags & 0x20 ? 'EPERM' : undefined) });
    const r = cgroupMounts(v1(), ctx);
    expect(r.errors).toEqual([expect.stringMatching(/remount \/sys\/fs\/cgroup ro: .*EPERM/)]);
    expect(lines.some((l) => l.level === 'warn' && String(l.msg).includes('read-only'))).toBe(true);
  });

  it('uses the root prefix for /proc/cgroups and every target', () => {
    const sys = new FakeInitSys({ root: '/x', files: { '/x/proc/cgroups': 'cpu\t0\t1\t1\n' } });
    const { log } = captureLogger();
    cgroupMounts(v1(), { sys, log, root: '/x' });
    expect(sys.callsOf('mount')).toEqual([
      'mount tmpfs /x/sys/fs/cgroup tmpfs 0xe mode=755',
      `mount cgroup /x/sys/fs/cgroup/cpu cgroup ${CG} cpu`,
      'mount tmpfs /x/sys/fs/cgroup tmpfs 0x2f mode=755',
    ]);
  });
});
