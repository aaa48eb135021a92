// CliRuntime with a fake spawner: command lines, stdio routing, pid files,
// error text and codes, timeouts; plus the output/log parsers against the
// real wording of crun 1.8.1 and runc 1.1.5.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { nullLogger } from '../../agent/src/log';
import type { ExitStatus } from '../../agent/src/proc/reaper';
import type { SpawnedProcess, SpawnOptions } from '../../agent/src/proc/spawner';
import { SysError } from '../../agent/src/sys/libc';
import { Code, RpcError } from '../../agent/src/rpc/status';
import {
  CliRuntime,
  RuntimeError,
  classifyFailure,
  failureDetail,
  parsePidFile,
  parsePs,
  parseRuntimeLog,
  parseState,
  type RuntimeSpawner,
} from '../../agent/src/runtime/oci-runtime';

interface Behaviour {
  code?: number;
  signal?: number;
  stdout?: string;
  stderr?: string;
  /** Written to the --log file. */
  log?: string;
  /** Written to the --pid-file. */
  pid?: string;
  /** Never exit until killed through the injected kill(). */
  hang?: boolean;
}

class FakeSpawner implements RuntimeSpawner {
  calls: SpawnOptions[] = [];
  behave: (opts: SpawnOptions) => Behaviour = () => ({});
  throwOnSpawn?: Error;
  private hung = new Map<number, (st: ExitStatus) => void>();
  private nextPid = 1000;

  spawn(opts: SpawnOptions): SpawnedProcess {
    if (this.throwOnSpawn) throw this.throwOnSpawn;
    this.calls.push(opts);
    const pid = this.nextPid++;
    const b = this.behave(opts);
    const argAfter = (flag: string): string | undefined => {
      const i = opts.args.indexOf(flag);
      return i >= 0 ? opts.args[i + 1] : undefined;
    };
    const logFile = argAfter('--log');
    if (b.log !== undefined && logFile) fs.writeFileSync(logFile, b.log);
    const pidFile = argAfter('--pid-file');
    if (b.pid !== undefined && pidFile) fs.writeFileSync(pidFile, b.pid);
    const proc: SpawnedProcess = {
      pid,
      exited: new Promise<ExitStatus>((resolve) => {
        if (b.hang) {
          this.hung.set(pid, resolve);
          return;
        }
        setImmediate(() => {
          const code = b.signal !== undefined ? 128 + b.signal : (b.code ?? 0);
          resolve({ pid, code, raw: 0, ...(b.signal !== undefined ? { signal: b.signal } : {}) });
        });
      }),
    };
    // Output files the child would open (the runtime adapter's stdout/stderr files).
    for (const [slot, text] of [[opts.stdout, b.stdout], [opts.stderr, b.stderr]] as const) {
      if (typeof slot === 'object' && text !== undefined) fs.writeFileSync(slot.open, text);
    }
    if (opts.stdout === 'pipe') {
      const s = new PassThrough();
      s.end(b.stdout ?? '');
      proc.stdout = s;
    }
    if (opts.stderr === 'pipe') {
      const s = new PassThrough();
      s.end(b.stderr ?? '');
      proc.stderr = s;
    }
    return proc;
  }

  /** The injected kill(): ends a hung process with the signal. */
  kill = (target: number, sig: number): void => {
    const pid = Math.abs(target);
    const r = this.hung.get(pid);
    if (!r) throw Object.assign(new Error('ESRCH'), { errno: os.constants.errno.ESRCH });
    this.hung.delete(pid);
    this.killed.push({ target, sig });
    r({ pid, code: 128 + sig, signal: sig, raw: sig });
  };
  killed: Array<{ target: number; sig: number }> = [];
}

let tmp = '';
let fake: FakeSpawner;
let rt: CliRuntime;

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-rt-unit-'));
  fake = new FakeSpawner();
  rt = new CliRuntime('crun', { root: path.join(tmp, 'state'), logDir: path.join(tmp, 'log'), spawner: fake, log: nullLogger(), kill: fake.kill });
});

afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** argv after the global options (--root R --log L --log-format json). */
function sub(opts: SpawnOptions): string[] {
  const i = opts.args.indexOf('json');
  return opts.args.slice(i + 1);
}

