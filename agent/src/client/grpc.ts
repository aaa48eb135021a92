// Minimal unary gRPC client on node:http2 over an already connected stream.
//
// grpc-js clients insist on dialling their own TCP/unix connections; the agent
// is also reached over vsock, Firecracker hybrid vsock and serial ports, so
// this speaks the gRPC-over-HTTP/2 wire protocol directly on whatever socket
// dial() produced. Unary calls only (the Kata protocol has no streams).
import http2 from 'node:http2';
import type { Duplex } from 'node:stream';
import { Code, ConnectionError, RpcError, metadataPairs, type CallOptions } from './errors';

const { NGHTTP2_CANCEL } = http2.constants;

/** gRPC's HTTP status -> code mapping for responses without grpc-status. */
function codeForHttpStatus(status: number): Code {
  switch (status) {
    case 400:
      return Code.INTERNAL;
    case 401:
      return Code.UNAUTHENTICATED;
    case 403:
      return Code.PERMISSION_DENIED;
    case 404:
      return Code.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return Code.UNAVAILABLE;
    default:
      return Code.UNKNOWN;
  }
}

/** grpc-timeout header value: at most 8 digits and a unit. */
export function grpcTimeout(ms: number): string {
  const m = Math.max(1, Math.ceil(ms));
  if (m < 1e8) return `${m}m`;
  const s = Math.ceil(m / 1000);
  if (s < 1e8) return `${s}S`;
  return `${Math.min(99999999, Math.ceil(s / 3600))}H`;
}

