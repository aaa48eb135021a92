// The OCI runtime adapter: drives an OCI runtime CLI (crun by default, runc
// or another one selected by agent.oci_runtime) through the agent's Spawner,
// so that the one Reaper collects every exit status.
//
// Process model (verified with crun 1.8.1 and runc 1.1.5):
// - `create` forks the container init and exits; the init is reparented to
//   the nearest subreaper (the agent: PID 1 or PR_SET_CHILD_SUBREAPER), so
//   the Reaper sees its exit as an unwatched pid and caches the status.
//   create() returns the pid from --pid-file; the caller then calls
//   reaper.watch(pid, cb), which delivers a cached status at once if the
//   process is already gone. `exec --detach` works the same way.
// - Without --console-socket the runtime hands its own stdin/stdout/stderr to
//   the container process, so create/exec are spawned with the caller's fds
//   as stdio. The runtime's own diagnostics are then read from a per-call
//   `--log FILE --log-format json` file (both runtimes write every error
//   there as {"level":"error","msg":...}; they also print it to stderr, which
//   for create/exec is the container's stderr).
// - Other commands (start, state, kill, ...) get stdout/stderr pipes.
// A failure becomes a RuntimeError (an RpcError) whose message carries the
// runtime's error text; the code is NOT_FOUND for an unknown container,
// ALREADY_EXISTS, FAILED_PRECONDITION for a container in the wrong state,
// DEADLINE_EXCEEDED on timeout, else INTERNAL.
import { Capture } from '../proc/run';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from '../log';
import type { ExitStatus } from '../proc/reaper';
import { DEFAULT_ENV, type SpawnedProcess, type SpawnOptions } from '../proc/spawner';
import { Code, RpcError } from '../rpc/status';
import { kill as sysKill } from '../sys/misc';
import { validateContainerId } from './ids';

const SIGKILL = os.constants.signals.SIGKILL;
const SIGPIPE = 13;
const ESRCH = os.constants.errno.ESRCH;

/** Where per-call runtime log files go by default (removed after each call). */
export const DEFAULT_LOG_DIR = '/run/kata-containers/.oci-log';
export const DEFAULT_TIMEOUT_MS = 60_000;
/** Captured stdout limit (state/ps output). */
const MAX_STDOUT = 4 * 1024 * 1024;
/** Captured stderr / log file limit. */
const MAX_DIAG = 64 * 1024;
/** Longest error text put into an error message. */
const MAX_MESSAGE = 4096;
/** After the runtime exited, how long its pipes may stay open. */
const DRAIN_MS = 2000;

/** An fd for the container process's stdio slot (the caller keeps ownership), or /dev/null. */
export type StdioFd = number | 'null';

export interface ContainerStdio {
  stdin: StdioFd;
  stdout: StdioFd;
  stderr: StdioFd;
}

export interface CreateOptions {
  /** Written by the runtime with the container init's pid (an existing file is replaced). */
  pidFile: string;
  /** A listening ConsoleSocket path; required when the spec has process.terminal = true. */
  consoleSocket?: string;
  /** The container process's stdio (ignored by the runtime with a terminal). Default: all /dev/null. */
  stdio?: Partial<ContainerStdio>;
  /** Use MS_MOVE + chroot instead of pivot_root (rootfs on an initramfs). */
  noPivot?: boolean;
}

export interface ExecOptions {
  pidFile: string;
  consoleSocket?: string;
  stdio?: Partial<ContainerStdio>;
  /** Always detached: the runtime exits once the process runs; the agent reaps it. */
  detach: true;
}

export type ContainerStatus = 'creating' | 'created' | 'running' | 'paused' | 'stopped';

export interface ContainerState {
  id: string;
  /** As reported by the runtime (one of ContainerStatus for crun and runc). */
  status: ContainerStatus | string;
  /** Init pid; 0 once stopped. */
  pid: number;
  bundle: string;
  /** RFC 3339 creation time, when reported. */
  created?: string;
}

export interface OciRuntime {
  /** Short name, e.g. "crun". */
  readonly name: string;
  /** What is executed (a bare name is looked up in PATH). */
  readonly binary: string;
  create(id: string, bundleDir: string, o: CreateOptions): Promise<{ pid: number }>;
  start(id: string): Promise<void>;
  exec(id: string, processJsonPath: string, o: ExecOptions): Promise<{ pid: number }>;
  kill(id: string, signal: number, all?: boolean): Promise<void>;
  delete(id: string, force?: boolean): Promise<void>;
  state(id: string): Promise<ContainerState>;
  /** Pids of the container's processes, as seen from the agent's PID namespace. */
  ps(id: string): Promise<number[]>;
  pause(id: string): Promise<void>;
  resume(id: string): Promise<void>;
  /** Apply an OCI LinuxResources JSON file. */
  update(id: string, resourcesJsonPath: string): Promise<void>;
}

