// devices/wait.ts: DeviceWaiter over a copy of the fake guest sysfs and a fake
// uevent source. The test plays the kernel: it writes the device into sysfs and
// /dev, then emits the uevent.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import type { Uevent, UeventSource } from '../../agent/src/devices/uevent';
import { DeviceWaiter, blockUnderDevpath, namedBlockMatch, scsiBlockMatch } from '../../agent/src/devices/wait';
import { Code, RpcError } from '../../agent/src/rpc/status';

const FIXTURE = fileURLToPath(new URL('../fixtures/sysfs/guest', import.meta.url));

class FakeSource implements UeventSource {
  readonly subs = new Set<{ onEvent: (ev: Uevent) => void; onLost?: () => void }>();
  subscribe(onEvent: (ev: Uevent) => void, onLost?: () => void): () => void {
    const s = { onEvent, onLost };
    this.subs.add(s);
    return () => this.subs.delete(s);
  }
  emit(ev: Uevent): void {
    for (const s of [...this.subs]) s.onEvent(ev);
  }
  lost(): void {
    for (const s of [...this.subs]) s.onLost?.();
  }
}

function blockEvent(action: string, devpath: string, devname: string, major?: number, minor?: number, devtype = 'disk'): Uevent {
  const env: Record<string, string> = { ACTION: action, DEVPATH: devpath, SUBSYSTEM: 'block', DEVNAME: devname, DEVTYPE: devtype };
  const ev: Uevent = { action, devpath, subsystem: 'block', devname, devtype, env };
  if (major !== undefined && minor !== undefined) Object.assign(ev, { major, minor });
  return ev;
}

