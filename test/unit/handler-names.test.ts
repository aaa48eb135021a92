// GetGuestDetails reports exactly the storage drivers and device types the container stack
// serves: the light lists main.ts uses must equal the implementations' own tables.
import { describe, expect, it } from 'vitest';
import { DEVICE_HANDLERS } from '../../agent/src/sandbox/devices';
import { DEVICE_HANDLER_NAMES, ISSUE3_METHODS, STORAGE_HANDLER_NAMES } from '../../agent/src/services/issue3-methods';
import { STORAGE_DRIVERS } from '../../agent/src/storage/types';
import { parseDevices } from '../../agent/src/sandbox/devices';
import { parseStorage } from '../../agent/src/storage/spec';
import { plannedFor } from '../../agent/src/rpc/planned';

describe('handler names', () => {
  it('storage_handlers = STORAGE_DRIVERS, device_handlers = DEVICE_HANDLERS', () => {
    expect([...STORAGE_HANDLER_NAMES]).toEqual([...STORAGE_DRIVERS]);
    expect([...DEVICE_HANDLER_NAMES]).toEqual([...DEVICE_HANDLERS]);
  });
  it('every listed name is accepted by its parser, and an unlisted one refused', () => {
    for (const driver of STORAGE_HANDLER_NAMES) {
      expect(() => parseStorage({ driver, source: '/x', mount_point: '/run/kata-containers/x', fstype: 'ext4' })).not.toThrow(/unknown storage driver/);
    }
    expect(() => parseStorage({ driver: 'watchable-bind', mount_point: '/run/kata-containers/x' })).toThrow(/unknown storage driver/);
    for (const type of DEVICE_HANDLER_NAMES) expect(() => parseDevices([{ type, id: '02/01', vm_path: '/dev/vdb' }])).not.toThrow();
    expect(() => parseDevices([{ type: 'vfio', id: '02/01' }])).toThrow(/not supported \(supported: blk, mmioblk, scsi, nvdimm\)/);
  });
  it('the issue-4 RPCs are served by the container stack, not reported as planned', () => {
    for (const m of ['UpdateEphemeralMounts', 'RemoveStaleVirtiofsShareMounts', 'GetVolumeStats', 'ResizeVolume', 'AddSwap', 'AddSwapPath']) {
      expect(ISSUE3_METHODS).toContain(`grpc.AgentService/${m}`);
      expect(plannedFor(m)).toBeUndefined();
    }
  });
});
