// The guest in QEMU (issues 6 and 7), one run, TCG on this machine:
//  - the guest kernel: make time (from kernel.json when this build recorded it) and bzImage size;
//    boot to a busybox marker with osbuilder's kernel vs the Debian cloud kernel, alternating;
//  - the agent's boot timeline (QEMU start -> kernel -> agent exec -> listening -> first reply,
//    host-side times of the console lines and of the first Health.Check answer), next to the floor:
//    the same initrd with a busybox /init that prints a marker, then times the packed agent's own
//    start (`kata-agent --version`) in the guest. Goal: ready <= floor + node start + 0.5 s;
//  - RPC latency over virtio-serial: Health.Check round trips on one ttrpc connection.
// Results: bench/results/vm.json and a table on stdout (docs/benchmarks.md).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AgentClient } from '../agent/src/client/agent';
import { waitAgent } from '../osbuilder/src/run/command';
import { Vm } from '../osbuilder/src/run/vm';

const root = process.cwd();
const quick = process.argv.includes('--quick');
const N = quick ? 2 : 5;
const CALLS = quick ? 50 : 300;
const osb = path.join(root, 'dist/osbuilder.mjs');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-bench-vm-'));
const outFile = path.join(root, 'bench/results/vm.json');
const osbuilder = (...args: string[]): string => execFileSync(process.execPath, [osb, '--quiet', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const pct = (xs: number[], p: number): number => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))]!;
const r1 = (n: number): number => Math.round(n * 10) / 10;

/** An initrd of `rootfs` with /init replaced by a busybox script. */
function scriptInitrd(rootfs: string, out: string, script: string): string {
  const tree = path.join(work, `tree-${path.basename(out)}`);
  execFileSync('cp', ['-a', rootfs, tree]);
  fs.rmSync(path.join(tree, 'init'), { force: true });
  fs.writeFileSync(path.join(tree, 'init'), `#!/bin/sh\n${script}\n/bin/busybox poweroff -f\n`, { mode: 0o755 });
  osbuilder('initrd', '--rootfs', tree, '--compression', 'lz4', '--output', out);
  fs.rmSync(tree, { recursive: true, force: true });
  return out;
}

async function bootToMarker(kernel: string, initrd: string, name: string, marker = 'GK-MARKER'): Promise<{ ms: number; console: string }> {
  const vm = await Vm.start({ accel: 'tcg', machine: 'q35', cpus: 2, memoryMiB: 1024, kernel, initrd, consoleLog: path.join(work, `${name}.log`) });
  try {
    const ms = await vm.waitConsole(new RegExp(marker), 120_000);
    await vm.waitExit(60_000);
    if (vm.panics().length) throw new Error(`${name}: ${vm.panics()[0]}`);
    return { ms, console: vm.console() };
  } finally {
    await vm.stop();
  }
}

