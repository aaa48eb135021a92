// ProcessIO on real pipes and a real pty, without child processes: the test
// plays the container by reopening the child's pipe ends through
// /proc/self/fd (a new open file description on the same pipe, owned by the
// test, so releaseChildFds() can close the originals). No root needed.
import fs from 'node:fs';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger, nullLogger } from '../../agent/src/log';
import { Code, RpcError } from '../../agent/src/rpc/status';
import {
  KATA_EOF_MESSAGE,
  ProcessIO,
  isEofError,
  type ProcessIODeps,
} from '../../agent/src/sandbox/process-io';
import { F_GETPIPE_SZ, close, fcntl, getWinSize } from '../../agent/src/sys/misc';
import { openPty, openPtySlave } from '../../agent/src/sys/pty';

const ios: ProcessIO[] = [];
const cleanups: Array<() => void> = [];

afterEach(() => {
  for (const io of ios.splice(0)) io.close();
  for (const c of cleanups.splice(0)) {
    try {
      c();
    } catch {
      // already gone
    }
  }
});

interface LogLine {
  level: string;
  msg: string;
  [k: string]: unknown;
}

function capturingLogger(): { log: ReturnType<typeof createLogger>; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log = createLogger('debug', { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  return { log, lines };
}

function pipes(opts: Partial<Parameters<typeof ProcessIO.pipes>[0]> = {}): ProcessIO {
  const io = ProcessIO.pipes({ log: nullLogger(), ...opts });
  ios.push(io);
  return io;
}

/** The container's side of one stdio pipe, as a socket the test owns. */
function containerEnd(fd: number, dir: 'r' | 'w'): net.Socket {
  const own = fs.openSync(`/proc/self/fd/${fd}`, dir === 'w' ? 'w' : 'r');
  const s = new net.Socket({ fd: own, readable: dir === 'r', writable: dir === 'w' });
  s.on('error', () => undefined);
  cleanups.push(() => s.destroy());
  return s;
}

/** Containers' stdout and stderr write ends (reopened), with the originals released. */
function attach(io: ProcessIO): { stdin: net.Socket; stdout: net.Socket; stderr: net.Socket } {
  const fds = io.childFds!;
  const ends = { stdin: containerEnd(fds.stdin, 'r'), stdout: containerEnd(fds.stdout, 'w'), stderr: containerEnd(fds.stderr, 'w') };
  io.releaseChildFds();
  return ends;
}

function endWriter(s: net.Socket): Promise<void> {
  return new Promise((resolve) => s.end(() => resolve()));
}

async function expectRpc(p: Promise<unknown>, code: Code, msg?: RegExp | string): Promise<RpcError> {
  const err = await p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RpcError);
  const r = err as RpcError;
  expect(r.code).toBe(code);
  if (msg !== undefined) expect(r.message).toMatch(msg);
  return r;
}

/** read() until EOF, returning everything and checking that EOF is Kata's error. */
async function readAll(io: ProcessIO, stream: 'stdout' | 'stderr', len = 65536): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (;;) {
    try {
      const b = await io.read(stream, len);
      expect(b.length).toBeGreaterThan(0);
      expect(b.length).toBeLessThanOrEqual(len);
      parts.push(b);
    } catch (err) {
      expect(isEofError(err)).toBe(true);
      return Buffer.concat(parts);
    }
  }
}

const tick = (ms = 20): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Deterministic, non-repeating test data. */
function pattern(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    b[i] = x & 0xff;
  }
  return b;
}

