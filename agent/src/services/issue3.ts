// The RPCs of issue 3 (sandbox and container lifecycle), registered on the
// shared Dispatcher. One Sandbox holds the live state; the OCI runtime is
// agent.oci_runtime (crun by default) driven through the agent's Spawner.
import type { Cgroups } from '../cgroups/types';
import type { Logger } from '../log';
import type { Reaper } from '../proc/reaper';
import type { Spawner } from '../proc/spawner';
import type { Dispatcher, Handler } from '../rpc/dispatch';
import { CliRuntime, type OciRuntime } from '../runtime/oci-runtime';
import { Sandbox, type SandboxPaths, type SandboxSys } from '../sandbox/sandbox';
import { makeContainerHandlers } from './container';
import { makeProcessHandlers } from './process';
import { ISSUE3_METHODS } from './issue3-methods';
import { makeSandboxHandlers } from './sandbox';

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
  };
  return {
    sandbox,
    handlers: table,
    close: () => sandbox.close().catch((err: unknown) => log.error({ err: String(err) }, 'sandbox close failed')),
  };
}

/** makeIssue3Services, with every handler registered on `dispatcher`. */
export function registerIssue3Services(dispatcher: Dispatcher, deps: Issue3Deps): Issue3Services {
  const services = makeIssue3Services(deps);
  for (const [method, handler] of Object.entries(services.handlers)) dispatcher.register(method, handler);
  return services;
}
