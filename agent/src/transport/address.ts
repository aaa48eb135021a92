// Listen and dial addresses (pure parsing, no I/O).
//
//   vsock://CID:PORT        CID -1 (or 4294967295) = any; both sides
//   unix:///abs/path        filesystem socket; both sides
//   unix://@name            abstract socket; both sides
//   tcp://HOST:PORT         development only; both sides; HOST may be [v6]
//   serial | serial:NAME    listen: virtio-serial port by name (default agent.channel.0)
//   serial:PATH             dial: a QEMU chardev unix socket at an absolute PATH
//   hvsock://PATH:PORT      dial: Firecracker hybrid vsock (unix socket + "CONNECT PORT\n")

export const DEFAULT_SERIAL_PORT = 'agent.channel.0';
/** Kata's default agent port. */
export const DEFAULT_VSOCK_PORT = 1024;

export type VsockAddress = { kind: 'vsock'; cid: number; port: number };
export type UnixAddress = { kind: 'unix'; path: string; abstract: boolean };
export type TcpAddress = { kind: 'tcp'; host: string; port: number };
export type SerialListenAddress = { kind: 'serial'; name: string };
export type SerialDialAddress = { kind: 'serial'; path: string };
export type HvsockAddress = { kind: 'hvsock'; path: string; port: number };

export type ListenAddress = VsockAddress | UnixAddress | TcpAddress | SerialListenAddress;
export type DialAddress = VsockAddress | UnixAddress | TcpAddress | SerialDialAddress | HvsockAddress;

export class AddressError extends Error {
  readonly input: string;
  constructor(input: string, reason: string) {
    super(`invalid address ${JSON.stringify(input)}: ${reason}`);
    this.name = 'AddressError';
    this.input = input;
  }
}

const U32_MAX = 0xffffffff;
// sun_path is 108 bytes: 107 + NUL for a path, 107 after the leading NUL for an abstract name.
const SUN_PATH_MAX = 107;

function parseInteger(s: string): number | undefined {
  return /^-?\d+$/.test(s) ? Number(s) : undefined;
}

function parseVsock(input: string, rest: string): VsockAddress {
  const i = rest.lastIndexOf(':');
  if (i < 0) throw new AddressError(input, 'expected vsock://CID:PORT');
  const cidS = rest.slice(0, i);
  const portS = rest.slice(i + 1);
  const cid = parseInteger(cidS);
  if (cid === undefined || (cid !== -1 && (cid < 0 || cid > U32_MAX))) {
    throw new AddressError(input, `bad vsock CID ${JSON.stringify(cidS)} (0..4294967295, or -1 for any)`);
  }
  const port = parsePort(input, portS, U32_MAX, 'vsock port');
  return { kind: 'vsock', cid: cid === U32_MAX ? -1 : cid, port };
}

function parsePort(input: string, s: string, max: number, what: string): number {
  const n = parseInteger(s);
  if (n === undefined || n < 0 || n > max) throw new AddressError(input, `bad ${what} ${JSON.stringify(s)} (0..${max})`);
  return n;
}

function checkAbsPath(input: string, path: string, what: string): void {
  if (!path.startsWith('/')) throw new AddressError(input, `${what} must be an absolute path`);
  if (path.includes('\0')) throw new AddressError(input, `${what} contains a NUL byte`);
}

function parseUnix(input: string, rest: string): UnixAddress {
  if (rest.startsWith('@')) {
    const name = rest.slice(1);
    if (name.length === 0) throw new AddressError(input, 'empty abstract socket name');
    if (name.includes('\0')) throw new AddressError(input, 'abstract name contains a NUL byte');
    if (Buffer.byteLength(name) > SUN_PATH_MAX) throw new AddressError(input, `abstract name longer than ${SUN_PATH_MAX} bytes`);
    return { kind: 'unix', path: `\0${name}`, abstract: true };
  }
  if (rest.length === 0) throw new AddressError(input, 'empty unix socket path');
  checkAbsPath(input, rest, 'unix socket path');
  if (Buffer.byteLength(rest) > SUN_PATH_MAX) throw new AddressError(input, `unix socket path longer than ${SUN_PATH_MAX} bytes`);
  return { kind: 'unix', path: rest, abstract: false };
}

