// The sandbox and container lifecycle end to end (root): the agent (main() +
// registerIssue3Services, test/integration/fixtures/containers-agent.ts) runs
// as PID 1 of `unshare -pfmu --mount-proc` with a kernel command line file
// saying systemd.unified_cgroup_hierarchy=0, so its own init mounts cgroup v1
// (crun refuses this host's hybrid layout), and drives the real crun (and,
// for the key cases, runc via agent.oci_runtime=runc). The host side is the
// client library over ttrpc, and agent-ctl for one call.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentClient } from '../../agent/src/client/agent';
import { Code, RpcError } from '../../agent/src/rpc/status';
import { ociSpecToGrpc, type OciSpec } from '../../agent/src/runtime/spec';
import { agentCtl, isRoot } from '../helpers/agent-ns';
import { grpcProcess, readAll, readUntil, rejection } from '../helpers/agent-calls';
import { makeBusyboxRootfs, minimalOciConfig, type MinimalConfigOptions } from '../helpers/busybox-rootfs';
import { startContainersAgent, type ContainersAgent } from '../helpers/containers-agent';

const CG_ROOT = '/sys/fs/cgroup';
const V1_CONTROLLERS = ['cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'blkio', 'pids'];

function hasBinary(name: string): boolean {
  return ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'].some((d) => fs.existsSync(path.join(d, name)));
}

type Spec = ReturnType<typeof ociSpecToGrpc>;

function spec(o: MinimalConfigOptions & { annotations?: Record<string, string>; edit?: (oci: OciSpec) => void }): Spec {
  const oci = minimalOciConfig(o) as unknown as OciSpec;
  if (o.annotations) oci.annotations = o.annotations;
  o.edit?.(oci);
  return ociSpecToGrpc(oci);
}

/** Run a host command (tests only), failing loudly. */
function sh(file: string, ...args: string[]): string {
  const r = spawnSync(file, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${file} ${args.join(' ')}: ${r.stderr}`);
  return r.stdout.trim();
}

function hostCgroup(ctrl: string, rel: string): string {
  return path.join(CG_ROOT, ctrl, rel);
}

function readCg(ctrl: string, rel: string, file: string): string {
  return fs.readFileSync(path.join(hostCgroup(ctrl, rel), file), 'utf8').trim();
}

function removeCgroupTree(dir: string): void {
  if (!fs.existsSync(dir)) return;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) removeCgroupTree(path.join(dir, e.name));
  try {
    fs.rmdirSync(dir);
  } catch {
    // still busy
  }
}

interface Suite {
  runtime: 'crun' | 'runc';
  /** All scenarios (crun) or the key ones (runc). */
  full: boolean;
}

const SUITES: Suite[] = [
  { runtime: 'crun', full: true },
  { runtime: 'runc', full: false },
];

for (const suite of SUITES) {
  const { runtime, full } = suite;
  const itFull = full ? it : it.skip;
  describe.skipIf(!isRoot || !hasBinary(runtime) || !hasBinary('unshare'))(`containers with ${runtime} (root)`, () => {
    let agent: ContainersAgent;
    let c: AgentClient;
    const SID = `gk-sbx-${runtime}-${process.pid}`;
    const sandboxCg = `kata/${SID}`;
    const cg = (cid: string) => `${sandboxCg}/${cid}`;
    const create = async (cid: string, o: Partial<MinimalConfigOptions> & { annotations?: Record<string, string> } = {}, extra: Record<string, unknown> = {}) => {
      agent.makeRootfs(cid);
      await c.call('CreateContainer', { container_id: cid, exec_id: cid, OCI: spec({ args: ['sleep', '1000'], ...o }), ...extra });
    };
    const remove = (cid: string, timeout = 10) => c.call('RemoveContainer', { container_id: cid, timeout });

    beforeAll(async () => {
      agent = await startContainersAgent({ cmdline: `systemd.unified_cgroup_hierarchy=0 agent.oci_runtime=${runtime} agent.hotplug_timeout=1` });
      c = await agent.client();
    }, 60_000);

    afterAll(async () => {
      await agent?.stop();
      for (const ctrl of V1_CONTROLLERS) {
        removeCgroupTree(hostCgroup(ctrl, sandboxCg));
        try {
          fs.rmdirSync(hostCgroup(ctrl, 'kata')); // the sandboxes' parent, when nothing else uses it
        } catch {
          // in use or gone
        }
      }
    });

    it('the agent is PID 1 and its init mounted cgroup v1 hierarchies (no cgroup2) from the command line file', () => {
      const mi = agent.mountInfo().split('\n').filter(Boolean).map((l) => {
        const f = l.split(' ');
        return { mp: f[4]!, type: f[f.indexOf('-') + 1]! };
      });
      const at = (mp: string) => mi.filter((m) => m.mp === mp).at(-1)?.type;
      expect(at('/sys/fs/cgroup')).toBe('tmpfs');
      for (const ctrl of ['memory', 'pids', 'freezer', 'cpu', 'cpuacct']) expect(at(`/sys/fs/cgroup/${ctrl}`), ctrl).toBe('cgroup');
      expect(mi.some((m) => m.type === 'cgroup2')).toBe(false);
      const init = agent.logLines().find((l) => l.msg === 'init done');
      expect(init?.mode).toBe('pid1');
    });

    itFull('CreateSandbox storages: a mount point outside /run/kata-containers and a failing mount leave nothing; a missing kernel module is NOT_FOUND', async () => {
      const out = await rejection(c.call('CreateSandbox', { sandbox_id: SID, storages: [{ driver: 'ephemeral', source: 'tmpfs', fstype: 'tmpfs', mount_point: '/gk-x' }] }));
      expect(out.code).toBe(Code.INVALID_ARGUMENT);
      expect(out.message).toMatch(/\/gk-x/);
      const vf = await rejection(
        c.call('CreateSandbox', {
          sandbox_id: SID,
          storages: [
            { driver: 'ephemeral', source: 'tmpfs', fstype: 'tmpfs', mount_point: '/run/kata-containers/gk-eph-first' },
            { driver: 'virtio-fs', source: 'gk-no-such-tag', fstype: 'virtiofs', mount_point: '/run/kata-containers/gk-vf' },
          ],
        }),
      );
      expect(vf.code).not.toBe(Code.OK);
      expect(vf.message).toMatch(/gk-no-such-tag/);
      // all or nothing: the first storage was unmounted again
      expect(agent.mountInfo()).not.toMatch(/gk-eph-first|gk-vf/);
      const km = await rejection(c.call('CreateSandbox', { sandbox_id: SID, kernel_modules: [{ name: 'gk-no-such-module', parameters: ['a=1'] }] }));
      expect(km.code).toBe(Code.NOT_FOUND);
      expect(km.message).toMatch(/gk-no-such-module.*not found/);
      expect(fs.existsSync(agent.inAgent('/run/kata-containers/sandbox/ns'))).toBe(false);
      expect(fs.existsSync(hostCgroup('memory', sandboxCg))).toBe(false);
    });

    it('CreateSandbox: shared IPC/UTS namespace files, DNS over /etc/resolv.conf, guest hooks, sandbox cgroup; a second one is ALREADY_EXISTS', async () => {
      // A guest hook (poststart) that records its arguments.
      const hookDir = agent.inAgent('/run/gk-hooks/poststart');
      fs.mkdirSync(hookDir, { recursive: true });
      fs.writeFileSync(path.join(hookDir, 'record.sh'), '#!/bin/sh\necho "$@" >> /run/gk-hook-ran\n', { mode: 0o755 });
      fs.writeFileSync(path.join(hookDir, 'not-executable'), '#!/bin/sh\nexit 1\n', { mode: 0o644 });
      const hostResolv = fs.readFileSync('/etc/resolv.conf', 'utf8');
      await c.call('CreateSandbox', {
        hostname: 'gk-sandbox',
        dns: ['nameserver 10.11.12.13', 'search gk.example'],
        sandbox_id: SID,
        guest_hook_path: '/run/gk-hooks',
      });
      const mi = agent.mountInfo();
      for (const ns of ['ipc', 'uts']) {
        expect(mi).toMatch(new RegExp(` /run/kata-containers/sandbox/ns/${ns} .*- nsfs `));
      }
      expect(fs.readFileSync(agent.inAgent('/etc/resolv.conf'), 'utf8')).toBe('nameserver 10.11.12.13\nsearch gk.example\n');
      expect(fs.readFileSync('/etc/resolv.conf', 'utf8')).toBe(hostResolv); // the host's is untouched
      expect(fs.existsSync(hostCgroup('memory', sandboxCg))).toBe(true);
      const again = await rejection(c.call('CreateSandbox', { sandbox_id: SID }));
      expect(again.code).toBe(Code.ALREADY_EXISTS);
    });

    it('CreateContainer + StartContainer `echo hi`: ReadStdout "hi", WaitProcess 0, then EOF; the guest hook ran', async () => {
      await create('c-echo', { args: ['echo', 'hi'] });
      // Created, not started: nothing runs yet.
      const pidsJson = await c.call('ListProcesses', { container_id: 'c-echo', format: 'json' });
      expect(JSON.parse(Buffer.from(pidsJson.process_list as Uint8Array).toString())).toHaveLength(1);
      await c.call('StartContainer', { container_id: 'c-echo' });
      const first = await c.call('ReadStdout', { container_id: 'c-echo', exec_id: '', len: 1024 });
      expect(Buffer.from(first.data as Uint8Array).toString()).toBe('hi\n');
      const w = await c.call('WaitProcess', { container_id: 'c-echo', exec_id: '' });
      expect(w.status).toBe(0);
      expect(await readAll(c, 'ReadStdout', 'c-echo')).toBe('');
      expect(await readAll(c, 'ReadStderr', 'c-echo')).toBe('');
      // OCI hook args are argv (argv[0] = the file name, as Kata): the script sees "poststart".
      expect(fs.readFileSync(agent.inAgent('/run/gk-hook-ran'), 'utf8')).toBe('poststart\n');
      await remove('c-echo');
      // The runtime ran from the agent's sealed in-memory copy of its binary.
      const sealed = agent.logLines().find((l) => l.msg === 'runtime runs from a sealed in-memory copy');
      expect(sealed).toMatchObject({ runtime, exec: expect.stringMatching(/^\/proc\/1\/fd\/\d+$/) });
    });

    it('a sleep container: the sandbox host name, ExecProcess exit 3, exec ids, ListProcesses, SignalProcess SIGKILL (all) -> 137', async () => {
      await create('c-sleep');
      await c.call('StartContainer', { container_id: 'c-sleep' });
      await c.call('ExecProcess', { container_id: 'c-sleep', exec_id: 'host', process: grpcProcess(['busybox', 'hostname']) });
      expect(await readAll(c, 'ReadStdout', 'c-sleep', 'host')).toBe('gk-sandbox\n');
      expect((await c.call('WaitProcess', { container_id: 'c-sleep', exec_id: 'host' })).status).toBe(0);

      await c.call('ExecProcess', { container_id: 'c-sleep', exec_id: 'e3', process: grpcProcess(['sh', '-c', 'echo out; echo err >&2; exit 3']) });
      const dup = await rejection(c.call('ExecProcess', { container_id: 'c-sleep', exec_id: 'e3', process: grpcProcess(['true']) }));
      expect(dup.code).toBe(Code.ALREADY_EXISTS);
      expect((await c.call('WaitProcess', { container_id: 'c-sleep', exec_id: 'e3' })).status).toBe(3);
      // Waited for: the exec is gone (as Kata) but its output can still be drained.
      expect(await readAll(c, 'ReadStdout', 'c-sleep', 'e3')).toBe('out\n');
      expect(await readAll(c, 'ReadStderr', 'c-sleep', 'e3')).toBe('err\n');
      expect((await rejection(c.call('WaitProcess', { container_id: 'c-sleep', exec_id: 'e3' }))).code).toBe(Code.NOT_FOUND);
      expect((await rejection(c.call('SignalProcess', { container_id: 'c-sleep', exec_id: 'e3', signal: 15 }))).code).toBe(Code.NOT_FOUND);

      const json = await c.call('ListProcesses', { container_id: 'c-sleep', format: 'json' });
      const pids = JSON.parse(Buffer.from(json.process_list as Uint8Array).toString()) as number[];
      expect(pids.length).toBeGreaterThanOrEqual(1);
      const table = Buffer.from((await c.call('ListProcesses', { container_id: 'c-sleep', format: 'table' })).process_list as Uint8Array).toString();
      const lines = table.trim().split('\n');
      expect(lines[0]!.trim().split(/\s+/)).toEqual(['UID', 'PID', 'PPID', 'C', 'STIME', 'TTY', 'TIME', 'CMD']);
      expect(lines.slice(1).some((l) => l.split(/\s+/)[1] === String(pids[0]) && /sleep 1000$/.test(l))).toBe(true);
      expect((await rejection(c.call('ListProcesses', { container_id: 'c-sleep', format: 'yaml' }))).code).toBe(Code.INVALID_ARGUMENT);

      await c.call('SignalProcess', { container_id: 'c-sleep', exec_id: '', signal: 9 });
      expect((await c.call('WaitProcess', { container_id: 'c-sleep', exec_id: '' })).status).toBe(137);
      // The init stays known: waiting again gives the same status.
      expect((await c.call('WaitProcess', { container_id: 'c-sleep', exec_id: 'c-sleep' })).status).toBe(137);
      await remove('c-sleep');
    });

    it('stdin round trip: `cat` echoes WriteStdin, CloseStdin ends it with 0', async () => {
      await create('c-cat', { args: ['cat'] });
      await c.call('StartContainer', { container_id: 'c-cat' });
      const w = await c.call('WriteStdin', { container_id: 'c-cat', exec_id: '', data: Buffer.from('hello\n') });
      expect(w.len).toBe(6);
      expect(await readUntil(c, 'c-cat', '', /hello\n/)).toBe('hello\n');
      await c.call('CloseStdin', { container_id: 'c-cat', exec_id: '' });
      expect((await c.call('WaitProcess', { container_id: 'c-cat', exec_id: '' })).status).toBe(0);
      expect(await readAll(c, 'ReadStdout', 'c-cat')).toBe('');
      await remove('c-cat');
    });

    it('a terminal exec: TtyWinResize, then `stty size` reports it; TtyWinResize without a tty is refused', async () => {
      await create('c-tty');
      await c.call('StartContainer', { container_id: 'c-tty' });
      // The process waits for a second line before exiting: once it has exited, output still unread
      // after Kata's 500 ms drain window is dropped, and a loaded machine can delay the pty's flush.
      await c.call('ExecProcess', { container_id: 'c-tty', exec_id: 'tty', process: grpcProcess(['sh', '-c', 'read x; stty size; tty; read y'], true) });
      await c.call('TtyWinResize', { container_id: 'c-tty', exec_id: 'tty', row: 33, column: 101 });
      await c.call('WriteStdin', { container_id: 'c-tty', exec_id: 'tty', data: Buffer.from('go\r') });
      const out = await readUntil(c, 'c-tty', 'tty', /\/dev\/pts\/\d+/);
      expect(out).toMatch(/33 101\r?\n/);
      await c.call('WriteStdin', { container_id: 'c-tty', exec_id: 'tty', data: Buffer.from('done\r') });
      expect((await c.call('WaitProcess', { container_id: 'c-tty', exec_id: 'tty' })).status).toBe(0);
      const noTty = await rejection(c.call('TtyWinResize', { container_id: 'c-tty', exec_id: '', row: 1, column: 1 }));
      expect(noTty.code).toBe(Code.UNAVAILABLE);
      await remove('c-tty');
    });

    itFull('a terminal container init: the console socket hands over the pty', async () => {
      await create('c-tty-init', { args: ['sh', '-c', 'stty size; echo done; read y'], terminal: true });
      await c.call('TtyWinResize', { container_id: 'c-tty-init', exec_id: '', row: 12, column: 34 });
      await c.call('StartContainer', { container_id: 'c-tty-init' });
      expect(await readUntil(c, 'c-tty-init', '', /done/)).toMatch(/12 34\r?\n/);
      await c.call('WriteStdin', { container_id: 'c-tty-init', exec_id: '', data: Buffer.from('x\r') });
      expect((await c.call('WaitProcess', { container_id: 'c-tty-init', exec_id: '' })).status).toBe(0);
      await remove('c-tty-init');
    });

    itFull('resources: limits in the cgroup files, UpdateContainer changes them; Pause/Resume freeze and thaw; StatsContainer numbers move', async () => {
      await create('c-res', {
        args: ['sh', '-c', 'while :; do :; done'],
        resources: { devices: [{ allow: false, access: 'rwm' }], memory: { limit: 64 * 1024 * 1024 }, pids: { limit: 100 } },
      });
      await c.call('StartContainer', { container_id: 'c-res' });
      expect(readCg('memory', cg('c-res'), 'memory.limit_in_bytes')).toBe(String(64 * 1024 * 1024));
      expect(readCg('pids', cg('c-res'), 'pids.max')).toBe('100');
      await c.call('UpdateContainer', { container_id: 'c-res', resources: { Memory: { Limit: 96 * 1024 * 1024 }, Pids: { Limit: 42 } } });
      expect(readCg('memory', cg('c-res'), 'memory.limit_in_bytes')).toBe(String(96 * 1024 * 1024));
      expect(readCg('pids', cg('c-res'), 'pids.max')).toBe('42');
      const bad = await rejection(c.call('UpdateContainer', { container_id: 'c-res', resources: { CPU: { Cpus: 'not-a-cpu-list' } } }));
      expect(bad.code).toBe(Code.INVALID_ARGUMENT);

      const s1 = await c.call('StatsContainer', { container_id: 'c-res' });
      expect(s1.cgroup_stats.pids_stats.current).toBeGreaterThanOrEqual(1);
      expect(s1.cgroup_stats.memory_stats.usage.limit).toBe(96 * 1024 * 1024);
      const netNames = fs.readFileSync('/proc/net/dev', 'utf8').split('\n').slice(2).map((l) => l.split(':')[0]!.trim()).filter((n) => n && n !== 'lo');
      expect((s1.network_stats as { name: string }[]).map((n) => n.name).sort()).toEqual(netNames.sort());
      let s2 = s1;
      for (let i = 0; i < 200 && s2.cgroup_stats.cpu_stats.cpu_usage.total_usage <= s1.cgroup_stats.cpu_stats.cpu_usage.total_usage; i++) {
        await new Promise((r) => setTimeout(r, 10));
        s2 = await c.call('StatsContainer', { container_id: 'c-res' });
      }
      expect(s2.cgroup_stats.cpu_stats.cpu_usage.total_usage).toBeGreaterThan(s1.cgroup_stats.cpu_stats.cpu_usage.total_usage);

      await c.call('PauseContainer', { container_id: 'c-res' });
      expect(readCg('freezer', cg('c-res'), 'freezer.state')).toBe('FROZEN');
      const frozen = (await c.call('StatsContainer', { container_id: 'c-res' })).cgroup_stats.cpu_stats.cpu_usage.total_usage;
      const frozenAgain = (await c.call('StatsContainer', { container_id: 'c-res' })).cgroup_stats.cpu_stats.cpu_usage.total_usage;
      expect(frozenAgain).toBe(frozen);
      await c.call('ResumeContainer', { container_id: 'c-res' });
      expect(readCg('freezer', cg('c-res'), 'freezer.state')).toBe('THAWED');
      await remove('c-res');
    });

    itFull('OOM: a memory hog under a 32 MiB limit is killed and GetOOMEvent returns its id', async () => {
      const oom = c.call('GetOOMEvent', {}, { timeoutMs: 60_000 });
      await create('c-oom', {
        args: ['tail', '/dev/zero'],
        resources: { devices: [{ allow: false, access: 'rwm' }], memory: { limit: 32 * 1024 * 1024 } },
      });
      await c.call('StartContainer', { container_id: 'c-oom' });
      expect((await oom).container_id).toBe('c-oom');
      expect((await c.call('WaitProcess', { container_id: 'c-oom', exec_id: '' })).status).toBe(137);
      await remove('c-oom');
    });

    itFull('sandbox_pidns: a later container joins the first container\'s pid namespace', async () => {
      await create('c-pid-a', { args: ['sleep', '1001'] });
      await c.call('StartContainer', { container_id: 'c-pid-a' });
      await create('c-pid-b', { args: ['ps', '-o', 'pid,args'] }, { sandbox_pidns: true });
      await c.call('StartContainer', { container_id: 'c-pid-b' });
      const out = await readAll(c, 'ReadStdout', 'c-pid-b');
      expect(out).toMatch(/^\s*1 sleep 1001$/m);
      expect((await c.call('WaitProcess', { container_id: 'c-pid-b', exec_id: '' })).status).toBe(0);
      await remove('c-pid-b');
      await remove('c-pid-a');
    });

    it('a container whose init dies before StartContainer: WaitProcess reports it, StartContainer fails', async () => {
      await create('c-early');
      await c.call('SignalProcess', { container_id: 'c-early', exec_id: '', signal: 9 });
      expect((await c.call('WaitProcess', { container_id: 'c-early', exec_id: '' })).status).toBe(137);
      const st = await rejection(c.call('StartContainer', { container_id: 'c-early' }));
      expect([Code.FAILED_PRECONDITION, Code.INTERNAL]).toContain(st.code);
      expect(st.message).toContain(`${runtime} start c-early failed`);
      await remove('c-early');
    });

    itFull('RemoveContainer times out on processes that cannot die (a frozen parent cgroup): DEADLINE_EXCEEDED, container left whole', async () => {
      await create('c-stuck');
      await c.call('StartContainer', { container_id: 'c-stuck' });
      // Frozen from above: the runtime's kill --all thaws the container's own cgroup, not its parent.
      const parentFreezer = path.join(hostCgroup('freezer', sandboxCg), 'freezer.state');
      fs.writeFileSync(parentFreezer, 'FROZEN');
      let st: RpcError;
      try {
        st = await rejection(remove('c-stuck', 1));
      } finally {
        fs.writeFileSync(parentFreezer, 'THAWED');
      }
      expect(st.code).toBe(Code.DEADLINE_EXCEEDED);
      expect(st.message).toMatch(/left in place/);
      expect(fs.existsSync(agent.inAgent('/run/kata-containers/c-stuck/config.json'))).toBe(true);
      expect((await c.call('StatsContainer', { container_id: 'c-stuck' })).cgroup_stats).toBeTruthy();
      await remove('c-stuck');
      expect((await rejection(c.call('StatsContainer', { container_id: 'c-stuck' }))).code).toBe(Code.NOT_FOUND);
    });

    it('RemoveContainer leaves no mounts, cgroups, bundle or runtime state behind', async () => {
      await create('c-gone', { args: ['sh', '-c', 'sleep 1000 & exec sleep 1000'] });
      await c.call('StartContainer', { container_id: 'c-gone' });
      await c.call('ExecProcess', { container_id: 'c-gone', exec_id: 'bg', process: grpcProcess(['sleep', '1000']) });
      expect(fs.existsSync(agent.inAgent('/run/kata-containers/c-gone/config.json'))).toBe(true);
      await remove('c-gone');
      expect(fs.existsSync(agent.inAgent('/run/kata-containers/c-gone'))).toBe(false);
      expect(fs.existsSync(agent.inAgent(`/run/${runtime}/c-gone`))).toBe(false);
      expect(agent.mountInfo()).not.toContain('c-gone');
      for (const ctrl of V1_CONTROLLERS) expect(fs.existsSync(hostCgroup(ctrl, cg('c-gone'))), ctrl).toBe(false);
      // Each runtime call's log, stdout and stderr files went with the call.
      expect(fs.readdirSync(agent.inAgent('/run/kata-containers/.oci-log'))).toEqual([]);
      expect((await rejection(c.call('WaitProcess', { container_id: 'c-gone', exec_id: '' }))).code).toBe(Code.NOT_FOUND);
      expect((await rejection(remove('c-gone'))).code).toBe(Code.NOT_FOUND);
    });

    itFull('storages: a bind-mounted rootfs and an ephemeral tmpfs volume, used by the container, unmounted by RemoveContainer', async () => {
      const cid = 'c-stor';
      const src = '/run/gk-src-rootfs';
      makeBusyboxRootfs(agent.inAgent(src));
      const rootMp = `/run/kata-containers/${cid}/rootfs`;
      const volMp = `/run/kata-containers/sandbox/ephemeral/${cid}-vol`;
      const storages = [
        { driver: 'bind', source: src, mount_point: rootMp },
        { driver: 'ephemeral', source: 'tmpfs', fstype: 'tmpfs', options: ['size=4m'], mount_point: volMp },
      ];
      const oci = spec({
        args: ['sh', '-c', 'echo vol-ok > /data/f && cat /data/f && df -k /data | tail -1'],
        rootPath: rootMp,
        edit: (o) => void o.mounts!.push({ destination: '/data', source: volMp, type: 'bind', options: ['rbind', 'rw'] }),
      });
      await c.call('CreateContainer', { container_id: cid, exec_id: cid, storages, OCI: oci });
      expect(agent.mountInfo()).toContain(` ${rootMp} `);
      expect(agent.mountInfo()).toContain(` ${volMp} `);
      await c.call('StartContainer', { container_id: cid });
      const out = await readAll(c, 'ReadStdout', cid);
      expect(out).toMatch(/^vol-ok\n/);
      expect(out.split('\n')[1]).toMatch(/^\S+\s+4096\s/); // the 4 MiB tmpfs, in KiB
      expect((await c.call('WaitProcess', { container_id: cid, exec_id: '' })).status).toBe(0);
      await remove(cid);
      expect(agent.mountInfo()).not.toContain(rootMp);
      expect(agent.mountInfo()).not.toContain(volMp);
      expect(fs.existsSync(agent.inAgent(`/run/kata-containers/${cid}`))).toBe(false);
      expect(fs.readFileSync(agent.inAgent(`${src}/bin/busybox`)).length).toBeGreaterThan(0); // the source survives
    });

    itFull('devices and a block storage: an ext4 disk (a loop device standing in for a hot-plugged virtio-mmio disk) as a volume and as a device with the guest numbers', async () => {
      const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-blk-'));
      const img = path.join(tmp, 'disk.img');
      fs.mkdirSync(path.join(tmp, 'content'));
      fs.writeFileSync(path.join(tmp, 'content/hello.txt'), 'hello from the disk\n');
      fs.writeFileSync(img, '');
      fs.truncateSync(img, 16 << 20);
      sh('mkfs.ext4', '-q', '-F', '-d', path.join(tmp, 'content'), img);
      const loop = sh('losetup', '-f', '--show', img);
      try {
        const rdev = fs.statSync(loop).rdev;
        const [major, minor] = [(rdev >> 8) & 0xfff, (rdev & 0xff) | ((rdev >> 12) & 0xfff00)];
        const cid = 'c-blk';
        agent.makeRootfs(cid);
        const volMp = `/run/kata-containers/shared/containers/${cid}-disk`;
        // The host's spec names the disk by the host's numbers (250:7 here); the agent must
        // rewrite the device and its cgroup rule to the guest's.
        const oci = spec({
          args: ['sh', '-c', 'cat /disk/hello.txt; ls -l /dev/xvdz'],
          resources: { devices: [{ allow: false, access: 'rwm' }, { allow: true, type: 'b', major: 250, minor: 7, access: 'rwm' }] },
          edit: (o) => {
            o.mounts!.push({ destination: '/disk', source: volMp, type: 'bind', options: ['rbind', 'rw'] });
            o.linux!.devices = [{ path: '/dev/xvdz', type: 'b', major: 250, minor: 7, fileMode: 0o660, uid: 0, gid: 0 }];
          },
        });
        await c.call('CreateContainer', {
          container_id: cid,
          exec_id: cid,
          OCI: oci,
          devices: [{ type: 'mmioblk', vm_path: loop, container_path: '/dev/xvdz' }],
          storages: [{ driver: 'mmioblk', source: loop, fstype: 'ext4', mount_point: volMp }],
        });
        const cfg = JSON.parse(fs.readFileSync(agent.inAgent(`/run/kata-containers/${cid}/config.json`), 'utf8')) as OciSpec;
        expect(cfg.linux!.devices).toContainEqual(expect.objectContaining({ path: '/dev/xvdz', type: 'b', major, minor }));
        expect(cfg.linux!.resources!.devices).toContainEqual(expect.objectContaining({ allow: true, type: 'b', major, minor }));
        expect(JSON.stringify(cfg.linux!.resources!.devices)).not.toContain('250');
        await c.call('StartContainer', { container_id: cid });
        const out = await readAll(c, 'ReadStdout', cid);
        expect(out).toContain('hello from the disk\n');
        expect(out).toMatch(new RegExp(`^b.* ${major},\\s+${minor} .*/dev/xvdz$`, 'm'));
        expect((await c.call('WaitProcess', { container_id: cid, exec_id: '' })).status).toBe(0);
        await remove(cid);
        expect(agent.mountInfo()).not.toContain(volMp);
      } finally {
        spawnSync('losetup', ['-d', loop]);
        fs.rmSync(tmp, { recursive: true, force: true });
      }
    });

    it('errors: NOT_FOUND, ALREADY_EXISTS, INVALID_ARGUMENT naming the field, a missing rootfs, devices (issue 4)', async () => {
      expect((await rejection(c.call('StartContainer', { container_id: 'nope' }))).code).toBe(Code.NOT_FOUND);
      expect((await rejection(c.call('WaitProcess', { container_id: 'nope', exec_id: '' }))).code).toBe(Code.NOT_FOUND);
      expect((await rejection(c.call('ReadStdout', { container_id: 'nope', exec_id: '', len: 10 }))).code).toBe(Code.NOT_FOUND);
      await create('c-err');
      const dup = await rejection(create('c-err'));
      expect(dup.code).toBe(Code.ALREADY_EXISTS);
      expect((await rejection(c.call('SignalProcess', { container_id: 'c-err', exec_id: 'no-such-exec', signal: 9 }))).code).toBe(Code.NOT_FOUND);
      const empty = spec({ args: ['x'] });
      empty.Process!.Args = [];
      agent.makeRootfs('c-bad');
      const bad = await rejection(c.call('CreateContainer', { container_id: 'c-bad', OCI: empty }));
      expect(bad.code).toBe(Code.INVALID_ARGUMENT);
      expect(bad.message).toContain('Process.Args');
      const badId = await rejection(c.call('CreateContainer', { container_id: '../x', OCI: spec({ args: ['true'] }) }));
      expect(badId.code).toBe(Code.INVALID_ARGUMENT);
      const noRoot = await rejection(c.call('CreateContainer', { container_id: 'c-noroot', OCI: spec({ args: ['true'] }) }));
      expect(noRoot.code).toBe(Code.NOT_FOUND);
      expect(noRoot.message).toContain('/run/kata-containers/shared/containers/c-noroot/rootfs');
      const dev = await rejection(c.call('CreateContainer', { container_id: 'c-bad', OCI: spec({ args: ['true'] }), devices: [{ id: 'zz', type: 'blk' }] }));
      expect(dev.code).toBe(Code.INVALID_ARGUMENT);
      expect(dev.message).toMatch(/PCI path/);
      const vfio = await rejection(c.call('CreateContainer', { container_id: 'c-bad', OCI: spec({ args: ['true'] }), devices: [{ id: '02', type: 'vfio' }] }));
      expect(vfio.code).toBe(Code.INVALID_ARGUMENT);
      expect(vfio.message).toMatch(/devices\[0\]\.type "vfio" is not supported/);
      // A device that never comes: DEADLINE_EXCEEDED naming it after agent.hotplug_timeout (1 s here).
      const never = await rejection(c.call('CreateContainer', { container_id: 'c-bad', OCI: spec({ args: ['true'] }), devices: [{ id: '1f/1e', type: 'blk' }] }));
      expect(never.code).toBe(Code.DEADLINE_EXCEEDED);
      expect(never.message).toMatch(/PCI path 1f\/1e/);
      const escape = await rejection(c.call('CreateContainer', { container_id: 'c-bad', OCI: spec({ args: ['true'], rootPath: '/etc' }) }));
      expect(escape.code).toBe(Code.INVALID_ARGUMENT);
      expect(escape.message).toMatch(/Root\.Path \/etc is not below \/run\/kata-containers/);
      // A runtime failure returns the runtime's error and leaves nothing behind.
      const rtFail = await rejection(c.call('CreateContainer', { container_id: 'c-bad', OCI: spec({ args: ['/no/such/binary'] }) }));
      expect(rtFail.message).toContain(`${runtime} create c-bad failed`);
      expect(rtFail.message).toContain('/no/such/binary');
      expect(fs.existsSync(agent.inAgent('/run/kata-containers/c-bad'))).toBe(false);
      for (const ctrl of V1_CONTROLLERS) expect(fs.existsSync(hostCgroup(ctrl, cg('c-bad'))), ctrl).toBe(false);
      // agent-ctl sees the same statuses.
      const ctl = agentCtl(['--addr', agent.addr, 'call', 'StartContainer', '--json', '{"container_id":"nope"}']);
      expect(ctl.code).toBe(1);
      expect(ctl.stderr).toMatch(/^NOT_FOUND: /);
      await remove('c-err');
    });

    it('DestroySandbox removes every container, undoes the sandbox setup, and the agent stops', async () => {
      await create('c-left');
      await c.call('StartContainer', { container_id: 'c-left' });
      const oom = c.call('GetOOMEvent', {}).catch((e: unknown) => e);
      await c.call('DestroySandbox', {});
      expect(((await oom) as RpcError).code).toBe(Code.UNAVAILABLE);
      expect(fs.existsSync(hostCgroup('memory', cg('c-left')))).toBe(false);
      expect(fs.existsSync(hostCgroup('memory', sandboxCg))).toBe(false);
      expect(agent.mountInfo()).not.toMatch(/\/run\/kata-containers\/sandbox|resolv\.conf/);
      await agent.exited;
    });
  });
}
