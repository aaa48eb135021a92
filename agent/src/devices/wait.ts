// Waiting for hot-plugged block devices, the way Kata's agent does: a device the
// host announced (virtio-blk on a PCI path, a SCSI target:lun, a virtio-mmio or pmem
// name) may not be in the guest yet when the request arrives.
//
// Order, so that no event is lost between looking and waiting:
//   1. subscribe to uevents;
//   2. look in sysfs (and for the /dev node: sysfs shows a device a moment before
//      devtmpfs has created its node);
//   3. if absent, nudge the kernel once (PCI rescan / SCSI scan) and look again;
//   4. wait for the device's "add" uevent (subsystem block), re-checking sysfs on
//      every uevent and whenever the listener reports lost events;
//   5. DEADLINE_EXCEEDED after timeoutMs, CANCELLED when the caller's signal aborts.
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../log';
import { nullLogger } from '../log';
import { Code, RpcError } from '../rpc/status';
import {
  type BlockDevice,
  type PciPathInput,
  type SysfsWrite,
  blockDeviceName,
  devpathOf,
  formatPciPath,
  namedBlockDevice,
  parseScsiAddr,
  pciBlockDevice,
  pciDeviceDir,
  pciRescan,
  pmemBlockDevice,
  pmemName,
  scsiBlockDevice,
  scsiScan,
  writeSysfs,
} from './sysfs';
import type { Uevent, UeventSource } from './uevent';

/** A block device ready for use. */
export interface WaitedDevice {
  /** Kernel name: "vdb". */
  name: string;
  /** Its node under devRoot: "/dev/vdb". */
  path: string;
  major: number;
  minor: number;
}

export interface DeviceWaiterOptions {
  /** sysfs mount point ("/sys"). */
  sysRoot: string;
  /** devtmpfs mount point ("/dev"). */
  devRoot: string;
  listener: UeventSource;
  /** How long to wait for a device (agent.hotplug_timeout; Kata's default is 3 s). */
  timeoutMs: number;
  /** Writes to sysfs attributes (PCI rescan, SCSI scan); default: one write(2) to the existing file. */
  writeFile?: SysfsWrite;
  log?: Logger;
}

/** A uevent matcher that returns the kernel device name when the event is the device's "add". */
export type DeviceMatch = (ev: Uevent) => string | undefined;

const PCI_BDF_RE = /^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$/;

const isBlockAdd = (ev: Uevent): boolean =>
  ev.action === 'add' && ev.subsystem === 'block' && !!ev.devname && ev.devtype !== 'partition';

/** The last path segment after "/block/" when it is the event's DEVNAME (a whole disk, not a partition). */
function blockLeaf(ev: Uevent): string | undefined {
  const i = ev.devpath.lastIndexOf('/block/');
  if (i < 0) return undefined;
  const leaf = ev.devpath.slice(i + '/block/'.length);
  return leaf.length > 0 && !leaf.includes('/') && leaf === ev.devname ? leaf : undefined;
}

/**
 * The "add" of a whole disk below the device at DEVPATH `parentDevpath`
 * ("/devices/pci0000:00/0000:00:02.0/0000:01:01.0" matches ".../virtio4/block/vdb").
 */
export function blockUnderDevpath(parentDevpath: string): DeviceMatch {
  const prefix = parentDevpath.replace(/\/+$/, '') + '/';
  return (ev) => {
    if (!isBlockAdd(ev) || !ev.devpath.startsWith(prefix)) return undefined;
    const rest = ev.devpath.slice(prefix.length);
    // block/<disk>, <child>/block/<disk> or <child>/<child>/block/<disk>: the depth findBlockDevice searches.
    if (!/^(?:[^/]+\/){0,2}block\/[^/]+$/.test(rest)) return undefined;
    if (rest.split('/').some((seg) => PCI_BDF_RE.test(seg))) return undefined; // a device behind a bridge

    return blockLeaf(ev);
  };
}

/** The "add" of the disk on SCSI `addr` (channel 0, any host): ".../<h>:0:<t>:<l>/block/<disk>". */
export function scsiBlockMatch(addr: string): DeviceMatch {
  const a = parseScsiAddr(addr);
  const re = new RegExp(`/\\d+:0:${a.target}:${a.lun}/block/[^/]+$`);
  return (ev) => (isBlockAdd(ev) && re.test(ev.devpath) ? blockLeaf(ev) : undefined);
}

/** The "add" of the block device called `name` (DEVNAME and the devpath's last segment). */
export function namedBlockMatch(name: string): DeviceMatch {
  return (ev) => (isBlockAdd(ev) && blockLeaf(ev) === name ? name : undefined);
}

interface WaitSpec {
  /** For messages: "the block device at PCI path 02/01". */
  what: string;
  /** sysfs lookup; may throw RpcError NOT_FOUND while part of the path is missing. */
  probe: () => BlockDevice | undefined;
  match: DeviceMatch;
  /** Run once when the first look finds nothing (PCI rescan, SCSI scan). */
  trigger?: () => void;
}

export class DeviceWaiter {
  readonly sysRoot: string;
  readonly devRoot: string;
  readonly timeoutMs: number;
  private readonly listener: UeventSource;
  private readonly writeFile: SysfsWrite;
  private readonly log: Logger;

  constructor(opts: DeviceWaiterOptions) {
    this.sysRoot = opts.sysRoot;
    this.devRoot = opts.devRoot;
    this.listener = opts.listener;
    this.timeoutMs = opts.timeoutMs;
    this.writeFile = opts.writeFile ?? writeSysfs;
    this.log = opts.log ?? nullLogger();
  }

