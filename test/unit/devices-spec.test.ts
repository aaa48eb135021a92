// devices/spec.ts: the OCI spec gets the guest's major:minor for passed-through
// devices, in linux.devices and in the device cgroup rules that named the host's.
import { describe, expect, it } from 'vitest';
import { updateSpecDevices } from '../../agent/src/devices/spec';
import { Code } from '../../agent/src/rpc/status';
import type { OciSpec } from '../../agent/src/runtime/spec';

function spec(): OciSpec {
  return {
    ociVersion: '1.0.2',
    linux: {
      devices: [
        { path: '/dev/null', type: 'c', major: 1, minor: 3 },
        { path: '/dev/xda', type: 'b', major: 8, minor: 0, fileMode: 0o660, uid: 0, gid: 6 },
        { path: '/dev/xdb', type: 'b', major: 8, minor: 16 },
        { path: '/dev/ttyX', type: 'c', major: 8, minor: 0 },
      ],
      resources: {
        devices: [
          { allow: false, access: 'rwm' },
          { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' },
          { allow: true, type: 'b', major: 8, minor: 0, access: 'rw' },
          { allow: true, type: 'c', major: 8, minor: 0, access: 'rwm' }, // same numbers, other type
          { allow: true, type: 'b', major: 8, access: 'r' }, // wildcard minor: left alone
          { allow: true, type: 'b', major: 8, minor: 16, access: 'rwm' },
          { allow: false, type: 'b', major: 8, minor: 0, access: 'm' },
        ],
      },
    },
  };
}

describe('updateSpecDevices', () => {
  it('sets guest numbers on the device and rewrites the cgroup rules of its type and host numbers', () => {
    const s = spec();
    const changes = updateSpecDevices(s, [{ containerPath: '/dev/xda', major: 254, minor: 16, type: 'b' }]);
    expect(s.linux!.devices![1]).toEqual({ path: '/dev/xda', type: 'b', major: 254, minor: 16, fileMode: 0o660, uid: 0, gid: 6 });
    const rules = s.linux!.resources!.devices!;
    expect(rules[2]).toEqual({ allow: true, type: 'b', major: 254, minor: 16, access: 'rw' });
    expect(rules[6]).toEqual({ allow: false, type: 'b', major: 254, minor: 16, access: 'm' });
    // Untouched: the char device with the same numbers, the wildcard rule, other devices.
    expect(rules[3]).toEqual({ allow: true, type: 'c', major: 8, minor: 0, access: 'rwm' });
    expect(rules[4]).toEqual({ allow: true, type: 'b', major: 8, access: 'r' });
    expect(rules[0]).toEqual({ allow: false, access: 'rwm' });
    expect(s.linux!.devices![3]).toEqual({ path: '/dev/ttyX', type: 'c', major: 8, minor: 0 });
    expect(changes).toEqual([
      { kind: 'device', index: 1, containerPath: '/dev/xda', type: 'b', from: { major: 8, minor: 0 }, to: { major: 254, minor: 16 } },
      { kind: 'rule', index: 2, containerPath: '/dev/xda', type: 'b', from: { major: 8, minor: 0 }, to: { major: 254, minor: 16 } },
      { kind: 'rule', index: 6, containerPath: '/dev/xda', type: 'b', from: { major: 8, minor: 0 }, to: { major: 254, minor: 16 } },
    ]);
  });

  it('matches rules on the original numbers: swapping two devices does not chain', () => {
    const s = spec();
    updateSpecDevices(s, [
      { containerPath: '/dev/xda', major: 8, minor: 16 },
      { containerPath: '/dev/xdb', major: 8, minor: 0 },
    ]);
    expect(s.linux!.devices![1]).toMatchObject({ major: 8, minor: 16 });
    expect(s.linux!.devices![2]).toMatchObject({ major: 8, minor: 0 });
    const rules = s.linux!.resources!.devices!;
    expect(rules[2]).toMatchObject({ major: 8, minor: 16, access: 'rw' }); // was xda's rule
    expect(rules[5]).toMatchObject({ major: 8, minor: 0, access: 'rwm' }); // was xdb's rule
  });

  it('a container path missing from linux.devices is INVALID_ARGUMENT naming it, and nothing changes', () => {
    const s = spec();
    const before = JSON.stringify(s);
    expect(() =>
      updateSpecDevices(s, [
        { containerPath: '/dev/xda', major: 254, minor: 16 },
        { containerPath: '/dev/missing', major: 254, minor: 32 },
      ]),
    ).toThrow(expect.objectContaining({ code: Code.INVALID_ARGUMENT, message: expect.stringContaining('/dev/missing') }));
    expect(JSON.stringify(s)).toBe(before);
  });

  it('rejects a type mismatch, bad numbers, a path given twice and shared host numbers', () => {
    const bad: Parameters<typeof updateSpecDevices>[1][] = [
      [{ containerPath: '/dev/xda', major: 254, minor: 16, type: 'c' }],
      [{ containerPath: '/dev/xda', major: -1, minor: 16 }],
      [{ containerPath: '/dev/xda', major: 1.5, minor: 16 }],
      [{ containerPath: '/dev/xda', major: 254, minor: 2 ** 32 }],
      [
        { containerPath: '/dev/xda', major: 254, minor: 16 },
        { containerPath: '/dev/xda', major: 254, minor: 32 },
      ],
    ];
    for (const u of bad) {
      const s = spec();
      const before = JSON.stringify(s);
      expect(() => updateSpecDevices(s, u), JSON.stringify(u)).toThrow(expect.objectContaining({ code: Code.INVALID_ARGUMENT }));
      expect(JSON.stringify(s)).toBe(before);
    }
    const s = spec();
    s.linux!.devices!.push({ path: '/dev/xda-again', type: 'b', major: 8, minor: 0 });
    expect(() =>
      updateSpecDevices(s, [
        { containerPath: '/dev/xda', major: 254, minor: 16 },
        { containerPath: '/dev/xda-again', major: 254, minor: 32 },
      ]),
    ).toThrow(/conflicting/);
  });

  it('works without resources, and with no updates at all', () => {
    const s: OciSpec = { ociVersion: '1.0.2', linux: { devices: [{ path: '/dev/xda', type: 'b', major: 8, minor: 0 }] } };
    expect(updateSpecDevices(s, [{ containerPath: '/dev/xda', major: 254, minor: 0 }])).toHaveLength(1);
    expect(s.linux!.devices![0]).toMatchObject({ major: 254, minor: 0 });
    expect(updateSpecDevices({ ociVersion: '1.0.2' }, [])).toEqual([]);
    expect(() => updateSpecDevices({ ociVersion: '1.0.2' }, [{ containerPath: '/dev/xda', major: 1, minor: 1 }])).toThrow(
      /\/dev\/xda/,
    );
  });
});
