import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Code } from '../../agent/src/rpc/status';
import { SysError } from '../../agent/src/sys/libc';
import { AGENT_VERSION } from '../../agent/src/version';
import type { HandlerRegistry } from '../../agent/src/services';
import { call, callObject, cleanupTemps, copyFixture, fixture, makeCtx, makeServices, tempDir } from './services-helpers';

afterEach(cleanupTemps);

const GD = 'grpc.AgentService/GetGuestDetails';
const TIME = 'grpc.AgentService/SetGuestDateTime';
const RESEED = 'grpc.AgentService/ReseedRandomDev';
const ONLINE = 'grpc.AgentService/OnlineCPUMem';
const PROBE = 'grpc.AgentService/MemHotplugByProbe';

const read = (p: string) => fs.readFileSync(p, 'utf8');

/** A pino logger whose records are collected in `lines`. */
describe('GetGuestDetails', () => {
  it('reads the hex memory block size and the probe file only when asked', async () => {
    const { dispatcher } = makeServices({ paths: { sysfs: fixture('sysfs-basic'), proc: fixture('proc-basic') } });
    const both = await call(dispatcher, GD, { mem_block_size: true, mem_hotplug_probe: true });
    expect(both.code).toBe(Code.OK);
    expect(both.res!.mem_block_size_bytes).toBe(0x8000000);
    expect(both.res!.support_mem_hotplug_probe).toBe(true);
    const none = await call(dispatcher, GD, {});
    expect(none.res!.mem_block_size_bytes).toBe(0);
    expect(none.res!.support_mem_hotplug_probe).toBe(false);
  });

  it('reports no probe support without the probe file, and a missing block size file as 0 (as Kata)', async () => {
    const sysfs = tempDir();
    fs.mkdirSync(path.join(sysfs, 'devices/system/memory'), { recursive: true });
    const { dispatcher } = makeServices({ paths: { sysfs } });
    const r = await call(dispatcher, GD, { mem_block_size: true, mem_hotplug_probe: true });
    expect(r.code).toBe(Code.OK);
    expect(r.res!.mem_block_size_bytes).toBe(0);
    expect(r.res!.support_mem_hotplug_probe).toBe(false);
  });

  it('fails on a block size that is not hex, and on an empty one', async () => {
    const { dispatcher } = makeServices({ paths: { sysfs: fixture('sysfs-noprobe') } });
    const bad = await call(dispatcher, GD, { mem_block_size: true });
    expect(bad.code).toBe(Code.INTERNAL);
    expect(bad.message).toMatch(/invalid memory block size "not-hex"/);
    // Not asked for the size: the bad file is not read.
    expect((await call(dispatcher, GD, { mem_hotplug_probe: true })).res!.support_mem_hotplug_probe).toBe(false);

    const sysfs = copyFixture('sysfs-basic');
    fs.writeFileSync(path.join(sysfs, 'devices/system/memory/block_size_bytes'), '\n');
    const { dispatcher: d2 } = makeServices({ paths: { sysfs } });
    const empty = await call(d2, GD, { mem_block_size: true });
    expect(empty.code).toBe(Code.INTERNAL);
    expect(empty.message).toMatch(/is empty/);
  });

  it('fills agent_details from the deps; handler lists are read at call time', async () => {
    const device: string[] = [];
    const registry: HandlerRegistry = { deviceHandlers: () => device, storageHandlers: () => ['virtio-fs', 'local'] };
    const { dispatcher } = makeServices({
      paths: { sysfs: fixture('sysfs-basic'), proc: fixture('proc-basic') },
      isInit: true,
      handlers: registry,
      extraFeatures: ['guest-pull'],
    });
    device.push('blk', 'scsi');
    const r = await call(dispatcher, GD, {});
    expect(r.res!.agent_details).toEqual({
      version: AGENT_VERSION,
      init_daemon: true,
      device_handlers: ['blk', 'scsi'],
      storage_handlers: ['virtio-fs', 'local'],
      supports_seccomp: true, // proc-basic/self/status has a Seccomp: line
      extra_features: ['guest-pull'],
    });
  });

  it('defaults: no handlers, init_daemon false, seccomp from <proc>/self/status', async () => {
    const proc = tempDir();
    fs.mkdirSync(path.join(proc, 'self'));
    fs.writeFileSync(path.join(proc, 'self/status'), 'Name:\tx\nPid:\t5\n');
    const { dispatcher } = makeServices({ paths: { sysfs: fixture('sysfs-basic'), proc }, isInit: false });
    const d = (await call(dispatcher, GD, {})).res!.agent_details;
    expect(d).toMatchObject({ init_daemon: false, device_handlers: [], storage_handlers: [], supports_seccomp: false, extra_features: [] });
    const { dispatcher: forced } = makeServices({ paths: { proc }, supportsSeccomp: true });
    expect((await call(forced, GD, {})).res!.agent_details.supports_seccomp).toBe(true);
  });
});

