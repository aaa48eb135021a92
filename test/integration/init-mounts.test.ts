// Real PID-1 mounts in private namespaces (root only): earlyMounts/cgroupMounts
// under a temp-dir prefix inside `unshare -m`, and the whole runInit() as PID 1
// of a fresh PID namespace, shut down by SIGTERM through reboot(RB_POWER_OFF)
// (which in a child PID namespace only kills that namespace's init).
// The fixture (test/integration/fixtures/init-pid1.ts) explains which host
// state it restores and why /dev under the prefix is a tmpfs.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseMountInfo } from '../../agent/src/init/mountinfo';
import { parseProcCgroups } from '../../agent/src/init/cgroups';
import { RB } from '../../agent/src/sys/misc';
import { bundleEntry } from '../helpers/bundle';

const isRoot = process.getuid?.() === 0;
const hasUnshare = fs.existsSync('/usr/bin/unshare') || fs.existsSync('/bin/unshare');

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function run(argv: string[], timeoutMs = 60_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

function jsonLines(s: string): Record<string, any>[] {
  return s.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, any>);
}

function hostCgroup2(): { superOptions?: string; subtree?: string } {
  const e = parseMountInfo(fs.readFileSync('/proc/self/mountinfo', 'utf8')).find((m) => m.fstype === 'cgroup2');
  if (!e) return {};
  return { superOptions: e.superOptions, subtree: fs.readFileSync(`${e.mountPoint}/cgroup.subtree_control`, 'utf8') };
}

let fixture = '';
let prefix = '';

