// agent.Storage as decoded by rpc/proto (plain object, snake_case fields,
// proto3 defaults possibly missing) -> StorageSpec. Only types and values are
// checked here; the mount point is confined by the manager (./confine).
import { Code, RpcError } from '../rpc/status';
import { FsGroupChangePolicy, STORAGE_DRIVERS, type FsGroup, type StorageSpec } from './types';

function bad(where: string, msg: string): RpcError {
  return new RpcError(Code.INVALID_ARGUMENT, `${where}: ${msg}`);
}

function str(v: unknown, where: string, field: string): string {
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw bad(where, `${field} must be a string, got ${typeof v}`);
  if (v.includes('\0')) throw bad(where, `${field} ${JSON.stringify(v)} contains a NUL byte`);
  return v;
}

function strList(v: unknown, where: string, field: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw bad(where, `${field} must be a list of strings`);
  return v.map((x, i) => str(x, where, `${field}[${i}]`));
}

function uint32(v: unknown, where: string, field: string): number {
  if (v === undefined || v === null) return 0;
  const n = typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 0xffffffff) {
    throw bad(where, `${field} must be a 32-bit unsigned integer, got ${JSON.stringify(v)}`);
  }
  return n;
}

function policy(v: unknown, where: string): FsGroupChangePolicy {
  if (v === undefined || v === null || v === 0 || v === 'Always') return FsGroupChangePolicy.Always;
  if (v === 1 || v === 'OnRootMismatch') return FsGroupChangePolicy.OnRootMismatch;
  throw bad(where, `fs_group.group_change_policy ${JSON.stringify(v)} is not Always (0) or OnRootMismatch (1)`);
}

/**
 * Split option elements on commas ("ro,nosuid" -> "ro", "nosuid"), keeping
 * double-quoted parts whole (SELinux context="a,b"); empty words are dropped.
 */
export function splitOptions(options: readonly string[]): string[] {
  const out: string[] = [];
  for (const o of options) {
    let cur = '';
    let quoted = false;
    for (const ch of o) {
      if (ch === '"') quoted = !quoted;
      if (ch === ',' && !quoted) {
        if (cur.trim() !== '') out.push(cur.trim());
        cur = '';
      } else {
        cur += ch;
      }
    }
    if (cur.trim() !== '') out.push(cur.trim());
  }
  return out;
}

/** The known drivers, for error messages. */
export function knownDrivers(): string {
  return STORAGE_DRIVERS.join(', ');
}

/** Validate one decoded agent.Storage. `where` prefixes error messages ("storages[2]"). */
export function parseStorage(obj: unknown, where = 'storage'): StorageSpec {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw bad(where, 'must be a Storage message');
  const o = obj as Record<string, unknown>;
  const driver = str(o.driver, where, 'driver');
  if (!(STORAGE_DRIVERS as readonly string[]).includes(driver)) {
    throw bad(where, `unknown storage driver ${JSON.stringify(driver)} (known: ${knownDrivers()})`);
  }
  const mountPoint = str(o.mount_point, where, 'mount_point');
  if (mountPoint === '') throw bad(where, 'mount_point is empty');
  let fsGroup: FsGroup | undefined;
  if (o.fs_group !== undefined && o.fs_group !== null) {
    if (typeof o.fs_group !== 'object' || Array.isArray(o.fs_group)) throw bad(where, 'fs_group must be an FSGroup message');
    const g = o.fs_group as Record<string, unknown>;
    fsGroup = { groupId: uint32(g.group_id, where, 'fs_group.group_id'), policy: policy(g.group_change_policy, where) };
  }
  if (o.shared !== undefined && o.shared !== null && typeof o.shared !== 'boolean') throw bad(where, 'shared must be a boolean');
  const spec: StorageSpec = {
    driver,
    driverOptions: strList(o.driver_options, where, 'driver_options'),
    source: str(o.source, where, 'source'),
    fstype: str(o.fstype, where, 'fstype'),
    options: splitOptions(strList(o.options, where, 'options')),
    mountPoint,
    shared: o.shared === true,
  };
  if (fsGroup) spec.fsGroup = fsGroup;
  return spec;
}

/** Validate a list (CreateSandbox.storages, CreateContainer.storages, UpdateEphemeralMounts.storages). */
export function parseStorages(list: unknown, field = 'storages'): StorageSpec[] {
  if (list === undefined || list === null) return [];
  if (!Array.isArray(list)) throw new RpcError(Code.INVALID_ARGUMENT, `${field} must be a list of Storage messages`);
  return list.map((s, i) => parseStorage(s, `${field}[${i}]`));
}
