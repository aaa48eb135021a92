// cgroup file systems for a PID-1 agent.
// Default (systemd.unified_cgroup_hierarchy=1): pure cgroup2 on /sys/fs/cgroup
// (nsdelegate and favordynmods when the kernel allows them) and every available controller enabled
// for children. With systemd.unified_cgroup_hierarchy=0: a tmpfs on
// /sys/fs/cgroup with one cgroup v1 hierarchy per enabled controller from
// /proc/cgroups (minus cgroup_no_v1), then the tmpfs is made read-only.
import type { AgentConfig } from '../config';
import { MS } from '../sys/mount';
import { mountOnce, type MountResult } from './mounts';
import { at, errMsg, type InitContext } from './sys';

export const CGROUP_ROOT = '/sys/fs/cgroup';
const CG_FLAGS = MS.NOSUID | MS.NODEV | MS.NOEXEC | MS.RELATIME;

export interface ProcCgroup {
  name: string;
  hierarchy: number;
  numCgroups: number;
  enabled: boolean;
}

/** Parse /proc/cgroups ("#subsys_name hierarchy num_cgroups enabled"). */
export function parseProcCgroups(text: string): ProcCgroup[] {
  const out: ProcCgroup[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const f = line.trim().split(/\s+/);
    if (f.length < 4 || f[0] === '') continue;
    const nums = f.slice(1, 4).map(Number);
    if (nums.some((n) => !Number.isInteger(n) || n < 0)) continue;
    out.push({ name: f[0]!, hierarchy: nums[0]!, numCgroups: nums[1]!, enabled: nums[2] !== 0 });
  }
  return out;
}

/** Controllers to mount as v1 hierarchies: enabled ones not excluded by cgroup_no_v1. */
export function v1Controllers(cgroups: readonly ProcCgroup[], noV1: readonly string[]): string[] {
  if (noV1.includes('all')) return [];
  return cgroups.filter((c) => c.enabled && !noV1.includes(c.name)).map((c) => c.name);
}

export interface CgroupResult {
  version: 1 | 2;
  mounts: MountResult[];
  /** cgroup2: controllers now enabled in the root's cgroup.subtree_control by us. */
  controllersEnabled: string[];
  /** cgroup2: controllers that could not be enabled. */
  controllersFailed: string[];
  /** Failures other than mounts (those are in `mounts`). */
  errors: string[];
}

function splitWords(s: string): string[] {
  return s.split(/\s+/).filter((w) => w !== '');
}

/** Write "+c1 +c2 ..." for every controller in cgroup.controllers not yet in cgroup.subtree_control. */
export function enableControllers(ctx: InitContext, cgroupDir: string): { enabled: string[]; failed: string[]; errors: string[] } {
  const { sys, log } = ctx;
  const dir = at(ctx.root, cgroupDir);
  const errors: string[] = [];
  let available: string[];
  let already: string[] = [];
  try {
    available = splitWords(sys.readFile(`${dir}/cgroup.controllers`));
  } catch (e) {
    log.error({ err: errMsg(e) }, 'cannot read cgroup.controllers');
    return { enabled: [], failed: [], errors: [`cgroup.controllers: ${errMsg(e)}`] };
  }
  try {
    already = splitWords(sys.readFile(`${dir}/cgroup.subtree_control`));
  } catch {
    already = [];
  }
  const want = available.filter((c) => !already.includes(c));
  if (want.length === 0) return { enabled: [], failed: [], errors };
  const file = `${dir}/cgroup.subtree_control`;
  try {
    sys.writeFile(file, want.map((c) => `+${c}`).join(' '));
    log.debug({ controllers: want }, 'enabled cgroup controllers');
    return { enabled: want, failed: [], errors };
  } catch (e) {
    log.debug({ err: errMsg(e) }, 'enabling all controllers at once failed; trying one by one');
  }
  const enabled: string[] = [];
  const failed: string[] = [];
  for (const c of want) {
    try {
      sys.writeFile(file, `+${c}`);
      enabled.push(c);
    } catch (e) {
      failed.push(c);
      errors.push(`enable controller ${c}: ${errMsg(e)}`);
      log.warn({ controller: c, err: errMsg(e) }, 'cannot enable cgroup controller');
    }
  }
  return { enabled, failed, errors };
}