describe('CliRuntime command lines', () => {
  it('global options: root, a per-call JSON log file in logDir, argv[0] = binary, PATH-only env', async () => {
    await rt.start('c1');
    const o = fake.calls[0]!;
    expect(o.file).toBe('crun');
    expect(o.args.slice(0, 7)).toEqual(['crun', '--root', path.join(tmp, 'state'), '--log', expect.any(String), '--log-format', 'json']);
    expect(path.dirname(o.args[4]!)).toBe(path.join(tmp, 'log'));
    expect(sub(o)).toEqual(['start', 'c1']);
    expect(o.env).toEqual([expect.stringMatching(/^PATH=/)]);
    expect(o.setsid).toBe(true);
    expect(fs.statSync(path.join(tmp, 'log')).mode & 0o777).toBe(0o700);
  });

  it('name and default root derive from the binary; --systemd-cgroup when asked', async () => {
    const r2 = new CliRuntime('/opt/bin/runc', { spawner: fake, log: nullLogger(), logDir: path.join(tmp, 'log'), systemdCgroup: true });
    expect(r2.name).toBe('runc');
    expect(r2.root).toBe('/run/runc');
    await r2.pause('c1');
    const o = fake.calls[0]!;
    expect(o.file).toBe('/opt/bin/runc');
    expect(o.args.slice(0, 3)).toEqual(['/opt/bin/runc', '--root', '/run/runc']);
    expect(o.args).toContain('--systemd-cgroup');
    expect(o.args.slice(o.args.indexOf('--systemd-cgroup') + 1)).toEqual(['pause', 'c1']);
  });

  it('create: bundle, pid file, console socket, --no-pivot; container stdio = the given fds; returns the pid', async () => {
    fake.behave = () => ({ pid: '4242' });
    const pidFile = path.join(tmp, 'init.pid');
    const res = await rt.create('c1', '/b/c1', { pidFile, consoleSocket: '/s/c1.sock', noPivot: true, stdio: { stdin: 7, stdout: 8, stderr: 9 } });
    expect(res).toEqual({ pid: 4242 });
    const o = fake.calls[0]!;
    expect(sub(o)).toEqual(['create', '--bundle', '/b/c1', '--pid-file', pidFile, '--console-socket', '/s/c1.sock', '--no-pivot', 'c1']);
    expect([o.stdin, o.stdout, o.stderr]).toEqual([7, 8, 9]);
  });

  it('create without stdio or options: /dev/null stdio, no --console-socket, no --no-pivot', async () => {
    fake.behave = () => ({ pid: '17\n' });
    const res = await rt.create('c1', '/b/c1', { pidFile: path.join(tmp, 'p') });
    expect(res.pid).toBe(17);
    const o = fake.calls[0]!;
    expect(sub(o)).toEqual(['create', '--bundle', '/b/c1', '--pid-file', path.join(tmp, 'p'), 'c1']);
    expect([o.stdin, o.stdout, o.stderr]).toEqual(['null', 'null', 'null']);
  });

  it('create removes a stale pid file first, so an old pid is never returned', async () => {
    const pidFile = path.join(tmp, 'init.pid');
    fs.writeFileSync(pidFile, '999');
    fake.behave = () => ({}); // the runtime "forgets" to write it
    const err = await rt.create('c1', '/b', { pidFile }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(RuntimeError);
    expect((err as RuntimeError).code).toBe(Code.INTERNAL);
    expect((err as Error).message).toMatch(/cannot read the pid file/);
  });

  it('a garbage pid file is an INTERNAL error', async () => {
    fake.behave = () => ({ pid: 'abc' });
    await expect(rt.create('c1', '/b', { pidFile: path.join(tmp, 'p') })).rejects.toMatchObject({ code: Code.INTERNAL, message: expect.stringMatching(/bad pid file/) });
  });

  it('exec: --detach, pid file, --process, console socket; stdio routed; returns the pid', async () => {
    fake.behave = () => ({ pid: '55' });
    const pidFile = path.join(tmp, 'e.pid');
    const res = await rt.exec('c1', '/b/p.json', { pidFile, detach: true, consoleSocket: '/s/e.sock', stdio: { stdout: 5 } });
    expect(res.pid).toBe(55);
    const o = fake.calls[0]!;
    expect(sub(o)).toEqual(['exec', '--detach', '--pid-file', pidFile, '--process', '/b/p.json', '--console-socket', '/s/e.sock', 'c1']);
    expect([o.stdin, o.stdout, o.stderr]).toEqual(['null', 5, 'null']);
  });

  it('kill (numeric signal, --all), delete (--force), update (--resources), ps (--format json)', async () => {
    fake.behave = (o) => (sub(o)[0] === 'ps' ? { stdout: '[1,2]' } : {});
    await rt.kill('c1', 15);
    await rt.kill('c1', 9, true);
    await rt.delete('c1');
    await rt.delete('c1', true);
    await rt.update('c1', '/b/r.json');
    expect(await rt.ps('c1')).toEqual([1, 2]);
    await rt.resume('c1');
    expect(fake.calls.map(sub)).toEqual([
      ['kill', 'c1', '15'],
      ['kill', '--all', 'c1', '9'],
      ['delete', 'c1'],
      ['delete', '--force', 'c1'],
      ['update', '--resources', '/b/r.json', 'c1'],
      ['ps', '--format', 'json', 'c1'],
      ['resume', 'c1'],
    ]);
    // Commands other than create/exec write stderr (and, for ps and state, stdout) to
    // per-call files in the log directory, removed after the call.
    const logDir = path.join(tmp, 'log');
    const file = (suffix: string) => ({ open: expect.stringMatching(new RegExp(`^${logDir}/crun-[a-z]+-\\d+-\\d+\\.${suffix}$`)), flags: expect.any(Number), mode: 0o600 });
    for (const o of fake.calls) {
      expect([o.stdin, o.stdout, o.stderr]).toEqual(['null', sub(o)[0] === 'ps' ? file('out') : 'null', file('err')]);
      const flags = (o.stderr as { flags: number }).flags;
      expect(flags & fs.constants.O_NOFOLLOW).toBe(fs.constants.O_NOFOLLOW);
      expect(flags & fs.constants.O_CREAT).toBe(fs.constants.O_CREAT);
    }
    expect(fs.readdirSync(logDir)).toEqual([]);
  });

  it('refuses bad signals and ids that could be options or paths, without running anything', async () => {
    await expect(rt.kill('c1', 0)).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT });
    await expect(rt.kill('c1', 65)).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT });
    for (const id of ['', '--all', '-f', '../x', 'a/b', '.hidden', 'a b']) {
      await expect(rt.state(id), id).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT });
    }
    expect(fake.calls).toEqual([]);
  });

  it('state parses the JSON state', async () => {
    fake.behave = () => ({ stdout: '{"ociVersion":"1.0.0","id":"c1","pid":12,"status":"running","bundle":"/b","created":"2024-01-01T00:00:00Z"}' });
    expect(await rt.state('c1')).toEqual({ id: 'c1', status: 'running', pid: 12, bundle: '/b', created: '2024-01-01T00:00:00Z' });
  });

  it('unexpected output is an INTERNAL error quoting it', async () => {
    fake.behave = () => ({ stdout: 'PID\n12\n' });
    await expect(rt.ps('c1')).rejects.toMatchObject({ code: Code.INTERNAL, message: expect.stringMatching(/unexpected output.*PID/) });
    await expect(rt.state('c1')).rejects.toMatchObject({ code: Code.INTERNAL });
  });
});

