// A container process's stdio as the Kata stream RPCs see it (WriteStdin,
// ReadStdout, ReadStderr, CloseStdin, TtyWinResize).
//
// - Pipes (process.terminal = false): three pipe2(O_CLOEXEC) pairs; the
//   child's ends go to the OCI runtime, the agent keeps the others as
//   net.Sockets (epoll driven). agent.container_pipe_size is applied with
//   F_SETPIPE_SZ.
// - Terminal: the pty master received on the console socket, as a libuv Pipe
//   handle (a char device). Output and input both go through it; stderr reads
//   as EOF at once (there is no separate stderr on a terminal).
//
// Output is buffered per stream up to `bufferLimit`: beyond that the socket
// is paused, the kernel pipe (or tty buffer) fills and the container's writes
// block, so a host that stops reading never grows the agent's memory.
//
// read() is a long poll, like Kata's read_stream: it waits for at least one
// byte and returns at most `len` bytes. At end of stream it rejects with
// Kata's EOF status (INTERNAL "read meet eof", see KATA_EOF_MESSAGE), which
// the shims take as the end of the stream. Concurrent reads of one stream are
// served in call order. EIO on a pty master (every slave fd closed) is EOF.
//
// Nothing here throws asynchronously: every socket has an 'error' listener and
// every failure reaches the caller as a rejected promise carrying an RpcError.
import { cancelled, raceAbort } from './abort';
import net from 'node:net';
import os from 'node:os';
import { ownedFdSocket } from '../transport/handles';
import type { Logger } from '../log';
import { Code, RpcError } from '../rpc/status';
import {
  close as sysClose,
  fcntl as sysFcntl,
  O_CLOEXEC,
  pipe2 as sysPipe2,
  setPipeSize as sysSetPipeSize,
  setWinSize as sysSetWinSize,
  type WinSize,
} from '../sys/misc';
import { handleFd } from '../transport/handles';

/**
 * Kata's agent (read_stream in src/agent/src/rpc.rs, up to 3.26) fails a
 * ReadStdout/ReadStderr at end of stream with this message; the ttrpc status
 * is INTERNAL (map_ttrpc_err). The Go shim's io.Copy stops on the error.
 */
export const KATA_EOF_MESSAGE = 'read meet eof';
/** Kata's message for a write after CloseStdin (ERR_CANNOT_GET_WRITER). */
export const KATA_NO_WRITER_MESSAGE = 'Cannot get writer';
/** Kata's TtyWinResize status for a process without a terminal: UNAVAILABLE "no tty". */
export const KATA_NO_TTY_MESSAGE = 'no tty';

export const DEFAULT_BUFFER_LIMIT = 1024 * 1024;
/** After processExited(): end a stream once no output arrived for this long (Kata: 500 ms drain window). */
export const DEFAULT_EXIT_DRAIN_MS = 500;
/** The terminal's usual end-of-file character (^D), written by closeStdin() on a terminal. */
const VEOF = Buffer.from([0x04]);
const F_DUPFD_CLOEXEC = 1030;

export type OutputStream = 'stdout' | 'stderr';

/** The child's ends of the stdio pipes, to pass to the runtime. */
export interface StdioFds {
  stdin: number;
  stdout: number;
  stderr: number;
}

/** Syscalls, injectable for tests. */
export interface ProcessIODeps {
  pipe2: (flags: number) => [number, number];
  setPipeSize: (fd: number, size: number) => number;
  close: (fd: number) => void;
  setWinSize: (fd: number, ws: WinSize) => void;
  /** A stream on a pty master fd; takes ownership of the fd. */
  masterSocket: (fd: number) => net.Socket;
  /** A close-on-exec duplicate of an fd. */
  dup: (fd: number) => number;
}

export const realProcessIODeps: ProcessIODeps = {
  pipe2: sysPipe2,
  setPipeSize: sysSetPipeSize,
  close: sysClose,
  setWinSize: sysSetWinSize,
  masterSocket: ownedFdSocket,
  dup: (fd) => sysFcntl(fd, F_DUPFD_CLOEXEC, 0),
};

export interface PipesOptions {
  /** agent.container_pipe_size in bytes; 0 or absent = kernel default. */
  pipeSize?: number;
  log: Logger;
  /** Per output stream buffering limit in bytes (default 1 MiB). */
  bufferLimit?: number;
  deps?: Partial<ProcessIODeps>;
}

