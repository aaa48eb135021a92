// Container lifecycle benchmarks (issue 3). One run measures, against the real agent
// (dist/kata-agent.mjs) driving crun, next to crun driven directly:
//  1. create+start+wait of `true`: CreateContainer + StartContainer + WaitProcess over ttrpc
//     (the measure; RemoveContainer follows, timed on its own), vs `crun run` of the
//     same bundle (the config.json the agent itself wrote for its container, with its own
//     rootfs and cgroup path). `crun run` also deletes the container: the full agent cycle
//     with RemoveContainer is reported next to it as well;
//  2. exec `true` in a running `sleep` container: ExecProcess + WaitProcess over ttrpc, vs
//     `crun exec --process` of the same container;
//  3. stdout throughput: ReadStdout (len 1 MiB per call) of a container running busybox
//     `dd if=/dev/zero bs=1M count=256` (256 MiB), vs the same busybox command's stdout read
//     from a pipe by this node process.
//
// Set-up (test/helpers/containers-agent.ts, as the container tests): an outer `unshare -m` unmounts the
// host's hybrid /sys/fs/cgroup, then the agent runs as PID 1 of `unshare -pfmu
// --mount-proc` with systemd.unified_cgroup_hierarchy=0 on its command line, so its init
// mounts cgroup v1 (which crun accepts). The crun baselines are spawned and timed by a
// helper process (this file with --baseline-helper) that `nsenter -t <agentPid> -m -p`
// put once into the agent's mount namespace (its cgroup mounts, its /run) and PID
// namespace, i.e. where the agent's own crun invocations run. The helper spawns crun with
// the agent's own Spawner and Reaper (posix_spawn, PATH-only environment, /dev/null
// stdio), so both sides pay the same process-start costs; it runs the stock binary from
// its path, as a user would (the agent runs a sealed in-memory copy, sealed-binary.ts).
// Agent and baseline alternate every iteration (the first of the pair changing each time);
// medians over N iterations are reported.
//
// Results: bench/results/containers.json (+ a table on stdout for docs/benchmarks.md).
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import path from 'node:path';
import { startContainersAgent, type ContainersAgent } from '../test/helpers/containers-agent';
import { Code, RpcError } from '../agent/src/rpc/status';
import { ociSpecToGrpc, type GrpcProcess, type OciSpec } from '../agent/src/runtime/spec';
import { makeBusyboxRootfs, minimalOciConfig, minimalProcess } from '../test/helpers/busybox-rootfs';
import { Reaper } from '../agent/src/proc/reaper';
import { DEFAULT_ENV, DEFAULT_PATH, Spawner, resolveInPath } from '../agent/src/proc/spawner';
import { sealBinary } from '../agent/src/runtime/sealed-binary';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const opt = (name: string): string | undefined => (argv.includes(name) ? argv[argv.indexOf(name) + 1] : undefined);
const root = process.cwd();
const agentBin = path.resolve(opt('--agent') ?? path.join(root, 'dist/kata-agent.mjs'));
const outFile = path.resolve(opt('--out') ?? path.join(root, 'bench/results/containers.json'));

const N = quick ? 5 : 30; // timed iterations per side (lifecycle, exec)
const N_TP = quick ? 3 : 20; // timed iterations per side (throughput)
const WARM = quick ? 1 : 3; // untimed iterations per side first
const TP_BYTES = 256 * 1024 * 1024;
const READ_LEN = 1024 * 1024;
const SID = `gk-bench-${process.pid}`;
const CG_ROOT = '/sys/fs/cgroup';
const BENCH_DIR = '/run/gk-bench'; // inside the agent's mount namespace
const CRUN_ROOT = '/run/gk-bench/crun-state'; // crun --root of the `crun run` baseline
const AGENT_CRUN_ROOT = '/run/crun'; // the agent's crun --root (OciRuntime default /run/<name>)

const r1 = (x: number): number => Math.round(x * 10) / 10;
const r2 = (x: number): number => Math.round(x * 100) / 100;
const median = (a: number[]): number => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;
const log = (s: string): void => void process.stderr.write(`${s}\n`);

