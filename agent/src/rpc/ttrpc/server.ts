// ttrpc server side of one connection: frames in, Dispatcher calls, frames out.
//
// Behaviour follows containerd/ttrpc (server.go) where the protocol leaves a
// choice:
// - requests on one connection run concurrently; each response goes out on the
//   request's stream id as soon as it is ready;
// - an oversized frame is skipped and answered RESOURCE_EXHAUSTED on its id;
// - an even stream id, a reused/decreasing id, a data frame (no RPC here
//   streams) or an undecodable Request is answered INVALID_ARGUMENT on its id;
// - other frame types (response, unknown) are ignored for forward compatibility;
// - EOF or a reset ends the connection; responses for a vanished client are
//   dropped silently.
// The connection never throws out of its event handlers: the agent is PID 1.
import { setMaxListeners } from 'node:events';
import type { Duplex } from 'node:stream';
import type { Logger } from 'pino';
import type { BytesResult, CallContext, Dispatcher } from '../dispatch';
import { Code, toStatus } from '../status';
import {
  FrameDecoder,
  MAX_MESSAGE_LENGTH,
  MessageType,
  decodeRequest,
  encodeResponseFrame,
  type DecodedEvent,
  type RpcStatus,
} from './codec';

export interface TtrpcServeOptions {
  /** Stop reading new frames while this many calls are running on the connection (default 1024). */
  maxInFlight?: number;
  /** Protocol errors logged at warn per connection before the rest are suppressed (default 10). */
  logLimit?: number;
  /**
   * The transport is one byte stream without connection boundaries (a virtio-serial port): a host
   * client can go and the next one attach before the agent notices. Every ttrpc client starts at
   * stream 1, so a request on stream 1 after other streams starts a new session (numbering restarts)
   * instead of being refused as a reused stream id.
   */
  newSessionOnStreamOne?: boolean;
}

export interface TtrpcConnection {
  /** Abort running calls and drop the connection. Idempotent. */
  close(): void;
  /** Settles once the socket has closed. */
  readonly closed: Promise<void>;
  /** Calls currently running. */
  readonly inFlight: number;
}

/** setTimeout's limit; longer deadlines are treated as none. */
const MAX_TIMER_MS = 2 ** 31 - 1;

let connSeq = 0;