describe('SetGuestDateTime', () => {
  function setup(fail?: Error) {
    const calls: Array<[number, number]> = [];
    const { dispatcher } = makeServices({
      sys: {
        settimeofday: (s, u) => {
          if (fail) throw fail;
          calls.push([s, u]);
        },
      },
    });
    return { dispatcher, calls };
  }

  it('passes Sec/Usec to settimeofday', async () => {
    const { dispatcher, calls } = setup();
    const r = await call(dispatcher, TIME, { Sec: 1_700_000_000, Usec: 123_456 });
    expect(r.code).toBe(Code.OK);
    expect(calls).toEqual([[1_700_000_000, 123_456]]);
  });

  it.each([
    [{ Sec: -1, Usec: 0 }, /Sec must be >= 0/],
    [{ Sec: 5, Usec: 1_000_000 }, /Usec must be <= 999999/],
    [{ Sec: 5, Usec: -1 }, /Usec must be >= 0/],
  ])('rejects %o with INVALID_ARGUMENT', async (req, msg) => {
    const { dispatcher, calls } = setup();
    const r = await call(dispatcher, TIME, req);
    expect(r.code).toBe(Code.INVALID_ARGUMENT);
    expect(r.message).toMatch(msg);
    expect(calls).toEqual([]);
  });

  it('maps EPERM from the kernel to PERMISSION_DENIED', async () => {
    const { dispatcher } = setup(new SysError('settimeofday', os.constants.errno.EPERM));
    const r = await call(dispatcher, TIME, { Sec: 1, Usec: 0 });
    expect(r.code).toBe(Code.PERMISSION_DENIED);
    expect(r.message).toMatch(/^SetGuestDateTime 1\.000000: settimeofday.*EPERM/);
  });
});

describe('ReseedRandomDev', () => {
  it('hands the data to the RNG at <dev>/random', async () => {
    const seen: Array<[string, Buffer]> = [];
    const { dispatcher } = makeServices({
      paths: { dev: '/fake/dev' },
      sys: { reseedRng: (p, d) => void seen.push([p, Buffer.from(d)]) },
    });
    const r = await call(dispatcher, RESEED, { data: Buffer.from([1, 2, 3, 250]) });
    expect(r.code).toBe(Code.OK);
    expect(seen).toEqual([['/fake/dev/random', Buffer.from([1, 2, 3, 250])]]);
  });

  it('rejects empty entropy like Kata ("missing entropy data")', async () => {
    let called = false;
    const { dispatcher } = makeServices({ sys: { reseedRng: () => void (called = true) } });
    const r = await call(dispatcher, RESEED, {});
    expect(r.code).toBe(Code.INVALID_ARGUMENT);
    expect(r.message).toMatch(/missing entropy data/);
    expect(called).toBe(false);
  });

  it('maps syscall failures by errno', async () => {
    const { dispatcher } = makeServices({
      sys: {
        reseedRng: () => {
          throw new SysError('ioctl', os.constants.errno.EPERM, '/dev/random', 'RNDADDTOENTCNT');
        },
      },
    });
    const r = await call(dispatcher, RESEED, { data: Buffer.from('x') });
    expect(r.code).toBe(Code.PERMISSION_DENIED);
    expect(r.message).toMatch(/RNDADDTOENTCNT/);
  });
});

