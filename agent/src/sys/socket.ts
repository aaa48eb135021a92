// Sockets Node does not create itself: AF_VSOCK, AF_NETLINK, raw AF_UNIX
// socketpairs, and SCM_RIGHTS fd passing (recvmsg/sendmsg with control data).
// Socket addresses and msghdr/cmsghdr are built by hand in Buffers (LP64
// layout, identical on x86_64 and aarch64).
import { check, fn, koffi, retryEintr } from './libc';

export const AF_UNIX = 1;
export const AF_INET = 2;
export const AF_INET6 = 10;
export const AF_NETLINK = 16;
export const AF_VSOCK = 40;

export const SOCK_STREAM = 1;
export const SOCK_DGRAM = 2;
export const SOCK_RAW = 3;
export const SOCK_SEQPACKET = 5;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;

export const SOL_SOCKET = 1;
export const SCM_RIGHTS = 1;

export const MSG_DONTWAIT = 0x40;
export const MSG_CTRUNC = 0x08;
export const MSG_TRUNC = 0x20;
export const MSG_NOSIGNAL = 0x4000;
export const MSG_CMSG_CLOEXEC = 0x40000000;

/** Any CID (listen on all); Kata writes it as -1 in `vsock://-1:PORT`. */
export const VMADDR_CID_ANY = 0xffffffff;
export const VMADDR_CID_HYPERVISOR = 0;
export const VMADDR_CID_LOCAL = 1;
export const VMADDR_CID_HOST = 2;
/** Let the kernel pick a port at bind(). */
export const VMADDR_PORT_ANY = 0xffffffff;

const SUN_PATH_MAX = 108;

// ---------------------------------------------------------------------------
// Socket addresses

/** struct sockaddr_vm: {u16 family, u16 reserved, u32 port, u32 cid, u8 zero[4]} = 16 bytes. */
export function sockaddrVm(cid: number, port: number): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt16LE(AF_VSOCK, 0);
  b.writeUInt32LE(port >>> 0, 4);
  b.writeUInt32LE(cid >>> 0, 8);
  return b;
}

export function parseSockaddrVm(b: Buffer): { cid: number; port: number } {
  if (b.length < 12 || b.readUInt16LE(0) !== AF_VSOCK) throw new Error('not a sockaddr_vm');
  return { port: b.readUInt32LE(4), cid: b.readUInt32LE(8) };
}

/**
 * struct sockaddr_un for a filesystem path, or for an abstract name when `path`
 * starts with '\0'. The returned Buffer's length is the exact addrlen to pass
 * (abstract names are not NUL-terminated and their length is significant).
 */
export function sockaddrUn(path: string): Buffer {
  const p = Buffer.from(path, 'utf8');
  const abstract = p.length > 0 && p[0] === 0;
  if (p.length === 0) throw new Error('empty unix socket path');
  if (abstract ? p.length > SUN_PATH_MAX : p.length >= SUN_PATH_MAX) {
    throw new Error(`unix socket path too long (${p.length} bytes, max ${SUN_PATH_MAX - (abstract ? 0 : 1)})`);
  }
  const b = Buffer.alloc(2 + p.length + (abstract ? 0 : 1));
  b.writeUInt16LE(AF_UNIX, 0);
  p.copy(b, 2);
  return b;
}

/** struct sockaddr_nl: {u16 family, u16 pad, u32 pid, u32 groups} = 12 bytes. */
export function sockaddrNl(pid = 0, groups = 0): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16LE(AF_NETLINK, 0);
  b.writeUInt32LE(pid >>> 0, 4);
  b.writeUInt32LE(groups >>> 0, 8);
  return b;
}

/** Render a raw sockaddr (as returned by getsockname/getpeername) for logs. */
export function formatSockaddr(b: Buffer): string {
  if (b.length < 2) return 'unnamed';
  const family = b.readUInt16LE(0);
  switch (family) {
    case AF_VSOCK: {
      const { cid, port } = parseSockaddrVm(b);
      return `vsock://${cid === VMADDR_CID_ANY ? -1 : cid}:${port}`;
    }
    case AF_UNIX: {
      const p = b.subarray(2);
      if (p.length === 0) return 'unix:unnamed';
      if (p[0] === 0) return `unix://@${p.subarray(1).toString('utf8')}`;
      const nul = p.indexOf(0);
      return `unix://${p.subarray(0, nul < 0 ? p.length : nul).toString('utf8')}`;
    }
    case AF_NETLINK:
      return `netlink:pid=${b.readUInt32LE(4)},groups=${b.readUInt32LE(8)}`;
    default:
      return `family ${family}`;
  }
}

