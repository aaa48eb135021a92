// Shutdown and signals. As PID 1 the agent powers the VM off (sync, then
// reboot(RB_POWER_OFF), falling back to sysrq 'o'); PID 1 must never simply
// exit (the kernel would panic). Elsewhere it just exits.
import type { Logger } from '../log';
import { RB } from '../sys/misc';
import { at, errMsg, type InitSys } from './sys';

export type ShutdownOutcome = 'exit' | 'poweroff' | 'sysrq' | 'failed';

export interface ShutdownOptions {
  log: Logger;
  sys: InitSys;
  /** Defaults to process.pid. */
  pid?: number;
  /** Root prefix for /proc/sysrq-trigger (tests). */
  root?: string;
}

/**
 * Power off (PID 1) or exit(0). Returns only when the poweroff did not take
 * effect synchronously (sysrq is asynchronous) or everything failed, or with a fake sys.
 */
export function shutdown(reason: string, opts: ShutdownOptions): ShutdownOutcome {
  const { log, sys } = opts;
  const pid = opts.pid ?? process.pid;
  log.info({ reason, pid }, 'shutting down');
  if (pid !== 1) {
    sys.exit(0);
    return 'exit';
  }
  try {
    sys.sync();
  } catch (e) {
    log.warn({ err: errMsg(e) }, 'sync failed');
  }
  try {
    sys.reboot(RB.POWER_OFF);
    return 'poweroff';
  } catch (e) {
    log.error({ err: errMsg(e) }, 'reboot(RB_POWER_OFF) failed; trying sysrq');
  }
  try {
    sys.writeFile(at(opts.root ?? '/', '/proc/sysrq-trigger'), 'o');
    return 'sysrq';
  } catch (e) {
    log.fatal({ err: errMsg(e) }, 'cannot power off');
    return 'failed';
  }
}

/** Minimal process surface used for handlers (process itself, or a fake EventEmitter in tests). */
export interface ProcessLike {
  on(event: string, listener: (...args: any[]) => void): unknown;
  off(event: string, listener: (...args: any[]) => void): unknown;
}

export const SHUTDOWN_SIGNALS = ['SIGTERM', 'SIGINT'] as const;

/**
 * Call onShutdown(signal) on SIGTERM/SIGINT (as PID 1 these are ignored unless
 * a handler is installed). Returns a function that removes the handlers.
 */
export function installSignalHandlers(onShutdown: (signal: string) => void, proc: ProcessLike = process): () => void {
  const handlers = SHUTDOWN_SIGNALS.map((sig) => {
    const h = () => onShutdown(sig);
    proc.on(sig, h);
    return [sig, h] as const;
  });
  return () => {
    for (const [sig, h] of handlers) proc.off(sig, h);
  };
}