describe('ProcessIO.pipes: reading', () => {
  it('returns at most len bytes, then Kata\'s EOF error (INTERNAL "read meet eof") once the writer is gone', async () => {
    const io = pipes();
    const c = attach(io);
    c.stdout.write('hello world');
    await endWriter(c.stdout);
    expect((await io.read('stdout', 5)).toString()).toBe('hello');
    expect((await io.read('stdout', 100)).toString()).toBe(' world');
    const e = await expectRpc(io.read('stdout', 100), Code.INTERNAL, KATA_EOF_MESSAGE);
    expect(e.message).toBe('read meet eof');
    // EOF stays EOF.
    await expectRpc(io.read('stdout', 1), Code.INTERNAL, KATA_EOF_MESSAGE);
  });

  it('long-polls: a read waits for the first byte', async () => {
    const io = pipes();
    const c = attach(io);
    let got: Buffer | undefined;
    const p = io.read('stdout', 1024).then((b) => (got = b));
    await tick(50);
    expect(got).toBeUndefined();
    c.stdout.write('x');
    await p;
    expect(got!.toString()).toBe('x');
  });

  it('keeps stdout and stderr apart', async () => {
    const io = pipes();
    const c = attach(io);
    c.stdout.write('to out');
    c.stderr.write('to err');
    await Promise.all([endWriter(c.stdout), endWriter(c.stderr)]);
    expect((await readAll(io, 'stderr')).toString()).toBe('to err');
    expect((await readAll(io, 'stdout')).toString()).toBe('to out');
  });

  it('serves concurrent reads of one stream in call order, without loss or duplication', async () => {
    const io = pipes();
    const c = attach(io);
    const data = pattern(3 * 1024 * 1024 + 123);
    const lens = [1, 7, 4096, 65536, 100_000, 3, 1 << 20];
    const results: Buffer[] = [];
    let eof = false;
    // Eight readers always in flight, each appending its result at the slot it was issued for.
    const reader = async (): Promise<void> => {
      while (!eof) {
        const slot = results.length;
        results.push(Buffer.alloc(0));
        try {
          results[slot] = await io.read('stdout', lens[slot % lens.length]!);
          expect(results[slot]!.length).toBeLessThanOrEqual(lens[slot % lens.length]!);
        } catch (err) {
          expect(isEofError(err)).toBe(true);
          eof = true;
        }
      }
    };
    const readers = Array.from({ length: 8 }, () => reader());
    // Written in odd-sized pieces while the reads are pending.
    for (let off = 0; off < data.length; ) {
      const n = Math.min(data.length - off, 1 + ((off * 7919) % 200_000));
      if (!c.stdout.write(data.subarray(off, off + n))) await new Promise((r) => c.stdout.once('drain', r));
      off += n;
    }
    await endWriter(c.stdout);
    await Promise.all(readers);
    expect(Buffer.concat(results).equals(data)).toBe(true);
  });

  it('an aborted read rejects with CANCELLED and the data that arrives later goes to the next read', async () => {
    const io = pipes();
    const c = attach(io);
    const ac = new AbortController();
    const p = io.read('stdout', 100, ac.signal);
    const after = io.read('stdout', 100);
    ac.abort(new Error('connection closed'));
    await expectRpc(p, Code.CANCELLED, /connection closed/);
    c.stdout.write('later');
    expect((await after).toString()).toBe('later');
    c.stdout.write('again');
    await tick();
    // An already aborted signal rejects at once even with data buffered.
    const ac2 = new AbortController();
    ac2.abort();
    await expectRpc(io.read('stdout', 100, ac2.signal), Code.CANCELLED);
    expect((await io.read('stdout', 100)).toString()).toBe('again');
  });

  it('rejects a zero or invalid len with INVALID_ARGUMENT', async () => {
    const io = pipes();
    await expectRpc(io.read('stdout', 0), Code.INVALID_ARGUMENT);
    await expectRpc(io.read('stderr', -1), Code.INVALID_ARGUMENT);
    await expectRpc(io.read('stdout', 1.5), Code.INVALID_ARGUMENT);
  });

  it('stops reading at bufferLimit: the writer blocks instead of the agent buffering', async () => {
    const limit = 256 * 1024;
    const io = pipes({ bufferLimit: limit });
    const c = attach(io);
    const data = pattern(8 * 1024 * 1024, 7);
    c.stdout.write(data);
    let maxBuffered = 0;
    for (let i = 0; i < 25; i++) {
      await tick(20);
      maxBuffered = Math.max(maxBuffered, io.bufferedBytes('stdout'));
    }
    // At most the limit plus one 64 KiB read of overshoot, plus the socket's own buffer (its high water mark).
    expect(maxBuffered).toBeGreaterThanOrEqual(limit);
    expect(maxBuffered).toBeLessThanOrEqual(limit + 64 * 1024 + 64 * 1024);
    // The rest is still queued on the writer's side: it is blocked, not drained into the agent.
    expect(c.stdout.writableLength).toBeGreaterThan(data.length - limit - 2 * 1024 * 1024);
    const ended = endWriter(c.stdout);
    const all = await readAll(io, 'stdout', 1 << 20);
    await ended;
    expect(all.equals(data)).toBe(true);
  });

  it('drained resolves once both streams ended and were fully read', async () => {
    const io = pipes();
    const c = attach(io);
    let drained = false;
    void io.drained.then(() => (drained = true));
    c.stdout.write('a');
    await Promise.all([endWriter(c.stdout), endWriter(c.stderr)]);
    await tick(50);
    expect(drained).toBe(false); // 'a' not read yet
    expect((await io.read('stdout', 10)).toString()).toBe('a');
    // Both ended and nothing left: drained without another read.
    await io.drained;
    await expectRpc(io.read('stdout', 10), Code.INTERNAL, KATA_EOF_MESSAGE);
    await io.drained;
  });

  it('processExited(): a pipe still held by someone else ends after the drain window, buffered data first', async () => {
    const io = pipes();
    const c = attach(io); // the test keeps the write ends open, like a daemonized grandchild
    c.stdout.write('last words');
    await tick();
    io.processExited(50);
    expect((await io.read('stdout', 100)).toString()).toBe('last words');
    await expectRpc(io.read('stdout', 100), Code.INTERNAL, KATA_EOF_MESSAGE);
    await expectRpc(io.read('stderr', 100), Code.INTERNAL, KATA_EOF_MESSAGE);
    await io.drained;
  });

  it('close() fails pending and later reads with EOF and resolves drained', async () => {
    const io = pipes();
    attach(io);
    const p = io.read('stdout', 10);
    io.close();
    await expectRpc(p, Code.INTERNAL, KATA_EOF_MESSAGE);
    await expectRpc(io.read('stderr', 10), Code.INTERNAL, KATA_EOF_MESSAGE);
    await expectRpc(io.write(Buffer.from('x')), Code.INTERNAL, /Cannot get writer/);
    await io.drained;
  });
});

