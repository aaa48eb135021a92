// Finding hot-plugged block devices in sysfs: PCI paths as Kata's runtime sends
// them, SCSI target:lun addresses, virtio-mmio and pmem device names. Every function
// takes the sysfs root ("/sys" in the guest) so tests run against fake trees.
//
// Nothing here waits: DeviceWaiter (wait.ts) combines these checks with uevents.
import fs from 'node:fs';
import path from 'node:path';
import { Code, RpcError } from '../rpc/status';

/** One element of a PCI path: slot (0x00-0x1f) and function (0-7) on its bus. */
export interface PciSlot {
  slot: number;
  fn: number;
}

/** The PCI path forms the host sends: "02/01" (Device.id, Storage.source) or [2, 1] (AddSwapRequest.PCIPath). */
export type PciPathInput = string | readonly number[];

/** A block device found in sysfs. */
export interface BlockDevice {
  /** Kernel name (what /dev/<name> is called): "vdb", "sdb", "pmem0". */
  name: string;
  /** Its sysfs directory (under the sysfs root given). */
  sysDir: string;
  major: number;
  minor: number;
}

/** Writes one value to an existing sysfs attribute. */
export type SysfsWrite = (file: string, data: string) => void;

export const PCI_PATH_MAX_DEPTH = 8;
const PCI_SLOT_MAX = 0x1f;
const PCI_FN_MAX = 7;
const PCI_ROOT_BUS = 'pci0000:00';
const PCI_ROOT_BUS_ADDR = '0000:00';

const BUS_RE = /^[0-9a-f]{4}:[0-9a-f]{2}$/;
const BDF_RE = /^([0-9a-f]{4}:[0-9a-f]{2}):[0-9a-f]{2}\.[0-7]$/;

// ---------------------------------------------------------------------------
// Small file helpers

/** One write(2) to an existing file: no O_CREAT (a missing attribute is ENOENT), no O_TRUNC games. */
export const writeSysfs: SysfsWrite = (file, data) => {
  const fd = fs.openSync(file, fs.constants.O_WRONLY);
  try {
    fs.writeSync(fd, data);
  } finally {
    fs.closeSync(fd);
  }
};

function listDir(dir: string): string[] {
  try {
    return fs.readdirSync(dir).sort();
  } catch {
    return [];
  }
}

function isDir(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------
// PCI paths

const hex2 = (n: number): string => n.toString(16).padStart(2, '0');

/**
 * Validate a PCI path: 1-8 elements, each a hex slot 00-1f with an optional ".F"
 * function (0-7), separated by "/"; or an array of slot numbers. INVALID_ARGUMENT otherwise.
 */
export function parsePciPath(input: PciPathInput): PciSlot[] {
  const bad = (why: string): RpcError =>
    new RpcError(Code.INVALID_ARGUMENT, `invalid PCI path ${JSON.stringify(input)}: ${why}`);
  let slots: PciSlot[];
  if (typeof input === 'string') {
    if (input.length === 0 || input.length > 64) throw bad('expected 1-8 slots such as "02/01"');
    slots = input.split('/').map((el) => {
      const m = /^([0-9a-fA-F]{1,2})(?:\.([0-7]))?$/.exec(el);
      if (!m) throw bad(`element "${el}" is not a hex slot (00-1f) with an optional .function`);
      const slot = parseInt(m[1]!, 16);
      if (slot > PCI_SLOT_MAX) throw bad(`slot ${el} is above 1f`);
      return { slot, fn: m[2] === undefined ? 0 : Number(m[2]) };
    });
  } else if (Array.isArray(input)) {
    slots = input.map((n) => {
      if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > PCI_SLOT_MAX) {
        throw bad(`slot ${String(n)} is not in 0-31`);
      }
      return { slot: n, fn: 0 };
    });
  } else {
    throw bad('not a string or an array of slots');
  }
  if (slots.length === 0 || slots.length > PCI_PATH_MAX_DEPTH) {
    throw bad(`expected 1-${PCI_PATH_MAX_DEPTH} elements, got ${slots.length}`);
  }
  for (const s of slots) if (s.fn > PCI_FN_MAX) throw bad('function above 7');
  return slots;
}

