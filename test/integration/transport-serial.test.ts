// The virtio-serial session loop with stand-in devices: a pty slave (whose
// reads return EOF when the master side hangs up, as a virtio-serial port does
// when the host goes away) found through a fake sysfs tree, and a FIFO.
import { execFileSync, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { nullLogger } from '../../agent/src/log';
import { listen } from '../../agent/src/transport/listen';
import { sniff } from '../../agent/src/transport/sniff';
import type { ConnectionInfo, Listener } from '../../agent/src/transport/types';

const log = nullLogger();
const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

function tmpdir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-serial-'));
  cleanup.push(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

async function waitFor(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

interface Session {
  sock: net.Socket;
  info: ConnectionInfo;
  data: string;
  closed: boolean;
}

function recorder(sessions: Session[], onData?: (s: Session) => void) {
  return (sock: net.Socket, info: ConnectionInfo): void => {
    const s: Session = { sock, info, data: '', closed: false };
    sessions.push(s);
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      s.data += d;
      onData?.(s);
    });
    sock.on('close', () => (s.closed = true));
  };
}

// The "host": owns pty masters; symlinks the current slave at a device path.
const HOST_PY = `
import os, pty, sys, tty
m = None
for line in sys.stdin:
    cmd, _, arg = line.rstrip('\\n').partition(' ')
    if cmd == 'new':
        m, s = pty.openpty()
        tty.setraw(s)
        tmp = arg + '.tmp'
        os.symlink(os.ttyname(s), tmp)
        os.rename(tmp, arg)
        os.close(s)
    elif cmd == 'write':
        os.write(m, arg.encode())
    elif cmd == 'read':
        sys.stdout.write(os.read(m, int(arg)).decode() + '\\n')
    elif cmd == 'hangup':
        os.close(m)
        m = None
    sys.stdout.write('ok\\n')
    sys.stdout.flush()
`;

class Host {
  private lines: string[] = [];
  private proc: ChildProcessWithoutNullStreams;
  constructor() {
    this.proc = spawn('python3', ['-u', '-c', HOST_PY]);
    this.proc.stdout.setEncoding('utf8');
    let buf = '';
    this.proc.stdout.on('data', (d: string) => {
      buf += d;
      const parts = buf.split('\n');
      buf = parts.pop()!;
      this.lines.push(...parts);
    });
    this.proc.stderr.pipe(process.stderr);
  }
  async cmd(c: string): Promise<string[]> {
    this.proc.stdin.write(`${c}\n`);
    const out: string[] = [];
    for (;;) {
      await waitFor(() => this.lines.length > 0, `host reply to ${c}`);
      const l = this.lines.shift()!;
      if (l === 'ok') return out;
      out.push(l);
    }
  }
  stop(): void {
    this.proc.kill();
  }
}

describe('virtio-serial session loop', () => {
  it('pty stand-in: session on first data, EOF when the host hangs up, reopen for the next host', async () => {
    const dir = tmpdir();
    const sysfs = path.join(dir, 'sys');
    const dev = path.join(dir, 'dev');
    fs.mkdirSync(path.join(sysfs, 'vport9p1'), { recursive: true });
    fs.mkdirSync(dev);
    fs.writeFileSync(path.join(sysfs, 'vport9p1', 'name'), 'agent.channel.0\n');
    const host = new Host();
    cleanup.push(() => host.stop());
    await host.cmd(`new ${path.join(dev, 'vport9p1')}`);

    const sessions: Session[] = [];
    const l: Listener = await listen(
      'serial',
      recorder(sessions, (s) => {
        if (s.data === 'hello') s.sock.write('ack');
        if (s.data.endsWith('bye')) s.sock.end('ciao'); // the consumer ends the session
      }),
      log,
      { serial: { sysfsRoot: sysfs, devDir: dev, reopenDelayMs: 20, maxRetryDelayMs: 100 } },
    );
    cleanup.push(() => l.close());
    expect(l.address).toBe('serial:agent.channel.0');

    // A silent host starts no session.
    await new Promise((r) => setTimeout(r, 100));
    expect(sessions).toHaveLength(0);

    await host.cmd('write hello');
    await waitFor(() => sessions.length === 1 && sessions[0]!.data === 'hello', 'session 1 data');
    expect(sessions[0]!.info).toEqual({ transport: 'serial', peer: 'serial:agent.channel.0' });
    expect(await host.cmd('read 3')).toEqual(['ack']);

    // The consumer ends the session (end()): the port is closed and reopened.
    await host.cmd('write bye');
    await waitFor(() => sessions[0]!.closed, 'session 1 ended by the consumer');
    expect(await host.cmd('read 4')).toEqual(['ciao']);
    await host.cmd('write next');
    await waitFor(() => sessions.length === 2 && sessions[1]!.data === 'next', 'session 2 on the same device');

    // Host goes away: the port reads EOF, the session socket closes.
    await host.cmd('hangup');
    await waitFor(() => sessions[1]!.closed, 'session 2 closed');

    // The device is gone for a while (open fails), then a new host appears.
    await new Promise((r) => setTimeout(r, 150));
    await host.cmd(`new ${path.join(dev, 'vport9p1')}`);
    await host.cmd('write second');
    await waitFor(() => sessions.length === 3 && sessions[2]!.data === 'second', 'session 3 data');
    expect(sessions[2]!.closed).toBe(false);

    await l.close();
    expect(sessions[2]!.closed).toBe(true);
    // Closed for good: a host writing now starts nothing.
    await host.cmd('write late');
    await new Promise((r) => setTimeout(r, 150));
    expect(sessions).toHaveLength(3);
  });

  it('FIFO stand-in: when the consumer ends a session the port is reopened for the next one', async () => {
    const fifo = path.join(tmpdir(), 'vport0p1');
    execFileSync('mkfifo', [fifo]);
    // The "host" end: O_RDWR so neither side blocks on open; it never reads.
    const hostFd = fs.openSync(fifo, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
    cleanup.push(() => fs.closeSync(hostFd));

    const sessions: Session[] = [];
    const l = await listen(
      'serial:agent.channel.0',
      recorder(sessions, (s) => {
        if (s.data.endsWith('.')) s.sock.destroy(); // the protocol layer ends the session
      }),
      log,
      { serial: { device: fifo, reopenDelayMs: 20 } },
    );
    cleanup.push(() => l.close());

    fs.writeSync(hostFd, 'first.');
    await waitFor(() => sessions.length === 1 && sessions[0]!.closed, 'session 1 over');
    expect(sessions[0]!.data).toBe('first.');

    fs.writeSync(hostFd, 'second.');
    await waitFor(() => sessions.length === 2 && sessions[1]!.closed, 'session 2 over');
    expect(sessions[1]!.data).toBe('second.');

    fs.writeSync(hostFd, 'third');
    await waitFor(() => sessions.length === 3 && sessions[2]!.data === 'third', 'session 3 data');
    await l.close();
    await waitFor(() => sessions[2]!.closed, 'session 3 closed by close()');
  });

  it('sniff() on a serial session sees the first bytes that started it', async () => {
    const fifo = path.join(tmpdir(), 'vport0p1');
    execFileSync('mkfifo', [fifo]);
    const hostFd = fs.openSync(fifo, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
    cleanup.push(() => fs.closeSync(hostFd));
    const got: { proto: string; data: Buffer }[] = [];
    const l = await listen(
      'serial',
      (sock) =>
        void sniff(sock, {
          onGrpc: (s) => {
            got.push({ proto: 'grpc', data: Buffer.alloc(0) });
            s.destroy();
          },
          onTtrpc: (s) => {
            const rec = { proto: 'ttrpc', data: Buffer.alloc(0) };
            got.push(rec);
            s.on('data', (d: Buffer) => (rec.data = Buffer.concat([rec.data, d])));
          },
        }),
      log,
      { serial: { device: fifo } },
    );
    cleanup.push(() => l.close());
    const frame = Buffer.from([0, 0, 0, 2, 0, 0, 0, 1, 1, 0, 8, 1]);
    fs.writeSync(hostFd, frame);
    await waitFor(() => got.length === 1 && got[0]!.data.length >= frame.length, 'ttrpc bytes');
    expect(got[0]!.proto).toBe('ttrpc');
    expect(got[0]!.data).toEqual(frame);
  });

  it('a device that cannot be opened is retried until it appears', async () => {
    const dir = tmpdir();
    const fifo = path.join(dir, 'late-port');
    const sessions: Session[] = [];
    const l = await listen('serial', recorder(sessions), log, {
      serial: { device: fifo, reopenDelayMs: 10, maxRetryDelayMs: 50 },
    });
    cleanup.push(() => l.close());
    await new Promise((r) => setTimeout(r, 100)); // several failed opens (ENOENT)
    execFileSync('mkfifo', [fifo]);
    const hostFd = fs.openSync(fifo, fs.constants.O_RDWR | fs.constants.O_NONBLOCK);
    cleanup.push(() => fs.closeSync(hostFd));
    fs.writeSync(hostFd, 'finally');
    await waitFor(() => sessions.length === 1 && sessions[0]!.data === 'finally', 'session after retries');
  });
});
