// ttrpc client over one connected stream: unary calls, many in flight, odd
// stream ids 1, 3, 5, ... as containerd/ttrpc clients use.
import type { Duplex } from 'node:stream';
import {
  FrameDecoder,
  MAX_MESSAGE_LENGTH,
  MessageType,
  decodeResponse,
  encodeFrame,
  encodeRequest,
  type DecodedEvent,
} from '../rpc/ttrpc/codec';
import { Code, ConnectionError, RpcError, metadataPairs, type CallOptions } from './errors';

interface Pending {
  resolve(payload: Uint8Array): void;
  reject(err: Error): void;
  timer?: NodeJS.Timeout;
}

const MAX_STREAM_ID = 0xffffffff;

export class TtrpcClient {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly decoder = new FrameDecoder();
  private failure: Error | undefined;

  constructor(private readonly sock: Duplex) {
    sock.on('data', (chunk: Buffer) => this.onData(chunk));
    sock.on('error', (err: Error) => this.fail(new ConnectionError(`ttrpc connection error: ${err.message}`, { cause: err })));
    sock.on('end', () => this.fail(new ConnectionError('ttrpc connection closed by the server')));
    sock.on('close', () => this.fail(new ConnectionError('ttrpc connection closed')));
  }

  /** Calls waiting for their response. */
  get inFlight(): number {
    return this.pending.size;
  }

  /**
   * One unary call: `payload` is the encoded request message. Resolves with the
   * encoded response message; rejects with RpcError (agent status), or
   * ConnectionError when the connection fails first.
   */
  call(service: string, method: string, payload: Uint8Array, opts: CallOptions = {}): Promise<Uint8Array> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.nextId > MAX_STREAM_ID) return Promise.reject(new ConnectionError('ttrpc stream ids exhausted on this connection'));
    const timeoutMs = opts.timeoutMs;
    const body = encodeRequest({
      service,
      method,
      payload,
      timeoutNano: timeoutMs !== undefined && timeoutMs > 0 ? timeoutMs * 1e6 : 0,
      metadata: metadataPairs(opts.metadata),
    });
    if (body.length > MAX_MESSAGE_LENGTH) {
      return Promise.reject(
        new RpcError(Code.RESOURCE_EXHAUSTED, `message length ${body.length} exceed maximum message size of ${MAX_MESSAGE_LENGTH}`),
      );
    }
    const id = this.nextId;
    this.nextId += 2;
    return new Promise<Uint8Array>((resolve, reject) => {
      const p: Pending = { resolve, reject };
      if (timeoutMs !== undefined && timeoutMs > 0) {
        p.timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new RpcError(Code.DEADLINE_EXCEEDED, `${service}/${method}: deadline exceeded after ${timeoutMs} ms`));
        }, Math.min(timeoutMs, 2 ** 31 - 1));
      }
      this.pending.set(id, p);
      try {
        this.sock.write(encodeFrame(id, MessageType.REQUEST, 0, body), (err) => {
          if (err) this.settle(id)?.reject(new ConnectionError(`ttrpc write failed: ${err.message}`, { cause: err }));
        });
      } catch (err) {
        this.settle(id)?.reject(new ConnectionError(`ttrpc write failed: ${(err as Error).message}`, { cause: err }));
      }
    });
  }

  /** Close the connection; calls still waiting reject with ConnectionError. */
  close(): void {
    this.fail(new ConnectionError('ttrpc client closed'));
    this.sock.destroy();
  }

  private settle(id: number): Pending | undefined {
    const p = this.pending.get(id);
    if (!p) return undefined;
    this.pending.delete(id);
    if (p.timer) clearTimeout(p.timer);
    return p;
  }

  private fail(err: Error): void {
    if (!this.failure) this.failure = err;
    for (const id of [...this.pending.keys()]) this.settle(id)?.reject(this.failure);
  }

  private onData(chunk: Buffer): void {
    let events: DecodedEvent[];
    try {
      events = this.decoder.push(chunk);
    } catch (err) {
      this.fail(new ConnectionError(`ttrpc framing error: ${(err as Error).message}`));
      this.sock.destroy();
      return;
    }
    for (const ev of events) {
      if (ev.kind === 'oversized') {
        this.settle(ev.streamId)?.reject(
          new RpcError(Code.RESOURCE_EXHAUSTED, `message length ${ev.length} exceed maximum message size of ${MAX_MESSAGE_LENGTH}`),
        );
        continue;
      }
      if (ev.type !== MessageType.RESPONSE) continue; // no streaming calls: data frames have no receiver
      const p = this.settle(ev.streamId);
      if (!p) continue; // timed out already, or a stream we never opened
      let res;
      try {
        res = decodeResponse(ev.payload);
      } catch (err) {
        p.reject(new RpcError(Code.INTERNAL, `undecodable ttrpc response: ${(err as Error).message}`));
        continue;
      }
      if (res.status.code !== Code.OK) p.reject(new RpcError(res.status.code, res.status.message));
      else p.resolve(res.payload);
    }
  }
}
