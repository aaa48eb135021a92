// devices/sysfs.ts against the fake guest sysfs in test/fixtures/sysfs/guest:
// PCI path parsing and resolution through bridges, block device discovery, SCSI
// lookup and scan, mmio and pmem names, and the bus rescan write.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import {
  blockDeviceName,
  bridgeSecondaryBus,
  devpathOf,
  findBlockDevice,
  formatPciPath,
  namedBlockDevice,
  parsePciPath,
  parseScsiAddr,
  pciBlockDevice,
  pciDeviceDir,
  pciRescan,
  pciRootBusDir,
  pmemBlockDevice,
  pmemName,
  readDevNumbers,
  scsiBlockDevice,
  scsiScan,
  writeSysfs,
} from '../../agent/src/devices/sysfs';
import { Code } from '../../agent/src/rpc/status';

const SYS = fileURLToPath(new URL('../fixtures/sysfs/guest', import.meta.url));
const PCI = path.join(SYS, 'devices/pci0000:00');

const temps: string[] = [];
afterEach(() => {
  for (const d of temps.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});
/** A writable copy of the fixture tree (symlinks kept relative). */
function copyTree(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-sysfs-'));
  temps.push(d);
  fs.cpSync(SYS, d, { recursive: true, verbatimSymlinks: true });
  return d;
}

function codeOf(f: () => unknown): number | undefined {
  try {
    f();
  } catch (err) {
    return (err as { code?: number }).code;
  }
  return undefined;
}

describe('PCI paths', () => {
  it('parses Kata forms: "02/01", single slots, .function, and the uint32 array of AddSwapRequest', () => {
    expect(parsePciPath('02/01')).toEqual([
      { slot: 2, fn: 0 },
      { slot: 1, fn: 0 },
    ]);
    expect(parsePciPath('1f')).toEqual([{ slot: 0x1f, fn: 0 }]);
    expect(parsePciPath('0a.3/1')).toEqual([
      { slot: 10, fn: 3 },
      { slot: 1, fn: 0 },
    ]);
    expect(parsePciPath([2, 1])).toEqual(parsePciPath('02/01'));
    expect(parsePciPath('01/02/03/04/05/06/07/08')).toHaveLength(8);
    expect(formatPciPath([2, 31])).toBe('02/1f');
    expect(formatPciPath('A.1/b')).toBe('0a.1/0b');
  });

  it('rejects bad paths with INVALID_ARGUMENT', () => {
    const bad: unknown[] = [
      '',
      '20',
      '02/',
      '/02',
      '02//01',
      'xy',
      '02.8',
      '002',
      '02/01/03/04/05/06/07/08/09',
      ' 02',
      '02 ',
      [],
      [32],
      [-1],
      [1.5],
      ['02'],
      [1, 2, 3, 4, 5, 6, 7, 8, 9],
      42,
      null,
    ];
    for (const b of bad) {
      expect(codeOf(() => parsePciPath(b as string)), JSON.stringify(b)).toBe(Code.INVALID_ARGUMENT);
    }
    expect(() => parsePciPath('02/zz')).toThrow(/02\/zz/);
  });

  it('resolves a device behind a bridge through the bridge pci_bus/ listing', () => {
    expect(pciDeviceDir(SYS, '02/01')).toBe(path.join(PCI, '0000:00:02.0/0000:01:01.0'));
    expect(pciDeviceDir(SYS, [2, 1])).toBe(path.join(PCI, '0000:00:02.0/0000:01:01.0'));
    expect(devpathOf(SYS, pciDeviceDir(SYS, '02/01'))).toBe('/devices/pci0000:00/0000:00:02.0/0000:01:01.0');
  });

  it('resolves a root-bus device, and a bridge without pci_bus/ from its children', () => {
    expect(pciDeviceDir(SYS, '03')).toBe(path.join(PCI, '0000:00:03.0'));
    expect(bridgeSecondaryBus(path.join(PCI, '0000:00:05.0'))).toBe('0000:02');
    expect(pciDeviceDir(SYS, '05/00')).toBe(path.join(PCI, '0000:00:05.0/0000:02:00.0'));
  });

  it('the last device may be absent; a missing bridge is NOT_FOUND', () => {
    expect(pciDeviceDir(SYS, '06/07')).toBe(path.join(PCI, '0000:00:06.0/0000:03:07.0'));
    expect(pciBlockDevice(SYS, '06/07')).toBeUndefined();
    expect(codeOf(() => pciDeviceDir(SYS, '09/01'))).toBe(Code.NOT_FOUND);
    // 03 is an endpoint, not a bridge: nothing behind it.
    expect(codeOf(() => pciDeviceDir(SYS, '03/01'))).toBe(Code.NOT_FOUND);
  });

  it('a bridge listing two buses is ambiguous (FAILED_PRECONDITION)', () => {
    const sys = copyTree();
    fs.mkdirSync(path.join(sys, 'devices/pci0000:00/0000:00:02.0/pci_bus/0000:09'));
    expect(codeOf(() => pciDeviceDir(sys, '02/01'))).toBe(Code.FAILED_PRECONDITION);
  });

  it('finds the root bus under devices/platform/<host>/ when there is no ACPI root (arm64)', () => {
    const sys = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-sysfs-'));
    temps.push(sys);
    const root = path.join(sys, 'devices/platform/4010000000.pcie/pci0000:00');
    fs.mkdirSync(path.join(root, '0000:00:01.0/virtio0/block/vda'), { recursive: true });
    fs.writeFileSync(path.join(root, '0000:00:01.0/virtio0/block/vda/dev'), '254:0\n');
    expect(pciRootBusDir(sys)).toBe(root);
    expect(pciBlockDevice(sys, '01')).toMatchObject({ name: 'vda', major: 254, minor: 0 });
  });

  it('finds the whole disk below a PCI device, with numbers from its dev file', () => {
    expect(pciBlockDevice(SYS, '02/01')).toEqual({
      name: 'vdb',
      sysDir: path.join(PCI, '0000:00:02.0/0000:01:01.0/virtio4/block/vdb'),
      major: 254,
      minor: 16,
    });
    expect(pciBlockDevice(SYS, '03')).toMatchObject({ name: 'vdc', major: 254, minor: 32 });
    expect(pciBlockDevice(SYS, '05/00')).toMatchObject({ name: 'vdd', major: 254, minor: 48 });
  });

  it('the block search is bounded and does not follow links', () => {
    // "02" is the bridge: the disk behind it belongs to PCI path 02/01, not to 02.
    expect(findBlockDevice(path.join(PCI, '0000:00:02.0'), 8)).toBeUndefined();
    expect(findBlockDevice(path.join(PCI, '0000:00:02.0/0000:01:01.0'), 1)).toBeUndefined();
    expect(findBlockDevice(path.join(PCI, '0000:00:02.0/0000:01:01.0'), 2)).toMatchObject({ name: 'vdb' });
    // The SCSI disk hangs 5 levels below its PCI function: out of reach by default.
    expect(findBlockDevice(path.join(PCI, '0000:00:04.0'))).toBeUndefined();
    expect(findBlockDevice(path.join(PCI, '0000:00:04.0'), 6)).toMatchObject({ name: 'sdb' });
    const sys = copyTree();
    const dev = path.join(sys, 'devices/pci0000:00/0000:00:03.0');
    fs.rmSync(path.join(dev, 'virtio1'), { recursive: true });
    // A link to a directory holding a disk is not followed.
    fs.symlinkSync('../0000:00:02.0/0000:01:01.0/virtio4', path.join(dev, 'virtio9'));
    expect(findBlockDevice(dev)).toBeUndefined();
  });

  it('a block dir without its dev file yet is not a device', () => {
    const sys = copyTree();
    fs.rmSync(path.join(sys, 'devices/pci0000:00/0000:00:03.0/virtio1/block/vdc/dev'));
    expect(pciBlockDevice(sys, '03')).toBeUndefined();
  });

  it('rescan writes "1" to bus/pci/rescan', () => {
    const writes: [string, string][] = [];
    pciRescan(SYS, (f, d) => writes.push([f, d]));
    expect(writes).toEqual([[path.join(SYS, 'bus/pci/rescan'), '1']]);
    const sys = copyTree();
    pciRescan(sys);
    expect(fs.readFileSync(path.join(sys, 'bus/pci/rescan'), 'utf8')).toBe('1');
  });
});

describe('device numbers', () => {
  it('reads major:minor; missing is undefined, garbage is INTERNAL', () => {
    const sys = copyTree();
    const dir = path.join(sys, 'devices/pci0000:00/0000:00:03.0/virtio1/block/vdc');
    expect(readDevNumbers(dir)).toEqual({ major: 254, minor: 32 });
    expect(readDevNumbers(path.join(sys, 'nope'))).toBeUndefined();
    fs.writeFileSync(path.join(dir, 'dev'), 'two fifty four\n');
    expect(codeOf(() => readDevNumbers(dir))).toBe(Code.INTERNAL);
  });
});

describe('SCSI', () => {
  it('parses target:lun', () => {
    expect(parseScsiAddr('0:1')).toEqual({ target: 0, lun: 1 });
    expect(parseScsiAddr('2:0')).toEqual({ target: 2, lun: 0 });
    for (const bad of ['', '0', '0:1:2', 'a:b', '-1:0', '0:', ':1', '70000:0', '0:1 ']) {
      expect(codeOf(() => parseScsiAddr(bad)), bad).toBe(Code.INVALID_ARGUMENT);
    }
  });

  it('finds the disk of host*:0:target:lun', () => {
    expect(scsiBlockDevice(SYS, '0:1')).toMatchObject({ name: 'sdb', major: 8, minor: 16 });
    expect(scsiBlockDevice(SYS, '0:2')).toBeUndefined();
    expect(scsiBlockDevice(SYS, '1:0')).toBeUndefined();
  });

  it('finds the disk on another host number too', () => {
    const sys = copyTree();
    const devs = path.join(sys, 'bus/scsi/devices');
    fs.renameSync(path.join(devs, '0:0:0:1'), path.join(devs, '3:0:0:1'));
    expect(scsiBlockDevice(sys, '0:1')).toMatchObject({ name: 'sdb' });
    // Channel 1 is not ours.
    fs.renameSync(path.join(devs, '3:0:0:1'), path.join(devs, '3:1:0:1'));
    expect(scsiBlockDevice(sys, '0:1')).toBeUndefined();
  });

  it('scan writes "0 <target> <lun>" to every host*/scan', () => {
    const sys = copyTree();
    fs.mkdirSync(path.join(sys, 'class/scsi_host/host1'));
    fs.writeFileSync(path.join(sys, 'class/scsi_host/host1/scan'), '');
    expect(scsiScan(sys, '2:5')).toEqual(['host0', 'host1']);
    expect(fs.readFileSync(path.join(sys, 'class/scsi_host/host0/scan'), 'utf8')).toBe('0 2 5');
    expect(fs.readFileSync(path.join(sys, 'class/scsi_host/host1/scan'), 'utf8')).toBe('0 2 5');
  });

  it('scan: no host is NOT_FOUND; one failing host does not stop the others; all failing throws', () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-sysfs-'));
    temps.push(empty);
    expect(codeOf(() => scsiScan(empty, '0:1'))).toBe(Code.NOT_FOUND);
    const sys = copyTree();
    fs.mkdirSync(path.join(sys, 'class/scsi_host/host1')); // no scan file: ENOENT (no O_CREAT)
    expect(scsiScan(sys, '0:1')).toEqual(['host0']);
    expect(fs.existsSync(path.join(sys, 'class/scsi_host/host1/scan'))).toBe(false);
    expect(() =>
      scsiScan(sys, '0:1', () => {
        throw Object.assign(new Error('EACCES'), { code: 'EACCES' });
      }),
    ).toThrow(/EACCES/);
  });
});

