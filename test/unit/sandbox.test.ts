// The Sandbox's bookkeeping with a fake OCI runtime, reaper, cgroups and
// syscalls (real pipes for the stdio): what is called in which order, which
// status a host gets, what is left behind. The real thing (crun, runc) is in
// test/integration/containers.test.ts.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Cgroups } from '../../agent/src/cgroups/types';
import { nullLogger } from '../../agent/src/log';
import type { ExitStatus } from '../../agent/src/proc/reaper';
import type { Spawner, SpawnOptions } from '../../agent/src/proc/spawner';
import { Code, RpcError } from '../../agent/src/rpc/status';
import type { ContainerState, CreateOptions, ExecOptions, OciRuntime } from '../../agent/src/runtime/oci-runtime';
import { ociSpecToGrpc, type OciSpec } from '../../agent/src/runtime/spec';
import { Sandbox, type CreateContainerInput, type SandboxOptions } from '../../agent/src/sandbox/sandbox';
import { PassThrough } from 'node:stream';
import { minimalOciConfig, minimalProcess } from '../helpers/busybox-rootfs';

class FakeRuntime implements OciRuntime {
  readonly name = 'fake';
  readonly binary = 'fake';
  calls: string[] = [];
  nextPid = 1000;
  failCreate?: RpcError;
  failKill = false;
  /** Output the next created/exec'd process "writes" to its stdout pipe. */
  output = '';
  async create(id: string, bundleDir: string, o: CreateOptions): Promise<{ pid: number }> {
    this.calls.push(`create ${id} noPivot=${o.noPivot === true}`);
    expect(fs.existsSync(path.join(bundleDir, 'config.json'))).toBe(true);
    if (this.failCreate) throw this.failCreate;
    return { pid: this.started(o) };
  }
  async start(id: string): Promise<void> {
    this.calls.push(`start ${id}`);
  }
  async exec(id: string, processJson: string, o: ExecOptions): Promise<{ pid: number }> {
    const p = JSON.parse(fs.readFileSync(processJson, 'utf8')) as { args: string[] };
    this.calls.push(`exec ${id} ${p.args.join(' ')}`);
    return { pid: this.started(o) };
  }
  private started(o: CreateOptions | ExecOptions): number {
    const out = o.stdio?.stdout;
    if (typeof out === 'number' && this.output) fs.writeSync(out, this.output);
    this.output = '';
    return this.nextPid++;
  }
  async kill(id: string, signal: number, all = false): Promise<void> {
    this.calls.push(`kill ${id} ${signal}${all ? ' all' : ''}`);
    if (this.failKill) throw new RpcError(Code.FAILED_PRECONDITION, 'container not running');
  }
  async delete(id: string, force = false): Promise<void> {
    this.calls.push(`delete ${id}${force ? ' force' : ''}`);
  }
  async state(id: string): Promise<ContainerState> {
    return { id, status: 'running', pid: 1, bundle: '' };
  }
  async ps(): Promise<number[]> {
    return [1000];
  }
  async pause(id: string): Promise<void> {
    this.calls.push(`pause ${id}`);
  }
  async resume(id: string): Promise<void> {
    this.calls.push(`resume ${id}`);
  }
  async update(id: string): Promise<void> {
    this.calls.push(`update ${id}`);
  }
}

class FakeReaper {
  private cbs = new Map<number, (st: ExitStatus) => void>();
  watch(pid: number, cb: (st: ExitStatus) => void): () => void {
    this.cbs.set(pid, cb);
    return () => this.cbs.delete(pid);
  }
  exit(pid: number, code: number, signal?: number): void {
    const cb = this.cbs.get(pid);
    this.cbs.delete(pid);
    cb?.({ pid, code, signal, raw: 0 });
  }
}

function fakeCgroups(log: string[], pids: number[] = []): Cgroups {
  return {
    mode: 'v1',
    root: '/fake',
    controllers: () => ['memory', 'pids'],
    path: (rel: string) => `/fake${rel}`,
    paths: (rel: string) => ({ memory: `/fake${rel}` }),
    exists: () => true,
    create: (rel: string) => void log.push(`cg create ${rel}`),
    remove: async (rel: string) => void log.push(`cg remove ${rel}`),
    addProcess: () => undefined,
    pids: () => pids,
    stats: () => ({ hugetlb_stats: {}, pids_stats: { current: 1, limit: 0 } }),
    update: (rel: string, r: Record<string, unknown>) => {
      log.push(`cg update ${rel} ${JSON.stringify(r)}`);
      return ['pids.max'];
    },
    freeze: async () => undefined,
    watchOom: (rel: string, onOom: () => void) => {
      log.push(`cg watchOom ${rel}`);
      oomTriggers.push(onOom);
      return { close: () => void log.push(`cg unwatchOom ${rel}`), check: () => undefined, via: 'fake' };
    },
  } as unknown as Cgroups;
}
let oomTriggers: Array<() => void> = [];

