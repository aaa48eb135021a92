// The sealed in-memory copy of the OCI runtime binary: real memfds and real processes
// spawned from /proc/<pid>/fd/<fd> (no root needed), the copy's failure paths with fakes,
// and CliRuntime's use of it (and its fallback to the binary's path). This file must not use
// node:child_process: the Reaper's waitpid(-1) would steal its children.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nullLogger, type Logger } from '../../agent/src/log';
import { Reaper } from '../../agent/src/proc/reaper';
import { run } from '../../agent/src/proc/run';
import { Spawner, type SpawnOptions } from '../../agent/src/proc/spawner';
import { CliRuntime } from '../../agent/src/runtime/oci-runtime';
import { RUNTIME_SEALS, realSealedBinaryDeps, sealBinary, type SealedBinaryDeps } from '../../agent/src/runtime/sealed-binary';
import { getSeals } from '../../agent/src/sys/fs';
import { SysError } from '../../agent/src/sys/libc';

const reaper = new Reaper();
const spawner = new Spawner(reaper);
const BUSYBOX = ['/bin/busybox', '/usr/bin/busybox'].find((p) => fs.existsSync(p));
const CRUN = ['/usr/bin/crun', '/usr/local/bin/crun'].find((p) => fs.existsSync(p));

beforeAll(() => reaper.start());
afterAll(() => reaper.stop());

describe('sealBinary (real memfd)', () => {
  it.skipIf(!BUSYBOX)('copies the binary into a memfd sealed against write, shrink and grow; it runs from /proc/<pid>/fd/<fd>', async () => {
    const s = sealBinary(BUSYBOX!, 'busybox');
    try {
      expect(s.execPath).toBe(`/proc/${process.pid}/fd/${s.fd}`);
      expect(s.bytes).toBe(fs.statSync(BUSYBOX!).size);
      expect(getSeals(s.fd) & RUNTIME_SEALS).toBe(RUNTIME_SEALS);
      expect(fs.readFileSync(s.execPath).equals(fs.readFileSync(BUSYBOX!))).toBe(true);
      // Sealed: nothing can write to it, not even root through the fd.
      expect(() => fs.writeSync(s.fd, Buffer.from('x'), 0, 1, 0)).toThrow(/EPERM/);
      expect(() => fs.ftruncateSync(s.fd, 10)).toThrow(/EPERM/);
      // The child runs from the memfd: its /proc/self/exe is the memfd, not the file.
      const r = await run(spawner, s.execPath, ['readlink', '/proc/self/exe'], { argv0: 'busybox' });
      expect(r.code).toBe(0);
      expect(r.stdout.trim()).toBe('/memfd:busybox (deleted)');
    } finally {
      fs.closeSync(s.fd);
    }
  });

  it.skipIf(!CRUN)('crun runs from its sealed copy (argv[0] stays "crun")', async () => {
    const s = sealBinary(CRUN!, 'crun');
    try {
      const r = await run(spawner, s.execPath, ['--version'], { argv0: 'crun' });
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^crun version \d/);
    } finally {
      fs.closeSync(s.fd);
    }
  });

  it('a missing binary: the error of reading it, and no memfd is made', () => {
    let made = 0;
    const deps: SealedBinaryDeps = { ...realSealedBinaryDeps, memfdCreate: (n, f) => (made++, realSealedBinaryDeps.memfdCreate(n, f)) };
    expect(() => sealBinary('/nonexistent/crun', 'crun', deps)).toThrow(/ENOENT/);
    expect(made).toBe(0);
  });

  function fakeDeps(over: Partial<SealedBinaryDeps> = {}): SealedBinaryDeps & { closed: number[]; written: number[]; sealed: number[] } {
    const d = {
      closed: [] as number[],
      written: [] as number[],
      sealed: [] as number[],
      readFile: () => Buffer.alloc(10_000, 1),
      memfdCreate: () => 42,
      // a short write every time: the copy loops until everything is written
      write: (_fd: number, buf: Buffer, off: number) => {
        const n = Math.min(4096, buf.length - off);
        d.written.push(n);
        return n;
      },
      addSeals: (_fd: number, seals: number) => void d.sealed.push(seals),
      getSeals: () => RUNTIME_SEALS,
      close: (fd: number) => void d.closed.push(fd),
      pid: 1,
      ...over,
    };
    return d;
  }

  it('short writes are continued; the result names /proc/<agent pid>/fd/<fd>', () => {
    const d = fakeDeps();
    expect(sealBinary('/usr/bin/crun', 'crun', d)).toEqual({ fd: 42, execPath: '/proc/1/fd/42', bytes: 10_000 });
    expect(d.written).toEqual([4096, 4096, 1808]);
    expect(d.sealed).toEqual([RUNTIME_SEALS]);
    expect(d.closed).toEqual([]);
  });

  it('a failure after the memfd exists closes it: write error, seals refused, seals missing, empty file', () => {
    for (const over of [
      { write: () => 0 },
      { addSeals: () => {
          throw new SysError('fcntl', os.constants.errno.EINVAL);
        } },
      { getSeals: () => RUNTIME_SEALS & ~0x8 },
    ] as Partial<SealedBinaryDeps>[]) {
      const d = fakeDeps(over);
      expect(() => sealBinary('/usr/bin/crun', 'crun', d)).toThrow();
      expect(d.closed).toEqual([42]);
    }
    const empty = fakeDeps({ readFile: () => Buffer.alloc(0) });
    expect(() => sealBinary('/usr/bin/crun', 'crun', empty)).toThrow(/empty/);
    expect(empty.closed).toEqual([]);
  });
});

