// The debug console (Kata's agent.debug_console): a root shell for debugging.
//
// - With a vport (agent.debug_console_vport=PORT > 0): listen on vsock PORT;
//   every host connection (`kata-runtime exec`, socat) gets its own shell on a
//   new pseudo-terminal, which becomes the shell's controlling terminal, and
//   bytes are copied both ways (with backpressure) between the connection and
//   the pty master. When either side ends, the shell's process group is killed
//   (SIGKILL) and both are closed.
// - Without: a shell runs on the serial console (/dev/console as its stdio),
//   respawned whenever it exits.
//
// The shell is the first existing executable of a list (Kata: /bin/bash, then
// /bin/sh), looked up for every session so that a missing shell is an error
// line (logged, and sent to the host) while the listener keeps working.
// Nothing here may throw into the agent: every failure is a log line.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import type { Logger } from '../log';
import { DEFAULT_PATH, type SpawnedProcess, type SpawnOptions } from '../proc/spawner';
import { close as sysClose, kill as sysKill } from '../sys/misc';
import { openPty as sysOpenPty, type OpenPtyOptions, type Pty } from '../sys/pty';
import { ownedFdSocket } from '../transport/handles';
import { listen } from '../transport/listen';
import type { Listener } from '../transport/types';

export const DEFAULT_SHELLS: readonly string[] = ['/bin/bash', '/bin/sh'];
export const DEFAULT_CONSOLE = '/dev/console';
export const DEFAULT_SHELL_ENV: readonly string[] = [`PATH=${DEFAULT_PATH}`, 'TERM=vt100', 'HOME=/'];

const SIGKILL = os.constants.signals.SIGKILL;
const ESRCH = os.constants.errno.ESRCH;

/** The part of the Spawner the console uses. */
export interface ShellSpawner {
  spawn(opts: SpawnOptions): SpawnedProcess;
}

/** Syscalls, injectable for tests. */
export interface DebugConsoleDeps {
  openPty: (opts?: OpenPtyOptions) => Pty;
  /** Open the serial console (O_RDWR|O_NOCTTY|O_CLOEXEC). */
  openConsole: (path: string) => number;
  /** A stream on a pty master fd; takes ownership of the fd (closes it on failure too). */
  masterSocket: (fd: number) => net.Socket;
  close: (fd: number) => void;
  kill: (pid: number, sig: number) => void;
  isExecutable: (path: string) => boolean;
}

export const realDebugConsoleDeps: DebugConsoleDeps = {
  openPty: sysOpenPty,
  openConsole: (p) => fs.openSync(p, fs.constants.O_RDWR | fs.constants.O_NOCTTY),
  masterSocket: ownedFdSocket,
  close: sysClose,
  kill: sysKill,
  isExecutable,
};

export interface DebugConsoleOptions {
  /** vsock port to listen on (> 0); absent or 0 = shell on the serial console. */
  vport?: number;
  /** Listen here instead of vsock://-1:vport (tests: a unix:// address). Implies the listening mode. */
  listenAddress?: string;
  /** Serial console device (default /dev/console). */
  console?: string;
  /** Candidate shells, first existing one wins (default /bin/bash, /bin/sh). */
  shells?: readonly string[];
  /** The shell's environment (default PATH, TERM=vt100, HOME=/). */
  env?: readonly string[];
  spawner: ShellSpawner;
  log: Logger;
  /** Initial window size of a session's terminal (default 24x80). */
  winSize?: OpenPtyOptions['winSize'];
  /** After a session's shell exited, how long to let its output drain before closing (default 1000 ms). */
  drainMs?: number;
  /** Serial mode: pause before respawning a shell (default 100 ms; grows while shells die at once). */
  respawnDelayMs?: number;
  /** Serial mode: longest pause between respawns (default 10 s). */
  maxRespawnDelayMs?: number;
  deps?: Partial<DebugConsoleDeps>;
}

export interface DebugConsole {
  /** 'vsock://-1:PORT' (or the test address) when listening, else the console device. */
  readonly address: string;
  readonly mode: 'listen' | 'serial';
  /** Stop: close the listener, kill every shell, resolve once they are gone (bounded wait). */
  close(): Promise<void>;
}