/** A Spawner whose processes (unshare, modprobe, ps) succeed at once; records the argv. */
function fakeSpawner(argvs: string[][]): Spawner {
  return {
    spawn(o: SpawnOptions) {
      argvs.push(o.args);
      const stdout = new PassThrough();
      const stderr = new PassThrough();
      stdout.end();
      stderr.end();
      return { pid: 4242, exited: Promise.resolve({ pid: 4242, code: 0, raw: 0 }), stdout, stderr };
    },
  } as unknown as Spawner;
}

let dir: string;
let rt: FakeRuntime;
let reaper: FakeReaper;
let cgLog: string[];
let kills: string[];
let spawned: string[][];
let sb: Sandbox;

function make(over: { isInit?: boolean; cgPids?: number[]; storage?: SandboxOptions['storage']; devices?: SandboxOptions['devices'] } = {}): Sandbox {
  const proc = path.join(dir, 'proc');
  fs.mkdirSync(path.join(proc, 'self'), { recursive: true });
  fs.writeFileSync(path.join(proc, 'self/mountinfo'), '21 1 8:1 / / rw - ext4 /dev/vda rw\n');
  return new Sandbox({
    log: nullLogger(),
    spawner: fakeSpawner(spawned),
    reaper,
    runtime: rt,
    isInit: over.isInit ?? true,
    cgroups: () => fakeCgroups(cgLog, over.cgPids),
    paths: { runDir: path.join(dir, 'run'), proc, resolvConf: path.join(dir, 'etc/resolv.conf') },
    storage: over.storage,
    devices: over.devices,
    sys: {
      kill: (pid, sig) => {
        kills.push(`${pid} ${sig}`);
        if (pid === 9999) throw Object.assign(new Error('ESRCH'), { code: 'ESRCH' });
      },
      sethostname: (n) => void kills.push(`sethostname ${n}`),
      mount: () => undefined,
      umount2: () => undefined,
      clockTicks: () => 100,
    },
  });
}

function specFor(args: string[], o: { terminal?: boolean; cgroupsPath?: string } = {}) {
  return ociSpecToGrpc(minimalOciConfig({ args, ...o }) as unknown as OciSpec);
}

function input(cid: string, over: Partial<CreateContainerInput> = {}): CreateContainerInput {
  fs.mkdirSync(path.join(dir, 'run/shared/containers', cid, 'rootfs'), { recursive: true });
  return { containerId: cid, execId: '', devices: [], storages: [], spec: specFor(['sleep', '1']), sandboxPidns: false, ...over };
}

async function status(p: Promise<unknown>): Promise<RpcError> {
  try {
    await p;
  } catch (err) {
    return err as RpcError;
  }
  throw new Error('expected a failure');
}

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-sandbox-unit-'));
  rt = new FakeRuntime();
  reaper = new FakeReaper();
  cgLog = [];
  kills = [];
  spawned = [];
  oomTriggers = [];
  sb = make();
});

