// ConsoleSocket with a peer that behaves like crun/runc: connect to the
// AF_UNIX path and send an fd with SCM_RIGHTS (here the write end of a pipe,
// so the received fd can be proven to be the one sent). No root needed.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Code } from '../../agent/src/rpc/status';
import { ConsoleSocket } from '../../agent/src/runtime/console-socket';
import { close, pipe2 } from '../../agent/src/sys/misc';
import { AF_UNIX, SOCK_CLOEXEC, SOCK_STREAM, connect, sendmsg, sockaddrUn, socket } from '../../agent/src/sys/socket';

let tmp = '';
const open: ConsoleSocket[] = [];
const fds: number[] = [];

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-cs-'));
});

afterEach(async () => {
  for (const cs of open.splice(0)) await cs.close();
  for (const fd of fds.splice(0)) {
    try {
      close(fd);
    } catch {
      // closed by the test
    }
  }
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function listen(name = 'c.sock'): Promise<ConsoleSocket> {
  const cs = await ConsoleSocket.listen(path.join(tmp, 'sub', name));
  open.push(cs);
  return cs;
}

function dial(p: string): number {
  const fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC);
  fds.push(fd);
  connect(fd, sockaddrUn(p));
  return fd;
}

function newPipe(): [number, number] {
  const p = pipe2();
  fds.push(...p);
  return p;
}

/** Prove `got` refers to the pipe whose read end is `r`: write through it and read back. */
function samePipe(got: number, r: number): boolean {
  fs.writeSync(got, 'ping');
  const buf = Buffer.alloc(16);
  const n = fs.readSync(r, buf, 0, 16, null);
  return buf.subarray(0, n).toString() === 'ping';
}

const sleep = (ms: number) => new Promise((res) => setTimeout(res, ms));

describe('ConsoleSocket', () => {
  it('listens on a 0600 socket (parent created 0700) and receives an fd sent before receive()', async () => {
    const cs = await listen();
    expect(fs.lstatSync(cs.path).isSocket()).toBe(true);
    expect(fs.statSync(cs.path).mode & 0o777).toBe(0o600);
    expect(fs.statSync(path.dirname(cs.path)).mode & 0o777).toBe(0o700);
    const [r, w] = newPipe();
    const c = dial(cs.path);
    sendmsg(c, Buffer.from('/dev/ptmx'), [w]); // runc sends the pty's name as data
    await sleep(20); // the connection is queued with nobody receiving
    const got = await cs.receive(2000);
    fds.push(got);
    expect(got).not.toBe(w);
    expect(samePipe(got, r)).toBe(true);
  });

  it('receive() waiting first; the message arrives some time after connect (polled, loop not blocked)', async () => {
    const cs = await listen();
    const [r, w] = newPipe();
    const p = cs.receive(3000);
    const c = dial(cs.path);
    let ticks = 0;
    const iv = setInterval(() => ticks++, 5);
    await sleep(120);
    sendmsg(c, Buffer.from([0]), [w]); // crun sends one byte
    const got = await p;
    clearInterval(iv);
    fds.push(got);
    expect(samePipe(got, r)).toBe(true);
    expect(ticks).toBeGreaterThan(5); // timers kept running meanwhile
  });

  it('skips a peer that closes without an fd, and reads data that precedes the fd', async () => {
    const cs = await listen();
    const bad = dial(cs.path);
    close(bad);
    fds.splice(fds.indexOf(bad), 1);
    const [r, w] = newPipe();
    const c = dial(cs.path);
    sendmsg(c, Buffer.from('junk'));
    sendmsg(c, Buffer.from('x'), [w]);
    const got = await cs.receive(2000);
    fds.push(got);
    expect(samePipe(got, r)).toBe(true);
  });

  it('keeps the first fd and closes extra ones', async () => {
    const closed: number[] = [];
    const cs = await ConsoleSocket.listen(path.join(tmp, 'x.sock'), { deps: { close: (fd) => { closed.push(fd); close(fd); } } });
    open.push(cs);
    const [r1, w1] = newPipe();
    const [r2, w2] = newPipe();
    const c = dial(cs.path);
    sendmsg(c, Buffer.from('x'), [w1, w2]);
    const got = await cs.receive(2000);
    fds.push(got);
    expect(samePipe(got, r1)).toBe(true);
    expect(closed).toHaveLength(1);
    // The extra fd was closed: with w2 closed too, the second pipe reads EOF.
    close(w2);
    fds.splice(fds.indexOf(w2), 1);
    expect(fs.readSync(r2, Buffer.alloc(4), 0, 4, null)).toBe(0);
  });

  it('times out with DEADLINE_EXCEEDED, naming the last problem', async () => {
    const cs = await listen();
    const bad = dial(cs.path);
    close(bad);
    fds.splice(fds.indexOf(bad), 1);
    await expect(cs.receive(150)).rejects.toMatchObject({
      code: Code.DEADLINE_EXCEEDED,
      message: expect.stringMatching(/no terminal received within 150 ms.*closed without sending/),
    });
    // still usable afterwards
    const [r, w] = newPipe();
    sendmsg(dial(cs.path), Buffer.from('x'), [w]);
    const got = await cs.receive(2000);
    fds.push(got);
    expect(samePipe(got, r)).toBe(true);
  });

  it('one receive at a time; close() cancels a pending receive and removes the socket file', async () => {
    const cs = await listen();
    const p = cs.receive(5000);
    await expect(cs.receive(100)).rejects.toMatchObject({ code: Code.FAILED_PRECONDITION });
    await cs.close();
    await expect(p).rejects.toMatchObject({ code: Code.CANCELLED });
    expect(fs.existsSync(cs.path)).toBe(false);
    await expect(cs.receive(100)).rejects.toMatchObject({ code: Code.FAILED_PRECONDITION });
    await cs.close(); // idempotent
  });

  it('replaces a stale socket file but refuses to clobber a regular file', async () => {
    const p = path.join(tmp, 'sub', 's.sock');
    const a = await ConsoleSocket.listen(p);
    // simulate a crash: the file stays behind
    fs.linkSync(p, path.join(tmp, 'keep'));
    await a.close();
    fs.renameSync(path.join(tmp, 'keep'), p);
    const b = await ConsoleSocket.listen(p);
    open.push(b);
    const f = path.join(tmp, 'regular');
    fs.writeFileSync(f, 'data');
    await expect(ConsoleSocket.listen(f)).rejects.toMatchObject({ code: Code.INTERNAL });
    expect(fs.readFileSync(f, 'utf8')).toBe('data');
  });
});
