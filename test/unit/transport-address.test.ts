import { describe, expect, it } from 'vitest';
import {
  AddressError,
  formatAddress,
  parseDialAddress,
  parseListenAddress,
  type DialAddress,
  type ListenAddress,
} from '../../agent/src/transport/address';

const listenOk: [string, ListenAddress][] = [
  ['vsock://-1:1024', { kind: 'vsock', cid: -1, port: 1024 }],
  ['vsock://4294967295:1024', { kind: 'vsock', cid: -1, port: 1024 }],
  ['vsock://3:0', { kind: 'vsock', cid: 3, port: 0 }],
  ['vsock://2:4294967295', { kind: 'vsock', cid: 2, port: 4294967295 }],
  ['  vsock://-1:1024\n', { kind: 'vsock', cid: -1, port: 1024 }],
  ['unix:///run/kata/agent.sock', { kind: 'unix', path: '/run/kata/agent.sock', abstract: false }],
  ['unix://@kata-agent', { kind: 'unix', path: '\0kata-agent', abstract: true }],
  ['tcp://127.0.0.1:9000', { kind: 'tcp', host: '127.0.0.1', port: 9000 }],
  ['tcp://localhost:0', { kind: 'tcp', host: 'localhost', port: 0 }],
  ['tcp://[::1]:9000', { kind: 'tcp', host: '::1', port: 9000 }],
  ['serial', { kind: 'serial', name: 'agent.channel.0' }],
  ['serial:agent.channel.0', { kind: 'serial', name: 'agent.channel.0' }],
  ['serial:org.example.port', { kind: 'serial', name: 'org.example.port' }],
  ['serial://agent.channel.0', { kind: 'serial', name: 'agent.channel.0' }],
];

const listenBad: [string, RegExp][] = [
  ['', /expected SCHEME/],
  ['vsock:1024', /expected SCHEME/],
  ['vsock://1024', /expected vsock:\/\/CID:PORT/],
  ['vsock://x:1024', /bad vsock CID/],
  ['vsock://-2:1024', /bad vsock CID/],
  ['vsock://4294967296:1', /bad vsock CID/],
  ['vsock://3:', /bad vsock port/],
  ['vsock://3:-1', /bad vsock port/],
  ['vsock://3:4294967296', /bad vsock port/],
  ['vsock://3:12a', /bad vsock port/],
  ['unix://', /empty unix socket path/],
  ['unix://relative/path', /absolute path/],
  ['unix://@', /empty abstract socket name/],
  [`unix:///${'x'.repeat(107)}`, /longer than 107 bytes/],
  [`unix://@${'x'.repeat(108)}`, /longer than 107 bytes/],
  ['tcp://127.0.0.1', /expected tcp:\/\/HOST:PORT/],
  ['tcp://:80', /empty host/],
  ['tcp://::1:80', /must be bracketed/],
  ['tcp://[::1]80', /expected tcp:\/\/\[IPV6\]:PORT/],
  ['tcp://h:65536', /bad tcp port/],
  ['serial:', /empty virtio-serial port name/],
  ['serial:/dev/vport0p1', /port name, not a path/],
  ['hvsock:///run/fc.sock:1024', /dial-side/],
  ['http://x:1', /unknown scheme "http"/],
];

const dialOk: [string, DialAddress][] = [
  ['vsock://3:1024', { kind: 'vsock', cid: 3, port: 1024 }],
  ['unix:///tmp/a.sock', { kind: 'unix', path: '/tmp/a.sock', abstract: false }],
  ['unix://@name', { kind: 'unix', path: '\0name', abstract: true }],
  ['tcp://10.0.0.1:5000', { kind: 'tcp', host: '10.0.0.1', port: 5000 }],
  ['hvsock:///run/vc/firecracker/kata.hvsock:1024', { kind: 'hvsock', path: '/run/vc/firecracker/kata.hvsock', port: 1024 }],
  ['hvsock:///a:b/c.sock:1', { kind: 'hvsock', path: '/a:b/c.sock', port: 1 }],
  ['serial:/run/vc/vm/abc/kata.sock', { kind: 'serial', path: '/run/vc/vm/abc/kata.sock' }],
  ['serial:///run/x.sock', { kind: 'serial', path: '/run/x.sock' }],
];

const dialBad: [string, RegExp][] = [
  ['vsock://-1:1024', /cannot dial CID -1/],
  ['tcp://127.0.0.1:0', /cannot dial port 0/],
  ['hvsock:///run/fc.sock', /expected hvsock:\/\/PATH:PORT/],
  ['hvsock:///run/fc.sock:x', /bad vsock port/],
  ['hvsock://run/fc.sock:1024', /absolute path/],
  ['hvsock://1024', /expected hvsock:\/\/PATH:PORT/],
  ['serial', /expected serial:PATH/],
  ['serial:agent.channel.0', /absolute path/],
  ['ftp://x:1', /unknown scheme/],
];

describe('parseListenAddress', () => {
  it.each(listenOk)('parses %j', (input, want) => {
    expect(parseListenAddress(input)).toEqual(want);
  });
  it.each(listenBad)('rejects %j', (input, msg) => {
    let err: unknown;
    try {
      parseListenAddress(input);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AddressError);
    expect((err as Error).message).toMatch(msg);
    expect((err as AddressError).input).toBe(input);
  });
});

describe('parseDialAddress', () => {
  it.each(dialOk)('parses %j', (input, want) => {
    expect(parseDialAddress(input)).toEqual(want);
  });
  it.each(dialBad)('rejects %j', (input, msg) => {
    expect(() => parseDialAddress(input)).toThrow(AddressError);
    expect(() => parseDialAddress(input)).toThrow(msg);
  });
});

describe('formatAddress', () => {
  const roundTrip = [
    'vsock://-1:1024',
    'vsock://3:5000',
    'unix:///run/a.sock',
    'unix://@abs',
    'tcp://127.0.0.1:80',
    'tcp://[::1]:80',
    'serial:agent.channel.0',
  ];
  it.each(roundTrip)('round-trips listen address %j', (s) => {
    expect(formatAddress(parseListenAddress(s))).toBe(s);
  });
  it.each(['hvsock:///run/fc.sock:1024', 'serial:/run/x.sock'])('round-trips dial address %j', (s) => {
    expect(formatAddress(parseDialAddress(s))).toBe(s);
  });
  it('normalizes the any-CID spelling', () => {
    expect(formatAddress(parseListenAddress('vsock://4294967295:9'))).toBe('vsock://-1:9');
  });
});