describe('mmio and pmem names', () => {
  it('vda and /dev/vda resolve through class/block', () => {
    expect(blockDeviceName('vda')).toBe('vda');
    expect(blockDeviceName('/dev/vda')).toBe('vda');
    expect(namedBlockDevice(SYS, '/dev/vda')).toMatchObject({ name: 'vda', major: 254, minor: 0 });
    expect(namedBlockDevice(SYS, 'vdb1')).toMatchObject({ name: 'vdb1', major: 254, minor: 17 });
    expect(namedBlockDevice(SYS, 'vdz')).toBeUndefined();
    for (const bad of ['', '/dev/', '..', '/dev/..', '/dev/a/b', 'a/b', '/vda', '/dev/disk/by-id/x', '-x']) {
      expect(codeOf(() => blockDeviceName(bad)), bad).toBe(Code.INVALID_ARGUMENT);
    }
  });

  it('pmem by /dev/pmemN', () => {
    expect(pmemName('/dev/pmem0')).toBe('pmem0');
    expect(pmemName('/dev/pmem1.2s')).toBe('pmem1.2s');
    expect(pmemBlockDevice(SYS, '/dev/pmem0')).toMatchObject({ name: 'pmem0', major: 259, minor: 0 });
    expect(pmemBlockDevice(SYS, '/dev/pmem1')).toBeUndefined();
    for (const bad of ['pmem0', '/dev/vda', '/dev/pmem', '/dev/pmem0/x', '/dev/../pmem0']) {
      expect(codeOf(() => pmemName(bad)), bad).toBe(Code.INVALID_ARGUMENT);
    }
  });
});

describe('writeSysfs', () => {
  it('writes an existing file once and never creates one', () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-sysfs-'));
    temps.push(d);
    fs.writeFileSync(path.join(d, 'attr'), '');
    writeSysfs(path.join(d, 'attr'), '1');
    expect(fs.readFileSync(path.join(d, 'attr'), 'utf8')).toBe('1');
    expect(() => writeSysfs(path.join(d, 'missing'), '1')).toThrow(/ENOENT/);
    expect(fs.existsSync(path.join(d, 'missing'))).toBe(false);
  });
});