// Children run without these (they change every node process; see bench/agent-core.ts).
const childEnv: NodeJS.ProcessEnv = { ...process.env };
for (const k of ['NODE_EXTRA_CA_CERTS', 'NODE_OPTIONS']) delete childEnv[k];

/** The agent as PID 1 of its own namespaces, mounting its own cgroup v1 (see the header). */
async function startAgent(): Promise<ContainersAgent> {
  return startContainersAgent({
    cmdline: 'systemd.unified_cgroup_hierarchy=0',
    agent: agentBin,
    logLevel: 'info',
    env: { NODE_EXTRA_CA_CERTS: undefined, NODE_OPTIONS: undefined },
  });
}

/** Read the whole stdout of `file args` from a pipe; resolves with the byte count. */
function readPipe(file: string, args: string[]): Promise<number> {
  return new Promise((resolve, reject) => {
    const c = spawn(file, args, { stdio: ['ignore', 'pipe', 'inherit'], env: childEnv });
    let n = 0;
    c.stdout!.on('data', (d: Buffer) => void (n += d.length));
    c.once('error', reject);
    c.once('close', (code) => (code === 0 ? resolve(n) : reject(new Error(`${file} exited ${code}`))));
  });
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

// ---------------------------------------------------------------------------------------------
// The baseline helper: one JSON request per stdin line ({"args": [...]}, crun's arguments),
// one JSON reply per stdout line ({"ms", "code", "err"}): crun spawned and reaped as the
// agent does it, timed from just before posix_spawn to the reaped exit.

async function baselineHelper(): Promise<void> {
  const reaper = new Reaper();
  reaper.start();
  const spawner = new Spawner(reaper);
  const errFile = `/run/gk-bench-helper-${process.pid}.err`;
  const sealed = sealBinary(resolveInPath('crun', DEFAULT_PATH), 'crun');
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    const { args, fromSealedCopy } = JSON.parse(line) as { args: string[]; fromSealedCopy?: boolean };
    const t0 = process.hrtime.bigint();
    const p = spawner.spawn({
      file: fromSealedCopy ? sealed.execPath : 'crun',
      args: ['crun', ...args],
      env: [...DEFAULT_ENV],
      stdin: 'null',
      stdout: 'null',
      stderr: { open: errFile, flags: fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC, mode: 0o600 },
    });
    const st = await p.exited;
    const t = ms(t0);
    const err = st.code === 0 ? '' : fs.readFileSync(errFile, 'utf8');
    process.stdout.write(`${JSON.stringify({ ms: t, code: st.code, err })}\n`);
  }
  fs.rmSync(errFile, { force: true });
  reaper.stop();
}

/** Start the helper in the agent's namespaces; returns a function that runs crun there and resolves with its time. */
function startHelper(agentPid: number): { crun: (args: string[], fromSealedCopy?: boolean) => Promise<number>; stop: () => void } {
  const self = fileURLToPath(import.meta.url);
  const child: ChildProcess = spawn('nsenter', ['-t', String(agentPid), '-m', '-p', process.execPath, self, '--baseline-helper'], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: childEnv,
  });
  const lines = readline.createInterface({ input: child.stdout! });
  const waiting: Array<(l: string) => void> = [];
  lines.on('line', (l) => waiting.shift()?.(l));
  return {
    crun: (args, fromSealedCopy = false) =>
      new Promise<number>((resolve, reject) => {
        waiting.push((l) => {
          const r = JSON.parse(l) as { ms: number; code: number; err: string };
          if (r.code !== 0) reject(new Error(`crun ${args.join(' ')} exited ${r.code}: ${r.err}`));
          else resolve(r.ms);
        });
        child.stdin!.write(`${JSON.stringify({ args, fromSealedCopy })}\n`);
      }),
    stop: () => {
      child.stdin!.end();
    },
  };
}

