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
// - Other commands (start, state, kill, ...) write stdout (kept for state and ps) and stderr to
//   per-call files beside the log, read after the runtime exited.
// A failure becomes a RuntimeError (an RpcError) whose message carries the
// runtime's error text; the code is NOT_FOUND for an unknown container,
// ALREADY_EXISTS, FAILED_PRECONDITION for a container in the wrong state,
// DEADLINE_EXCEEDED on timeout, else INTERNAL.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Logger } from '../log';
import type { ExitStatus } from '../proc/reaper';
import { DEFAULT_ENV, DEFAULT_PATH, resolveInPath, type SpawnedProcess, type SpawnOptions, type StdioSpec } from '../proc/spawner';
import { Code, RpcError } from '../rpc/status';
import { kill as sysKill } from '../sys/misc';
import { validateContainerId } from './ids';
import { sealBinary, type SealedBinary } from './sealed-binary';

const SIGKILL = os.constants.signals.SIGKILL;
const SIGPIPE = 13;
const ESRCH = os.constants.errno.ESRCH;
const { ENOENT, EACCES, ENOEXEC, EPERM } = os.constants.errno;
const EXEC_ERRNOS = new Set([ENOENT, EACCES, ENOEXEC, EPERM]);

/** Where per-call runtime log files go by default (removed after each call). */
export const DEFAULT_LOG_DIR = '/run/kata-containers/.oci-log';
export const DEFAULT_TIMEOUT_MS = 60_000;
/** Captured stdout limit (state/ps output). */
const MAX_STDOUT = 4 * 1024 * 1024;
/** Captured stderr / log file limit. */
const MAX_DIAG = 64 * 1024;
/** Longest error text put into an error message. */
const MAX_MESSAGE = 4096;
/** How the child opens its stdout/stderr files (O_NOFOLLOW: nothing but a new file of ours). */
const OUT_FLAGS = fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC | fs.constants.O_NOFOLLOW;

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
  /**
   * Run the runtime from a sealed in-memory copy of its binary (sealed-binary.ts), made at
   * the first call: true for the default copy, or the function that makes it (tests).
   * When the copy cannot be made or executed the runtime runs from its path. Default false.
   */
  sealedCopy?: boolean | ((binary: string, name: string) => SealedBinary);
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
  /** Container stdio for create/exec; otherwise stderr is kept for the error message. */
  stdio?: Partial<ContainerStdio>;
  /** The command's stdout is its result (state, ps): keep it. */
  output?: boolean;
}

/**
 * The first `max` bytes of a small file of the agent's own (a runtime call's log or output in
 * the tmpfs log directory), read synchronously: '' when it does not exist.
 */
function readBounded(file: string, max: number): string {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  } catch {
    return '';
  }
  try {
    const buf = Buffer.alloc(Math.min(max, fs.fstatSync(fd).size));
    const n = buf.length > 0 ? fs.readSync(fd, buf, 0, buf.length, 0) : 0;
    return buf.subarray(0, n).toString('utf8');
  } finally {
    fs.closeSync(fd);
  }
}

