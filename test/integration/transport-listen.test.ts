// listen() over real sockets: vsock (listen/close only: no vsock loopback on
// this machine), unix path and abstract sockets, tcp.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { nullLogger } from '../../agent/src/log';
import { SysError } from '../../agent/src/sys/libc';
import { close as closeFd } from '../../agent/src/sys/misc';
import { AF_UNIX, SOCK_CLOEXEC, SOCK_STREAM, VMADDR_PORT_ANY, bind, socket, sockaddrUn } from '../../agent/src/sys/socket';
import { AddressError } from '../../agent/src/transport/address';
import { listen, type ConnectionInfo, type Listener } from '../../agent/src/transport/listen';
import { connectAbstract } from '../../agent/src/transport/unix';
import { listenVsock, vsockSelfTest } from '../../agent/src/transport/vsock';

const log = nullLogger();
const listeners: Listener[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const l of listeners.splice(0)) await l.close();
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});
function tmpdir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-listen-'));
  dirs.push(d);
  return d;
}
const randomPort = (): number => 20000 + Math.floor(Math.random() * 40000);

/** Echo server: each connection gets "echo:" + whatever it sends, and the info is recorded. */
function echo(infos: ConnectionInfo[], socks: net.Socket[] = []) {
  return (sock: net.Socket, info: ConnectionInfo): void => {
    infos.push(info);
    socks.push(sock);
    sock.on('data', (d) => sock.write(Buffer.concat([Buffer.from('echo:'), d])));
  };
}

function roundTrip(c: net.Socket, msg: string): Promise<string> {
  return new Promise((resolve, reject) => {
    c.once('error', reject);
    c.once('data', (d) => resolve(d.toString()));
    c.write(msg);
  });
}

function connected(c: net.Socket): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    c.once('connect', () => resolve(c));
    c.once('error', reject);
  });
}

describe('vsock', () => {
  it('the self-test reports that AF_VSOCK listening works here', () => {
    const r = vsockSelfTest();
    expect(r).toMatchObject({ ok: true, stage: 'ok' });
  });

  it('listens on vsock://-1:<port>, frees the port on close, and reports EADDRINUSE with the address', async () => {
    const port = randomPort();
    const l = await listen(`vsock://-1:${port}`, () => {}, log);
    expect(l.address).toBe(`vsock://-1:${port}`);
    const err = await listen(`vsock://-1:${port}`, () => {}, log).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SysError);
    expect((err as SysError).code).toBe('EADDRINUSE');
    expect((err as SysError).path).toBe(`vsock://-1:${port}`);
    await l.close();
    // The fd really is closed: the same port can be bound again.
    const again = await listen(`vsock://-1:${port}`, () => {}, log);
    await again.close();
    await again.close(); // idempotent
  });

  it('resolves a kernel-chosen port in the address', async () => {
    const l = await listenVsock(-1, VMADDR_PORT_ANY, () => {}, log);
    listeners.push(l);
    const m = /^vsock:\/\/-1:(\d+)$/.exec(l.address);
    expect(m).not.toBeNull();
    expect(Number(m![1])).not.toBe(VMADDR_PORT_ANY);
  });
});