afterEach(async () => {
  for (const c of sb.containers.values()) for (const p of c.processes()) p.io.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('CreateContainer', () => {
  it('writes the rewritten bundle, creates through the runtime, watches the init and its OOM kills', async () => {
    rt.output = 'hello\n';
    await sb.createContainer(input('c1'));
    expect(rt.calls).toEqual(['create c1 noPivot=false']);
    const c = sb.container('c1');
    expect(c.cgroupRel).toBe('/kata/default/c1');
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'run/c1/config.json'), 'utf8')) as OciSpec;
    expect(cfg.root!.path).toBe(path.join(dir, 'run/shared/containers/c1/rootfs'));
    expect(cfg.linux!.cgroupsPath).toBe('/kata/default/c1');
    // The OOM watch is set up just after the reply, and StartContainer waits for it.
    expect(cgLog).toEqual([]);
    await sb.startContainer('c1');
    expect(cgLog).toEqual(['cg watchOom /kata/default/c1']);
    expect(rt.calls).toEqual(['create c1 noPivot=false', 'start c1']);
    expect((await sb.readStream('c1', '', 'stdout', 100)).toString()).toBe('hello\n');
    // the first container's pid namespace becomes the sandbox's
    expect(sb.sharedNamespaces.pid).toBe(path.join(dir, 'proc/1000/ns/pid'));
    oomTriggers[0]!();
    expect(await sb.nextOomEvent()).toBe('c1');
  });

  it('refuses duplicates, reserved ids, devices, storages, bad specs and a missing rootfs; nothing is created', async () => {
    await sb.createContainer(input('c1'));
    expect((await status(sb.createContainer(input('c1')))).code).toBe(Code.ALREADY_EXISTS);
    expect((await status(sb.createContainer(input('shared')))).code).toBe(Code.INVALID_ARGUMENT);
    expect((await status(sb.createContainer(input('c2', { devices: [{}] })))).code).toBe(Code.UNIMPLEMENTED);
    expect((await status(sb.createContainer(input('c2', { storages: [{}] })))).code).toBe(Code.UNIMPLEMENTED);
    const bad = specFor(['x']);
    bad.Process!.Cwd = 'relative';
    const e = await status(sb.createContainer(input('c2', { spec: bad })));
    expect(e.code).toBe(Code.INVALID_ARGUMENT);
    expect(e.message).toMatch(/Process\.Cwd/);
    const noRoot = await status(sb.createContainer({ ...input('c3'), containerId: 'c4' }));
    expect(noRoot.code).toBe(Code.NOT_FOUND);
    expect(noRoot.message).toContain(path.join(dir, 'run/shared/containers/c4/rootfs'));
    const badCg = await status(sb.createContainer(input('c5', { spec: specFor(['x'], { cgroupsPath: '/kata-agent/x' }) })));
    expect(badCg.code).toBe(Code.INVALID_ARGUMENT);
    expect(rt.calls).toEqual(['create c1 noPivot=false']);
    expect([...sb.containers.keys()]).toEqual(['c1']);
  });

  it('a runtime failure is returned as is and leaves no bundle, cgroup or runtime state', async () => {
    rt.failCreate = new RpcError(Code.INTERNAL, 'fake create c1 failed: boom');
    const e = await status(sb.createContainer(input('c1')));
    expect(e.message).toBe('fake create c1 failed: boom');
    expect(rt.calls).toEqual(['create c1 noPivot=false', 'delete c1 force']);
    expect(cgLog).toEqual(['cg remove /kata/default/c1']);
    expect(fs.existsSync(path.join(dir, 'run/c1'))).toBe(false);
    expect(sb.containers.size).toBe(0);
    // the id is free again
    rt.failCreate = undefined;
    await sb.createContainer(input('c1'));
  });

  it('the first container\'s pid namespace is the sandbox\'s; later containers join it with sandbox_pidns; it goes with its container', async () => {
    await sb.createContainer(input('c1'));
    await sb.createContainer(input('c2', { sandboxPidns: true }));
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'run/c2/config.json'), 'utf8')) as OciSpec;
    expect(cfg.linux!.namespaces).toContainEqual({ type: 'pid', path: path.join(dir, 'proc/1000/ns/pid') });
    const r = sb.removeContainer('c1', 0);
    await new Promise((res) => setImmediate(res));
    reaper.exit(1000, 137, 9);
    await r;
    expect(sb.sharedNamespaces.pid).toBeUndefined();
    expect((await status(sb.createContainer(input('c3', { sandboxPidns: true })))).message).toMatch(/Sandbox does not have sandbox_pidns/);
  });

  it('sandbox_pidns without a known pid namespace and other containers: Kata\'s error', async () => {
    await sb.createContainer(input('c1'));
    sb.sharedNamespaces = {};
    const e = await status(sb.createContainer(input('c2', { sandboxPidns: true })));
    expect(e.code).toBe(Code.FAILED_PRECONDITION);
    expect(e.message).toMatch(/Sandbox does not have sandbox_pidns/);
  });
});

