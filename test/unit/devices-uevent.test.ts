// devices/uevent.ts: parsing kernel uevent datagrams (captured ones, hand-built
// PCI/SCSI ones, libudev re-broadcasts, garbage) and UeventListener over a fake
// socket stream (subscribe, watch-before-check, waitFor, overflow/reopen, stop).
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { type Uevent, type UeventStream, UeventListener, parseUevent } from '../../agent/src/devices/uevent';
import { Code, RpcError } from '../../agent/src/rpc/status';
import { fuzzSeed, rng } from '../helpers/prng';

const FIX = fileURLToPath(new URL('../fixtures/sysfs/uevents/', import.meta.url));
const fixture = (name: string): Buffer => fs.readFileSync(path.join(FIX, name));

/** A kernel message as the kernel lays it out: "action@devpath\0KEY=VAL\0...". */
function kmsg(action: string, devpath: string, env: Record<string, string | number>): Buffer {
  const lines = [`${action}@${devpath}`, `ACTION=${action}`, `DEVPATH=${devpath}`];
  for (const [k, v] of Object.entries(env)) lines.push(`${k}=${v}`);
  return Buffer.from(lines.join('\0') + '\0');
}

/** udevd's re-broadcast: "libudev\0", struct udev_monitor_netlink_header (40 bytes), properties. */
function libudevMsg(props: string[]): Buffer {
  const body = Buffer.from(props.join('\0') + '\0');
  const h = Buffer.alloc(40);
  h.write('libudev\0', 0, 'latin1');
  h.writeUInt32BE(0xfeedcafe, 8); // magic, network order
  h.writeUInt32LE(40, 12); // header_size
  h.writeUInt32LE(40, 16); // properties_off
  h.writeUInt32LE(body.length, 20); // properties_len
  return Buffer.concat([h, body]);
}

const VDB_DEVPATH = '/devices/pci0000:00/0000:00:02.0/0000:01:01.0/virtio4/block/vdb';
const vdbAdd = (seq = 1000): Buffer =>
  kmsg('add', VDB_DEVPATH, { SUBSYSTEM: 'block', MAJOR: 254, MINOR: 16, DEVNAME: 'vdb', DEVTYPE: 'disk', DISKSEQ: 12, SEQNUM: seq });