describe('unix path', () => {
  it('accepts connections and data flows both ways', async () => {
    const p = path.join(tmpdir(), 'sub', 'agent.sock'); // parent dir is created
    const infos: ConnectionInfo[] = [];
    const l = await listen(`unix://${p}`, echo(infos), log);
    listeners.push(l);
    expect(l.address).toBe(`unix://${p}`);
    expect(fs.lstatSync(p).isSocket()).toBe(true);
    const c1 = await connected(net.connect(p));
    const c2 = await connected(net.connect(p));
    expect(await roundTrip(c1, 'one')).toBe('echo:one');
    expect(await roundTrip(c2, 'two')).toBe('echo:two');
    expect(infos).toEqual([
      { transport: 'unix', peer: `unix://${p}` },
      { transport: 'unix', peer: `unix://${p}` },
    ]);
    c1.destroy();
    c2.destroy();
  });

  it('replaces a stale socket file', async () => {
    const p = path.join(tmpdir(), 'stale.sock');
    const fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC);
    bind(fd, sockaddrUn(p));
    closeFd(fd); // leaves the socket file behind, nobody listening
    expect(fs.lstatSync(p).isSocket()).toBe(true);
    const l = await listen(`unix://${p}`, echo([]), log);
    listeners.push(l);
    const c = await connected(net.connect(p));
    expect(await roundTrip(c, 'x')).toBe('echo:x');
    c.destroy();
  });

  it('refuses to remove a path that is not a socket', async () => {
    const p = path.join(tmpdir(), 'file');
    fs.writeFileSync(p, 'keep me');
    await expect(listen(`unix://${p}`, () => {}, log)).rejects.toThrow(/exists and is not a socket/);
    expect(fs.readFileSync(p, 'utf8')).toBe('keep me');
  });

  it('close() ends open connections and removes the socket file', async () => {
    const p = path.join(tmpdir(), 'c.sock');
    const l = await listen(`unix://${p}`, echo([]), log);
    const c = await connected(net.connect(p));
    expect(await roundTrip(c, 'a')).toBe('echo:a');
    const closed = new Promise<void>((r) => c.once('close', () => r()));
    c.on('error', () => {});
    await l.close();
    await closed;
    expect(fs.existsSync(p)).toBe(false);
  });
});

describe('unix abstract', () => {
  it('binds the exact-length name: exact-length clients connect, data flows', async () => {
    const name = `gk-listen-${process.pid}-${Date.now()}`;
    const infos: ConnectionInfo[] = [];
    const l = await listen(`unix://@${name}`, echo(infos), log);
    listeners.push(l);
    expect(l.address).toBe(`unix://@${name}`);
    const c = connectAbstract(name);
    expect(await roundTrip(c, 'abs')).toBe('echo:abs');
    expect(infos).toEqual([{ transport: 'unix', peer: `unix://@${name}` }]);
    c.destroy();
    // The name is visible exactly (no NUL padding) in /proc/net/unix.
    expect(fs.readFileSync('/proc/net/unix', 'utf8')).toMatch(new RegExp(`@${name}\\n`));
  });

  it('a second listener on the same name fails with EADDRINUSE', async () => {
    const name = `gk-listen-dup-${process.pid}-${Date.now()}`;
    const l = await listen(`unix://@${name}`, () => {}, log);
    listeners.push(l);
    await expect(listen(`unix://@${name}`, () => {}, log)).rejects.toMatchObject({ code: 'EADDRINUSE' });
  });
});

describe('tcp (development only)', () => {
  it('listens on an ephemeral port and reports the peer', async () => {
    const infos: ConnectionInfo[] = [];
    const l = await listen('tcp://127.0.0.1:0', echo(infos), log);
    listeners.push(l);
    const port = Number(/^tcp:\/\/127\.0\.0\.1:(\d+)$/.exec(l.address)![1]);
    expect(port).toBeGreaterThan(0);
    const c = await connected(net.connect(port, '127.0.0.1'));
    expect(await roundTrip(c, 'tcp')).toBe('echo:tcp');
    expect(infos[0]!.transport).toBe('tcp');
    expect(infos[0]!.peer).toBe(`tcp://127.0.0.1:${c.localPort}`);
    c.destroy();
  });
});

describe('listen()', () => {
  it('rejects a bad address with AddressError', async () => {
    await expect(listen('vsock://nope', () => {}, log)).rejects.toBeInstanceOf(AddressError);
  });

  it('a throwing connection handler closes that connection and the listener keeps serving', async () => {
    const p = path.join(tmpdir(), 'throw.sock');
    let n = 0;
    const l = await listen(
      `unix://${p}`,
      (sock) => {
        if (n++ === 0) throw new Error('boom');
        sock.end('second');
      },
      log,
    );
    listeners.push(l);
    const c1 = net.connect(p);
    await new Promise<void>((r) => c1.once('close', () => r()));
    const c2 = net.connect(p);
    const got = await new Promise<string>((r) => c2.once('data', (d) => r(d.toString())));
    expect(got).toBe('second');
    c2.destroy();
  });
});
