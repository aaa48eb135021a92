// ProcessIO with real processes started by the agent's Spawner (posix_spawn)
// and reaped by its Reaper, standing in for a container process whose stdio
// the OCI runtime was given. No root needed. This test process must not use
// node:child_process: the Reaper's waitpid(-1) would steal its children.
import fs from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { nullLogger } from '../../agent/src/log';
import { Reaper, type ExitStatus } from '../../agent/src/proc/reaper';
import { DEFAULT_ENV, Spawner, type SpawnedProcess } from '../../agent/src/proc/spawner';
import { Code, RpcError } from '../../agent/src/rpc/status';
import { KATA_EOF_MESSAGE, ProcessIO, isEofError } from '../../agent/src/sandbox/process-io';
import { kill } from '../../agent/src/sys/misc';
import { openPty } from '../../agent/src/sys/pty';

const reaper = new Reaper();
const spawner = new Spawner(reaper);
const ios: ProcessIO[] = [];
const procs: SpawnedProcess[] = [];
const gone = new WeakSet<SpawnedProcess>();

beforeAll(() => reaper.start());
afterAll(() => reaper.stop());
afterEach(async () => {
  for (const p of procs.splice(0)) {
    // Only a process not reaped yet: a reaped pid may belong to someone else by now.
    if (!gone.has(p)) {
      try {
        kill(p.pid, 9);
      } catch {
        // exiting anyway
      }
    }
    await p.exited;
  }
  for (const io of ios.splice(0)) io.close();
});

const MiB = 1024 * 1024;

function track(p: SpawnedProcess): void {
  procs.push(p);
  void p.exited.then(() => gone.add(p));
}

/** A "container process" on fresh stdio pipes, the way the runtime gets them. */
function startOnPipes(args: string[], opts: { bufferLimit?: number; pipeSize?: number } = {}): { io: ProcessIO; proc: SpawnedProcess } {
  const io = ProcessIO.pipes({ log: nullLogger(), ...opts });
  ios.push(io);
  const fds = io.childFds!;
  const proc = spawner.spawn({ file: args[0]!, args, env: [...DEFAULT_ENV], stdin: fds.stdin, stdout: fds.stdout, stderr: fds.stderr });
  track(proc);
  io.releaseChildFds();
  return { io, proc };
}

function startOnTerminal(args: string[]): { io: ProcessIO; proc: SpawnedProcess } {
  const pty = openPty({ winSize: { rows: 24, cols: 80 } });
  const io = ProcessIO.terminal(pty.master, { log: nullLogger() });
  ios.push(io);
  // The child opens the slave after setsid: it becomes its controlling terminal.
  const tty = { open: pty.slavePath, flags: fs.constants.O_RDWR };
  const proc = spawner.spawn({
    file: args[0]!,
    args,
    env: [...DEFAULT_ENV, 'TERM=dumb', 'PS1=$ '],
    stdin: tty,
    stdout: tty,
    stderr: tty,
    setsid: true,
  });
  track(proc);
  return { io, proc };
}