function parseTcp(input: string, rest: string): TcpAddress {
  let host: string;
  let portS: string;
  if (rest.startsWith('[')) {
    const end = rest.indexOf(']');
    if (end < 0 || rest[end + 1] !== ':') throw new AddressError(input, 'expected tcp://[IPV6]:PORT');
    host = rest.slice(1, end);
    portS = rest.slice(end + 2);
  } else {
    const i = rest.lastIndexOf(':');
    if (i < 0) throw new AddressError(input, 'expected tcp://HOST:PORT');
    host = rest.slice(0, i);
    portS = rest.slice(i + 1);
    if (host.includes(':')) throw new AddressError(input, 'IPv6 hosts must be bracketed: tcp://[::1]:PORT');
  }
  if (host.length === 0) throw new AddressError(input, 'empty host');
  if (/[\s/]/.test(host)) throw new AddressError(input, `bad host ${JSON.stringify(host)}`);
  return { kind: 'tcp', host, port: parsePort(input, portS, 65535, 'tcp port') };
}

function splitScheme(input: string): { scheme: string; rest: string } | undefined {
  const m = /^([a-z]+):\/\/(.*)$/s.exec(input);
  return m ? { scheme: m[1]!, rest: m[2]! } : undefined;
}

/** Parse an address the agent listens on. Throws AddressError. */
export function parseListenAddress(input: string): ListenAddress {
  const s = input.trim();
  if (s === 'serial') return { kind: 'serial', name: DEFAULT_SERIAL_PORT };
  if (s.startsWith('serial:')) {
    const name = s.slice('serial:'.length).replace(/^\/\//, '');
    if (name.length === 0) throw new AddressError(input, 'empty virtio-serial port name');
    if (name.includes('/') || name.includes('\0') || /\s/.test(name)) {
      throw new AddressError(input, `bad virtio-serial port name ${JSON.stringify(name)} (listen side takes a port name, not a path)`);
    }
    return { kind: 'serial', name };
  }
  const sp = splitScheme(s);
  if (!sp) throw new AddressError(input, 'expected SCHEME://... (vsock, unix, tcp) or serial[:NAME]');
  switch (sp.scheme) {
    case 'vsock':
      return parseVsock(input, sp.rest);
    case 'unix':
      return parseUnix(input, sp.rest);
    case 'tcp':
      return parseTcp(input, sp.rest);
    case 'hvsock':
      throw new AddressError(input, 'hvsock:// is a dial-side (host) address; the guest listens on vsock://');
    default:
      throw new AddressError(input, `unknown scheme ${JSON.stringify(sp.scheme)} (vsock, unix, tcp, serial)`);
  }
}

/** Parse an address a client dials (host side / tests). Throws AddressError. */
export function parseDialAddress(input: string): DialAddress {
  const s = input.trim();
  if (s === 'serial' || (s.startsWith('serial:') && !s.startsWith('serial://'))) {
    const path = s.slice('serial:'.length);
    if (path.length === 0) throw new AddressError(input, 'expected serial:PATH (the chardev unix socket)');
    checkAbsPath(input, path, 'serial chardev socket');
    return { kind: 'serial', path };
  }
  const sp = splitScheme(s);
  if (!sp) throw new AddressError(input, 'expected SCHEME://... (vsock, unix, tcp, hvsock) or serial:PATH');
  switch (sp.scheme) {
    case 'vsock': {
      const a = parseVsock(input, sp.rest);
      if (a.cid === -1) throw new AddressError(input, 'cannot dial CID -1 (any)');
      return a;
    }
    case 'unix':
      return parseUnix(input, sp.rest);
    case 'tcp': {
      const a = parseTcp(input, sp.rest);
      if (a.port === 0) throw new AddressError(input, 'cannot dial port 0');
      return a;
    }
    case 'serial': {
      checkAbsPath(input, sp.rest, 'serial chardev socket');
      return { kind: 'serial', path: sp.rest };
    }
    case 'hvsock': {
      const i = sp.rest.lastIndexOf(':');
      if (i < 0) throw new AddressError(input, 'expected hvsock://PATH:PORT');
      const path = sp.rest.slice(0, i);
      checkAbsPath(input, path, 'hybrid vsock socket');
      return { kind: 'hvsock', path, port: parsePort(input, sp.rest.slice(i + 1), U32_MAX, 'vsock port') };
    }
    default:
      throw new AddressError(input, `unknown scheme ${JSON.stringify(sp.scheme)} (vsock, unix, tcp, hvsock, serial)`);
  }
}

/** Render an address back to its canonical string form. */
export function formatAddress(a: ListenAddress | DialAddress): string {
  switch (a.kind) {
    case 'vsock':
      return `vsock://${a.cid}:${a.port}`;
    case 'unix':
      return a.abstract ? `unix://@${a.path.replace(/^\0/, '')}` : `unix://${a.path}`;
    case 'tcp':
      return `tcp://${a.host.includes(':') ? `[${a.host}]` : a.host}:${a.port}`;
    case 'hvsock':
      return `hvsock://${a.path}:${a.port}`;
    case 'serial':
      return 'name' in a ? `serial:${a.name}` : `serial:${a.path}`;
  }
}