/** A regular file (after symlinks) that we may execute. */
export function isExecutable(p: string): boolean {
  try {
    if (!fs.statSync(p).isFile()) return false;
    fs.accessSync(p, fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** The first usable shell of `shells`, or undefined. */
export function findShell(shells: readonly string[], usable: (p: string) => boolean = isExecutable): string | undefined {
  return shells.find((s) => s !== '' && usable(s));
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Start the debug console. Rejects only when the listener cannot be set up. */
export async function startDebugConsole(opts: DebugConsoleOptions): Promise<DebugConsole> {
  const deps: DebugConsoleDeps = { ...realDebugConsoleDeps, ...opts.deps };
  const shells = opts.shells ?? DEFAULT_SHELLS;
  const env = [...(opts.env ?? DEFAULT_SHELL_ENV)];
  const log = opts.log;
  const shellList = shells.length > 0 ? shells.join(', ') : '(empty list)';

  if (findShell(shells, deps.isExecutable) === undefined) {
    log.error({ shells }, `debug console: no shell found (tried ${shellList}); every session will fail until one exists`);
  }

  const killGroup = (pid: number): void => {
    try {
      deps.kill(-pid, SIGKILL);
    } catch (err) {
      if ((err as { errno?: number }).errno !== ESRCH) log.warn({ err, shellPid: pid }, 'debug console: cannot kill the shell process group');
    }
  };
  const closeQuietly = (fd: number): void => {
    try {
      deps.close(fd);
    } catch {
      // already closed
    }
  };

  if (opts.listenAddress !== undefined || (opts.vport ?? 0) > 0) {
    return startListening(opts, deps, { shells, shellList, env, log, killGroup, closeQuietly });
  }
  return startSerial(opts, deps, { shells, shellList, env, log, killGroup, closeQuietly });
}

interface Common {
  shells: readonly string[];
  shellList: string;
  env: string[];
  log: Logger;
  killGroup: (pid: number) => void;
  closeQuietly: (fd: number) => void;
}

async function startListening(opts: DebugConsoleOptions, deps: DebugConsoleDeps, c: Common): Promise<DebugConsole> {
  const { shells, shellList, env, log, killGroup } = c;
  const drainMs = opts.drainMs ?? 1000;
  const winSize = opts.winSize ?? { rows: 24, cols: 80 };
  const sessions = new Set<Promise<void>>();

  const refuse = (conn: net.Socket, peer: string, msg: string, err?: unknown): void => {
    log.error({ err, peer }, `debug console: ${msg}`);
    conn.on('error', () => undefined);
    conn.end(`debug console: ${msg}${err !== undefined ? `: ${errText(err)}` : ''}\r\n`);
    setTimeout(() => conn.destroy(), 5000).unref();
  };

  const onConnection = (conn: net.Socket, info: { peer: string }): void => {
    const peer = info.peer;
    const shell = findShell(shells, deps.isExecutable);
    if (shell === undefined) return refuse(conn, peer, `no shell found (tried ${shellList})`);

    let pty: Pty;
    let master: net.Socket;
    try {
      pty = deps.openPty({ winSize });
    } catch (err) {
      return refuse(conn, peer, 'cannot open a pseudo-terminal', err);
    }
    try {
      master = deps.masterSocket(pty.master);
    } catch (err) {
      return refuse(conn, peer, 'cannot open a pseudo-terminal', err);
    }
    master.on('error', () => undefined); // handled via 'close' below; EIO is the normal end

    // The shell opens the slave itself, after setsid (glibc applies POSIX_SPAWN_SETSID before
    // the file actions), so the pty becomes its controlling terminal: job control and ^C work.
    const ptyStdio = { open: pty.slavePath, flags: fs.constants.O_RDWR };
    let proc: SpawnedProcess;
    try {
      proc = opts.spawner.spawn({
        file: shell,
        args: [shell, '-i'],
        env,
        cwd: '/',
        stdin: ptyStdio,
        stdout: ptyStdio,
        stderr: ptyStdio,
        setsid: true,
      });
    } catch (err) {
      master.destroy();
      return refuse(conn, peer, `cannot start ${shell}`, err);
    }

    const pid = proc.pid;
    const tty = pty.slavePath;
    log.info({ peer, shellPid: pid, shell, tty }, 'debug console session started');
    let exited = false;
    let ended = false;
    let drainTimer: NodeJS.Timeout | undefined;

    const end = (reason: string, hostGone: boolean): void => {
      if (ended) return;
      ended = true;
      if (drainTimer) clearTimeout(drainTimer);
      conn.unpipe(master);
      master.unpipe(conn);
      // Once reaped (exited), the group was killed at that moment already.
      if (!exited) killGroup(pid);
      master.destroy();
      if (hostGone) conn.destroy();
      else {
        // The shell side ended: let what is queued reach the host, then close.
        conn.end();
        setTimeout(() => conn.destroy(), 5000).unref();
      }
      log.info({ peer, shellPid: pid, tty, reason }, 'debug console session ended');
    };

    conn.on('error', (err) => log.debug({ err, peer }, 'debug console connection error'));
    conn.on('end', () => end('host disconnected', true));
    conn.on('close', () => end('host disconnected', true));
    // EIO on the master (every slave fd closed) arrives as 'error' then 'close'.
    master.on('end', () => end('terminal closed', false));
    master.on('close', () => end('terminal closed', false));

    conn.pipe(master, { end: false });
    master.pipe(conn, { end: false });

    const done = proc.exited.then((st) => {
      exited = true;
      // Leftovers of the shell's group go with it (the pgid stays reserved while
      // it has members). After a host disconnect end() has killed it already.
      if (!ended) killGroup(pid);
      log.info({ peer, shellPid: pid, code: st.code, signal: st.signal }, 'debug console shell exited');
      if (!ended) {
        // Normally the master reports EIO right away; bounded in case a job still holds the tty.
        drainTimer = setTimeout(() => end('shell exited', false), drainMs);
        drainTimer.unref();
      }
    });
    sessions.add(done);
    void done.finally(() => sessions.delete(done));
  };

  const address = opts.listenAddress ?? `vsock://-1:${opts.vport}`;
  const listener: Listener = await listen(address, onConnection, log);
  log.info({ address: listener.address }, 'debug console listening');

  let closing: Promise<void> | undefined;
  return {
    address: listener.address,
    mode: 'listen',
    close(): Promise<void> {
      closing ??= (async () => {
        await listener.close(); // destroys the connections: each session kills its shell
        await boundedWait([...sessions], 3000);
      })();
      return closing;
    },
  };
}

async function startSerial(opts: DebugConsoleOptions, deps: DebugConsoleDeps, c: Common): Promise<DebugConsole> {
  const { shells, shellList, env, log, killGroup, closeQuietly } = c;
  const consolePath = opts.console ?? DEFAULT_CONSOLE;
  const baseDelay = opts.respawnDelayMs ?? 100;
  const maxDelay = opts.maxRespawnDelayMs ?? 10_000;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let current: SpawnedProcess | undefined;
  let delay = baseDelay;
  let lastError = '';

  const retry = (msg: string, err?: unknown): void => {
    // Log a failure once while it repeats; keep trying (the shell or console may appear later).
    const text = `${msg}${err !== undefined ? `: ${errText(err)}` : ''}`;
    if (text !== lastError) log.error({ err, console: consolePath }, `debug console: ${msg}`);
    lastError = text;
    schedule(Math.min(maxDelay, Math.max(delay * 2, 1000)));
  };

  const schedule = (ms: number): void => {
    if (closed) return;
    delay = ms;
    timer = setTimeout(() => {
      timer = undefined;
      runOnce();
    }, ms);
  };

  const runOnce = (): void => {
    if (closed) return;
    const shell = findShell(shells, deps.isExecutable);
    if (shell === undefined) return retry(`no shell found (tried ${shellList})`);
    let fd: number;
    try {
      // Reopened for every shell: a hangup of the console invalidates older fds.
      fd = deps.openConsole(consolePath);
    } catch (err) {
      return retry(`cannot open ${consolePath}`, err);
    }
    let proc: SpawnedProcess;
    try {
      // A session of its own and no controlling terminal: the console may be
      // the agent's, and a shell that took it over would hang it up on exit.
      proc = opts.spawner.spawn({ file: shell, args: [shell, '-i'], env, cwd: '/', stdin: fd, stdout: fd, stderr: fd, setsid: true });
    } catch (err) {
      return retry(`cannot start ${shell}`, err);
    } finally {
      closeQuietly(fd);
    }
    lastError = '';
    current = proc;
    const started = Date.now();
    log.info({ shellPid: proc.pid, shell, console: consolePath }, 'debug console shell started');
    void proc.exited.then((st) => {
      if (current === proc) current = undefined;
      log.info({ shellPid: proc.pid, code: st.code, signal: st.signal }, 'debug console shell exited');
      // A shell that dies at once (no console behind it...) is respawned ever more slowly.
      const quick = Date.now() - started < 1000;
      schedule(quick ? Math.min(maxDelay, Math.max(delay * 2, baseDelay)) : baseDelay);
    });
  };

  runOnce();
  return {
    address: consolePath,
    mode: 'serial',
    async close(): Promise<void> {
      closed = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      const p = current;
      if (p) {
        killGroup(p.pid);
        await boundedWait([p.exited], 3000);
      }
    },
  };
}

async function boundedWait(ps: Promise<unknown>[], ms: number): Promise<void> {
  let t: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.allSettled(ps),
    new Promise<void>((resolve) => {
      t = setTimeout(resolve, ms);
      t.unref();
    }),
  ]);
  if (t) clearTimeout(t);
}
