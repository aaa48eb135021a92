// AF_VSOCK listener. Node cannot create or adopt vsock sockets itself
// (`listen({fd})` fails with EINVAL), so the listening socket is made with
// koffi and wrapped in a libuv TCP handle; every accepted connection is then
// an ordinary net.Socket, epoll-driven like any TCP connection.
import net from 'node:net';
import type { Logger } from '../log';
import { close as closeFd } from '../sys/misc';
import {
  AF_VSOCK,
  SOCK_CLOEXEC,
  SOCK_STREAM,
  VMADDR_CID_ANY,
  VMADDR_PORT_ANY,
  bind,
  formatSockaddr,
  getpeername,
  getsockname,
  listen as sysListen,
  parseSockaddrVm,
  socket,
  sockaddrVm,
} from '../sys/socket';
import { handleFd, tcpServerHandle } from './handles';
import { serve, whenListening } from './server';
import type { Listener, OnConnection } from './types';

const BACKLOG = 128;

function fmt(cid: number, port: number): string {
  return `vsock://${cid === -1 || cid === VMADDR_CID_ANY ? -1 : cid}:${port === VMADDR_PORT_ANY ? -1 : port}`;
}

/** Create, bind and listen an AF_VSOCK stream socket; returns its fd. Throws SysError. */
export function vsockListenFd(cid: number, port: number, backlog = BACKLOG): number {
  const address = fmt(cid, port);
  const fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0, address);
  try {
    bind(fd, sockaddrVm(cid === -1 ? VMADDR_CID_ANY : cid, port), address);
    sysListen(fd, backlog, address);
  } catch (err) {
    closeFd(fd);
    throw err;
  }
  return fd;
}

/** Listen on vsock://cid:port (cid -1 = any). */
export async function listenVsock(cid: number, port: number, onConnection: OnConnection, log: Logger): Promise<Listener> {
  const fd = vsockListenFd(cid, port);
  let handle: object;
  try {
    handle = tcpServerHandle(fd);
  } catch (err) {
    closeFd(fd);
    throw err;
  }
  let address = fmt(cid, port);
  try {
    const { port: actual } = parseSockaddrVm(getsockname(fd, address));
    address = fmt(cid, actual);
  } catch {
    // keep the requested address
  }
  const server = net.createServer();
  const served = serve(server, 'vsock', peerOf, onConnection, log);
  const ready = whenListening(server);
  server.listen(handle);
  try {
    await ready;
  } catch (err) {
    await served.close();
    throw err;
  }
  log.info({ address }, 'listening on vsock');
  return { address, close: () => served.close() };
}

function peerOf(sock: net.Socket): string {
  const fd = handleFd(sock);
  return fd === undefined ? 'vsock:unknown' : formatSockaddr(getpeername(fd));
}

export interface VsockCapability {
  /** socket(AF_VSOCK), bind(any CID, any port), listen() and wrapping in a libuv handle all worked. */
  ok: boolean;
  /** The step that failed, or 'ok'. */
  stage: 'socket' | 'bind' | 'listen' | 'handle' | 'ok';
  /** Human readable result (the error text on failure). */
  detail: string;
}

/**
 * Probe whether AF_VSOCK listening works here: creates a socket, binds it to
 * any CID and a kernel-chosen port, listens, wraps it in a libuv handle and
 * closes it. Never throws.
 */
export function vsockSelfTest(): VsockCapability {
  let fd = -1;
  let stage: VsockCapability['stage'] = 'socket';
  try {
    fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0, 'vsock self-test');
    stage = 'bind';
    bind(fd, sockaddrVm(VMADDR_CID_ANY, VMADDR_PORT_ANY), 'vsock://-1:-1');
    stage = 'listen';
    sysListen(fd, 1, 'vsock self-test');
    let port = -1;
    try {
      port = parseSockaddrVm(getsockname(fd)).port;
    } catch {
      // not essential
    }
    stage = 'handle';
    const h = tcpServerHandle(fd) as { close(): void };
    fd = -1; // owned by the handle now
    h.close();
    return { ok: true, stage: 'ok', detail: `AF_VSOCK listen works (probe port ${port})` };
  } catch (err) {
    if (fd >= 0) {
      try {
        closeFd(fd);
      } catch {
        // ignore
      }
    }
    return { ok: false, stage, detail: err instanceof Error ? err.message : String(err) };
  }
}
