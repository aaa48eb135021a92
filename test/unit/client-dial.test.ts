import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AgentClient } from '../../agent/src/client/agent';
import { dial, parseAddress, setVsockDialer } from '../../agent/src/client/dial';
import { ConnectionError, UsageError } from '../../agent/src/client/errors';
import { nullLogger } from '../../agent/src/log';
import { serveTtrpc } from '../../agent/src/rpc/ttrpc/server';
import { listenUnix } from '../../agent/src/transport/unix';
import { rawConnect, startTestServer, type TestServer } from '../helpers/rpc-server';

let srv: TestServer;
beforeEach(async () => {
  srv = await startTestServer();
});
afterEach(async () => {
  setVsockDialer(undefined);
  await srv.close();
});

/** A unix socket server that forwards every accepted connection to the test server (after `prelude`). */
async function forwarder(p: string, prelude?: (s: net.Socket) => Promise<boolean>): Promise<net.Server> {
  const server = net.createServer(async (s) => {
    s.on('error', () => {});
    if (prelude && !(await prelude(s))) return;
    const up = await rawConnect(srv.path);
    up.on('error', () => {});
    s.pipe(up).pipe(s);
    s.on('close', () => up.destroy());
    up.on('close', () => s.destroy());
  });
  await new Promise<void>((r) => server.listen(p, r));
  return server;
}

/** Read one "\n"-terminated line from s without consuming what follows. */
function readLine(s: net.Socket): Promise<string> {
  return new Promise((resolve) => {
    let buf = '';
    const onData = (c: Buffer) => {
      const text = c.toString('latin1');
      const nl = text.indexOf('\n');
      if (nl < 0) {
        buf += text;
        return;
      }
      s.off('data', onData);
      s.pause();
      const rest = c.subarray(nl + 1);
      if (rest.length) s.unshift(rest);
      resolve(buf + text.slice(0, nl));
    };
    s.on('data', onData);
  });
}

describe('parseAddress', () => {
  it('accepts every dial form', () => {
    expect(parseAddress('/run/a.sock')).toEqual({ kind: 'unix', path: '/run/a.sock', abstract: false });
    expect(parseAddress('unix:///run/a.sock')).toEqual({ kind: 'unix', path: '/run/a.sock', abstract: false });
    expect(parseAddress('unix://@kata')).toEqual({ kind: 'unix', path: '\0kata', abstract: true });
    expect(parseAddress('tcp://127.0.0.1:1024')).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 1024 });
    expect(parseAddress('tcp://[::1]:1024')).toEqual({ kind: 'tcp', host: '::1', port: 1024 });
    expect(parseAddress('vsock://3:1024')).toEqual({ kind: 'vsock', cid: 3, port: 1024 });
    expect(parseAddress('hvsock:///run/vc/fc.hvsock:1024')).toEqual({ kind: 'hvsock', path: '/run/vc/fc.hvsock', port: 1024 });
    expect(parseAddress('serial:/run/vc/console.sock')).toEqual({ kind: 'serial', path: '/run/vc/console.sock' });
  });

  it('throws UsageError for malformed addresses', () => {
    for (const bad of ['', 'foo', 'http://x:1', 'tcp://host', 'vsock://x:1', 'vsock://3:', 'hvsock:///p', 'unix://@', 'serial:']) {
      expect(() => parseAddress(bad), bad).toThrow(UsageError);
    }
  });
});

