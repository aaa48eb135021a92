// The --console-socket of an OCI runtime: for a container (or exec) with
// process.terminal = true, crun/runc create the pseudo-terminal inside the
// container, connect to this AF_UNIX socket and send the pty master with
// SCM_RIGHTS (runc sends the pty's name as data, crun one byte).
//
// Accepting is done by a node:net server with pauseOnConnect, so Node never
// reads from the accepted connection (a plain read would consume the byte the
// fd is attached to and the kernel would discard the fd). The message is then
// taken with recvmsg(MSG_DONTWAIT) on the connection's fd; the runtime sends
// it right after connect, so it is normally there at once, otherwise the read
// is retried with a short backoff until the deadline. Nothing blocks the event
// loop.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from '../log';
import { nullLogger } from '../log';
import { Code, RpcError } from '../rpc/status';
import { close as sysClose } from '../sys/misc';
import { MSG_CMSG_CLOEXEC, MSG_DONTWAIT, recvmsg as sysRecvmsg, type RecvMsgResult } from '../sys/socket';
import { removeStaleSocket } from '../transport/unix';

export const DEFAULT_RECEIVE_TIMEOUT_MS = 30_000;
const FIRST_RETRY_MS = 1;
const MAX_RETRY_MS = 50;

export interface ConsoleSocketDeps {
  recvmsg: (fd: number, opts: { maxData: number; maxFds: number; flags: number }) => RecvMsgResult;
  close: (fd: number) => void;
}

const realDeps: ConsoleSocketDeps = {
  recvmsg: (fd, opts) => sysRecvmsg(fd, opts),
  close: sysClose,
};

export interface ConsoleSocketOptions {
  log?: Logger;
  deps?: Partial<ConsoleSocketDeps>;
}

interface Waiter {
  resolve: (fd: number) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class ConsoleSocket {
  private readonly queue: net.Socket[] = [];
  private waiter?: Waiter;
  private retryTimer?: NodeJS.Timeout;
  private retryDelay = FIRST_RETRY_MS;
  private lastError?: string;
  private closed = false;

  private constructor(
    /** The socket's path (pass it as --console-socket). */
    readonly path: string,
    private readonly server: net.Server,
    private readonly deps: ConsoleSocketDeps,
    private readonly log: Logger,
  ) {
    server.on('connection', (sock: net.Socket) => {
      sock.on('error', () => undefined);
      if (this.closed) {
        sock.destroy();
        return;
      }
      this.queue.push(sock);
      this.pump();
    });
    server.on('error', (err) => this.log.warn({ err, path: this.path }, 'console socket: server error'));
  }

  /**
   * Listen on `socketPath` (parent directories are created 0700, a stale
   * socket file is replaced, the socket is made 0600). Connections are queued
   * until receive() is called, so the runtime may connect before that.
   */
  static async listen(socketPath: string, opts: ConsoleSocketOptions = {}): Promise<ConsoleSocket> {
    const log = opts.log ?? nullLogger();
    const deps = { ...realDeps, ...opts.deps };
    try {
      fs.mkdirSync(path.dirname(socketPath), { recursive: true, mode: 0o700 });
      removeStaleSocket(socketPath);
    } catch (err) {
      throw new RpcError(Code.INTERNAL, `console socket ${socketPath}: ${(err as Error).message}`);
    }
    const server = net.createServer({ pauseOnConnect: true });
    const cs = new ConsoleSocket(socketPath, server, deps, log);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(new RpcError(Code.INTERNAL, `console socket ${socketPath}: ${err.message}`));
      server.once('error', onError);
      server.listen(socketPath, () => {
        server.off('error', onError);
        resolve();
      });
    });
    try {
      fs.chmodSync(socketPath, 0o600);
    } catch (err) {
      await cs.close();
      throw new RpcError(Code.INTERNAL, `console socket ${socketPath}: ${(err as Error).message}`);
    }
    // Only a pending receive() keeps the process alive.
    server.unref();
    return cs;
  }

  /**
   * The next pty master fd sent to the socket (close-on-exec; the caller owns
   * it). Rejects with DEADLINE_EXCEEDED after `timeoutMs`, with CANCELLED when
   * the socket is closed meanwhile. One receive at a time.
   */
  receive(timeoutMs = DEFAULT_RECEIVE_TIMEOUT_MS): Promise<number> {
    if (this.closed) return Promise.reject(new RpcError(Code.FAILED_PRECONDITION, `console socket ${this.path} is closed`));
    if (this.waiter) return Promise.reject(new RpcError(Code.FAILED_PRECONDITION, `console socket ${this.path}: a receive is already pending`));
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        this.stopRetry();
        const why = this.lastError !== undefined ? ` (last error: ${this.lastError})` : '';
        reject(new RpcError(Code.DEADLINE_EXCEEDED, `console socket ${this.path}: no terminal received within ${timeoutMs} ms${why}`));
      }, timeoutMs);
      this.waiter = { resolve, reject, timer };
      this.pump();
    });
  }

  /** Stop listening, drop queued connections, remove the socket file. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.stopRetry();
    const w = this.waiter;
    this.waiter = undefined;
    if (w) {
      clearTimeout(w.timer);
      w.reject(new RpcError(Code.CANCELLED, `console socket ${this.path} closed`));
    }
    for (const s of this.queue.splice(0)) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    try {
      if (fs.lstatSync(this.path).isSocket()) fs.unlinkSync(this.path);
    } catch {
      // already gone
    }
  }

  private stopRetry(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  private dropHead(why: string): void {
    const s = this.queue.shift();
    s?.destroy();
    this.lastError = why;
    this.retryDelay = FIRST_RETRY_MS;
    this.log.warn({ path: this.path, why }, 'console socket: dropped a connection');
  }

  /** Try to take an fd from the oldest connection; called on connection, receive() and retry ticks. */
  private pump(): void {
    while (this.waiter && !this.retryTimer && this.queue.length > 0) {
      const sock = this.queue[0]!;
      const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
      if (typeof fd !== 'number' || fd < 0) {
        this.dropHead('connection has no fd');
        continue;
      }
      let r: RecvMsgResult;
      try {
        r = this.deps.recvmsg(fd, { maxData: 4096, maxFds: 8, flags: MSG_CMSG_CLOEXEC | MSG_DONTWAIT });
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code === 'EAGAIN' || code === 'EWOULDBLOCK') {
          // Nothing yet: poll again shortly.
          this.retryTimer = setTimeout(() => {
            this.retryTimer = undefined;
            this.pump();
          }, this.retryDelay);
          this.retryDelay = Math.min(this.retryDelay * 2, MAX_RETRY_MS);
          return;
        }
        this.dropHead(`recvmsg: ${(err as Error).message}`);
        continue;
      }
      if (r.fds.length === 0) {
        if (r.data.length === 0) this.dropHead('peer closed without sending a terminal');
        // Data without an fd: keep reading this connection; the fd rides on its own bytes.
        continue;
      }
      const [master, ...extra] = r.fds as [number, ...number[]];
      for (const x of extra) this.closeQuietly(x);
      this.queue.shift();
      sock.destroy();
      this.retryDelay = FIRST_RETRY_MS;
      const w = this.waiter;
      this.waiter = undefined;
      clearTimeout(w.timer);
      this.log.debug({ path: this.path, fd: master, name: r.data.toString('utf8').replace(/\0+$/, '') }, 'console socket: received terminal');
      w.resolve(master);
      return;
    }
  }

  private closeQuietly(fd: number): void {
    try {
      this.deps.close(fd);
    } catch {
      // nothing more to do
    }
  }
}
