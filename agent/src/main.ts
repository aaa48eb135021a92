// The agent: read config, do PID-1 duties, start the reaper, serve the protocol.
// Kept short: every step lives in its own module.
import type net from 'node:net';
import { chooseListenAddress, readConfig, USAGE, type AgentConfig } from './config';
import { guard, mountProcForCmdline, realInitSys, runInit, shutdown } from './init/index';
import { createLogger, type Logger } from './log';
import { Reaper } from './proc/reaper';
import { Spawner } from './proc/spawner';
import { Dispatcher, lazyHandler } from './rpc/dispatch';
import type { DebugConsole } from './console/debug-console';
import { closeSharedGrpcServer, sharedGrpcServer } from './rpc/grpc';
import { plannedFor } from './rpc/planned';
import { prepareSchema } from './rpc/proto';
import { serveTtrpc } from './rpc/ttrpc/server';
import { registerIssue2Services } from './services/index';
import type { Issue3Services } from './services/issue3';
import { DEVICE_HANDLER_NAMES, ISSUE3_METHODS, STORAGE_HANDLER_NAMES } from './services/issue3-methods';
import { listen, type Listener } from './transport/listen';
import { logSink } from './transport/logsink';
import { sniff } from './transport/sniff';
import { vsockSelfTest } from './transport/vsock';
import { AGENT_COMMIT, AGENT_VERSION } from './version';

export interface Agent {
  config: AgentConfig;
  log: Logger;
  reaper: Reaper;
  spawner: Spawner;
  dispatcher: Dispatcher;
  listener: Listener;
  /** Stop serving (and, as PID 1, power off). */
  stop(reason: string): Promise<void>;
}

