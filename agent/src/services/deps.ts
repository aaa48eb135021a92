// What the issue-2 services need from the outside world. Every path and every
// syscall comes from here so unit tests can point them at fake trees and fakes.
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { nullLogger } from '../log';
import { reseedRng } from '../sys/random';
import { clockTicksPerSecond, pageSize, settimeofday } from '../sys/time';

export interface ServicePaths {
  /** sysfs mount (default /sys). */
  sysfs: string;
  /** procfs mount (default /proc). */
  proc: string;
  /** devtmpfs (default /dev). */
  dev: string;
  /** The only directory CopyFile may write into. */
  sharedContainers: string;
}

export const DEFAULT_PATHS: ServicePaths = {
  sysfs: '/sys',
  proc: '/proc',
  dev: '/dev',
  sharedContainers: '/run/kata-containers/shared/containers',
};

/** statfs(2) numbers used by the filesystem metrics. */
export interface StatFs {
  bsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
}

/** The syscalls the services make; defaults are the real ones in agent/src/sys/. */
export interface ServiceSys {
  settimeofday(sec: number, usec: number): void;
  /** Write entropy to the random device at `devPath` and reseed the CRNG. */
  reseedRng(devPath: string, data: Uint8Array): void;
  clockTicksPerSecond(): number;
  pageSize(): number;
  statfs(path: string): StatFs;
}

/** Names of the device / storage handlers the agent supports (filled by issue 4). */
export interface HandlerRegistry {
  deviceHandlers(): string[];
  storageHandlers(): string[];
}

export interface ServiceDeps {
  paths?: Partial<ServicePaths>;
  /** The agent runs as PID 1 (default: process.pid === 1). */
  isInit?: boolean;
  sys?: Partial<ServiceSys>;
  /** Logger for work that outlives a request (background CPU/memory onlining). */
  log?: Logger;
  handlers?: HandlerRegistry;
  /** Reported in AgentDetails.supports_seccomp; default: <proc>/self/status has a "Seccomp:" line. */
  supportsSeccomp?: boolean;
  /** Reported in AgentDetails.extra_features (default []). */
  extraFeatures?: string[];
  /** How long OnlineCPUMem waits for CPUs to come online (default 3000 ms). */
  hotplugTimeoutMs?: number;
  /** Poll interval while waiting for CPUs (default 50 ms, as Kata). */
  hotplugPollMs?: number;
}

export interface ResolvedDeps {
  paths: ServicePaths;
  isInit: boolean;
  sys: ServiceSys;
  log: Logger;
  handlers: HandlerRegistry;
  supportsSeccomp: () => boolean;
  extraFeatures: string[];
  hotplugTimeoutMs: number;
  hotplugPollMs: number;
}

const emptyRegistry: HandlerRegistry = { deviceHandlers: () => [], storageHandlers: () => [] };

/** The real syscalls (agent/src/sys/). */
export const REAL_SYS: ServiceSys = {
  settimeofday,
  reseedRng,
  clockTicksPerSecond,
  pageSize,
  statfs: nodeStatfs,
};

function nodeStatfs(p: string): StatFs {
  const s = fs.statfsSync(p);
  return { bsize: s.bsize, blocks: s.blocks, bfree: s.bfree, bavail: s.bavail, files: s.files, ffree: s.ffree };
}

/** Fill in every default. */
export function resolveDeps(deps: ServiceDeps = {}): ResolvedDeps {
  const paths: ServicePaths = { ...DEFAULT_PATHS, ...stripUndefined(deps.paths ?? {}) };
  let seccomp: boolean | undefined = deps.supportsSeccomp;
  return {
    paths,
    isInit: deps.isInit ?? process.pid === 1,
    sys: { ...REAL_SYS, ...stripUndefined(deps.sys ?? {}) },
    log: deps.log ?? nullLogger(),
    handlers: deps.handlers ?? emptyRegistry,
    supportsSeccomp: () => {
      seccomp ??= procHasSeccomp(paths.proc);
      return seccomp;
    },
    extraFeatures: deps.extraFeatures ?? [],
    hotplugTimeoutMs: deps.hotplugTimeoutMs ?? 3000,
    hotplugPollMs: deps.hotplugPollMs ?? 50,
  };
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** The kernel was built with seccomp when /proc/self/status has a "Seccomp:" line. */
export function procHasSeccomp(procRoot: string): boolean {
  try {
    return /^Seccomp:/m.test(fs.readFileSync(path.join(procRoot, 'self/status'), 'utf8'));
  } catch {
    return false;
  }
}