/** The part of the Spawner the adapter uses (the real Spawner, or a fake in unit tests). */
export interface RuntimeSpawner {
  spawn(opts: SpawnOptions): SpawnedProcess;
}

export interface CliRuntimeOptions {
  /** The runtime's --root state directory (default /run/<name>). */
  root?: string;
  spawner: RuntimeSpawner;
  log: Logger;
  /** Pass --systemd-cgroup (the guest has no systemd: normally false). */
  systemdCgroup?: boolean;
  /** Directory for the per-call --log files (default /run/kata-containers/.oci-log). */
  logDir?: string;
  /** SIGKILL a runtime call (its process group) after this long (default 60 s). */
  timeoutMs?: number;
  /** The runtime's environment (default: PATH only). */
  env?: string[];
  /** Injected for tests; default kill(2). */
  kill?: (pid: number, sig: number) => void;
}

/** A failed runtime call. `code` is the protocol status code. */
export class RuntimeError extends RpcError {
  constructor(
    code: Code,
    message: string,
    /** e.g. "crun" */
    readonly runtime: string,
    /** The subcommand, e.g. "create". */
    readonly command: string,
    /** The runtime's exit code (128+n when killed by signal n); undefined when it could not be started. */
    readonly exitCode: number | undefined,
    /** The runtime's error text (log file errors, else stderr). */
    readonly detail: string,
  ) {
    super(code, message);
    this.name = 'RuntimeError';
  }
}

export interface RuntimeLogEntry {
  level: string;
  msg: string;
}

/**
 * Parse a runtime's JSON log (one object per line, {"level","msg",...}; both
 * crun and runc). Lines that are not JSON are kept as level "unknown".
 */
export function parseRuntimeLog(text: string): RuntimeLogEntry[] {
  const out: RuntimeLogEntry[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '') continue;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch {
      out.push({ level: 'unknown', msg: line });
      continue;
    }
    if (obj !== null && typeof obj === 'object') {
      const o = obj as Record<string, unknown>;
      const msg = typeof o.msg === 'string' ? o.msg : typeof o.message === 'string' ? o.message : line;
      out.push({ level: typeof o.level === 'string' ? o.level.toLowerCase() : 'unknown', msg });
    } else {
      out.push({ level: 'unknown', msg: line });
    }
  }
  return out;
}

const ERROR_LEVELS = new Set(['error', 'fatal', 'panic']);

/**
 * The text that explains a failure: the error entries of the log file, else
 * any other log lines (warnings, unparsed), else stderr (with runc's
 * `time=... level=error msg="..."` text format reduced to the message).
 */
export function failureDetail(logText: string, stderrText: string): string {
  const entries = parseRuntimeLog(logText);
  const errors = entries.filter((e) => ERROR_LEVELS.has(e.level)).map((e) => e.msg);
  let text = errors.join('; ');
  if (text === '') text = entries.filter((e) => e.level !== 'debug' && e.level !== 'info').map((e) => e.msg).join('; ');
  if (text === '') {
    text = stderrText
      .split('\n')
      .map((l) => {
        const m = /level=(?:error|fatal|warning)\s+msg="((?:[^"\\]|\\.)*)"/.exec(l);
        return (m ? m[1]!.replace(/\\(.)/g, '$1') : l).trim();
      })
      .filter((l) => l !== '')
      .join('; ');
  }
  return text.length > MAX_MESSAGE ? `${text.slice(0, MAX_MESSAGE)}...` : text;
}

/**
 * The protocol code for a runtime's error text (crun 1.8.1 / runc 1.1.5 wording).
 * `statePath` is <root>/<id>: crun names it in "does not exist" errors.
 */