/**
 * The kernel's cost of moving a process between cgroups (the median of 7 moves of a
 * sleeping child into a fresh cgroup), which crun pays in every create and run. Without
 * the favordynmods cgroup mount option each move waits for an RCU grace period (~5-7 ms
 * measured here); with it, ~0.25 ms. Recorded because it shifts both sides of the
 * lifecycle comparison; undefined when no cgroup hierarchy is writable.
 */
async function migrationMs(): Promise<number | undefined> {
  const root = ['/sys/fs/cgroup/pids', '/sys/fs/cgroup/unified', '/sys/fs/cgroup'].find((d) => fs.existsSync(path.join(d, 'cgroup.procs')));
  if (!root) return undefined;
  const dir = path.join(root, `gk-bench-migrate-${process.pid}`);
  const times: number[] = [];
  try {
    fs.mkdirSync(dir);
    for (let i = 0; i < 7; i++) {
      const child = spawn('sleep', ['5'], { stdio: 'ignore' });
      await new Promise((r) => setTimeout(r, 50));
      const t0 = process.hrtime.bigint();
      fs.writeFileSync(path.join(dir, 'cgroup.procs'), String(child.pid));
      times.push(ms(t0));
      child.kill('SIGKILL');
      await new Promise((r) => child.once('close', r));
    }
  } catch {
    return undefined;
  } finally {
    try {
      fs.rmdirSync(dir);
    } catch {
      // still busy: left for the next run
    }
  }
  return r2(median(times));
}

