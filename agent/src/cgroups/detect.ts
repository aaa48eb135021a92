// Which cgroup layout is mounted at a root.
import fs from 'node:fs';
import path from 'node:path';

export const CGROUP2_SUPER_MAGIC = 0x63677270;
export const CGROUP_SUPER_MAGIC = 0x27e0eb;
export const TMPFS_MAGIC = 0x01021994;
export const DEFAULT_CGROUP_ROOT = '/sys/fs/cgroup';

function fsType(p: string): number | undefined {
  try {
    return Number(fs.statfsSync(p).type);
  } catch {
    return undefined;
  }
}

/**
 * 'v2' when `root` is a cgroup2 mount (or, in a fake tree, holds
 * cgroup.controllers); 'hybrid' when v1 hierarchies sit next to a cgroup2
 * mount at <root>/unified; otherwise 'v1' (a tmpfs of per-controller mounts).
 */
export function detectCgroups(root: string = DEFAULT_CGROUP_ROOT): 'v1' | 'v2' | 'hybrid' {
  if (fsType(root) === CGROUP2_SUPER_MAGIC) return 'v2';
  if (fs.existsSync(path.join(root, 'cgroup.controllers'))) return 'v2';
  const unified = path.join(root, 'unified');
  if (fsType(unified) === CGROUP2_SUPER_MAGIC || fs.existsSync(path.join(unified, 'cgroup.controllers'))) return 'hybrid';
  return 'v1';
}