describe('ProcessIO.pipes: writing', () => {
  it('writes stdin in order and closeStdin gives the reader EOF; later writes fail', async () => {
    const io = pipes();
    const c = attach(io);
    const got: Buffer[] = [];
    const eof = new Promise<void>((resolve) => {
      c.stdin.on('data', (b: Buffer) => got.push(b));
      c.stdin.on('end', () => resolve());
    });
    const data = pattern(2 * 1024 * 1024, 3);
    const n1 = io.write(data.subarray(0, 1000));
    const n2 = io.write(data.subarray(1000));
    io.closeStdin(); // after the writes above: they still go through
    expect(await n1).toBe(1000);
    expect(await n2).toBe(data.length - 1000);
    await eof;
    expect(Buffer.concat(got).equals(data)).toBe(true);
    await expectRpc(io.write(Buffer.from('more')), Code.INTERNAL, /Cannot get writer/);
    expect(await io.write(Buffer.alloc(0)).catch((e: RpcError) => e.code)).toBe(Code.INTERNAL);
  });

  it('honours backpressure: a write beyond the bound waits until the process reads', async () => {
    const io = pipes({ bufferLimit: 64 * 1024 });
    const c = attach(io);
    c.stdin.pause();
    let done = false;
    const big = pattern(4 * 1024 * 1024, 9);
    const p = io.write(big).then((n) => {
      done = true;
      return n;
    });
    await tick(100);
    expect(done).toBe(false);
    const got: Buffer[] = [];
    c.stdin.on('data', (b: Buffer) => got.push(b));
    c.stdin.resume();
    expect(await p).toBe(big.length);
    io.closeStdin();
    await new Promise<void>((r) => c.stdin.on('end', () => r()));
    expect(Buffer.concat(got).equals(big)).toBe(true);
  });

  it('a write stuck behind the bound answers its abort with CANCELLED', async () => {
    const io = pipes({ bufferLimit: 64 * 1024 });
    const c = attach(io);
    c.stdin.pause();
    const ac = new AbortController();
    const stuck = io.write(pattern(4 * 1024 * 1024), ac.signal);
    const queued = io.write(Buffer.from('after'), ac.signal);
    await tick(50);
    ac.abort(new Error('deadline'));
    await expectRpc(stuck, Code.CANCELLED, /deadline/);
    await expectRpc(queued, Code.CANCELLED, /deadline/);
  });

  it('EPIPE (nobody reads stdin any more) is an INTERNAL error, not a crash', async () => {
    const io = pipes();
    io.releaseChildFds(); // the only read end of stdin is gone
    await expectRpc(io.write(Buffer.from('x'.repeat(100))), Code.INTERNAL, /Broken pipe/);
    await expectRpc(io.write(Buffer.from('y')), Code.INTERNAL, /Broken pipe/);
    io.closeStdin();
    io.releaseChildFds(); // idempotent
  });

  it('resize on a process without a terminal is UNAVAILABLE "no tty", as in Kata', () => {
    const io = pipes();
    let err: unknown;
    try {
      io.resize(40, 120);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RpcError);
    expect((err as RpcError).code).toBe(Code.UNAVAILABLE);
    expect((err as RpcError).message).toBe('no tty');
  });
});

