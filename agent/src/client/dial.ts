// Agent addresses and how to connect to them (host side: agent-ctl, tests).
//
//   unix:///run/agent.sock     unix socket (a bare /absolute/path works too)
//   unix://@name               abstract unix socket
//   tcp://host:port            TCP (IPv6 as tcp://[::1]:1024)
//   vsock://CID:PORT           AF_VSOCK
//   hvsock://PATH:PORT         Firecracker/Cloud Hypervisor hybrid vsock: unix
//                              socket PATH, then "CONNECT PORT\n" -> "OK ...\n"
//   serial:PATH                QEMU chardev unix socket of a virtio-serial port
import net from 'node:net';
import { AddressError, formatAddress, parseDialAddress, type DialAddress } from '../transport/address';
import { ConnectionError, UsageError } from './errors';

export type Address = DialAddress;

export interface DialOptions {
  /** Give up connecting (and on the hybrid vsock handshake) after this long (default 10 s). */
  timeoutMs?: number;
}

/** Connects an AF_VSOCK stream socket. */
export type VsockDialer = (cid: number, port: number, opts: DialOptions) => Promise<net.Socket>;

let vsockDialer: VsockDialer | undefined;

/** Replace the AF_VSOCK connector (default: vsock.ts, koffi socket + connect; tests install fakes). */
export function setVsockDialer(d: VsockDialer | undefined): void {
  vsockDialer = d;
}

/**
 * Parse a dial address (transport/address.ts syntax; a bare absolute path
 * means a unix socket). Throws UsageError on malformed ones.
 */
export function parseAddress(addr: string): Address {
  const s = addr.trim();
  try {
    return parseDialAddress(s.startsWith('/') ? `unix://${s}` : s);
  } catch (err) {
    if (err instanceof AddressError) throw new UsageError(err.message);
    throw err;
  }
}

export { formatAddress };

function netConnect(opts: net.NetConnectOpts, what: string, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(opts);
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new ConnectionError(`connect ${what}: timed out after ${timeoutMs} ms`));
    }, timeoutMs);
    const onError = (err: Error): void => {
      clearTimeout(timer);
      reject(new ConnectionError(`connect ${what}: ${err.message}`, { cause: err }));
    };
    sock.once('error', onError);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.off('error', onError);
      resolve(sock);
    });
  });
}

/**
 * Firecracker hybrid vsock: ask the VMM's unix socket for guest port `port`
 * ("CONNECT PORT\n", answer "OK <host port>\n"). Reads with 'readable' so the
 * socket is handed back in its initial (not flowing) state, with any bytes
 * that came after the OK line put back.
 */
export function hybridVsockHandshake(sock: net.Socket, port: number, what: string, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    let finished = false;
    const done = (err?: Error): void => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      sock.off('readable', onReadable);
      sock.off('error', onError);
      sock.off('close', onClose);
      sock.off('end', onClose);
      if (err) {
        sock.destroy();
        reject(err);
      } else resolve(sock);
    };
    const onReadable = (): void => {
      let c: Buffer | null;
      while (!finished && (c = sock.read() as Buffer | null) !== null) {
        buf = Buffer.concat([buf, c]);
        const nl = buf.indexOf(0x0a);
        if (nl < 0) {
          if (buf.length > 512) done(new ConnectionError(`connect ${what}: no line in the hybrid vsock reply`));
          continue;
        }
        const line = buf.subarray(0, nl).toString('utf8').replace(/\r$/, '');
        if (!line.startsWith('OK ')) {
          done(new ConnectionError(`connect ${what}: hybrid vsock CONNECT ${port} refused: ${JSON.stringify(line)}`));
          return;
        }
        const rest = buf.subarray(nl + 1);
        done();
        if (rest.length > 0) sock.unshift(rest);
      }
    };
    const onError = (err: Error): void => done(new ConnectionError(`connect ${what}: ${err.message}`, { cause: err }));
    const onClose = (): void => done(new ConnectionError(`connect ${what}: closed during the hybrid vsock handshake`));
    const timer = setTimeout(
      () => done(new ConnectionError(`connect ${what}: hybrid vsock handshake timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
    sock.on('readable', onReadable);
    sock.once('error', onError);
    sock.once('close', onClose);
    sock.once('end', onClose);
    sock.write(`CONNECT ${port}\n`);
  });
}

/** Abstract names are connected with their exact length (as Go/Rust/C servers bind them), not Node's padded form. */
async function connectAbstractSocket(name: string, what: string): Promise<net.Socket> {
  const { connectAbstract } = await import('../transport/unix');
  try {
    return connectAbstract(name);
  } catch (err) {
    throw new ConnectionError(`connect ${what}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Connect to an agent address. Rejects with ConnectionError when the
 * connection fails, UsageError when the address is malformed.
 */
export async function dial(addr: string | Address, opts: DialOptions = {}): Promise<net.Socket> {
  const a = typeof addr === 'string' ? parseAddress(addr) : addr;
  const what = formatAddress(a);
  const timeoutMs = opts.timeoutMs ?? 10_000;
  switch (a.kind) {
    case 'unix':
      if (a.abstract) return connectAbstractSocket(a.path.replace(/^\0/, ''), what);
      return netConnect({ path: a.path }, what, timeoutMs);
    case 'serial':
      return netConnect({ path: a.path }, what, timeoutMs);
    case 'tcp':
      return netConnect({ host: a.host, port: a.port }, what, timeoutMs);
    case 'hvsock': {
      const sock = await netConnect({ path: a.path }, what, timeoutMs);
      return hybridVsockHandshake(sock, a.port, what, timeoutMs);
    }
    case 'vsock': {
      try {
        const d = vsockDialer ?? (await import('./vsock')).vsockDial;
        return await d(a.cid, a.port, { timeoutMs });
      } catch (err) {
        if (err instanceof ConnectionError) throw err;
        throw new ConnectionError(`connect ${what}: ${(err as Error).message}`, { cause: err });
      }
    }
  }
}