describe('signals and waits', () => {
  beforeEach(async () => {
    await sb.createContainer(input('c1'));
    await sb.startContainer('c1');
  });

  it('empty exec id + SIGKILL signals every process (runtime kill --all); the cgroup when the runtime refuses', async () => {
    await sb.signalProcess('c1', '', 9);
    expect(rt.calls.at(-1)).toBe('kill c1 9 all');
    rt.failKill = true;
    sb = make({ cgPids: [1000, 1234] });
    await sb.createContainer(input('c2'));
    await sb.signalProcess('c2', '', 9);
    expect(kills).toEqual(['1000 9', '1234 9', '1001 9']); // the cgroup's pids, then the tracked init
  });

  it('SIGTERM to an init without a SIGTERM handler becomes SIGKILL; an exec gets the signal as sent', async () => {
    const status1000 = path.join(dir, 'proc/1000');
    fs.mkdirSync(status1000, { recursive: true });
    fs.writeFileSync(path.join(status1000, 'status'), 'SigCgt:\t0000000000000000\n');
    await sb.signalProcess('c1', '', 15);
    expect(kills).toEqual(['1000 9']);
    fs.writeFileSync(path.join(status1000, 'status'), 'SigCgt:\t0000000000004000\n'); // bit 15
    await sb.signalProcess('c1', '', 15);
    expect(kills).toEqual(['1000 9', '1000 15']);
    await sb.execProcess('c1', 'e1', ociSpecToGrpc({ ociVersion: '1', process: minimalProcess(['sh']) } as unknown as OciSpec).Process);
    await sb.signalProcess('c1', 'e1', 15);
    expect(kills.at(-1)).toBe('1001 15');
    expect((await status(sb.signalProcess('c1', 'nope', 15))).code).toBe(Code.NOT_FOUND);
    expect((await status(sb.signalProcess('nope', '', 15))).code).toBe(Code.NOT_FOUND);
    expect((await status(sb.signalProcess('c1', '', 65))).code).toBe(Code.INVALID_ARGUMENT);
    // an exited process is not signalled (its pid may be reused)
    reaper.exit(1001, 0);
    await sb.signalProcess('c1', 'e1', 15);
    expect(kills.at(-1)).toBe('1001 15');
    expect(kills).toHaveLength(3);
  });

  it('WaitProcess: the exit status (128+signal), the exec forgotten afterwards, the init kept', async () => {
    const proc = ociSpecToGrpc({ ociVersion: '1', process: minimalProcess(['sh']) } as unknown as OciSpec).Process;
    rt.output = 'out\n';
    await sb.execProcess('c1', 'e1', proc);
    expect((await status(sb.execProcess('c1', 'e1', proc))).code).toBe(Code.ALREADY_EXISTS);
    const w = sb.waitProcess('c1', 'e1');
    reaper.exit(1001, 3);
    expect(await w).toBe(3);
    expect((await status(sb.waitProcess('c1', 'e1'))).code).toBe(Code.NOT_FOUND);
    expect((await status(sb.writeStdin('c1', 'e1', Buffer.from('x')))).code).toBe(Code.NOT_FOUND);
    // its output is still there to drain
    expect((await sb.readStream('c1', 'e1', 'stdout', 10)).toString()).toBe('out\n');
    // the id can be used again
    await sb.execProcess('c1', 'e1', proc);
    reaper.exit(1000, 137, 9);
    expect(await sb.waitProcess('c1', '')).toBe(137);
    expect(await sb.waitProcess('c1', 'c1')).toBe(137);
    expect(sb.container('c1').status).toBe('stopped');
    const ac = new AbortController();
    const pending = sb.waitProcess('c1', 'e1', ac.signal);
    ac.abort();
    expect((await status(pending)).code).toBe(Code.CANCELLED);
  });
});

