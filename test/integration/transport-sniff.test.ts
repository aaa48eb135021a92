// sniff() over real unix sockets: ttrpc vs gRPC detection, bytes put back
// intact, split prefaces, silent clients, and real HTTP/2 + grpc-js servers
// taking over a sniffed socket.
import * as grpc from '@grpc/grpc-js';
import fs from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { nullLogger } from '../../agent/src/log';
import { listen, type Listener } from '../../agent/src/transport/listen';
import { HTTP2_PREFACE, sniff, type SniffOutcome } from '../../agent/src/transport/sniff';

const log = nullLogger();
const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

function sockPath(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-sniff-'));
  cleanup.push(() => fs.rmSync(d, { recursive: true, force: true }));
  return path.join(d, 'agent.sock');
}

type Branch = { proto: 'ttrpc' | 'grpc'; sock: net.Socket };

/** A listener whose connections go through sniff(); resolves branches and outcomes as they happen. */
async function sniffServer(opts: { timeoutMs?: number } = {}) {
  const p = sockPath();
  const branches: Branch[] = [];
  const outcomes: SniffOutcome[] = [];
  const waiters: (() => void)[] = [];
  const notify = (): void => waiters.splice(0).forEach((w) => w());
  const l: Listener = await listen(
    `unix://${p}`,
    (sock) => {
      void sniff(
        sock,
        {
          onTtrpc: (s) => {
            branches.push({ proto: 'ttrpc', sock: s });
            notify();
          },
          onGrpc: (s) => {
            branches.push({ proto: 'grpc', sock: s });
            notify();
          },
        },
        { timeoutMs: opts.timeoutMs, log },
      ).then((o) => {
        outcomes.push(o);
        notify();
      });
    },
    log,
  );
  cleanup.push(() => l.close());
  const until = async (cond: () => boolean): Promise<void> => {
    while (!cond()) await new Promise<void>((r) => waiters.push(r));
  };
  return { path: p, branches, outcomes, until };
}

function connect(p: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const c = net.connect(p, () => resolve(c));
    c.once('error', reject);
  });
}

/** Collect exactly n bytes from a handed-over socket via 'data'. */
function readBytes(s: net.Socket, n: number): Promise<Buffer> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    let got = 0;
    const onData = (d: Buffer): void => {
      parts.push(d);
      got += d.length;
      if (got >= n) {
        s.off('data', onData);
        resolve(Buffer.concat(parts));
      }
    };
    s.on('data', onData);
  });
}

async function writeBytewise(c: net.Socket, b: Buffer): Promise<void> {
  for (const byte of b) {
    c.write(Buffer.from([byte]));
    await new Promise((r) => setTimeout(r, 2));
  }
}

// A ttrpc request header: length 5, stream 1, type 1 (request), flags 0, then a payload.
const TTRPC = Buffer.from([0, 0, 0, 5, 0, 0, 0, 1, 1, 0, 10, 3, 97, 98, 99]);

describe('sniff over a unix socket', () => {
  it('ttrpc: a first byte other than P decides at once; the consumer reads the stream from byte 0', async () => {
    const srv = await sniffServer();
    const c = await connect(srv.path);
    c.write(TTRPC);
    await srv.until(() => srv.branches.length === 1);
    expect(srv.branches[0]!.proto).toBe('ttrpc');
    expect(srv.outcomes).toEqual(['ttrpc']);
    expect(await readBytes(srv.branches[0]!.sock, TTRPC.length)).toEqual(TTRPC);
    // And the stream keeps flowing after the sniffed bytes, both ways.
    const more = readBytes(srv.branches[0]!.sock, 3);
    c.write('xyz');
    expect((await more).toString()).toBe('xyz');
    const back = new Promise<string>((r) => c.once('data', (d) => r(d.toString())));
    srv.branches[0]!.sock.write('reply');
    expect(await back).toBe('reply');
    c.destroy();
  });

  it('gRPC: the preface split into 1-byte writes is recognised and handed over whole', async () => {
    const srv = await sniffServer();
    const c = await connect(srv.path);
    const settings = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]); // an empty SETTINGS frame
    await writeBytewise(c, HTTP2_PREFACE.subarray(0, 23));
    expect(srv.branches).toHaveLength(0); // 23 matching bytes are not enough to decide
    c.write(Buffer.concat([HTTP2_PREFACE.subarray(23), settings]));
    await srv.until(() => srv.branches.length === 1);
    expect(srv.branches[0]!.proto).toBe('grpc');
    const all = await readBytes(srv.branches[0]!.sock, 24 + settings.length);
    expect(all).toEqual(Buffer.concat([HTTP2_PREFACE, settings]));
    c.destroy();
  });

  it("a 'P'-starting stream that diverges from the preface is ttrpc, bytes intact", async () => {
    const srv = await sniffServer();
    const c = await connect(srv.path);
    const stream = Buffer.concat([Buffer.from('PRI * HTTP/1.1'), TTRPC]);
    await writeBytewise(c, stream.subarray(0, 3)); // "PRI": still undecided
    expect(srv.branches).toHaveLength(0);
    await writeBytewise(c, stream.subarray(3, 11)); // " * HTTP/" still matches
    expect(srv.branches).toHaveLength(0);
    c.write(stream.subarray(11)); // "1" diverges from "2"
    await srv.until(() => srv.branches.length === 1);
    expect(srv.branches[0]!.proto).toBe('ttrpc');
    expect(await readBytes(srv.branches[0]!.sock, stream.length)).toEqual(stream);
    c.destroy();
  });

  it('a consumer that attaches its reader later (after other I/O) loses nothing', async () => {
    const srv = await sniffServer();
    const c = await connect(srv.path);
    c.write(TTRPC);
    await srv.until(() => srv.branches.length === 1);
    c.write('tail');
    await new Promise((r) => setTimeout(r, 30));
    expect(await readBytes(srv.branches[0]!.sock, TTRPC.length + 4)).toEqual(Buffer.concat([TTRPC, Buffer.from('tail')]));
    c.destroy();
  });

  it('a silent client is closed after the timeout', async () => {
    const srv = await sniffServer({ timeoutMs: 100 });
    const c = await connect(srv.path);
    const closed = new Promise<void>((r) => c.once('close', () => r()));
    c.write('PRI * '); // a matching but incomplete preface, then silence
    await srv.until(() => srv.outcomes.length === 1);
    expect(srv.outcomes).toEqual(['timeout']);
    expect(srv.branches).toHaveLength(0);
    await closed;
  });

  it('a client that hangs up mid-preface is dropped without a handler call', async () => {
    const srv = await sniffServer();
    const c = await connect(srv.path);
    c.end('PRI');
    await srv.until(() => srv.outcomes.length === 1);
    expect(srv.outcomes).toEqual(['closed']);
    expect(srv.branches).toHaveLength(0);
  });

  it('bytes that arrive with EOF right behind them are still handed over', async () => {
    const srv = await sniffServer();
    const c = await connect(srv.path);
    c.end(TTRPC);
    await srv.until(() => srv.branches.length === 1);
    expect(await readBytes(srv.branches[0]!.sock, TTRPC.length)).toEqual(TTRPC);
  });
});