describe('parseUevent', () => {
  it('parses captured kernel messages: zram add/remove, a bdi add without DEVNAME', () => {
    const add = parseUevent(fixture('zram1-add.bin'))!;
    expect(add).toMatchObject({
      action: 'add',
      devpath: '/devices/virtual/block/zram1',
      subsystem: 'block',
      devname: 'zram1',
      devtype: 'disk',
      seqnum: '4116',
      major: 253,
      minor: 1,
    });
    expect(add.env.DISKSEQ).toBe('23');
    const rm = parseUevent(fixture('zram1-remove.bin'))!;
    expect(rm).toMatchObject({ action: 'remove', devpath: '/devices/virtual/block/zram1', devname: 'zram1' });
    const bdi = parseUevent(fixture('bdi-add.bin'))!;
    expect(bdi).toMatchObject({ action: 'add', devpath: '/devices/virtual/bdi/253:1', subsystem: 'bdi' });
    expect(bdi.devname).toBeUndefined();
    expect(bdi.major).toBeUndefined();
  });

  it('parses a captured virtio-blk PCI add and a change with extra keys', () => {
    const vda = parseUevent(fixture('vda-pci-add-synth.bin'))!;
    expect(vda).toMatchObject({
      action: 'add',
      devpath: '/devices/pci0000:00/0000:00:02.0/virtio1/block/vda',
      subsystem: 'block',
      devname: 'vda',
      major: 254,
      minor: 0,
    });
    expect(vda.env.SYNTH_UUID).toBe('0');
    const ch = parseUevent(fixture('loop0-change-media.bin'))!;
    expect(ch.action).toBe('change');
    expect(ch.env.DISK_MEDIA_CHANGE).toBe('1');
  });

  it('parses hand-built PCI and SCSI block adds and a partition', () => {
    expect(parseUevent(vdbAdd(77))).toMatchObject({ devname: 'vdb', seqnum: '77', major: 254, minor: 16 });
    const part = parseUevent(
      kmsg('add', `${VDB_DEVPATH}/vdb1`, { SUBSYSTEM: 'block', DEVNAME: 'vdb1', DEVTYPE: 'partition', PARTN: 1 }),
    )!;
    expect(part).toMatchObject({ devtype: 'partition', devname: 'vdb1' });
  });

  it('ignores libudev re-broadcasts, even with kernel-looking properties', () => {
    expect(parseUevent(libudevMsg(['ACTION=add', `DEVPATH=${VDB_DEVPATH}`, 'SUBSYSTEM=block', 'DEVNAME=vdb']))).toBeUndefined();
  });

  it('rejects malformed messages', () => {
    const bad = [
      Buffer.alloc(0),
      Buffer.from('no at sign\0ACTION=add\0'),
      Buffer.from('@/devices/x\0'),
      Buffer.from('add@relative/path\0'),
      Buffer.from('ADD@/devices/x\0'),
      Buffer.from('add@/devices/x\0DEVPATH=not-absolute\0'),
      Buffer.alloc(70000, 0x61),
    ];
    for (const b of bad) expect(parseUevent(b)).toBeUndefined();
  });

  it('treats keys as data: __proto__ and constructor do not touch the prototype', () => {
    const ev = parseUevent(Buffer.from('add@/devices/x\0__proto__=polluted\0constructor=1\0=novalue\0NOEQUALS\0'))!;
    expect(ev.env['__proto__']).toBe('polluted');
    expect(ev.env['constructor']).toBe('1');
    expect(Object.keys(ev.env).sort()).toEqual(['__proto__', 'constructor']);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('rejects out-of-range device numbers instead of inventing them', () => {
    const ev = parseUevent(kmsg('add', '/devices/x', { MAJOR: '99999999999', MINOR: 1, SUBSYSTEM: 'block' }))!;
    expect(ev.major).toBeUndefined();
    expect(ev.minor).toBeUndefined();
  });

  it('never throws on random bytes or mutated real messages', () => {
    const r = rng(fuzzSeed(0x5eed4));
    const seeds = [fixture('zram1-add.bin'), vdbAdd(), libudevMsg(['ACTION=add'])];
    for (let i = 0; i < 3000; i++) {
      let b: Buffer;
      if (r.bool()) {
        b = r.bytes(r.int(0, 300));
      } else {
        b = Buffer.from(r.pick(seeds));
        for (let k = r.int(1, 8); k > 0; k--) b[r.int(0, b.length - 1)] = r.int(0, 255);
        b = b.subarray(0, r.int(0, b.length));
      }
      const ev = parseUevent(b);
      if (ev) {
        expect(ev.devpath.startsWith('/')).toBe(true);
        expect(ev.action).toMatch(/^[a-z_]+$/);
      }
    }
  });
});

// ---------------------------------------------------------------------------

class FakeStream extends EventEmitter implements UeventStream {
  destroyed = false;
  destroy(): void {
    this.destroyed = true;
  }
}

function fakeListener(opts: { failOpenAfter?: number } = {}) {
  const streams: FakeStream[] = [];
  const closed: number[] = [];
  let opened = 0;
  const listener = new UeventListener({
    openSocket: () => {
      opened++;
      if (opts.failOpenAfter !== undefined && opened > opts.failOpenAfter) throw new Error('EMFILE');
      return 100 + opened;
    },
    toStream: () => {
      const s = new FakeStream();
      streams.push(s);
      return s;
    },
    closeFd: (fd) => closed.push(fd),
    reopenDelayMs: 5,
  });
  return { listener, streams, closed, opened: () => opened };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('UeventListener', () => {
  it('delivers parsed kernel events to subscribers and drops the rest', () => {
    const { listener, streams } = fakeListener();
    listener.start();
    const got: Uevent[] = [];
    const unsub = listener.subscribe((ev) => got.push(ev));
    streams[0]!.emit('data', vdbAdd());
    streams[0]!.emit('data', libudevMsg(['ACTION=add', 'DEVPATH=/devices/x']));
    streams[0]!.emit('data', Buffer.from('garbage'));
    streams[0]!.emit('data', fixture('zram1-remove.bin'));
    expect(got.map((e) => `${e.action} ${e.devname}`)).toEqual(['add vdb', 'remove zram1']);
    expect(listener.stats).toEqual({ received: 4, ignored: 2, lost: 0 });
    unsub();
    streams[0]!.emit('data', vdbAdd());
    expect(got).toHaveLength(2);
    listener.stop();
    expect(streams[0]!.destroyed).toBe(true);
  });

  it('a subscriber that throws does not stop the others', () => {
    const { listener, streams } = fakeListener();
    listener.start();
    let seen = 0;
    listener.subscribe(() => {
      throw new Error('boom');
    });
    listener.subscribe(() => seen++);
    const w = listener.watch((ev) => ev.devname === 'vdb');
    streams[0]!.emit('data', vdbAdd());
    expect(seen).toBe(1);
    return expect(w.promise).resolves.toMatchObject({ devname: 'vdb' });
  });

  it('watch() catches an event that arrives between registering and awaiting', async () => {
    const { listener, streams } = fakeListener();
    listener.start();
    const w = listener.watch((ev) => ev.action === 'add' && ev.devname === 'vdb');
    // The caller's sysfs check would run here; the event arrives meanwhile.
    streams[0]!.emit('data', fixture('zram1-add.bin'));
    streams[0]!.emit('data', vdbAdd(5));
    streams[0]!.emit('data', vdbAdd(6));
    const ev = await w.promise;
    expect(ev.seqnum).toBe('5');
  });

  it('a cancelled watch rejects CANCELLED when awaited, and is harmless when not', async () => {
    const { listener, streams } = fakeListener();
    listener.start();
    const unawaited = listener.watch(() => true);
    unawaited.cancel(); // an unhandled rejection here would fail the run
    const w = listener.watch(() => true);
    w.cancel();
    await expect(w.promise).rejects.toMatchObject({ code: Code.CANCELLED });
    streams[0]!.emit('data', vdbAdd());
    await tick();
  });

  it('waitFor: resolves on a match, DEADLINE_EXCEEDED on timeout, CANCELLED on abort', async () => {
    const { listener, streams } = fakeListener();
    listener.start();
    const p = listener.waitFor((ev) => ev.devname === 'vdb', 10_000);
    streams[0]!.emit('data', vdbAdd());
    await expect(p).resolves.toMatchObject({ devname: 'vdb' });

    const t = listener.waitFor((ev) => ev.devname === 'nope', 20);
    await expect(t).rejects.toBeInstanceOf(RpcError);
    await expect(t).rejects.toMatchObject({ code: Code.DEADLINE_EXCEEDED, message: expect.stringContaining('20 ms') });

    const ac = new AbortController();
    const a = listener.waitFor(() => false, 10_000, ac.signal);
    ac.abort();
    await expect(a).rejects.toMatchObject({ code: Code.CANCELLED });
    const pre = listener.waitFor(() => true, 10_000, ac.signal);
    await expect(pre).rejects.toMatchObject({ code: Code.CANCELLED });
    // A timed-out matcher is gone: a later matching event does not resurrect it.
    streams[0]!.emit('data', kmsg('add', '/devices/y', { DEVNAME: 'nope' }));
  });

  it('stop() rejects pending watches with UNAVAILABLE', async () => {
    const { listener } = fakeListener();
    listener.start();
    const w = listener.watch(() => true);
    listener.stop();
    await expect(w.promise).rejects.toMatchObject({ code: Code.UNAVAILABLE });
    expect(listener.running).toBe(false);
  });

  it('a socket error (ENOBUFS after an overflow) reopens the socket, then reports lost events', async () => {
    const { listener, streams, opened } = fakeListener();
    listener.start();
    const order: string[] = [];
    listener.subscribe(
      (ev) => order.push(`event ${ev.devname}`),
      () => order.push(`lost (running=${listener.running}, opened=${opened()})`),
    );
    const w = listener.watch((ev) => ev.devname === 'vdb');
    const enobufs = Object.assign(new Error('read ENOBUFS'), { code: 'ENOBUFS' });
    streams[0]!.emit('error', enobufs);
    streams[0]!.emit('close');
    expect(streams[0]!.destroyed).toBe(true);
    expect(listener.running).toBe(false);
    await tick();
    expect(opened()).toBe(2);
    expect(order).toEqual(['lost (running=true, opened=2)']);
    // Late data from the dead stream is ignored; the new one delivers.
    streams[0]!.emit('data', vdbAdd(1));
    streams[1]!.emit('data', vdbAdd(2));
    expect((await w.promise).seqnum).toBe('2');
    expect(listener.stats.lost).toBe(1);
    listener.stop();
  });

  it('keeps retrying a failed reopen, and stop() ends the retries', async () => {
    const { listener, streams, opened } = fakeListener({ failOpenAfter: 1 });
    listener.start();
    streams[0]!.emit('error', new Error('ENOBUFS'));
    await new Promise((r) => setTimeout(r, 40));
    const tries = opened();
    expect(tries).toBeGreaterThanOrEqual(3);
    listener.stop();
    await new Promise((r) => setTimeout(r, 30));
    expect(opened()).toBe(tries);
  });

  it('closes the fd when it cannot be wrapped, and start() reports the error', () => {
    const closed: number[] = [];
    const listener = new UeventListener({
      openSocket: () => 42,
      toStream: () => {
        throw new Error('uv_pipe_open: EINVAL');
      },
      closeFd: (fd) => closed.push(fd),
    });
    expect(() => listener.start()).toThrow(/EINVAL/);
    expect(closed).toEqual([42]);
    expect(listener.running).toBe(false);
  });
});
