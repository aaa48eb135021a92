// `osbuilder run`: boot a guest osbuilder made, under QEMU, with the agent reachable from the host.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseOptions } from '../cli';
import type { Command, CommandContext } from '../commands/types';
import { cacheRoot } from '../kernel/build';
import { failedError, missingError, usageError } from '../util/errors';
import { findTool } from '../util/tools';
import type { Accel, Machine, SharedDir, VmConfig } from './qemu';
import { findDebianCloudKernel, OVERLAY_INIT, writeModulesOverlay } from './debian-kernel';
import { consoleTimeline, sleep, tail, VIRTIOFSD, Vm } from './vm';

const HELP = `Usage: osbuilder run (--initrd FILE | --image FILE) [--kernel FILE] [options]

Boot a guest under QEMU and wait until its agent answers: the agent's virtio-serial port
(agent.channel.0) is a unix socket on the host, which agent-ctl and the client library dial as
serial:PATH. Prints the socket and a ready line with the boot timeline, then runs until the
guest powers off (DestroySandbox), QEMU dies, or Ctrl-C (which kills QEMU).

Kernel: --kernel FILE, else the newest kernel \`osbuilder kernel build\` cached for this arch
(everything the agent needs is built in), else the Debian cloud kernel (/boot/vmlinuz-*-cloud-*,
package linux-image-cloud-amd64): it has the virtio drivers as modules, so the runner puts them in
front of the initrd with /init.modules (rdinit=), which loads them and then executes the agent; it
has no 9p.

Options:
  --initrd FILE         the initrd (osbuilder initrd)
  --image FILE          a disk image (osbuilder image) as the root file system (/dev/vda1, ext4)
  --kernel FILE         the kernel (bzImage)
  --debian-kernel       use the Debian cloud kernel even when an osbuilder kernel is cached
  --share DIR[:TAG]     share a host directory (repeatable; default tag kataShared, then
                        kataShared1...): virtio-fs through ${VIRTIOFSD}, or 9p
  --share-type T        virtiofs (default) or 9p
  --disk FILE           a raw disk image as a virtio-blk disk (repeatable)
  --memory MIB          guest RAM (default 1024)
  --cpus N              vCPUs (default 2)
  --machine M           q35 (default) or microvm
  --accel A             auto (default: KVM if it boots a kernel within 5 s, else TCG), kvm, tcg
  --append ARGS         more kernel command line (e.g. agent.log=debug)
  --channel C           serial (default) or vsock: the agent's transport. vsock needs
                        /dev/vhost-vsock on the host (vhost-vsock-pci, guest CID --cid, agent
                        on vsock port 1024); serial works everywhere
  --cid N               the guest's vsock CID (default 3; with --channel vsock)
  --socket PATH         the agent's host socket (default: DIR/agent.sock, DIR a new temp dir)
  --qmp PATH            QMP monitor socket (default: DIR/qmp.sock) for device_add hotplug
  --console FILE        the guest console log (default: DIR/console.log)
  --timeout S           seconds to wait for the agent (default 180)
  --ready-only          exit 0 once the agent answers (the VM is killed)
  --json                print the ready line as JSON
  --quiet               no progress output

Exit codes: 0 the guest powered off (QEMU exited 0) or --ready-only and ready; 1 the guest
failed (panic, QEMU error, no agent within --timeout); 2 bad command line; 3 missing kernel,
QEMU or virtiofsd; 130 interrupted.
`;

/** The newest cached osbuilder kernel for the host arch. */
export function findCachedKernel(env: NodeJS.ProcessEnv): string | undefined {
  const dir = path.join(cacheRoot(env), 'kernel', 'builds');
  let best: { file: string; mtime: number } | undefined;
  const arch = ({ x64: 'x86_64', arm64: 'arm64' } as Record<string, string>)[process.arch];
  for (const key of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
    const info = path.join(dir, key, 'kernel.json');
    const img = path.join(dir, key, 'vmlinuz');
    try {
      const j = JSON.parse(fs.readFileSync(info, 'utf8')) as { arch?: string };
      if (j.arch !== arch || !fs.existsSync(img)) continue;
      const mtime = fs.statSync(info).mtimeMs;
      if (!best || mtime > best.mtime) best = { file: img, mtime };
    } catch {
      // incomplete entry
    }
  }
  return best?.file;
}

