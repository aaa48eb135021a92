import { describe, expect, it } from 'vitest';
import {
  AF_NETLINK,
  AF_UNIX,
  AF_VSOCK,
  VMADDR_CID_ANY,
  formatSockaddr,
  parseSockaddrVm,
  sockaddrNl,
  sockaddrUn,
  sockaddrVm,
} from '../../agent/src/sys/socket';

describe('socket address builders', () => {
  it('sockaddr_vm is 16 bytes {u16 family, u16 reserved, u32 port, u32 cid, 4 zero}', () => {
    const b = sockaddrVm(-1, 1024);
    expect(b.length).toBe(16);
    expect([...b]).toEqual([40, 0, 0, 0, 0x00, 0x04, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
    expect(parseSockaddrVm(b)).toEqual({ cid: VMADDR_CID_ANY, port: 1024 });
    expect(parseSockaddrVm(sockaddrVm(3, 0x12345678))).toEqual({ cid: 3, port: 0x12345678 });
    expect(formatSockaddr(sockaddrVm(-1, 5))).toBe('vsock://-1:5');
    expect(formatSockaddr(sockaddrVm(2, 5))).toBe('vsock://2:5');
    expect(AF_VSOCK).toBe(40);
  });

  it('sockaddr_un: NUL-terminated paths, exact-length abstract names', () => {
    const p = sockaddrUn('/run/a.sock');
    expect(p.length).toBe(2 + 11 + 1);
    expect(p.readUInt16LE(0)).toBe(AF_UNIX);
    expect(p.subarray(2, 13).toString()).toBe('/run/a.sock');
    expect(p[13]).toBe(0);
    expect(formatSockaddr(p)).toBe('unix:///run/a.sock');
    const a = sockaddrUn('\0abs');
    expect(a.length).toBe(2 + 4);
    expect(formatSockaddr(a)).toBe('unix://@abs');
    expect(() => sockaddrUn('/' + 'x'.repeat(107))).toThrow(/too long/);
    expect(() => sockaddrUn('')).toThrow(/empty/);
    expect(sockaddrUn('\0' + 'x'.repeat(107)).length).toBe(110);
  });

  it('sockaddr_nl is 12 bytes {u16 family, u16 pad, u32 pid, u32 groups}', () => {
    const b = sockaddrNl(0, 0x1);
    expect(b.length).toBe(12);
    expect(b.readUInt16LE(0)).toBe(AF_NETLINK);
    expect(b.readUInt16LE(2)).toBe(0);
    expect(b.readUInt32LE(4)).toBe(0);
    expect(b.readUInt32LE(8)).toBe(1);
    expect(formatSockaddr(sockaddrNl(7, 2))).toBe('netlink:pid=7,groups=2');
  });
});