describe('MemHotplugByProbe', () => {
  it('writes every address as 0x<hex> to the probe file, in order', async () => {
    const sysfs = copyFixture('sysfs-basic');
    const { dispatcher } = makeServices({ paths: { sysfs } });
    const r = await call(dispatcher, PROBE, { memHotplugProbeAddr: [0x100000000, 0x108000000] });
    expect(r.code).toBe(Code.OK);
    expect(read(path.join(sysfs, 'devices/system/memory/probe'))).toBe('0x1000000000x108000000');
  });

  it('fails with FAILED_PRECONDITION when the kernel has no probe file', async () => {
    const { dispatcher } = makeServices({ paths: { sysfs: fixture('sysfs-noprobe') } });
    const r = await call(dispatcher, PROBE, { memHotplugProbeAddr: [0x100000000] });
    expect(r.code).toBe(Code.FAILED_PRECONDITION);
    expect(r.message).toMatch(/devices\/system\/memory\/probe does not exist/);
    expect(fs.existsSync(path.join(fixture('sysfs-noprobe'), 'devices/system/memory/probe'))).toBe(false);
  });

  it('accepts an empty list without touching sysfs', async () => {
    const { dispatcher } = makeServices({ paths: { sysfs: fixture('sysfs-noprobe') } });
    expect((await call(dispatcher, PROBE, {})).code).toBe(Code.OK);
  });

  it('rejects addresses it cannot represent exactly, and negative ones', async () => {
    const sysfs = copyFixture('sysfs-basic');
    const { dispatcher } = makeServices({ paths: { sysfs } });
    const big = await call(dispatcher, PROBE, { memHotplugProbeAddr: [4096, '1152921504606846977'] });
    expect(big.code).toBe(Code.INVALID_ARGUMENT);
    expect(big.message).toMatch(/memHotplugProbeAddr\[1\]/);
    const neg = await callObject(dispatcher, PROBE, { memHotplugProbeAddr: [-4096] });
    expect(neg.code).toBe(Code.INVALID_ARGUMENT);
    expect(read(path.join(sysfs, 'devices/system/memory/probe'))).toBe(''); // validated before any write
  });
});

