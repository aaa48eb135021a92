// Guest-wide RPCs: GetGuestDetails, SetGuestDateTime, ReseedRandomDev,
// OnlineCPUMem and MemHotplugByProbe. Behaviour follows the Kata agent
// (src/agent/src/rpc.rs, sandbox.rs, random.rs); deviations are commented.
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { CallContext, Handler } from '../rpc/dispatch';
import { Code, RpcError, invalidArgument, internal } from '../rpc/status';
import { AGENT_VERSION } from '../version';
import type { ResolvedDeps } from './deps';
import { boolField, bytesField, intField, wrapError } from './util';

const MEMORY_DIR = 'devices/system/memory';
const CPU_DIR = 'devices/system/cpu';
const CPU_RE = /^cpu(\d+)$/;
const MEMORY_RE = /^memory(\d+)$/;

export interface GuestHandlers {
  getGuestDetails: Handler;
  setGuestDateTime: Handler;
  reseedRandomDev: Handler;
  onlineCpuMem: Handler;
  memHotplugByProbe: Handler;
  /** Resolves when background (wait=false) OnlineCPUMem work queued so far is done. */
  idle(): Promise<void>;
}

export function makeGuestHandlers(d: ResolvedDeps): GuestHandlers {
  const memoryDir = path.join(d.paths.sysfs, MEMORY_DIR);
  const cpuDir = path.join(d.paths.sysfs, CPU_DIR);
  const blockSizeFile = path.join(memoryDir, 'block_size_bytes');
  const probeFile = path.join(memoryDir, 'probe');

  // OnlineCPUMem requests run one at a time (Kata holds the sandbox lock).
  let chain: Promise<void> = Promise.resolve();
  const serialize = (job: () => Promise<void>): Promise<void> => {
    const p = chain.then(job);
    chain = p.catch(() => undefined);
    return p;
  };

  const getGuestDetails: Handler = (req) => {
    const res: Record<string, unknown> = {
      mem_block_size_bytes: 0,
      support_mem_hotplug_probe: false,
    };
    if (boolField(req.mem_block_size)) res.mem_block_size_bytes = readBlockSize(blockSizeFile);
    if (boolField(req.mem_hotplug_probe)) res.support_mem_hotplug_probe = probeExists(probeFile);
    res.agent_details = {
      version: AGENT_VERSION,
      init_daemon: d.isInit,
      device_handlers: [...d.handlers.deviceHandlers()],
      storage_handlers: [...d.handlers.storageHandlers()],
      supports_seccomp: d.supportsSeccomp(),
      extra_features: [...d.extraFeatures],
    };
    return res;
  };

  const setGuestDateTime: Handler = (req) => {
    // Kata passes Sec/Usec straight to settimeofday(2); we reject what the
    // kernel would reject (EINVAL) with a message naming the field.
    const sec = intField(req.Sec, 'SetGuestDateTime: Sec', 0);
    const usec = intField(req.Usec, 'SetGuestDateTime: Usec', 0, 999_999);
    try {
      d.sys.settimeofday(sec, usec);
    } catch (err) {
      throw wrapError(`SetGuestDateTime ${sec}.${String(usec).padStart(6, '0')}`, err);
    }
    return {};
  };

  const reseedRandomDev: Handler = (req) => {
    const data = bytesField(req.data, 'ReseedRandomDev: data');
    // Kata: ensure!(len > 0, "missing entropy data").
    if (data.length === 0) throw invalidArgument('ReseedRandomDev: missing entropy data (data is empty)');
    const dev = path.join(d.paths.dev, 'random');
    try {
      d.sys.reseedRng(dev, data);
    } catch (err) {
      throw wrapError(`ReseedRandomDev: reseeding ${dev} with ${data.length} bytes`, err);
    }
    return {};
  };

  const onlineCpuMem: Handler = async (req, ctx: CallContext) => {
    const nbCpus = intField(req.nb_cpus, 'OnlineCPUMem: nb_cpus', 0, 0xffffffff);
    const cpuOnly = boolField(req.cpu_only);
    // `wait` is ignored, as in Kata's Rust agent: current runtimes always send
    // wait=false yet expect the resources online when the call returns
    // (docs/decisions.md D7). Kata also rewrites the cpuset of every container
    // cgroup after onlining CPUs; that belongs to the cgroup code of issue 3.
    await serialize(async () => {
      if (nbCpus > 0) await onlineCpus(cpuDir, nbCpus, d.hotplugTimeoutMs, d.hotplugPollMs, ctx.signal);
      if (!cpuOnly) onlineMemory(memoryDir);
    });
    d.log.info({ nb_cpus: nbCpus, cpu_only: cpuOnly, wait: boolField(req.wait) }, 'OnlineCPUMem done');
    return {};
  };

  const memHotplugByProbe: Handler = (req) => {
    const raw = req.memHotplugProbeAddr;
    const list: unknown[] = raw === undefined || raw === null ? [] : Array.isArray(raw) ? raw : [raw];
    const addrs = list.map((a, i) => intField(a, `MemHotplugByProbe: memHotplugProbeAddr[${i}]`, 0));
    if (addrs.length === 0) return {};
    if (!probeExists(probeFile)) {
      throw new RpcError(
        Code.FAILED_PRECONDITION,
        `MemHotplugByProbe: ${probeFile} does not exist (guest kernel without memory probe support, CONFIG_ARCH_MEMORY_PROBE)`,
      );
    }
    for (const addr of addrs) {
      const text = `0x${addr.toString(16)}`;
      try {
        writeExisting(probeFile, text, true);
      } catch (err) {
        throw wrapError(`MemHotplugByProbe: writing ${text} to ${probeFile}`, err);
      }
    }
    return {};
  };

  return {
    getGuestDetails,
    setGuestDateTime,
    reseedRandomDev,
    onlineCpuMem,
    memHotplugByProbe,
    idle: () => chain,
  };
}

