// Real processes through posix_spawn (no root needed). This test process must
// not use node:child_process: the Reaper's waitpid(-1) would steal its children.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Reaper } from '../../agent/src/proc/reaper';
import { run } from '../../agent/src/proc/run';
import { DEFAULT_ENV, Spawner, planFdActions, resolveInPath } from '../../agent/src/proc/spawner';
import { SysError } from '../../agent/src/sys/libc';
import { close, kill, pipe2 } from '../../agent/src/sys/misc';

const reaper = new Reaper();
const spawner = new Spawner(reaper);

beforeAll(() => reaper.start());
afterAll(() => reaper.stop());

function collect(s: Readable | undefined): Promise<string> {
  if (!s) throw new Error('no stream');
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    s.on('data', (c: Buffer) => parts.push(c));
    s.on('error', reject);
    s.on('close', () => resolve(Buffer.concat(parts).toString('utf8')));
  });
}

/** Read a pipe's read end (as a stream that closes the fd) until EOF. */
function readFd(fd: number): Promise<string> {
  return collect(fs.createReadStream('', { fd }));
}

function sh(script: string, extra: Partial<Parameters<Spawner['spawn']>[0]> = {}) {
  return spawner.spawn({ file: '/bin/sh', args: ['sh', '-c', script], stdout: 'pipe', stderr: 'pipe', ...extra });
}

function statFields(text: string): string[] {
  // fields after "pid (comm) ": state ppid pgrp session ...
  return text.slice(text.lastIndexOf(')') + 2).trim().split(' ');
}

