import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../agent/src/config';
import {
  DEFAULT_PATH,
  guard,
  installSignalHandlers,
  mountProcForCmdline,
  runInit,
  setHostnameFromEtc,
  setupConsole,
  setupEnvironment,
  shutdown,
  type InitContext,
} from '../../agent/src/init';
import { RB } from '../../agent/src/sys/misc';
import { MS } from '../../agent/src/sys/mount';
import { captureLogger, FakeInitSys, type FakeOptions } from '../helpers/init-fake';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixture = (name: string) => fs.readFileSync(path.join(here, '../fixtures/init', name), 'utf8');

function setup(opts: FakeOptions = {}) {
  const sys = new FakeInitSys(opts);
  const { log, lines } = captureLogger();
  const ctx: InitContext = { sys, log, root: opts.root ?? '/' };
  return { sys, log, lines, ctx };
}

const POWER_OFF = `reboot 0x${(RB.POWER_OFF >>> 0).toString(16)}`;

describe('setupConsole', () => {
  it('fd 0 is a tty: setsid then TIOCSCTTY on fd 0', () => {
    const { sys, ctx } = setup({ isatty0: true });
    expect(setupConsole(ctx)).toEqual({ sessionLeader: true, tty: 'fd0', errors: [] });
    expect(sys.calls).toEqual(['setsid', 'TIOCSCTTY 0']);
  });

  it('fd 0 is not a tty: opens /dev/console and makes it the controlling tty', () => {
    const { sys, ctx } = setup();
    expect(setupConsole(ctx)).toMatchObject({ sessionLeader: true, tty: '/dev/console' });
    expect(sys.calls).toEqual(['setsid', 'open /dev/console', 'TIOCSCTTY 10']);
  });

  it('TIOCSCTTY on fd 0 failing falls back to /dev/console', () => {
    let n = 0;
    const { sys, ctx } = setup({ isatty0: true });
    const orig = sys.setControllingTty.bind(sys);
    sys.setControllingTty = (fd) => {
      orig(fd);
      if (n++ === 0) throw new Error('EPERM');
    };
    expect(setupConsole(ctx).tty).toBe('/dev/console');
    expect(sys.calls).toEqual(['setsid', 'TIOCSCTTY 0', 'open /dev/console', 'TIOCSCTTY 10']);
  });

  it('no console at all: failures are logged, nothing throws', () => {
    const { ctx, lines } = setup({ fail: ['setsid', 'openConsole'] });
    const r = setupConsole(ctx);
    expect(r.sessionLeader).toBe(false);
    expect(r.tty).toBeUndefined();
    expect(r.errors).toHaveLength(2);
    expect(lines.filter((l) => l.level === 'warn').map((l) => l.msg)).toEqual([
      'setsid failed',
      'no controlling terminal (cannot use /dev/console)',
    ]);
  });
});

describe('setupEnvironment', () => {
  it('fills PATH and HOME when unset or empty, keeps existing values', () => {
    const env: Record<string, string | undefined> = { PATH: '', TERM: 'linux' };
    expect(setupEnvironment(env)).toEqual(['PATH', 'HOME']);
    expect(env).toEqual({ PATH: DEFAULT_PATH, HOME: '/', TERM: 'linux' });
    expect(DEFAULT_PATH).toBe('/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin');

    const env2: Record<string, string | undefined> = { PATH: '/opt/bin', HOME: '/root' };
    expect(setupEnvironment(env2)).toEqual([]);
    expect(env2).toEqual({ PATH: '/opt/bin', HOME: '/root' });
  });
});

describe('setHostnameFromEtc', () => {
  it('uses the first word of /etc/hostname', () => {
    const { sys, ctx } = setup({ files: { '/etc/hostname': '  guest-1 extra\n' } });
    expect(setHostnameFromEtc(ctx)).toBe('guest-1');
    expect(sys.calls).toEqual(['sethostname guest-1']);
  });
  it('defaults to localhost', () => {
    const { sys, ctx } = setup({ files: { '/etc/hostname': '\n' } });
    expect(setHostnameFromEtc(ctx)).toBe('localhost');
    expect(setup().sys.calls).toEqual([]);
    expect(sys.calls).toEqual(['sethostname localhost']);
  });
  it('a failure is logged', () => {
    const { ctx, lines } = setup({ fail: ['sethostname'] });
    expect(setHostnameFromEtc(ctx)).toBeUndefined();
    expect(lines.some((l) => l.level === 'warn' && l.msg === 'cannot set host name')).toBe(true);
  });
});