const temps: string[] = [];
afterEach(() => {
  for (const d of temps.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

interface Env {
  sys: string;
  dev: string;
  source: FakeSource;
  writes: [string, string][];
  waiter: DeviceWaiter;
  /** Play the kernel: create <sys>/<devpath>/dev and (unless told not to) the /dev node. */
  plug(devpath: string, numbers: string, opts?: { node?: boolean }): void;
  node(name: string): void;
}

function setup(timeoutMs = 5000): Env {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-devwait-'));
  temps.push(root);
  const sys = path.join(root, 'sys');
  const dev = path.join(root, 'dev');
  fs.cpSync(FIXTURE, sys, { recursive: true, verbatimSymlinks: true });
  fs.mkdirSync(dev);
  const source = new FakeSource();
  const writes: [string, string][] = [];
  const waiter = new DeviceWaiter({
    sysRoot: sys,
    devRoot: dev,
    listener: source,
    timeoutMs,
    writeFile: (f, d) => writes.push([path.relative(sys, f), d]),
  });
  const node = (name: string): void => fs.writeFileSync(path.join(dev, name), '');
  const plug = (devpath: string, numbers: string, opts: { node?: boolean } = {}): void => {
    fs.mkdirSync(path.join(sys, devpath), { recursive: true });
    fs.writeFileSync(path.join(sys, devpath, 'dev'), numbers + '\n');
    if (opts.node !== false) node(path.basename(devpath));
  };
  return { sys, dev, source, writes, waiter, plug, node };
}

/** Settle state: has `p` resolved/rejected yet? */
async function state<T>(p: Promise<T>): Promise<'pending' | 'resolved' | 'rejected'> {
  const marker = Symbol('pending');
  try {
    const r = await Promise.race([p, new Promise((res) => setImmediate(() => res(marker)))]);
    return r === marker ? 'pending' : 'resolved';
  } catch {
    return 'rejected';
  }
}

const NEW_PARENT = '/devices/pci0000:00/0000:00:06.0/0000:03:07.0';

describe('DeviceWaiter.pciBlock', () => {
  it('returns a device that is already there without rescanning or waiting', async () => {
    const e = setup();
    e.node('vdb');
    const d = await e.waiter.pciBlock('02/01');
    expect(d).toEqual({ name: 'vdb', path: path.join(e.dev, 'vdb'), major: 254, minor: 16 });
    expect(e.writes).toEqual([]);
    expect(e.source.subs.size).toBe(0);
    e.node('vdc');
    expect(await e.waiter.pciBlock([3])).toMatchObject({ name: 'vdc', major: 254, minor: 32 });
  });

  it('rescans once, then takes the device when its add uevent arrives', async () => {
    const e = setup();
    const p = e.waiter.pciBlock('06/07');
    expect(e.writes).toEqual([[path.join('bus', 'pci', 'rescan'), '1']]);
    expect(e.source.subs.size).toBe(1);
    // Unrelated traffic: still waiting, no second rescan.
    e.source.emit(blockEvent('add', '/devices/virtual/block/zram1', 'zram1', 253, 1));
    e.source.emit(blockEvent('add', '/devices/pci0000:00/0000:00:06.0/0000:03:08.0/virtio9/block/vdf', 'vdf', 254, 80));
    expect(await state(p)).toBe('pending');
    // The kernel: sysfs + devtmpfs first, then the uevent.
    e.plug(`${NEW_PARENT}/virtio8/block/vde`, '254:64');
    e.source.emit(blockEvent('add', `${NEW_PARENT}/virtio8/block/vde`, 'vde', 254, 64));
    expect(await p).toEqual({ name: 'vde', path: path.join(e.dev, 'vde'), major: 254, minor: 64 });
    expect(e.writes).toHaveLength(1);
    expect(e.source.subs.size).toBe(0);
  });

  it('re-checks sysfs on any uevent: a device that shows up without its own event is found', async () => {
    const e = setup();
    const p = e.waiter.pciBlock('06/07');
    e.plug(`${NEW_PARENT}/virtio8/block/vde`, '254:64');
    expect(await state(p)).toBe('pending');
    e.source.emit(blockEvent('change', '/devices/virtual/block/loop0', 'loop0', 7, 0));
    expect(await p).toMatchObject({ name: 'vde', major: 254, minor: 64 });
  });

  it('re-checks sysfs when the listener reports lost events', async () => {
    const e = setup();
    const p = e.waiter.pciBlock('06/07');
    e.plug(`${NEW_PARENT}/virtio8/block/vde`, '254:64');
    e.source.lost();
    expect(await p).toMatchObject({ name: 'vde' });
  });

  it('a device in sysfs whose /dev node is not made yet is waited for', async () => {
    const e = setup();
    const p = e.waiter.pciBlock('03');
    expect(e.writes).toHaveLength(1); // sysfs alone is not enough: rescan as for an absent device
    expect(await state(p)).toBe('pending');
    e.source.emit(blockEvent('add', '/devices/virtual/block/zram1', 'zram1', 253, 1));
    expect(await state(p)).toBe('pending');
    e.node('vdc');
    e.source.emit(blockEvent('add', '/devices/virtual/block/zram2', 'zram2', 253, 2));
    expect(await p).toMatchObject({ name: 'vdc', path: path.join(e.dev, 'vdc') });
  });

  it('the matching add uevent is enough even before the node is visible (devtmpfs made it before the event)', async () => {
    const e = setup();
    const p = e.waiter.pciBlock('06/07');
    e.plug(`${NEW_PARENT}/virtio8/block/vde`, '254:64', { node: false });
    e.source.emit(blockEvent('add', `${NEW_PARENT}/virtio8/block/vde`, 'vde', 254, 64));
    expect(await p).toMatchObject({ name: 'vde', major: 254, minor: 64 });
  });

  it('ignores partitions, removes and other PCI paths for the node-less case', async () => {
    const e = setup(100);
    e.plug(`${NEW_PARENT}/virtio8/block/vde`, '254:64', { node: false });
    const p = e.waiter.pciBlock('06/07');
    e.source.emit(blockEvent('add', `${NEW_PARENT}/virtio8/block/vde/vde1`, 'vde1', 254, 65, 'partition'));
    e.source.emit(blockEvent('remove', `${NEW_PARENT}/virtio8/block/vde`, 'vde', 254, 64));
    e.source.emit(blockEvent('add', '/devices/pci0000:00/0000:00:06.0/0000:03:07.1/virtio8/block/vde', 'vde', 254, 64));
    expect(await state(p)).toBe('pending');
    await expect(p).rejects.toMatchObject({ code: Code.DEADLINE_EXCEEDED });
  });

  it('times out with DEADLINE_EXCEEDED naming the device', async () => {
    const e = setup(30);
    const p = e.waiter.pciBlock('06/07');
    await expect(p).rejects.toBeInstanceOf(RpcError);
    await expect(p).rejects.toMatchObject({
      code: Code.DEADLINE_EXCEEDED,
      message: expect.stringContaining('timed out after 30 ms waiting for the block device at PCI path 06/07'),
    });
    expect(e.source.subs.size).toBe(0);
    expect(e.writes).toHaveLength(1);
  });

  it('a missing bridge is waited for too, and the timeout says why', async () => {
    const e = setup(30);
    await expect(e.waiter.pciBlock('09/01')).rejects.toMatchObject({
      code: Code.DEADLINE_EXCEEDED,
      message: expect.stringMatching(/PCI path 09\/01 \(.*0000:00:09\.0 does not exist\)/),
    });
  });

  it('abort rejects with CANCELLED and unsubscribes; an aborted signal does nothing at all', async () => {
    const e = setup();
    const ac = new AbortController();
    const p = e.waiter.pciBlock('06/07', ac.signal);
    expect(await state(p)).toBe('pending');
    ac.abort();
    await expect(p).rejects.toMatchObject({ code: Code.CANCELLED, message: expect.stringContaining('06/07') });
    expect(e.source.subs.size).toBe(0);
    e.writes.length = 0;
    await expect(e.waiter.pciBlock('06/07', ac.signal)).rejects.toMatchObject({ code: Code.CANCELLED });
    expect(e.writes).toEqual([]);
    expect(e.source.subs.size).toBe(0);
  });

  it('bad PCI paths are INVALID_ARGUMENT rejections, before any rescan', async () => {
    const e = setup();
    await expect(e.waiter.pciBlock('0g')).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT });
    await expect(e.waiter.pciBlock([99])).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT });
    expect(e.writes).toEqual([]);
    expect(e.source.subs.size).toBe(0);
  });

  it('a failing rescan write does not fail the wait', async () => {
    const e = setup();
    const waiter = new DeviceWaiter({
      sysRoot: e.sys,
      devRoot: e.dev,
      listener: e.source,
      timeoutMs: 5000,
      writeFile: () => {
        throw Object.assign(new Error('EACCES'), { code: 'EACCES' });
      },
    });
    const p = waiter.pciBlock('06/07');
    e.plug(`${NEW_PARENT}/virtio8/block/vde`, '254:64');
    e.source.emit(blockEvent('add', `${NEW_PARENT}/virtio8/block/vde`, 'vde', 254, 64));
    expect(await p).toMatchObject({ name: 'vde' });
  });
});

