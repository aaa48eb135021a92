// PID-1 duties of the agent. runInit() is called once at start-up:
//  - as PID 1 (and without --no-init): guard against crashes, fill the
//    environment, mount /proc /sys /dev ... and the cgroup file systems, take
//    the console, set the host name and turn SIGTERM/SIGINT into a shutdown;
//  - otherwise: become a child subreaper (so orphaned container processes are
//    reparented to us and can be reaped) and return.
// Every step logs its failures and carries on; runInit never throws.
import type { AgentConfig } from '../config';
import type { Logger } from '../log';
import { cgroupMounts } from './cgroups';
import { setupConsole } from './console';
import { setHostnameFromEtc, setupEnvironment } from './env';
import { guard } from './guard';
import { EARLY_MOUNTS, earlyMounts, type MountResult } from './mounts';
import { realInitSys } from './realsys';
import { installSignalHandlers, shutdown, type ProcessLike } from './shutdown';
import { at, errMsg, type InitContext, type InitSys } from './sys';

export type { InitSys, InitContext } from './sys';
export { at } from './sys';
export { realInitSys } from './realsys';
export { EARLY_MOUNTS, DEV_SYMLINKS, earlyMounts, mountOnce, linkPtmx, devSymlinks, currentMounts } from './mounts';
export type { InitMount, MountResult, MountStatus } from './mounts';
export { cgroupMounts, enableControllers, parseProcCgroups, v1Controllers, CGROUP_ROOT } from './cgroups';
export type { CgroupResult, ProcCgroup } from './cgroups';
export { setupConsole } from './console';
export type { ConsoleResult } from './console';
export { setupEnvironment, setHostnameFromEtc, DEFAULT_PATH } from './env';
export { shutdown, installSignalHandlers, SHUTDOWN_SIGNALS } from './shutdown';
export type { ShutdownOutcome, ShutdownOptions, ProcessLike } from './shutdown';
export { guard } from './guard';
export { parseMountInfo, mountedType } from './mountinfo';
export type { MountInfoEntry } from './mountinfo';

export interface InitSummary {
  /** pid1: full init ran; subreaper: not PID 1; no-init: PID 1 but --no-init. */
  mode: 'pid1' | 'subreaper' | 'no-init';
  mounts: MountResult[];
  /** Guest paths mounted / already present / failed. */
  mounted: string[];
  skipped: string[];
  failed: string[];
  controllersEnabled: string[];
  envSet: string[];
  hostname?: string;
  tty?: string;
  /** Every failure, one line each (also logged). */
  errors: string[];
  /** Remove the process handlers runInit installed (for tests; the agent never calls it). */
  uninstall: () => void;
}

export interface RunInitOptions {
  /** Defaults to process.pid. */
  pid?: number;
  /** Root prefix for all paths (default '/'). */
  root?: string;
  /** Called on SIGTERM/SIGINT as PID 1; default: shutdown(`signal X`). */
  onShutdown?: (signal: string) => void;
  /** Environment to fill (default process.env). */
  env?: Record<string, string | undefined>;
  /** Where signal/exception handlers go (default process). */
  proc?: ProcessLike;
}

export function runInit(
  config: Pick<AgentConfig, 'noInit' | 'unifiedCgroupHierarchy' | 'cgroupNoV1'>,
  log: Logger,
  sys: InitSys = realInitSys,
  opts: RunInitOptions = {},
): InitSummary {
  const pid = opts.pid ?? process.pid;
  const root = opts.root ?? '/';
  const summary: InitSummary = {
    mode: 'subreaper',
    mounts: [],
    mounted: [],
    skipped: [],
    failed: [],
    controllersEnabled: [],
    envSet: [],
    errors: [],
    uninstall: () => {},
  };

  if (pid !== 1 || config.noInit) {
    summary.mode = pid === 1 ? 'no-init' : 'subreaper';
    try {
      sys.setChildSubreaper();
    } catch (e) {
      summary.errors.push(`set child subreaper: ${errMsg(e)}`);
      log.warn({ err: errMsg(e) }, 'cannot become a child subreaper');
    }
    return summary;
  }

  summary.mode = 'pid1';
  const proc = opts.proc ?? process;
  const removers: (() => void)[] = [guard(log, proc)];
  summary.uninstall = () => removers.forEach((r) => r());
  const ctx: InitContext = { sys, log, root };
  // As PID 1, SIGTERM/SIGINT are ignored unless a handler is installed: install it first.
  const onShutdown = opts.onShutdown ?? ((signal: string) => void shutdown(`signal ${signal}`, { log, sys, pid, root }));
  removers.push(installSignalHandlers(onShutdown, proc));

  summary.envSet = setupEnvironment(opts.env ?? process.env);

  summary.mounts.push(...earlyMounts(ctx));
  const cg = cgroupMounts(config, ctx);
  summary.mounts.push(...cg.mounts);
  summary.controllersEnabled = cg.controllersEnabled;
  summary.errors.push(...cg.errors);

  for (const m of summary.mounts) {
    if (m.status === 'mounted') summary.mounted.push(m.target);
    else if (m.status === 'skipped') summary.skipped.push(m.target);
    else {
      summary.failed.push(m.target);
      summary.errors.push(`mount ${m.fstype} on ${m.target}: ${m.error}`);
    }
  }

  const con = setupConsole(ctx);
  summary.tty = con.tty;
  if (!con.tty) summary.errors.push(...con.errors);

  summary.hostname = setHostnameFromEtc(ctx);
  if (summary.hostname === undefined) summary.errors.push('sethostname failed');

  log.info(
    { mode: summary.mode, mounted: summary.mounted, skipped: summary.skipped, failed: summary.failed, controllers: summary.controllersEnabled, tty: summary.tty },
    'init done',
  );
  return summary;
}

/**
 * As PID 1, the agent's kernel command line options (agent.*) are in /proc/cmdline, and nothing
 * has mounted /proc yet when the agent reads its configuration: mount it first (runInit then
 * finds it mounted and skips it). Returns what went wrong, or undefined (mounted, or already
 * there, or not PID 1).
 */
export function mountProcForCmdline(sys: InitSys = realInitSys, pid = process.pid, root = '/'): string | undefined {
  if (pid !== 1 || sys.exists(at(root, '/proc/self'))) return undefined;
  const proc = EARLY_MOUNTS.find((m) => m.target === '/proc')!;
  try {
    if (!sys.exists(at(root, '/proc'))) sys.mkdir(at(root, '/proc'), 0o555);
    sys.mount(proc.source, at(root, proc.target), proc.fstype, proc.flags, proc.data);
    return undefined;
  } catch (e) {
    return `cannot mount /proc to read the kernel command line: ${errMsg(e)}`;
  }
}
