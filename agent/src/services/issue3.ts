// The RPCs of issue 3 (sandbox and container lifecycle), registered on the
// shared Dispatcher. One Sandbox holds the live state; the OCI runtime is
// agent.oci_runtime (crun by default) driven through the agent's Spawner.
import type { Cgroups } from '../cgroups/types';
import type { Logger } from '../log';
import type { Reaper } from '../proc/reaper';
import type { Spawner } from '../proc/spawner';
import type { Dispatcher, Handler } from '../rpc/dispatch';
import { DeviceWaiter } from '../devices/wait';
import { UeventListener } from '../devices/uevent';
import { CliRuntime, type OciRuntime } from '../runtime/oci-runtime';
import type { DeviceResolver } from '../sandbox/devices';
import { StorageManager } from '../storage/manager';
import { realStorageDeps } from '../storage/realdeps';
import { Code, RpcError } from '../rpc/status';
import { makeVolumeHandlers, realVolumeDeps, type VolumeDeps } from './volumes';
import { Sandbox, type SandboxPaths, type SandboxSys } from '../sandbox/sandbox';
import { makeContainerHandlers } from './container';
import { makeProcessHandlers } from './process';
import { ISSUE3_METHODS } from './issue3-methods';
import { makeSandboxHandlers, messageList } from './sandbox';

export { ISSUE3_METHODS } from './issue3-methods';

export interface Issue3Deps {
  log: Logger;
  spawner: Spawner;
  reaper: Pick<Reaper, 'watch'>;
  /** agent.oci_runtime: binary name (looked up in PATH) or path. Default crun. */
  ociRuntime?: string;
  /** agent.container_pipe_size (0 = kernel default). */
  containerPipeSize?: number;
  /** The agent is the guest's PID 1 (default: process.pid === 1). */
  isInit?: boolean;
  /** Called after DestroySandbox: stop serving (as PID 1: power off). */
  onDestroyed?: () => void;
  /** Replace the runtime (tests). */
  runtime?: OciRuntime;
  cgroups?: () => Cgroups | undefined;
  paths?: Partial<SandboxPaths>;
  sys?: Partial<SandboxSys>;
  noPivot?: boolean;
  /** agent.hotplug_timeout in ms (default 3000). */
  hotplugTimeoutMs?: number;
  /** Replace the device layer (tests); default: a DeviceWaiter on a uevent listener, made on first use. */
  devices?: () => DeviceResolver;
  /** Replace the storage layer (tests). */
  storage?: StorageManager;
  /** Replace the volume RPCs' system calls (tests). */
  volumes?: VolumeDeps;
}

export interface Issue3Services {
  sandbox: Sandbox;
  /** The handler of every method of ISSUE3_METHODS. */
  handlers: Record<(typeof ISSUE3_METHODS)[number], Handler>;
  /** Remove every container and undo the sandbox setup (agent shutdown). Never rejects. */
  close(): Promise<void>;
}