function unlinkQuietly(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch {
    // not created (the runtime did not start) or already gone
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
  private sealer?: (binary: string, name: string) => SealedBinary;
  /** The sealed copy once made; null when it cannot be used. */
  private sealed?: SealedBinary | null;

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
    if (opts.sealedCopy === true) this.sealer = sealBinary;
    else if (typeof opts.sealedCopy === 'function') this.sealer = opts.sealedCopy;
  }

  /** What the runtime is executed as: the sealed copy when there is one, else the binary. */
  get executable(): string {
    return this.sealedCopy()?.execPath ?? this.binary;
  }

  private sealedCopy(): SealedBinary | undefined {
    if (this.sealed !== undefined || !this.sealer) return this.sealed ?? undefined;
    let file = this.binary;
    try {
      const pathEnv = this.env.findLast((kv) => kv.startsWith('PATH='))?.slice(5) ?? DEFAULT_PATH;
      file = resolveInPath(this.binary, pathEnv);
      this.sealed = this.sealer(file, this.name);
      this.log.info({ runtime: this.name, binary: file, exec: this.sealed.execPath, bytes: this.sealed.bytes }, 'runtime runs from a sealed in-memory copy');
    } catch (err) {
      this.sealed = null;
      this.log.warn({ runtime: this.name, binary: file, err: String(err) }, 'cannot make a sealed copy of the runtime; running it from its path');
    }
    return this.sealed ?? undefined;
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
    const out = await this.invoke('state', id, [id], { output: true });
    try {
      return parseState(out);
    } catch (err) {
      throw this.badOutput('state', id, out, err);
    }
  }

  async ps(id: string): Promise<number[]> {
    validateContainerId(id); // ids become runtime arguments and state directory names
    const out = await this.invoke('ps', id, ['--format', 'json', id], { output: true });
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
    // The runtime's log, stdout (state, ps) and stderr go to files of its own in the log
    // directory (a tmpfs), read once it has exited: no pipes or streams to set up and drain.
    const base = path.join(this.logDir, `${this.name}-${command}-${process.pid}-${++this.seq}`);
    const logFile = `${base}.log`;
    const withStdio = io.stdio !== undefined;
    const outFile = !withStdio && io.output ? `${base}.out` : undefined;
    const errFile = withStdio ? undefined : `${base}.err`;
    const toFile = (file: string): StdioSpec => ({ open: file, flags: OUT_FLAGS, mode: 0o600 });
    const argv = [this.binary, ...this.commandLine(command, args, logFile)];
    const spawnOpts: SpawnOptions = {
      file: this.executable,
      args: argv,
      env: this.env,
      stdin: withStdio ? (io.stdio!.stdin ?? 'null') : 'null',
      stdout: withStdio ? (io.stdio!.stdout ?? 'null') : outFile ? toFile(outFile) : 'null',
      stderr: withStdio ? (io.stdio!.stderr ?? 'null') : toFile(errFile!),
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
      proc = this.spawnRuntime(spawnOpts);
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
    const ok = st.code === 0 && !timedOut;
    const output = ok && outFile ? readBounded(outFile, MAX_STDOUT) : '';
    const logText = ok ? '' : readBounded(logFile, MAX_DIAG);
    const errText = ok || !errFile ? '' : readBounded(errFile, MAX_DIAG);
    for (const f of [logFile, outFile, errFile]) if (f !== undefined) unlinkQuietly(f);
    const ms = Math.round((performance.now() - t0) * 10) / 10;

    if (ok) {
      this.log.debug({ runtime: this.name, command, id, ms }, 'oci runtime call');
      return output;
    }
    const detail = failureDetail(logText, errText);
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

  /** Spawn through the sealed copy; if it cannot be executed, drop it for good and use the path. */
  private spawnRuntime(o: SpawnOptions): SpawnedProcess {
    if (o.file === this.binary) return this.spawner.spawn(o);
    try {
      return this.spawner.spawn(o);
    } catch (err) {
      // Only failures to execute the copy itself; a bad stdio fd fails the same way from the path.
      if (!EXEC_ERRNOS.has((err as { errno?: number }).errno ?? 0)) throw err;
      this.log.warn({ runtime: this.name, exec: o.file, err: String(err) }, 'cannot execute the sealed copy of the runtime; running it from its path');
      if (this.sealed) this.closeSealed();
      this.sealed = null;
      return this.spawner.spawn({ ...o, file: this.binary });
    }
  }

  private closeSealed(): void {
    try {
      fs.closeSync(this.sealed!.fd);
    } catch {
      // already closed
    }
  }

  private async readPid(command: string, id: string, pidFile: string): Promise<number> {
    let text: string;
    try {
      text = fs.readFileSync(pidFile, 'utf8'); // in the bundle directory, on tmpfs
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
      fs.unlinkSync(pidFile);
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

