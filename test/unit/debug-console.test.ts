// The debug console's logic with a fake Spawner and fake kill: no process is
// started. Listening sessions use real pseudo-terminals (no root needed); the
// fake "shell" holds the pty slave itself, like a real shell would.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  findShell,
  startDebugConsole,
  type DebugConsole,
  type DebugConsoleDeps,
  type DebugConsoleOptions,
} from '../../agent/src/console/debug-console';
import { ownedFdSocket } from '../../agent/src/transport/handles';
import { createLogger } from '../../agent/src/log';
import type { ExitStatus } from '../../agent/src/proc/reaper';
import type { SpawnedProcess, SpawnOptions } from '../../agent/src/proc/spawner';
import { SysError } from '../../agent/src/sys/libc';
import { openPty, openPtySlave } from '../../agent/src/sys/pty';

const SIGKILL = os.constants.signals.SIGKILL;
const DEADLINE_MS = 10_000;

async function eventually(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + DEADLINE_MS;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

function captureLog(): { log: ReturnType<typeof createLogger>; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const log = createLogger('debug', { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  return { log, lines };
}

interface FakeProc extends SpawnedProcess {
  opts: SpawnOptions;
  exit(code?: number, signal?: number): void;
  /** The fake shell's end of the terminal (listen mode). */
  term?: net.Socket;
}

class FakeSpawner {
  procs: FakeProc[] = [];
  failWith?: Error;
  private next = 4_000_000;
  constructor(private readonly openTerm: boolean) {}
  spawn(opts: SpawnOptions): SpawnedProcess {
    if (this.failWith) throw this.failWith;
    let resolveExit!: (st: ExitStatus) => void;
    const pid = this.next++;
    const p: FakeProc = {
      pid,
      opts: { ...opts, args: [...opts.args] },
      exited: new Promise<ExitStatus>((r) => (resolveExit = r)),
      exit: (code = 0, signal?: number) => {
        p.term?.destroy();
        resolveExit({ pid, code: signal ? 128 + signal : code, signal, raw: 0 });
      },
    };
    if (this.openTerm) {
      // Like the real child: open the slave by the path the spawn options name.
      const tty = opts.stdin as { open: string };
      p.term = ownedFdSocket(openPtySlave(tty.open));
      p.term.setEncoding('utf8');
      p.term.on('error', () => undefined);
    }
    this.procs.push(p);
    return p;
  }
}

const open: Array<{ close(): Promise<void> }> = [];
const temps: string[] = [];
afterEach(async () => {
  for (const o of open.splice(0)) await o.close();
  for (const d of temps.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function tmpAddress(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'dcu-'));
  temps.push(d);
  return `unix://${path.join(d, 's')}`;
}

interface Harness {
  dc: DebugConsole;
  spawner: FakeSpawner;
  kills: Array<[number, number]>;
  lines: Array<Record<string, unknown>>;
}

async function start(
  opts: Partial<DebugConsoleOptions> & { openTerm?: boolean },
  deps: Partial<DebugConsoleDeps> = {},
): Promise<Harness> {
  const spawner = new FakeSpawner(opts.openTerm ?? true);
  const kills: Array<[number, number]> = [];
  const { log, lines } = captureLog();
  const dc = await startDebugConsole({
    shells: ['/bin/sh'],
    drainMs: 200,
    ...opts,
    spawner,
    log,
    deps: {
      isExecutable: () => true,
      kill: (pid, sig) => {
        kills.push([pid, sig]);
        // Killing the group ends the fake shell.
        spawner.procs.find((p) => -p.pid === pid)?.exit(128 + sig, sig);
      },
      ...deps,
    },
  });
  open.push(dc);
  return { dc, spawner, kills, lines };
}

async function connect(address: string): Promise<{ sock: net.Socket; out: () => string; closed: Promise<void> }> {
  const sock = net.connect(address.replace(/^unix:\/\//, ''));
  let out = '';
  sock.setEncoding('utf8');
  sock.on('data', (d: string) => (out += d));
  sock.on('error', () => undefined);
  const closed = new Promise<void>((r) => sock.once('close', () => r()));
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  return { sock, out: () => out, closed };
}

describe('findShell', () => {
  it('picks the first usable shell of the list', () => {
    const usable = (p: string): boolean => p === '/b' || p === '/c';
    expect(findShell(['/a', '/b', '/c'], usable)).toBe('/b');
    expect(findShell(['', '/c'], () => true)).toBe('/c');
    expect(findShell(['/a'], usable)).toBeUndefined();
    expect(findShell([], usable)).toBeUndefined();
  });

  it('checks for an executable regular file by default', () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), 'dcu-sh-'));
    temps.push(d);
    const plain = path.join(d, 'plain');
    fs.writeFileSync(plain, '#!/bin/sh\n', { mode: 0o644 });
    const exe = path.join(d, 'exe');
    fs.writeFileSync(exe, '#!/bin/sh\n', { mode: 0o755 });
    // Root may execute any file with an x bit: the plain one has none.
    expect(findShell([path.join(d, 'missing'), d, plain, exe])).toBe(exe);
  });

});

describe('listening sessions (fake shell on a real pty)', () => {
  it('spawns the shell as a session leader on the pty, with the console environment', async () => {
    const h = await start({ listenAddress: tmpAddress(), shells: ['/nope', '/bin/sh'] }, { isExecutable: (p) => p === '/bin/sh' });
    const c = await connect(h.dc.address);
    await eventually(() => h.spawner.procs.length === 1, 'a spawn');
    const o = h.spawner.procs[0]!.opts;
    expect(o.file).toBe('/bin/sh');
    expect(o.setsid).toBe(true);
    expect(o.cwd).toBe('/');
    // The child opens its pty itself (after setsid), so it becomes the controlling terminal.
    expect(o.stdin).toEqual({ open: expect.stringMatching(/^\/dev\/pts\/\d+$/), flags: fs.constants.O_RDWR });
    expect(o.stdout).toEqual(o.stdin);
    expect(o.stderr).toEqual(o.stdin);
    expect(o.args).toEqual(['/bin/sh', '-i']);
    expect(o.env).toEqual(expect.arrayContaining(['TERM=vt100', 'HOME=/']));
    expect(o.env!.some((e) => e.startsWith('PATH=/'))).toBe(true);
    c.sock.destroy();
  });

  it('copies bytes both ways and ends when the shell exits, killing its group once', async () => {
    const h = await start({ listenAddress: tmpAddress() });
    const c = await connect(h.dc.address);
    await eventually(() => h.spawner.procs.length === 1, 'a spawn');
    const p = h.spawner.procs[0]!;
    let shellIn = '';
    p.term!.on('data', (d: string) => (shellIn += d));

    c.sock.write('hello\n');
    await eventually(() => shellIn.includes('hello\n'), 'host bytes at the shell');
    p.term!.write('world\n');
    await eventually(() => c.out().includes('world\r\n'), 'shell bytes at the host'); // ONLCR
    expect(c.out()).toContain('hello\r\n'); // the terminal echoes input

    p.term!.write('bye\n');
    p.exit(0);
    await c.closed;
    expect(c.out()).toContain('bye\r\n'); // output written before the exit is not lost
    await eventually(() => h.lines.some((l) => l.msg === 'debug console session ended'), 'end log');
    expect(h.kills).toEqual([[-p.pid, SIGKILL]]);
  });

  it('kills the shell group when the host disconnects', async () => {
    const h = await start({ listenAddress: tmpAddress() });
    const c = await connect(h.dc.address);
    await eventually(() => h.spawner.procs.length === 1, 'a spawn');
    const p = h.spawner.procs[0]!;
    c.sock.destroy();
    await eventually(() => h.kills.length > 0, 'a kill');
    await p.exited;
    expect(h.kills).toEqual([[-p.pid, SIGKILL]]);
    const ended = h.lines.find((l) => l.msg === 'debug console session ended');
    expect(ended?.reason).toBe('host disconnected');
    await eventually(() => h.lines.some((l) => l.msg === 'debug console shell exited'), 'exit log');
  });

  it('delivers bulk shell output completely to a slow host', async () => {
    const h = await start({ listenAddress: tmpAddress() });
    const c = await connect(h.dc.address);
    await eventually(() => h.spawner.procs.length === 1, 'a spawn');
    const p = h.spawner.procs[0]!;
    c.sock.pause();
    const size = 1 << 20;
    const written = new Promise<void>((r) => p.term!.write('x'.repeat(size), () => r()));
    await new Promise((r) => setTimeout(r, 50));
    c.sock.resume();
    await written;
    await eventually(() => c.out().length >= size, `${size} bytes at the host`);
    expect(c.out()).toBe('x'.repeat(size));
    c.sock.destroy();
  });

  it('tells the host and the log when no shell exists, and keeps listening', async () => {
    const h = await start({ listenAddress: tmpAddress(), shells: ['/x/bash', '/x/sh'] }, { isExecutable: () => false });
    expect(h.lines.some((l) => String(l.msg).includes('no shell found (tried /x/bash, /x/sh)'))).toBe(true);
    for (let i = 0; i < 2; i++) {
      const c = await connect(h.dc.address);
      await c.closed;
      expect(c.out()).toContain('debug console: no shell found (tried /x/bash, /x/sh)');
    }
    expect(h.spawner.procs).toHaveLength(0);
    expect(h.lines.filter((l) => l.level === 'error').length).toBe(3); // start-up + one per session
  });

  it('reports a spawn failure to the host without leaking fds', async () => {
    const h = await start({ listenAddress: tmpAddress() });
    h.spawner.failWith = new SysError('posix_spawn', os.constants.errno.ENOENT, '/bin/sh');
    const once = async (): Promise<string> => {
      const c = await connect(h.dc.address);
      await c.closed;
      return c.out();
    };
    expect(await once()).toMatch(/cannot start \/bin\/sh: posix_spawn \/bin\/sh: ENOENT/);
    const before = fs.readdirSync('/proc/self/fd').length;
    for (let i = 0; i < 5; i++) await once();
    // The agent's side of each refused connection closes once the host closed its side.
    await eventually(() => fs.readdirSync('/proc/self/fd').length === before, `fd count back to ${before}`);
    // Then a working spawn.
    h.spawner.failWith = undefined;
    const c = await connect(h.dc.address);
    await eventually(() => h.spawner.procs.length === 1, 'a spawn');
    c.sock.destroy();
  });

  it('close() ends open sessions and kills their shells', async () => {
    const h = await start({ listenAddress: tmpAddress() });
    const c = await connect(h.dc.address);
    await eventually(() => h.spawner.procs.length === 1, 'a spawn');
    await h.dc.close();
    await c.closed;
    expect(h.kills).toEqual([[-h.spawner.procs[0]!.pid, SIGKILL]]);
  });
});

describe('serial console mode (fakes)', () => {
  function consoleDeps(): { deps: Partial<DebugConsoleDeps>; opened: number[]; closed: number[] } {
    const opened: number[] = [];
    const closed: number[] = [];
    return {
      opened,
      closed,
      deps: {
        openConsole: () => {
          const fd = fs.openSync('/dev/null', 'r+');
          opened.push(fd);
          return fd;
        },
        close: (fd) => {
          closed.push(fd);
          fs.closeSync(fd);
        },
      },
    };
  }

  it('runs `shell -i` on the console in its own session and respawns it', async () => {
    const cd = consoleDeps();
    const h = await start({ console: '/dev/fake-console', respawnDelayMs: 1, openTerm: false }, cd.deps);
    expect(h.dc.mode).toBe('serial');
    expect(h.spawner.procs).toHaveLength(1);
    const o = h.spawner.procs[0]!.opts;
    expect(o.args).toEqual(['/bin/sh', '-i']);
    expect(o.stdin).toBe(cd.opened[0]);
    expect(o.stdout).toBe(cd.opened[0]);
    expect(o.stderr).toBe(cd.opened[0]);
    expect(o.setsid).toBe(true);
    expect(cd.closed).toEqual([cd.opened[0]]); // the agent keeps no console fd

    h.spawner.procs[0]!.exit(0);
    await eventually(() => h.spawner.procs.length === 2, 'a respawn');
    expect(cd.opened).toHaveLength(2); // reopened for every shell
    await h.dc.close();
    expect(h.kills).toEqual([[-h.spawner.procs[1]!.pid, SIGKILL]]);
    await new Promise((r) => setTimeout(r, 20));
    expect(h.spawner.procs).toHaveLength(2); // nothing after close
  });

  it('keeps retrying while no shell exists, logging the error once', async () => {
    const cd = consoleDeps();
    let have = false;
    const h = await start(
      { console: '/dev/fake-console', respawnDelayMs: 1, maxRespawnDelayMs: 5, openTerm: false },
      { ...cd.deps, isExecutable: () => have },
    );
    await eventually(() => h.lines.filter((l) => String(l.msg).includes('no shell found')).length >= 2, 'errors');
    await new Promise((r) => setTimeout(r, 30));
    // Start-up line + one for the repeating failure, however many retries happened.
    expect(h.lines.filter((l) => String(l.msg).includes('no shell found'))).toHaveLength(2);
    expect(h.spawner.procs).toHaveLength(0);
    have = true;
    await eventually(() => h.spawner.procs.length === 1, 'a shell once one exists');
  });

  it('survives spawn failures and console open failures', async () => {
    const cd = consoleDeps();
    let consoleOk = false;
    const h = await start(
      { console: '/dev/fake-console', respawnDelayMs: 1, maxRespawnDelayMs: 5, openTerm: false },
      {
        ...cd.deps,
        openConsole: (p) => {
          if (!consoleOk) throw new SysError('open', os.constants.errno.ENOENT, p);
          return cd.deps.openConsole!(p);
        },
      },
    );
    await eventually(() => h.lines.some((l) => String(l.msg).includes('cannot open /dev/fake-console')), 'open error');
    h.spawner.failWith = new SysError('posix_spawn', os.constants.errno.EACCES, '/bin/sh');
    consoleOk = true;
    await eventually(() => h.lines.some((l) => String(l.msg).includes('cannot start /bin/sh')), 'spawn error');
    expect(cd.closed).toEqual(cd.opened.slice(0, cd.closed.length)); // each opened fd closed again
    h.spawner.failWith = undefined;
    await eventually(() => h.spawner.procs.length === 1, 'a shell');
  });
});

describe('openPty', () => {
  it('returns a non-blocking close-on-exec master and its slave path', () => {
    const pty = openPty();
    try {
      expect(pty.slavePath).toMatch(/^\/dev\/pts\/\d+$/);
      const flags = fs.readFileSync(`/proc/self/fdinfo/${pty.master}`, 'utf8').match(/flags:\s+(\d+)/)![1]!;
      const f = parseInt(flags, 8);
      expect(f & 0o4000).toBe(0o4000); // O_NONBLOCK
      expect(f & 0o2000000).toBe(0o2000000); // O_CLOEXEC
      expect(f & 3).toBe(2); // O_RDWR
      const s = openPtySlave(pty.slavePath);
      fs.closeSync(s);
    } finally {
      fs.closeSync(pty.master);
    }
  });
});