describe('shutdown', () => {
  it('as PID 1: sync, then reboot(RB_POWER_OFF); never exit', () => {
    const { sys, log } = setup();
    expect(shutdown('test', { log, sys, pid: 1 })).toBe('poweroff');
    expect(sys.calls).toEqual(['sync', POWER_OFF]);
  });

  it('as PID 1 when reboot fails: falls back to sysrq "o"', () => {
    const { sys, log, lines } = setup({ fail: ['reboot', 'sync'] });
    expect(shutdown('test', { log, sys, pid: 1 })).toBe('sysrq');
    expect(sys.calls).toEqual(['sync', POWER_OFF, 'write /proc/sysrq-trigger "o"']);
    expect(lines.some((l) => l.level === 'error' && String(l.msg).includes('sysrq'))).toBe(true);
  });

  it('as PID 1 when everything fails: logs fatal, returns, never exits', () => {
    const { sys, log, lines } = setup({ fail: ['reboot'], failWrite: () => 'EACCES' });
    expect(shutdown('test', { log, sys, pid: 1 })).toBe('failed');
    expect(sys.callsOf('exit')).toEqual([]);
    expect(lines.some((l) => l.level === 'fatal')).toBe(true);
  });

  it('not PID 1: just exit(0)', () => {
    const { sys, log, lines } = setup();
    expect(shutdown('bye', { log, sys, pid: 4242 })).toBe('exit');
    expect(sys.calls).toEqual(['exit 0']);
    expect(lines.find((l) => l.msg === 'shutting down')).toMatchObject({ reason: 'bye', pid: 4242 });
  });
});

describe('installSignalHandlers / guard', () => {
  it('SIGTERM and SIGINT call onShutdown; the remover detaches them', () => {
    const proc = new EventEmitter();
    const got: string[] = [];
    const remove = installSignalHandlers((s) => got.push(s), proc);
    proc.emit('SIGTERM');
    proc.emit('SIGINT');
    proc.emit('SIGHUP');
    expect(got).toEqual(['SIGTERM', 'SIGINT']);
    remove();
    expect(proc.listenerCount('SIGTERM') + proc.listenerCount('SIGINT')).toBe(0);
  });

  it('guard logs uncaught exceptions and rejections at fatal level', () => {
    const proc = new EventEmitter();
    const { log, lines } = captureLogger();
    const remove = guard(log, proc);
    proc.emit('uncaughtException', new Error('boom'), 'uncaughtException');
    proc.emit('unhandledRejection', new Error('nope'), Promise.resolve());
    const fatal = lines.filter((l) => l.level === 'fatal');
    expect(fatal.map((l) => l.msg)).toEqual(['uncaught exception; continuing', 'unhandled promise rejection; continuing']);
    expect((fatal[0]!.err as { message: string }).message).toBe('boom');
    expect((fatal[1]!.err as { message: string }).message).toBe('nope');
    remove();
    expect(proc.listenerCount('uncaughtException') + proc.listenerCount('unhandledRejection')).toBe(0);
  });

  it('a guard whose logger throws still swallows the error', () => {
    const proc = new EventEmitter();
    const broken = { fatal: () => { throw new Error('log down'); } } as unknown as Parameters<typeof guard>[0];
    guard(broken, proc);
    expect(() => proc.emit('uncaughtException', new Error('x'))).not.toThrow();
  });
});