  /** virtio-blk at a PCI path ("02/01" or [2, 1]); rescans the PCI bus once if it is not there. */
  async pciBlock(pciPath: PciPathInput, signal?: AbortSignal): Promise<WaitedDevice> {
    const shown = formatPciPath(pciPath); // validates: INVALID_ARGUMENT (a rejection) before any waiting
    // The disk's add uevent lies below the PCI device's DEVPATH; resolving it needs every
    // bridge on the way, which may itself still be appearing: retried until it works.
    let matchUnder: DeviceMatch | undefined;
    const matcher = (): DeviceMatch | undefined => {
      if (!matchUnder) {
        try {
          matchUnder = blockUnderDevpath(devpathOf(this.sysRoot, pciDeviceDir(this.sysRoot, pciPath)));
        } catch {
          return undefined;
        }
      }
      return matchUnder;
    };
    return this.wait(
      {
        what: `the block device at PCI path ${shown}`,
        probe: () => pciBlockDevice(this.sysRoot, pciPath),
        match: (ev) => matcher()?.(ev),
        trigger: () => pciRescan(this.sysRoot, this.writeFile),
      },
      signal,
    );
  }

  /** A SCSI disk at "target:lun"; asks every SCSI host to scan for it once if it is not there. */
  async scsiBlock(addr: string, signal?: AbortSignal): Promise<WaitedDevice> {
    const match = scsiBlockMatch(addr); // validates
    return this.wait(
      {
        what: `the SCSI disk at ${addr}`,
        probe: () => scsiBlockDevice(this.sysRoot, addr),
        match,
        trigger: () => {
          scsiScan(this.sysRoot, addr, this.writeFile);
        },
      },
      signal,
    );
  }

  /** A virtio-mmio disk by name ("vda" or "/dev/vda"). */
  async mmioBlock(nameOrPath: string, signal?: AbortSignal): Promise<WaitedDevice> {
    const name = blockDeviceName(nameOrPath);
    return this.wait(
      {
        what: `the block device ${name}`,
        probe: () => namedBlockDevice(this.sysRoot, name),
        match: namedBlockMatch(name),
      },
      signal,
    );
  }

  /** A pmem (NVDIMM) disk by "/dev/pmemN". */
  async pmem(devPath: string, signal?: AbortSignal): Promise<WaitedDevice> {
    const name = pmemName(devPath);
    return this.wait(
      {
        what: `the pmem device ${devPath}`,
        probe: () => pmemBlockDevice(this.sysRoot, devPath),
        match: namedBlockMatch(name),
      },
      signal,
    );
  }

  // -------------------------------------------------------------------------

  private nodeExists(name: string): boolean {
    return fs.existsSync(path.join(this.devRoot, name));
  }

  private result(b: { name: string; major: number; minor: number }): WaitedDevice {
    return { name: b.name, path: path.join(this.devRoot, b.name), major: b.major, minor: b.minor };
  }

  private wait(spec: WaitSpec, signal?: AbortSignal): Promise<WaitedDevice> {
    const { what } = spec;
    const log = this.log.child({ device: what });
    return new Promise<WaitedDevice>((resolve, reject) => {
      if (signal?.aborted) {
        reject(new RpcError(Code.CANCELLED, `cancelled waiting for ${what}`));
        return;
      }
      let finished = false;
      let timer: NodeJS.Timeout | undefined;
      let lastReason: string | undefined;
      let unsubscribe: (() => void) | undefined;

      const finish = (err: Error | undefined, dev?: WaitedDevice): void => {
        if (finished) return;
        finished = true;
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        unsubscribe?.();
        if (err) reject(err);
        else resolve(dev!);
      };
      const onAbort = (): void => finish(new RpcError(Code.CANCELLED, `cancelled waiting for ${what}`));

      /** Look in sysfs; `needNode`: also require the devtmpfs node. True when finished. */
      const look = (needNode: boolean): boolean => {
        if (finished) return true;
        let b: BlockDevice | undefined;
        try {
          b = spec.probe();
        } catch (err) {
          if (err instanceof RpcError && err.code !== Code.NOT_FOUND) {
            finish(err);
            return true;
          }
          lastReason = err instanceof Error ? err.message : String(err);
          return false;
        }
        if (!b) return false;
        if (needNode && !this.nodeExists(b.name)) {
          lastReason = `${b.name} is in sysfs but ${path.join(this.devRoot, b.name)} does not exist yet`;
          return false;
        }
        log.debug({ name: b.name, major: b.major, minor: b.minor }, 'device found in sysfs');
        finish(undefined, this.result(b));
        return true;
      };

      const onEvent = (ev: Uevent): void => {
        if (finished) return;
        let name: string | undefined;
        try {
          name = spec.match(ev);
        } catch {
          name = undefined;
        }
        // The add uevent is sent after devtmpfs made the node: no need to look for it.
        if (look(name === undefined)) return;
        if (name !== undefined && ev.major !== undefined && ev.minor !== undefined) {
          log.debug({ name, devpath: ev.devpath }, 'device announced by uevent, not (yet) in sysfs');
          finish(undefined, this.result({ name, major: ev.major, minor: ev.minor }));
        }
      };

      unsubscribe = this.listener.subscribe(onEvent, () => {
        log.debug('uevents may have been lost: looking in sysfs again');
        look(true);
      });
      if (look(true)) return;

      if (spec.trigger) {
        try {
          spec.trigger();
        } catch (err) {
          log.warn({ err }, 'bus scan failed; waiting for the device anyway');
        }
        if (look(true)) return;
      }

      log.debug({ timeoutMs: this.timeoutMs }, 'waiting for the device');
      timer = setTimeout(() => {
        finish(
          new RpcError(
            Code.DEADLINE_EXCEEDED,
            `timed out after ${this.timeoutMs} ms waiting for ${what}${lastReason ? ` (${lastReason})` : ''}`,
          ),
        );
      }, this.timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}
