// AF_UNIX listeners (and the abstract-socket connect helper).
//
// Abstract names: Node 20's libuv binds and connects '\0name' with the whole
// 108-byte sun_path (the name NUL-padded), while Go, Rust and C peers (the
// Kata runtime, agent-ctl, socat) use the exact name length: the two do not
// meet. So abstract sockets are created here with koffi and the exact length,
// then adopted by Node (net.Server.listen({fd}) / new net.Socket({fd})), which
// works for AF_UNIX fds.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from '../log';
import { close as closeFd } from '../sys/misc';
import { AF_UNIX, SOCK_CLOEXEC, SOCK_STREAM, bind, connect, listen as sysListen, socket, sockaddrUn } from '../sys/socket';
import { formatAddress } from './address';
import { serve, whenListening } from './server';
import type { Listener, OnConnection } from './types';

const BACKLOG = 511;

/** Remove a stale socket file at `p` (only a socket: never a regular file or directory). */
export function removeStaleSocket(p: string): void {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) {
    const e = new Error(`listen ${p}: path exists and is not a socket`) as NodeJS.ErrnoException;
    e.code = 'EEXIST';
    e.path = p;
    throw e;
  }
  fs.unlinkSync(p);
}

/** A listening AF_UNIX socket fd on an abstract name (without the leading NUL), exact length. */
export function abstractListenFd(name: string, backlog = BACKLOG): number {
  const address = `unix://@${name}`;
  const fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, address);
  try {
    bind(fd, sockaddrUn(`\0${name}`), address);
    sysListen(fd, backlog, address);
  } catch (err) {
    closeFd(fd);
    throw err;
  }
  return fd;
}

/**
 * Listen on a unix socket. `p` is a filesystem path (a stale socket file is
 * removed first, the parent directory created) or, when `abstract`, the
 * abstract name with its leading NUL ('\0name').
 */
export async function listenUnix(p: string, abstract: boolean, onConnection: OnConnection, log: Logger): Promise<Listener> {
  const address = formatAddress({ kind: 'unix', path: p, abstract });
  const server = net.createServer();
  // Unix peers are unnamed: identify them by the listening address.
  const served = serve(server, 'unix', () => address, onConnection, log);
  const ready = whenListening(server);
  if (abstract) {
    const fd = abstractListenFd(p.replace(/^\0/, ''));
    server.listen({ fd });
  } else {
    fs.mkdirSync(path.dirname(p), { recursive: true });
    removeStaleSocket(p);
    server.listen(p);
  }
  try {
    await ready;
  } catch (err) {
    await served.close();
    throw err;
  }
  log.info({ address }, 'listening on unix socket');
  return { address, close: () => served.close() };
}

/**
 * Connect to an abstract unix socket by its exact name (without the leading
 * NUL), as Go/Rust/C servers bind it. Node's own net.connect('\0name') would
 * use the NUL-padded 108-byte form and get ECONNREFUSED from such servers.
 * Throws SysError (ECONNREFUSED, ...) synchronously.
 */
export function connectAbstract(name: string): net.Socket {
  const address = `unix://@${name}`;
  const fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, address);
  try {
    connect(fd, sockaddrUn(`\0${name}`), address);
  } catch (err) {
    closeFd(fd);
    throw err;
  }
  return new net.Socket({ fd, readable: true, writable: true });
}
