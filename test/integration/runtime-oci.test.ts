// The OCI runtime adapter against the real crun and runc (root). The
// scenarios run in a bundled fixture that is PID 1 of `unshare -pfm
// --mount-proc` (so container inits and detached execs are reparented to it,
// like to the agent in the guest), inside a mount namespace where
// /sys/fs/cgroup/unified is unmounted so that crun accepts the v1 hierarchy.
// Each runtime's whole suite runs in one fixture process; the tests below
// assert on its observations.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '../../agent/src/rpc/status';
import { bundleEntry } from '../helpers/bundle';

const pexec = promisify(execFile);
const isRoot = process.getuid?.() === 0;

function findBinary(name: string): string | undefined {
  for (const dir of ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
    const p = path.join(dir, name);
    if (fs.existsSync(p)) return p;
  }
  return undefined;
}

type Obs = Record<string, any>;

const RUNTIMES = ['crun', 'runc'] as const;

for (const runtime of RUNTIMES) {
  const binary = findBinary(runtime);
  describe.skipIf(!isRoot || binary === undefined)(`OCI runtime adapter with ${runtime} (root)`, () => {
    let r: Obs = {};
    let work = '';
    const cgroupParent = `gk-rt-test-${runtime}-${process.pid}`;

    beforeAll(async () => {
      const fixture = await bundleEntry('test/integration/fixtures/runtime-scenarios.ts');
      work = fs.mkdtempSync(path.join(os.tmpdir(), `gk-rt-${runtime}-`));
      // The runtime is named by its bare name: the adapter resolves it in the
      // runtime's PATH, as the agent does for agent.oci_runtime=crun.
      const params = JSON.stringify({ runtime, work, cgroupParent });
      const script = 'umount /sys/fs/cgroup/unified 2>/dev/null; exec unshare -pfm --mount-proc "$0" "$1" "$2"';
      const { stdout, stderr } = await pexec('unshare', ['-m', 'sh', '-c', script, process.execPath, fixture, params], {
        timeout: 120_000,
        maxBuffer: 16 * 1024 * 1024,
      });
      const line = stdout.trim().split('\n').at(-1) ?? '';
      try {
        r = JSON.parse(line) as Obs;
      } catch {
        throw new Error(`fixture output is not JSON:\n${stdout}\n${stderr}`);
      }
      if (r.fatal) throw new Error(`fixture failed: ${JSON.stringify(r.fatal)}`);
    }, 180_000);

    afterAll(() => {
      if (work) fs.rmSync(work, { recursive: true, force: true });
    });

    it('runs as PID 1 of its namespace', () => {
      expect(r.fixturePid).toBe(1);
    });

    it(`${runtime} runs from a sealed in-memory copy of its binary (every scenario below goes through it)`, () => {
      expect(r.executable).toMatch(/^\/proc\/1\/fd\/\d+$/);
    });

    it('create + start `echo hi`: output on the stdout pipe, exit 0 via the reaper, init reparented to PID 1', () => {
      const o = r.echo;
      expect(o.error).toBeUndefined();
      expect(o.ppid).toBe(1); // the runtime exited: the init is our orphan
      expect(o.stateCreated).toMatchObject({ id: 'echo', status: 'created', pid: o.pid });
      expect(o.stateCreated.bundle).toBe(path.join(work, 'bundles', 'echo'));
      expect(o.output).toBe('hi\n');
      expect(o.code).toBe(0);
      expect(o.stateAfter).toBe('stopped');
      expect(o.afterDelete.code).toBe(Code.NOT_FOUND);
    });

    it('create then delete without start kills the init and forgets the container', () => {
      const o = r.createDelete;
      expect(o.error).toBeUndefined();
      expect(o.stateCreated).toBe('created');
      expect(o.signal).toBe(9);
      expect(o.afterDelete.code).toBe(Code.NOT_FOUND);
    });

    it("exec `sh -c 'exit 3'` in a running container exits 3; exec stdio goes to the given fds; ps lists the init", () => {
      const o = r.exec;
      expect(o.error).toBeUndefined();
      expect(o.code).toBe(3);
      expect(o.code2).toBe(0);
      expect(o.output).toBe('out-42\nerr\n');
      expect(o.ps).toEqual([o.initPid]);
      expect(o.initSignal).toBe(9);
      expect(o.execStopped.code).toBe(Code.FAILED_PRECONDITION);
      expect(o.execStopped.message).toMatch(/not running|stopped container/);
    });

    it('kill SIGTERM ends the container with 143; state goes running -> stopped', () => {
      const o = r.killTerm;
      expect(o.error).toBeUndefined();
      expect(o.running).toBe('running');
      expect(o.code).toBe(143);
      expect(o.signal).toBe(15);
      expect(o.stopped).toBe('stopped');
      expect(o.killStopped.code).toBe(Code.FAILED_PRECONDITION);
    });

    it('kill --all reaches every process of the container', () => {
      const o = r.killAll;
      expect(o.error).toBeUndefined();
      expect(o.psCount).toBe(3);
      expect(o.initSignal).toBe(9);
      expect(o.otherSignals).toEqual([9, 9]);
    });

    it('pause freezes the container, resume thaws it', () => {
      const o = r.pauseResume;
      expect(o.error).toBeUndefined();
      expect(o.ticksRunning).toBeGreaterThan(0);
      expect(o.paused).toBe('paused');
      expect(o.ticksWhilePaused).toBe(0);
      expect(o.resumed).toBe('running');
      expect(o.ticksAfterResume).toBeGreaterThan(0);
    });

    it("a failing create (bad rootfs path) rejects with the runtime's error text", () => {
      const o = r.badRootfs;
      expect(o.err).not.toBeNull();
      expect(o.err.name).toBe('RuntimeError');
      expect(o.err.code).toBe(Code.INTERNAL);
      expect(o.err.message).toContain(`${runtime} create bad-rootfs failed`);
      expect(o.err.message).toContain('/nonexistent-rootfs');
      expect(o.err.message).toMatch(/no such file or directory/i);
      expect(o.err.detail).toContain('/nonexistent-rootfs');
      // Runtimes also print the error on their stderr, which is the container's.
      expect(o.containerStderr).toContain('/nonexistent-rootfs');
      expect(o.stateAfter.code).toBe(Code.NOT_FOUND);
    });

    it('unknown containers are NOT_FOUND; ids that look like options are refused', () => {
      const o = r.notFound;
      expect(o.error).toBeUndefined();
      for (const k of ['state', 'delete', 'kill', 'start']) {
        expect(o[k]?.code, k).toBe(Code.NOT_FOUND);
        expect(o[k]?.message, k).toMatch(/no-such-container/);
      }
      expect(o.badId.code).toBe(Code.INVALID_ARGUMENT);
    });

    it('terminal: the console socket receives the pty master; `echo $((6*7))` yields 42; exec with a tty too', () => {
      const o = r.terminal;
      expect(o.error).toBeUndefined();
      expect(o.got42).toBe(true);
      expect(o.code).toBe(7);
      expect(o.execCode).toBe(0);
      expect(o.execScreen).toMatch(/\/dev\/pts\/\d+/);
    });

    it('--no-pivot: the container runs, and the init enters its root with chroot instead of pivot_root', () => {
      const o = r.noPivot;
      expect(o.error).toBeUndefined();
      expect(o.outputs).toEqual({ pivot: 'pivot-ok', nopivot: 'pivot-ok' });
      expect(o.codes).toEqual({ pivot: 0, nopivot: 0 });
      if (o.traced === null) return; // no strace on this machine
      expect(o.traced['trace-pivot']).toMatchObject({ code: 0, chroot: 0 });
      expect(o.traced['trace-pivot'].pivotRoot).toBeGreaterThan(0);
      expect(o.traced['trace-nopivot']).toMatchObject({ code: 0, pivotRoot: 0 });
      expect(o.traced['trace-nopivot'].chroot).toBeGreaterThan(0);
    });

    it('update applies a resources file (pids.limit -> pids.max)', () => {
      const o = r.update;
      expect(o.error).toBeUndefined();
      expect(o.pidsMax).toBe('42');
    });

    it('removeBundle refuses while the rootfs is mounted and leaves it intact', () => {
      const o = r.bundleMounted;
      expect(o.error).toBeUndefined();
      expect(o.refused?.code).toBe(Code.FAILED_PRECONDITION);
      expect(o.refused?.message).toMatch(/still mounted: .*\/mounted\/rootfs/);
      expect(o.intact).toBe(true);
      expect(o.removed).toBe(true);
    });

    it('leaves no cgroup behind', () => {
      const left = fs.readdirSync('/sys/fs/cgroup').filter((c) => fs.existsSync(path.join('/sys/fs/cgroup', c, cgroupParent)));
      expect(left).toEqual([]);
    });
  });
}
