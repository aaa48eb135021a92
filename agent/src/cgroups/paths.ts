// cgroup paths: normalising cgroupsPath-style relative paths and choosing the
// path a container's OCI spec gets (linux.cgroupsPath).
import { invalidArgument } from '../rpc/status';

/** Where the agent puts itself (setupAgentCgroup). */
export const AGENT_CGROUP = '/kata-agent';
/** Parent of the per-sandbox cgroups used when the host sends no cgroupsPath. */
export const SANDBOX_CGROUP_PARENT = '/kata';

/** runc/Kata's systemd cgroupsPath form "slice:prefix:name" (each part may be empty). */
export const SYSTEMD_CGROUPS_PATH = /^[\w.-]*:[\w.-]*:[\w.-]*$/;

/**
 * Normalise a cgroup path relative to a cgroup root: leading '/' optional,
 * empty and '.' components dropped; '..' and NUL are refused (a path from the
 * host must not climb out of the tree). Returns "/a/b", or "/" for the root.
 */
export function normalizeRel(rel: string): string {
  if (typeof rel !== 'string') throw invalidArgument(`cgroup path must be a string`);
  if (rel.includes('\0')) throw invalidArgument(`cgroup path contains a NUL byte`);
  const parts: string[] = [];
  for (const p of rel.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') throw invalidArgument(`cgroup path ${JSON.stringify(rel)} contains '..'`);
    parts.push(p);
  }
  return '/' + parts.join('/');
}

/** The components of a normalised path ("/" -> []). */
export function relParts(rel: string): string[] {
  const n = normalizeRel(rel);
  return n === '/' ? [] : n.slice(1).split('/');
}

function checkId(what: string, id: string): void {
  if (typeof id !== 'string' || id === '' || id === '.' || id === '..' || id.includes('/') || id.includes('\0')) {
    throw invalidArgument(`invalid ${what} ${JSON.stringify(id)} for a cgroup name`);
  }
}

/** The sandbox's own cgroup when the host gives containers no cgroupsPath. */
export function sandboxCgroupPath(sandboxId: string): string {
  checkId('sandbox id', sandboxId);
  return `${SANDBOX_CGROUP_PARENT}/${sandboxId}`;
}

/**
 * The cgroupfs path the agent writes into a container's OCI spec.
 *
 * Rule (Kata's agent in init mode uses the cgroupfs driver, never systemd):
 *  - empty (or "/"): `/kata/<sandboxId>/<cid>`, so every container of the
 *    sandbox shares one parent (Kata uses "/<cid>"; the parent is ours);
 *  - systemd form "slice:prefix:name": turned into a cgroupfs path the way
 *    Kata does (':' -> '/'), dropping empty parts and the root slice "-":
 *    "kubepods-burstable-pod1.slice:cri-containerd:abc" ->
 *    "/kubepods-burstable-pod1.slice/cri-containerd/abc"; a missing name
 *    becomes the container id;
 *  - anything else is a cgroupfs path, kept as the host sent it (e.g.
 *    "/kubepods/burstable/pod<uid>/<cid>"), normalised and made absolute
 *    (relative paths are taken from the root, as Kata does).
 * Refused (INVALID_ARGUMENT): '..' components, NUL bytes, bad ids, and any
 * path at or under the agent's own cgroup (/kata-agent).
 */
export function containerCgroupPath(sandboxId: string, cgroupsPath: string | undefined | null, cid: string): string {
  checkId('container id', cid);
  const raw = (cgroupsPath ?? '').trim();
  let out: string;
  if (SYSTEMD_CGROUPS_PATH.test(raw)) {
    const [slice, prefix, name] = raw.split(':') as [string, string, string];
    const parts = [slice, prefix, name === '' ? cid : name].filter((p) => p !== '' && p !== '-' && p !== '.' && p !== '..');
    out = '/' + parts.join('/');
  } else {
    out = normalizeRel(raw);
  }
  if (out === '/') out = `${sandboxCgroupPath(sandboxId)}/${cid}`;
  if (out === AGENT_CGROUP || out.startsWith(`${AGENT_CGROUP}/`)) {
    throw invalidArgument(`cgroupsPath ${JSON.stringify(cgroupsPath)} is inside the agent's own cgroup`);
  }
  return out;
}