describe('Spawner', () => {
  it('passes argv, env and cwd, and pipes stdout and stderr separately', async () => {
    const dir = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'proc-spawner-')));
    try {
      const p = sh('echo "$0 $1 $FOO"; pwd; echo oops >&2', {
        args: ['sh', '-c', 'echo "$0 $1 $FOO"; pwd; echo oops >&2', 'zero', 'one'],
        env: ['FOO=bar baz', ...DEFAULT_ENV],
        cwd: dir,
      });
      const [out, err, st] = await Promise.all([collect(p.stdout), collect(p.stderr), p.exited]);
      expect(out).toBe(`zero one bar baz\n${dir}\n`);
      expect(err).toBe('oops\n');
      expect(st).toEqual({ pid: p.pid, code: 0, raw: 0 });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('round-trips data through stdin and stdout', async () => {
    const p = spawner.spawn({ file: 'cat', args: ['cat'], stdin: 'pipe', stdout: 'pipe' });
    const out = collect(p.stdout);
    const payload = 'x'.repeat(300_000) + 'END';
    p.stdin!.end(payload);
    expect(await out).toBe(payload);
    expect((await p.exited).code).toBe(0);
  });

  it('reports exit codes and a signalled exit as 128+signal', async () => {
    expect(await sh('exit 42').exited).toMatchObject({ code: 42 });
    const killed = await sh('kill -9 $$').exited;
    expect(killed).toMatchObject({ code: 137, signal: 9 });
    const term = await sh('kill -TERM $$').exited;
    expect(term).toMatchObject({ code: 143, signal: 15 });
  });

  it("connects 'null' stdio to /dev/null and gives the child no other fd", async () => {
    const p = spawner.spawn({ file: 'sleep', args: ['sleep', '30'], stdin: 'null', stdout: 'null', stderr: 'null' });
    expect(p.stdin ?? p.stdout ?? p.stderr).toBeUndefined();
    try {
      // posix_spawn returns after the exec: the fd table is final.
      const fds = fs.readdirSync(`/proc/${p.pid}/fd`).sort();
      expect(fds).toEqual(['0', '1', '2']);
      for (const fd of fds) expect(fs.readlinkSync(`/proc/${p.pid}/fd/${fd}`)).toBe('/dev/null');
    } finally {
      kill(p.pid, 9);
    }
    expect(await p.exited).toMatchObject({ code: 137, signal: 9 });
  });

  it('defaults to /dev/null stdin (cat ends at once)', async () => {
    const p = spawner.spawn({ file: 'cat', args: ['cat'], stdout: 'pipe' });
    expect(await collect(p.stdout)).toBe('');
    expect((await p.exited).code).toBe(0);
  });

  it('resets ignored signals and the signal mask in the child', async () => {
    const own = fs.readFileSync('/proc/self/status', 'utf8');
    const ownIgn = BigInt('0x' + /SigIgn:\s*([0-9a-f]+)/.exec(own)![1]);
    const SIGPIPE_BIT = 1n << 12n; // signal 13
    expect(ownIgn & SIGPIPE_BIT).toBe(SIGPIPE_BIT); // Node ignores SIGPIPE: the child must not inherit it
    const p = spawner.spawn({ file: 'grep', args: ['grep', '-E', '^Sig(Ign|Blk)', '/proc/self/status'], stdout: 'pipe' });
    const out = await collect(p.stdout);
    const ign = BigInt('0x' + /SigIgn:\s*([0-9a-f]+)/.exec(out)![1]);
    const blk = BigInt('0x' + /SigBlk:\s*([0-9a-f]+)/.exec(out)![1]);
    expect(ign & SIGPIPE_BIT).toBe(0n);
    expect(ign).toBe(0n);
    expect(blk).toBe(0n);
  });

  it('keepDisposition leaves only the named signals as the agent has them (SIGPIPE ignored)', async () => {
    const SIGPIPE_BIT = 1n << 12n;
    const p = spawner.spawn({
      file: 'grep', args: ['grep', '-E', '^SigIgn', '/proc/self/status'], stdout: 'pipe', keepDisposition: [13],
    });
    const ign = BigInt('0x' + /SigIgn:\s*([0-9a-f]+)/.exec(await collect(p.stdout))![1]);
    expect(ign).toBe(SIGPIPE_BIT); // SIGPIPE inherited as ignored, every other signal reset
  });

  it('makes the child a session leader by default, and not with setsid: false', async () => {
    const a = spawner.spawn({ file: 'cat', args: ['cat', '/proc/self/stat'], stdout: 'pipe' });
    const [, , pgrp, session] = statFields(await collect(a.stdout));
    expect(Number(session)).toBe(a.pid);
    expect(Number(pgrp)).toBe(a.pid);
    await a.exited;

    const own = statFields(fs.readFileSync('/proc/self/stat', 'utf8'));
    const b = spawner.spawn({ file: 'cat', args: ['cat', '/proc/self/stat'], stdout: 'pipe', setsid: false, pgroup: 0 });
    const [, , bPgrp, bSession] = statFields(await collect(b.stdout));
    expect(bSession).toBe(own[3]);
    expect(Number(bPgrp)).toBe(b.pid);
    await b.exited;
  });

  it('rejects a missing program with a SysError naming posix_spawn and ENOENT', () => {
    const fdsBefore = fs.readdirSync('/proc/self/fd').length;
    for (const file of ['/nonexistent/prog', 'no-such-program-here']) {
      let err: unknown;
      try {
        spawner.spawn({ file, args: [file], stdin: 'pipe', stdout: 'pipe', stderr: 'pipe' });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(SysError);
      expect(err).toMatchObject({ syscall: 'posix_spawn', code: 'ENOENT' });
      expect(String(err)).toContain(file);
    }
    expect(fs.readdirSync('/proc/self/fd').length).toBe(fdsBefore); // the pipes were closed
  });

  it("searches the child's PATH, not the agent's", () => {
    expect(() => spawner.spawn({ file: 'sh', args: ['sh'], env: ['PATH=/nonexistent'] })).toThrow(/ENOENT/);
    expect(resolveInPath('sh', '/nonexistent:/bin')).toBe('/bin/sh');
    expect(resolveInPath('./x', '/bin')).toBe('./x');
  });

  it('hands over caller-owned fds, including same-number and overlapping mappings', async () => {
    const [r3, w3] = pipe2();
    const [rA, wA] = pipe2();
    const [rB, wB] = pipe2();
    // wB is passed under its own number (dup2(fd, fd) must clear FD_CLOEXEC),
    // and wA's number is the target of the w3 mapping while wA is itself a source.
    // (dash only redirects to fds 0-9, so higher fds are reached through /proc.)
    const to = (fd: number) => (fd < 10 ? `>&${fd}` : `>/proc/self/fd/${fd}`);
    const p = sh(`echo three >&3; echo self ${to(wB)}; echo moved ${to(wA + 100)}; echo overlap ${to(wA)}`, {
      stdout: 'null',
      stderr: 'null',
      extraFds: [
        { from: w3, to: 3 },
        { from: wB, to: wB },
        { from: w3, to: wA }, // listed first: wA must be saved before this overwrites it
        { from: wA, to: wA + 100 },
      ],
    });
    close(w3);
    close(wA);
    close(wB);
    const [three, a, b, st] = await Promise.all([readFd(r3), readFd(rA), readFd(rB), p.exited]);
    expect(st.code).toBe(0);
    expect(three).toBe('three\noverlap\n');
    expect(a).toBe('moved\n');
    expect(b).toBe('self\n');
  });

  it('fails with EBADF for a stdio fd that is not open', () => {
    expect(() => spawner.spawn({ file: '/bin/true', args: ['true'], stdout: 999 })).toThrow(
      expect.objectContaining({ syscall: 'posix_spawn', code: 'EBADF' }),
    );
  });
});

describe('planFdActions', () => {
  it('saves sources that another mapping overwrites, then closes everything else', () => {
    const acts = planFdActions([
      { to: 1, from: 2 },
      { to: 2, from: 1 },
      { to: 0, from: { path: '/dev/null', flags: 0 } },
      { to: 4, from: 4 },
    ]);
    expect(acts).toEqual([
      { op: 'dup2', fd: 2, newfd: 5 },
      { op: 'dup2', fd: 1, newfd: 6 },
      { op: 'dup2', fd: 5, newfd: 1 },
      { op: 'dup2', fd: 6, newfd: 2 },
      { op: 'dup2', fd: 4, newfd: 4 },
      { op: 'open', fd: 0, path: '/dev/null', flags: 0 },
      { op: 'close', fd: 3 },
      { op: 'closefrom', from: 5 },
    ]);
  });

  it('rejects a target given twice', () => {
    expect(() => planFdActions([{ to: 1, from: 5 }, { to: 1, from: 6 }])).toThrow(/EINVAL/);
  });
});

describe('run', () => {
  it('captures output and the exit code', async () => {
    const r = await run(spawner, 'sh', ['-c', 'echo out; echo err >&2; exit 3']);
    expect(r).toMatchObject({ code: 3, stdout: 'out\n', stderr: 'err\n' });
    expect(r.signal).toBeUndefined();
    expect(r.timedOut).toBeUndefined();
  });

  it('feeds input', async () => {
    const r = await run(spawner, 'tr', ['a-z', 'A-Z'], { input: 'hello' });
    expect(r).toMatchObject({ code: 0, stdout: 'HELLO' });
  });

  it('bounds the capture and keeps draining', async () => {
    const r = await run(spawner, 'head', ['-c', '200000', '/dev/zero'], { maxOutput: 10 });
    expect(r.code).toBe(0);
    expect(r.stdout).toHaveLength(10);
    expect(r.truncated).toBe(true);
  });

  it('SIGKILLs the whole group on timeout', async () => {
    const r = await run(spawner, 'sh', ['-c', 'sleep 30 & sleep 30; echo never'], { timeoutMs: 200 });
    expect(r).toMatchObject({ code: 137, signal: 9, timedOut: true, stdout: '' });
  });

  it('rejects when the program cannot be started', async () => {
    await expect(run(spawner, '/nonexistent/x')).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
