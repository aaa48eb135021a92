// The debug console with real shells: a bundled stand-in agent (reaper as
// child subreaper + Spawner + startDebugConsole) listens on a unix address
// instead of vsock; this test process talks to it like `socat` would. The
// serial mode gets a pty pair standing in for /dev/console.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ownedFdSocket } from '../../agent/src/transport/handles';
import { openPty, openPtySlave } from '../../agent/src/sys/pty';
import { bundleEntry } from '../helpers/bundle';

const DEADLINE_MS = 15_000;

interface LogLine {
  msg?: string;
  reason?: string;
  shellPid?: number;
  [k: string]: unknown;
}

interface Fixture {
  proc: ChildProcess;
  address: string;
  logs(): LogLine[];
  stop(): Promise<void>;
}

let bundle = '';
const running: Fixture[] = [];
const cleanups: Array<() => void> = [];

async function startFixture(cfg: Record<string, unknown>): Promise<Fixture> {
  const proc = spawn(process.execPath, [bundle, JSON.stringify(cfg)], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const ready = await new Promise<{ ready: boolean; address?: string; error?: string }>((resolve, reject) => {
    let out = '';
    const onData = (d: string): void => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      proc.stdout!.off('data', onData);
      resolve(JSON.parse(out.slice(0, nl)) as { ready: boolean; address?: string });
    };
    proc.stdout!.setEncoding('utf8').on('data', onData);
    proc.once('exit', (code) => reject(new Error(`fixture exited (${code}) before ready: ${stderr}`)));
  });
  if (!ready.ready) throw new Error(`fixture failed: ${ready.error}`);
  const f: Fixture = {
    proc,
    address: ready.address!,
    logs: () =>
      stderr
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => JSON.parse(l) as LogLine),
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
      await exited;
    },
  };
  running.push(f);
  return f;
}

/** A host-side terminal connection: collects output, waits for patterns. */
class Term {
  out = '';
  readonly closed: Promise<void>;
  private waiters: Array<() => void> = [];
  constructor(readonly sock: net.Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.out += d;
      for (const w of [...this.waiters]) w();
    });
    sock.on('error', () => undefined);
    this.closed = new Promise((resolve) => sock.once('close', () => resolve()));
  }

  static async connect(address: string): Promise<Term> {
    const sock = net.connect(address.replace(/^unix:\/\//, ''));
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    return new Term(sock);
  }

  send(s: string): void {
    this.sock.write(s);
  }

  /** Wait until the output after `from` matches `re`. */
  waitFor(re: RegExp, from = 0): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const m = this.out.slice(from).match(re);
        if (!m) return false;
        this.waiters = this.waiters.filter((w) => w !== onData);
        clearTimeout(timer);
        resolve(m);
        return true;
      };
      const onData = (): void => void check();
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== onData);
        reject(new Error(`timed out waiting for ${re}; output so far: ${JSON.stringify(this.out)}`));
      }, DEADLINE_MS);
      if (!check()) this.waiters.push(onData);
    });
  }

  /** Send a command line and return the first match of `re` in the output it produced. */
  async run(cmd: string, re: RegExp): Promise<RegExpMatchArray> {
    const from = this.out.length;
    this.send(`${cmd}\n`);
    return this.waitFor(re, from);
  }
}

async function withDeadline<T>(p: Promise<T>, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        t = setTimeout(() => reject(new Error(`timed out: ${what}`)), DEADLINE_MS);
      }),
    ]);
  } finally {
    clearTimeout(t);
  }
}

