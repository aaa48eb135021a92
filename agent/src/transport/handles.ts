// libuv handles for fds Node cannot classify itself (AF_VSOCK sockets,
// virtio-serial char devices). The only place that touches process.binding:
// `net.Server.listen({fd})` fails with EINVAL on an AF_VSOCK fd, but a TCP
// handle opened on it works, and a Pipe handle works on a char device.

import fs from 'node:fs';
import net from 'node:net';
import { getSystemErrorName } from 'node:util';

interface UvHandle {
  open(fd: number): number;
  close(cb?: () => void): void;
}
interface HandleCtor {
  new (type: number): UvHandle;
}
interface WrapBinding {
  constants: { SOCKET: number; SERVER: number };
}
interface TcpBinding extends WrapBinding {
  TCP: HandleCtor;
}
interface PipeBinding extends WrapBinding {
  Pipe: HandleCtor;
}

const bindings = new Map<string, unknown>();

/** process.binding() without the DEP0111 warning it prints under --pending-deprecation. */
function binding<T>(name: string): T {
  let b = bindings.get(name);
  if (b === undefined) {
    const proc = process as unknown as { binding(n: string): unknown; noDeprecation?: boolean };
    const saved = proc.noDeprecation;
    proc.noDeprecation = true;
    try {
      b = proc.binding(name);
    } finally {
      proc.noDeprecation = saved;
    }
    bindings.set(name, b);
  }
  return b as T;
}

function uvError(ret: number, what: string): Error {
  // libuv returns negative errno values.
  let name: string;
  try {
    name = getSystemErrorName(ret);
  } catch {
    name = `E${-ret}`;
  }
  const e = new Error(`${what}: ${name}`) as Error & { code?: string; errno?: number };
  e.code = name;
  e.errno = -ret;
  return e;
}

/** A listening libuv TCP handle on `fd` (any stream socket family), for `net.Server.listen(handle)`. */
export function tcpServerHandle(fd: number): object {
  const b = binding<TcpBinding>('tcp_wrap');
  const h = new b.TCP(b.constants.SERVER);
  const r = h.open(fd);
  if (r !== 0) {
    h.close();
    throw uvError(r, `uv_tcp_open fd ${fd}`);
  }
  return h;
}

/** A libuv Pipe handle on `fd` (a char device or pipe), for `new net.Socket({handle})`. */
export function pipeSocketHandle(fd: number): object {
  const b = binding<PipeBinding>('pipe_wrap');
  const h = new b.Pipe(b.constants.SOCKET);
  const r = h.open(fd);
  if (r !== 0) {
    h.close();
    throw uvError(r, `uv_pipe_open fd ${fd}`);
  }
  return h;
}

/**
 * `fd` (a char device such as a pty master or virtio port, a pipe, an eventfd, a connected
 * socket Node cannot open itself) as a net.Socket on a libuv Pipe handle; net.Socket({fd})
 * refuses char devices. The socket owns the fd once this returns; on failure the caller still does.
 */
export function fdSocket(fd: number, opts: { readable?: boolean; writable?: boolean } = {}): net.Socket {
  return new net.Socket({
    handle: pipeSocketHandle(fd),
    readable: opts.readable ?? true,
    writable: opts.writable ?? true,
  } as net.SocketConstructorOpts);
}

/** fdSocket(fd), closing `fd` when it cannot be wrapped: ownership passes either way. */
export function ownedFdSocket(fd: number): net.Socket {
  try {
    return fdSocket(fd);
  } catch (err) {
    try {
      fs.closeSync(fd);
    } catch {
      // nothing more to do
    }
    throw err;
  }
}

/** The OS fd behind a net.Socket or net.Server, if it has one. */
export function handleFd(s: unknown): number | undefined {
  const fd = (s as { _handle?: { fd?: number } } | null)?._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}
