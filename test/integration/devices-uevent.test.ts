// The uevent socket and DeviceWaiter against the real kernel (root): open and bind
// NETLINK_KOBJECT_UEVENT, receive a synthetic uevent we trigger through sysfs, resolve
// this machine's own virtio-blk disk by PCI path, and wait for a zram disk hot-added
// while waiting (zram-control), all through the agent's code.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { namedBlockDevice, pciBlockDevice, readDevNumbers } from '../../agent/src/devices/sysfs';
import { UeventListener } from '../../agent/src/devices/uevent';
import { DeviceWaiter } from '../../agent/src/devices/wait';
import { close } from '../../agent/src/sys/misc';
import { formatSockaddr, getsockname } from '../../agent/src/sys/socket';
import { openUeventSocket } from '../../agent/src/sys/uevent';

const isRoot = process.getuid?.() === 0;
const NULL_UEVENT = ['/sys/devices/virtual/mem/null/uevent', '/sys/class/mem/null/uevent'].find((p) => fs.existsSync(p));
const ZRAM_CONTROL = '/sys/class/zram-control';

/** A virtio-blk disk of this machine reachable by PCI path from the root bus: {name, pciPath}. */
function localPciDisk(): { name: string; pciPath: string } | undefined {
  let names: string[];
  try {
    names = fs.readdirSync('/sys/class/block');
  } catch {
    return undefined;
  }
  for (const name of names) {
    let real: string;
    try {
      real = fs.realpathSync(path.join('/sys/class/block', name));
    } catch {
      continue;
    }
    const m = /^\/sys\/devices\/pci0000:00((?:\/[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.0)+)\/virtio\d+\/block\/([^/]+)$/.exec(real);
    if (!m || m[2] !== name) continue;
    const slots = m[1]!
      .split('/')
      .filter(Boolean)
      .map((bdf) => bdf.slice(8, 10));
    return { name, pciPath: slots.join('/') };
  }
  return undefined;
}

const listeners: UeventListener[] = [];
const zramToRemove: number[] = [];
afterEach(() => {
  for (const l of listeners.splice(0)) l.stop();
  for (const id of zramToRemove.splice(0)) {
    try {
      fs.writeFileSync(path.join(ZRAM_CONTROL, 'hot_remove'), String(id));
    } catch {
      // already gone
    }
  }
});

function startListener(): UeventListener {
  const l = new UeventListener();
  l.start();
  listeners.push(l);
  return l;
}

describe.skipIf(!isRoot)('uevents from the real kernel (root)', () => {
  it('openUeventSocket: a netlink socket bound to the kernel uevent group', () => {
    const fd = openUeventSocket();
    try {
      expect(formatSockaddr(getsockname(fd))).toMatch(/^netlink:pid=\d+,groups=1$/);
      expect(fs.readlinkSync(`/proc/self/fd/${fd}`)).toMatch(/^socket:\[\d+\]$/);
      // O_NONBLOCK (04000) and O_CLOEXEC (02000000) in the fd's flags.
      const flags = parseInt(/flags:\s+(\d+)/.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!, 8);
      expect(flags & 0o4000).toBe(0o4000);
      expect(flags & 0o2000000).toBe(0o2000000);
    } finally {
      close(fd);
    }
  });

  it.skipIf(!NULL_UEVENT)('UeventListener receives and parses a synthetic "add" written to /dev/null\'s uevent', async () => {
    const l = startListener();
    expect(l.running).toBe(true);
    const uuid = crypto.randomUUID();
    // "ACTION UUID KEY=VALUE": the kernel tags the synthetic event so we match ours only.
    const wait = l.waitFor((ev) => ev.env.SYNTH_UUID === uuid, 10_000);
    fs.writeFileSync(NULL_UEVENT!, `add ${uuid} GUESTKIT=1`);
    const ev = await wait;
    expect(ev.action).toBe('add');
    expect(ev.devpath).toBe('/devices/virtual/mem/null');
    expect(ev.subsystem).toBe('mem');
    expect(ev.devname).toBe('null');
    expect([ev.major, ev.minor]).toEqual([1, 3]);
    expect(ev.env.SYNTH_ARG_GUESTKIT).toBe('1');
    expect(Number(ev.seqnum)).toBeGreaterThan(0);
    expect(l.stats.lost).toBe(0);
  });

  it.skipIf(!NULL_UEVENT)('an overflowed socket (ENOBUFS) is reopened, subscribers hear of the loss, events flow again', async () => {
    // A tiny receive buffer and a blocked event loop: the kernel drops uevents and
    // the next read fails with ENOBUFS, which libuv reports as a stream error.
    const l = new UeventListener({ openSocket: () => openUeventSocket({ rcvbuf: 1 }) });
    l.start();
    listeners.push(l);
    const tag = crypto.randomUUID();
    let lost = 0;
    let gotAfter = false;
    const lostOnce = new Promise<void>((resolve) =>
      l.subscribe(
        () => {},
        () => {
          lost++;
          resolve();
        },
      ),
    );
    for (let i = 0; i < 200; i++) fs.writeFileSync(NULL_UEVENT!, `change ${tag}`);
    await lostOnce;
    expect(lost).toBeGreaterThanOrEqual(1);
    expect(l.stats.lost).toBeGreaterThanOrEqual(1);
    expect(l.running).toBe(true);
    // The reopened socket delivers.
    const uuid = crypto.randomUUID();
    const next = l.waitFor((ev) => ev.env.SYNTH_UUID === uuid, 10_000).then((ev) => {
      gotAfter = true;
      return ev;
    });
    fs.writeFileSync(NULL_UEVENT!, `change ${uuid}`);
    expect((await next).action).toBe('change');
    expect(gotAfter).toBe(true);
  });

  const disk = localPciDisk();
  it.skipIf(!disk)(`resolves this machine's virtio-blk disk by PCI path (${disk?.pciPath} -> ${disk?.name})`, async () => {
    const { name, pciPath } = disk!;
    const expected = readDevNumbers(path.join('/sys/class/block', name))!;
    expect(pciBlockDevice('/sys', pciPath)).toMatchObject({ name, ...expected });
    const waiter = new DeviceWaiter({ sysRoot: '/sys', devRoot: '/dev', listener: startListener(), timeoutMs: 3000 });
    expect(await waiter.pciBlock(pciPath)).toEqual({ name, path: `/dev/${name}`, ...expected });
    const st = fs.statSync(`/dev/${name}`);
    expect(st.isBlockDevice()).toBe(true);
  });

  it.skipIf(!fs.existsSync(ZRAM_CONTROL))('DeviceWaiter sees a disk hot-added while it waits (zram)', async () => {
    // zram ids are allocated lowest-free first: predict the next name, wait for it, then add it.
    const present = new Set(
      fs
        .readdirSync('/sys/class/block')
        .map((n) => /^zram(\d+)$/.exec(n)?.[1])
        .filter((x): x is string => x !== undefined)
        .map(Number),
    );
    let id = 0;
    while (present.has(id)) id++;
    const name = `zram${id}`;
    const waiter = new DeviceWaiter({ sysRoot: '/sys', devRoot: '/dev', listener: startListener(), timeoutMs: 10_000 });
    const p = waiter.mmioBlock(`/dev/${name}`);
    const got = Number(fs.readFileSync(path.join(ZRAM_CONTROL, 'hot_add'), 'utf8').trim());
    zramToRemove.push(got);
    expect(got).toBe(id);
    const d = await p;
    const sysfs = namedBlockDevice('/sys', name)!;
    expect(d).toEqual({ name, path: `/dev/${name}`, major: sysfs.major, minor: sysfs.minor });
    expect(fs.statSync(d.path).isBlockDevice()).toBe(true);
  });
});