describe('DeviceWaiter.scsiBlock', () => {
  it('finds a present disk without scanning', async () => {
    const e = setup();
    e.node('sdb');
    expect(await e.waiter.scsiBlock('0:1')).toEqual({ name: 'sdb', path: path.join(e.dev, 'sdb'), major: 8, minor: 16 });
    expect(e.writes).toEqual([]);
  });

  it('scans every host once with "0 <target> <lun>", then takes the add uevent', async () => {
    const e = setup();
    const p = e.waiter.scsiBlock('0:2');
    expect(e.writes).toEqual([[path.join('class', 'scsi_host', 'host0', 'scan'), '0 0 2']]);
    const host = '/devices/pci0000:00/0000:00:04.0/virtio2/host0';
    // Wrong LUN first.
    e.source.emit(blockEvent('add', `${host}/target0:0:0/0:0:0:3/block/sdd`, 'sdd', 8, 48));
    expect(await state(p)).toBe('pending');
    const devpath = `${host}/target0:0:0/0:0:0:2/block/sdc`;
    e.plug(devpath, '8:32');
    fs.symlinkSync(path.join(e.sys, `${host}/target0:0:0/0:0:0:2`), path.join(e.sys, 'bus/scsi/devices/0:0:0:2'));
    e.source.emit(blockEvent('add', devpath, 'sdc', 8, 32));
    expect(await p).toMatchObject({ name: 'sdc', major: 8, minor: 32 });
    expect(e.writes).toHaveLength(1);
  });

  it('times out naming the address; bad addresses are INVALID_ARGUMENT', async () => {
    const e = setup(20);
    await expect(e.waiter.scsiBlock('5:0')).rejects.toMatchObject({
      code: Code.DEADLINE_EXCEEDED,
      message: expect.stringContaining('timed out after 20 ms waiting for the SCSI disk at 5:0'),
    });
    await expect(e.waiter.scsiBlock('5')).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT });
  });
});