// ---------------------------------------------------------------------------
// Calls

export function socket(domain: number, type: number, protocol = 0, address?: string): number {
  const f = fn('int socket(int domain, int type, int protocol)');
  return check(f(domain, type, protocol) as number, 'socket', address, `domain ${domain} type ${type}`);
}

export function bind(fd: number, addr: Buffer, address?: string): void {
  const f = fn('int bind(int fd, const uint8_t *addr, uint32_t addrlen)');
  check(f(fd, addr, addr.length) as number, 'bind', address);
}

export function listen(fd: number, backlog = 128, address?: string): void {
  check(fn('int listen(int fd, int backlog)')(fd, backlog) as number, 'listen', address);
}

/** accept4() without asking for the peer address. */
export function accept4(fd: number, flags = SOCK_CLOEXEC, address?: string): number {
  const f = fn('int accept4(int fd, void *addr, void *addrlen, int flags)');
  return retryEintr(() => f(fd, null, null, flags) as number, 'accept4', address);
}

export function connect(fd: number, addr: Buffer, address?: string): void {
  const f = fn('int connect(int fd, const uint8_t *addr, uint32_t addrlen)');
  retryEintr(() => f(fd, addr, addr.length) as number, 'connect', address);
}

export function socketpair(domain = AF_UNIX, type = SOCK_STREAM | SOCK_CLOEXEC, protocol = 0): [number, number] {
  const f = fn('int socketpair(int domain, int type, int protocol, _Out_ int *sv)');
  const sv = new Int32Array(2);
  check(f(domain, type, protocol, sv) as number, 'socketpair');
  return [sv[0]!, sv[1]!];
}

function nameCall(name: 'getsockname' | 'getpeername', fd: number, address?: string): Buffer {
  const f = fn(`int ${name}(int fd, _Out_ uint8_t *addr, _Inout_ uint32_t *addrlen)`);
  const buf = Buffer.alloc(128);
  const len = new Uint32Array([buf.length]);
  check(f(fd, buf, len) as number, name, address);
  return buf.subarray(0, Math.min(len[0]!, buf.length));
}

/** The raw local address of a socket (parse with parseSockaddrVm / formatSockaddr). */
export function getsockname(fd: number, address?: string): Buffer {
  return nameCall('getsockname', fd, address);
}

export function getpeername(fd: number, address?: string): Buffer {
  return nameCall('getpeername', fd, address);
}

export function setsockoptInt(fd: number, level: number, name: number, value: number, address?: string): void {
  const f = fn('int setsockopt(int fd, int level, int name, const int *val, uint32_t len)');
  check(f(fd, level, name, new Int32Array([value]), 4) as number, 'setsockopt', address, `level ${level} opt ${name}`);
}

// ---------------------------------------------------------------------------
// recvmsg / sendmsg with SCM_RIGHTS
//
// struct iovec   { void *base; size_t len; }                        16 bytes
// struct msghdr  { void *name; u32 namelen; (pad 4) iovec *iov; size_t iovlen;
//                  void *control; size_t controllen; int flags; (pad 4) }  56 bytes
// struct cmsghdr { size_t len; int level; int type; u8 data[]; }     16-byte header
// CMSG_ALIGN is 8; CMSG_SPACE(n) = 16 + align8(n); CMSG_LEN(n) = 16 + n.

const MSGHDR_SIZE = 56;
const IOVEC_SIZE = 16;
const CMSG_HDR = 16;
const align8 = (n: number): number => (n + 7) & ~7;
const cmsgSpace = (n: number): number => CMSG_HDR + align8(n);

function addr(b: Buffer): bigint {
  return koffi.address(b);
}

function buildMsghdr(iov: Buffer, control: Buffer | null, controllen: number): Buffer {
  const msg = Buffer.alloc(MSGHDR_SIZE);
  msg.writeBigUInt64LE(0n, 0); // msg_name
  msg.writeUInt32LE(0, 8); // msg_namelen
  msg.writeBigUInt64LE(addr(iov), 16); // msg_iov
  msg.writeBigUInt64LE(1n, 24); // msg_iovlen
  msg.writeBigUInt64LE(control && controllen > 0 ? addr(control) : 0n, 32);
  msg.writeBigUInt64LE(BigInt(control ? controllen : 0), 40);
  msg.writeInt32LE(0, 48); // msg_flags
  return msg;
}