describe('OnlineCPUMem', () => {
  const cpu = (sysfs: string, n: number) => read(path.join(sysfs, `devices/system/cpu/cpu${n}/online`)).trim();
  const mem = (sysfs: string, n: number) => read(path.join(sysfs, `devices/system/memory/memory${n}/online`)).trim();

  it('onlines offline CPUs until nb_cpus are online, and only CPUs when cpu_only', async () => {
    const sysfs = copyFixture('sysfs-basic'); // cpu0 (no online file), cpu1 on, cpu2+cpu3 off
    const { dispatcher } = makeServices({ paths: { sysfs } });
    const r = await call(dispatcher, ONLINE, { wait: true, nb_cpus: 3, cpu_only: true });
    expect(r.code).toBe(Code.OK);
    expect([cpu(sysfs, 2), cpu(sysfs, 3)]).toEqual(['1', '0']);
    expect([mem(sysfs, 1), mem(sysfs, 32)]).toEqual(['0', '0']);
  });

  it('onlines all offline memory blocks unless cpu_only; nb_cpus 0 leaves CPUs alone', async () => {
    const sysfs = copyFixture('sysfs-basic');
    const { dispatcher } = makeServices({ paths: { sysfs } });
    const r = await call(dispatcher, ONLINE, { wait: true, nb_cpus: 0, cpu_only: false });
    expect(r.code).toBe(Code.OK);
    expect([mem(sysfs, 0), mem(sysfs, 1), mem(sysfs, 2), mem(sysfs, 32)]).toEqual(['1', '1', '1', '1']);
    expect([cpu(sysfs, 2), cpu(sysfs, 3)]).toEqual(['0', '0']);
  });

  it('does nothing to CPUs when enough are already online', async () => {
    const sysfs = copyFixture('sysfs-basic');
    const { dispatcher } = makeServices({ paths: { sysfs } });
    expect((await call(dispatcher, ONLINE, { wait: true, nb_cpus: 2, cpu_only: true })).code).toBe(Code.OK);
    expect([cpu(sysfs, 2), cpu(sysfs, 3)]).toEqual(['0', '0']);
  });

  it('keeps polling for CPUs that the host hot-plugs later', async () => {
    const sysfs = copyFixture('sysfs-basic');
    const { dispatcher } = makeServices({ paths: { sysfs }, hotplugTimeoutMs: 10_000, hotplugPollMs: 5 });
    const pending = call(dispatcher, ONLINE, { wait: true, nb_cpus: 5, cpu_only: true });
    // cpu4 appears (ACPI hotplug) only after the first pass has found too few CPUs.
    await new Promise((r) => setTimeout(r, 20));
    fs.mkdirSync(path.join(sysfs, 'devices/system/cpu/cpu4'));
    fs.writeFileSync(path.join(sysfs, 'devices/system/cpu/cpu4/online'), '0\n');
    const r = await pending;
    expect(r.code).toBe(Code.OK);
    expect([2, 3, 4].map((n) => cpu(sysfs, n))).toEqual(['1', '1', '1']);
  });

  it('fails with DEADLINE_EXCEEDED when the CPUs never show up (wait=true)', async () => {
    const sysfs = copyFixture('sysfs-basic');
    const { dispatcher } = makeServices({ paths: { sysfs }, hotplugTimeoutMs: 30, hotplugPollMs: 5 });
    const r = await call(dispatcher, ONLINE, { wait: true, nb_cpus: 8, cpu_only: false });
    expect(r.code).toBe(Code.DEADLINE_EXCEEDED);
    expect(r.message).toMatch(/only 4 of 8 CPUs online/);
    expect(mem(sysfs, 1)).toBe('0'); // as Kata: memory is not touched after the CPU step failed
  });

  it('wait=false is synchronous too (Kata Rust agent): a shortfall is DEADLINE_EXCEEDED', async () => {
    const sysfs = copyFixture('sysfs-basic');
    const { dispatcher } = makeServices({ paths: { sysfs }, hotplugTimeoutMs: 30, hotplugPollMs: 5 });
    const r = await call(dispatcher, ONLINE, { wait: false, nb_cpus: 8, cpu_only: true });
    expect(r.code).toBe(Code.DEADLINE_EXCEEDED);
    expect([cpu(sysfs, 2), cpu(sysfs, 3)]).toEqual(['1', '1']);
  });

  it('wait=false has the CPUs and memory online when the call returns', async () => {
    const sysfs = copyFixture('sysfs-basic');
    const { dispatcher } = makeServices({ paths: { sysfs } });
    expect((await call(dispatcher, ONLINE, { wait: false, nb_cpus: 4 })).code).toBe(Code.OK);
    expect([cpu(sysfs, 2), cpu(sysfs, 3), mem(sysfs, 1), mem(sysfs, 32)]).toEqual(['1', '1', '1', '1']);
  });

  it('stops waiting when the call is cancelled', async () => {
    const sysfs = copyFixture('sysfs-basic');
    const { dispatcher } = makeServices({ paths: { sysfs }, hotplugTimeoutMs: 60_000, hotplugPollMs: 5 });
    const ac = new AbortController();
    const pending = callObject(dispatcher, ONLINE, { wait: true, nb_cpus: 9 }, makeCtx(ac.signal));
    setTimeout(() => ac.abort(), 20);
    const r = await pending;
    expect(r.code).toBe(Code.CANCELLED);
  });

  it('reports a missing sysfs directory', async () => {
    const sysfs = tempDir();
    const { dispatcher } = makeServices({ paths: { sysfs } });
    const r = await call(dispatcher, ONLINE, { wait: true, nb_cpus: 0, cpu_only: false });
    expect(r.code).toBe(Code.NOT_FOUND);
    expect(r.message).toMatch(/devices\/system\/memory/);
  });

  it('validates nb_cpus', async () => {
    const { dispatcher } = makeServices({ paths: { sysfs: tempDir() } });
    const r = await callObject(dispatcher, ONLINE, { wait: true, nb_cpus: -1 });
    expect(r.code).toBe(Code.INVALID_ARGUMENT);
  });
});