/** "02/01" (functions other than 0 as "02.1"). */
export function formatPciPath(input: PciPathInput): string {
  return parsePciPath(input)
    .map((s) => (s.fn ? `${hex2(s.slot)}.${s.fn}` : hex2(s.slot)))
    .join('/');
}

/** The sysfs directory of the root bus 0000:00: /devices/pci0000:00 (ACPI) or /devices/platform/<host>/pci0000:00 (DT). */
export function pciRootBusDir(sysRoot: string): string {
  const devices = path.join(sysRoot, 'devices');
  const acpi = path.join(devices, PCI_ROOT_BUS);
  if (isDir(acpi)) return acpi;
  for (const host of listDir(path.join(devices, 'platform'))) {
    const p = path.join(devices, 'platform', host, PCI_ROOT_BUS);
    if (isDir(p)) return p;
  }
  return acpi;
}

/** The bus ("0000:01") behind the bridge at `bridgeDir`: its pci_bus/ entry, else its child devices' bus. */
export function bridgeSecondaryBus(bridgeDir: string): string {
  const pciBus = path.join(bridgeDir, 'pci_bus');
  if (isDir(pciBus)) {
    const buses = listDir(pciBus).filter((n) => BUS_RE.test(n));
    if (buses.length === 1) return buses[0]!;
    throw new RpcError(
      buses.length === 0 ? Code.NOT_FOUND : Code.FAILED_PRECONDITION,
      `expected one bus in ${pciBus}, found ${buses.length ? buses.join(', ') : 'none'}`,
    );
  }
  if (!isDir(bridgeDir)) throw new RpcError(Code.NOT_FOUND, `PCI bridge ${bridgeDir} does not exist`);
  const buses = new Set<string>();
  for (const n of listDir(bridgeDir)) {
    const m = BDF_RE.exec(n);
    if (m && isDir(path.join(bridgeDir, n))) buses.add(m[1]!);
  }
  if (buses.size === 1) return [...buses][0]!;
  throw new RpcError(
    buses.size === 0 ? Code.NOT_FOUND : Code.FAILED_PRECONDITION,
    `cannot tell the bus behind PCI bridge ${bridgeDir}: no pci_bus/ and ${buses.size} child buses`,
  );
}

/**
 * The sysfs directory of the device at `pciPath` ("02/01": slot 02 on the root bus,
 * then slot 01 on the bus behind that bridge), e.g.
 * <sys>/devices/pci0000:00/0000:00:02.0/0000:01:01.0. The last device need not
 * exist yet; every bridge on the way must (NOT_FOUND otherwise). Bad paths are
 * INVALID_ARGUMENT.
 */
export function pciDeviceDir(sysRoot: string, pciPath: PciPathInput): string {
  const slots = parsePciPath(pciPath);
  let dir = pciRootBusDir(sysRoot);
  let bus = PCI_ROOT_BUS_ADDR;
  slots.forEach((s, i) => {
    dir = path.join(dir, `${bus}:${hex2(s.slot)}.${s.fn}`);
    if (i < slots.length - 1) bus = bridgeSecondaryBus(dir);
  });
  return dir;
}

/** The kernel's DEVPATH for a directory under the sysfs root ("/devices/..."). */
export function devpathOf(sysRoot: string, dir: string): string {
  const rel = path.relative(path.resolve(sysRoot), path.resolve(dir));
  return '/' + rel.split(path.sep).join('/');
}

// ---------------------------------------------------------------------------
// Block devices

const BLOCK_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._+:-]{0,63}$/;

