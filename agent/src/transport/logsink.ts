// agent.log_vport: in Kata the agent LISTENS on vsock port log_vport and
// writes its log lines to the connection the host opens. logSink() is a pino
// destination that keeps up to `maxBuffer` bytes (dropping the oldest lines)
// while no host is connected or the connection is backed up, and streams once
// one is. A newer connection replaces an older one.
import type net from 'node:net';
import { nullLogger, type Logger } from '../log';
import type { ListenOptions } from './listen';
import { listen } from './listen';
import type { Listener } from './types';

export const DEFAULT_LOG_BUFFER = 1 << 20;

export interface LogSinkOptions {
  /** Bytes kept while nobody reads (default 1 MiB); the oldest lines are dropped beyond it. */
  maxBuffer?: number;
  listen?: ListenOptions;
}

export interface LogSink {
  /** pino's DestinationStream interface. Never throws, never blocks. */
  write(chunk: string | Uint8Array): boolean;
  /** Resolves with the address once listening; rejects if listening failed. */
  readonly listening: Promise<string>;
  readonly connected: boolean;
  /** Bytes waiting for a reader. */
  readonly bufferedBytes: number;
  /** Bytes dropped so far because the buffer was full. */
  readonly droppedBytes: number;
  /** Stop listening and close the host connection (buffered lines are kept). */
  close(): Promise<void>;
}

/**
 * A log destination served on `port` (a vsock port number: vsock://-1:PORT),
 * or on any listen address string (e.g. a unix socket in tests). `log` is
 * only used to report the sink's own listen failure or connections; it must
 * not write into this sink.
 */
export function logSink(port: number | string, log?: Logger, opts: LogSinkOptions = {}): LogSink {
  const maxBuffer = Math.max(1, opts.maxBuffer ?? DEFAULT_LOG_BUFFER);
  const address = typeof port === 'number' ? `vsock://-1:${port}` : port;
  const queue: Buffer[] = [];
  let queued = 0;
  let dropped = 0;
  let conn: net.Socket | undefined;
  let listener: Listener | undefined;
  let closed = false;

  const enqueue = (b: Buffer): void => {
    if (b.length > maxBuffer) {
      dropped += b.length - maxBuffer;
      b = b.subarray(b.length - maxBuffer);
    }
    queue.push(b);
    queued += b.length;
    while (queued > maxBuffer) {
      const old = queue.shift()!;
      queued -= old.length;
      dropped += old.length;
    }
  };

  const flush = (): void => {
    const s = conn;
    while (s && !s.destroyed && !s.writableNeedDrain && queue.length > 0) {
      const b = queue.shift()!;
      queued -= b.length;
      s.write(b);
    }
  };

  const llog = log ?? nullLogger();

  const listening = listen(
    address,
    (sock) => {
      if (closed) {
        sock.destroy();
        return;
      }
      const old = conn;
      conn = sock;
      old?.destroy();
      llog.info({ address }, 'log reader connected');
      sock.on('error', () => {});
      sock.resume(); // ignore anything the host sends
      sock.on('drain', flush);
      sock.once('close', () => {
        if (conn === sock) conn = undefined;
      });
      flush();
    },
    llog,
    opts.listen,
  ).then(
    (l) => {
      listener = l;
      if (closed) void l.close();
      return l.address;
    },
    (err: unknown) => {
      llog.warn({ err, address }, 'cannot listen for a log reader: logs stay buffered');
      throw err;
    },
  );
  // Nobody has to await it: avoid an unhandled rejection in PID 1.
  listening.catch(() => {});

  return {
    write(chunk: string | Uint8Array): boolean {
      const b = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : Buffer.from(chunk);
      if (b.length === 0) return true;
      const s = conn;
      if (s && !s.destroyed && !s.writableNeedDrain && queue.length === 0) {
        s.write(b);
      } else {
        enqueue(b);
      }
      return true;
    },
    listening,
    get connected() {
      return conn !== undefined && !conn.destroyed;
    },
    get bufferedBytes() {
      return queued;
    },
    get droppedBytes() {
      return dropped;
    },
    async close(): Promise<void> {
      closed = true;
      conn?.destroy();
      conn = undefined;
      try {
        await listening;
      } catch {
        return;
      }
      await listener?.close();
    },
  };
}