/** Poll until `cond` holds (deadline-bounded; not a timing assertion). */
async function eventually(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + DEADLINE_MS;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const alive = (pid: number): boolean => fs.existsSync(`/proc/${pid}`);

function tmpSock(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dc-'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return `unix://${path.join(dir, 'console.sock')}`;
}

beforeAll(async () => {
  bundle = await bundleEntry('test/integration/fixtures/debug-console-agent.ts');
});

afterEach(async () => {
  for (const f of running.splice(0)) await f.stop();
  for (const c of cleanups.splice(0)) c();
});

describe('debug console over a listening socket (vsock stand-in)', () => {
  it('runs commands in a shell and ends the session when the shell exits', async () => {
    const f = await startFixture({ listenAddress: tmpSock() });
    const t = await Term.connect(f.address);
    await t.run('echo $((6*7))', /\b42\r?\n/);
    t.send('exit\n');
    await withDeadline(t.closed, 'session end after exit');
    // The log lines cross a pipe and the exit is seen on SIGCHLD: wait for them.
    const want = ['debug console session started', 'debug console shell exited', 'debug console session ended'];
    await eventually(() => {
      const msgs = f.logs().map((l) => l.msg);
      return want.every((m) => msgs.includes(m));
    }, `log lines ${want.join(', ')}`);
  });

  // bash finds its terminal by itself; dash only has one if the console provided it.
  const shells = ['/bin/bash', '/bin/sh', '/bin/dash'].filter((s) => fs.existsSync(s));
  it.each(shells)('gives %s its pty as controlling terminal (tty, tty_nr, session, ^C)', async (shell) => {
    const f = await startFixture({ listenAddress: tmpSock(), shells: [shell] });
    const t = await Term.connect(f.address);
    const tty = await t.run('tty', /\/dev\/pts\/(\d+)/);
    const n = Number(tty[1]);
    const st = await t.run('set -- $(cat /proc/$$/stat); echo "TTYNR=$7 SID=$6 PID=$$"', /TTYNR=(\d+) SID=(\d+) PID=(\d+)/);
    const ttyNr = Number(st[1]);
    expect(ttyNr).not.toBe(0);
    const major = (ttyNr >> 8) & 0xfff;
    const minor = (ttyNr & 0xff) | ((ttyNr >> 12) & 0xfff00);
    expect(major).toBeGreaterThanOrEqual(136); // Unix98 pty slaves: majors 136-143
    expect(major).toBeLessThanOrEqual(143);
    expect(minor).toBe(n);
    expect(st[2]).toBe(st[3]); // the shell leads its own session
    // ^C reaches the foreground job only when the pty is the controlling terminal.
    const child = await t.run("sh -c 'echo child=$$; exec sleep 60'; echo after-sleep", /child=(\d+)/);
    t.send('\x03');
    await t.run('echo after=$((2+3))', /after=5/);
    await eventually(() => !alive(Number(child[1])), 'the interrupted sleep to be gone');
    t.sock.destroy();
  });

  it('keeps two concurrent sessions independent', async () => {
    const f = await startFixture({ listenAddress: tmpSock() });
    const a = await Term.connect(f.address);
    const b = await Term.connect(f.address);
    const pa = await a.run('echo me=$$ on $(tty)', /me=(\d+) on (\/dev\/pts\/\d+)/);
    const pb = await b.run('echo me=$$ on $(tty)', /me=(\d+) on (\/dev\/pts\/\d+)/);
    expect(pa[1]).not.toBe(pb[1]);
    expect(pa[2]).not.toBe(pb[2]);
    await a.run('X=alpha; echo "set-$X"', /set-alpha/);
    await b.run('echo "X=[${X:-unset}]"', /X=\[unset\]/);
    a.send('exit\n');
    await withDeadline(a.closed, 'session A end');
    await b.run('echo b-still=$((20+1))', /b-still=21/);
    expect(alive(Number(pb[1]))).toBe(true);
    b.send('exit\n');
    await withDeadline(b.closed, 'session B end');
  });

  it('kills the shell (and its foreground job) when the host disconnects', async () => {
    const f = await startFixture({ listenAddress: tmpSock() });
    const t = await Term.connect(f.address);
    const me = Number((await t.run('echo me=$$', /me=(\d+)/))[1]);
    const child = Number((await t.run("sh -c 'echo child=$$; exec sleep 1000'", /child=(\d+)/))[1]);
    expect(alive(me)).toBe(true);
    expect(alive(child)).toBe(true);
    t.sock.destroy();
    await eventually(() => !alive(me), `shell ${me} to be gone`);
    await eventually(() => !alive(child), `foreground job ${child} to be gone`);
    await eventually(
      () => f.logs().some((l) => l.msg === 'debug console session ended' && l.reason === 'host disconnected'),
      'the session-ended log line',
    );
    // The agent stand-in is still serving.
    const t2 = await Term.connect(f.address);
    await t2.run('echo again=$((3*3))', /again=9/);
    t2.sock.destroy();
  });

  it('ends the session when the shell exits even if a background job still holds the terminal', async () => {
    const f = await startFixture({ listenAddress: tmpSock(), drainMs: 300 });
    const t = await Term.connect(f.address);
    const bg = Number((await t.run('sleep 1000 & echo bg=$!', /bg=(\d+)/))[1]);
    cleanups.push(() => {
      try {
        process.kill(bg, 'SIGKILL');
      } catch {
        // already gone
      }
    });
    expect(alive(bg)).toBe(true);
    t.send('exit\n');
    await withDeadline(t.closed, 'session end with a job holding the pty');
    await eventually(
      () => f.logs().some((l) => l.msg === 'debug console session ended' && l.reason === 'shell exited'),
      'the session-ended (shell exited) log line',
    );
  });

  it('reports a missing shell to the host and in the log, and keeps listening', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dc-shells-'));
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const shell = path.join(dir, 'sh');
    const f = await startFixture({ listenAddress: tmpSock(), shells: [path.join(dir, 'bash'), shell] });
    await eventually(() => f.logs().some((l) => String(l.msg).includes('no shell found')), 'the start-up error line');

    const t = await Term.connect(f.address);
    await t.waitFor(/no shell found \(tried .*\/bash, .*\/sh\)/);
    await withDeadline(t.closed, 'refused session to close');
    await eventually(
      () => f.logs().filter((l) => String(l.msg).includes('no shell found')).length >= 2,
      'a per-session error log line',
    );

    // A shell appears: the next connection works on the same listener.
    fs.symlinkSync('/bin/sh', shell);
    const t2 = await Term.connect(f.address);
    await t2.run('echo $((6*7))', /\b42\r?\n/);
    t2.send('exit\n');
    await withDeadline(t2.closed, 'session end after exit');
  });

  it('stops cleanly: close() kills open sessions', async () => {
    const f = await startFixture({ listenAddress: tmpSock() });
    const t = await Term.connect(f.address);
    const me = Number((await t.run('echo me=$$', /me=(\d+)/))[1]);
    await f.stop();
    expect(f.proc.exitCode).toBe(0);
    await withDeadline(t.closed, 'session closed by stop');
    await eventually(() => !alive(me), `shell ${me} to be gone`);
  });
});