export interface TerminalOptions {
  log: Logger;
  bufferLimit?: number;
  deps?: Partial<ProcessIODeps>;
}

/** Kata's end-of-stream error for ReadStdout/ReadStderr. */
export function eofError(): RpcError {
  return new RpcError(Code.INTERNAL, KATA_EOF_MESSAGE);
}

/** Whether `err` is the end-of-stream error of read(). */
export function isEofError(err: unknown): boolean {
  return err instanceof RpcError && err.code === Code.INTERNAL && err.message === KATA_EOF_MESSAGE;
}


function noWriter(why: string): RpcError {
  return new RpcError(Code.INTERNAL, `${KATA_NO_WRITER_MESSAGE}: ${why}`);
}

function errCode(err: unknown): string | undefined {
  const c = (err as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : undefined;
}

const noop = (): void => undefined;

interface ReadWaiter {
  len: number;
  resolve: (b: Buffer) => void;
  reject: (e: unknown) => void;
  /** Detach the abort listener. */
  detach: () => void;
}

/** One output stream: a bounded buffer in front of a socket, served to long-polling readers. */
class OutStream {
  private chunks: Buffer[] = [];
  private size = 0;
  private ended = false;
  private paused = false;
  private exited = false;
  private exitDrainMs = DEFAULT_EXIT_DRAIN_MS;
  private quietTimer?: NodeJS.Timeout;
  private readonly waiters: ReadWaiter[] = [];

  constructor(
    readonly name: OutputStream,
    private readonly sock: net.Socket | undefined,
    private readonly limit: number,
    private readonly log: Logger,
    private readonly onChange: () => void,
  ) {
    if (!sock) {
      this.ended = true;
      return;
    }
    sock.on('data', (chunk: Buffer) => this.onData(chunk));
    sock.on('end', () => this.finish('end of stream'));
    sock.on('error', (err: Error) => {
      // EIO: a pty master whose slave side is closed everywhere. That is the
      // terminal's end of stream, not a failure.
      if (errCode(err) === 'EIO') this.log.debug({ stream: name }, 'process io: terminal closed (EIO)');
      else this.log.warn({ err, stream: name }, 'process io: read error, treating it as end of stream');
      this.finish('error');
    });
    sock.on('close', () => this.finish('closed'));
  }

  /** Bytes held by the agent for this stream: our buffer plus the socket's internal one. */
  get buffered(): number {
    return this.size + (this.sock?.readableLength ?? 0);
  }

  /** Nothing left to read, ever. */
  get done(): boolean {
    return this.ended && this.size === 0;
  }

  read(len: number, signal?: AbortSignal): Promise<Buffer> {
    if (!Number.isSafeInteger(len) || len <= 0) {
      return Promise.reject(new RpcError(Code.INVALID_ARGUMENT, `read ${this.name}: len must be a positive integer, got ${len}`));
    }
    if (signal?.aborted) return Promise.reject(cancelled(`read ${this.name}`, signal));
    if (this.waiters.length === 0 && this.size > 0) {
      const b = this.take(len);
      this.afterTake();
      return Promise.resolve(b);
    }
    if (this.ended && this.size === 0) return Promise.reject(eofError());
    return new Promise<Buffer>((resolve, reject) => {
      let onAbort: (() => void) | undefined;
      const w: ReadWaiter = {
        len,
        resolve,
        reject,
        detach: () => {
          if (onAbort) signal?.removeEventListener('abort', onAbort);
        },
      };
      if (signal) {
        onAbort = () => {
          const i = this.waiters.indexOf(w);
          if (i < 0) return;
          this.waiters.splice(i, 1);
          reject(cancelled(`read ${this.name}`, signal));
        };
        signal.addEventListener('abort', onAbort, { once: true });
      }
      this.waiters.push(w);
    });
  }

  /** The process is gone: end the stream once output stops arriving (another process may hold the pipe). */
  processExited(drainMs: number): void {
    if (this.ended || this.exited) return;
    this.exited = true;
    this.exitDrainMs = drainMs;
    this.armQuietTimer();
  }

  /** Drop everything (RemoveContainer): pending and later reads see EOF. */
  close(): void {
    this.chunks = [];
    this.size = 0;
    this.sock?.destroy();
    this.finish('closed');
  }

  private onData(chunk: Buffer): void {
    if (this.ended || chunk.length === 0) return;
    this.chunks.push(chunk);
    this.size += chunk.length;
    this.serve();
    if (this.size >= this.limit && !this.paused && this.sock) {
      // The socket stops reading from the fd; the kernel buffer fills and the writer blocks.
      this.sock.pause();
      this.paused = true;
    }
    this.armQuietTimer();
  }

  private finish(why: string): void {
    if (this.quietTimer) clearTimeout(this.quietTimer);
    this.quietTimer = undefined;
    if (!this.ended) {
      this.ended = true;
      this.log.debug({ stream: this.name, why, buffered: this.size }, 'process io: output stream ended');
    }
    this.serve();
  }

  /** Hand buffered data to waiting readers, in order; at EOF fail the rest. */
  private serve(): void {
    let served = false;
    while (this.waiters.length > 0 && this.size > 0) {
      const w = this.waiters.shift()!;
      w.detach();
      w.resolve(this.take(w.len));
      served = true;
    }
    if (this.ended && this.size === 0) {
      for (const w of this.waiters.splice(0)) {
        w.detach();
        w.reject(eofError());
      }
    }
    if (served) this.afterTake();
    else this.onChange();
  }

  private afterTake(): void {
    if (this.paused && !this.ended && this.size < this.limit && this.sock) {
      this.paused = false;
      this.sock.resume();
      this.armQuietTimer();
    }
    this.onChange();
  }

  private take(len: number): Buffer {
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length > len) {
      out = first.subarray(0, len);
      this.chunks[0] = first.subarray(len);
    } else if (first.length === len || this.chunks.length === 1) {
      out = first;
      this.chunks.shift();
    } else {
      const parts: Buffer[] = [];
      let n = 0;
      while (n < len && this.chunks.length > 0) {
        const c = this.chunks[0]!;
        const want = len - n;
        if (c.length <= want) {
          parts.push(c);
          n += c.length;
          this.chunks.shift();
        } else {
          parts.push(c.subarray(0, want));
          this.chunks[0] = c.subarray(want);
          n += want;
        }
      }
      out = Buffer.concat(parts, n);
    }
    this.size -= out.length;
    return out;
  }

  /**
   * After the process exited: while the socket is reading (not paused for a
   * full buffer), end the stream when nothing arrives for exitDrainMs. A
   * stream that reaches EOF normally never gets here.
   */
  private armQuietTimer(): void {
    if (!this.exited || this.ended) return;
    if (this.quietTimer) clearTimeout(this.quietTimer);
    this.quietTimer = undefined;
    if (this.paused) return; // the host has to read first; re-armed on resume
    this.quietTimer = setTimeout(() => {
      this.quietTimer = undefined;
      if (this.ended || this.paused) return;
      this.log.info({ stream: this.name }, 'process io: output still held open after the process exited; ending the stream');
      this.sock?.destroy();
      this.finish('process exited');
    }, this.exitDrainMs);
    this.quietTimer.unref();
  }
}