describe('CliRuntime with sealedCopy', () => {
  const dirs: string[] = [];
  afterAll(() => {
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  function setup(sealedCopy: ConstructorParameters<typeof CliRuntime>[1]['sealedCopy'], spawnErrors: Map<string, number> = new Map()) {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-sealed-'));
    dirs.push(tmp);
    const calls: SpawnOptions[] = [];
    const warnings: string[] = [];
    const infos: string[] = [];
    const log = { ...nullLogger(), warn: (_o: unknown, m: string) => void warnings.push(m), info: (_o: unknown, m: string) => void infos.push(m) } as unknown as Logger;
    const fakeSpawner = {
      spawn(o: SpawnOptions) {
        calls.push(o);
        const errno = spawnErrors.get(o.file);
        if (errno !== undefined) throw new SysError('posix_spawn', errno, o.file);
        return { pid: 77, exited: Promise.resolve({ pid: 77, code: 0, raw: 0 }) };
      },
    };
    const rt = new CliRuntime('crun', { root: path.join(tmp, 'state'), logDir: path.join(tmp, 'log'), spawner: fakeSpawner, log, sealedCopy });
    return { rt, calls, warnings, infos };
  }

  // 'crun' must resolve in PATH for the copy to be attempted.
  it.skipIf(!CRUN)('made once, at the first call; every call then executes it with argv[0] = the binary', async () => {
    let made = 0;
    const { rt, calls, infos } = setup((binary, name) => {
      made++;
      expect(binary).toMatch(/^\/.*\/crun$/); // resolved in PATH
      expect(name).toBe('crun');
      return { fd: 9, execPath: '/proc/1/fd/9', bytes: 1 };
    });
    expect(made).toBe(0);
    await rt.start('c1');
    await rt.kill('c1', 15);
    expect(made).toBe(1);
    expect(calls.map((c) => [c.file, c.args[0]])).toEqual([
      ['/proc/1/fd/9', 'crun'],
      ['/proc/1/fd/9', 'crun'],
    ]);
    expect(infos).toContain('runtime runs from a sealed in-memory copy');
  });

  it('a copy that cannot be made: one warning, the binary path from then on', async () => {
    let tries = 0;
    const { rt, calls, warnings } = setup(() => {
      tries++;
      throw new Error('memfd_create: ENOSYS');
    });
    await rt.start('c1');
    await rt.start('c2');
    expect(tries).toBe(1);
    expect(calls.map((c) => c.file)).toEqual(['crun', 'crun']);
    expect(warnings).toEqual(['cannot make a sealed copy of the runtime; running it from its path']);
  });

  // 'crun' must resolve in PATH for the copy to be attempted.
  it.skipIf(!CRUN)('a copy that cannot be executed (ENOEXEC, EACCES...): the same call retried from the path, and the copy dropped', async () => {
    const { rt, calls, warnings } = setup(() => ({ fd: 1_000_000, execPath: '/proc/1/fd/1000000', bytes: 1 }), new Map([['/proc/1/fd/1000000', os.constants.errno.ENOEXEC]]));
    await rt.start('c1');
    await rt.start('c2');
    expect(calls.map((c) => c.file)).toEqual(['/proc/1/fd/1000000', 'crun', 'crun']);
    expect(warnings).toEqual(['cannot execute the sealed copy of the runtime; running it from its path']);
  });

  // 'crun' must resolve in PATH for the copy to be attempted.
  it.skipIf(!CRUN)('a spawn error that is not about executing the copy (EBADF) is not retried and keeps the copy', async () => {
    const errs = new Map([['/proc/1/fd/9', os.constants.errno.EBADF]]);
    const { rt, calls } = setup(() => ({ fd: 9, execPath: '/proc/1/fd/9', bytes: 1 }), errs);
    await expect(rt.start('c1')).rejects.toThrow(/cannot start crun.*EBADF/);
    errs.clear();
    await rt.start('c2');
    expect(calls.map((c) => c.file)).toEqual(['/proc/1/fd/9', '/proc/1/fd/9']);
  });

  it('off by default', async () => {
    const { rt, calls } = setup(undefined);
    await rt.start('c1');
    expect(calls.map((c) => c.file)).toEqual(['crun']);
  });
});
