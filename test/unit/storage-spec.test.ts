import { describe, expect, it } from 'vitest';
import { methodInfo } from '../../agent/src/rpc/proto';
import { Code, RpcError } from '../../agent/src/rpc/status';
import { parseStorage, parseStorages, splitOptions } from '../../agent/src/storage/spec';
import { STORAGE_DRIVERS } from '../../agent/src/storage/types';

function rpcErr(f: () => unknown): RpcError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(RpcError);
    return e as RpcError;
  }
  throw new Error('expected an RpcError');
}

/** Round-trip storages through the real CreateContainer codec, as the agent receives them. */
function decoded(storages: Record<string, unknown>[]): unknown {
  const info = methodInfo('grpc.AgentService', 'CreateContainer')!;
  return info.decodeRequest(info.encodeRequest({ container_id: 'c', storages })).storages;
}

describe('parseStorage', () => {
  it('fills proto3 defaults for missing fields', () => {
    const s = parseStorage({ driver: 'local', mount_point: '/run/kata-containers/x' });
    expect(s).toEqual({
      driver: 'local', driverOptions: [], source: '', fstype: '', options: [], mountPoint: '/run/kata-containers/x', shared: false,
    });
    expect('fsGroup' in s).toBe(false);
  });

  it('reads what the protobuf decoder produces (snake_case, enum numbers, null fs_group)', () => {
    const list = parseStorages(decoded([
      { driver: 'blk', source: '02/01', fstype: 'ext4', options: ['ro', 'noatime'], mount_point: '/run/kata-containers/a', shared: true,
        fs_group: { group_id: 1000, group_change_policy: 1 } },
      { driver: 'ephemeral', mount_point: '/run/kata-containers/b', options: ['size=1M,mode=0777'] },
    ]));
    expect(list[0]).toEqual({
      driver: 'blk', driverOptions: [], source: '02/01', fstype: 'ext4', options: ['ro', 'noatime'], mountPoint: '/run/kata-containers/a',
      fsGroup: { groupId: 1000, policy: 1 }, shared: true,
    });
    expect(list[1]!.fsGroup).toBeUndefined();
    expect(list[1]!.options).toEqual(['size=1M', 'mode=0777']);
    // an fs_group sent with default values is present (gid 0, Always), not absent
    const zero = parseStorages(decoded([{ driver: 'local', mount_point: '/run/kata-containers/z', fs_group: {} }]));
    expect(zero[0]!.fsGroup).toEqual({ groupId: 0, policy: 0 });
  });

  it('rejects an unknown or empty driver, listing the known ones', () => {
    for (const driver of ['nfs', '']) {
      const e = rpcErr(() => parseStorage({ driver, mount_point: '/run/kata-containers/x' }, 'storages[3]'));
      expect(e.code).toBe(Code.INVALID_ARGUMENT);
      expect(e.message).toContain('storages[3]');
      expect(e.message).toContain(JSON.stringify(driver));
      for (const d of STORAGE_DRIVERS) expect(e.message).toContain(d);
    }
  });

  it('rejects wrong types, NUL bytes, bad policies and a missing mount point', () => {
    const base = { driver: 'local', mount_point: '/run/kata-containers/x' };
    const cases: [Record<string, unknown>, string][] = [
      [{ ...base, options: 'ro' }, 'options must be a list'],
      [{ ...base, options: ['ro', 3] }, 'options[1] must be a string'],
      [{ ...base, source: 'a\0b' }, 'NUL'],
      [{ ...base, fs_group: { group_id: -1 } }, 'group_id'],
      [{ ...base, fs_group: { group_id: 1, group_change_policy: 7 } }, 'group_change_policy'],
      [{ ...base, shared: 'yes' }, 'shared'],
      [{ driver: 'local' }, 'mount_point is empty'],
    ];
    for (const [obj, msg] of cases) {
      const e = rpcErr(() => parseStorage(obj));
      expect(e.code, msg).toBe(Code.INVALID_ARGUMENT);
      expect(e.message).toContain(msg);
    }
    expect(rpcErr(() => parseStorage(null)).code).toBe(Code.INVALID_ARGUMENT);
    expect(rpcErr(() => parseStorages({})).code).toBe(Code.INVALID_ARGUMENT);
    expect(parseStorages(undefined)).toEqual([]);
  });

  it('accepts the policy by name too', () => {
    expect(parseStorage({ driver: 'local', mount_point: '/x', fs_group: { group_id: 5, group_change_policy: 'OnRootMismatch' } }).fsGroup)
      .toEqual({ groupId: 5, policy: 1 });
  });
});

describe('splitOptions', () => {
  it('splits on commas outside double quotes and drops empty words', () => {
    expect(splitOptions(['ro,nosuid', '', 'size=1M', 'context="a:b:c0,c1",x', ' dax '])).toEqual([
      'ro', 'nosuid', 'size=1M', 'context="a:b:c0,c1"', 'x', 'dax',
    ]);
  });
});