export function serveTtrpc(
  sock: Duplex,
  dispatcher: Dispatcher,
  log: Logger,
  opts: TtrpcServeOptions = {},
): TtrpcConnection {
  const maxInFlight = opts.maxInFlight ?? 1024;
  const logLimit = opts.logLimit ?? 10;
  const clog = log.child({ ttrpc_conn: ++connSeq });
  const decoder = new FrameDecoder();
  const connAbort = new AbortController();
  // Every call's handler may listen on this signal (long polls): many at once is normal.
  setMaxListeners(0, connAbort.signal);
  /** Per-call controllers of calls with a deadline (the others share connAbort.signal). */
  const callAborts = new Set<AbortController>();

  let lastStreamId = 0;
  let inFlight = 0;
  let closed = false;
  let readEnded = false;
  let waitingDrain = false;
  let paused = false;
  let protocolErrors = 0;

  let resolveClosed!: () => void;
  const closedP = new Promise<void>((r) => (resolveClosed = r));

  const protocolError = (fields: Record<string, unknown>, msg: string): void => {
    protocolErrors++;
    if (protocolErrors <= logLimit) clog.warn(fields, msg);
    else if (protocolErrors === logLimit + 1) clog.warn('further ttrpc protocol errors on this connection are not logged');
  };

  /** Frames decoded but not yet handled (only while maxInFlight calls run). */
  let queue: DecodedEvent[] = [];
  let queueHead = 0;

  const updateFlow = (): void => {
    if (closed) return;
    const stop = waitingDrain || queueHead < queue.length;
    if (stop && !paused) {
      paused = true;
      sock.pause();
    } else if (!stop && paused && !readEnded) {
      paused = false;
      sock.resume();
    }
  };

  const onDrain = (): void => {
    waitingDrain = false;
    updateFlow();
  };

  const writable = (): boolean => !closed && !sock.destroyed && sock.writable && !sock.writableEnded;

  const write = (bufs: readonly Uint8Array[]): void => {
    if (!writable()) return; // client gone: drop silently
    try {
      // One writev for a frame given in pieces (a response's header, then its payload as is).
      if (bufs.length > 1) sock.cork();
      let ok = true;
      for (const b of bufs) ok = sock.write(b);
      if (bufs.length > 1) sock.uncork();
      if (!ok && !waitingDrain) {
        waitingDrain = true;
        sock.once('drain', onDrain);
        updateFlow();
      }
    } catch (err) {
      clog.debug({ err: String(err) }, 'ttrpc write failed');
      destroy();
    }
  };

  const sendResponse = (streamId: number, status: RpcStatus, payload?: Uint8Array[]): void => {
    if (!writable()) return;
    let frame: Uint8Array[];
    try {
      frame = encodeResponseFrame(streamId, status, payload);
    } catch (err) {
      if (!(err instanceof RangeError)) throw err;
      const bytes = (payload ?? []).reduce((n, c) => n + c.length, 0);
      clog.warn({ stream: streamId, bytes }, 'ttrpc response too large');
      frame = encodeResponseFrame(streamId, {
        code: Code.RESOURCE_EXHAUSTED,
        message: `response message length ${bytes} exceed maximum message size of ${MAX_MESSAGE_LENGTH}`,
      });
    }
    write(frame);
  };

  const maybeFinish = (): void => {
    if (readEnded && inFlight === 0 && !closed) {
      try {
        sock.end();
      } catch {
        destroy();
      }
    }
  };

  const onRequest = (streamId: number, payload: Buffer): void => {
    if (opts.newSessionOnStreamOne && streamId === 1 && lastStreamId > 0) {
      clog.info({ last: lastStreamId }, 'stream 1 again: a new host session on this byte stream');
      lastStreamId = 0;
    }
    if (streamId <= lastStreamId) {
      protocolError({ stream: streamId, last: lastStreamId }, 'ttrpc stream id reused');
      sendResponse(streamId, { code: Code.INVALID_ARGUMENT, message: 'StreamID cannot be re-used and must increment' });
      return;
    }
    lastStreamId = streamId;
    let req;
    try {
      req = decodeRequest(payload);
    } catch (err) {
      protocolError({ stream: streamId, err: String(err) }, 'undecodable ttrpc request');
      sendResponse(streamId, { code: Code.INVALID_ARGUMENT, message: `unmarshal request error: ${(err as Error).message}` });
      return;
    }

    const metadata: Record<string, string[]> = Object.create(null);
    for (const kv of req.metadata) {
      const k = kv.key.toLowerCase();
      (metadata[k] ??= []).push(kv.value);
    }

    // The Dispatcher enforces the deadline (DEADLINE_EXCEEDED). A call with a
    // deadline gets its own signal, aborted when the call is over, so a
    // handler still running when the deadline cut it short is told to stop;
    // every other call shares the connection's signal.
    let deadline: number | undefined;
    let signal = connAbort.signal;
    let callAbort: AbortController | undefined;
    const ms = req.timeoutNano / 1e6;
    if (ms > 0 && ms <= MAX_TIMER_MS) {
      deadline = Date.now() + ms;
      callAbort = new AbortController();
      callAborts.add(callAbort);
      signal = callAbort.signal;
    }

    const ctx: CallContext = { protocol: 'ttrpc', deadline, signal, metadata, log: clog };
    inFlight++;

    const done = (res: BytesResult): void => {
      if (callAbort) {
        callAborts.delete(callAbort);
        callAbort.abort(new Error('call finished'));
      }
      inFlight--;
      sendResponse(streamId, res.status, res.payload);
      pump();
      maybeFinish();
    };
    let p: Promise<BytesResult>;
    try {
      p = dispatcher.callBytes(req.service, req.method, req.payload, ctx);
    } catch (err) {
      p = Promise.resolve({ status: toStatus(err) });
    }
    p.then(done, (err) => done({ status: toStatus(err) }));
  };

  const onEvent = (ev: DecodedEvent): void => {
    if (ev.kind === 'oversized') {
      protocolError({ stream: ev.streamId, length: ev.length }, 'oversized ttrpc frame discarded');
      sendResponse(ev.streamId, {
        code: Code.RESOURCE_EXHAUSTED,
        message: `message length ${ev.length} exceed maximum message size of ${MAX_MESSAGE_LENGTH}`,
      });
      return;
    }
    if (ev.streamId % 2 !== 1) {
      protocolError({ stream: ev.streamId, type: ev.type }, 'ttrpc frame with an even stream id');
      sendResponse(ev.streamId, { code: Code.INVALID_ARGUMENT, message: 'StreamID must be odd for client initiated streams' });
      return;
    }
    switch (ev.type) {
      case MessageType.REQUEST:
        onRequest(ev.streamId, ev.payload);
        return;
      case MessageType.DATA:
        // No method of this protocol streams: there is never an open stream to feed.
        protocolError({ stream: ev.streamId }, 'ttrpc data frame for no open stream');
        sendResponse(ev.streamId, { code: Code.INVALID_ARGUMENT, message: 'StreamID is no longer active' });
        return;
      default:
        // Responses from a client, or types from a future protocol version: ignore.
        protocolError({ stream: ev.streamId, type: ev.type }, 'ignored ttrpc frame type');
    }
  };

  const handle = (ev: DecodedEvent): void => {
    try {
      onEvent(ev);
    } catch (err) {
      clog.error({ err: String(err), stream: ev.streamId }, 'ttrpc frame handling failed');
    }
  };

  /** Handle queued frames while fewer than maxInFlight calls run; pause reading otherwise. */
  const pump = (): void => {
    while (queueHead < queue.length && inFlight < maxInFlight && !closed) handle(queue[queueHead++]!);
    if (queueHead >= queue.length) {
      queue = [];
      queueHead = 0;
    }
    updateFlow();
  };

  const onData = (chunk: Buffer): void => {
    if (closed) return;
    let events: DecodedEvent[];
    try {
      events = decoder.push(chunk);
    } catch (err) {
      clog.warn({ err: String(err) }, 'ttrpc framing failed');
      destroy();
      return;
    }
    if (queueHead === queue.length && events.length === 1 && inFlight < maxInFlight) {
      handle(events[0]!); // the common case: one frame per chunk, nothing queued
      return;
    }
    for (const ev of events) queue.push(ev);
    pump();
  };

  const onEnd = (): void => {
    if (decoder.midFrame) clog.debug({ buffered: decoder.buffered }, 'ttrpc connection ended inside a frame');
    readEnded = true;
    maybeFinish();
  };

  const onClose = (): void => {
    if (closed) return;
    closed = true;
    connAbort.abort(new Error('connection closed'));
    for (const ac of callAborts) ac.abort(new Error('connection closed'));
    callAborts.clear();
    sock.off('data', onData);
    sock.off('end', onEnd);
    sock.off('drain', onDrain);
    clog.debug({ inFlight }, 'ttrpc connection closed');
    resolveClosed();
  };

  const destroy = (): void => {
    try {
      sock.destroy();
    } catch {
      /* already gone */
    }
    onClose();
  };

  // Errors (ECONNRESET, EPIPE, write after end) are expected when clients go
  // away; they must never become unhandled 'error' events.
  sock.on('error', (err: Error) => clog.debug({ err: err.message }, 'ttrpc socket error'));
  sock.on('close', onClose);
  sock.on('end', onEnd);
  sock.on('data', onData);
  if (sock.destroyed) onClose();

  return {
    close: destroy,
    closed: closedP,
    get inFlight() {
      return inFlight;
    },
  };
}
