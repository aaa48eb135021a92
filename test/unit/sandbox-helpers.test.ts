// The sandbox's small parts: OOM queue, guest hooks, /proc/net/dev, the ps
// table, mountinfo questions, kernel modules, DNS and shared namespaces (with
// fakes for the syscalls and the processes they start).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { nullLogger } from '../../agent/src/log';
import type { RunResult } from '../../agent/src/proc/run';
import { Code, RpcError } from '../../agent/src/rpc/status';
import { resolvConfText, setupGuestDns } from '../../agent/src/sandbox/dns';
import { scanGuestHooks } from '../../agent/src/sandbox/guest-hooks';
import { loadKernelModule, validateKernelModules } from '../../agent/src/sandbox/kernel-modules';
import { isMountPoint, isOnSharedMount, mountOf, parseMountInfoFull, rootNeedsNoPivot } from '../../agent/src/sandbox/mounts';
import { Mutex } from '../../agent/src/sandbox/mutex';
import { parseNetDev } from '../../agent/src/sandbox/net-stats';
import { OomQueue } from '../../agent/src/sandbox/oom-queue';
import { filterPsOutput, formatCpuTime, formatStartTime, procStatInfo, psTable, ttyName } from '../../agent/src/sandbox/ps-table';
import { createSharedNamespaces } from '../../agent/src/sandbox/shared-ns';