/** The sandbox and the handlers of the issue-3 RPCs (main registers them lazily; see ISSUE3_METHODS). */
export function makeIssue3Services(deps: Issue3Deps): Issue3Services {
  const log = deps.log;
  const runtime =
    deps.runtime ?? new CliRuntime(deps.ociRuntime || 'crun', { spawner: deps.spawner, log: log.child({ component: 'oci-runtime' }), sealedCopy: true });
  // Devices: the uevent listener opens on the first device to wait for, and stays.
  let listener: UeventListener | undefined;
  let waiter: DeviceWaiter | undefined;
  const devices =
    deps.devices ??
    ((): DeviceResolver => {
      if (waiter) return waiter;
      const l = new UeventListener({ log: log.child({ component: 'uevent' }) });
      try {
        l.start();
      } catch (err) {
        throw new RpcError(Code.INTERNAL, `cannot listen for device events (NETLINK_KOBJECT_UEVENT): ${(err as Error).message}`);
      }
      listener = l;
      waiter = new DeviceWaiter({ sysRoot: '/sys', devRoot: '/dev', listener: l, timeoutMs: deps.hotplugTimeoutMs ?? 3000, log: log.child({ component: 'devices' }) });
      log.info({ timeoutMs: deps.hotplugTimeoutMs ?? 3000 }, 'listening for device events');
      return waiter;
    });
  const lazyDevices: DeviceResolver = {
    pciBlock: (p, signal) => devices().pciBlock(p, signal),
    scsiBlock: (a, signal) => devices().scsiBlock(a, signal),
    mmioBlock: (n, signal) => devices().mmioBlock(n, signal),
    pmem: (p, signal) => devices().pmem(p, signal),
  };
  const storage = deps.storage ?? new StorageManager({ deps: realStorageDeps({ devices: lazyDevices, log: log.child({ component: 'storage' }) }) });
  const volumes = makeVolumeHandlers(deps.volumes ?? realVolumeDeps({ log: log.child({ component: 'volumes' }), spawner: deps.spawner, pciBlock: lazyDevices.pciBlock }));
  const sandbox = new Sandbox({
    log: log.child({ component: 'sandbox' }),
    spawner: deps.spawner,
    reaper: deps.reaper,
    runtime,
    isInit: deps.isInit ?? process.pid === 1,
    pipeSize: deps.containerPipeSize,
    onDestroyed: deps.onDestroyed,
    cgroups: deps.cgroups,
    paths: deps.paths,
    sys: deps.sys,
    noPivot: deps.noPivot,
    storage,
    devices,
  });
  const s = makeSandboxHandlers(sandbox);
  const c = makeContainerHandlers(sandbox);
  const p = makeProcessHandlers(sandbox);
  const table: Record<(typeof ISSUE3_METHODS)[number], Handler> = {
    'grpc.AgentService/CreateSandbox': s.createSandbox,
    'grpc.AgentService/DestroySandbox': s.destroySandbox,
    'grpc.AgentService/GetOOMEvent': s.getOOMEvent,
    'grpc.AgentService/CreateContainer': c.createContainer,
    'grpc.AgentService/StartContainer': c.startContainer,
    'grpc.AgentService/RemoveContainer': c.removeContainer,
    'grpc.AgentService/UpdateContainer': c.updateContainer,
    'grpc.AgentService/StatsContainer': c.statsContainer,
    'grpc.AgentService/PauseContainer': c.pauseContainer,
    'grpc.AgentService/ResumeContainer': c.resumeContainer,
    'grpc.AgentService/ListProcesses': c.listProcesses,
    'grpc.AgentService/GetDiagnosticData': c.getDiagnosticData,
    'grpc.AgentService/ExecProcess': p.execProcess,
    'grpc.AgentService/SignalProcess': p.signalProcess,
    'grpc.AgentService/WaitProcess': p.waitProcess,
    'grpc.AgentService/WriteStdin': p.writeStdin,
    'grpc.AgentService/ReadStdout': p.readStdout,
    'grpc.AgentService/ReadStderr': p.readStderr,
    'grpc.AgentService/CloseStdin': p.closeStdin,
    'grpc.AgentService/TtyWinResize': p.ttyWinResize,
    'grpc.AgentService/UpdateEphemeralMounts': async (req) => {
      await sandbox.updateEphemeralMounts(messageList(req.storages, 'storages'));
      return {};
    },
    'grpc.AgentService/RemoveStaleVirtiofsShareMounts': volumes.removeStaleVirtiofsShareMounts,
    'grpc.AgentService/GetVolumeStats': volumes.getVolumeStats,
    'grpc.AgentService/ResizeVolume': volumes.resizeVolume,
    'grpc.AgentService/AddSwap': volumes.addSwap,
    'grpc.AgentService/AddSwapPath': volumes.addSwapPath,
  };
  return {
    sandbox,
    handlers: table,
    close: () =>
      sandbox
        .close()
        .catch((err: unknown) => log.error({ err: String(err) }, 'sandbox close failed'))
        .finally(() => listener?.stop()),
  };
}

/** makeIssue3Services, with every handler registered on `dispatcher`. */
export function registerIssue3Services(dispatcher: Dispatcher, deps: Issue3Deps): Issue3Services {
  const services = makeIssue3Services(deps);
  for (const [method, handler] of Object.entries(services.handlers)) dispatcher.register(method, handler);
  return services;
}
