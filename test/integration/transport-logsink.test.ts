// logSink(): a pino destination served on a listening socket (vsock log_vport
// in a VM; a unix socket here, since vsock cannot be connected on this machine).
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../agent/src/log';
import { logSink, type LogSink } from '../../agent/src/transport/logsink';

const cleanup: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

function sockPath(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-logsink-'));
  cleanup.push(() => fs.rmSync(d, { recursive: true, force: true }));
  return path.join(d, 'log.sock');
}

async function waitFor(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A host-side reader: connects and accumulates everything received. */
function reader(p: string): { sock: net.Socket; text: () => string; closed: () => boolean } {
  let text = '';
  let closed = false;
  const sock = net.connect(p);
  sock.setEncoding('utf8');
  sock.on('data', (d: string) => (text += d));
  sock.on('close', () => (closed = true));
  sock.on('error', () => {});
  cleanup.push(() => void sock.destroy());
  return { sock, text: () => text, closed: () => closed };
}

function sink(p: string, maxBuffer?: number): LogSink {
  const s = logSink(`unix://${p}`, undefined, { maxBuffer });
  cleanup.push(() => s.close());
  return s;
}

describe('logSink', () => {
  it('buffers until a reader connects, then flushes in order and streams', async () => {
    const p = sockPath();
    const s = sink(p);
    expect(await s.listening).toBe(`unix://${p}`);
    s.write('line 1\n');
    s.write(Buffer.from('line 2\n'));
    expect(s.connected).toBe(false);
    expect(s.bufferedBytes).toBe(14);
    const r = reader(p);
    await waitFor(() => r.text() === 'line 1\nline 2\n', 'buffered lines');
    expect(s.connected).toBe(true);
    expect(s.bufferedBytes).toBe(0);
    s.write('line 3\n');
    await waitFor(() => r.text().endsWith('line 3\n'), 'live line');
    expect(r.text()).toBe('line 1\nline 2\nline 3\n');
  });

  it('keeps at most maxBuffer bytes, dropping the oldest lines', async () => {
    const p = sockPath();
    const s = sink(p, 100);
    await s.listening;
    const lines = Array.from({ length: 10 }, (_, i) => `${String(i).padStart(2, '0')} ${'x'.repeat(26)}\n`); // 30 bytes each
    for (const l of lines) s.write(l);
    expect(s.bufferedBytes).toBe(90);
    expect(s.droppedBytes).toBe(210);
    // One oversized line keeps only its tail.
    s.write('y'.repeat(150));
    expect(s.bufferedBytes).toBe(100);
    const r = reader(p);
    await waitFor(() => r.text().length === 100, 'the bounded buffer');
    expect(r.text()).toBe('y'.repeat(100));
  });

  it('goes back to buffering when the reader leaves, and a newer reader replaces an older one', async () => {
    const p = sockPath();
    const s = sink(p);
    await s.listening;
    const r1 = reader(p);
    await waitFor(() => s.connected, 'reader 1');
    s.write('to r1\n');
    await waitFor(() => r1.text() === 'to r1\n', 'r1 data');
    r1.sock.destroy();
    await waitFor(() => !s.connected, 'reader 1 gone');
    s.write('while nobody reads\n');
    expect(s.bufferedBytes).toBe(19);

    const r2 = reader(p);
    await waitFor(() => r2.text() === 'while nobody reads\n', 'r2 gets the backlog');
    const r3 = reader(p);
    await waitFor(() => r2.closed(), 'r2 replaced by r3');
    s.write('to r3\n');
    await waitFor(() => r3.text() === 'to r3\n', 'r3 data');
    expect(r2.text()).toBe('while nobody reads\n');
  });

  it('works as a pino destination', async () => {
    const p = sockPath();
    const s = sink(p);
    await s.listening;
    const log = createLogger('info', s);
    log.info({ container_id: 'c1' }, 'started');
    log.debug('not at this level');
    const r = reader(p);
    await waitFor(() => r.text().endsWith('\n'), 'a JSON line');
    const rec = JSON.parse(r.text().trim());
    expect(rec).toMatchObject({ level: 'info', msg: 'started', container_id: 'c1', source: 'agent' });
  });

  it('listens on a vsock port given as a number', async () => {
    const port = 20000 + Math.floor(Math.random() * 40000);
    const s = logSink(port);
    cleanup.push(() => s.close());
    expect(await s.listening).toBe(`vsock://-1:${port}`);
    s.write('kept\n');
    expect(s.bufferedBytes).toBe(5);
  });

  it('a listen failure rejects `listening` but writes still never throw', async () => {
    const p = sockPath();
    fs.writeFileSync(p, 'not a socket');
    const s = sink(p);
    await expect(s.listening).rejects.toThrow(/not a socket/);
    expect(s.write('still fine\n')).toBe(true);
    expect(s.bufferedBytes).toBe(11);
  });
});