describe.skipIf(!isRoot || !hasUnshare)('PID-1 init mounts in private namespaces (root)', () => {
  beforeAll(async () => {
    fixture = await bundleEntry('test/integration/fixtures/init-pid1.ts');
  });

  afterEach(() => {
    if (!prefix) return;
    // the namespaces are gone: nothing may remain mounted under the prefix on the host
    const leaked = parseMountInfo(fs.readFileSync('/proc/self/mountinfo', 'utf8')).filter((m) => m.mountPoint.startsWith(prefix));
    expect(leaked).toEqual([]);
    fs.rmSync(prefix, { recursive: true, force: true });
    prefix = '';
  });

  function newPrefix(): string {
    prefix = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'gk-init-')));
    return prefix;
  }

  it('earlyMounts + cgroup2: everything mounted with the right options, second pass skips all', async () => {
    const p = newPrefix();
    const hostBefore = hostCgroup2();
    const r = await run(['unshare', '-m', '--propagation', 'private', process.execPath, fixture, 'mounts', p, 'v2']);
    expect(r.code, r.stderr).toBe(0);
    const [out] = jsonLines(r.stdout);
    expect(out).toBeDefined();
    const d = out!;

    expect(d.early.map((m: any) => [m.target, m.status])).toEqual([
      ['/proc', 'mounted'], ['/sys', 'mounted'], ['/dev', 'mounted'], ['/dev/pts', 'mounted'], ['/dev/shm', 'mounted'], ['/run', 'mounted'],
    ]);
    const byTarget = new Map<string, any>(d.mounts.map((m: any) => [m.target, m]));
    expect(byTarget.get('/proc')).toMatchObject({ fstype: 'proc', options: expect.stringMatching(/nosuid,nodev,noexec/) });
    expect(byTarget.get('/sys')).toMatchObject({ fstype: 'sysfs', options: expect.stringMatching(/nosuid,nodev,noexec/) });
    const pts = byTarget.get('/dev/pts');
    expect(pts.fstype).toBe('devpts');
    expect(pts.superOptions.split(',')).toEqual(expect.arrayContaining(['gid=5', 'mode=620', 'ptmxmode=666']));
    expect(byTarget.get('/dev/shm')).toMatchObject({ fstype: 'tmpfs', options: expect.stringMatching(/nosuid,nodev/) });
    expect(byTarget.get('/run')).toMatchObject({ fstype: 'tmpfs', options: expect.stringMatching(/nosuid,nodev/) });
    expect(byTarget.get('/run').superOptions).toContain('mode=755');
    expect(d.shmMode).toBe('1777');
    expect(d.runMode).toBe('755');
    // the real devtmpfs mount works with the table's flags and data
    expect(d.devtmpfs.status).toBe('mounted');
    expect(byTarget.get('/devtmpfs')).toMatchObject({ fstype: 'devtmpfs', options: expect.stringContaining('nosuid') });

    // /dev/ptmx -> pts/ptmx reaches the new devpts instance: opening it creates pts/0 there
    expect(d.pty).toEqual({ ptmxLink: 'pts/ptmx', ptyOpened: true, ptsEntries: ['0', 'ptmx'] });
    expect(d.fdLink).toBe('/proc/self/fd');

    // cgroup2 with every available controller enabled for children
    expect(d.cg.version).toBe(2);
    expect(d.cg.mounts[0]).toMatchObject({ target: '/sys/fs/cgroup', fstype: 'cgroup2', status: 'mounted' });
    expect(byTarget.get('/sys/fs/cgroup').fstype).toBe('cgroup2');
    const available = (d.controllers as string).split(/\s+/).filter(Boolean);
    expect(d.cg.controllersFailed).toEqual([]);
    expect([...d.cg.controllersEnabled, ...d.subtreeBefore].sort()).toEqual([...available].sort());
    expect((d.subtreeAfter as string).split(/\s+/).filter(Boolean).sort()).toEqual([...available].sort());

    // idempotent
    expect(d.again.every((m: any) => m.status === 'skipped')).toBe(true);
    expect(d.again).toHaveLength(7);

    // host cgroup2 state restored by the fixture
    expect(d.restore).toEqual([]);
    expect(hostCgroup2()).toEqual(hostBefore);
  });

  const procCgroups = fs.existsSync('/proc/cgroups') ? parseProcCgroups(fs.readFileSync('/proc/cgroups', 'utf8')) : [];
  const v1fs = fs.existsSync('/proc/filesystems') && /\tcgroup\n/.test(fs.readFileSync('/proc/filesystems', 'utf8'));
  // Controllers not bound to a v1 hierarchy on this host stay out (cgroup_no_v1): mounting
  // them would take them away from the host's cgroup2 while the test runs.
  const noV1 = procCgroups.filter((c) => c.enabled && c.hierarchy === 0).map((c) => c.name);
  const expectedV1 = procCgroups.filter((c) => c.enabled && c.hierarchy !== 0).map((c) => c.name);

  it.skipIf(!v1fs || expectedV1.length === 0)('systemd.unified_cgroup_hierarchy=0: tmpfs + one v1 hierarchy per controller, cgroup_no_v1 respected', async () => {
    const p = newPrefix();
    const r = await run(['unshare', '-m', '--propagation', 'private', process.execPath, fixture, 'mounts', p, 'v1', noV1.join(',')]);
    expect(r.code, r.stderr).toBe(0);
    const d = jsonLines(r.stdout)[0]!;
    expect(d.cg.version).toBe(1);
    expect(d.cg.errors).toEqual([]);
    const cgMounts = (d.mounts as any[]).filter((m) => m.target.startsWith('/sys/fs/cgroup'));
    const root = cgMounts.find((m) => m.target === '/sys/fs/cgroup');
    expect(root).toMatchObject({ fstype: 'tmpfs' });
    expect(root.options.split(',')[0]).toBe('ro'); // remounted read-only after the hierarchies
    const v1 = cgMounts.filter((m) => m.fstype === 'cgroup');
    expect(v1.map((m) => m.target)).toEqual(expectedV1.map((c) => `/sys/fs/cgroup/${c}`));
    for (const m of v1) expect(m.superOptions.split(',')).toContain(m.target.split('/').pop());
    for (const c of noV1) expect(cgMounts.some((m) => m.target === `/sys/fs/cgroup/${c}`)).toBe(false);
    if (expectedV1.includes('memory')) expect(d.useHierarchy).toBe('1');
    expect(d.again.every((m: any) => m.status === 'skipped')).toBe(true);
  });

  it('runInit as PID 1: mounts, host name, environment; SIGTERM powers off through reboot()', async () => {
    const p = newPrefix();
    fs.mkdirSync(path.join(p, 'etc'));
    fs.writeFileSync(path.join(p, 'etc/hostname'), 'gk-init-test\n');
    const hostPidNs = fs.readlinkSync('/proc/self/ns/pid');
    const hostName = os.hostname();
    const hostBefore = hostCgroup2();

    const r = await run([
      'unshare', '-pfmu', '--kill-child', '--propagation', 'private', '--mount-proc',
      process.execPath, fixture, 'pid1', p, hostPidNs,
    ]);
    const lines = jsonLines(r.stdout);
    const first = lines[0];
    expect(first, r.stderr).toBeDefined();
    const s = first!.summary;
    expect(s.pid).toBe(1);
    expect(s.ownPidNs).not.toBe(hostPidNs);
    expect(s.mode).toBe('pid1');
    expect(s.mounted).toEqual(['/proc', '/sys', '/dev', '/dev/pts', '/dev/shm', '/run', '/sys/fs/cgroup']);
    expect(s.failed).toEqual([]);
    // no /dev/console under the prefix: the only failure, logged and survived
    expect(s.errors).toHaveLength(1);
    expect(s.errors[0]).toMatch(/^\/dev\/console: /);
    expect(s.hostname).toBe('gk-init-test');
    expect(s.kernelHostname).toBe('gk-init-test');
    expect(s.env).toEqual({ PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/' });
    expect(first!.mounts.map((m: any) => m.fstype)).toEqual(['proc', 'sysfs', 'tmpfs', 'devpts', 'tmpfs', 'tmpfs', 'cgroup2']);

    // SIGTERM (delivered to PID 1 only because a handler is installed) -> shutdown -> reboot(POWER_OFF)
    expect(lines[1]).toEqual({ rebooting: RB.POWER_OFF >>> 0 });
    expect(lines.some((l) => l.stillAlive || l.exiting !== undefined)).toBe(false);
    expect(r.stderr).toContain('"reason":"signal SIGTERM"');
    // the namespace's init was killed with SIGINT (what reboot(POWER_OFF) does in a child PID namespace);
    // unshare re-raises it, or reports 128+2
    expect(r.signal === 'SIGINT' || r.code === 130).toBe(true);

    expect(os.hostname()).toBe(hostName);
    expect(hostCgroup2()).toEqual(hostBefore);
  });
});