export class ProcessIO {
  /** The child's pipe ends (pipes only), until releaseChildFds(). */
  readonly childFds?: StdioFds;
  /** Resolves when stdout and stderr have both ended and been fully read (or close()). Never rejects. */
  readonly drained: Promise<void>;
  readonly isTerminal: boolean;

  private readonly out: OutStream;
  private readonly err: OutStream;
  private readonly stdinSock?: net.Socket;
  /** Terminal: our own reference to the pty master, held until close() (see terminal()). */
  private masterFd?: number;
  private readonly deps: ProcessIODeps;
  private readonly log: Logger;
  private readonly writeLimit: number;
  private childFdsOpen: boolean;
  private stdinClosed = false;
  private stdinError?: RpcError;
  private closed = false;
  private writeChain: Promise<unknown> = Promise.resolve();
  private resolveDrained!: () => void;
  private isDrained = false;

  private constructor(init: {
    deps: ProcessIODeps;
    log: Logger;
    bufferLimit: number;
    terminal: boolean;
    stdin: net.Socket;
    stdout: net.Socket;
    stderr?: net.Socket;
    childFds?: StdioFds;
    masterFd?: number;
  }) {
    this.deps = init.deps;
    this.log = init.log;
    this.isTerminal = init.terminal;
    this.writeLimit = init.bufferLimit;
    this.childFds = init.childFds;
    this.childFdsOpen = init.childFds !== undefined;
    this.masterFd = init.masterFd;
    this.drained = new Promise<void>((resolve) => {
      this.resolveDrained = resolve;
    });
    const check = (): void => this.checkDrained();
    this.out = new OutStream('stdout', init.stdout, init.bufferLimit, init.log, check);
    this.err = new OutStream('stderr', init.stderr, init.bufferLimit, init.log, check);
    this.stdinSock = init.stdin;
    this.stdinSock.on('error', (e: Error) => {
      this.stdinError ??= this.writeError(e);
      // On a terminal EIO is the end of the pty: the output side logs it.
      if (errCode(e) !== 'EIO') this.log.debug({ err: e }, 'process io: stdin write error');
    });
    this.checkDrained();
  }

