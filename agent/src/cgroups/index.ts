// cgroup v1 and v2 behind one interface. See types.ts for the Cgroups API,
// convert.ts for how OCI resources become cgroup files, oom.ts for OOM
// detection and paths.ts for the cgroupsPath rule.
import { detectCgroups, DEFAULT_CGROUP_ROOT } from './detect';
import { realFs, type FsOps } from './fsops';
import type { CgroupMode, Cgroups } from './types';
import { CgroupsV1 } from './v1';
import { CgroupsV2 } from './v2';

export interface OpenCgroupsOptions {
  /** Replace some file operations (tests). */
  ops?: Partial<FsOps>;
}

/** Open the cgroup tree at `root` (default /sys/fs/cgroup), detecting its layout unless `mode` is given. */
export function openCgroups(root: string = DEFAULT_CGROUP_ROOT, mode?: CgroupMode, opts: OpenCgroupsOptions = {}): Cgroups {
  const r = root.length > 1 ? root.replace(/\/+$/, '') : root;
  const m = mode ?? detectCgroups(r);
  const ops: FsOps = { ...realFs, ...opts.ops };
  return m === 'v2' ? new CgroupsV2(r, ops) : new CgroupsV1(r, ops, m);
}

export { detectCgroups, DEFAULT_CGROUP_ROOT, CGROUP2_SUPER_MAGIC, TMPFS_MAGIC } from './detect';
export { setupAgentCgroup, type AgentCgroupOptions } from './agent';
export {
  AGENT_CGROUP,
  SANDBOX_CGROUP_PARENT,
  containerCgroupPath,
  normalizeRel,
  sandboxCgroupPath,
} from './paths';
export { blkioWeightToIoWeight, cpuMax, planV1, planV2, sharesToWeight, swapToV2, type PlannedWrite } from './convert';
export type { FsOps } from './fsops';
export * from './types';