describe('debug console on the serial console (pty pair as /dev/console)', () => {
  it('runs a shell on the console and respawns it when it exits', async () => {
    const pty = openPty({ winSize: { rows: 24, cols: 80 } });
    const master = ownedFdSocket(pty.master);
    // Hold the slave open, so the master does not see EIO between two shells.
    const keep = openPtySlave(pty.slavePath);
    cleanups.push(() => {
      master.destroy();
      fs.closeSync(keep);
    });
    const t = new Term(master);
    const f = await startFixture({ console: pty.slavePath, respawnDelayMs: 50 });

    const first = Number((await t.run('echo pid=$$', /pid=(\d+)/))[1]);
    const tty = await t.run('tty', /\/dev\/pts\/(\d+)/);
    expect(tty[0]).toBe(pty.slavePath);
    t.send('exit\n');
    await eventually(() => !alive(first), `first shell ${first} to be gone`);

    // A new shell answers on the same console.
    let second = first;
    const end = Date.now() + DEADLINE_MS;
    while (second === first) {
      if (Date.now() > end) throw new Error(`no respawned shell; output: ${JSON.stringify(t.out)}`);
      const from = t.out.length;
      t.send('echo pid=$$\n');
      await new Promise((r) => setTimeout(r, 200));
      const m = [...t.out.slice(from).matchAll(/pid=(\d+)/g)].map((x) => Number(x[1]));
      second = m.find((p) => p !== first) ?? first;
    }
    expect(alive(second)).toBe(true);
    await eventually(() => {
      const started = f.logs().filter((l) => l.msg === 'debug console shell started').map((l) => l.shellPid);
      return started.includes(first) && started.includes(second);
    }, 'a start log line for each shell');

    await f.stop();
    await eventually(() => !alive(second), `second shell ${second} to be gone after close`);
  });
});