export async function main(argv: string[] = process.argv.slice(2)): Promise<Agent | undefined> {
  // As PID 1, /proc (and so /proc/cmdline, the agent.* options) is not mounted yet.
  const procProblem = mountProcForCmdline();
  const { config, warnings, ignored } = readConfig({ argv, env: process.env });
  if (procProblem) warnings.unshift(procProblem);
  if (config.help) {
    process.stdout.write(USAGE);
    return undefined;
  }
  if (config.version) {
    process.stdout.write(`kata-agent (guestkit) ${AGENT_VERSION}${AGENT_COMMIT ? ` (commit ${AGENT_COMMIT})` : ''}\n`);
    return undefined;
  }

  // Logs go to the console, or to the host over vsock when agent.log_vport is set.
  const sink = config.logVport > 0 ? logSink(config.logVport) : undefined;
  const log = createLogger(config.logLevel, sink);
  for (const w of warnings) log.warn(w);
  for (const o of ignored) log.debug({ option: o }, 'kata option recognised and ignored');
  log.info({ version: AGENT_VERSION, argv }, 'starting');

  let stopping: Promise<void> | undefined;
  let agent: Agent | undefined;
  const earlyStop = (reason: string): void => {
    if (agent) void agent.stop(reason);
    else if (process.pid === 1) shutdown(reason, { log, sys: realInitSys, pid: 1 });
    else process.exit(0);
  };
  const init = runInit(config, log, undefined, {
    onShutdown: (signal) => {
      // As PID 1, ^C on the console (our controlling terminal) must not power the VM off (D9).
      if (signal === 'SIGINT') log.warn('SIGINT ignored as PID 1 (SIGTERM powers off)');
      else earlyStop(`signal ${signal}`);
    },
  });
  const isInit = init.mode === 'pid1';
  if (!isInit) {
    log.info({ mode: init.mode }, 'init done');
    // Not PID 1: a signal stops the agent cleanly instead of powering anything off; errors
    // are logged and the agent keeps serving, as PID 1 does (runInit installed the guard there).
    for (const s of ['SIGTERM', 'SIGINT'] as const) process.on(s, () => earlyStop(`signal ${s}`));
    guard(log);
  }

  const reaper = new Reaper(undefined, log.child({ component: 'reaper' }));
  reaper.start();
  const spawner = new Spawner(reaper);

  let debugConsole: DebugConsole | undefined;
  if (config.debugConsole) {
    import('./console/debug-console')
      .then((m) => m.startDebugConsole({ vport: config.debugConsoleVport, spawner, log: log.child({ component: 'debug-console' }) }))
      .then(
      (dc) => (debugConsole = dc),
      (err) => log.warn({ err: String(err) }, 'cannot start the debug console'),
    );
  }

  const dispatcher = new Dispatcher(log, plannedFor);
  registerIssue2Services(dispatcher, {
    isInit,
    log: log.child({ component: 'services' }),
    hotplugTimeoutMs: config.hotplugTimeoutMs,
    handlers: { storageHandlers: () => [...STORAGE_HANDLER_NAMES], deviceHandlers: () => [...DEVICE_HANDLER_NAMES] },
  });
  // The container stack (sandbox, OCI runtime, cgroups, stdio) is loaded on the first
  // container RPC, not on the way to 'listening'.
  let issue3: Promise<Issue3Services> | undefined;
  const loadIssue3 = (): Promise<Issue3Services> =>
    (issue3 ??= import('./services/issue3').then((m) =>
      m.makeIssue3Services({
        log: log.child({ component: 'services' }),
        spawner,
        reaper,
        ociRuntime: config.ociRuntime,
        containerPipeSize: config.containerPipeSize,
        hotplugTimeoutMs: config.hotplugTimeoutMs,
        isInit,
        onDestroyed: () => void agent?.stop('sandbox destroyed'),
      }),
    ).catch((err: unknown) => {
      issue3 = undefined; // the next container RPC tries again
      throw err;
    }));
  for (const m of ISSUE3_METHODS) dispatcher.register(m, lazyHandler(async () => (await loadIssue3()).handlers[m]));

  // The vsock self-test decides 'auto' (and diagnoses 'vsock'); a serial channel does not need it.
  const vsock = config.serverAddrExplicit || config.channel === 'serial' ? undefined : vsockSelfTest();
  if (vsock) log.info({ vsock }, 'vsock self-test');
  const addr = chooseListenAddress(config, vsock?.ok ?? false);

  const onConnection = (sock: net.Socket, info: { transport: string; peer?: string }): void => {
    void sniff(
      sock,
      {
        onTtrpc: (s) => {
          serveTtrpc(s, dispatcher, log, { newSessionOnStreamOne: info.transport === 'serial' });
        },
        onGrpc: (s) => {
          sharedGrpcServer(dispatcher, log).then(
            (g) => g.inject(s),
            (err) => {
              log.error({ err: String(err) }, 'gRPC server unavailable');
              s.destroy();
            },
          );
        },
      },
      { log, peer: info.peer },
    );
  };

  const listener = await listen(addr, onConnection, log);
  // process.uptime(), not performance.now(): the same clock origin without loading perf_hooks.
  log.info({ address: listener.address, startup_ms: Math.round(process.uptime() * 1000) }, 'listening');
  // Work not needed to accept connections is done once listening (a request that
  // arrives meanwhile is simply read after it).
  setImmediate(() => {
    if (isInit) void placeAgentCgroup(log);
    try {
      prepareSchema();
    } catch (err) {
      log.error({ err: String(err) }, 'protocol schema failed to load');
    }
  });

  agent = {
    config,
    log,
    reaper,
    spawner,
    dispatcher,
    listener,
    stop(reason: string) {
      stopping ??= (async () => {
        log.info({ reason }, 'stopping');
        await listener.close().catch(() => undefined);
        await closeSharedGrpcServer().catch(() => undefined);
        await debugConsole?.close().catch(() => undefined);
        // Not PID 1: containers, mounts and cgroups would outlive the agent on the host.
        if (!isInit && issue3) await issue3.then((s) => s.close(), () => undefined);
        reaper.stop();
        await sink?.close().catch(() => undefined);
        if (isInit) shutdown(reason, { log, sys: realInitSys, pid: process.pid });
        else process.exit(0);
      })();
      return stopping;
    },
  };
  return agent;
}

/** Memory the agent keeps protected from reclaim (its RSS under load measured ~100 MB; bench/). */
export const AGENT_MEMORY_LOW = 128 << 20;

/**
 * As PID 1 on cgroup v2, move the agent into its own cgroup with memory.low so containers cannot
 * starve it. cgroup v1 has no memory.low: the agent stays in the root cgroup there.
 */
async function placeAgentCgroup(log: Logger): Promise<void> {
  try {
    const { detectCgroups, openCgroups, setupAgentCgroup } = await import('./cgroups/index');
    const mode = detectCgroups();
    if (mode !== 'v2') {
      log.info({ mode }, 'agent cgroup: not on cgroup v2 (no memory.low), staying in the root cgroup');
      return;
    }
    const where = setupAgentCgroup(openCgroups(undefined, 'v2'), process.pid, { memoryLowBytes: AGENT_MEMORY_LOW });
    log.info({ cgroup: where, memory_low: AGENT_MEMORY_LOW }, 'agent cgroup ready');
  } catch (err) {
    log.warn({ err: String(err) }, 'agent cgroup: cannot set up (continuing in the root cgroup)');
  }
}