describe('protocol servers take over sniffed sockets', () => {
  it('node:http2 serves a request on a sniffed socket while ttrpc bytes go elsewhere', async () => {
    const h2 = http2.createServer();
    h2.on('stream', (stream, headers) => {
      stream.respond({ ':status': 200 });
      stream.end(`hello ${headers[':path']}`);
    });
    const p = sockPath();
    const ttrpcSeen: Buffer[] = [];
    const l = await listen(
      `unix://${p}`,
      (sock) =>
        void sniff(sock, {
          onGrpc: (s) => h2.emit('connection', s),
          onTtrpc: (s) => s.on('data', (d) => ttrpcSeen.push(d)),
        }),
      log,
    );
    cleanup.push(() => l.close());

    const client = http2.connect('http://agent', { createConnection: () => net.connect(p) });
    cleanup.push(() => void client.destroy());
    const body = await new Promise<string>((resolve, reject) => {
      const req = client.request({ ':path': '/grpc.Health/Check' });
      let s = '';
      req.setEncoding('utf8');
      req.on('data', (d: string) => (s += d));
      req.on('end', () => resolve(s));
      req.on('error', reject);
      req.end();
    });
    expect(body).toBe('hello /grpc.Health/Check');

    const t = await connect(p);
    t.write(TTRPC);
    while (Buffer.concat(ttrpcSeen).length < TTRPC.length) await new Promise((r) => setTimeout(r, 5));
    expect(Buffer.concat(ttrpcSeen)).toEqual(TTRPC);
    t.destroy();
  });

  it('grpc-js (connection injector) answers a unary call on a sniffed socket', async () => {
    const passthrough = {
      path: '/test.Echo/Say',
      requestStream: false,
      responseStream: false,
      requestSerialize: (b: Buffer) => b,
      requestDeserialize: (b: Buffer) => b,
      responseSerialize: (b: Buffer) => b,
      responseDeserialize: (b: Buffer) => b,
    };
    const server = new grpc.Server();
    server.addService({ Say: passthrough } as grpc.ServiceDefinition, {
      Say: (call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) =>
        cb(null, Buffer.concat([Buffer.from('echo:'), call.request])),
    });
    const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
    cleanup.push(() => void server.forceShutdown());
    const p = sockPath();
    const l = await listen(
      `unix://${p}`,
      (sock) =>
        void sniff(sock, {
          onGrpc: (s) => injector.injectConnection(s),
          onTtrpc: (s) => s.destroy(),
        }),
      log,
    );
    cleanup.push(() => l.close());
    const Client = grpc.makeGenericClientConstructor({ Say: passthrough } as grpc.ServiceDefinition, 'Echo');
    const client = new Client(`unix://${p}`, grpc.credentials.createInsecure());
    cleanup.push(() => client.close());
    const reply = await new Promise<Buffer>((resolve, reject) => {
      (client as unknown as { Say(req: Buffer, cb: (e: Error | null, r?: Buffer) => void): void }).Say(
        Buffer.from('hi'),
        (e, r) => (e ? reject(e) : resolve(r!)),
      );
    });
    expect(reply.toString()).toBe('echo:hi');
  });
});
