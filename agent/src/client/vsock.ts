// AF_VSOCK dialer for dial(): Node cannot create vsock sockets, so the socket
// is made and connected through sys/socket (koffi) and then adopted by a
// libuv pipe handle, which reads and writes any stream fd.
//
// The connect() is blocking: fine for agent-ctl and tests (the kernel gives up
// after its vsock connect timeout, 2 s by default), not for the agent itself.
import { close as closeFd } from '../sys/misc';
import { AF_VSOCK, SOCK_CLOEXEC, SOCK_STREAM, connect, socket, sockaddrVm } from '../sys/socket';
import { fdSocket } from '../transport/handles';
import type { VsockDialer } from './dial';
import { ConnectionError } from './errors';

export const vsockDial: VsockDialer = async (cid, port) => {
  const what = `vsock://${cid}:${port}`;
  let fd = -1;
  try {
    fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0, what);
    connect(fd, sockaddrVm(cid, port), what);
    const sock = fdSocket(fd);
    fd = -1; // owned by the socket now
    return sock;
  } catch (err) {
    if (fd >= 0) {
      try {
        closeFd(fd);
      } catch {
        /* ignore */
      }
    }
    throw new ConnectionError(`connect ${what}: ${(err as Error).message}`, { cause: err });
  }
};