export function classifyFailure(command: string, detail: string, statePath?: string): Code {
  const d = detail;
  if (/already exists/i.test(d)) return Code.ALREADY_EXISTS;
  if (command !== 'create') {
    if (/container does not exist/i.test(d)) return Code.NOT_FOUND; // runc
    // crun: "error opening file `<root>/<id>/status`: No such file or directory",
    // "cannot open directory '<root>/<id>': No such file or directory"
    if (statePath !== undefined && /No such file or directory/.test(d)) {
      const q = statePath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      if (new RegExp(`[\`']${q}(/status)?[\`']`).test(d)) return Code.NOT_FOUND;
    }
  }
  if (
    /not running|not paused|not stopped|is not in `[a-z]+`|not in [a-z]+ state|already running|already paused|in a stopped container|that is not stopped|exec\.fifo`?: No such file|No such process/i.test(
      d,
    )
  ) {
    return Code.FAILED_PRECONDITION;
  }
  return Code.INTERNAL;
}

interface InvokeOptions {
  /** Container stdio for create/exec; otherwise stdout/stderr are captured. */
  stdio?: Partial<ContainerStdio>;
}

async function readBounded(file: string, max: number): Promise<string> {
  let fh: fs.promises.FileHandle;
  try {
    fh = await fs.promises.open(file, 'r');
  } catch {
    return '';
  }
  try {
    const buf = Buffer.alloc(max);
    const { bytesRead } = await fh.read(buf, 0, max, 0);
    return buf.subarray(0, bytesRead).toString('utf8');
  } finally {
    await fh.close();
  }
}

/** Parse a pid file's content ("1234" with or without newline). */
export function parsePidFile(text: string): number | undefined {
  const t = text.trim();
  if (!/^\d+$/.test(t)) return undefined;
  const n = Number(t);
  return n > 0 && Number.isSafeInteger(n) ? n : undefined;
}

/** Parse `state` output. Throws on anything that is not a state object. */
export function parseState(text: string): ContainerState {
  const o = JSON.parse(text) as Record<string, unknown>;
  if (o === null || typeof o !== 'object' || typeof o.status !== 'string') throw new Error('no "status" field');
  return {
    id: typeof o.id === 'string' ? o.id : '',
    status: o.status,
    pid: typeof o.pid === 'number' ? o.pid : 0,
    bundle: typeof o.bundle === 'string' ? o.bundle : '',
    ...(typeof o.created === 'string' ? { created: o.created } : {}),
  };
}

/** Parse `ps --format json` output: an array of pids (crun pretty-prints it, runc does not). */
export function parsePs(text: string): number[] {
  const t = text.trim();
  const a = JSON.parse(t === '' || t === 'null' ? '[]' : t) as unknown;
  if (!Array.isArray(a) || !a.every((x) => Number.isSafeInteger(x) && (x as number) > 0)) {
    throw new Error('not an array of pids');
  }
  return a as number[];
}

export class CliRuntime implements OciRuntime {
  readonly name: string;
  readonly root: string;
  readonly logDir: string;
  private readonly spawner: RuntimeSpawner;
  private readonly log: Logger;
  private readonly systemdCgroup: boolean;
  private readonly timeoutMs: number;
  private readonly env: string[];
  private readonly killFn: (pid: number, sig: number) => void;
  private logDirReady?: Promise<void>;
  private seq = 0;

  constructor(
    readonly binary: string,
    opts: CliRuntimeOptions,
  ) {
    if (binary === '') throw new RpcError(Code.INVALID_ARGUMENT, 'empty OCI runtime path');
    this.name = path.basename(binary);
    this.root = opts.root ?? `/run/${this.name}`;
    this.logDir = opts.logDir ?? DEFAULT_LOG_DIR;
    this.spawner = opts.spawner;
    this.log = opts.log;
    this.systemdCgroup = opts.systemdCgroup ?? false;
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.env = opts.env ?? [...DEFAULT_ENV];
    this.killFn = opts.kill ?? sysKill;
  }

  async create(id: string, bundleDir: string, o: CreateOptions): Promise<{ pid: number }> {
    validateContainerId(id); // ids become runtime arguments and state directory names
    await this.removeStale('create', id, o.pidFile);
    const args = ['--bundle', bundleDir, '--pid-file', o.pidFile];
    if (o.consoleSocket !== undefined) args.push('--console-socket', o.consoleSocket);
    if (o.noPivot) args.push('--no-pivot');
    args.push(id);
    await this.invoke('create', id, args, { stdio: o.stdio ?? {} });
    return { pid: await this.readPid('create', id, o.pidFile) };
  }

  async start(id: string): Promise<void> {
    validateContainerId(id); // ids become runtime arguments and state directory names
    await this.invoke('start', id, [id]);
  }

  async exec(id: string, processJsonPath: string, o: ExecOptions): Promise<{ pid: number }> {
    validateContainerId(id); // ids become runtime arguments and state directory names
    await this.removeStale('exec', id, o.pidFile);
    const args = ['--detach', '--pid-file', o.pidFile, '--process', processJsonPath];
    if (o.consoleSocket !== undefined) args.push('--console-socket', o.consoleSocket);
    args.push(id);
    await this.invoke('exec', id, args, { stdio: o.stdio ?? {} });
    return { pid: await this.readPid('exec', id, o.pidFile) };
  }

  async kill(id: string, signal: number, all = false): Promise<void> {
    validateContainerId(id); // ids become runtime arguments and state directory names
    if (!Number.isInteger(signal) || signal <= 0 || signal > 64) {
      throw new RpcError(Code.INVALID_ARGUMENT, `invalid signal ${signal}`);
    }
    await this.invoke('kill', id, [...(all ? ['--all'] : []), id, String(signal)]);
  }

  async delete(id: string, force = false): Promise<void> {
    validateContainerId(id); // ids become runtime arguments and state directory names
    await this.invoke('delete', id, [...(force ? ['--force'] : []), id]);
  }

  async state(id: string): Promise<ContainerState> {
    validateContainerId(id); // ids become runtime arguments and state directory names
    const out = await this.invoke('state', id, [id]);
    try {
      return parseState(out);
    } catch (err) {
      throw this.badOutput('state', id, out, err);
    }
  }

  async ps(id: string): Promise<number[]> {
    validateContainerId(id); // ids become runtime arguments and state directory names
    const out = await this.invoke('ps', id, ['--format', 'json', id]);
    try {
      return parsePs(out);
    } catch (err) {
      throw this.badOutput('ps', id, out, err);
    }
  }

  async pause(id: string): Promise<void> {
    validateContainerId(id); // ids become runtime arguments and state directory names
    await this.invoke('pause', id, [id]);
  }

  async resume(id: string): Promise<void> {
    validateContainerId(id); // ids become runtime arguments and state directory names
    await this.invoke('resume', id, [id]);
  }

  async update(id: string, resourcesJsonPath: string): Promise<void> {
    validateContainerId(id); // ids become runtime arguments and state directory names
    await this.invoke('update', id, ['--resources', resourcesJsonPath, id]);
  }

  /** Global options, then the subcommand and its arguments (argv without argv[0]). */
  commandLine(command: string, args: readonly string[], logFile: string): string[] {
    const g = ['--root', this.root, '--log', logFile, '--log-format', 'json'];
    if (this.systemdCgroup) g.push('--systemd-cgroup');
    return [...g, command, ...args];
  }

  private async ensureLogDir(): Promise<void> {
    this.logDirReady ??= fs.promises.mkdir(this.logDir, { recursive: true, mode: 0o700 }).then(
      () => undefined,
      (err) => {
        this.logDirReady = undefined;
        throw err;
      },
    );
    return this.logDirReady;
  }

  /** Run one runtime command to completion; resolves with its stdout, or throws RuntimeError. */
  private async invoke(command: string, id: string, args: string[], io: InvokeOptions = {}): Promise<string> {
    const t0 = performance.now();
    try {
      await this.ensureLogDir();
    } catch (err) {
      throw new RuntimeError(
        Code.INTERNAL,
        `${this.name} ${command} ${id}: cannot create the log directory ${this.logDir}: ${(err as Error).message}`,
        this.name,
        command,
        undefined,
        '',
      );
    }
    const logFile = path.join(this.logDir, `${this.name}-${command}-${process.pid}-${++this.seq}.log`);
    const argv = [this.binary, ...this.commandLine(command, args, logFile)];
    const withStdio = io.stdio !== undefined;
    const spawnOpts: SpawnOptions = {
      file: this.binary,
      args: argv,
      env: this.env,
      stdin: withStdio ? (io.stdio!.stdin ?? 'null') : 'null',
      stdout: withStdio ? (io.stdio!.stdout ?? 'null') : 'pipe',
      stderr: withStdio ? (io.stdio!.stderr ?? 'null') : 'pipe',
      setsid: true,
      // start/delete run poststart/poststop hooks and write the container state to each hook's
      // stdin: a hook that exits without reading it would kill the runtime with SIGPIPE. These
      // commands fork no container process, so they may keep the agent's SIGPIPE=ignored (an EPIPE
      // error instead). create and exec fork the container's processes, which must start with
      // SIGPIPE at its default (docs/decisions.md D11).
      keepDisposition: command === 'create' || command === 'exec' ? undefined : [SIGPIPE],
    };
    let proc: SpawnedProcess;
    try {
      proc = this.spawner.spawn(spawnOpts);
    } catch (err) {
      throw new RuntimeError(
        Code.INTERNAL,
        `${this.name} ${command} ${id}: cannot start ${this.binary}: ${(err as Error).message}`,
        this.name,
        command,
        undefined,
        '',
      );
    }
    const out = proc.stdout ? new Capture(proc.stdout, MAX_STDOUT) : undefined;
    const errOut = proc.stderr ? new Capture(proc.stderr, MAX_DIAG) : undefined;

    let timedOut = false;
    let exited = false;
    const timer = setTimeout(() => {
      if (exited) return;
      timedOut = true;
      // Not reaped yet, so the pid (and its group: setsid) cannot be reused.
      for (const target of [-proc.pid, proc.pid]) {
        try {
          this.killFn(target, SIGKILL);
          break;
        } catch (err) {
          if ((err as { errno?: number }).errno === ESRCH && target < 0) continue;
          break;
        }
      }
    }, this.timeoutMs);
    let st: ExitStatus;
    try {
      st = await proc.exited;
    } finally {
      exited = true;
      clearTimeout(timer);
    }
    if (out || errOut) {
      let grace: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all([out?.done, errOut?.done]),
        new Promise<void>((r) => (grace = setTimeout(r, DRAIN_MS))),
      ]);
      clearTimeout(grace);
      proc.stdout?.destroy();
      proc.stderr?.destroy();
    }
    const logText = await readBounded(logFile, MAX_DIAG);
    await fs.promises.unlink(logFile).catch(() => undefined);
    const ms = Math.round((performance.now() - t0) * 10) / 10;

    if (st.code === 0 && !timedOut) {
      this.log.debug({ runtime: this.name, command, id, ms }, 'oci runtime call');
      return out?.text() ?? '';
    }
    const detail = failureDetail(logText, errOut?.text() ?? '');
    const how = timedOut
      ? `timed out after ${this.timeoutMs} ms`
      : st.signal !== undefined
        ? `killed by signal ${st.signal}`
        : `exit code ${st.code}`;
    const code = timedOut
      ? Code.DEADLINE_EXCEEDED
      : classifyFailure(command, detail, path.join(this.root, id));
    const message = `${this.name} ${command} ${id} failed (${how})${detail !== '' ? `: ${detail}` : ''}`;
    this.log.warn({ runtime: this.name, command, id, ms, exitCode: st.code, detail }, 'oci runtime call failed');
    throw new RuntimeError(code, message, this.name, command, st.code, detail);
  }

  private async readPid(command: string, id: string, pidFile: string): Promise<number> {
    let text: string;
    try {
      text = await fs.promises.readFile(pidFile, 'utf8');
    } catch (err) {
      throw new RuntimeError(
        Code.INTERNAL,
        `${this.name} ${command} ${id}: cannot read the pid file ${pidFile}: ${(err as Error).message}`,
        this.name,
        command,
        0,
        '',
      );
    }
    const pid = parsePidFile(text);
    if (pid === undefined) {
      throw new RuntimeError(
        Code.INTERNAL,
        `${this.name} ${command} ${id}: bad pid file ${pidFile}: ${JSON.stringify(text.slice(0, 64))}`,
        this.name,
        command,
        0,
        '',
      );
    }
    return pid;
  }

  /** A pid file left from an earlier call would be read as this call's result: remove it first. */
  private async removeStale(command: string, id: string, pidFile: string): Promise<void> {
    try {
      await fs.promises.unlink(pidFile);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw new RuntimeError(
        Code.INTERNAL,
        `${this.name} ${command} ${id}: cannot remove the old pid file ${pidFile}: ${(err as Error).message}`,
        this.name,
        command,
        undefined,
        '',
      );
    }
  }

  private badOutput(command: string, id: string, out: string, err: unknown): RuntimeError {
    const shown = out.length > 256 ? `${out.slice(0, 256)}...` : out;
    return new RuntimeError(
      Code.INTERNAL,
      `${this.name} ${command} ${id}: unexpected output (${(err as Error).message}): ${JSON.stringify(shown)}`,
      this.name,
      command,
      0,
      '',
    );
  }
}