describe('dial', () => {
  it('connects to a unix socket path (also given bare)', async () => {
    for (const addr of [srv.addr, srv.path]) {
      const c = AgentClient.fromSocket(await dial(addr));
      expect(await c.check()).toEqual({ status: 1 });
      c.close();
    }
  });

  it('fails with ConnectionError when nothing listens', async () => {
    const err = await dial(`unix://${srv.dir}/missing.sock`).catch((e) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect(err.message).toContain('ENOENT');
  });

  it('connects to an abstract unix socket by its exact name', async () => {
    const name = `gk-test-${process.pid}-${Date.now()}`;
    const l = await listenUnix(`\0${name}`, true, (s) => serveTtrpc(s, srv.handlers.dispatcher, nullLogger()), nullLogger());
    try {
      const c = await AgentClient.connect(`unix://@${name}`);
      expect(await c.check()).toEqual({ status: 1 });
      c.close();
      await expect(dial(`unix://@${name}-missing`)).rejects.toBeInstanceOf(ConnectionError);
    } finally {
      await l.close();
    }
  });

  it('connects over TCP', async () => {
    const server = net.createServer((s) => serveTtrpc(s, srv.handlers.dispatcher, nullLogger()));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as net.AddressInfo;
    try {
      for (const proto of ['ttrpc'] as const) {
        const c = await AgentClient.connect(`tcp://127.0.0.1:${port}`, { proto });
        expect(await c.check()).toEqual({ status: 1 });
        c.close();
      }
    } finally {
      server.close();
    }
  });

  it('treats serial:PATH as the chardev unix socket, for both protocols', async () => {
    const p = path.join(srv.dir, 'console.sock');
    const fwd = await forwarder(p);
    try {
      for (const proto of ['ttrpc', 'grpc'] as const) {
        const c = await AgentClient.connect(`serial:${p}`, { proto });
        expect(await c.version()).toEqual({ grpc_version: '0.0.1', agent_version: 'test' });
        c.close();
      }
    } finally {
      fwd.close();
    }
  });

  it('does the Firecracker hybrid vsock handshake, then speaks ttrpc or gRPC', async () => {
    const p = path.join(srv.dir, 'fc.hvsock');
    const lines: string[] = [];
    const fwd = await forwarder(p, async (s) => {
      lines.push(await readLine(s));
      s.write('OK 1073741824\n');
      return true;
    });
    try {
      for (const proto of ['ttrpc', 'grpc'] as const) {
        const c = await AgentClient.connect(`hvsock://${p}:1024`, { proto });
        expect(await c.check()).toEqual({ status: 1 });
        c.close();
      }
      expect(lines).toEqual(['CONNECT 1024', 'CONNECT 1024']);
    } finally {
      fwd.close();
    }
  });

  it('keeps bytes that arrive with the OK line', async () => {
    const p = path.join(srv.dir, 'hv2.sock');
    const server = net.createServer(async (s) => {
      await readLine(s);
      s.write('OK 5\nEXTRA');
    });
    await new Promise<void>((r) => server.listen(p, r));
    try {
      const s = await dial(`hvsock://${p}:5`);
      const first = await new Promise<string>((resolve) => s.once('data', (c: Buffer) => resolve(c.toString())));
      expect(first).toBe('EXTRA');
      s.destroy();
    } finally {
      server.close();
    }
  });

  it('fails with ConnectionError when the hybrid vsock handshake is refused, cut or silent', async () => {
    const p = path.join(srv.dir, 'hv3.sock');
    let mode = '';
    const server = net.createServer(async (s) => {
      s.on('error', () => {});
      await readLine(s);
      if (mode === 'refuse') s.write('FAILURE\n');
      else if (mode === 'close') s.end();
      // 'silent': never answer
    });
    await new Promise<void>((r) => server.listen(p, r));
    try {
      mode = 'refuse';
      let err = await dial(`hvsock://${p}:1024`).catch((e) => e);
      expect(err).toBeInstanceOf(ConnectionError);
      expect(err.message).toContain('FAILURE');
      mode = 'close';
      err = await dial(`hvsock://${p}:1024`).catch((e) => e);
      expect(err).toBeInstanceOf(ConnectionError);
      mode = 'silent';
      err = await dial(`hvsock://${p}:1024`, { timeoutMs: 100 }).catch((e) => e);
      expect(err).toBeInstanceOf(ConnectionError);
      expect(err.message).toMatch(/timed out/);
    } finally {
      server.close();
    }
  });

  it('dials vsock:// through the installed vsock dialer', async () => {
    const seen: [number, number][] = [];
    setVsockDialer(async (cid, port) => {
      seen.push([cid, port]);
      return rawConnect(srv.path);
    });
    const c = await AgentClient.connect('vsock://3:1024', { proto: 'grpc' });
    expect(await c.check()).toEqual({ status: 1 });
    c.close();
    expect(seen).toEqual([[3, 1024]]);
    setVsockDialer(async () => {
      throw new Error('ENODEV');
    });
    const err = await dial('vsock://3:1024').catch((e) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect(err.message).toBe('connect vsock://3:1024: ENODEV');
  });

  it('reports a real AF_VSOCK connect failure as ConnectionError', async () => {
    // Nothing listens on this port of the local CID (and there is no vsock loopback here).
    const err = await dial(`vsock://1:${40000 + (process.pid % 20000)}`).catch((e) => e);
    expect(err).toBeInstanceOf(ConnectionError);
    expect(err.message).toMatch(/^connect vsock:\/\/1:\d+: /);
  }, 20_000);
});

describe('unix socket cleanup', () => {
  it('leaves no stray files in the test dir', () => {
    expect(fs.readdirSync(srv.dir)).toEqual(['agent.sock']);
  });
});