const tmps: string[] = [];
function tmp(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-sbx-unit-'));
  tmps.push(d);
  return d;
}
afterEach(() => {
  for (const d of tmps.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function result(over: Partial<RunResult> = {}): RunResult {
  return { pid: 1, code: 0, stdout: '', stderr: '', ...over };
}

describe('OomQueue', () => {
  it('hands queued events out oldest first, and waiting polls the next event', async () => {
    const q = new OomQueue();
    q.push('a');
    q.push('b');
    expect(await q.next()).toBe('a');
    expect(await q.next()).toBe('b');
    const p = q.next();
    expect(q.polling).toBe(1);
    q.push('c');
    expect(await p).toBe('c');
    expect(q.size).toBe(0);
  });

  it('is bounded (oldest dropped), cancellable, and closes with an error', async () => {
    const q = new OomQueue(2);
    q.push('1');
    q.push('2');
    q.push('3');
    expect(q.dropped).toBe(1);
    expect(await q.next()).toBe('2');
    expect(await q.next()).toBe('3');
    const ac = new AbortController();
    const p = q.next(ac.signal);
    ac.abort();
    await expect(p).rejects.toMatchObject({ code: Code.CANCELLED });
    expect(q.polling).toBe(0);
    const waiting = q.next();
    q.close(new RpcError(Code.UNAVAILABLE, 'gone'));
    await expect(waiting).rejects.toMatchObject({ code: Code.UNAVAILABLE });
    await expect(q.next()).rejects.toMatchObject({ code: Code.UNAVAILABLE });
    q.push('late');
    expect(q.size).toBe(0);
  });
});

describe('Mutex', () => {
  it('runs jobs one at a time in call order, also after a failure', async () => {
    const m = new Mutex();
    const order: string[] = [];
    let release!: () => void;
    const a = m.run(async () => {
      order.push('a-start');
      await new Promise<void>((r) => (release = r));
      order.push('a-end');
    });
    const b = m.run(() => {
      order.push('b');
      throw new Error('b failed');
    });
    const c = m.run(() => order.push('c'));
    await Promise.resolve();
    expect(order).toEqual(['a-start']);
    release();
    await a;
    await expect(b).rejects.toThrow('b failed');
    await c;
    expect(order).toEqual(['a-start', 'a-end', 'b', 'c']);
    expect(m.pending).toBe(0);
  });
});

describe('scanGuestHooks', () => {
  it('takes executable regular files per hook type, sorted, with args [name, type] (as Kata)', () => {
    const d = tmp();
    fs.mkdirSync(path.join(d, 'prestart'));
    fs.mkdirSync(path.join(d, 'poststop'));
    fs.writeFileSync(path.join(d, 'prestart/b-hook'), '#!/bin/sh\n', { mode: 0o755 });
    fs.writeFileSync(path.join(d, 'prestart/a-hook'), '#!/bin/sh\n', { mode: 0o700 });
    fs.writeFileSync(path.join(d, 'prestart/plain'), 'x', { mode: 0o644 });
    fs.symlinkSync(path.join(d, 'prestart/a-hook'), path.join(d, 'prestart/link'));
    fs.mkdirSync(path.join(d, 'prestart/dir'));
    fs.writeFileSync(path.join(d, 'poststop/clean'), '#!/bin/sh\n', { mode: 0o755 });
    expect(scanGuestHooks(d)).toEqual({
      prestart: [
        { path: path.join(d, 'prestart/a-hook'), args: ['a-hook', 'prestart'] },
        { path: path.join(d, 'prestart/b-hook'), args: ['b-hook', 'prestart'] },
      ],
      poststop: [{ path: path.join(d, 'poststop/clean'), args: ['clean', 'poststop'] }],
    });
    expect(scanGuestHooks(path.join(d, 'missing'))).toEqual({});
  });
});

describe('parseNetDev', () => {
  const text = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  123456     100    0    0    0     0          0         0   123456     100    0    0    0     0       0          0
  eth0: 9876543   54321    1    2    0     0          0         7  1234567    4321    3    4    0     0       0          0
broken: 1 2 3
`;
  it('reads the counters of every interface but loopback', () => {
    expect(parseNetDev(text)).toEqual([
      { name: 'eth0', rx_bytes: 9876543, rx_packets: 54321, rx_errors: 1, rx_dropped: 2, tx_bytes: 1234567, tx_packets: 4321, tx_errors: 3, tx_dropped: 4 },
    ]);
    expect(parseNetDev(text, { includeLoopback: true }).map((s) => s.name)).toEqual(['lo', 'eth0']);
  });
});

describe('ps table', () => {
  function fakeProc(): string {
    const root = tmp();
    fs.writeFileSync(path.join(root, 'stat'), 'cpu  1 2 3\nbtime 1700000000\n');
    const proc = (pid: number, ppid: number, comm: string, cmdline: string, uid: number, tty: number, utime: number, start: number) => {
      const d = path.join(root, String(pid));
      fs.mkdirSync(d);
      // fields 3.. : state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime prio nice threads itreal starttime
      fs.writeFileSync(path.join(d, 'stat'), `${pid} (${comm}) S ${ppid} ${pid} ${pid} ${tty} -1 0 0 0 0 0 ${utime} 0 0 0 20 0 1 0 ${start} 0 0\n`);
      fs.writeFileSync(path.join(d, 'status'), `Name:\t${comm}\nUid:\t${uid}\t${uid}\t${uid}\t${uid}\n`);
      fs.writeFileSync(path.join(d, 'cmdline'), cmdline);
    };
    proc(42, 1, 'sleep', 'sleep\x001000\x00', 0, 0, 150, 100);
    proc(43, 42, 'my (weird) sh', '', 1000, (136 << 8) | 3, 6100 * 100, 200);
    return root;
  }

  it('builds `ps -ef` from /proc for the given pids (gone ones left out)', () => {
    const procRoot = fakeProc();
    const now = (1700000000 + 3600) * 1000;
    const out = psTable([43, 42, 99], { procRoot, clockTicks: 100, userName: (u) => (u === 0 ? 'root' : undefined), now: () => now });
    const lines = out.trimEnd().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[0]!.split(/\s+/)).toEqual(['UID', 'PID', 'PPID', 'C', 'STIME', 'TTY', 'TIME', 'CMD']);
    expect(lines[1]!.split(/\s+/).slice(0, 3)).toEqual(['root', '42', '1']);
    expect(lines[1]).toMatch(/ \?\s+00:00:01 sleep 1000$/);
    expect(lines[2]!.split(/\s+/).slice(0, 3)).toEqual(['1000', '43', '42']);
    expect(lines[2]).toMatch(/ pts\/3\s+01:41:40 \[my \(weird\) sh\]$/);
    // Kata's PID-column filter finds the same rows
    expect(filterPsOutput(out, [42]).trimEnd().split('\n')).toEqual([lines[0], lines[1]]);
  });

  it('formats like procps', () => {
    expect(procStatInfo('7 (a) b) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 99 0')).toMatchObject({ comm: 'a) b', ppid: 1, utime: 5, stime: 6, starttime: 99 });
    expect(ttyName(0)).toBe('?');
    expect(ttyName((136 << 8) | 7)).toBe('pts/7');
    expect(ttyName((4 << 8) | 1)).toBe('tty1');
    expect(ttyName((4 << 8) | 65)).toBe('ttyS1');
    expect(formatCpuTime(3725.9)).toBe('01:02:05');
    expect(formatCpuTime(2 * 86400 + 5)).toBe('2-00:00:05');
    const now = new Date(2024, 5, 15, 12, 0).getTime();
    expect(formatStartTime(new Date(2024, 5, 15, 9, 5).getTime(), now)).toBe('09:05');
    expect(formatStartTime(new Date(2024, 4, 3, 9, 5).getTime(), now)).toBe('May03');
    expect(formatStartTime(new Date(2022, 4, 3).getTime(), now)).toBe('2022');
    expect(() => filterPsOutput('NO HEADER\n1 2\n', [1])).toThrow(/PID/);
  });
});

describe('mountinfo', () => {
  const mi = [
    '21 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw',
    '30 21 0:25 / /run rw,nosuid shared:5 - tmpfs tmpfs rw',
    '31 30 0:26 / /run/priv rw - tmpfs tmpfs rw',
    '32 30 0:4 ipc:[4026532184] /run/x/ipc rw - nsfs nsfs rw',
    '33 21 0:27 / /with\\040space rw master:3 - tmpfs tmpfs rw',
  ].join('\n');
  const e = parseMountInfoFull(mi);

  it('parses the optional fields and finds the mount of a path', () => {
    expect(e[0]).toMatchObject({ id: 21, parent: 1, mountPoint: '/', optional: ['shared:1'], fstype: 'ext4', source: '/dev/vda' });
    expect(e[4]!.mountPoint).toBe('/with space');
    expect(mountOf(e, '/run/kata/x')?.id).toBe(30);
    expect(mountOf(e, '/run/private')?.id).toBe(30);
    expect(mountOf(e, '/run/priv/a')?.id).toBe(31);
    expect(mountOf(e, '/etc')?.id).toBe(21);
    expect(isOnSharedMount(e, '/run/kata')).toBe(true);
    expect(isOnSharedMount(e, '/run/priv/ns')).toBe(false);
    expect(isMountPoint(e, '/run/x/ipc')).toBe(true);
    expect(isMountPoint(e, '/run/x')).toBe(false);
  });

  it('asks for --no-pivot only on an initramfs root', () => {
    expect(rootNeedsNoPivot(e)).toBe(false);
    expect(rootNeedsNoPivot(parseMountInfoFull('1 1 0:2 / / rw - rootfs rootfs rw'))).toBe(true);
    expect(rootNeedsNoPivot(parseMountInfoFull('1 0 0:2 / / rw - tmpfs rootfs rw'))).toBe(true);
    expect(rootNeedsNoPivot(parseMountInfoFull('5 5 0:2 / / rw - ramfs none rw'))).toBe(true);
    expect(rootNeedsNoPivot(parseMountInfoFull('25 1 0:22 / / rw - tmpfs tmpfs rw'))).toBe(false);
    expect(rootNeedsNoPivot([])).toBe(false);
  });
});

describe('kernel modules', () => {
  it('runs `modprobe -v -- NAME PARAMS...` and classifies failures', async () => {
    const calls: string[][] = [];
    await loadKernelModule({ name: 'vfio', parameters: ['-x=1', 'b=2'] }, async (f, a) => {
      calls.push([f, ...a]);
      return result();
    });
    expect(calls).toEqual([['modprobe', '-v', '--', 'vfio', '-x=1', 'b=2']]);
    const notFound = loadKernelModule({ name: 'nope', parameters: [] }, async () =>
      result({ code: 1, stderr: 'modprobe: FATAL: Module nope not found in directory /lib/modules/6.1\n' }),
    );
    await expect(notFound).rejects.toMatchObject({ code: Code.NOT_FOUND, message: expect.stringMatching(/nope: modprobe failed \(exit code 1\): modprobe: FATAL/) });
    const other = loadKernelModule({ name: 'm', parameters: [] }, async () => result({ code: 1, stderr: 'Operation not permitted' }));
    await expect(other).rejects.toMatchObject({ code: Code.INTERNAL });
    const missing = loadKernelModule({ name: 'm', parameters: [] }, async () => {
      throw Object.assign(new Error('posix_spawn modprobe: ENOENT'), { code: 'ENOENT' });
    });
    await expect(missing).rejects.toMatchObject({ code: Code.FAILED_PRECONDITION, message: expect.stringMatching(/modprobe is not installed/) });
  });

  it('refuses empty or path-like module names', () => {
    expect(() => validateKernelModules([{ name: '', parameters: [] }])).toThrow(/kernel_modules\[0\]\.name is empty/);
    expect(() => validateKernelModules([{ name: 'ok', parameters: [] }, { name: '../x', parameters: [] }])).toThrow(/kernel_modules\[1\]/);
    expect(() => validateKernelModules([{ name: 'ok', parameters: ['a\0b'] }])).toThrow(/NUL/);
  });
});

describe('setupGuestDns', () => {
  it('writes the lines and binds them over the target (created when missing); undo reverts both', () => {
    const d = tmp();
    const src = path.join(d, 'sandbox/resolv.conf');
    const dst = path.join(d, 'etc/resolv.conf');
    const mounts: string[] = [];
    const undo = setupGuestDns([' nameserver 1.1.1.1 ', 'search x'], src, dst, {
      mount: (s, t, _f, flags) => void mounts.push(`bind ${s} ${t} ${flags}`),
      umount2: (t) => void mounts.push(`umount ${t}`),
    });
    expect(fs.readFileSync(src, 'utf8')).toBe('nameserver 1.1.1.1\nsearch x\n');
    expect(fs.existsSync(dst)).toBe(true);
    expect(mounts).toEqual([`bind ${src} ${dst} 4096`]);
    undo();
    expect(mounts.at(-1)).toBe(`umount ${dst}`);
    expect(fs.existsSync(dst)).toBe(false);
    expect(fs.existsSync(src)).toBe(false);
    expect(resolvConfText(['a'])).toBe('a\n');
  });

  it('refuses a directory target and multi-line entries', () => {
    const d = tmp();
    const fakes = { mount: () => undefined, umount2: () => undefined };
    expect(() => setupGuestDns(['x'], path.join(d, 's'), d, fakes)).toThrow(/is a directory/);
    expect(() => setupGuestDns(['a\nb'], path.join(d, 's'), path.join(d, 'r'), fakes)).toThrow(/dns\[0\]/);
  });
});

describe('createSharedNamespaces', () => {
  it('creates the files, runs `unshare --ipc=F --uts=F true`, checks they became nsfs mounts; cleanup undoes', async () => {
    const d = tmp();
    const dir = path.join(d, 'ns');
    let mountinfo = `21 1 8:1 / / rw shared:1 - ext4 /dev/vda rw\n`;
    const ops: string[] = [];
    const ns = await createSharedNamespaces(dir, ['ipc', 'uts'], {
      run: async (file, args) => {
        ops.push([file, ...args].join(' '));
        for (const k of ['ipc', 'uts']) {
          expect(fs.statSync(path.join(dir, k)).isFile()).toBe(true);
          mountinfo += `40 21 0:4 ${k}:[1] ${path.join(dir, k)} rw - nsfs nsfs rw\n`;
        }
        return result();
      },
      mount: (s, t, _f, flags) => void ops.push(`mount ${s} ${t} ${flags}`),
      umount2: (t) => void ops.push(`umount ${t}`),
      mountInfo: () => mountinfo,
      log: nullLogger(),
    });
    expect(ns.paths).toEqual({ ipc: path.join(dir, 'ipc'), uts: path.join(dir, 'uts') });
    // the directory was on a shared mount: bound onto itself and made private first
    expect(ops).toEqual([
      `mount ${dir} ${dir} 4096`,
      `mount null ${dir} ${1 << 18}`,
      `unshare --ipc=${dir}/ipc --uts=${dir}/uts true`,
    ]);
    ns.cleanup();
    expect(ops.slice(3)).toEqual([`umount ${dir}/uts`, `umount ${dir}/ipc`, `umount ${dir}`]);
    expect(fs.existsSync(dir)).toBe(false);
  });

  it('fails clearly when unshare is missing or the files are not namespaces afterwards, leaving nothing', async () => {
    const d = tmp();
    const base = {
      mount: () => undefined,
      umount2: () => undefined,
      mountInfo: () => '21 1 8:1 / / rw - ext4 /dev/vda rw\n',
      log: nullLogger(),
    };
    const missing = createSharedNamespaces(path.join(d, 'a'), ['ipc'], {
      ...base,
      run: async () => {
        throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
      },
    });
    await expect(missing).rejects.toMatchObject({ code: Code.FAILED_PRECONDITION, message: expect.stringMatching(/unshare/) });
    expect(fs.existsSync(path.join(d, 'a'))).toBe(false);
    const failed = createSharedNamespaces(path.join(d, 'b'), ['ipc'], { ...base, run: async () => result({ code: 1, stderr: 'unshare: mount failed: Invalid argument' }) });
    await expect(failed).rejects.toMatchObject({ code: Code.INTERNAL, message: expect.stringMatching(/Invalid argument/) });
    const notNs = createSharedNamespaces(path.join(d, 'c'), ['ipc'], { ...base, run: async () => result() });
    await expect(notNs).rejects.toMatchObject({ message: expect.stringMatching(/is not a namespace file/) });
    expect(fs.readdirSync(d)).toEqual([]);
  });
});