describe('ProcessIO.pipes: pipe size', () => {
  it('applies container_pipe_size to all three pipes and logs the kernel\'s rounding', () => {
    const { log, lines } = capturingLogger();
    const io = pipes({ pipeSize: 100_000, log });
    const fds = io.childFds!;
    for (const fd of [fds.stdin, fds.stdout, fds.stderr]) expect(fcntl(fd, F_GETPIPE_SZ)).toBe(131072);
    const rounded = lines.filter((l) => l.msg.includes('another pipe size'));
    expect(rounded.map((l) => l.stream).sort()).toEqual(['stderr', 'stdin', 'stdout']);
    expect(rounded[0]).toMatchObject({ requested: 100_000, actual: 131072 });
  });

  it('an exact size is applied silently; 0 keeps the kernel default', () => {
    const { log, lines } = capturingLogger();
    const io = pipes({ pipeSize: 1 << 20, log });
    for (const fd of Object.values(io.childFds!)) expect(fcntl(fd, F_GETPIPE_SZ)).toBe(1 << 20);
    expect(lines.filter((l) => l.msg.includes('pipe size'))).toEqual([]);
    const def = pipes({ pipeSize: 0 });
    const fresh = pipes();
    expect(fcntl(def.childFds!.stdout, F_GETPIPE_SZ)).toBe(fcntl(fresh.childFds!.stdout, F_GETPIPE_SZ));
  });

  it('a refused size is a warning; the pipes still work', async () => {
    const { log, lines } = capturingLogger();
    const deps: Partial<ProcessIODeps> = {
      setPipeSize: () => {
        throw Object.assign(new Error('fcntl: EPERM'), { code: 'EPERM' });
      },
    };
    const io = pipes({ pipeSize: 1 << 20, log, deps });
    expect(lines.filter((l) => l.level === 'warn' && l.msg.includes('cannot set the pipe size'))).toHaveLength(3);
    const c = attach(io);
    c.stdout.end('ok');
    expect((await readAll(io, 'stdout')).toString()).toBe('ok');
  });

  it('closes every fd it opened when it fails half-way', () => {
    const opened: number[] = [];
    const closed: number[] = [];
    let calls = 0;
    const deps: Partial<ProcessIODeps> = {
      pipe2: () => {
        if (++calls === 3) throw Object.assign(new Error('pipe2: EMFILE'), { code: 'EMFILE' });
        const a = fs.openSync('/dev/null', 'r');
        const b = fs.openSync('/dev/null', 'r');
        opened.push(a, b);
        return [a, b];
      },
      close: (fd) => {
        closed.push(fd);
        close(fd);
      },
    };
    expect(() => ProcessIO.pipes({ log: nullLogger(), deps })).toThrow(/EMFILE/);
    expect(closed.sort()).toEqual(opened.sort());
  });
});

