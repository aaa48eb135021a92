// Tell gRPC (HTTP/2) from ttrpc on one connection by its first bytes: an
// HTTP/2 client always starts with the 24-byte preface
// "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"; anything else is ttrpc (whose first byte is
// the top byte of a big-endian length, so never 'P' for a sane message).
// The bytes read while deciding are put back (unshift) before the socket is
// handed over, so the next reader sees the stream from its first byte.
import type net from 'node:net';
import type { Logger } from '../log';

export const HTTP2_PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export type Protocol = 'ttrpc' | 'grpc';

/** Classify a prefix: a protocol once decidable, or undefined if more bytes are needed. */
export function classify(prefix: Uint8Array): Protocol | undefined {
  const n = Math.min(prefix.length, HTTP2_PREFACE.length);
  for (let i = 0; i < n; i++) if (prefix[i] !== HTTP2_PREFACE[i]) return 'ttrpc';
  return prefix.length >= HTTP2_PREFACE.length ? 'grpc' : undefined;
}

export interface SniffHandlers {
  onTtrpc(sock: net.Socket): void;
  onGrpc(sock: net.Socket): void;
}

export interface SniffOptions {
  /** Close a client that sends nothing decidable within this time (default 10 s). */
  timeoutMs?: number;
  log?: Logger;
  /** For logs. */
  peer?: string;
}

export type SniffOutcome = Protocol | 'timeout' | 'closed';

/**
 * Read just enough of `sock` to pick the protocol, put the bytes back, and
 * call the matching handler synchronously. The socket is handed over in its
 * initial (not flowing, not paused) state: attaching 'data' starts the flow,
 * and http2 sessions pick up the buffered bytes themselves. Resolves with
 * what happened; never rejects. A silent client is destroyed on timeout; one
 * that ends or fails before deciding is destroyed too.
 */
export function sniff(sock: net.Socket, handlers: SniffHandlers, opts: SniffOptions = {}): Promise<SniffOutcome> {
  const log = opts.log;
  const timeoutMs = opts.timeoutMs ?? 10_000;
  return new Promise<SniffOutcome>((resolve) => {
    const chunks: Buffer[] = [];
    let total = 0;
    let done = false;

    const cleanup = (): void => {
      done = true;
      clearTimeout(timer);
      sock.off('readable', onReadable);
      sock.off('end', onEnd);
      sock.off('close', onClose);
      sock.off('error', onError);
    };

    const fail = (outcome: 'timeout' | 'closed', msg: string, err?: Error): void => {
      if (done) return;
      cleanup();
      log?.[outcome === 'timeout' ? 'warn' : 'debug']({ peer: opts.peer, bytes: total, err }, msg);
      sock.destroy();
      resolve(outcome);
    };

    const onReadable = (): void => {
      if (done) return;
      let b: Buffer | null;
      let proto: Protocol | undefined;
      while ((b = sock.read() as Buffer | null) !== null) {
        chunks.push(b);
        total += b.length;
        proto = classify(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total));
        if (proto) break;
      }
      if (!proto) return;
      cleanup();
      const head = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, total);
      sock.unshift(head);
      log?.debug({ peer: opts.peer, protocol: proto }, 'protocol detected');
      resolve(proto);
      try {
        if (proto === 'grpc') handlers.onGrpc(sock);
        else handlers.onTtrpc(sock);
      } catch (err) {
        log?.error({ err, peer: opts.peer, protocol: proto }, 'protocol handler failed');
        sock.destroy();
      }
    };
    const onEnd = (): void => fail('closed', 'connection ended before the protocol was known');
    const onClose = (): void => fail('closed', 'connection closed before the protocol was known');
    const onError = (err: Error): void => fail('closed', 'connection failed before the protocol was known', err);

    const timer = setTimeout(() => fail('timeout', `no protocol preface within ${timeoutMs} ms: closing`), timeoutMs);
    sock.on('readable', onReadable);
    sock.on('end', onEnd);
    sock.on('close', onClose);
    sock.on('error', onError);
    // Bytes already buffered (e.g. a serial session handed over on first data).
    if (sock.readableLength > 0) onReadable();
  });
}
