// Rewriting a container's OCI spec for devices the host passed through: the host
// wrote its own major:minor into linux.devices (and into the device cgroup rules in
// linux.resources.devices), the guest kernel gave the device other numbers. As in
// Kata's agent (update_spec_devices): each linux.devices entry named by container
// path gets the guest numbers, and every cgroup rule of that type that named the
// old host numbers is rewritten to the guest ones so the container may use it.
import { Code, RpcError } from '../rpc/status';
import type { OciSpec } from '../runtime/spec';

export interface DeviceUpdate {
  /** linux.devices[].path to update ("/dev/xda"). */
  containerPath: string;
  /** The guest's numbers for the device. */
  major: number;
  minor: number;
  /** 'b' or 'c' when known: must then agree with the spec entry's type. */
  type?: string;
}

export interface DeviceChange {
  /** 'device': a linux.devices entry; 'rule': a linux.resources.devices rule. */
  kind: 'device' | 'rule';
  /** Index in linux.devices or linux.resources.devices. */
  index: number;
  /** The container path (for rules: of the device that caused the change). */
  containerPath: string;
  type: string;
  from: { major: number; minor: number };
  to: { major: number; minor: number };
}

const isDevNum = (n: unknown): n is number => typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= 0xffffffff;

/**
 * Apply `updates` to `spec` in place (no I/O) and return what changed, for logging.
 * All or nothing: on error (INVALID_ARGUMENT: a container path not in linux.devices,
 * a type mismatch, bad numbers, two devices sharing host numbers) the spec is untouched.
 * Cgroup rules are matched on the ORIGINAL values, so swapping numbers between two
 * devices does not chain.
 */
export function updateSpecDevices(spec: OciSpec, updates: readonly DeviceUpdate[]): DeviceChange[] {
  if (updates.length === 0) return [];
  const devices = spec.linux?.devices ?? [];
  const seenPaths = new Set<string>();
  const changes: DeviceChange[] = [];
  // "type major:minor" (host numbers) -> the update for it
  const byHost = new Map<string, { containerPath: string; type: string; major: number; minor: number }>();

  for (const u of updates) {
    if (!isDevNum(u.major) || !isDevNum(u.minor)) {
      throw new RpcError(Code.INVALID_ARGUMENT, `invalid device numbers ${u.major}:${u.minor} for ${u.containerPath}`);
    }
    if (seenPaths.has(u.containerPath)) {
      throw new RpcError(Code.INVALID_ARGUMENT, `device ${u.containerPath} updated twice`);
    }
    seenPaths.add(u.containerPath);
    const index = devices.findIndex((d) => d.path === u.containerPath);
    if (index < 0) {
      throw new RpcError(Code.INVALID_ARGUMENT, `device ${u.containerPath} is not in the container spec's linux.devices`);
    }
    const d = devices[index]!;
    if (u.type !== undefined && u.type !== d.type) {
      throw new RpcError(
        Code.INVALID_ARGUMENT,
        `device ${u.containerPath} has type "${d.type}" in the spec but the guest device is of type "${u.type}"`,
      );
    }
    const key = `${d.type} ${d.major}:${d.minor}`;
    const prev = byHost.get(key);
    if (prev) {
      throw new RpcError(
        Code.INVALID_ARGUMENT,
        `devices ${prev.containerPath} and ${u.containerPath} share host numbers ${d.major}:${d.minor}: conflicting cgroup rule updates`,
      );
    }
    byHost.set(key, { containerPath: u.containerPath, type: d.type, major: u.major, minor: u.minor });
    changes.push({
      kind: 'device',
      index,
      containerPath: u.containerPath,
      type: d.type,
      from: { major: d.major, minor: d.minor },
      to: { major: u.major, minor: u.minor },
    });
  }

  const rules = spec.linux?.resources?.devices ?? [];
  rules.forEach((r, index) => {
    if (r.type === undefined || r.major === undefined || r.minor === undefined) return;
    const hit = byHost.get(`${r.type} ${r.major}:${r.minor}`);
    if (!hit) return;
    changes.push({
      kind: 'rule',
      index,
      containerPath: hit.containerPath,
      type: r.type,
      from: { major: r.major, minor: r.minor },
      to: { major: hit.major, minor: hit.minor },
    });
  });

  // Everything validated: apply.
  for (const c of changes) {
    const target = c.kind === 'device' ? devices[c.index]! : rules[c.index]!;
    target.major = c.to.major;
    target.minor = c.to.minor;
  }
  return changes;
}