/** {major, minor} from a block device's sysfs `dev` file ("254:16"); undefined when it is gone. */
export function readDevNumbers(blockDir: string): { major: number; minor: number } | undefined {
  let s: string;
  try {
    s = fs.readFileSync(path.join(blockDir, 'dev'), 'utf8');
  } catch {
    return undefined;
  }
  const m = /^(\d{1,10}):(\d{1,10})\s*$/.exec(s);
  if (!m) throw new RpcError(Code.INTERNAL, `unexpected content ${JSON.stringify(s.slice(0, 40))} in ${blockDir}/dev`);
  return { major: Number(m[1]), minor: Number(m[2]) };
}

function blockDevice(blockDir: string, name: string): BlockDevice | undefined {
  const nums = readDevNumbers(blockDir);
  return nums ? { name, sysDir: blockDir, ...nums } : undefined;
}

/**
 * The whole-disk block device below a device directory, e.g. <pci dev>/virtio4/block/vdb
 * -> vdb. Walks real directories only (sysfs links such as subsystem/ and driver/ lead
 * back up the tree), reading at most `maxDepth` levels (the device dir and its children:
 * <dev>/block, <dev>/x/block, <dev>/x/y/block), and never into a child PCI device
 * ("0000:01:00.0": behind a bridge, that is another PCI path).
 */
export function findBlockDevice(deviceDir: string, maxDepth = 3): BlockDevice | undefined {
  let level = [deviceDir];
  let visited = 0;
  for (let depth = 0; depth < maxDepth && level.length > 0; depth++) {
    const next: string[] = [];
    for (const dir of level) {
      let entries: fs.Dirent[];
      try {
        entries = fs.readdirSync(dir, { withFileTypes: true });
      } catch {
        continue;
      }
      entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      for (const e of entries) {
        if (!e.isDirectory()) continue; // symlinks and attributes
        const p = path.join(dir, e.name);
        if (e.name === 'block') {
          for (const name of listDir(p)) {
            if (!BLOCK_NAME_RE.test(name)) continue;
            const dev = blockDevice(path.join(p, name), name);
            if (dev) return dev;
          }
          continue;
        }
        if (BDF_RE.test(e.name)) continue;
        if (++visited > 512) return undefined;
        next.push(p);
      }
    }
    level = next;
  }
  return undefined;
}

/** The block device of the PCI device at `pciPath`, if it is there yet. */
export function pciBlockDevice(sysRoot: string, pciPath: PciPathInput): BlockDevice | undefined {
  return findBlockDevice(pciDeviceDir(sysRoot, pciPath));
}

/** Ask the kernel to rescan every PCI bus (devices hot-plugged without a notification appear). */
export function pciRescan(sysRoot: string, write: SysfsWrite = writeSysfs): void {
  write(path.join(sysRoot, 'bus', 'pci', 'rescan'), '1');
}

/** "vda" or "/dev/vda" -> "vda"; INVALID_ARGUMENT for anything else. */
export function blockDeviceName(nameOrPath: string): string {
  const name = typeof nameOrPath === 'string' && nameOrPath.startsWith('/dev/') ? nameOrPath.slice(5) : nameOrPath;
  if (typeof name !== 'string' || !BLOCK_NAME_RE.test(name) || name === '.' || name === '..') {
    throw new RpcError(Code.INVALID_ARGUMENT, `invalid block device name ${JSON.stringify(nameOrPath)}`);
  }
  return name;
}

/** A block device by kernel name (virtio-mmio "vda", or "/dev/vda"): <sys>/class/block/<name>. */
export function namedBlockDevice(sysRoot: string, nameOrPath: string): BlockDevice | undefined {
  const name = blockDeviceName(nameOrPath);
  return blockDevice(path.join(sysRoot, 'class', 'block', name), name);
}

