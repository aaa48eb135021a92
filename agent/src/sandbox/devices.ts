// CreateContainer's devices (Kata's `Device` entries): wait for each hot-plugged block device
// in the guest, then give the container the guest's device numbers (the host's spec names the
// host's). As Kata's agent: "blk" = virtio-blk by PCI path in `id` ("02/01"), "mmioblk" =
// virtio-mmio by guest path in `vm_path`, "scsi" = "target:lun" in `id`, "nvdimm" = /dev/pmemN
// in `vm_path`. An empty container_path only waits (a block device that carries the rootfs and
// is mounted through a storage, not passed into the container).
import type { WaitedDevice } from '../devices/wait';
import { updateSpecDevices, type DeviceChange } from '../devices/spec';
import { Code, RpcError } from '../rpc/status';
import type { OciSpec } from '../runtime/spec';

/** The Device.type values served, in GetGuestDetails' order. */
export const DEVICE_HANDLERS = ['blk', 'mmioblk', 'scsi', 'nvdimm'] as const;
export type DeviceType = (typeof DEVICE_HANDLERS)[number];

/** What the sandbox needs from the device layer (DeviceWaiter). */
export interface DeviceResolver {
  pciBlock(pciPath: string, signal?: AbortSignal): Promise<WaitedDevice>;
  scsiBlock(addr: string, signal?: AbortSignal): Promise<WaitedDevice>;
  mmioBlock(nameOrPath: string, signal?: AbortSignal): Promise<WaitedDevice>;
  pmem(devPath: string, signal?: AbortSignal): Promise<WaitedDevice>;
}

export interface DeviceInput {
  id: string;
  type: DeviceType;
  vmPath: string;
  containerPath: string;
  options: string[];
}

const str = (v: unknown, what: string): string => {
  if (v === undefined || v === null) return '';
  if (typeof v !== 'string') throw new RpcError(Code.INVALID_ARGUMENT, `${what} must be a string`);
  if (v.includes('\0')) throw new RpcError(Code.INVALID_ARGUMENT, `${what} contains a NUL byte`);
  return v;
};

/** Validate the decoded Device messages; INVALID_ARGUMENT names the entry and field. */
export function parseDevices(list: readonly unknown[], what = 'CreateContainer'): DeviceInput[] {
  return list.map((raw, i) => {
    const at = `${what}: devices[${i}]`;
    if (raw === null || typeof raw !== 'object') throw new RpcError(Code.INVALID_ARGUMENT, `${at} is not a Device`);
    const o = raw as Record<string, unknown>;
    const type = str(o.type, `${at}.type`);
    if (!(DEVICE_HANDLERS as readonly string[]).includes(type)) {
      throw new RpcError(Code.INVALID_ARGUMENT, `${at}.type ${JSON.stringify(type)} is not supported (supported: ${DEVICE_HANDLERS.join(', ')})`);
    }
    const d: DeviceInput = {
      id: str(o.id, `${at}.id`),
      type: type as DeviceType,
      vmPath: str(o.vm_path, `${at}.vm_path`),
      containerPath: str(o.container_path, `${at}.container_path`),
      options: Array.isArray(o.options) ? o.options.map((x, k) => str(x, `${at}.options[${k}]`)) : [],
    };
    const need = d.type === 'blk' || d.type === 'scsi' ? 'id' : 'vmPath';
    if (d[need] === '') throw new RpcError(Code.INVALID_ARGUMENT, `${at}: a ${d.type} device needs ${need === 'id' ? 'id' : 'vm_path'}`);
    if (d.containerPath !== '' && !d.containerPath.startsWith('/')) {
      throw new RpcError(Code.INVALID_ARGUMENT, `${at}.container_path ${JSON.stringify(d.containerPath)} is not absolute`);
    }
    return d;
  });
}

export interface ResolvedDevice {
  device: DeviceInput;
  guest: WaitedDevice;
}

/** Wait for every device (in order; the first failure stops and is returned as is). */
export async function resolveDevices(devices: readonly DeviceInput[], r: DeviceResolver, signal?: AbortSignal): Promise<ResolvedDevice[]> {
  const out: ResolvedDevice[] = [];
  for (const d of devices) {
    let guest: WaitedDevice;
    switch (d.type) {
      case 'blk':
        guest = await r.pciBlock(d.id, signal);
        break;
      case 'scsi':
        guest = await r.scsiBlock(d.id, signal);
        break;
      case 'mmioblk':
        guest = await r.mmioBlock(d.vmPath, signal);
        break;
      case 'nvdimm':
        guest = await r.pmem(d.vmPath, signal);
        break;
    }
    out.push({ device: d, guest });
  }
  return out;
}

/** Give the spec's devices (and their cgroup rules) the guest's numbers. */
export function applyDevices(spec: OciSpec, resolved: readonly ResolvedDevice[]): DeviceChange[] {
  const updates = resolved
    .filter((r) => r.device.containerPath !== '')
    .map((r) => ({ containerPath: r.device.containerPath, major: r.guest.major, minor: r.guest.minor }));
  return updates.length > 0 ? updateSpecDevices(spec, updates) : [];
}