describe('DeviceWaiter.mmioBlock and pmem', () => {
  it('finds present devices by name', async () => {
    const e = setup();
    e.node('vda');
    e.node('pmem0');
    expect(await e.waiter.mmioBlock('/dev/vda')).toEqual({ name: 'vda', path: path.join(e.dev, 'vda'), major: 254, minor: 0 });
    expect(await e.waiter.mmioBlock('vda')).toMatchObject({ name: 'vda' });
    expect(await e.waiter.pmem('/dev/pmem0')).toEqual({ name: 'pmem0', path: path.join(e.dev, 'pmem0'), major: 259, minor: 0 });
    expect(e.writes).toEqual([]);
  });

  it('waits for a named disk: the add uevent numbers are used when sysfs has no entry', async () => {
    const e = setup();
    const p = e.waiter.mmioBlock('vdz');
    expect(e.writes).toEqual([]); // no bus to rescan for mmio
    e.source.emit(blockEvent('add', '/devices/platform/a004000.virtio_mmio/virtio9/block/vdy', 'vdy', 254, 96));
    expect(await state(p)).toBe('pending');
    e.source.emit(blockEvent('add', '/devices/platform/a004000.virtio_mmio/virtio9/block/vdz', 'vdz', 254, 112));
    expect(await p).toEqual({ name: 'vdz', path: path.join(e.dev, 'vdz'), major: 254, minor: 112 });
  });

  it('pmem: waits, times out naming the device; wrong names are INVALID_ARGUMENT', async () => {
    const e = setup(20);
    await expect(e.waiter.pmem('/dev/pmem3')).rejects.toMatchObject({
      code: Code.DEADLINE_EXCEEDED,
      message: expect.stringContaining('waiting for the pmem device /dev/pmem3'),
    });
    await expect(e.waiter.pmem('/dev/vda')).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT });
    await expect(e.waiter.mmioBlock('../x')).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT });
  });
});

describe('matchers', () => {
  it('blockUnderDevpath: whole disks within two levels below the device, not behind a bridge', () => {
    const m = blockUnderDevpath('/devices/pci0000:00/0000:00:02.0/0000:01:01.0');
    const base = '/devices/pci0000:00/0000:00:02.0/0000:01:01.0';
    expect(m(blockEvent('add', `${base}/virtio4/block/vdb`, 'vdb'))).toBe('vdb');
    expect(m(blockEvent('add', `${base}/virtio4/block/vdb/vdb1`, 'vdb1', 1, 1, 'partition'))).toBeUndefined();
    expect(m(blockEvent('add', `${base}/virtio4/block/vdb`, 'vdx'))).toBeUndefined(); // DEVNAME must be the leaf
    expect(m(blockEvent('add', `${base}0/virtio4/block/vdb`, 'vdb'))).toBeUndefined(); // prefix on a boundary
    expect(m(blockEvent('add', `${base}/0000:02:00.0/block/vdb`, 'vdb'))).toBeUndefined();
    expect(m({ ...blockEvent('add', `${base}/virtio4/block/vdb`, 'vdb'), subsystem: 'bdi' })).toBeUndefined();
    expect(m(blockEvent('change', `${base}/virtio4/block/vdb`, 'vdb'))).toBeUndefined();
  });

  it('scsiBlockMatch: channel 0, the target and LUN asked for, any host', () => {
    const m = scsiBlockMatch('2:0');
    expect(m(blockEvent('add', '/devices/x/host0/target0:0:2/0:0:2:0/block/sda', 'sda'))).toBe('sda');
    expect(m(blockEvent('add', '/devices/x/host7/target7:0:2/7:0:2:0/block/sda', 'sda'))).toBe('sda');
    expect(m(blockEvent('add', '/devices/x/host0/target0:0:2/0:0:2:1/block/sda', 'sda'))).toBeUndefined();
    expect(m(blockEvent('add', '/devices/x/host0/target0:0:12/0:0:12:0/block/sda', 'sda'))).toBeUndefined();
    expect(m(blockEvent('add', '/devices/x/host0/target0:1:2/0:1:2:0/block/sda', 'sda'))).toBeUndefined();
  });

  it('namedBlockMatch: DEVNAME and the devpath leaf', () => {
    const m = namedBlockMatch('pmem0');
    expect(m(blockEvent('add', '/devices/LNXSYSTM:00/x/namespace0.0/block/pmem0', 'pmem0'))).toBe('pmem0');
    expect(m(blockEvent('add', '/devices/LNXSYSTM:00/x/namespace0.0/block/pmem0', 'pmem1'))).toBeUndefined();
    expect(m(blockEvent('add', '/devices/LNXSYSTM:00/x/namespace1.0/block/pmem1', 'pmem1'))).toBeUndefined();
  });
});