describe('RemoveContainer', () => {
  beforeEach(async () => {
    await sb.createContainer(input('c1'));
    await sb.startContainer('c1');
  });

  it('kills, waits, deletes with --force, removes cgroup and bundle', async () => {
    const r = sb.removeContainer('c1', 5);
    await new Promise((res) => setImmediate(res));
    expect(rt.calls.at(-1)).toBe('kill c1 9 all');
    reaper.exit(1000, 137, 9);
    await r;
    expect(rt.calls.slice(-2)).toEqual(['kill c1 9 all', 'delete c1 force']);
    expect(cgLog.slice(-2)).toEqual(['cg unwatchOom /kata/default/c1', 'cg remove /kata/default/c1']);
    expect(fs.existsSync(path.join(dir, 'run/c1'))).toBe(false);
    expect((await status(sb.startContainer('c1'))).code).toBe(Code.NOT_FOUND);
  });

  it('a timeout is DEADLINE_EXCEEDED and leaves the container whole; a later call finishes', async () => {
    const e = await status(sb.removeContainer('c1', 1));
    expect(e.code).toBe(Code.DEADLINE_EXCEEDED);
    expect(e.message).toMatch(/processes 1000 did not exit within 1 s; the container is left in place/);
    expect(rt.calls).not.toContain('delete c1 force');
    expect(fs.existsSync(path.join(dir, 'run/c1/config.json'))).toBe(true);
    expect(sb.container('c1')).toBeTruthy();
    reaper.exit(1000, 137, 9);
    await sb.removeContainer('c1', 1);
    expect(rt.calls.at(-1)).toBe('delete c1 force');
  });

  it('a paused container is resumed before it is killed', async () => {
    await sb.pauseContainer('c1');
    expect(sb.container('c1').status).toBe('paused');
    const r = sb.removeContainer('c1', 0);
    await new Promise((res) => setTimeout(res, 10));
    reaper.exit(1000, 137, 9);
    await r;
    expect(rt.calls.slice(-4)).toEqual(['pause c1', 'resume c1', 'kill c1 9 all', 'delete c1 force']);
  });
});

describe('sandbox', () => {
  it('CreateSandbox as PID 1: host name, shared ipc+uts via unshare, sandbox cgroup; DestroySandbox tears down and calls onDestroyed', async () => {
    const proc = path.join(dir, 'proc');
    const runDir = path.join(dir, 'run');
    // unshare's effect as the agent would see it
    fs.writeFileSync(
      path.join(proc, 'self/mountinfo'),
      [
        '21 1 8:1 / / rw - ext4 /dev/vda rw',
        `40 21 0:4 ipc:[1] ${runDir}/sandbox/ns/ipc rw - nsfs nsfs rw`,
        `41 21 0:4 uts:[2] ${runDir}/sandbox/ns/uts rw - nsfs nsfs rw`,
      ].join('\n'),
    );
    let destroyed = 0;
    sb = new Sandbox({
      ...((sb as unknown as { opts: object }).opts as ConstructorParameters<typeof Sandbox>[0]),
      onDestroyed: () => destroyed++,
    });
    await sb.createSandbox({ hostname: 'pod', dns: [], storages: [], sandboxPidns: false, sandboxId: 'sbx1', guestHookPath: '', kernelModules: [] });
    expect(kills).toEqual(['sethostname pod']);
    expect(spawned).toEqual([['unshare', `--ipc=${runDir}/sandbox/ns/ipc`, `--uts=${runDir}/sandbox/ns/uts`, 'true']]);
    expect(sb.sharedNamespaces).toEqual({ ipc: `${runDir}/sandbox/ns/ipc`, uts: `${runDir}/sandbox/ns/uts` });
    expect(cgLog).toEqual(['cg create /kata/sbx1']);
    expect((await status(sb.createSandbox({ hostname: '', dns: [], storages: [], sandboxPidns: false, sandboxId: 'sbx1', guestHookPath: '', kernelModules: [] }))).code).toBe(
      Code.ALREADY_EXISTS,
    );
    await sb.createContainer(input('c1'));
    const cfg = JSON.parse(fs.readFileSync(path.join(runDir, 'c1/config.json'), 'utf8')) as OciSpec;
    expect(cfg.linux!.namespaces).toEqual(
      expect.arrayContaining([
        { type: 'ipc', path: `${runDir}/sandbox/ns/ipc` },
        { type: 'uts', path: `${runDir}/sandbox/ns/uts` },
      ]),
    );
    expect(cfg.hostname).toBeUndefined();
    const oom = sb.nextOomEvent();
    const d = sb.destroySandbox();
    await new Promise((res) => setImmediate(res));
    reaper.exit(1000, 137, 9);
    await d;
    await expect(oom).rejects.toMatchObject({ code: Code.UNAVAILABLE });
    expect(rt.calls.slice(-2)).toEqual(['kill c1 9 all', 'delete c1 force']);
    expect(cgLog.slice(-1)).toEqual(['cg remove /kata/sbx1']);
    expect(fs.existsSync(path.join(runDir, 'sandbox'))).toBe(false);
    await new Promise((res) => setTimeout(res, 150));
    expect(destroyed).toBe(1);
    expect((await status(sb.createContainer(input('c2')))).code).toBe(Code.FAILED_PRECONDITION);
  });

  it('not PID 1: the guest host name is left alone; containers get it in a UTS namespace of their own', async () => {
    const runDir = path.join(dir, 'run');
    sb = make({ isInit: false });
    fs.writeFileSync(path.join(dir, 'proc/self/mountinfo'), `21 1 8:1 / / rw - ext4 /dev/vda rw\n40 21 0:4 ipc:[1] ${runDir}/sandbox/ns/ipc rw - nsfs nsfs rw\n`);
    await sb.createSandbox({ hostname: 'pod', dns: [], storages: [], sandboxPidns: false, sandboxId: 'sbx1', guestHookPath: '', kernelModules: [] });
    expect(kills).toEqual([]);
    expect(spawned).toEqual([['unshare', `--ipc=${runDir}/sandbox/ns/ipc`, 'true']]);
    const spec = specFor(['true']);
    spec.Hostname = '';
    await sb.createContainer(input('c1', { spec }));
    const cfg = JSON.parse(fs.readFileSync(path.join(runDir, 'c1/config.json'), 'utf8')) as OciSpec;
    expect(cfg.hostname).toBe('pod');
    expect(cfg.linux!.namespaces).toContainEqual({ type: 'uts' });
  });

  it('UpdateContainer writes the cgroup; absent resources do nothing; bad ones are INVALID_ARGUMENT', async () => {
    await sb.createContainer(input('c1'));
    expect(await sb.updateContainer('c1', { Pids: { Limit: 42 } })).toEqual(['pids.max']);
    expect(cgLog.at(-1)).toBe('cg update /kata/default/c1 {"pids":{"limit":42}}');
    expect(await sb.updateContainer('c1', null)).toEqual([]);
    expect((await status(sb.updateContainer('c1', { CPU: { Cpus: 'x-y' } }))).code).toBe(Code.INVALID_ARGUMENT);
    expect((await status(sb.updateContainer('nope', {}))).code).toBe(Code.NOT_FOUND);
  });

  it('ListProcesses json and table, GetDiagnosticData termination_log', async () => {
    const oci = minimalOciConfig({ args: ['true'] }) as unknown as OciSpec;
    const logFile = path.join(dir, 'termination-log');
    oci.annotations = { 'io.kubernetes.container.terminationMessagePath': '/dev/termination-log' };
    oci.mounts!.push({ destination: '/dev/termination-log', source: logFile, type: 'bind', options: ['bind'] });
    await sb.createContainer(input('c1', { spec: ociSpecToGrpc(oci) }));
    expect(JSON.parse((await sb.listProcesses('c1', 'json', [])).toString())).toEqual([1000]);
    expect((await sb.listProcesses('c1', 'table', [])).toString()).toMatch(/^UID +PID +PPID +C +STIME +TTY +TIME +CMD\n$/);
    expect((await status(sb.listProcesses('c1', '', []))).code).toBe(Code.INVALID_ARGUMENT);
    expect(await sb.diagnosticData('c1', 'termination_log')).toBe('');
    fs.writeFileSync(logFile, 'x'.repeat(5000));
    expect(await sb.diagnosticData('c1', 'termination_log')).toBe('x'.repeat(4096));
    expect((await status(sb.diagnosticData('c1', 'other'))).code).toBe(Code.INVALID_ARGUMENT);
  });
});