/** "/dev/pmem0" -> "pmem0" (also "pmem0s", "pmem0.1"); INVALID_ARGUMENT otherwise. */
export function pmemName(devPath: string): string {
  const m = typeof devPath === 'string' ? /^\/dev\/(pmem\d{1,6}(?:\.\d{1,6})?s?)$/.exec(devPath) : null;
  if (!m) throw new RpcError(Code.INVALID_ARGUMENT, `invalid pmem device ${JSON.stringify(devPath)}: expected /dev/pmemN`);
  return m[1]!;
}

/** The pmem block device for "/dev/pmemN": <sys>/class/block/pmemN. */
export function pmemBlockDevice(sysRoot: string, devPath: string): BlockDevice | undefined {
  const name = pmemName(devPath);
  return blockDevice(path.join(sysRoot, 'class', 'block', name), name);
}

// ---------------------------------------------------------------------------
// SCSI

export interface ScsiAddr {
  target: number;
  lun: number;
}

/** "0:1" (SCSI id and LUN, as Kata sends them) -> {target: 0, lun: 1}; INVALID_ARGUMENT otherwise. */
export function parseScsiAddr(addr: string): ScsiAddr {
  const m = typeof addr === 'string' ? /^(\d{1,5}):(\d{1,10})$/.exec(addr) : null;
  const target = m ? Number(m[1]) : NaN;
  const lun = m ? Number(m[2]) : NaN;
  if (!m || target > 0xffff || lun > 0xffffffff) {
    throw new RpcError(Code.INVALID_ARGUMENT, `invalid SCSI address ${JSON.stringify(addr)}: expected TARGET:LUN such as "0:1"`);
  }
  return { target, lun };
}

/** Names of /sys/bus/scsi/devices entries for channel 0, `addr` on any host ("0:0:0:1"), host order. */
function scsiDeviceNames(sysRoot: string, a: ScsiAddr): string[] {
  const suffix = `:0:${a.target}:${a.lun}`;
  return listDir(path.join(sysRoot, 'bus', 'scsi', 'devices'))
    .filter((n) => n.endsWith(suffix) && /^\d+$/.test(n.slice(0, n.length - suffix.length)))
    .sort((x, y) => parseInt(x, 10) - parseInt(y, 10));
}

/** The block device of SCSI `addr` ("target:lun", channel 0, any host): .../<h>:0:<t>:<l>/block/<name>. */
export function scsiBlockDevice(sysRoot: string, addr: string): BlockDevice | undefined {
  const a = parseScsiAddr(addr);
  for (const dev of scsiDeviceNames(sysRoot, a)) {
    const blockDir = path.join(sysRoot, 'bus', 'scsi', 'devices', dev, 'block');
    for (const name of listDir(blockDir)) {
      if (!BLOCK_NAME_RE.test(name)) continue;
      const b = blockDevice(path.join(blockDir, name), name);
      if (b) return b;
    }
  }
  return undefined;
}

/**
 * Ask every SCSI host to scan channel 0, `addr`'s target and LUN: writes "0 <target> <lun>"
 * to <sys>/class/scsi_host/host* /scan. Returns the hosts written. NOT_FOUND when there is
 * no SCSI host; the first write error when every write failed.
 */
export function scsiScan(sysRoot: string, addr: string, write: SysfsWrite = writeSysfs): string[] {
  const a = parseScsiAddr(addr);
  const hostsDir = path.join(sysRoot, 'class', 'scsi_host');
  const hosts = listDir(hostsDir).filter((n) => /^host\d+$/.test(n));
  if (hosts.length === 0) throw new RpcError(Code.NOT_FOUND, `no SCSI host in ${hostsDir}`);
  const done: string[] = [];
  let firstErr: unknown;
  for (const h of hosts) {
    try {
      write(path.join(hostsDir, h, 'scan'), `0 ${a.target} ${a.lun}`);
      done.push(h);
    } catch (err) {
      firstErr ??= err;
    }
  }
  if (done.length === 0) throw firstErr;
  return done;
}
