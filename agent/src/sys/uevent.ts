// The kernel's uevent netlink socket (NETLINK_KOBJECT_UEVENT): the same
// messages udev listens to, announcing every device added, removed or changed.
// Reading and parsing happen elsewhere (devices/uevent.ts); this file only
// opens and binds the socket.
import fs from 'node:fs';
import { SysError } from './libc';
import {
  AF_NETLINK,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOL_SOCKET,
  bind,
  setsockoptInt,
  sockaddrNl,
  socket,
} from './socket';

export const NETLINK_KOBJECT_UEVENT = 15;
/** Multicast group of the kernel's own uevents (group 2 is udevd's re-broadcast). */
export const UEVENT_GROUP_KERNEL = 1;

export const SO_RCVBUF = 8;
/** Like SO_RCVBUF but ignores net.core.rmem_max; needs CAP_NET_ADMIN. */
export const SO_RCVBUFFORCE = 33;

/** Default receive buffer: a burst of hotplugs must not overflow it (udev asks for 128 MiB). */
export const DEFAULT_UEVENT_RCVBUF = 16 * 1024 * 1024;

export interface OpenUeventOptions {
  /** Receive buffer size in bytes (default DEFAULT_UEVENT_RCVBUF). */
  rcvbuf?: number;
  /** Multicast groups bitmask to join (default UEVENT_GROUP_KERNEL). */
  groups?: number;
}

/**
 * A non-blocking, close-on-exec NETLINK_KOBJECT_UEVENT datagram socket bound to the
 * kernel's uevent multicast group. The receive buffer is enlarged with SO_RCVBUFFORCE,
 * falling back to SO_RCVBUF (capped by rmem_max) without CAP_NET_ADMIN. Throws SysError;
 * the fd is closed on failure.
 */
export function openUeventSocket(opts: OpenUeventOptions = {}): number {
  const address = 'netlink:kobject_uevent';
  const fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_KOBJECT_UEVENT, address);
  try {
    const size = opts.rcvbuf ?? DEFAULT_UEVENT_RCVBUF;
    if (size > 0) {
      try {
        setsockoptInt(fd, SOL_SOCKET, SO_RCVBUFFORCE, size, address);
      } catch (err) {
        if (!(err instanceof SysError)) throw err;
        // EPERM without CAP_NET_ADMIN: take what rmem_max allows.
        setsockoptInt(fd, SOL_SOCKET, SO_RCVBUF, size, address);
      }
    }
    // pid 0: the kernel assigns the port id.
    bind(fd, sockaddrNl(0, opts.groups ?? UEVENT_GROUP_KERNEL), address);
    return fd;
  } catch (err) {
    try {
      fs.closeSync(fd);
    } catch {
      // already failing; the first error is the one to report
    }
    throw err;
  }
}