describe('storages and devices (fake layers)', () => {
  function layers(events: string[], o: { failAdd?: boolean } = {}) {
    const storage = {
      add: async (specs: Array<{ mountPoint: string }>, owner: string) => {
        events.push(`add ${owner} ${specs.map((x) => x.mountPoint).join(',')}`);
        if (o.failAdd) throw new RpcError(Code.FAILED_PRECONDITION, 'mount failed');
        return specs.map((x) => x.mountPoint);
      },
      release: async (owner: string) => (events.push(`release ${owner}`), []),
      closeAll: async () => (events.push('closeAll'), []),
      updateEphemeral: async () => void events.push('updateEphemeral'),
    } as unknown as SandboxOptions['storage'];
    const wait = (kind: string) => async (id: string) => (events.push(`wait ${kind} ${id}`), { name: 'vdb', path: '/dev/vdb', major: 254, minor: 16 });
    const devices = () => ({ pciBlock: wait('pci'), scsiBlock: wait('scsi'), mmioBlock: wait('mmio'), pmem: wait('pmem') });
    return { storage, devices };
  }
  const vol = (cid: string) => ({ driver: 'local', source: 'local', mount_point: `/run/kata-containers/${cid}-vol`, options: ['mode=0777'] });

  it('CreateContainer: devices are waited for first, then the storages mount (owner = container id); the spec gets the guest numbers', async () => {
    const events: string[] = [];
    sb = make(layers(events));
    const spec = specFor(['true']);
    spec.Linux!.Devices = [{ Path: '/dev/xvda', Type: 'b', Major: 8, Minor: 0, FileMode: 0o660, UID: 0, GID: 0 }];
    await sb.createContainer(input('c1', { spec, devices: [{ type: 'blk', id: '02/01', container_path: '/dev/xvda' }], storages: [vol('c1')] }));
    expect(events).toEqual(['wait pci 02/01', 'add c1 /run/kata-containers/c1-vol']);
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'run/c1/config.json'), 'utf8')) as OciSpec;
    expect(cfg.linux!.devices).toEqual([expect.objectContaining({ path: '/dev/xvda', major: 254, minor: 16 })]);
    reaper.exit(1000, 0);
    await sb.removeContainer('c1', 10);
    expect(events.at(-1)).toBe('release c1');
    expect(fs.existsSync(path.join(dir, 'run/c1'))).toBe(false);
  });

  it('a runtime failure after the storages mounted releases them and leaves no bundle', async () => {
    const events: string[] = [];
    sb = make(layers(events));
    rt.failCreate = new RpcError(Code.INTERNAL, 'crun create c1 failed: boom');
    expect((await status(sb.createContainer(input('c1', { storages: [vol('c1')] })))).message).toMatch(/boom/);
    expect(events).toEqual(['add c1 /run/kata-containers/c1-vol', 'release c1']);
    expect(fs.existsSync(path.join(dir, 'run/c1'))).toBe(false);
  });

  it('a storage that fails to mount: the error, no runtime call, no bundle', async () => {
    const events: string[] = [];
    sb = make(layers(events, { failAdd: true }));
    expect((await status(sb.createContainer(input('c1', { storages: [vol('c1')] })))).code).toBe(Code.FAILED_PRECONDITION);
    expect(rt.calls).toEqual([]);
    expect(fs.existsSync(path.join(dir, 'run/c1'))).toBe(false);
  });

  it('CreateSandbox storages belong to the sandbox; DestroySandbox unmounts everything; UpdateEphemeralMounts goes to the layer', async () => {
    const events: string[] = [];
    sb = make(layers(events));
    // unshare's effect as the agent would see it (the shared IPC namespace file)
    const runDir = path.join(dir, 'run');
    fs.writeFileSync(path.join(dir, 'proc/self/mountinfo'), ['21 1 8:1 / / rw - ext4 /dev/vda rw', `40 21 0:4 ipc:[1] ${runDir}/sandbox/ns/ipc rw - nsfs nsfs rw`, `41 21 0:4 uts:[2] ${runDir}/sandbox/ns/uts rw - nsfs nsfs rw`].join('\n'));
    await sb.createSandbox({ hostname: '', dns: [], storages: [vol('sb')], sandboxPidns: false, sandboxId: 'sb1', guestHookPath: '', kernelModules: [] });
    expect(events).toEqual(['add sandbox: /run/kata-containers/sb-vol']);
    await sb.updateEphemeralMounts([{ driver: 'ephemeral', source: 'tmpfs', fstype: 'tmpfs', options: ['remount', 'size=8m'], mount_point: '/run/kata-containers/sandbox/ephemeral/x' }]);
    expect(events.at(-1)).toBe('updateEphemeral');
    await sb.destroySandbox();
    expect(events.at(-1)).toBe('closeAll');
  });

  it('bad entries are INVALID_ARGUMENT naming them, before anything happens', async () => {
    const events: string[] = [];
    sb = make(layers(events));
    const e1 = await status(sb.createContainer(input('c1', { devices: [{ type: 'blk' }] })));
    expect(e1.code).toBe(Code.INVALID_ARGUMENT);
    expect(e1.message).toMatch(/devices\[0\]: a blk device needs id/);
    const e2 = await status(sb.createContainer(input('c1', { storages: [{ driver: 'nope', mount_point: '/run/kata-containers/x' }] })));
    expect(e2.code).toBe(Code.INVALID_ARGUMENT);
    expect(e2.message).toMatch(/storages\[0\].*unknown storage driver "nope"/);
    expect(events).toEqual([]);
  });
});