/**
 * <sysfs>/devices/system/memory/block_size_bytes is hex without a prefix
 * ("8000000" = 128 MiB). As in Kata's get_memory_info: a missing file is 0
 * (no memory hotplug support), an empty or non-hex file is an error.
 */
export function readBlockSize(file: string): number {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw wrapError(`GetGuestDetails: reading ${file}`, err);
  }
  const t = text.trim();
  if (t === '') throw internal(`GetGuestDetails: invalid memory block size: ${file} is empty`);
  const m = /^(?:0x)?([0-9a-fA-F]{1,16})$/.exec(t);
  if (!m) throw internal(`GetGuestDetails: invalid memory block size ${JSON.stringify(t.slice(0, 64))} in ${file} (expected hex)`);
  return Number(BigInt(`0x${m[1]}`));
}

/** stat() the probe file: ENOENT means unsupported, other errors are errors (as Kata). */
export function probeExists(file: string): boolean {
  try {
    fs.statSync(file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw wrapError(`stat ${file}`, err);
  }
}

/**
 * Write to an existing (sysfs) file; never creates one. sysfs ignores the file
 * position, so `append` (used for the probe file) only matters for fake trees,
 * where it keeps a log of every write.
 */
function writeExisting(file: string, text: string, append = false): void {
  const flags = fs.constants.O_WRONLY | (append ? fs.constants.O_APPEND : fs.constants.O_TRUNC);
  const fd = fs.openSync(file, flags);
  try {
    fs.writeSync(fd, text);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The number of online CPUs. Kata parses <cpu>/online; we count the per-CPU
 * state instead, which the kernel keeps in step with that list: a cpuN
 * directory whose online file reads 1, or that has no online file (a CPU
 * that cannot be offlined, like the boot CPU), is online. Unlike the list,
 * this stays coherent in fake sysfs trees.
 */
export function onlineCpuCount(cpuDir: string): number {
  let names: string[];
  try {
    names = fs.readdirSync(cpuDir);
  } catch (err) {
    throw wrapError(`OnlineCPUMem: listing ${cpuDir}`, err);
  }
  let n = 0;
  for (const name of names) {
    if (!CPU_RE.test(name)) continue;
    try {
      if (fs.readFileSync(path.join(cpuDir, name, 'online'), 'utf8').trim() === '1') n++;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') n++;
    }
  }
  return n;
}

/**
 * Kata's online_resources: for every `<dir>/<name>/online` (names matching
 * `re`, in numeric order) that reads 0, write 1. Entries without an online
 * file (the boot CPU, cold-plugged resources) are skipped, as are failed
 * writes. With `max` > 0 stop after onlining that many. Returns the count.
 */
export function onlineResources(dir: string, re: RegExp, max: number): number {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (err) {
    throw wrapError(`OnlineCPUMem: listing ${dir}`, err);
  }
  const entries = names
    .map((name) => ({ name, m: re.exec(name) }))
    .filter((e): e is { name: string; m: RegExpExecArray } => e.m !== null)
    .sort((a, b) => Number(a.m[1]) - Number(b.m[1]));
  let count = 0;
  for (const { name } of entries) {
    const file = path.join(dir, name, 'online');
    let state: string;
    try {
      state = fs.readFileSync(file, 'utf8').trim();
    } catch {
      continue;
    }
    if (state !== '0') continue;
    try {
      writeExisting(file, '1');
    } catch {
      continue;
    }
    count++;
    if (max > 0 && count >= max) break;
  }
  return count;
}

/**
 * Kata's online_cpus: until at least `nb` CPUs are online, online
 * offline ones and poll. Kata retries 100 x 50 ms; we poll every `pollMs`
 * until `timeoutMs` (the agent's hotplug timeout) and then fail.
 */
export async function onlineCpus(cpuDir: string, nb: number, timeoutMs: number, pollMs: number, signal?: AbortSignal): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let online = onlineCpuCount(cpuDir);
  for (;;) {
    if (online >= nb) return;
    onlineResources(cpuDir, CPU_RE, nb - online);
    online = onlineCpuCount(cpuDir);
    if (online >= nb) return;
    if (signal?.aborted) throw new RpcError(Code.CANCELLED, `OnlineCPUMem: cancelled with ${online} of ${nb} CPUs online`);
    if (Date.now() >= deadline) {
      throw new RpcError(Code.DEADLINE_EXCEEDED, `OnlineCPUMem: only ${online} of ${nb} CPUs online after ${timeoutMs} ms`);
    }
    const delay = Math.min(pollMs, Math.max(0, deadline - Date.now()));
    await sleep(delay, undefined, signal ? { signal } : undefined).catch(() => undefined);
  }
}

/** Kata's online_memory: online every offline memory block. */
export function onlineMemory(memoryDir: string): number {
  return onlineResources(memoryDir, MEMORY_RE, -1);
}
