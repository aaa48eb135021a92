// The sandbox: everything the agent keeps between RPCs of the container
// lifecycle (Kata: src/agent/src/sandbox.rs + the container half of rpc.rs).
// One Sandbox per agent. It turns Kata requests into OCI bundles and drives
// the OCI runtime (crun, or agent.oci_runtime) through the agent's Spawner;
// the one Reaper delivers every exit status. The RPC handlers
// (services/container.ts, process.ts, sandbox.ts) only decode and encode.
//
// Layout in the guest (BUNDLE_ROOT = /run/kata-containers):
//   <root>/<cid>/config.json           the bundle (plus exec-N.json / *.pid)
//   <root>/shared/containers/<cid>/rootfs  the rootfs the host provides
//   <root>/sandbox/resolv.conf         CreateSandbox dns, bound over /etc/resolv.conf
//   <root>/sandbox/ns/{ipc,uts}        the shared namespaces (nsfs bind mounts)
//   <root>/.console/N.sock             console sockets of terminal processes
import { raceAbort } from './abort';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openCgroups } from '../cgroups/index';
import { containerCgroupPath, sandboxCgroupPath } from '../cgroups/paths';
import type { CgroupStats, Cgroups, LinuxResources } from '../cgroups/types';
import type { Logger } from '../log';
import type { ExitStatus, Reaper } from '../proc/reaper';
import { run, type RunOptions, type RunResult } from '../proc/run';
import type { Spawner } from '../proc/spawner';
import { Code, RpcError, toStatus } from '../rpc/status';
import { BUNDLE_ROOT, removeBundle, writeBundle } from '../runtime/bundle';
import { ConsoleSocket } from '../runtime/console-socket';
import { shown, validateContainerId, validateExecId, validateSandboxId } from '../runtime/ids';
import type { OciRuntime } from '../runtime/oci-runtime';
import {
  KATA_GUEST_SHARED_DIR,
  grpcProcessToOci,
  grpcResourcesToOci,
  grpcSpecToOci,
  ociSpecToJson,
  rewriteForGuest,
  validateProcess,
  validateResources,
  validateSpec,
  type GrpcProcess,
  type GrpcResources,
  type GrpcSpec,
  type GuestHooks,
} from '../runtime/spec';
import { kill as sysKill, sethostname as sysSethostname } from '../sys/misc';
import { mount as sysMount, umount2 as sysUmount2 } from '../sys/mount';
import { clockTicksPerSecond } from '../sys/time';
import { Container, ContainerProcess } from './container';
import { setupGuestDns } from './dns';
import { scanGuestHooks } from './guest-hooks';
import { loadKernelModule, validateKernelModules, type KernelModule } from './kernel-modules';
import { parseMountInfoFull, rootNeedsNoPivot } from './mounts';
import { readNetworkStats, type NetworkStats } from './net-stats';
import { OomQueue } from './oom-queue';
import { Mutex } from './mutex';
import { parseStorages } from '../storage/spec';
import type { StorageManager } from '../storage/manager';
import type { StorageSpec } from '../storage/types';
import { applyDevices, parseDevices, resolveDevices, type DeviceInput, type DeviceResolver } from './devices';
import { ProcessIO } from './process-io';
import { filterPsOutput, psTable } from './ps-table';
import { createSharedNamespaces, type NsKind, type SharedNamespaces } from './shared-ns';

const SIGKILL = os.constants.signals.SIGKILL;
const SIGTERM = os.constants.signals.SIGTERM;

/** Sandbox id used for cgroup paths when CreateSandbox named none (or was not called). */
export const DEFAULT_SANDBOX_ID = 'default';
/** Container ids that would collide with the agent's own directories under BUNDLE_ROOT. */
export const RESERVED_CONTAINER_IDS: ReadonlySet<string> = new Set(['shared', 'sandbox']);
/** How long DestroySandbox (and close()) waits for each container's processes to die. */
export const DESTROY_TIMEOUT_MS = 10_000;
/** After DestroySandbox replied: time for the reply to reach the host before onDestroyed(). */
export const DESTROYED_GRACE_MS = 100;
/** How long a waited-for exec stays readable after its output was all read (for the read that sees EOF). */
export const DRAINED_LINGER_MS = 10_000;
/** Waited-for execs whose output is still readable, per container. */
export const MAX_DRAINING = 64;
/** Largest ReadStdout/ReadStderr answer (the ttrpc frame limit is 4 MiB). */
export const MAX_READ_LEN = 1024 * 1024;
/** Kubernetes caps termination messages at 4 KiB (GetDiagnosticData). */
export const MAX_TERMINATION_MESSAGE = 4096;
const TERMINATION_PATH_ANNOTATION = 'io.kubernetes.container.terminationMessagePath';
/** Kata's message when sandbox_pidns is asked for and no pid namespace is known. */
export const ERR_NO_SANDBOX_PIDNS = 'Sandbox does not have sandbox_pidns';
const HOST_NAME_MAX = 64;

export interface SandboxPaths {
  /** Bundles go to <runDir>/<cid> (default /run/kata-containers). */
  runDir: string;
  /** Where the host puts container root file systems (default <runDir>/shared/containers). */
  sharedContainers: string;
  /** Sandbox-wide files: resolv.conf, ns/ (default <runDir>/sandbox). */
  sandboxDir: string;
  /** Console sockets (default <runDir>/.console). */
  consoleDir: string;
  /** The guest's resolver configuration (default /etc/resolv.conf). */
  resolvConf: string;
  /** procfs of the agent (default /proc). */
  proc: string;
}

export interface SandboxSys {
  sethostname(name: string): void;
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void;
  umount2(target: string, flags?: number): void;
  kill(pid: number, sig: number): void;
  clockTicks(): number;
}

export interface SandboxOptions {
  log: Logger;
  spawner: Spawner;
  reaper: Pick<Reaper, 'watch'>;
  runtime: OciRuntime;
  /** The agent is the guest's PID 1: it owns the host name (see createSandbox). */
  isInit: boolean;
  /** agent.container_pipe_size (0 = kernel default). */
  pipeSize?: number;
  /** The cgroup tree; default: openCgroups() on first use (undefined when none is mounted). */
  cgroups?: () => Cgroups | undefined;
  paths?: Partial<SandboxPaths>;
  sys?: Partial<SandboxSys>;
  /** Force --no-pivot on or off (default: detected from /proc/self/mountinfo). */
  noPivot?: boolean;
  /** Called once DestroySandbox has torn everything down and replied. */
  onDestroyed?: () => void;
  /** How long to wait for a terminal from the runtime (default 30 s). */
  consoleTimeoutMs?: number;
  /** Mounts the host's Storage entries (issue 4); without it storages are refused. */
  storage?: Pick<StorageManager, 'add' | 'release' | 'closeAll' | 'updateEphemeral'>;
  /** Waits for hot-plugged devices (made on first use); without it devices are refused. */
  devices?: () => DeviceResolver;
}