async function expectEof(p: Promise<unknown>): Promise<void> {
  const err = await p.then(
    () => {
      throw new Error('expected EOF');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RpcError);
  expect((err as RpcError).code).toBe(Code.INTERNAL);
  expect((err as RpcError).message).toBe(KATA_EOF_MESSAGE);
}

async function readAll(io: ProcessIO, stream: 'stdout' | 'stderr', len = 65536): Promise<Buffer> {
  const parts: Buffer[] = [];
  for (;;) {
    try {
      parts.push(await io.read(stream, len));
    } catch (err) {
      if (!isEofError(err)) throw err;
      return Buffer.concat(parts);
    }
  }
}

/** Read stdout until `text` shows up (or EOF / deadline); returns everything read. */
async function readUntil(io: ProcessIO, text: string, ms = 10_000): Promise<string> {
  let out = '';
  const ac = new AbortController();
  const t = setTimeout(() => ac.abort(new Error(`no "${text}" within ${ms} ms; got ${JSON.stringify(out)}`)), ms);
  try {
    while (!out.includes(text)) out += (await io.read('stdout', 4096, ac.signal)).toString();
  } finally {
    clearTimeout(t);
  }
  return out;
}

function procState(pid: number): string {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]!;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('ProcessIO with real processes on pipes', () => {
  it('round-trips stdin -> cat -> stdout; closeStdin makes cat exit; then EOF as in Kata', async () => {
    const { io, proc } = startOnPipes(['/bin/cat']);
    expect(await io.write(Buffer.from('hello\n'))).toBe(6);
    expect((await io.read('stdout', 1024)).toString()).toBe('hello\n');
    expect(await io.write(Buffer.from('second line\n'))).toBe(12);
    expect((await readUntil(io, 'line\n'))).toBe('second line\n');
    io.closeStdin();
    const st: ExitStatus = await proc.exited;
    expect(st.code).toBe(0);
    await expectEof(io.read('stdout', 1024));
    await expectEof(io.read('stderr', 1024));
    await io.drained;
    await expect(io.write(Buffer.from('late'))).rejects.toMatchObject({ code: Code.INTERNAL });
  });

  it('keeps stderr separate from stdout, and output written before exit is still read after it', async () => {
    const { io, proc } = startOnPipes(['/bin/sh', '-c', 'echo out1; echo err1 >&2; echo out2; echo err2 >&2; exit 3']);
    expect((await proc.exited).code).toBe(3);
    expect((await readAll(io, 'stdout')).toString()).toBe('out1\nout2\n');
    expect((await readAll(io, 'stderr')).toString()).toBe('err1\nerr2\n');
    await io.drained;
  });

  it('a process that never reads stdin and exits: writing gives an INTERNAL broken pipe error, no crash', async () => {
    const { io, proc } = startOnPipes(['/bin/true']);
    await proc.exited;
    const err = await io.write(Buffer.alloc(256 * 1024, 1)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RpcError);
    expect((err as RpcError).code).toBe(Code.INTERNAL);
    expect((err as RpcError).message).toMatch(/Broken pipe/);
    await io.drained;
  });

  it('backpressure: 50 MiB written while nobody reads stays bounded, the writer blocks; then exactly 50 MiB and EOF', async () => {
    const limit = MiB;
    const { io, proc } = startOnPipes(['/usr/bin/head', '-c', '50M', '/dev/zero'], { bufferLimit: limit });
    let exited = false;
    void proc.exited.then(() => (exited = true));
    let maxOurs = 0;
    for (let i = 0; i < 40; i++) {
      await sleep(25);
      maxOurs = Math.max(maxOurs, io.bufferedBytes('stdout'));
    }
    // The agent holds at most the limit plus one 64 KiB read (and the socket's own small buffer).
    expect(maxOurs).toBeGreaterThanOrEqual(limit);
    expect(maxOurs).toBeLessThanOrEqual(limit + 64 * 1024 + 64 * 1024);
    // The writer is alive and sleeping in write(2) on the full pipe, not done.
    expect(exited).toBe(false);
    expect(procState(proc.pid)).toBe('S');
    const wchan = fs.readFileSync(`/proc/${proc.pid}/wchan`, 'utf8');
    if (wchan !== '0' && wchan !== '') expect(wchan).toMatch(/pipe/);

    let total = 0;
    let nonZero = 0;
    for (;;) {
      let b: Buffer;
      try {
        b = await io.read('stdout', MiB);
      } catch (err) {
        expect(isEofError(err)).toBe(true);
        break;
      }
      expect(b.length).toBeLessThanOrEqual(MiB);
      total += b.length;
      for (let i = 0; i < b.length; i += 4093) nonZero += b[i]!;
      maxOurs = Math.max(maxOurs, io.bufferedBytes('stdout'));
    }
    expect(total).toBe(50 * MiB);
    expect(nonZero).toBe(0);
    expect(maxOurs).toBeLessThanOrEqual(limit + 128 * 1024);
    expect((await proc.exited).code).toBe(0);
    await expectEof(io.read('stdout', 1));
  }, 60_000);

  it('a daemonized grandchild holding stdout: processExited() ends the stream after the drain window', async () => {
    const { io, proc } = startOnPipes(['/bin/sh', '-c', 'echo before; sleep 30 & echo "$!" >&2; echo after']);
    expect((await proc.exited).code).toBe(0);
    io.processExited(100);
    const [out, err] = await Promise.all([readAll(io, 'stdout'), readAll(io, 'stderr')]);
    const grandchild = Number(err.toString().trim());
    expect(grandchild).toBeGreaterThan(1);
    kill(grandchild, 9); // still alive: it is what kept the pipes open
    expect(out.toString()).toBe('before\nafter\n');
    await io.drained;
  });
});

describe('ProcessIO with a real terminal', () => {
  it('runs a shell on a pty: arithmetic, resize + stty size, stderr EOF at once, EOF after exit', async () => {
    const { io, proc } = startOnTerminal(['/bin/sh', '-i']);
    await expectEof(io.read('stderr', 100));
    await io.write(Buffer.from('echo $((6*7))\n'));
    const out = await readUntil(io, '42');
    expect(out).toMatch(/(^|\n|\$ )42\r?\n/); // the output line (the prompt may come first)
    io.resize(40, 120);
    await io.write(Buffer.from('stty size\n'));
    expect(await readUntil(io, '40 120')).toMatch(/40 120/);
    await io.write(Buffer.from('exit 5\n'));
    expect((await proc.exited).code).toBe(5);
    // The pty reports EIO once the shell is gone: that is EOF, not an error.
    for (;;) {
      try {
        await io.read('stdout', 4096);
      } catch (err) {
        expect(isEofError(err)).toBe(true);
        break;
      }
    }
    await io.drained;
  });

  it('a process that closes its stdio but keeps running is not hung up by the end of output', async () => {
    // Output ends (EIO) as soon as no slave fd is open; the terminal must stay up
    // (no SIGHUP to the session) until close().
    const { io, proc } = startOnTerminal(['/bin/sh', '-c', 'echo hi; exec </dev/null >/dev/null 2>&1; sleep 0.3; exit 7']);
    expect((await readAll(io, 'stdout')).toString()).toBe('hi\r\n');
    await io.drained;
    expect((await proc.exited).code).toBe(7);
  });

  it('close() releases the terminal: a process still on it gets SIGHUP', async () => {
    const { io, proc } = startOnTerminal(['/bin/sleep', '30']);
    let exited = false;
    void proc.exited.then(() => (exited = true));
    io.resize(30, 100);
    await sleep(100);
    expect(exited).toBe(false);
    io.close();
    const st = await proc.exited;
    expect(st.signal).toBe(1);
    expect(() => io.resize(30, 100)).toThrow(/terminal is closed/);
  });

  it('closeStdin on a terminal sends end-of-file: cat exits', async () => {
    const { io, proc } = startOnTerminal(['/bin/cat']);
    await io.write(Buffer.from('typed\n'));
    expect(await readUntil(io, 'typed\r\ntyped\r\n')).toContain('typed');
    io.closeStdin();
    expect((await proc.exited).code).toBe(0);
    await readAll(io, 'stdout');
    await io.drained;
  });
});