function buildIovec(data: Buffer): Buffer {
  const iov = Buffer.alloc(IOVEC_SIZE);
  iov.writeBigUInt64LE(data.length > 0 ? addr(data) : 0n, 0);
  iov.writeBigUInt64LE(BigInt(data.length), 8);
  return iov;
}

export interface RecvMsgResult {
  /** The bytes received (empty at EOF on a stream socket). */
  data: Buffer;
  /** File descriptors received with SCM_RIGHTS (close-on-exec by default). */
  fds: number[];
  /** msg_flags as returned (MSG_TRUNC, MSG_CTRUNC, ...). */
  msgFlags: number;
}

export interface RecvMsgOptions {
  /** Largest payload to read (default 64 KiB). */
  maxData?: number;
  /** Most fds to accept (default 16). */
  maxFds?: number;
  /** recvmsg flags (default MSG_CMSG_CLOEXEC). */
  flags?: number;
  /** Address for error messages. */
  address?: string;
}

/** recvmsg(2) returning data and any SCM_RIGHTS fds. Blocking unless the fd is non-blocking or MSG_DONTWAIT is given. */
export function recvmsg(fd: number, opts: RecvMsgOptions = {}): RecvMsgResult {
  const maxData = opts.maxData ?? 65536;
  const maxFds = opts.maxFds ?? 16;
  const data = Buffer.alloc(Math.max(1, maxData));
  const iov = buildIovec(data);
  const controllen = maxFds > 0 ? cmsgSpace(4 * maxFds) : 0;
  const control = controllen > 0 ? Buffer.alloc(controllen) : null;
  const msg = buildMsghdr(iov, control, controllen);
  const f = fn('int64_t recvmsg(int fd, uint8_t *msg, int flags)');
  const n = Number(
    retryEintr(() => Number(f(fd, msg, opts.flags ?? MSG_CMSG_CLOEXEC)), 'recvmsg', opts.address),
  );
  void iov; // referenced only by address inside msg: keep it alive across the call
  const msgFlags = msg.readInt32LE(48);
  const gotControl = Number(msg.readBigUInt64LE(40));
  const fds: number[] = [];
  if (control) {
    let off = 0;
    while (off + CMSG_HDR <= gotControl) {
      const len = Number(control.readBigUInt64LE(off));
      if (len < CMSG_HDR || off + len > gotControl) break;
      const level = control.readInt32LE(off + 8);
      const type = control.readInt32LE(off + 12);
      if (level === SOL_SOCKET && type === SCM_RIGHTS) {
        for (let p = off + CMSG_HDR; p + 4 <= off + len; p += 4) fds.push(control.readInt32LE(p));
      }
      off += align8(len);
    }
  }
  return { data: Buffer.from(data.subarray(0, n)), fds, msgFlags };
}

/** sendmsg(2) of `data` with `fds` attached as SCM_RIGHTS. Returns bytes sent. */
export function sendmsg(fd: number, data: Buffer, fds: readonly number[] = [], flags = MSG_NOSIGNAL, address?: string): number {
  if (data.length === 0 && fds.length > 0) throw new Error('sendmsg: fds need at least one byte of data');
  const iov = buildIovec(data);
  let control: Buffer | null = null;
  let controllen = 0;
  if (fds.length > 0) {
    controllen = cmsgSpace(4 * fds.length);
    control = Buffer.alloc(controllen);
    control.writeBigUInt64LE(BigInt(CMSG_HDR + 4 * fds.length), 0);
    control.writeInt32LE(SOL_SOCKET, 8);
    control.writeInt32LE(SCM_RIGHTS, 12);
    fds.forEach((x, i) => control!.writeInt32LE(x, CMSG_HDR + 4 * i));
  }
  const msg = buildMsghdr(iov, control, controllen);
  const f = fn('int64_t sendmsg(int fd, const uint8_t *msg, int flags)');
  // Keep the buffers referenced until the call has returned.
  const n = retryEintr(() => Number(f(fd, msg, flags)), 'sendmsg', address);
  void iov; // referenced only by address inside msg: keep alive across the call
  void control;
  return n;
}