describe('ProcessIO.terminal', () => {
  function terminal(): { io: ProcessIO; slave: number; slavePath: string } {
    const pty = openPty({ winSize: { rows: 24, cols: 80 } });
    const io = ProcessIO.terminal(pty.master, { log: nullLogger() });
    ios.push(io);
    const slave = openPtySlave(pty.slavePath);
    cleanups.push(() => close(slave));
    return { io, slave, slavePath: pty.slavePath };
  }

  it('stdout carries the terminal output; stderr is EOF at once; no childFds', async () => {
    const { io, slave } = terminal();
    expect(io.childFds).toBeUndefined();
    expect(io.isTerminal).toBe(true);
    await expectRpc(io.read('stderr', 100), Code.INTERNAL, KATA_EOF_MESSAGE);
    fs.writeSync(slave, 'from the tty');
    let out = '';
    while (!out.includes('from the tty')) out += (await io.read('stdout', 100)).toString();
    expect(out).toBe('from the tty');
  });

  it('resize sets the window size seen on the slave side', () => {
    const { io, slave } = terminal();
    io.resize(40, 120);
    expect(getWinSize(slave)).toMatchObject({ rows: 40, cols: 120 });
    expect(() => io.resize(70000, 1)).toThrow(RpcError);
  });

  it('EIO after the last slave fd closes is EOF (not a warning); drained resolves', async () => {
    const { log, lines } = capturingLogger();
    const pty = openPty();
    const io = ProcessIO.terminal(pty.master, { log });
    ios.push(io);
    const slave = openPtySlave(pty.slavePath);
    fs.writeSync(slave, 'bye');
    close(slave);
    let out = '';
    for (;;) {
      try {
        out += (await io.read('stdout', 100)).toString();
      } catch (err) {
        expect(isEofError(err)).toBe(true);
        break;
      }
    }
    expect(out).toBe('bye');
    await io.drained;
    expect(lines.filter((l) => l.level === 'warn' || l.level === 'error')).toEqual([]);
    io.close();
    await expectRpc(Promise.resolve().then(() => io.resize(10, 10)), Code.UNAVAILABLE, /terminal is closed/);
  });

  it('takes ownership of the master fd also when it fails', () => {
    const closed: number[] = [];
    const pty = openPty();
    const deps: Partial<ProcessIODeps> = {
      masterSocket: () => {
        throw new Error('uv_pipe_open: EINVAL');
      },
      dup: () => 9999,
      close: (fd) => void closed.push(fd),
    };
    expect(() => ProcessIO.terminal(pty.master, { log: nullLogger(), deps })).toThrow(/EINVAL/);
    expect(closed).toEqual([9999]); // the master itself is the (fake) socket helper's to close
    close(pty.master);
    const closed2: number[] = [];
    const deps2: Partial<ProcessIODeps> = {
      dup: () => {
        throw Object.assign(new Error('fcntl: EMFILE'), { code: 'EMFILE' });
      },
      close: (fd) => void closed2.push(fd),
    };
    expect(() => ProcessIO.terminal(12345, { log: nullLogger(), deps: deps2 })).toThrow(/EMFILE/);
    expect(closed2).toEqual([12345]);
  });

  it('writes go to the terminal input; closeStdin sends ^D and later writes fail', async () => {
    const { io, slave } = terminal();
    expect(await io.write(Buffer.from('typed\n'))).toBe(6);
    const buf = Buffer.alloc(100);
    // Canonical mode: the slave reads one line (blocking read; the line is there already).
    const n = fs.readSync(slave, buf, 0, 100, null);
    expect(buf.subarray(0, n).toString()).toBe('typed\n');
    io.closeStdin();
    await tick();
    // ^D at the start of a line: the slave's read returns 0 (end of file).
    expect(fs.readSync(slave, buf, 0, 100, null)).toBe(0);
    await expectRpc(io.write(Buffer.from('x')), Code.INTERNAL, /Cannot get writer/);
  });
});
