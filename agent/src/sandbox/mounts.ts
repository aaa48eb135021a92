// What the sandbox needs to know about mounts: the mount a path lies on, its
// propagation (shared or not), nsfs bind mounts, and whether the guest's root
// can be pivot_root'ed away from. Parsed from /proc/self/mountinfo text.
import path from 'node:path';
import { parseMountInfo, type MountInfoEntry } from '../init/mountinfo';

export type MountEntry = MountInfoEntry;

/** Parse mountinfo, keeping the optional (propagation) fields. Malformed lines are skipped. */
export const parseMountInfoFull = parseMountInfo;

function under(p: string, mountPoint: string): boolean {
  return mountPoint === '/' || p === mountPoint || p.startsWith(`${mountPoint}/`);
}

/** The (topmost) mount `p` lies on. `p` should be absolute and symlink-free. */
export function mountOf(entries: readonly MountEntry[], p: string): MountEntry | undefined {
  const target = path.resolve(p);
  let best: MountEntry | undefined;
  for (const e of entries) {
    if (!under(target, e.mountPoint)) continue;
    // Longer mount points win; among equal ones the later (topmost) entry.
    if (!best || e.mountPoint.length >= best.mountPoint.length) best = e;
  }
  return best;
}

/** True when the mount `p` lies on propagates mounts to peers ("shared:N"). */
export function isOnSharedMount(entries: readonly MountEntry[], p: string): boolean {
  return mountOf(entries, p)?.optional.some((o) => o.startsWith('shared:')) ?? false;
}

/** True when something is mounted exactly at `p`. */
export function isMountPoint(entries: readonly MountEntry[], p: string): boolean {
  const target = path.resolve(p);
  return entries.some((e) => e.mountPoint === target);
}

/**
 * Whether containers must be started with --no-pivot: the guest's root is the
 * initial ramfs/tmpfs ("rootfs", e.g. an initramfs guest), which pivot_root
 * cannot move (Kata: no_pivot_root = fs type of "/" is "rootfs"). A ramfs or
 * tmpfs root whose source is "rootfs", or that is its own parent (the
 * namespace's first mount), counts as well.
 */
export function rootNeedsNoPivot(entries: readonly MountEntry[]): boolean {
  let root: MountEntry | undefined;
  for (const e of entries) if (e.mountPoint === '/') root = e;
  if (!root) return false;
  if (root.fstype === 'rootfs') return true;
  if (root.fstype === 'ramfs' || root.fstype === 'tmpfs') {
    return root.source === 'rootfs' || root.parent === root.id;
  }
  return false;
}