  /**
   * Pipes for stdin/stdout/stderr (O_CLOEXEC). With a pipeSize > 0 every pipe
   * gets F_SETPIPE_SZ (a size the kernel rounds is logged; a refusal is a
   * warning, the pipe keeps the kernel default). Throws SysError when pipes
   * cannot be created; no fd leaks then.
   */
  static pipes(opts: PipesOptions): ProcessIO {
    const deps: ProcessIODeps = { ...realProcessIODeps, ...opts.deps };
    const log = opts.log;
    const opened: number[] = [];
    const sockets: net.Socket[] = [];
    try {
      const pair = (): [number, number] => {
        const p = deps.pipe2(O_CLOEXEC);
        opened.push(p[0], p[1]);
        return p;
      };
      const [inR, inW] = pair();
      const [outR, outW] = pair();
      const [errR, errW] = pair();
      const size = opts.pipeSize ?? 0;
      if (size > 0) {
        for (const [name, fd] of [['stdin', inW], ['stdout', outR], ['stderr', errR]] as const) {
          try {
            const got = deps.setPipeSize(fd, size);
            if (got !== size) log.info({ stream: name, requested: size, actual: got }, 'process io: the kernel chose another pipe size');
          } catch (err) {
            log.warn({ err, stream: name, requested: size }, 'process io: cannot set the pipe size, keeping the default');
          }
        }
      }
      const stdin = new net.Socket({ fd: inW, readable: false, writable: true });
      sockets.push(stdin);
      const stdout = new net.Socket({ fd: outR, readable: true, writable: false });
      sockets.push(stdout);
      const stderr = new net.Socket({ fd: errR, readable: true, writable: false });
      sockets.push(stderr);
      return new ProcessIO({
        deps,
        log,
        bufferLimit: opts.bufferLimit ?? DEFAULT_BUFFER_LIMIT,
        terminal: false,
        stdin,
        stdout,
        stderr,
        childFds: { stdin: inR, stdout: outW, stderr: errW },
      });
    } catch (err) {
      // A socket owns its fd: destroy it (closes the fd); close the rest by hand.
      const owned = new Set<number>();
      for (const s of sockets) {
        const fd = handleFd(s);
        if (fd !== undefined) owned.add(fd);
        s.on('error', noop);
        s.destroy();
      }
      for (const fd of opened) {
        if (owned.has(fd)) continue;
        try {
          deps.close(fd);
        } catch {
          // already closed
        }
      }
      throw err;
    }
  }

  /**
   * A terminal process: `masterFd` is the pty master from the console socket
   * (ownership passes to the ProcessIO, also on failure). stdout carries the
   * terminal's output; stderr reads as EOF at once.
   */
  static terminal(masterFd: number, opts: TerminalOptions): ProcessIO {
    const deps: ProcessIODeps = { ...realProcessIODeps, ...opts.deps };
    // The socket closes its fd when the output ends (EIO once every slave fd is
    // closed). The last close of a pty master hangs the terminal up, and the
    // kernel then sends SIGHUP to the session: a process that merely closed its
    // stdio (or is between closing it and exiting) would be killed. A duplicate
    // keeps the master open until close() (Kata too closes it only at cleanup).
    let keep: number;
    try {
      keep = deps.dup(masterFd);
    } catch (err) {
      try {
        deps.close(masterFd);
      } catch {
        // nothing more to do
      }
      throw err;
    }
    let master: net.Socket;
    try {
      master = deps.masterSocket(masterFd);
    } catch (err) {
      try {
        deps.close(keep);
      } catch {
        // nothing more to do
      }
      throw err;
    }
    return new ProcessIO({
      deps,
      log: opts.log,
      bufferLimit: opts.bufferLimit ?? DEFAULT_BUFFER_LIMIT,
      terminal: true,
      stdin: master,
      stdout: master,
      masterFd: keep,
    });
  }