/** The storage owner of CreateSandbox's storages (container ids cannot contain ':'). */
const SANDBOX_OWNER = 'sandbox:';

export interface CreateSandboxInput {
  hostname: string;
  dns: string[];
  storages: unknown[];
  sandboxPidns: boolean;
  sandboxId: string;
  guestHookPath: string;
  kernelModules: KernelModule[];
}

export interface CreateContainerInput {
  containerId: string;
  execId: string;
  devices: unknown[];
  storages: unknown[];
  spec: GrpcSpec | null | undefined;
  sandboxPidns: boolean;
}

export interface StatsResult {
  cgroup_stats: CgroupStats;
  network_stats: NetworkStats[];
}

const noop = (): void => undefined;

function errCode(err: unknown): string | undefined {
  const c = (err as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : undefined;
}

/** `what: cause`, keeping the status code of an RpcError / SysError. */
function wrap(what: string, err: unknown): RpcError {
  const st = toStatus(err);
  if (err instanceof RpcError && err.message.startsWith(what)) return err;
  return new RpcError(st.code, `${what}: ${st.message}`);
}

/** Whether the process `pid` has a handler for `sig` (/proc/<pid>/status SigCgt). */
export function signalHandled(procRoot: string, pid: number, sig: number): boolean {
  try {
    const m = /^SigCgt:\s*([0-9a-fA-F]+)/m.exec(fs.readFileSync(path.join(procRoot, String(pid), 'status'), 'utf8'));
    if (!m) return false;
    return ((BigInt(`0x${m[1]}`) >> BigInt(sig - 1)) & 1n) === 1n;
  } catch {
    return false;
  }
}

/** Resolve `p` or give up after `ms` (undefined: no limit) or when `signal` aborts (a rejection of `p` counts as giving up). */
async function within<T>(p: Promise<T>, ms: number | undefined, signal: AbortSignal | undefined): Promise<{ value: T } | { timedOut: true }> {
  if (ms === undefined && !signal) return { value: await p };
  return new Promise((resolve) => {
    let timer: NodeJS.Timeout | undefined;
    const done = (r: { value: T } | { timedOut: true }): void => {
      if (timer) clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve(r);
    };
    const onAbort = (): void => done({ timedOut: true });
    if (ms !== undefined) timer = setTimeout(() => done({ timedOut: true }), ms);
    if (signal) {
      if (signal.aborted) return done({ timedOut: true });
      signal.addEventListener('abort', onAbort, { once: true });
    }
    p.then((value) => done({ value }), () => done({ timedOut: true }));
  });
}


export class Sandbox {
  /** CreateSandboxRequest.sandbox_id ('' until then). */
  id = '';
  hostname = '';
  created = false;
  destroyed = false;
  readonly containers = new Map<string, Container>();
  readonly oom = new OomQueue();
  /** CreateSandboxRequest.sandbox_pidns (recorded; the pid namespace is the first container's, as in Kata 2.x). */
  sandboxPidnsRequested = false;
  /** Namespace files containers join. pid: /proc/<pid>/ns/pid of the first container's init. */
  sharedNamespaces: { ipc?: string; uts?: string; pid?: string } = {};
  guestHooks: GuestHooks = {};

  readonly paths: SandboxPaths;
  private readonly log: Logger;
  private readonly sys: SandboxSys;
  private readonly creating = new Set<string>();
  private readonly lock = new Mutex();
  private shared?: SharedNamespaces;
  private undoDns?: () => void;
  private sandboxCgroup?: string;
  private cgroupTree?: Cgroups | null;
  private noPivotCached?: boolean;
  private consoleSeq = 0;
  /** The container whose init's pid namespace is sharedNamespaces.pid. */
  private pidNsOwner?: string;

  constructor(private readonly opts: SandboxOptions) {
    this.log = opts.log;
    const runDir = opts.paths?.runDir ?? BUNDLE_ROOT;
    this.paths = {
      runDir,
      sharedContainers: runDir === BUNDLE_ROOT ? KATA_GUEST_SHARED_DIR : path.join(runDir, 'shared/containers'),
      sandboxDir: path.join(runDir, 'sandbox'),
      consoleDir: path.join(runDir, '.console'),
      resolvConf: '/etc/resolv.conf',
      proc: '/proc',
      ...stripUndefined(opts.paths ?? {}),
    };
    this.sys = {
      sethostname: sysSethostname,
      mount: sysMount,
      umount2: sysUmount2,
      kill: sysKill,
      clockTicks: clockTicksPerSecond,
      ...stripUndefined(opts.sys ?? {}),
    };
    this.noPivotCached = opts.noPivot;
  }

  // ---------------------------------------------------------------------------
  // helpers

  private run = (file: string, args: string[], o?: RunOptions): Promise<RunResult> => run(this.opts.spawner, file, args, o);

  /** The cgroup tree, opened on first use; undefined when none is mounted. */
  cgroups(): Cgroups | undefined {
    if (this.opts.cgroups) return this.opts.cgroups();
    if (this.cgroupTree === undefined) {
      try {
        this.cgroupTree = fs.existsSync('/sys/fs/cgroup') ? openCgroups() : null;
      } catch (err) {
        this.log.warn({ err: String(err) }, 'cgroups unavailable');
        this.cgroupTree = null;
      }
    }
    return this.cgroupTree ?? undefined;
  }

  /** Whether the runtime needs --no-pivot (the guest root is an initramfs). */
  noPivot(): boolean {
    if (this.noPivotCached === undefined) {
      try {
        this.noPivotCached = rootNeedsNoPivot(parseMountInfoFull(fs.readFileSync(path.join(this.paths.proc, 'self/mountinfo'), 'utf8')));
      } catch {
        this.noPivotCached = false;
      }
      this.log.info({ noPivot: this.noPivotCached }, 'guest root file system checked for pivot_root');
    }
    return this.noPivotCached;
  }

  private cgroupSandboxId(): string {
    return this.id || DEFAULT_SANDBOX_ID;
  }

  private checkAlive(): void {
    if (this.destroyed) throw new RpcError(Code.FAILED_PRECONDITION, 'the sandbox has been destroyed');
  }

  /** The container `cid`, or NOT_FOUND. */
  container(cid: string): Container {
    const c = typeof cid === 'string' ? this.containers.get(cid) : undefined;
    if (!c || c.removed) throw new RpcError(Code.NOT_FOUND, `container ${shown(String(cid))} not found`);
    return c;
  }

  /** A live process of container `cid` ('' = its init), or NOT_FOUND. */
  process(cid: string, execId: string): ContainerProcess {
    const c = this.container(cid);
    const p = c.find(execId ?? '');
    if (!p) throw new RpcError(Code.NOT_FOUND, `exec id ${shown(execId)} of container ${shown(cid)} not found`);
    return p;
  }

  /** Like process(), but also an exec already waited for whose output is being drained. */
  private readableProcess(cid: string, execId: string): ContainerProcess {
    const c = this.container(cid);
    const p = c.find(execId ?? '') ?? c.draining.get(execId);
    if (!p) throw new RpcError(Code.NOT_FOUND, `exec id ${shown(execId)} of container ${shown(cid)} not found`);
    return p;
  }

  // ---------------------------------------------------------------------------
  // CreateSandbox / DestroySandbox

  /**
   * Kata's create_sandbox: sandbox id, kernel modules, host name, the shared
   * IPC and UTS namespaces, guest hooks, DNS, and (ours) the sandbox cgroup.
   * Storages are refused until the storage layer exists (issue 4). A failure
   * undoes what was done.
   */
  async createSandbox(req: CreateSandboxInput): Promise<void> {
    return this.lock.run(async () => {
      this.checkAlive();
      if (this.created) throw new RpcError(Code.ALREADY_EXISTS, `sandbox ${shown(this.id)} already created`);
      if (req.sandboxId !== '') validateSandboxId(req.sandboxId);
      const storages = this.parseStorageList(req.storages, 'CreateSandbox');
      if (req.hostname.length > HOST_NAME_MAX || req.hostname.includes('\0') || req.hostname.includes('/')) {
        throw new RpcError(Code.INVALID_ARGUMENT, `hostname ${shown(req.hostname)} is not a valid host name`);
      }
      validateKernelModules(req.kernelModules);
      const log = this.log.child({ sandbox: req.sandboxId });
      this.id = req.sandboxId;
      this.hostname = req.hostname;
      this.sandboxPidnsRequested = req.sandboxPidns;
      try {
        for (const m of req.kernelModules) {
          await loadKernelModule(m, this.run);
          log.info({ module: m.name, parameters: m.parameters }, 'kernel module loaded');
        }
        // The guest's host name (PID 1 owns the VM); the shared UTS namespace
        // created next starts with it. Not as a plain process on a host: its
        // host name is not ours, so containers then get their own UTS
        // namespace named by their spec (or the sandbox's host name).
        const kinds: NsKind[] = ['ipc'];
        if (this.opts.isInit) {
          if (req.hostname !== '') this.sys.sethostname(req.hostname);
          kinds.push('uts');
        } else if (req.hostname !== '') {
          log.warn({ hostname: req.hostname }, 'not PID 1: the guest host name is left alone; containers get the sandbox host name in their own UTS namespace');
        }
        this.shared = await createSharedNamespaces(path.join(this.paths.sandboxDir, 'ns'), kinds, {
          run: this.run,
          mount: this.sys.mount,
          umount2: this.sys.umount2,
          mountInfo: () => fs.readFileSync(path.join(this.paths.proc, 'self/mountinfo'), 'utf8'),
          log,
        });
        this.sharedNamespaces = { ...this.shared.paths };
        if (req.guestHookPath !== '') this.guestHooks = scanGuestHooks(req.guestHookPath, log);
        if (req.dns.length > 0) {
          this.undoDns = setupGuestDns(req.dns, path.join(this.paths.sandboxDir, 'resolv.conf'), this.paths.resolvConf, {
            mount: this.sys.mount,
            umount2: this.sys.umount2,
          });
        }
        // The sandbox's storages (e.g. the shared directory) live until DestroySandbox.
        if (storages.length > 0) {
          const points = await this.opts.storage!.add(storages, SANDBOX_OWNER);
          log.info({ storages: points }, 'sandbox storages mounted');
        }
        const cg = this.cgroups();
        if (cg) {
          const rel = sandboxCgroupPath(this.cgroupSandboxId());
          try {
            cg.create(rel);
            this.sandboxCgroup = rel;
          } catch (err) {
            log.warn({ cgroup: rel, err: String(err) }, 'cannot create the sandbox cgroup');
          }
        }
      } catch (err) {
        await this.opts.storage?.release(SANDBOX_OWNER).catch((e: unknown) => log.warn({ err: String(e) }, 'cannot release the sandbox storages'));
        this.teardownSandboxState(log);
        this.id = '';
        this.hostname = '';
        throw wrap('CreateSandbox', err);
      }
      this.created = true;
      log.info(
        { hostname: req.hostname, dns: req.dns.length, sharedNamespaces: this.sharedNamespaces, guestHooks: Object.keys(this.guestHooks) },
        'sandbox created',
      );
    });
  }

  /** Validated Storage entries; INVALID_ARGUMENT naming the entry, UNIMPLEMENTED without a storage layer. */
  private parseStorageList(list: unknown[], what: string): StorageSpec[] {
    if (list.length === 0) return [];
    if (!this.opts.storage) throw new RpcError(Code.UNIMPLEMENTED, `${what}: this agent has no storage layer; got ${list.length} storages`);
    return parseStorages(list, `${what}: storages`);
  }

  /** Undo createSandbox's side effects (never throws). */
  private teardownSandboxState(log: Logger): void {
    try {
      this.undoDns?.();
    } catch (err) {
      log.warn({ err: String(err) }, 'cannot undo the DNS setup');
    }
    this.undoDns = undefined;
    this.shared?.cleanup();
    this.shared = undefined;
    this.sharedNamespaces = {};
    this.guestHooks = {};
    try {
      fs.rmSync(path.join(this.paths.sandboxDir, 'resolv.conf'), { force: true });
      fs.rmdirSync(this.paths.sandboxDir);
    } catch {
      // not empty or not there
    }
  }

  /**
   * DestroySandbox: remove every container (killing what runs), undo the
   * sandbox setup, end pending GetOOMEvent calls, then onDestroyed() (the
   * agent stops serving; as PID 1 it powers off).
   */
  async destroySandbox(): Promise<void> {
    await this.lock.run(async () => {
      this.checkAlive();
      await this.teardownAll(this.log.child({ op: 'DestroySandbox' }));
      this.destroyed = true;
      this.oom.close(new RpcError(Code.UNAVAILABLE, 'the sandbox has been destroyed'));
    });
    this.log.info({ sandbox: this.id }, 'sandbox destroyed');
    const cb = this.opts.onDestroyed;
    if (cb) {
      // After this handler returns its reply is written; give it a moment to leave.
      setTimeout(() => {
        try {
          cb();
        } catch (err) {
          this.log.error({ err: String(err) }, 'onDestroyed failed');
        }
      }, DESTROYED_GRACE_MS);
    }
  }

  /** Remove every container and undo the sandbox setup; errors are logged. */
  private async teardownAll(log: Logger): Promise<void> {
    for (const c of [...this.containers.values()]) {
      try {
        await c.lock.run(() => this.killAndRemove(c, DESTROY_TIMEOUT_MS, undefined, log));
      } catch (err) {
        log.warn({ container: c.id, err: String(err) }, 'container did not go away cleanly; forcing');
        await this.forceRemove(c, log);
      }
    }
    // Every storage left: the sandbox's own, and shared ones that outlived their containers.
    if (this.opts.storage) {
      await this.opts.storage.closeAll().then(
        (points) => points.length > 0 && log.info({ storages: points }, 'storages unmounted'),
        (err: unknown) => log.warn({ err: String(err) }, 'cannot unmount every storage'),
      );
    }
    const cg = this.cgroups();
    if (cg && this.sandboxCgroup) {
      await cg.remove(this.sandboxCgroup).catch((err: unknown) => log.warn({ err: String(err) }, 'cannot remove the sandbox cgroup'));
      this.sandboxCgroup = undefined;
    }
    this.teardownSandboxState(log);
    this.created = false;
  }

  /** For the agent's shutdown: like DestroySandbox without onDestroyed. */
  async close(): Promise<void> {
    if (this.destroyed) return;
    await this.lock.run(async () => {
      if (this.destroyed) return;
      await this.teardownAll(this.log.child({ op: 'close' }));
      this.destroyed = true;
      this.oom.close(new RpcError(Code.UNAVAILABLE, 'the agent is shutting down'));
    });
  }

  /**
   * UpdateEphemeralMounts (Kata: remount the sandbox's ephemeral tmpfs mounts with new options,
   * e.g. a new size after the pod's emptyDir limit changed).
   */
  async updateEphemeralMounts(list: unknown[]): Promise<void> {
    this.checkAlive();
    const storages = this.parseStorageList(list, 'UpdateEphemeralMounts');
    if (storages.length === 0) return;
    await this.opts.storage!.updateEphemeral(storages);
    this.log.info({ storages: storages.map((s) => s.mountPoint) }, 'ephemeral mounts updated');
  }

  // ---------------------------------------------------------------------------
  // CreateContainer

  async createContainer(req: CreateContainerInput): Promise<void> {
    this.checkAlive();
    const cid = req.containerId;
    validateContainerId(cid);
    if (RESERVED_CONTAINER_IDS.has(cid)) {
      throw new RpcError(Code.INVALID_ARGUMENT, `invalid container id ${shown(cid)}: reserved for the agent's own directory ${path.join(this.paths.runDir, cid)}`);
    }
    if (this.containers.has(cid) || this.creating.has(cid)) throw new RpcError(Code.ALREADY_EXISTS, `container ${shown(cid)} already exists`);
    if (req.execId !== '') validateExecId(req.execId);
    if (req.devices.length > 0 && !this.opts.devices) {
      throw new RpcError(Code.UNIMPLEMENTED, `CreateContainer ${cid}: this agent has no device layer; got ${req.devices.length} devices`);
    }
    const devices = parseDevices(req.devices, `CreateContainer ${cid}`);
    const storages = this.parseStorageList(req.storages, `CreateContainer ${cid}`);
    try {
      validateSpec(req.spec);
    } catch (err) {
      throw new RpcError(Code.INVALID_ARGUMENT, `CreateContainer ${cid}: invalid OCI spec: ${(err as Error).message}`);
    }
    const log = this.log.child({ container: cid });
    this.creating.add(cid);
    try {
      await this.doCreate(req, cid, log, devices, storages);
    } finally {
      this.creating.delete(cid);
    }
  }

  private async doCreate(req: CreateContainerInput, cid: string, log: Logger, devices: DeviceInput[], storages: StorageSpec[]): Promise<void> {
    const warnings: string[] = [];
    const oci = grpcSpecToOci(req.spec!, { warn: (m) => warnings.push(m) });
    if (req.sandboxPidns && !this.sharedNamespaces.pid && this.containers.size > 0) {
      throw new RpcError(Code.FAILED_PRECONDITION, `CreateContainer ${cid}: ${ERR_NO_SANDBOX_PIDNS}`);
    }
    let cgroupRel: string;
    try {
      cgroupRel = containerCgroupPath(this.cgroupSandboxId(), oci.linux?.cgroupsPath, cid);
    } catch (err) {
      throw wrap(`CreateContainer ${cid}: Linux.CgroupsPath`, err);
    }
    const bundleDir = path.join(this.paths.runDir, cid);
    const rw = rewriteForGuest(oci, {
      containerId: cid,
      sandboxId: this.id,
      bundleDir,
      rootfsPath: path.posix.isAbsolute(oci.root?.path ?? '') ? undefined : path.join(this.paths.sharedContainers, cid, 'rootfs'),
      sandboxPidns: req.sandboxPidns,
      sharedNamespaces: this.sharedNamespaces,
      cgroupsPath: cgroupRel,
      guestHooks: this.guestHooks,
    });
    const spec = rw.spec;
    warnings.push(...rw.warnings);
    // Without the shared UTS namespace, a container in a UTS namespace of its own gets the sandbox's host name.
    if (!this.sharedNamespaces.uts && this.hostname !== '' && spec.hostname === undefined && spec.linux?.namespaces?.some((n) => n.type === 'uts')) {
      spec.hostname = this.hostname;
    }
    if (warnings.length > 0) log.info({ warnings }, 'spec adjusted for the guest');

    // The root, wherever the host put it, must lie below the agent's directory.
    const rootfs = spec.root!.path;
    const runDir = path.resolve(this.paths.runDir);
    if (!path.resolve(rootfs).startsWith(`${runDir}/`)) {
      throw new RpcError(Code.INVALID_ARGUMENT, `CreateContainer ${cid}: Root.Path ${rootfs} is not below ${runDir}`);
    }

    // Devices first (one may carry the rootfs a storage then mounts), then the storages.
    if (devices.length > 0) {
      const resolved = await resolveDevices(devices, this.opts.devices!());
      const changes = applyDevices(spec, resolved);
      log.info({ devices: resolved.map((r) => ({ type: r.device.type, guest: r.guest.path, containerPath: r.device.containerPath || undefined })), specChanges: changes.length }, 'devices ready');
    }
    // A stale bundle (not ours: we do not know the container) is replaced, before any
    // storage mounts into the bundle directory.
    if (fs.existsSync(bundleDir)) {
      log.warn({ bundle: bundleDir }, 'removing a stale bundle directory');
      await removeBundle(bundleDir, { root: this.paths.runDir });
    }
    let storagesMounted = false;
    try {
      if (storages.length > 0) {
        const points = await this.opts.storage!.add(storages, cid);
        storagesMounted = true;
        log.info({ storages: points }, 'container storages mounted');
      }
      let st: fs.Stats;
      try {
        st = fs.statSync(rootfs);
      } catch (err) {
        if (errCode(err) === 'ENOENT') {
          throw new RpcError(
            Code.NOT_FOUND,
            `CreateContainer ${cid}: the container's root file system ${rootfs} does not exist (the host shares it or sends a storage for it)`,
          );
        }
        throw wrap(`CreateContainer ${cid}: root file system ${rootfs}`, err);
      }
      if (!st.isDirectory()) throw new RpcError(Code.FAILED_PRECONDITION, `CreateContainer ${cid}: the root file system ${rootfs} is not a directory`);

      this.applyNetSysctls(cid, rw.netSysctls, log);
      await writeBundle(bundleDir, ociSpecToJson(spec), { root: this.paths.runDir });
    } catch (err) {
      if (storagesMounted) await this.releaseStorages(cid, log);
      throw err;
    }

    let io: ProcessIO | undefined;
    let pid: number | undefined;
    try {
      const started = await this.startProcess(spec.process?.terminal === true, log, (stdio) =>
        this.opts.runtime.create(cid, bundleDir, { pidFile: path.join(bundleDir, 'init.pid'), noPivot: this.noPivot(), ...stdio }),
      );
      io = started.io;
      pid = started.pid;
    } catch (err) {
      await this.cleanupFailedCreate(cid, bundleDir, cgroupRel, log);
      throw err;
    }

    const init = new ContainerProcess(cid, req.execId || cid, pid, io, true, io.isTerminal);
    const c = new Container(cid, req.execId || cid, bundleDir, cgroupRel, spec, init);
    init.unwatch = this.opts.reaper.watch(pid, (s) => init.exitedWith(s));
    init.onExit((s) => {
      c.status = 'stopped';
      log.info({ pid, code: s.code, signal: s.signal }, 'container init exited');
    });
    if (cid !== this.id) {
      // Set up once the reply is on its way (the watch costs ~0.3 ms); StartContainer waits
      // for it, and before StartContainer the init is blocked in the runtime: it cannot
      // allocate, let alone be OOM-killed.
      c.oomReady = new Promise<void>((resolve) =>
        setImmediate(() => {
          if (!c.removed) this.watchOom(c, log);
          resolve();
        }),
      );
    }
    this.containers.set(cid, c);
    // Kata: without a pause container the first container's pid namespace is the sandbox's.
    if (!this.sharedNamespaces.pid && this.containers.size === 1) {
      this.sharedNamespaces = { ...this.sharedNamespaces, pid: path.join(this.paths.proc, String(pid), 'ns/pid') };
      this.pidNsOwner = cid;
    }
    log.info({ pid, bundle: bundleDir, cgroup: cgroupRel, terminal: io.isTerminal }, 'container created');
  }

  /**
   * Start a process through the runtime with pipes or (terminal) a console
   * socket; returns its ProcessIO and pid. On failure nothing is left open.
   */
  private async startProcess(
    terminal: boolean,
    log: Logger,
    launch: (o: { stdio?: { stdin: number; stdout: number; stderr: number }; consoleSocket?: string }) => Promise<{ pid: number }>,
  ): Promise<{ io: ProcessIO; pid: number }> {
    if (!terminal) {
      const io = ProcessIO.pipes({ pipeSize: this.opts.pipeSize, log });
      try {
        const { pid } = await launch({ stdio: io.childFds! });
        return { io, pid };
      } catch (err) {
        io.close();
        throw err;
      } finally {
        io.releaseChildFds();
      }
    }
    const sockPath = path.join(this.paths.consoleDir, `${process.pid}-${++this.consoleSeq}.sock`);
    const cs = await ConsoleSocket.listen(sockPath, { log });
    try {
      const master = cs.receive(this.opts.consoleTimeoutMs);
      master.catch(noop);
      const { pid } = await launch({ consoleSocket: cs.path });
      const fd = await master;
      return { io: ProcessIO.terminal(fd, { log }), pid };
    } finally {
      await cs.close();
    }
  }

  /** Drop a container's storage references (unmounting what no one else uses). Never throws. */
  private async releaseStorages(owner: string, log: Logger): Promise<void> {
    if (!this.opts.storage) return;
    try {
      const gone = await this.opts.storage.release(owner);
      if (gone.length > 0) log.info({ storages: gone }, 'storages unmounted');
    } catch (err) {
      log.warn({ owner, err: String(err) }, 'cannot release storages');
    }
  }

  private async cleanupFailedCreate(cid: string, bundleDir: string, cgroupRel: string, log: Logger): Promise<void> {
    try {
      await this.opts.runtime.delete(cid, true);
    } catch (err) {
      if ((err as RpcError).code !== Code.NOT_FOUND) log.debug({ err: String(err) }, 'runtime delete after a failed create');
    }
    const cg = this.cgroups();
    if (cg) await cg.remove(cgroupRel).catch((err: unknown) => log.warn({ cgroup: cgroupRel, err: String(err) }, 'cannot remove the cgroup of a failed create'));
    await this.releaseStorages(cid, log);
    await removeBundle(bundleDir, { root: this.paths.runDir }).catch((err: unknown) =>
      log.warn({ bundle: bundleDir, err: String(err) }, 'cannot remove the bundle of a failed create'),
    );
  }

  /** net.* sysctls of a container that shares the guest's network namespace: written to /proc/sys/net here. */
  private applyNetSysctls(cid: string, sysctls: Record<string, string>, log: Logger): void {
    for (const [key, value] of Object.entries(sysctls)) {
      const parts = key.includes('/') ? key.split('/') : key.split('.');
      const file = path.join(this.paths.proc, 'sys', ...parts);
      try {
        fs.writeFileSync(file, value);
      } catch (err) {
        throw new RpcError(
          errCode(err) === 'ENOENT' ? Code.INVALID_ARGUMENT : toStatus(err).code,
          `CreateContainer ${cid}: Linux.Sysctl[${JSON.stringify(key)}]: cannot write ${file}: ${(err as Error).message}`,
        );
      }
      log.info({ sysctl: key, value }, 'network sysctl applied in the guest');
    }
  }

  private watchOom(c: Container, log: Logger): void {
    const cg = this.cgroups();
    if (!cg) return;
    try {
      c.oomWatcher = cg.watchOom(c.cgroupRel, () => {
        log.warn({ cgroup: c.cgroupRel }, 'OOM kill in the container');
        this.oom.push(c.id);
      });
      log.debug({ via: c.oomWatcher.via }, 'watching for OOM kills');
    } catch (err) {
      log.warn({ cgroup: c.cgroupRel, err: String(err) }, 'cannot watch the container for OOM kills');
    }
  }

  // ---------------------------------------------------------------------------
  // StartContainer, ExecProcess, SignalProcess, WaitProcess

  async startContainer(cid: string): Promise<void> {
    this.checkAlive();
    const c = this.container(cid);
    await c.lock.run(async () => {
      this.container(cid);
      await c.oomReady;
      await this.opts.runtime.start(cid);
      if (c.init.running) c.status = 'running';
      this.log.info({ container: cid }, 'container started');
    });
  }

  async execProcess(cid: string, execId: string, proc: GrpcProcess | null | undefined): Promise<void> {
    this.checkAlive();
    const c = this.container(cid);
    validateExecId(execId);
    try {
      validateProcess(proc, 'Process');
    } catch (err) {
      throw new RpcError(Code.INVALID_ARGUMENT, `ExecProcess ${cid}/${execId}: ${(err as Error).message}`);
    }
    const log = this.log.child({ container: cid, exec: execId });
    await c.lock.run(async () => {
      this.container(cid);
      if (c.find(execId)) throw new RpcError(Code.ALREADY_EXISTS, `exec id ${shown(execId)} of container ${shown(cid)} already exists`);
      const old = c.draining.get(execId);
      if (old) {
        c.draining.delete(execId);
        old.io.close();
      }
      const warnings: string[] = [];
      const oci = grpcProcessToOci(proc!, { warn: (m) => warnings.push(m) });
      // As for the container (rewriteForGuest): no LSM labels in the guest.
      delete oci.apparmorProfile;
      delete oci.selinuxLabel;
      if (warnings.length > 0) log.info({ warnings }, 'process adjusted');
      const n = ++c.execSeq;
      const processJson = path.join(c.bundleDir, `exec-${n}.json`);
      const pidFile = path.join(c.bundleDir, `exec-${n}.pid`);
      await fs.promises.writeFile(processJson, ociSpecToJson(oci), { mode: 0o600 });
      let started: { io: ProcessIO; pid: number };
      try {
        started = await this.startProcess(oci.terminal === true, log, (stdio) =>
          this.opts.runtime.exec(cid, processJson, { pidFile, detach: true, ...stdio }),
        );
      } finally {
        await fs.promises.rm(processJson, { force: true }).catch(noop);
        await fs.promises.rm(pidFile, { force: true }).catch(noop);
      }
      const p = new ContainerProcess(cid, execId, started.pid, started.io, false, started.io.isTerminal);
      p.unwatch = this.opts.reaper.watch(started.pid, (s) => p.exitedWith(s));
      p.onExit((s) => log.info({ pid: p.pid, code: s.code, signal: s.signal }, 'exec process exited'));
      c.execs.set(execId, p);
      log.info({ pid: started.pid, terminal: p.terminal }, 'process started');
    });
  }

  /**
   * Kata's signal_process: an empty exec id with SIGKILL means every process
   * of the container (the runtime's kill --all; the cgroup's processes when
   * the runtime refuses, e.g. after the init exited). Otherwise the one
   * process (empty exec id: the init), where SIGTERM becomes SIGKILL for an
   * init that does not handle SIGTERM (as PID 1 of its namespace it would
   * ignore it). A process that already exited is not an error.
   */
  async signalProcess(cid: string, execId: string, signal: number): Promise<void> {
    this.checkAlive();
    if (!Number.isInteger(signal) || signal < 0 || signal > 64) throw new RpcError(Code.INVALID_ARGUMENT, `invalid signal ${signal}`);
    const c = this.container(cid);
    if (execId === '' && signal === SIGKILL) {
      await this.killAll(c, SIGKILL);
      return;
    }
    const p = this.process(cid, execId);
    if (!p.running) return;
    let sig = signal;
    if (p.init && sig === SIGTERM && !signalHandled(this.paths.proc, p.pid, SIGTERM)) sig = SIGKILL;
    try {
      this.sys.kill(p.pid, sig);
    } catch (err) {
      if (errCode(err) === 'ESRCH') return;
      throw wrap(`SignalProcess ${cid}/${execId}`, err);
    }
    this.log.info({ container: cid, exec: execId, pid: p.pid, signal: sig }, 'signal sent');
  }

  /** Signal every process of the container. Never fails for processes that are gone. */
  private async killAll(c: Container, sig: number): Promise<void> {
    try {
      await this.opts.runtime.kill(c.id, sig, true);
      return;
    } catch (err) {
      this.log.debug({ container: c.id, err: String(err) }, 'runtime kill --all refused; signalling the cgroup');
    }
    const cg = this.cgroups();
    const pids = new Set<number>(cg ? cg.pids(c.cgroupRel, { recursive: true }) : []);
    for (const p of c.processes()) if (p.running) pids.add(p.pid);
    for (const pid of pids) {
      try {
        this.sys.kill(pid, sig);
      } catch {
        // gone
      }
    }
  }

  /**
   * Wait for a process to exit; returns its status (exit code, or 128 +
   * signal). After the wait an exec'd process is forgotten (Kata removes it);
   * its remaining output can still be read until drained. The init stays:
   * waiting for it again returns the same status.
   */
  async waitProcess(cid: string, execId: string, signal?: AbortSignal): Promise<number> {
    this.checkAlive();
    const c = this.container(cid);
    const p = this.process(cid, execId);
    const st: ExitStatus = await raceAbort(p.exited, signal, `WaitProcess ${cid}/${execId}`);
    if (!p.init && c.execs.get(p.execId) === p) {
      c.execs.delete(p.execId);
      this.keepDraining(c, p);
    }
    return st.code;
  }

  /**
   * An exec'd process that WaitProcess forgot: its remaining output stays
   * readable; once it has all been read the entry lingers DRAINED_LINGER_MS
   * (so the read that sees EOF still finds it), then it is closed. At most
   * MAX_DRAINING per container (the oldest go first).
   */
  private keepDraining(c: Container, p: ContainerProcess): void {
    c.draining.set(p.execId, p);
    const drop = (): void => {
      if (c.draining.get(p.execId) === p) c.draining.delete(p.execId);
      p.io.close();
    };
    void p.io.drained.then(() => setTimeout(drop, DRAINED_LINGER_MS).unref());
    while (c.draining.size > MAX_DRAINING) {
      const [oldestId, oldest] = c.draining.entries().next().value as [string, ContainerProcess];
      c.draining.delete(oldestId);
      oldest.io.close();
    }
  }

  // ---------------------------------------------------------------------------
  // stdio

  async writeStdin(cid: string, execId: string, data: Buffer, signal?: AbortSignal): Promise<number> {
    this.checkAlive();
    const p = this.process(cid, execId);
    if (data.length === 0) {
      // Kata (runtime-rs): an empty write is the end of stdin.
      p.io.closeStdin();
      return 0;
    }
    return p.io.write(data, signal);
  }

  async readStream(cid: string, execId: string, stream: 'stdout' | 'stderr', len: number, signal?: AbortSignal): Promise<Buffer> {
    this.checkAlive();
    const p = this.readableProcess(cid, execId);
    return p.io.read(stream, Math.min(len, MAX_READ_LEN), signal);
  }

  closeStdin(cid: string, execId: string): void {
    this.checkAlive();
    this.process(cid, execId).io.closeStdin();
  }

  ttyWinResize(cid: string, execId: string, rows: number, cols: number): void {
    this.checkAlive();
    this.process(cid, execId).io.resize(rows, cols);
  }

  // ---------------------------------------------------------------------------
  // RemoveContainer

  /**
   * Kill every process, wait up to `timeoutSec` seconds (0: no limit but the
   * call's own deadline, as Kata) for them to exit, then delete the container
   * in the runtime and remove its cgroup, bundle and stdio. On timeout:
   * DEADLINE_EXCEEDED and the container stays (killed, not removed): a later
   * RemoveContainer finishes the job.
   */
  async removeContainer(cid: string, timeoutSec: number, signal?: AbortSignal): Promise<void> {
    this.checkAlive();
    const c = this.container(cid);
    const log = this.log.child({ container: cid });
    await c.lock.run(async () => {
      this.container(cid);
      await this.killAndRemove(c, timeoutSec > 0 ? timeoutSec * 1000 : undefined, signal, log);
    });
  }

  private async killAndRemove(c: Container, timeoutMs: number | undefined, signal: AbortSignal | undefined, log: Logger): Promise<void> {
    const alive = () => c.processes().filter((p) => p.running);
    // The whole kill-and-wait is bounded: a runtime call that hangs counts against the timeout too.
    const work = (async () => {
      if (c.status === 'paused') {
        // Frozen processes cannot die.
        await this.opts.runtime.resume(c.id).catch((err: unknown) => log.debug({ err: String(err) }, 'resume before removal'));
        c.status = c.init.running ? 'running' : 'stopped';
      }
      if (alive().length > 0) await this.killAll(c, SIGKILL);
      await Promise.all(alive().map((p) => p.exited));
    })();
    const r = await within(work, timeoutMs, signal);
    if ('timedOut' in r) {
      const left = alive().map((p) => p.pid);
      throw new RpcError(
        Code.DEADLINE_EXCEEDED,
        `RemoveContainer ${c.id}: processes ${left.join(', ') || '(none)'} did not exit ${
          timeoutMs !== undefined ? `within ${timeoutMs / 1000} s` : 'before the call ended'
        }; the container is left in place`,
      );
    }
    await this.removeExited(c, log);
  }

  /** Delete a container whose processes are gone; the runtime step first, so a failure leaves it whole. */
  private async removeExited(c: Container, log: Logger): Promise<void> {
    try {
      await this.opts.runtime.delete(c.id, true);
    } catch (err) {
      if ((err as RpcError).code !== Code.NOT_FOUND) throw wrap(`RemoveContainer ${c.id}`, err);
    }
    c.removed = true;
    this.containers.delete(c.id);
    this.forgetPidNs(c);
    await this.releaseResources(c, log);
    log.info('container removed');
  }

  /** Last resort (DestroySandbox): SIGKILL what is left, delete, release. Never throws. */
  private async forceRemove(c: Container, log: Logger): Promise<void> {
    for (const p of c.processes()) {
      if (!p.running) continue;
      try {
        this.sys.kill(p.pid, SIGKILL);
      } catch {
        // gone
      }
    }
    await this.opts.runtime.delete(c.id, true).catch((err: unknown) => log.warn({ container: c.id, err: String(err) }, 'runtime delete failed'));
    c.removed = true;
    this.containers.delete(c.id);
    this.forgetPidNs(c);
    for (const p of c.processes()) if (p.running) p.unwatch?.();
    await this.releaseResources(c, log);
  }

  /**
   * The container whose pid namespace is the sandbox's is gone: so is the
   * namespace (Kata keeps the dead path; the next container then fails to
   * join it). The next first container provides a new one.
   */
  private forgetPidNs(c: Container): void {
    if (this.pidNsOwner !== c.id) return;
    const { pid: _gone, ...rest } = this.sharedNamespaces;
    this.sharedNamespaces = rest;
    this.pidNsOwner = undefined;
  }

  private async releaseResources(c: Container, log: Logger): Promise<void> {
    c.oomWatcher?.close();
    c.oomWatcher = undefined;
    for (const p of c.processes()) p.io.close();
    c.execs.clear();
    c.draining.clear();
    const cg = this.cgroups();
    if (cg) await cg.remove(c.cgroupRel).catch((err: unknown) => log.warn({ cgroup: c.cgroupRel, err: String(err) }, 'cannot remove the container cgroup'));
    // Its storages (one may be the rootfs inside the bundle directory) go before the bundle.
    await this.releaseStorages(c.id, log);
    await removeBundle(c.bundleDir, { root: this.paths.runDir }).catch((err: unknown) =>
      log.warn({ bundle: c.bundleDir, err: String(err) }, 'cannot remove the bundle'),
    );
  }

  // ---------------------------------------------------------------------------
  // Pause, resume, update, stats, processes, diagnostics

  async pauseContainer(cid: string): Promise<void> {
    this.checkAlive();
    const c = this.container(cid);
    await c.lock.run(async () => {
      this.container(cid);
      await this.opts.runtime.pause(cid);
      c.status = 'paused';
    });
  }

  async resumeContainer(cid: string): Promise<void> {
    this.checkAlive();
    const c = this.container(cid);
    await c.lock.run(async () => {
      this.container(cid);
      await this.opts.runtime.resume(cid);
      c.status = c.init.running ? 'running' : 'stopped';
    });
  }

  /**
   * New cgroup limits (Kata: ctr.set, written to the cgroup files). Without
   * a cgroup tree the runtime's `update` is used. Absent resources: nothing.
   */
  async updateContainer(cid: string, resources: GrpcResources | null | undefined): Promise<string[]> {
    this.checkAlive();
    const c = this.container(cid);
    if (resources === null || resources === undefined) return [];
    try {
      validateResources(resources);
    } catch (err) {
      throw new RpcError(Code.INVALID_ARGUMENT, `UpdateContainer ${cid}: ${(err as Error).message}`);
    }
    const oci = grpcResourcesToOci(resources);
    return c.lock.run(async () => {
      this.container(cid);
      const cg = this.cgroups();
      let written: string[] = [];
      try {
        if (cg && cg.exists(c.cgroupRel)) {
          written = cg.update(c.cgroupRel, oci as unknown as LinuxResources);
        } else {
          const file = path.join(c.bundleDir, 'resources.json');
          await fs.promises.writeFile(file, ociSpecToJson(oci), { mode: 0o600 });
          try {
            await this.opts.runtime.update(cid, file);
          } finally {
            await fs.promises.rm(file, { force: true }).catch(noop);
          }
        }
      } catch (err) {
        throw wrap(`UpdateContainer ${cid}`, err);
      }
      const linux = (c.spec.linux ??= {});
      linux.resources = { ...(linux.resources ?? {}), ...oci };
      this.log.info({ container: cid, files: written }, 'container resources updated');
      return written;
    });
  }

  statsContainer(cid: string): StatsResult {
    this.checkAlive();
    const c = this.container(cid);
    const cg = this.cgroups();
    if (!cg) throw new RpcError(Code.FAILED_PRECONDITION, `StatsContainer ${cid}: no cgroup file system is mounted in the guest`);
    return {
      cgroup_stats: cg.stats(c.cgroupRel),
      network_stats: readNetworkStats(this.paths.proc, c.init.running ? c.init.pid : undefined),
    };
  }

  /** The container's pids (runtime `ps`, else the cgroup's processes). */
  async containerPids(cid: string): Promise<number[]> {
    const c = this.container(cid);
    try {
      return await this.opts.runtime.ps(cid);
    } catch (err) {
      const cg = this.cgroups();
      if (!cg) throw wrap(`ListProcesses ${cid}`, err);
      return cg.pids(c.cgroupRel, { recursive: true });
    }
  }

  /**
   * Kata 1.x ListProcesses: "json" is a JSON array of the container's pids;
   * "table" is `ps -ef` (built from /proc) or, with other arguments, `ps
   * ARGS` filtered to the container's pids, as Kata does.
   */
  async listProcesses(cid: string, format: string, args: string[]): Promise<Buffer> {
    this.checkAlive();
    this.container(cid);
    if (format !== 'table' && format !== 'json') {
      throw new RpcError(Code.INVALID_ARGUMENT, `ListProcesses ${cid}: invalid format ${shown(format)} (table or json)`);
    }
    const pids = await this.containerPids(cid);
    if (format === 'json') return Buffer.from(JSON.stringify(pids));
    if (args.length === 0 || (args.length === 1 && args[0] === '-ef')) {
      return Buffer.from(psTable(pids, { procRoot: this.paths.proc, clockTicks: this.sys.clockTicks() }));
    }
    let r: RunResult;
    try {
      r = await this.run('ps', args, { timeoutMs: 10_000 });
    } catch (err) {
      if (errCode(err) === 'ENOENT') throw new RpcError(Code.FAILED_PRECONDITION, `ListProcesses ${cid}: there is no ps in the guest for the arguments ${args.join(' ')}`);
      throw wrap(`ListProcesses ${cid}`, err);
    }
    if (r.code !== 0) throw new RpcError(Code.INTERNAL, `ListProcesses ${cid}: ps ${args.join(' ')} failed: ${r.stderr.trim() || `exit code ${r.code}`}`);
    try {
      return Buffer.from(filterPsOutput(r.stdout, pids));
    } catch (err) {
      throw new RpcError(Code.INTERNAL, `ListProcesses ${cid}: ${(err as Error).message}`);
    }
  }

  /**
   * GetDiagnosticData (Kata 3.x): log_type "termination_log" reads the file
   * behind the io.kubernetes.container.terminationMessagePath annotation (the
   * source of the mount with that destination), at most 4 KiB; a missing
   * file is empty.
   */
  async diagnosticData(cid: string, logType: string): Promise<string> {
    this.checkAlive();
    const c = this.container(cid);
    if (logType !== 'termination_log') throw new RpcError(Code.INVALID_ARGUMENT, `unsupported diagnostic log_type: ${logType}`);
    const dest = c.spec.annotations?.[TERMINATION_PATH_ANNOTATION];
    if (!dest) throw new RpcError(Code.NOT_FOUND, `container ${cid} has no ${TERMINATION_PATH_ANNOTATION} annotation`);
    const source = c.spec.mounts?.find((m) => m.destination === dest)?.source;
    if (!source) throw new RpcError(Code.NOT_FOUND, `termination message mount not found for ${dest}`);
    let fh: fs.promises.FileHandle;
    try {
      fh = await fs.promises.open(source, 'r');
    } catch (err) {
      if (errCode(err) === 'ENOENT') return '';
      throw wrap('Failed to read termination log', err);
    }
    try {
      const buf = Buffer.alloc(MAX_TERMINATION_MESSAGE);
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      return buf.subarray(0, bytesRead).toString('utf8');
    } finally {
      await fh.close();
    }
  }

  /** GetOOMEvent: the next container OOM-killed (long poll). */
  nextOomEvent(signal?: AbortSignal): Promise<string> {
    return this.oom.next(signal);
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