/** Mount the cgroup file systems per the configuration. Never throws. */
export function cgroupMounts(
  config: Pick<AgentConfig, 'unifiedCgroupHierarchy' | 'cgroupNoV1'>,
  ctx: InitContext,
): CgroupResult {
  return config.unifiedCgroupHierarchy ? cgroupV2(ctx) : cgroupV1(ctx, config.cgroupNoV1);
}

function cgroupV2(ctx: InitContext): CgroupResult {
  const m = mountOnce(
    ctx,
    // favordynmods (Linux >= 6.0): moving a process between cgroups no longer waits for an RCU
    // grace period. crun moves every container init (and exec) into its cgroup: measured here,
    // 5-7 ms per move without it, 0.25 ms with it (docs/benchmarks.md). Forks and exits pay a
    // little more, which an agent whose job is creating containers accepts.
    { source: 'cgroup2', target: CGROUP_ROOT, fstype: 'cgroup2', flags: CG_FLAGS, data: 'nsdelegate,favordynmods' },
    ['nsdelegate', null],
  );
  const res: CgroupResult = { version: 2, mounts: [m], controllersEnabled: [], controllersFailed: [], errors: [] };
  if (m.status === 'failed') return res;
  const c = enableControllers(ctx, CGROUP_ROOT);
  res.controllersEnabled = c.enabled;
  res.controllersFailed = c.failed;
  res.errors.push(...c.errors);
  return res;
}

function cgroupV1(ctx: InitContext, noV1: readonly string[]): CgroupResult {
  const { sys, log } = ctx;
  const res: CgroupResult = { version: 1, mounts: [], controllersEnabled: [], controllersFailed: [], errors: [] };
  const tmpfs = mountOnce(ctx, { source: 'tmpfs', target: CGROUP_ROOT, fstype: 'tmpfs', flags: MS.NOSUID | MS.NODEV | MS.NOEXEC, data: 'mode=755' });
  res.mounts.push(tmpfs);
  if (tmpfs.status === 'failed') return res;
  let cgroups: ProcCgroup[] = [];
  try {
    cgroups = parseProcCgroups(sys.readFile(at(ctx.root, '/proc/cgroups')));
  } catch (e) {
    log.error({ err: errMsg(e) }, 'cannot read /proc/cgroups; no cgroup v1 controllers mounted');
    res.errors.push(`/proc/cgroups: ${errMsg(e)}`);
  }
  const names = v1Controllers(cgroups, noV1);
  const excluded = cgroups.filter((c) => c.enabled && !names.includes(c.name)).map((c) => c.name);
  if (excluded.length) log.info({ controllers: excluded }, 'cgroup v1 controllers excluded by cgroup_no_v1');
  for (const name of names) {
    const r = mountOnce(ctx, { source: 'cgroup', target: `${CGROUP_ROOT}/${name}`, fstype: 'cgroup', flags: CG_FLAGS, data: name });
    res.mounts.push(r);
  }
  const mem = res.mounts.find((r) => r.target === `${CGROUP_ROOT}/memory` && r.status !== 'failed');
  if (mem) {
    try {
      sys.writeFile(at(ctx.root, `${CGROUP_ROOT}/memory/memory.use_hierarchy`), '1');
    } catch (e) {
      log.debug({ err: errMsg(e) }, 'cannot set memory.use_hierarchy');
    }
  }
  if (tmpfs.status === 'mounted') {
    try {
      sys.mount('tmpfs', at(ctx.root, CGROUP_ROOT), 'tmpfs', MS.REMOUNT | MS.RDONLY | MS.NOSUID | MS.NODEV | MS.NOEXEC, 'mode=755');
    } catch (e) {
      log.warn({ err: errMsg(e) }, `cannot remount ${CGROUP_ROOT} read-only`);
      res.errors.push(`remount ${CGROUP_ROOT} ro: ${errMsg(e)}`);
    }
  }
  return res;
}