/** Does KVM boot a kernel here? A kernel without root panics and, with -no-reboot, ends QEMU fast. */
export async function probeKvm(qemu: string, kernel: string, timeoutMs = 5000): Promise<boolean> {
  if (!fs.existsSync('/dev/kvm')) return false;
  const child = spawn(qemu, ['-M', 'q35', '-accel', 'kvm', '-cpu', 'host', '-m', '256M', '-nodefaults', '-nographic', '-no-reboot', '-display', 'none', '-serial', 'stdio', '-kernel', kernel, '-append', 'console=ttyS0 panic=-1'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => void (out += d.toString()));
  const ended = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
  const r = await Promise.race([ended, sleep(timeoutMs).then(() => 'timeout' as const)]);
  if (r === 'timeout') child.kill('SIGKILL');
  return r !== 'timeout' && /Linux version/.test(out);
}

async function run(args: string[], ctx: CommandContext): Promise<void> {
  const { values } = parseOptions(
    'run',
    args,
    {
      initrd: { type: 'string' },
      image: { type: 'string' },
      kernel: { type: 'string' },
      'debian-kernel': { type: 'boolean' },
      share: { type: 'string', multiple: true },
      'share-type': { type: 'string' },
      disk: { type: 'string', multiple: true },
      memory: { type: 'string' },
      cpus: { type: 'string' },
      machine: { type: 'string' },
      accel: { type: 'string' },
      append: { type: 'string' },
      socket: { type: 'string' },
      channel: { type: 'string' },
      cid: { type: 'string' },
      qmp: { type: 'string' },
      console: { type: 'string' },
      timeout: { type: 'string' },
      'ready-only': { type: 'boolean' },
      json: { type: 'boolean' },
    },
    { positionals: 0 },
  );
  if (!values.initrd && !values.image) throw usageError('run: give --initrd FILE or --image FILE', 'see osbuilder run --help');
  if (values.kernel && values['debian-kernel']) throw usageError('run: --kernel and --debian-kernel exclude each other');
  const int = (name: string, v: string | undefined, def: number, min: number): number => {
    if (v === undefined) return def;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw usageError(`run: --${name} must be an integer >= ${min}, not ${JSON.stringify(v)}`);
    return n;
  };
  const memoryMiB = int('memory', values.memory, 1024, 64);
  const cpus = int('cpus', values.cpus, 2, 1);
  const timeoutS = int('timeout', values.timeout, 180, 1);
  const machine = (values.machine ?? 'q35') as Machine;
  if (machine !== 'q35' && machine !== 'microvm') throw usageError(`run: --machine must be q35 or microvm, not ${JSON.stringify(values.machine)}`);
  const accelOpt = values.accel ?? 'auto';
  if (!['auto', 'kvm', 'tcg'].includes(accelOpt)) throw usageError(`run: --accel must be auto, kvm or tcg, not ${JSON.stringify(accelOpt)}`);
  const channel = values.channel ?? 'serial';
  if (channel !== 'serial' && channel !== 'vsock') throw usageError(`run: --channel must be serial or vsock, not ${JSON.stringify(values.channel)}`);
  const cid = int('cid', values.cid, 3, 3);
  if (channel === 'vsock' && !fs.existsSync('/dev/vhost-vsock')) throw missingError('--channel vsock needs /dev/vhost-vsock on the host (modprobe vhost_vsock)', 'or use --channel serial');
  const shareType = values['share-type'] ?? 'virtiofs';
  if (shareType !== 'virtiofs' && shareType !== '9p') throw usageError(`run: --share-type must be virtiofs or 9p, not ${JSON.stringify(shareType)}`);
  for (const f of [values.initrd, values.image, values.kernel, ...(values.disk ?? [])]) if (f && !fs.existsSync(f)) throw missingError(`${f} does not exist`);

  const qemu = findTool('qemu-system-x86_64');
  if (!qemu) throw missingError('qemu-system-x86_64 is not installed', 'apt-get install qemu-system-x86');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'osbuilder-run-'));
  let kernel = values['debian-kernel'] ? undefined : (values.kernel ?? findCachedKernel(ctx.env));
  let initrd = values.initrd;
  let kernelNote = '';
  let extraAppend = '';
  if (!kernel) {
    const deb = findDebianCloudKernel();
    if (!deb) throw missingError('no guest kernel: none given, none built by osbuilder, and no Debian cloud kernel in /boot', 'osbuilder kernel build --output build/kernel, or apt-get install linux-image-cloud-amd64, or --kernel FILE');
    if (!initrd) throw usageError('run: the Debian cloud kernel needs --initrd (its virtio modules are added to the initrd)');
    const overlay = path.join(dir, 'modules.cpio');
    let loaded: string[];
    try {
      loaded = writeModulesOverlay(deb, overlay);
    } catch (err) {
      throw failedError(`the Debian cloud kernel ${deb.release}: ${(err as Error).message}`);
    }
    initrd = path.join(dir, 'initrd-with-modules');
    fs.writeFileSync(initrd, Buffer.concat([fs.readFileSync(overlay), fs.readFileSync(values.initrd!)]));
    kernel = deb.kernel;
    extraAppend = `rdinit=${OVERLAY_INIT}`;
    kernelNote = `Debian cloud kernel ${deb.release}, modules ${loaded.join(' ')} loaded at boot`;
  }
  const shares: SharedDir[] = (values.share ?? []).map((spec, i) => {
    const colon = spec.lastIndexOf(':');
    const [p, tag] = colon > 0 ? [spec.slice(0, colon), spec.slice(colon + 1)] : [spec, i === 0 ? 'kataShared' : `kataShared${i}`];
    if (!fs.existsSync(p) || !fs.statSync(p).isDirectory()) throw missingError(`shared directory ${p} does not exist`);
    return { tag, path: path.resolve(p), kind: shareType, socket: shareType === 'virtiofs' ? path.join(dir, `virtiofsd-${i}.sock`) : undefined };
  });
  if (shares.some((s) => s.kind === 'virtiofs') && !fs.existsSync(VIRTIOFSD)) throw missingError(`${VIRTIOFSD} is not installed`, 'apt-get install qemu-system-common, or --share-type 9p');

  const p = ctx.progress(2);
  if (kernelNote) p.note(kernelNote);
  let accel: Accel = accelOpt === 'kvm' ? 'kvm' : 'tcg';
  if (accelOpt === 'auto') {
    p.step('probing KVM');
    accel = (await probeKvm(qemu, kernel)) ? 'kvm' : 'tcg';
    p.done(accel === 'kvm' ? 'KVM boots a kernel: using it' : 'no working KVM: TCG (software emulation)');
  }
  const cfg: VmConfig = {
    accel,
    machine,
    cpus,
    memoryMiB,
    kernel,
    initrd,
    rootImage: values.image,
    append: [`agent.channel=${channel}`, extraAppend, values.append].filter(Boolean).join(' '),
    vsockCid: channel === 'vsock' ? cid : undefined,
    agentSocket: path.resolve(values.socket ?? path.join(dir, 'agent.sock')),
    qmpSocket: path.resolve(values.qmp ?? path.join(dir, 'qmp.sock')),
    consoleLog: path.resolve(values.console ?? path.join(dir, 'console.log')),
    shared: shares,
    disks: (values.disk ?? []).map((d) => ({ path: path.resolve(d) })),
    tscKhz: machine === 'microvm' ? hostTscKhz() : undefined,
  };
  p.step(`booting (${accel}, ${machine}, ${cpus} vCPU, ${memoryMiB} MiB)`);
  const vm = await Vm.start(cfg, { qemu });
  const onSigint = (): void => {
    void vm.stop().then(() => process.exit(130));
  };
  process.once('SIGINT', onSigint);
  try {
    const agentAddr = channel === 'vsock' ? `vsock://${cid}:1024` : `serial:${cfg.agentSocket}`;
    const ready = await waitAgent(vm, timeoutS * 1000, (s) => p.update(s), agentAddr);
    const tl = { ...vm.timeline, readyMs: Math.round(ready) };
    const agentStartupMs = consoleTimeline(vm.console()).agentListening?.startupMs;
    p.done(`agent answered after ${(ready / 1000).toFixed(2)} s`);
    if (values.json) ctx.out(JSON.stringify({ agent: agentAddr, qmp: cfg.qmpSocket, console: cfg.consoleLog, accel, timeline: tl, agentStartupMs }));
    else {
      ctx.out(`agent: ${agentAddr}`);
      ctx.out(`ready: ${formatTimeline(tl)} (${accel}; agent start-up ${agentStartupMs ?? '?'} ms); console ${cfg.consoleLog}; qmp ${cfg.qmpSocket}`);
    }
    if (values['ready-only']) {
      await vm.stop();
      return;
    }
    const { code, signal } = await vm.waitExit();
    const panics = vm.panics();
    if (panics.length) throw failedError(`the guest panicked: ${panics[0]}`);
    if (code !== 0) throw failedError(`QEMU exited ${code ?? signal}: ${vm.qemuStderr.trim().split('\n').slice(-2).join(' / ')}`);
    ctx.out('guest powered off');
  } catch (err) {
    await vm.stop();
    if (err instanceof Error && !('exitCode' in err)) throw failedError(err.message);
    throw err;
  } finally {
    process.off('SIGINT', onSigint);
  }
}