function decodeGrpcMessage(v: unknown): string {
  const s = Array.isArray(v) ? String(v[0] ?? '') : typeof v === 'string' ? v : '';
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

const RESERVED = new Set(['content-type', 'te', 'grpc-timeout', 'grpc-encoding', 'grpc-accept-encoding', 'user-agent', 'host']);

export class GrpcClient {
  private readonly session: http2.ClientHttp2Session;
  private failure: Error | undefined;
  private readonly active = new Set<(err: Error) => void>();

  constructor(sock: Duplex, private readonly authority = 'localhost') {
    this.session = http2.connect(`http://${authority}`, { createConnection: () => sock });
    this.session.on('error', (err: Error) => this.fail(new ConnectionError(`grpc connection error: ${err.message}`, { cause: err })));
    this.session.on('goaway', (code: number) => {
      if (code !== 0) this.fail(new ConnectionError(`grpc connection closed by the server (GOAWAY ${code})`));
    });
    this.session.on('close', () => this.fail(new ConnectionError('grpc connection closed')));
    // A socket error before the session took it over must not be unhandled.
    sock.on('error', (err: Error) => this.fail(new ConnectionError(`grpc connection error: ${err.message}`, { cause: err })));
  }

  /** One unary call on `path` ("/grpc.Health/Check"); resolves with the encoded response message. */
  call(path: string, payload: Uint8Array, opts: CallOptions = {}): Promise<Uint8Array> {
    if (this.failure) return Promise.reject(this.failure);
    const headers: http2.OutgoingHttpHeaders = {
      ':method': 'POST',
      ':path': path,
      ':scheme': 'http',
      ':authority': this.authority,
      'content-type': 'application/grpc',
      te: 'trailers',
      'user-agent': 'guestkit-agent-ctl',
    };
    if (opts.timeoutMs !== undefined && opts.timeoutMs > 0) headers['grpc-timeout'] = grpcTimeout(opts.timeoutMs);
    for (const { key, value } of metadataPairs(opts.metadata)) {
      if (key.startsWith(':') || key.startsWith('grpc-') || RESERVED.has(key)) {
        return Promise.reject(new RpcError(Code.INVALID_ARGUMENT, `metadata key ${key} is reserved`));
      }
      const prev = headers[key];
      headers[key] = prev === undefined ? value : [...(Array.isArray(prev) ? prev : [String(prev)]), value];
    }

    return new Promise<Uint8Array>((resolve, reject) => {
      let settled = false;
      let timer: NodeJS.Timeout | undefined;
      let stream: http2.ClientHttp2Stream;
      const finish = (err: Error | null, value?: Uint8Array): void => {
        if (settled) return;
        settled = true;
        if (timer) clearTimeout(timer);
        this.active.delete(onFail);
        if (err) reject(err);
        else resolve(value!);
      };
      const onFail = (err: Error): void => {
        finish(err);
        if (stream && !stream.destroyed) stream.close(NGHTTP2_CANCEL);
      };
      try {
        stream = this.session.request(headers, { endStream: false });
      } catch (err) {
        finish(new ConnectionError(`grpc request failed: ${(err as Error).message}`, { cause: err }));
        return;
      }
      this.active.add(onFail);
      if (opts.timeoutMs !== undefined && opts.timeoutMs > 0) {
        timer = setTimeout(
          () => onFail(new RpcError(Code.DEADLINE_EXCEEDED, `${path}: deadline exceeded after ${opts.timeoutMs} ms`)),
          Math.min(opts.timeoutMs, 2 ** 31 - 1),
        );
      }

      let httpStatus = 0;
      let grpcStatus: string | undefined;
      let grpcMessage: unknown;
      const chunks: Buffer[] = [];
      let streamError: Error | undefined;
      const readStatus = (h: http2.IncomingHttpHeaders): void => {
        if (h['grpc-status'] !== undefined) {
          grpcStatus = String(h['grpc-status']);
          grpcMessage = h['grpc-message'];
        }
      };
      stream.on('response', (h) => {
        httpStatus = Number(h[':status'] ?? 0);
        readStatus(h); // trailers-only response
      });
      stream.on('trailers', (h) => readStatus(h));
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('error', (err: Error) => (streamError = err));
      stream.on('close', () => {
        if (settled) return;
        if (grpcStatus === undefined) {
          if (httpStatus !== 0 && httpStatus !== 200) {
            finish(new RpcError(codeForHttpStatus(httpStatus), `${path}: HTTP status ${httpStatus} without grpc-status`));
          } else if (streamError || this.failure) {
            finish(this.failure ?? new ConnectionError(`grpc stream failed: ${streamError!.message}`, { cause: streamError }));
          } else {
            finish(new RpcError(Code.UNKNOWN, `${path}: response without grpc-status`));
          }
          return;
        }
        const code = Number(grpcStatus);
        if (!Number.isInteger(code)) {
          finish(new RpcError(Code.UNKNOWN, `${path}: bad grpc-status ${grpcStatus}`));
          return;
        }
        if (code !== Code.OK) {
          finish(new RpcError(code, decodeGrpcMessage(grpcMessage)));
          return;
        }
        const body = Buffer.concat(chunks);
        if (body.length < 5) {
          finish(new RpcError(Code.INTERNAL, `${path}: OK status without a response message`));
          return;
        }
        if (body[0] !== 0) {
          finish(new RpcError(Code.INTERNAL, `${path}: compressed response message (not negotiated)`));
          return;
        }
        const len = body.readUInt32BE(1);
        if (5 + len !== body.length) {
          finish(new RpcError(Code.INTERNAL, `${path}: response has ${body.length} bytes, frame says ${5 + len}`));
          return;
        }
        finish(null, body.subarray(5));
      });

      const frame = Buffer.allocUnsafe(5 + payload.length);
      frame[0] = 0;
      frame.writeUInt32BE(payload.length, 1);
      frame.set(payload, 5);
      stream.end(frame);
    });
  }

  /** Close the HTTP/2 session and its socket; waiting calls reject with ConnectionError. */
  close(): void {
    this.fail(new ConnectionError('grpc client closed'));
    if (!this.session.destroyed) this.session.destroy();
  }

  private fail(err: Error): void {
    if (!this.failure) this.failure = err;
    for (const f of [...this.active]) f(this.failure);
  }
}
