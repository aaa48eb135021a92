// sys/socket.ts against the real kernel: socketpair + SCM_RIGHTS, AF_VSOCK
// bind/listen (connect is impossible here: no vsock loopback), AF_NETLINK bind,
// AF_UNIX connect, and SysError details.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SysError } from '../../agent/src/sys/libc';
import { close } from '../../agent/src/sys/misc';
import {
  accept4,
  AF_NETLINK,
  AF_UNIX,
  AF_VSOCK,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOCK_RAW,
  SOCK_STREAM,
  VMADDR_CID_ANY,
  VMADDR_PORT_ANY,
  bind,
  connect,
  getsockname,
  listen,
  parseSockaddrVm,
  recvmsg,
  sendmsg,
  sockaddrNl,
  sockaddrUn,
  sockaddrVm,
  socket,
  socketpair,
} from '../../agent/src/sys/socket';

const toClose: number[] = [];
const track = (...fds: number[]): number[] => {
  toClose.push(...fds);
  return fds;
};
afterEach(() => {
  for (const fd of toClose.splice(0)) {
    try {
      close(fd);
    } catch {
      // already closed
    }
  }
});

function fdTarget(fd: number): string {
  return fs.readlinkSync(`/proc/self/fd/${fd}`);
}

describe('socketpair + SCM_RIGHTS', () => {
  it('passes an fd that refers to the same open file', () => {
    const [a, b] = track(...socketpair());
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-scm-'));
    const file = path.join(tmp, 'f');
    fs.writeFileSync(file, 'contents');
    const fd = fs.openSync(file, 'r');
    track(fd);
    expect(sendmsg(a!, Buffer.from('x'), [fd])).toBe(1);
    const got = recvmsg(b!);
    track(...got.fds);
    expect(got.data.toString()).toBe('x');
    expect(got.fds).toHaveLength(1);
    expect(got.fds[0]).not.toBe(fd);
    expect(fdTarget(got.fds[0]!)).toBe(file);
    expect(fs.readFileSync(got.fds[0]!, 'utf8')).toBe('contents');
    // MSG_CMSG_CLOEXEC is the default: the received fd is close-on-exec.
    const flags = fs.readFileSync(`/proc/self/fdinfo/${got.fds[0]}`, 'utf8');
    const m = /flags:\s+([0-7]+)/.exec(flags);
    expect(parseInt(m![1]!, 8) & 0o2000000).toBe(0o2000000);
    fs.rmSync(tmp, { recursive: true });
  });

  it('passes several fds in one message, and data without fds', () => {
    const [a, b] = track(...socketpair());
    const [p0, p1] = track(...socketpair());
    sendmsg(a!, Buffer.from('hello'), [p0!, p1!, p0!]);
    const got = recvmsg(b!, { maxFds: 4 });
    track(...got.fds);
    expect(got.data.toString()).toBe('hello');
    expect(got.fds).toHaveLength(3);
    // The passed ends still talk to each other: write on #0, read on #1.
    sendmsg(got.fds[0]!, Buffer.from('ping'));
    expect(recvmsg(got.fds[1]!).data.toString()).toBe('ping');

    sendmsg(a!, Buffer.from('plain'));
    const plain = recvmsg(b!);
    expect(plain.data.toString()).toBe('plain');
    expect(plain.fds).toEqual([]);
  });

  it('reports EOF as empty data and EAGAIN as a SysError on a non-blocking socket', () => {
    const [a, b] = track(...socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK));
    let err: unknown;
    try {
      recvmsg(b!, { address: 'pair' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SysError);
    // EAGAIN and EWOULDBLOCK are the same errno (11); libc.ts names it EWOULDBLOCK.
    expect((err as SysError).errno).toBe(11);
    expect(['EAGAIN', 'EWOULDBLOCK']).toContain((err as SysError).code);
    expect((err as SysError).syscall).toBe('recvmsg');
    expect((err as SysError).path).toBe('pair');
    close(a!);
    const eof = recvmsg(b!);
    expect(eof.data.length).toBe(0);
  });

  it('sets MSG_CTRUNC when more fds arrive than the control buffer holds', () => {
    const [a, b] = track(...socketpair());
    const fds = track(...socketpair(), ...socketpair());
    sendmsg(a!, Buffer.from('y'), fds);
    // maxFds 1 rounds up to an 8-byte aligned slot: room for 2 of the 4 fds.
    const got = recvmsg(b!, { maxFds: 1 });
    track(...got.fds);
    expect(got.data.toString()).toBe('y');
    expect(got.fds.length).toBeGreaterThanOrEqual(1);
    expect(got.fds.length).toBeLessThan(4);
    expect(got.msgFlags & 0x08).toBe(0x08); // MSG_CTRUNC
  });
});

describe('AF_VSOCK (socket/bind/listen only: no loopback here)', () => {
  it('binds any CID on a fixed and on a kernel-chosen port', () => {
    const port = 20000 + Math.floor(Math.random() * 40000);
    const [fd] = track(socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC));
    bind(fd!, sockaddrVm(-1, port));
    listen(fd!);
    expect(parseSockaddrVm(getsockname(fd!))).toEqual({ cid: VMADDR_CID_ANY, port });

    const [fd2] = track(socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC));
    bind(fd2!, sockaddrVm(-1, VMADDR_PORT_ANY));
    const chosen = parseSockaddrVm(getsockname(fd2!)).port;
    expect(chosen).not.toBe(VMADDR_PORT_ANY);
  });

  it('a second bind to the same port is EADDRINUSE, reported with the address', () => {
    const port = 20000 + Math.floor(Math.random() * 40000);
    const [fd] = track(socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC));
    bind(fd!, sockaddrVm(-1, port));
    listen(fd!);
    const [fd2] = track(socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC));
    const addr = `vsock://-1:${port}`;
    let err: unknown;
    try {
      bind(fd2!, sockaddrVm(-1, port), addr);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SysError);
    expect((err as SysError).code).toBe('EADDRINUSE');
    expect((err as SysError).path).toBe(addr);
    expect((err as SysError).message).toContain(addr);
  });
});