/** "QEMU start -> kernel 0.41 s -> agent exec 1.90 s -> listening 3.10 s -> first reply 3.30 s". */
export function formatTimeline(t: { kernelMs?: number; initMs?: number; listeningMs?: number; readyMs?: number }): string {
  const s = (ms: number | undefined): string => (ms === undefined ? '?' : `${(ms / 1000).toFixed(2)} s`);
  return `QEMU start -> kernel ${s(t.kernelMs)} -> agent exec ${s(t.initMs)} -> listening ${s(t.listeningMs)} -> first reply ${s(t.readyMs)}`;
}

/** Wait for the agent to answer Health.Check over its serial socket; ms since QEMU start. */
export async function waitAgent(vm: Vm, timeoutMs: number, progress?: (s: string) => void, addr = `serial:${vm.config.agentSocket}`): Promise<number> {
  const { AgentClient } = await import('../../../agent/src/client/index');
  type Client = Awaited<ReturnType<typeof AgentClient.connect>>;
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const panics = vm.panics();
    if (panics.length) throw new Error(`the guest panicked: ${panics[0]}\n${tail(vm.console())}`);
    if (vm.exited) throw new Error(`QEMU exited before the agent answered: ${vm.qemuStderr.trim() || 'no error output'}\n${tail(vm.console())}`);
    if (performance.now() > deadline) throw new Error(`the agent did not answer within ${timeoutMs / 1000} s\n${tail(vm.console())}`);
    if (!addr.startsWith('serial:') || fs.existsSync(addr.slice('serial:'.length))) {
      let client: Client | undefined;
      try {
        client = await AgentClient.connect(addr, { timeoutMs: 2000 });
        const r = await client.check({ timeoutMs: 2000 });
        if (r.status === 'SERVING' || r.status === 1) return performance.now() - vm.startedAt;
      } catch {
        // not up yet
      } finally {
        client?.close();
      }
    }
    progress?.(`waiting for the agent (${((performance.now() - vm.startedAt) / 1000).toFixed(0)} s)`);
    await sleep(200);
  }
}

/** The host's TSC frequency in kHz (from /proc/cpuinfo's MHz line), for microvm under TCG. */
export function hostTscKhz(cpuinfo = safeRead('/proc/cpuinfo')): number | undefined {
  const m = /^cpu MHz\s*:\s*([\d.]+)/m.exec(cpuinfo);
  return m ? Math.round(Number(m[1]) * 1000) : undefined;
}

function safeRead(f: string): string {
  try {
    return fs.readFileSync(f, 'utf8');
  } catch {
    return '';
  }
}

export const runCommand: Command = {
  name: 'run',
  summary: 'boot a guest under QEMU and wait for its agent (virtio-serial on a host socket)',
  help: HELP,
  run,
};