describe('runInit', () => {
  const cfg = loadConfig({}).config;

  it('not PID 1: only becomes a child subreaper', () => {
    const { sys, log } = setup();
    const s = runInit(cfg, log, sys, { pid: 1234 });
    expect(s.mode).toBe('subreaper');
    expect(sys.calls).toEqual(['subreaper']);
    expect(s.mounts).toEqual([]);
  });

  it('PID 1 with --no-init: subreaper only, no mounts', () => {
    const { sys, log } = setup();
    const s = runInit({ ...cfg, noInit: true }, log, sys, { pid: 1 });
    expect(s.mode).toBe('no-init');
    expect(sys.calls).toEqual(['subreaper']);
  });

  it('subreaper failure is reported, not thrown', () => {
    const { sys, log } = setup({ fail: ['setChildSubreaper'] });
    expect(runInit(cfg, log, sys, { pid: 99 }).errors).toEqual([expect.stringMatching(/^set child subreaper: /)]);
  });

  it('PID 1: mounts, cgroups, console, hostname, env, handlers; summary', () => {
    const { sys, log, lines } = setup({
      files: {
        '/dev/ptmx': 'c',
        '/etc/hostname': 'vm\n',
        '/sys/fs/cgroup/cgroup.controllers': fixture('cgroup.controllers'),
      },
    });
    const proc = new EventEmitter();
    const env: Record<string, string | undefined> = {};
    const got: string[] = [];
    const s = runInit(cfg, log, sys, { pid: 1, proc, env, onShutdown: (sig) => got.push(sig) });
    try {
      expect(s.mode).toBe('pid1');
      expect(s.mounted).toEqual(['/proc', '/sys', '/dev', '/dev/pts', '/dev/shm', '/run', '/sys/fs/cgroup']);
      expect(s.skipped).toEqual([]);
      expect(s.failed).toEqual([]);
      expect(s.errors).toEqual([]);
      expect(s.controllersEnabled).toHaveLength(8);
      expect(s.tty).toBe('/dev/console');
      expect(s.hostname).toBe('vm');
      expect(s.envSet).toEqual(['PATH', 'HOME']);
      expect(env.PATH).toBe(DEFAULT_PATH);
      // order: early mounts before the cgroup mount (needs /sys), console after mounts (needs /dev)
      const idx = (p: string) => sys.calls.findIndex((c) => c.startsWith(p));
      expect(idx('mount sysfs')).toBeLessThan(idx('mount cgroup2'));
      expect(idx('mount dev ')).toBeLessThan(idx('open /dev/console'));
      expect(sys.calls).not.toContain('subreaper');
      // signal handlers and guard are installed on the given process object
      proc.emit('SIGTERM');
      expect(got).toEqual(['SIGTERM']);
      proc.emit('uncaughtException', new Error('late'));
      expect(lines.some((l) => l.level === 'fatal' && (l.err as { message: string }).message === 'late')).toBe(true);
      expect(lines.at(-2)?.msg).toBe('init done');
    } finally {
      s.uninstall();
    }
    expect(proc.eventNames()).toEqual([]);
  });

  it('PID 1 without onShutdown: SIGTERM powers off through shutdown()', () => {
    const { sys, log } = setup();
    const proc = new EventEmitter();
    const s = runInit(cfg, log, sys, { pid: 1, proc, env: {} });
    sys.calls.length = 0;
    proc.emit('SIGTERM');
    expect(sys.calls).toEqual(['sync', POWER_OFF]);
    s.uninstall();
  });

  it('PID 1 with v1 cgroups and failures: failures summarised, never thrown', () => {
    const { sys, log } = setup({
      files: { '/proc/cgroups': 'cpu\t0\t1\t1\nmemory\t0\t1\t1\n' },
      failMount: (m) => (m.fstype === 'sysfs' || m.data === 'memory' ? 'EPERM' : undefined),
      fail: ['openConsole', 'sethostname'],
    });
    const { config } = loadConfig({ cmdline: 'systemd.unified_cgroup_hierarchy=0' });
    const s = runInit(config, log, sys, { pid: 1, proc: new EventEmitter(), env: {} });
    expect(s.failed).toEqual(['/sys', '/sys/fs/cgroup/memory']);
    expect(s.mounted).toEqual(['/proc', '/dev', '/dev/pts', '/dev/shm', '/run', '/sys/fs/cgroup', '/sys/fs/cgroup/cpu']);
    expect(s.errors).toEqual([
      expect.stringMatching(/^mount sysfs on \/sys: .*EPERM/),
      expect.stringMatching(/^mount cgroup on \/sys\/fs\/cgroup\/memory: .*EPERM/),
      expect.stringMatching(/^\/dev\/console: /),
      'sethostname failed',
    ]);
    s.uninstall();
  });
});

describe('mountProcForCmdline (PID 1 reads agent.* options from /proc/cmdline before init)', () => {
  it('as PID 1 without /proc mounted: mounts proc at /proc (creating it), nothing else', () => {
    const sys = new FakeInitSys({ root: '/r' });
    expect(mountProcForCmdline(sys, 1, '/r')).toBeUndefined();
    expect(sys.calls).toEqual(['mkdir /r/proc 555', `mount proc /r/proc proc 0x${(MS.NOSUID | MS.NODEV | MS.NOEXEC).toString(16)} null`]);
  });

  it('leaves a mounted /proc alone, and does nothing when not PID 1', () => {
    const mounted = new FakeInitSys({ dirs: ['/proc', '/proc/self'] });
    expect(mountProcForCmdline(mounted, 1)).toBeUndefined();
    expect(mounted.calls).toEqual([]);
    const notInit = new FakeInitSys();
    expect(mountProcForCmdline(notInit, 42)).toBeUndefined();
    expect(notInit.calls).toEqual([]);
  });

  it('a failed mount is reported, not thrown', () => {
    const sys = new FakeInitSys({ dirs: ['/proc'], failMount: () => 'EPERM' });
    expect(mountProcForCmdline(sys, 1)).toBe('cannot mount /proc to read the kernel command line: mount /proc: EPERM');
  });

  it('runInit then finds /proc mounted and skips it', () => {
    const sys = new FakeInitSys({ files: { '/etc/hostname': 'h\n' } });
    mountProcForCmdline(sys, 1);
    const { log } = captureLogger();
    const summary = runInit(loadConfig({ cmdline: '', env: {}, argv: [] }).config, log, sys, { pid: 1, env: {}, proc: new EventEmitter() as never });
    expect(summary.skipped).toContain('/proc');
    expect(summary.mounted).not.toContain('/proc');
    summary.uninstall();
  });
});