describe('CliRuntime failures', () => {
  it("carries the runtime's log-file error text, classified, and removes the log file", async () => {
    fake.behave = () => ({
      code: 1,
      log: `{"msg":"error opening file \`${path.join(tmp, 'state', 'c9')}/status\`: No such file or directory","level":"error","time":"x"}\n`,
      stderr: 'something on stderr\n',
    });
    const err = (await rt.state('c9').catch((e: unknown) => e)) as RuntimeError;
    expect(err).toBeInstanceOf(RuntimeError);
    expect(err).toBeInstanceOf(RpcError);
    expect(err.code).toBe(Code.NOT_FOUND);
    expect(err.message).toBe(`crun state c9 failed (exit code 1): error opening file \`${path.join(tmp, 'state', 'c9')}/status\`: No such file or directory`);
    expect(err.runtime).toBe('crun');
    expect(err.command).toBe('state');
    expect(err.exitCode).toBe(1);
    expect(fs.readdirSync(path.join(tmp, 'log'))).toEqual([]);
  });

  it('create failures: the error comes from the log file (stderr belongs to the container)', async () => {
    fake.behave = () => ({ code: 1, log: '{"level":"error","msg":"runc create failed: invalid rootfs: stat /x: no such file or directory","time":"t"}\n' });
    await expect(rt.create('c1', '/b', { pidFile: path.join(tmp, 'p'), stdio: { stderr: 2 } })).rejects.toMatchObject({
      code: Code.INTERNAL,
      message: 'crun create c1 failed (exit code 1): runc create failed: invalid rootfs: stat /x: no such file or directory',
    });
  });

  it('falls back to stderr when the log is empty, and to the exit status when both are', async () => {
    fake.behave = () => ({ code: 1, stderr: 'time="2024" level=error msg="container not running"\n' });
    await expect(rt.kill('c1', 9)).rejects.toMatchObject({ code: Code.FAILED_PRECONDITION, message: 'crun kill c1 failed (exit code 1): container not running' });
    fake.behave = () => ({ signal: 11 });
    await expect(rt.start('c1')).rejects.toMatchObject({ code: Code.INTERNAL, message: 'crun start c1 failed (killed by signal 11)' });
  });

  it('a runtime that hangs is SIGKILLed (its process group) after timeoutMs: DEADLINE_EXCEEDED', async () => {
    const r2 = new CliRuntime('crun', { root: path.join(tmp, 'state'), logDir: path.join(tmp, 'log'), spawner: fake, log: nullLogger(), kill: fake.kill, timeoutMs: 30 });
    fake.behave = () => ({ hang: true });
    const err = (await r2.delete('c1').catch((e: unknown) => e)) as RuntimeError;
    expect(err.code).toBe(Code.DEADLINE_EXCEEDED);
    expect(err.message).toMatch(/timed out after 30 ms/);
    expect(fake.killed).toEqual([{ target: -1000, sig: 9 }]); // the first fake pid, as a process group
  });

  it('a runtime that cannot be started is an INTERNAL RuntimeError', async () => {
    fake.throwOnSpawn = new SysError('posix_spawn', os.constants.errno.ENOENT, 'crun');
    await expect(rt.start('c1')).rejects.toMatchObject({ name: 'RuntimeError', code: Code.INTERNAL, message: expect.stringMatching(/cannot start crun: posix_spawn crun: ENOENT/) });
  });

  it('an unusable log directory is reported, not thrown raw', async () => {
    fs.writeFileSync(path.join(tmp, 'file'), '');
    const r2 = new CliRuntime('crun', { spawner: fake, log: nullLogger(), logDir: path.join(tmp, 'file', 'log') });
    await expect(r2.start('c1')).rejects.toMatchObject({ name: 'RuntimeError', code: Code.INTERNAL, message: expect.stringMatching(/log directory/) });
  });
});