try {
  const res: Record<string, any> = { date: new Date().toISOString(), cpus: os.cpus().length, loadavg: os.loadavg().map((x) => r1(x)), accel: 'tcg', N };
  // Inputs: the kernel (cached build), the minimal rootfs and its lz4 initrd.
  const kdir = path.join(work, 'kernel');
  osbuilder('kernel', 'build', '--output', kdir);
  const kinfo = JSON.parse(fs.readFileSync(path.join(kdir, 'kernel.json'), 'utf8'));
  const kernel = path.join(kdir, 'vmlinuz');
  res.kernel = { release: kinfo.release, bzimage_bytes: kinfo.bytes, make_seconds: kinfo.buildSeconds ?? null, jobs: kinfo.jobs ?? null };
  const rootfs = path.join(work, 'rootfs');
  osbuilder('rootfs', 'minimal', '--output', rootfs);
  const initrd = path.join(work, 'initrd.lz4');
  osbuilder('initrd', '--rootfs', rootfs, '--compression', 'lz4', '--output', initrd);
  res.initrd_bytes = fs.statSync(initrd).size;

  // 1. Kernel boot to a busybox marker: ours vs Debian's cloud kernel (small busybox initrd).
  const bbRoot = path.join(work, 'bb');
  for (const d of ['bin', 'proc', 'sys', 'dev']) fs.mkdirSync(path.join(bbRoot, d), { recursive: true });
  fs.copyFileSync('/bin/busybox', path.join(bbRoot, 'bin/busybox'));
  fs.symlinkSync('busybox', path.join(bbRoot, 'bin/sh'));
  fs.writeFileSync(path.join(bbRoot, 'init'), '#!/bin/sh\necho GK-MARKER\n/bin/busybox poweroff -f\n', { mode: 0o755 });
  const bbInitrd = path.join(work, 'bb.lz4');
  osbuilder('initrd', '--rootfs', bbRoot, '--compression', 'lz4', '--output', bbInitrd);
  const debian = fs.readdirSync('/boot').filter((f) => /^vmlinuz-.*-cloud-amd64$/.test(f)).sort().at(-1);
  const ours: number[] = [];
  const deb: number[] = [];
  for (let i = 0; i < N; i++) {
    ours.push((await bootToMarker(kernel, bbInitrd, `bb-ours-${i}`)).ms);
    if (debian) deb.push((await bootToMarker(path.join('/boot', debian), bbInitrd, `bb-deb-${i}`)).ms);
  }
  res.busybox_marker_ms = { guestkit: { median: Math.round(median(ours)), samples: ours.map(Math.round) }, debian_cloud: debian ? { kernel: debian, median: Math.round(median(deb)), samples: deb.map(Math.round) } : null };

  // 2. The floor: the agent's initrd with a busybox /init: marker, then the packed agent's own start.
  const floorInitrd = scriptInitrd(
    rootfs,
    path.join(work, 'floor.lz4'),
    [
      '/bin/busybox mount -t proc proc /proc',
      'echo GK-MARKER',
      't0=$(/bin/busybox cut -d" " -f1 /proc/uptime)',
      '/usr/bin/kata-agent --version >/dev/null',
      't1=$(/bin/busybox cut -d" " -f1 /proc/uptime)',
      'echo "GK-NODE $t0 $t1"',
    ].join('\n'),
  );
  const floor: number[] = [];
  const nodeStart: number[] = [];
  for (let i = 0; i < N; i++) {
    const b = await bootToMarker(kernel, floorInitrd, `floor-${i}`);
    floor.push(b.ms);
    const m = /GK-NODE ([\d.]+) ([\d.]+)/.exec(b.console);
    if (m) nodeStart.push((Number(m[2]) - Number(m[1])) * 1000);
  }

  // 3. The agent: boot timeline, then RPC latency on the first boot.
  const tl: Array<Record<string, number | undefined>> = [];
  let latency: number[] = [];
  for (let i = 0; i < N; i++) {
    const sock = path.join(work, `agent-${i}.sock`);
    const vm = await Vm.start({ accel: 'tcg', machine: 'q35', cpus: 2, memoryMiB: 1024, kernel, initrd, append: 'agent.channel=serial', agentSocket: sock, consoleLog: path.join(work, `agent-${i}.log`) });
    try {
      const ready = await waitAgent(vm, 180_000);
      tl.push({ ...vm.timeline, readyMs: Math.round(ready) });
      if (i === 0) {
        const c = await AgentClient.connect(`serial:${sock}`);
        for (let k = 0; k < 20; k++) await c.check(); // warm-up
        for (let k = 0; k < CALLS; k++) {
          const t0 = performance.now();
          await c.check();
          latency.push(performance.now() - t0);
        }
        c.close();
      }
      if (vm.panics().length) throw new Error(vm.panics()[0]);
    } finally {
      await vm.stop();
    }
  }
  const med = (k: string): number => Math.round(median(tl.map((t) => t[k]!).filter((x) => x !== undefined)));
  res.agent_timeline_ms = { kernel: med('kernelMs'), agent_exec: med('initMs'), listening: med('listeningMs'), first_reply: med('readyMs'), samples: tl };
  res.floor_ms = { busybox_marker: Math.round(median(floor)), node_start_in_guest: Math.round(median(nodeStart)), samples: { marker: floor.map(Math.round), node: nodeStart.map(Math.round) } };
  const budget = res.floor_ms.busybox_marker + res.floor_ms.node_start_in_guest + 500;
  res.goal = { ready_le_floor_plus_node_plus_500ms: res.agent_timeline_ms.first_reply <= budget, budget_ms: budget };
  latency = latency.map((x) => Math.round(x * 1000) / 1000);
  const r2 = (n: number): number => Math.round(n * 100) / 100;
  res.rpc_latency_virtio_serial_ms = { calls: CALLS, p50: r2(pct(latency, 50)), p90: r2(pct(latency, 90)), p99: r2(pct(latency, 99)) };
  fs.writeFileSync(outFile, `${JSON.stringify(res, null, 2)}\n`);

  const s = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
  console.log('| measure | value | reference |\n| --- | --- | --- |');
  console.log(`| kernel ${res.kernel.release} bzImage | ${(res.kernel.bzimage_bytes / 1e6).toFixed(2)} MB (${res.kernel.bzimage_bytes} bytes) | goal <= 4 MB |`);
  console.log(`| kernel make time (-j${res.kernel.jobs ?? '?'}) | ${res.kernel.make_seconds ?? '?'} s | goal <= 600 s |`);
  console.log(`| boot to busybox marker, guestkit kernel (median of ${N}) | ${s(res.busybox_marker_ms.guestkit.median)} | Debian cloud kernel ${debian ? s(res.busybox_marker_ms.debian_cloud.median) : 'n/a'} |`);
  const a = res.agent_timeline_ms;
  console.log(`| agent boot: QEMU start -> kernel -> agent exec -> listening -> first reply (median of ${N}) | ${s(a.kernel)} -> ${s(a.agent_exec)} -> ${s(a.listening)} -> ${s(a.first_reply)} | floor: busybox marker ${s(res.floor_ms.busybox_marker)} + node start ${s(res.floor_ms.node_start_in_guest)} + 0.5 s = ${s(budget)} |`);
  console.log(`| Health.Check over virtio-serial (${CALLS} calls) | p50 ${res.rpc_latency_virtio_serial_ms.p50} ms, p99 ${res.rpc_latency_virtio_serial_ms.p99} ms | |`);
  console.log(`goal boot to ready <= floor + node start + 0.5 s: ${res.goal.ready_le_floor_plus_node_plus_500ms ? 'met' : 'not met'}`);
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