async function main(): Promise<void> {
  if (argv.includes('--baseline-helper')) return baselineHelper();
  if (!fs.existsSync(agentBin)) throw new Error(`${agentBin} is missing: run npm run build`);
  if (process.getuid?.() !== 0) throw new Error('the containers benchmark needs root (namespaces, cgroups, crun)');
  const cpus = os.cpus();
  const crunVersion = await new Promise<string>((res) => {
    const c = spawn('crun', ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let s = '';
    c.stdout!.on('data', (d: Buffer) => void (s += d.toString()));
    c.once('close', () => res(s.split('\n')[0] ?? ''));
    c.once('error', () => res('unknown'));
  });
  const results: Record<string, any> = {
    date: new Date().toISOString(),
    quick,
    agent: path.relative(root, agentBin),
    machine: {
      node: process.version,
      kernel: `${os.type()} ${os.release()}`,
      arch: os.arch(),
      cpus: cpus.length,
      cpu_model: cpus[0]?.model,
      mem_total_gb: r1(os.totalmem() / 2 ** 30),
      loadavg_at_start: os.loadavg().map(r2),
      oci_runtime: crunVersion,
      cgroup_migration_ms: await migrationMs(),
    },
    method: {
      setup:
        'agent = PID 1 of unshare -pfmu --mount-proc inside an outer unshare -m that unmounted the host /sys/fs/cgroup; kernel command line systemd.unified_cgroup_hierarchy=0 (agent-mounted cgroup v1); log level info; one sandbox (CreateSandbox)',
      client: 'AgentClient over ttrpc on a unix socket, one call in flight',
      baseline: `crun ... (the stock binary from its path) spawned and timed by a helper process in the agent's mount and PID namespaces (nsenter once), with the agent's Spawner and Reaper: posix_spawn, PATH-only environment, stdin/stdout /dev/null, stderr to a file`,
      lifecycle_agent: 'CreateContainer + StartContainer + WaitProcess of `true` (rootfs prepared before the timer); RemoveContainer timed separately right after',
      lifecycle_baseline: `crun --root ${CRUN_ROOT} run -b BUNDLE ID; BUNDLE/config.json = the config.json the agent wrote for its warm-up container, root.path and cgroupsPath changed`,
      exec_agent: 'ExecProcess + WaitProcess of `true` in a running `sleep 100000` container',
      exec_baseline: `crun --root ${AGENT_CRUN_ROOT} exec --process process.json <same container> (process.json from minimalProcess(['true']))`,
      throughput_agent: `StartContainer -> ReadStdout (len ${READ_LEN}) until EOF of a container running busybox dd if=/dev/zero bs=1M count=${TP_BYTES / 1048576}`,
      throughput_baseline: `spawn busybox dd if=/dev/zero bs=1M count=${TP_BYTES / 1048576}, read its stdout pipe in this node process until close`,
      iterations: { lifecycle: N, exec: N, throughput: N_TP, warmup_each: WARM },
      lifecycle_runtime_share: 'crun create + crun start of the same bundle from a sealed in-memory copy of crun (as the agent runs it), spawned and timed by the helper: what the runtime itself costs in the agent lifecycle',
      order: 'the measured functions run in turn every iteration (agent, baseline[, runtime share]), the first of each round rotating; medians reported',
    },
  };

  let agent: ContainersAgent | undefined;
  let helper: ReturnType<typeof startHelper> | undefined;
  try {
    agent = await startAgent();
    const a = agent;
    const c = await a.client();
    await c.call('CreateSandbox', { sandbox_id: SID, hostname: 'gk-bench' });
    fs.mkdirSync(a.inAgent(BENCH_DIR), { recursive: true });
    makeBusyboxRootfs(a.inAgent(`${BENCH_DIR}/rootfs`));

    const spec = (args: string[]): ReturnType<typeof ociSpecToGrpc> => ociSpecToGrpc(minimalOciConfig({ args }) as unknown as OciSpec);
    const grpcProcess = (args: string[]): GrpcProcess =>
      ociSpecToGrpc({ ociVersion: '1.0.2', process: minimalProcess(args) } as unknown as OciSpec).Process!;
    const makeRootfs = (cid: string): void => void makeBusyboxRootfs(a.inAgent(`/run/kata-containers/shared/containers/${cid}/rootfs`));
    const dropRootfs = (cid: string): void => fs.rmSync(a.inAgent(`/run/kata-containers/shared/containers/${cid}`), { recursive: true, force: true });
    helper = startHelper(a.agentPid);
    const nsCrun = helper.crun;
    const isEof = (e: unknown): boolean => e instanceof RpcError && e.code === Code.INTERNAL && /eof/i.test(e.message);

    // --- 1. lifecycle ------------------------------------------------------------------------
    let seq = 0;
    let baselineConfig: Record<string, any> | undefined;
    const removeMs: number[] = []; // RemoveContainer of each timed agent lifecycle
    const agentLifecycle = async (): Promise<number> => {
      const cid = `ag-${seq++}`;
      makeRootfs(cid);
      const t0 = process.hrtime.bigint();
      await c.call('CreateContainer', { container_id: cid, exec_id: cid, OCI: spec(['true']) });
      if (!baselineConfig) baselineConfig = JSON.parse(fs.readFileSync(a.inAgent(`/run/kata-containers/${cid}/config.json`), 'utf8'));
      await c.call('StartContainer', { container_id: cid });
      const w = await c.call('WaitProcess', { container_id: cid, exec_id: '' });
      const t = ms(t0);
      const t1 = process.hrtime.bigint();
      await c.call('RemoveContainer', { container_id: cid, timeout: 10 });
      removeMs.push(ms(t1));
      if (w.status !== 0) throw new Error(`agent container ${cid}: status ${w.status}`);
      dropRootfs(cid);
      return t;
    };
    /** A bundle for the baseline: the agent's config.json with the shared rootfs and its own cgroup. */
    const baselineBundle = (id: string): string => {
      const bundle = `${BENCH_DIR}/bundles/${id}`;
      const cfg = structuredClone(baselineConfig!);
      cfg.root = { ...cfg.root, path: `${BENCH_DIR}/rootfs` };
      cfg.linux.cgroupsPath = `kata/${SID}/${id}`;
      fs.mkdirSync(a.inAgent(bundle), { recursive: true });
      fs.writeFileSync(a.inAgent(`${bundle}/config.json`), JSON.stringify(cfg));
      return bundle;
    };
    const crunLifecycle = async (): Promise<number> => {
      const id = `cr-${seq++}`;
      const bundle = baselineBundle(id);
      const t = await nsCrun(['--root', CRUN_ROOT, 'run', '-b', bundle, id]);
      fs.rmSync(a.inAgent(bundle), { recursive: true, force: true });
      return t;
    };
    /** Run the functions in turn n times (after WARM untimed rounds), the first of each round rotating. */
    const rounds = async (name: string, n: number, fns: Array<() => Promise<number>>): Promise<number[][]> => {
      log(`${name}: ${WARM} warm-up + ${n} timed iterations each`);
      for (let i = 0; i < WARM; i++) for (const f of fns) await f();
      const out: number[][] = fns.map(() => []);
      for (let i = 0; i < n; i++) {
        for (let k = 0; k < fns.length; k++) {
          const idx = (i + k) % fns.length;
          out[idx]!.push(await fns[idx]!());
        }
      }
      log(`  medians: ${out.map((xs) => r1(median(xs))).join(', ')}`);
      return out;
    };
    const pairs = async (name: string, n: number, fa: () => Promise<number>, fb: () => Promise<number>): Promise<[number[], number[]]> => {
      const [A, B] = await rounds(name, n, [fa, fb]);
      return [A!, B!];
    };
    // The first agent container provides the baseline's config.json.
    await agentLifecycle();
    log(`baseline bundle: the agent's config.json (root ${JSON.stringify(baselineConfig!.root)}, namespaces ${JSON.stringify(baselineConfig!.linux?.namespaces)})`);
    // The runtime's own share of the agent's lifecycle: `crun create` + `crun start` of the same
    // bundle, run from a sealed copy as the agent runs them, timed in the helper (no agent, no RPC).
    const runtimeShare = async (): Promise<number> => {
      const id = `fl-${seq++}`;
      const bundle = baselineBundle(id);
      const created = await nsCrun(['--root', CRUN_ROOT, 'create', '-b', bundle, id], true);
      const started = await nsCrun(['--root', CRUN_ROOT, 'start', id], true);
      await nsCrun(['--root', CRUN_ROOT, 'delete', '--force', id], true);
      fs.rmSync(a.inAgent(bundle), { recursive: true, force: true });
      return created + started;
    };
    const [lcA, lcB, floorMs] = (await rounds('create+start+wait `true` (agent, crun run, crun create + start)', N, [agentLifecycle, crunLifecycle, runtimeShare])) as [number[], number[], number[]];

    // --- 2. exec ---------------------------------------------------------------------------
    const EXEC_CID = 'exec-target';
    makeRootfs(EXEC_CID);
    await c.call('CreateContainer', { container_id: EXEC_CID, exec_id: EXEC_CID, OCI: spec(['sleep', '100000']) });
    await c.call('StartContainer', { container_id: EXEC_CID });
    fs.writeFileSync(a.inAgent(`${BENCH_DIR}/process.json`), JSON.stringify(minimalProcess(['true'])));
    const trueProc = grpcProcess(['true']);
    const agentExec = async (): Promise<number> => {
      const execId = `e-${seq++}`;
      const t0 = process.hrtime.bigint();
      await c.call('ExecProcess', { container_id: EXEC_CID, exec_id: execId, process: trueProc });
      const w = await c.call('WaitProcess', { container_id: EXEC_CID, exec_id: execId });
      const t = ms(t0);
      if (w.status !== 0) throw new Error(`exec ${execId}: status ${w.status}`);
      return t;
    };
    const crunExec = (): Promise<number> => nsCrun(['--root', AGENT_CRUN_ROOT, 'exec', '--process', `${BENCH_DIR}/process.json`, EXEC_CID]);
    const [exA, exB] = await pairs('exec `true`', N, agentExec, crunExec);
    // The cost of one runtime invocation on its own (for "where the time goes"): `crun state`.
    const stateMs: number[] = [];
    for (let i = 0; i < N; i++) stateMs.push(await nsCrun(['--root', AGENT_CRUN_ROOT, 'state', EXEC_CID]));
    log(`  one \`crun state\` invocation: median ${r1(median(stateMs))} ms`);
    await c.call('RemoveContainer', { container_id: EXEC_CID, timeout: 10 });
    dropRootfs(EXEC_CID);

    // --- 3. stdout throughput ----------------------------------------------------------------
    // dd with 1 MiB blocks: busybox head writes 4 KiB at a time and cannot feed 300 MiB/s itself.
    const headArgs = ['dd', 'if=/dev/zero', 'bs=1048576', `count=${TP_BYTES / 1048576}`];
    const agentTp = async (): Promise<number> => {
      const cid = `tp-${seq++}`;
      makeRootfs(cid);
      await c.call('CreateContainer', { container_id: cid, exec_id: cid, OCI: spec(headArgs) });
      const t0 = process.hrtime.bigint();
      await c.call('StartContainer', { container_id: cid });
      let n = 0;
      for (;;) {
        try {
          const r = await c.call('ReadStdout', { container_id: cid, exec_id: '', len: READ_LEN }, { timeoutMs: 60_000 });
          n += (r.data as Uint8Array).length;
        } catch (e) {
          if (isEof(e)) break;
          throw e;
        }
      }
      const t = ms(t0);
      await c.call('WaitProcess', { container_id: cid, exec_id: '' });
      await c.call('RemoveContainer', { container_id: cid, timeout: 10 });
      dropRootfs(cid);
      if (n !== TP_BYTES) throw new Error(`ReadStdout returned ${n} bytes, expected ${TP_BYTES}`);
      return (TP_BYTES / 2 ** 20) / (t / 1000);
    };
    const pipeTp = async (): Promise<number> => {
      const t0 = process.hrtime.bigint();
      const n = await readPipe('/bin/busybox', headArgs);
      const t = ms(t0);
      if (n !== TP_BYTES) throw new Error(`pipe returned ${n} bytes`);
      return (TP_BYTES / 2 ** 20) / (t / 1000);
    };
    const [tpA, tpB] = await pairs('stdout throughput (MiB/s)', N_TP, agentTp, pipeTp);
    // The producer's own ceiling: busybox dd writing 1 MiB blocks; stdout to /dev/null.
    const devnullTp: number[] = [];
    for (let i = 0; i < Math.min(N_TP, 5); i++) {
      const fd = fs.openSync('/dev/null', 'w');
      const t0 = process.hrtime.bigint();
      await new Promise<void>((res, rej) => {
        const p = spawn('/bin/busybox', headArgs, { stdio: ['ignore', fd, 'inherit'] });
        p.once('error', rej);
        p.once('close', () => res());
      });
      devnullTp.push((TP_BYTES / 2 ** 20) / (ms(t0) / 1000));
      fs.closeSync(fd);
    }
    log(`  producer alone (stdout /dev/null): median ${r1(median(devnullTp))} MiB/s`);

    await c.call('DestroySandbox', {}).catch((e: unknown) => log(`DestroySandbox: ${String(e)}`));
    results.machine.loadavg_at_end = os.loadavg().map(r2);

    const summary = (xs: number[]): Record<string, number> => ({ median: r2(median(xs)), min: r2(Math.min(...xs)), max: r2(Math.max(...xs)), n: xs.length });
    const timedRemoves = removeMs.slice(removeMs.length - lcA.length);
    const fullA = lcA.map((x, i) => x + timedRemoves[i]!);
    results.lifecycle_ms = {
      agent: summary(lcA),
      crun_run: summary(lcB),
      ratio: r2(median(lcA) / median(lcB)),
      agent_overhead_ms: r1(median(lcA) - median(lcB)),
      remove_container: summary(timedRemoves),
      runtime_create_plus_start_sealed: summary(floorMs),
      agent_own_ms: r1(median(lcA) - median(floorMs)),
      agent_with_remove: summary(fullA),
      ratio_with_remove: r2(median(fullA) / median(lcB)),
      samples: { agent: lcA.map(r2), crun_run: lcB.map(r2), remove_container: timedRemoves.map(r2) },
    };
    results.exec_ms = {
      agent: summary(exA),
      crun_exec: summary(exB),
      ratio: r2(median(exA) / median(exB)),
      agent_overhead_ms: r1(median(exA) - median(exB)),
      one_crun_invocation_ms: summary(stateMs),
      samples: { agent: exA.map(r2), crun_exec: exB.map(r2) },
    };
    results.stdout_mib_s = {
      agent_read_stdout: summary(tpA),
      pipe_direct: summary(tpB),
      producer_to_dev_null: summary(devnullTp),
      ratio: r2(median(tpA) / median(tpB)),
      samples: { agent: tpA.map(r1), pipe: tpB.map(r1) },
    };
    results.goals = {
      lifecycle_le_1_3x_crun_run: results.lifecycle_ms.ratio <= 1.3,
      exec_le_1_3x_crun_exec: results.exec_ms.ratio <= 1.3,
      stdout_ge_300_mib_s: median(tpA) >= 300,
    };

    fs.mkdirSync(path.dirname(outFile), { recursive: true });
    fs.writeFileSync(outFile, JSON.stringify(results, null, 2) + '\n');
    const yes = (b: boolean): string => (b ? 'yes' : 'no');
    const L = results.lifecycle_ms;
    const E = results.exec_ms;
    const T = results.stdout_mib_s;
    const g = results.goals;
    console.log(`
| measure | value | reference | ratio | goal | met? |
| --- | --- | --- | --- | --- | --- |
| create+start+wait \`true\` (median of ${N}) | ${r1(L.agent.median)} ms | \`crun run\` ${r1(L.crun_run.median)} ms | ${L.ratio} (agent overhead ${L.agent_overhead_ms} ms) | <= 1.3x | ${yes(g.lifecycle_le_1_3x_crun_run)} |
| of which \`crun create\` + \`crun start\` (sealed copy, no agent) | ${r1(L.runtime_create_plus_start_sealed.median)} ms | \`crun run\` ${r1(L.crun_run.median)} ms | ${r2(L.runtime_create_plus_start_sealed.median / L.crun_run.median)} (agent's own share ${L.agent_own_ms} ms) | | |
| the same + RemoveContainer (RemoveContainer alone: median ${r1(L.remove_container.median)} ms) | ${r1(L.agent_with_remove.median)} ms | \`crun run\` ${r1(L.crun_run.median)} ms | ${L.ratio_with_remove} | | |
| exec \`true\` in a running container (median of ${N}) | ${r1(E.agent.median)} ms | \`crun exec\` ${r1(E.crun_exec.median)} ms | ${E.ratio} (agent overhead ${E.agent_overhead_ms} ms) | <= 1.3x | ${yes(g.exec_le_1_3x_crun_exec)} |
| one runtime invocation (\`crun state\`, median of ${N}) | ${r1(E.one_crun_invocation_ms.median)} ms | | | | |
| stdout throughput, ReadStdout 1 MiB calls (median of ${N_TP}) | ${r1(T.agent_read_stdout.median)} MiB/s | pipe read directly ${r1(T.pipe_direct.median)} MiB/s; producer alone to /dev/null ${r1(T.producer_to_dev_null.median)} MiB/s | ${T.ratio} | >= 300 MiB/s | ${yes(g.stdout_ge_300_mib_s)} |
`);
  } finally {
    helper?.stop();
    if (agent) {
      fs.rmSync(agent.inAgent(BENCH_DIR), { recursive: true, force: true });
      await agent.stop();
    }
    for (const ctrl of fs.readdirSync(CG_ROOT)) {
      removeCgroupTree(path.join(CG_ROOT, ctrl, 'kata', SID));
      try {
        fs.rmdirSync(path.join(CG_ROOT, ctrl, 'kata'));
      } catch {
        // in use by something else, or gone
      }
    }
  }
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
