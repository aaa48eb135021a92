// The cgroups module on this machine's real cgroup v1 hierarchies (root only).
// Everything happens in one uniquely named cgroup (in every hierarchy) that
// is removed afterwards. Test processes come from child_process (allowed in
// tests); the module only touches cgroup files.
import { type ChildProcessWithoutNullStreams, execFile, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openCgroups, type Cgroups } from '../../agent/src/cgroups';
import { bundleEntry } from '../helpers/bundle';

const pexec = promisify(execFile);
const isRoot = process.getuid?.() === 0;
const ROOT = '/sys/fs/cgroup';
const haveV1Memory = fs.existsSync(`${ROOT}/memory/cgroup.procs`) && fs.existsSync(`${ROOT}/freezer/cgroup.procs`);

const MiB = 1 << 20;

async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function procState(pid: number): string {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]!;
}

/** A shell that waits for a line on stdin before running `script`. */
function gated(script: string): { child: ChildProcessWithoutNullStreams; out: () => string; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> } {
  const child = spawn('/bin/sh', ['-c', `read go; ${script}`], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out += b.toString()));
  child.stderr.on('data', () => undefined);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, out: () => out, exited };
}

describe.skipIf(!isRoot || !haveV1Memory)('cgroups on the real v1 hierarchies (root)', () => {
  let cg: Cgroups;
  const rel = `/gk-cgtest-${process.pid}-${crypto.randomBytes(3).toString('hex')}`;
  const children: ChildProcessWithoutNullStreams[] = [];

  beforeAll(() => {
    cg = openCgroups(ROOT);
    cg.create(rel);
  });

  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await Promise.all(children.map((c) => (c.exitCode === null && c.signalCode === null ? new Promise((r) => c.once('exit', r)) : null)));
    if (cg) {
      await cg.remove(rel, { busyTimeoutMs: 5000 });
      expect(cg.exists(rel)).toBe(false);
    }
  });

  it('detects this host (v1 hierarchies; hybrid when cgroup2 sits at unified/)', () => {
    expect(['v1', 'hybrid']).toContain(cg.mode);
    expect(cg.controllers()).toEqual(expect.arrayContaining(['cpu', 'cpuacct', 'memory', 'pids', 'freezer', 'cpuset']));
    expect(cg.exists(rel)).toBe(true);
    for (const c of ['memory', 'pids', 'freezer', 'cpu', 'cpuacct', 'cpuset']) {
      expect(fs.statSync(cg.path(rel, c)).isDirectory()).toBe(true);
    }
    // a new v1 cpuset must be usable at once: cpus/mems inherited
    expect(fs.readFileSync(`${cg.path(rel, 'cpuset')}/cpuset.cpus`, 'utf8').trim()).not.toBe('');
  });

  it('moves a process in, applies limits, reads them back, stats follow the process, freezes it', async () => {
    const g = gated('i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done; echo busy-done; exec sleep 1000');
    children.push(g.child);
    const pid = g.child.pid!;
    cg.addProcess(rel, pid);
    expect(cg.pids(rel)).toEqual([pid]);
    expect(fs.readFileSync(`${cg.path(rel, 'memory')}/cgroup.procs`, 'utf8').trim()).toBe(String(pid));

    const written = cg.update(rel, { memory: { limit: 64 * MiB }, pids: { limit: 20 } });
    expect(written).toContain(`${cg.path(rel, 'memory')}/memory.limit_in_bytes`);
    expect(written).toContain(`${cg.path(rel, 'pids')}/pids.max`);
    expect(Number(fs.readFileSync(`${cg.path(rel, 'memory')}/memory.limit_in_bytes`, 'utf8'))).toBe(64 * MiB);
    expect(fs.readFileSync(`${cg.path(rel, 'pids')}/pids.max`, 'utf8').trim()).toBe('20');

    const s0 = cg.stats(rel);
    expect(s0.memory_stats!.usage!.limit).toBe(64 * MiB);
    expect(s0.pids_stats).toEqual({ current: 1, limit: 20 });
    const cpu0 = s0.cpu_stats!.cpu_usage!.total_usage;

    g.child.stdin.write('go\n');
    await until(() => g.out().includes('busy-done'), 30_000, 'the busy loop');
    await until(() => fs.existsSync(`/proc/${pid}/comm`) && fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sleep', 10_000, 'exec sleep');
    const s1 = cg.stats(rel);
    expect(s1.cpu_stats!.cpu_usage!.total_usage).toBeGreaterThan(cpu0);
    expect(s1.cpu_stats!.cpu_usage!.usage_in_usermode + s1.cpu_stats!.cpu_usage!.usage_in_kernelmode).toBeGreaterThan(0);
    expect(s1.cpu_stats!.cpu_usage!.percpu_usage.length).toBeGreaterThanOrEqual(1);
    expect(s1.memory_stats!.usage!.usage).toBeGreaterThan(0);
    expect(s1.pids_stats!.current).toBeGreaterThanOrEqual(1);

    await cg.freeze(rel, true);
    expect(fs.readFileSync(`${cg.path(rel, 'freezer')}/freezer.state`, 'utf8').trim()).toBe('FROZEN');
    expect(procState(pid)).toBe('D');
    await cg.freeze(rel, false);
    expect(fs.readFileSync(`${cg.path(rel, 'freezer')}/freezer.state`, 'utf8').trim()).toBe('THAWED');
    expect(procState(pid)).not.toBe('D');

    g.child.kill('SIGKILL');
    await g.exited;
    await until(() => cg.pids(rel).length === 0, 10_000, 'the cgroup to empty');
  }, 90_000);

  it('a memory hog under 32 MiB is OOM-killed and the watcher fires (eventfd, no poll)', async () => {
    const sub = `${rel}/oom`;
    cg.create(sub);
    const memDir = cg.path(sub, 'memory');
    const swapAccounting = fs.existsSync(`${memDir}/memory.memsw.limit_in_bytes`);
    cg.update(sub, { memory: { limit: 32 * MiB, ...(swapAccounting ? { swap: 32 * MiB } : {}) } });

    let ooms = 0;
    // A poll interval longer than the test: only the eventfd (and its re-checks) can report.
    const w = cg.watchOom(sub, () => ooms++, { pollIntervalMs: 600_000 });
    try {
      expect(w.via).toBe('eventfd');
      const g = gated('head -c 200M /dev/zero | tail > /dev/null');
      children.push(g.child);
      cg.addProcess(sub, g.child.pid!);
      g.child.stdin.write('go\n');
      const { code, signal } = await g.exited;
      expect(code === 137 || signal === 'SIGKILL' || (code !== null && code !== 0)).toBe(true);
      await until(() => ooms >= 1, 20_000, 'the OOM callback');
      const ctl = fs.readFileSync(`${memDir}/memory.oom_control`, 'utf8');
      expect(Number(/oom_kill (\d+)/.exec(ctl)![1])).toBeGreaterThanOrEqual(1);
      const m = cg.stats(sub).memory_stats!;
      // (failcnt is not asserted: this kernel leaves the v1 failcnt at 0 on OOM)
      expect(m.usage!.max_usage).toBeGreaterThan(16 * MiB);
      expect(m.usage!.max_usage).toBeLessThanOrEqual(32 * MiB);
    } finally {
      w.close();
    }
    await cg.remove(sub, { busyTimeoutMs: 5000 });
    expect(cg.exists(sub)).toBe(false);
  }, 90_000);

  it('in a mount namespace without the unified mount (what crun needs) the layout is plain v1', async () => {
    if (!fs.existsSync(`${ROOT}/unified`)) return;
    const entry = await bundleEntry('test/integration/fixtures/cgroups-detect.ts');
    const { stdout } = await pexec('unshare', ['-m', '--propagation', 'private', 'sh', '-c', `umount ${ROOT}/unified && exec "${process.execPath}" "${entry}"`], {
      timeout: 30_000,
    });
    const r = JSON.parse(stdout.trim().split('\n').at(-1)!) as { mode: string; opened: string; controllers: string[] };
    expect(r.mode).toBe('v1');
    expect(r.opened).toBe('v1');
    expect(r.controllers).toEqual(expect.arrayContaining(['memory', 'pids', 'freezer']));
  }, 60_000);
});