  /** Close the child's ends in the agent once the runtime holds them (idempotent). */
  releaseChildFds(): void {
    if (!this.childFdsOpen || !this.childFds) return;
    this.childFdsOpen = false;
    for (const fd of [this.childFds.stdin, this.childFds.stdout, this.childFds.stderr]) {
      try {
        this.deps.close(fd);
      } catch (err) {
        this.log.warn({ err, fd }, 'process io: cannot close a child stdio fd');
      }
    }
  }

  /**
   * WriteStdin: resolves with data.length once the data is handed to the
   * kernel or queued within the buffer limit; otherwise waits for the queue
   * to drain. Writes are applied in call order. Rejects with an RpcError
   * after closeStdin()/close(), on EPIPE (the process closed its stdin), or
   * CANCELLED when `signal` aborts (data already queued may still arrive).
   */
  write(data: Buffer, signal?: AbortSignal): Promise<number> {
    // Closed at call time: later closeStdin() calls do not affect writes issued before them.
    if (this.closed || this.stdinClosed) return Promise.reject(noWriter('stdin is closed'));
    const p = this.writeChain.then(() => this.writeNow(data, signal));
    this.writeChain = p.catch(noop);
    if (!signal) return p;
    // A write stuck behind an earlier one still answers its own abort at once;
    // writeNow() sees the abort and skips the data when its turn comes.
    return new Promise<number>((resolve, reject) => {
      const onAbort = (): void => reject(cancelled('write stdin', signal));
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
      p.then(
        (n) => {
          signal.removeEventListener('abort', onAbort);
          resolve(n);
        },
        (e: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(e);
        },
      );
    });
  }

  /**
   * ReadStdout/ReadStderr: waits for at least one byte, returns at most `len`.
   * At end of stream rejects with eofError() (Kata: INTERNAL "read meet eof").
   * An abort of `signal` rejects with CANCELLED; data arriving later stays for
   * the next read.
   */
  read(stream: OutputStream, len: number, signal?: AbortSignal): Promise<Buffer> {
    if (stream !== 'stdout' && stream !== 'stderr') {
      return Promise.reject(new RpcError(Code.INVALID_ARGUMENT, `unknown stream ${String(stream)}`));
    }
    return (stream === 'stdout' ? this.out : this.err).read(len, signal);
  }

  /**
   * CloseStdin: pipes: the stdin pipe is closed once queued data is written,
   * so the process reads EOF. Terminal: the terminal's EOF character (^D) is
   * sent after queued data (Kata closes the pty master instead, which also
   * ends the process's output). Later writes fail. Idempotent.
   */
  closeStdin(): void {
    if (this.stdinClosed || this.closed) return;
    this.stdinClosed = true;
    const sock = this.stdinSock;
    if (!sock || sock.destroyed) return;
    if (this.isTerminal) {
      // Queued behind any pending write (same chain), so it comes after the data.
      this.writeChain = this.writeChain.then(() => {
        if (!sock.destroyed && !this.closed) sock.write(VEOF, noop);
      });
      return;
    }
    this.writeChain = this.writeChain.then(() => {
      if (sock.destroyed) return;
      sock.end(() => sock.destroy());
    });
  }

  /** TtyWinResize: TIOCSWINSZ on the pty master. A process without a terminal: UNAVAILABLE "no tty" (as Kata). */
  resize(rows: number, cols: number): void {
    if (!this.isTerminal) throw new RpcError(Code.UNAVAILABLE, KATA_NO_TTY_MESSAGE);
    for (const [what, v] of [['rows', rows], ['columns', cols]] as const) {
      if (!Number.isInteger(v) || v < 0 || v > 0xffff) throw new RpcError(Code.INVALID_ARGUMENT, `tty resize: bad ${what} ${v}`);
    }
    const fd = this.masterFd;
    if (this.closed || fd === undefined) throw new RpcError(Code.UNAVAILABLE, 'tty resize: the terminal is closed');
    try {
      this.deps.setWinSize(fd, { rows, cols });
    } catch (err) {
      throw new RpcError(Code.INTERNAL, `ioctl error: ${errCode(err) ?? (err as Error).message}`);
    }
  }

