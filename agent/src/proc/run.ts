// Run a small command to completion (modprobe, crun, ...) and capture its
// output, bounded, with an optional timeout that SIGKILLs the child's whole
// session/process group.
import type { Readable } from 'node:stream';
import { kill as sysKill } from '../sys/misc';
import type { ExitStatus } from './reaper';
import type { SpawnOptions, Spawner } from './spawner';

export const DEFAULT_MAX_OUTPUT = 1024 * 1024;
/** After the child exits, how long its pipes may stay open (held by a backgrounded grandchild). */
export const DEFAULT_DRAIN_MS = 2000;
const SIGKILL = 9;

export interface RunOptions {
  env?: string[];
  cwd?: string;
  /** argv[0]; default: `file`. */
  argv0?: string;
  /** Bytes written to stdin, then closed. Without it stdin is /dev/null. */
  input?: string | Buffer;
  /** SIGKILL the child (its process group) after this many ms. */
  timeoutMs?: number;
  /** Per-stream capture limit in bytes (default 1 MiB); the rest is read and dropped. */
  maxOutput?: number;
  drainMs?: number;
  setsid?: boolean;
  /** Injected for tests; default: kill(2). */
  kill?: (pid: number, sig: number) => void;
}

export interface RunResult {
  pid: number;
  code: number;
  signal?: number;
  stdout: string;
  stderr: string;
  /** The timeout fired and the child was killed. */
  timedOut?: boolean;
  /** Some output beyond maxOutput was dropped. */
  truncated?: boolean;
}

/** Collect a stream's bytes up to `max` (the rest is read and dropped). */
export class Capture {
  private chunks: Buffer[] = [];
  private size = 0;
  truncated = false;
  readonly done: Promise<void>;
  constructor(
    readonly stream: Readable,
    private readonly max: number,
  ) {
    this.done = new Promise((resolve) => {
      stream.on('data', (c: Buffer) => this.add(c));
      stream.on('error', () => resolve());
      stream.on('close', () => resolve());
    });
  }
  private add(c: Buffer): void {
    const room = this.max - this.size;
    if (room <= 0) {
      this.truncated = true;
      return;
    }
    if (c.length > room) {
      this.truncated = true;
      c = c.subarray(0, room);
    }
    this.chunks.push(c);
    this.size += c.length;
  }
  text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }
}

/**
 * Run `file` with `args` (NOT including argv[0]) and collect its output.
 * Rejects only when the process cannot be started (SysError from posix_spawn).
 */
export async function run(spawner: Spawner, file: string, args: string[] = [], opts: RunOptions = {}): Promise<RunResult> {
  const max = opts.maxOutput ?? DEFAULT_MAX_OUTPUT;
  const kill = opts.kill ?? sysKill;
  const spawnOpts: SpawnOptions = {
    file,
    args: [opts.argv0 ?? file, ...args],
    env: opts.env,
    cwd: opts.cwd,
    stdin: opts.input !== undefined ? 'pipe' : 'null',
    stdout: 'pipe',
    stderr: 'pipe',
    setsid: opts.setsid ?? true,
  };
  const proc = spawner.spawn(spawnOpts);
  const out = new Capture(proc.stdout!, max);
  const err = new Capture(proc.stderr!, max);
  const setsid = spawnOpts.setsid;

  if (proc.stdin) {
    // A child that exits without reading gives EPIPE: not our error.
    proc.stdin.on('error', () => {});
    proc.stdin.end(opts.input);
  }

  let timedOut = false;
  let timer: NodeJS.Timeout | undefined;
  let exitedYet = false;
  if (opts.timeoutMs !== undefined) {
    timer = setTimeout(() => {
      if (exitedYet) return;
      timedOut = true;
      // Until we reap it the pid stays a zombie, so this cannot hit a reused pid.
      try {
        kill(setsid ? -proc.pid : proc.pid, SIGKILL);
      } catch {
        try {
          kill(proc.pid, SIGKILL);
        } catch {
          // already gone
        }
      }
    }, opts.timeoutMs);
  }

  let st: ExitStatus;
  try {
    st = await proc.exited;
  } finally {
    exitedYet = true;
    if (timer) clearTimeout(timer);
  }

  // Output normally ends with the child; a daemonized grandchild may hold the
  // pipes open, so stop waiting after a grace period.
  const drained = Promise.all([out.done, err.done]);
  let drainTimer: NodeJS.Timeout | undefined;
  const grace = new Promise<void>((resolve) => {
    drainTimer = setTimeout(resolve, opts.drainMs ?? DEFAULT_DRAIN_MS);
  });
  await Promise.race([drained, grace]);
  clearTimeout(drainTimer);
  proc.stdout!.destroy();
  proc.stderr!.destroy();
  proc.stdin?.destroy();

  const res: RunResult = { pid: st.pid, code: st.code, stdout: out.text(), stderr: err.text() };
  if (st.signal !== undefined) res.signal = st.signal;
  if (timedOut) res.timedOut = true;
  if (out.truncated || err.truncated) res.truncated = true;
  return res;
}