describe('AF_NETLINK', () => {
  it('binds a NETLINK_KOBJECT_UEVENT socket with sockaddr_nl and gets a port id', () => {
    const NETLINK_KOBJECT_UEVENT = 15;
    const [fd] = track(socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_KOBJECT_UEVENT));
    bind(fd!, sockaddrNl(0, 1));
    const sa = getsockname(fd!);
    expect(sa.readUInt16LE(0)).toBe(AF_NETLINK);
    expect(sa.readUInt32LE(4)).not.toBe(0); // the kernel assigned a port id
    expect(sa.readUInt32LE(8)).toBe(1);
  });

  it('NETLINK_ROUTE raw socket binds too', () => {
    const [fd] = track(socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, 0));
    bind(fd!, sockaddrNl());
    expect(getsockname(fd!).readUInt16LE(0)).toBe(AF_NETLINK);
  });
});

describe('AF_UNIX connect', () => {
  it('connects to a Node server on a path', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-un-'));
    const p = path.join(dir, 's.sock');
    const server = net.createServer();
    const got = new Promise<string>((resolve) => {
      server.on('connection', (s) => {
        s.setEncoding('utf8');
        s.on('data', (d: string) => {
          s.destroy();
          resolve(d);
        });
      });
    });
    await new Promise<void>((r) => server.listen(p, r));
    const [fd] = track(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC));
    connect(fd!, sockaddrUn(p), p);
    sendmsg(fd!, Buffer.from('via koffi'));
    expect(await got).toBe('via koffi');
    await new Promise((r) => server.close(r));
    fs.rmSync(dir, { recursive: true });
  });

  it('abstract names: exact-length bind/connect/accept4, and the NUL-padded form is a different name', () => {
    const name = `gk-test-${process.pid}-${Date.now()}`;
    const [l] = track(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC));
    bind(l!, sockaddrUn(`\0${name}`));
    listen(l!);
    expect(getsockname(l!).length).toBe(2 + 1 + name.length);
    const [c] = track(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC));
    connect(c!, sockaddrUn(`\0${name}`));
    const [srv] = track(accept4(l!));
    sendmsg(c!, Buffer.from('abstract'));
    expect(recvmsg(srv!).data.toString()).toBe('abstract');
    // What Node's net.connect('\0name') sends: the name NUL-padded to 108 bytes.
    const padded = Buffer.alloc(110);
    padded.writeUInt16LE(AF_UNIX, 0);
    padded.write(name, 3);
    const [c2] = track(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC));
    expect(() => connect(c2!, padded)).toThrow(/ECONNREFUSED/);
  });

  it('connect to a missing path is ENOENT with the path', () => {
    const [fd] = track(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC));
    expect(() => connect(fd!, sockaddrUn('/nonexistent/x.sock'), 'unix:///nonexistent/x.sock')).toThrow(
      /connect unix:\/\/\/nonexistent\/x.sock: ENOENT/,
    );
  });
});