  /**
   * The process is gone (an addition to the brief's API, optional): a stream
   * that some other process (a daemonized child) still holds open is ended
   * once no output arrived for `drainMs`, after the host read what was
   * buffered (Kata's term_exit_notifier plus its 500 ms drain window).
   */
  processExited(drainMs = DEFAULT_EXIT_DRAIN_MS): void {
    this.out.processExited(drainMs);
    this.err.processExited(drainMs);
  }

  /** Bytes buffered in the agent for `stream` (ours plus the socket's own buffer). */
  bufferedBytes(stream: OutputStream): number {
    return (stream === 'stdout' ? this.out : this.err).buffered;
  }

  /** Release everything (RemoveContainer): pending and later reads see EOF, writes fail. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stdinClosed = true;
    this.releaseChildFds();
    this.stdinSock?.destroy();
    this.out.close();
    this.err.close();
    if (this.masterFd !== undefined) {
      // The last reference: the terminal hangs up (SIGHUP to a session still on it).
      const fd = this.masterFd;
      this.masterFd = undefined;
      try {
        this.deps.close(fd);
      } catch (err) {
        this.log.warn({ err, fd }, 'process io: cannot close the pty master');
      }
    }
    this.checkDrained();
  }

  private async writeNow(data: Buffer, signal?: AbortSignal): Promise<number> {
    if (signal?.aborted) throw cancelled('write stdin', signal);
    this.checkWritable();
    if (data.length === 0) return 0;
    const sock = this.stdinSock!;
    if (sock.writableLength > this.writeLimit) {
      await waitDrain(sock, signal);
      this.checkWritable();
    }
    const flushed = new Promise<void>((resolve, reject) => {
      sock.write(data, (e?: Error | null) => {
        if (!e) return resolve();
        const failed = this.writeError(e);
        this.stdinError ??= failed;
        reject(failed);
      });
    });
    flushed.catch(noop);
    // A write that failed at once (EPIPE) has destroyed the socket already; its callback comes later.
    if (sock.errored) {
      this.stdinError ??= this.writeError(sock.errored);
      throw this.stdinError;
    }
    if (sock.writableLength <= this.writeLimit) return data.length;
    await raceAbort(flushed, signal, 'write stdin');
    return data.length;
  }

  private checkWritable(): void {
    if (this.closed) throw noWriter('stdin is closed');
    if (this.stdinError) throw this.stdinError;
    const sock = this.stdinSock;
    if (!sock || sock.destroyed || !sock.writable) throw noWriter(this.isTerminal ? 'the terminal is closed' : 'stdin is closed');
  }

  private writeError(e: Error): RpcError {
    const code = errCode(e);
    if (code === 'EPIPE') return new RpcError(Code.INTERNAL, `write stdin: Broken pipe (os error ${os.constants.errno.EPIPE}): the process closed its stdin`);
    if (code === 'EIO') return new RpcError(Code.INTERNAL, 'write stdin: the terminal is closed (EIO)');
    if (code === 'ERR_STREAM_DESTROYED' || code === 'ERR_STREAM_WRITE_AFTER_END') return noWriter('stdin is closed');
    return new RpcError(Code.INTERNAL, `write stdin: ${e.message}`);
  }

  private checkDrained(): void {
    if (this.isDrained) return;
    if (this.closed || (this.out.done && this.err.done)) {
      this.isDrained = true;
      this.resolveDrained();
    }
  }
}

/** Wait for a writable socket's 'drain'; rejects when it closes first or `signal` aborts. */
function waitDrain(sock: net.Socket, signal?: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const cleanup = (): void => {
      sock.off('drain', onDrain);
      sock.off('close', onClose);
      signal?.removeEventListener('abort', onAbort);
    };
    const onDrain = (): void => {
      cleanup();
      resolve();
    };
    const onClose = (): void => {
      cleanup();
      reject(noWriter('stdin is closed'));
    };
    const onAbort = (): void => {
      cleanup();
      reject(cancelled('write stdin', signal!));
    };
    sock.on('drain', onDrain);
    sock.on('close', onClose);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