describe('parsers and classification', () => {
  it('parseRuntimeLog reads crun and runc JSON lines, keeps other lines', () => {
    const text =
      '{"msg":"a","level":"error","time":"t"}\n{"level":"warning","msg":"b","time":"t"}\nplain text\n\n{"level":"info"}\n';
    expect(parseRuntimeLog(text)).toEqual([
      { level: 'error', msg: 'a' },
      { level: 'warning', msg: 'b' },
      { level: 'unknown', msg: 'plain text' },
      { level: 'info', msg: '{"level":"info"}' },
    ]);
  });

  it('failureDetail: errors first, then other log lines, then stderr (runc text format unwrapped)', () => {
    expect(failureDetail('{"level":"warning","msg":"w"}\n{"level":"error","msg":"e1"}\n{"level":"fatal","msg":"e2"}\n', 'x')).toBe('e1; e2');
    expect(failureDetail('{"level":"warning","msg":"w"}\n{"level":"debug","msg":"d"}\n', 'x')).toBe('w');
    expect(failureDetail('', 'time="2026-01-01T00:00:00Z" level=error msg="exec failed: \\"x\\" not found"\n')).toBe('exec failed: "x" not found');
    expect(failureDetail('', 'make `/r` private: No such file or directory\n')).toBe('make `/r` private: No such file or directory');
    expect(failureDetail('', '')).toBe('');
    expect(failureDetail('', 'y'.repeat(10_000)).length).toBeLessThan(5000);
  });

  it('classifyFailure: the real crun 1.8.1 and runc 1.1.5 messages', () => {
    const sp = '/run/crun/c4';
    const cases: Array<[string, string, Code]> = [
      ['state', 'error opening file `/run/crun/c4/status`: No such file or directory', Code.NOT_FOUND],
      ['delete', "cannot open directory '/run/crun/c4': No such file or directory", Code.NOT_FOUND],
      ['state', 'container does not exist', Code.NOT_FOUND],
      ['exec', 'exec failed: container does not exist', Code.NOT_FOUND],
      ['create', 'container `c4` already exists', Code.ALREADY_EXISTS],
      ['create', 'runc create failed: container with given ID already exists', Code.ALREADY_EXISTS],
      ['start', 'cannot open `/run/crun/c4/exec.fifo`: No such file or directory', Code.FAILED_PRECONDITION],
      ['start', 'cannot start an already running container', Code.FAILED_PRECONDITION],
      ['delete', 'the container `c4` is not in `created` or `stopped` state', Code.FAILED_PRECONDITION],
      ['delete', 'cannot delete container c4 that is not stopped: running', Code.FAILED_PRECONDITION],
      ['exec', 'the container `c4` is not running', Code.FAILED_PRECONDITION],
      ['exec', 'exec failed: cannot exec in a stopped container', Code.FAILED_PRECONDITION],
      ['kill', 'container not running', Code.FAILED_PRECONDITION],
      ['kill', 'open pidfd: No such process', Code.FAILED_PRECONDITION],
      ['kill', 'kill container: No such process', Code.FAILED_PRECONDITION],
      ['resume', 'container not paused', Code.FAILED_PRECONDITION],
      ['create', 'make `/nonexistent` private: No such file or directory', Code.INTERNAL],
      // a missing file that is not the container's state is not "container not found"
      ['update', 'open `/b/r.json`: No such file or directory', Code.INTERNAL],
      ['create', 'error opening file `/run/crun/c4/status`: No such file or directory', Code.INTERNAL],
    ];
    for (const [cmd, text, code] of cases) expect(classifyFailure(cmd, text, sp), `${cmd}: ${text}`).toBe(code);
  });

  it('parsePs accepts crun (pretty) and runc (compact) output and rejects the table format', () => {
    expect(parsePs('[\n  28773\n]\n')).toEqual([28773]);
    expect(parsePs('[28881,28890]\n')).toEqual([28881, 28890]);
    expect(parsePs('null\n')).toEqual([]);
    expect(() => parsePs('PID\n1\n')).toThrow();
    expect(() => parsePs('["1"]')).toThrow();
  });

  it('parseState and parsePidFile', () => {
    expect(parseState('{"id":"x","status":"stopped","pid":0,"bundle":"/b"}')).toEqual({ id: 'x', status: 'stopped', pid: 0, bundle: '/b' });
    expect(() => parseState('{"id":"x"}')).toThrow();
    expect(() => parseState('null')).toThrow();
    expect(parsePidFile('123')).toBe(123);
    expect(parsePidFile(' 123\n')).toBe(123);
    expect(parsePidFile('0')).toBeUndefined();
    expect(parsePidFile('12a')).toBeUndefined();
    expect(parsePidFile('')).toBeUndefined();
  });

  it('refuses ids outside the Kata rule before running the runtime', async () => {
    for (const bad of ['-x', 'x'.repeat(2000)]) {
      await expect(rt.kill(bad, 9)).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT });
    }
    expect(fake.calls).toHaveLength(0);
    for (const good of ['0123abcdef', 'my_container.v1-2']) {
      await rt.kill(good, 9).catch(() => undefined); // the fake runtime's answer does not matter here
    }
    expect(fake.calls.map((c) => c.args.at(-2))).toEqual(['0123abcdef', 'my_container.v1-2']);
  });
});
