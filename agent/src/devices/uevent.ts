// Kernel uevents: parsing the netlink messages and a listener that hands them to
// subscribers and one-shot watchers.
//
// The listener reads a NETLINK_KOBJECT_UEVENT socket (sys/uevent.ts) through a
// libuv Pipe handle (transport/handles.ts fdSocket): every read() of the datagram
// socket arrives as one 'data' chunk, i.e. one uevent. When the socket's receive
// buffer overflows the kernel reports ENOBUFS, which libuv treats as a fatal read
// error: the listener then opens a fresh socket and tells subscribers that events
// may have been lost (`onLost`), so that waiters re-check sysfs.
import type { Logger } from '../log';
import { nullLogger } from '../log';
import { Code, RpcError } from '../rpc/status';
import { openUeventSocket } from '../sys/uevent';
import { fdSocket } from '../transport/handles';
import fs from 'node:fs';

/** One kernel uevent. `env` holds every KEY=VALUE pair of the message. */
export interface Uevent {
  action: string;
  devpath: string;
  subsystem: string;
  devname?: string;
  devtype?: string;
  seqnum?: string;
  /** MAJOR/MINOR of the device node, when the event carries them. */
  major?: number;
  minor?: number;
  env: Record<string, string>;
}

/** Longest message accepted (the kernel's own limit is 2 KiB of environment). */
const MAX_UEVENT_BYTES = 64 * 1024;
const LIBUDEV_MAGIC = Buffer.from('libudev\0', 'latin1');
const ACTION_RE = /^[a-z_]{1,32}$/;

function devNumber(s: string | undefined): number | undefined {
  if (s === undefined || !/^\d{1,10}$/.test(s)) return undefined;
  const n = Number(s);
  return n <= 0xffffffff ? n : undefined;
}

/**
 * Parse a kernel uevent message: "ACTION@DEVPATH\0KEY=VALUE\0...". Messages that
 * udevd re-broadcasts ("libudev\0" + binary header) and anything malformed yield
 * undefined. Never throws.
 */
export function parseUevent(buf: Uint8Array): Uevent | undefined {
  try {
    if (!(buf instanceof Uint8Array) || buf.length === 0 || buf.length > MAX_UEVENT_BYTES) return undefined;
    const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
    if (b.length >= LIBUDEV_MAGIC.length && b.subarray(0, LIBUDEV_MAGIC.length).equals(LIBUDEV_MAGIC)) {
      return undefined;
    }
    const parts = b.toString('utf8').split('\0');
    const header = parts[0]!;
    const at = header.indexOf('@');
    if (at <= 0) return undefined;
    const hAction = header.slice(0, at);
    const hDevpath = header.slice(at + 1);
    if (!ACTION_RE.test(hAction) || !hDevpath.startsWith('/')) return undefined;

    const env: Record<string, string> = Object.create(null) as Record<string, string>;
    for (let i = 1; i < parts.length; i++) {
      const kv = parts[i]!;
      const eq = kv.indexOf('=');
      if (eq <= 0) continue; // empty trailer or a line without a key
      env[kv.slice(0, eq)] = kv.slice(eq + 1);
    }
    const action = env.ACTION ?? hAction;
    const devpath = env.DEVPATH ?? hDevpath;
    if (!ACTION_RE.test(action) || !devpath.startsWith('/')) return undefined;

    const ev: Uevent = { action, devpath, subsystem: env.SUBSYSTEM ?? '', env };
    if (env.DEVNAME) ev.devname = env.DEVNAME;
    if (env.DEVTYPE) ev.devtype = env.DEVTYPE;
    if (env.SEQNUM) ev.seqnum = env.SEQNUM;
    const major = devNumber(env.MAJOR);
    const minor = devNumber(env.MINOR);
    if (major !== undefined && minor !== undefined) {
      ev.major = major;
      ev.minor = minor;
    }
    return ev;
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------
// Listener

export type UeventMatch = (ev: Uevent) => boolean;

/** Anything DeviceWaiter can subscribe to: the real listener or a test fake. */
export interface UeventSource {
  /**
   * Call `onEvent` for every uevent from now on, and `onLost` when events may have
   * been missed (the socket overflowed and was reopened). Returns the unsubscribe.
   */
  subscribe(onEvent: (ev: Uevent) => void, onLost?: () => void): () => void;
}

/** A registered one-shot wait: `promise` settles with the first matching uevent. */
export interface UeventWatch {
  promise: Promise<Uevent>;
  /** Stop waiting; an awaited `promise` rejects with CANCELLED (an unawaited one is harmless). */
  cancel(): void;
}

/** The stream a socket fd is read through (a net.Socket in the agent). */
export interface UeventStream {
  // `any[]`: net.Socket's overloads take typed listeners ('data' gets a Buffer).
  on(event: string, listener: (...args: any[]) => void): unknown;
  destroy(): void;
}

export interface UeventListenerDeps {
  /** Open a bound uevent socket fd (default sys/uevent openUeventSocket). */
  openSocket?: () => number;
  /** Wrap the fd in a stream that owns it (default transport/handles fdSocket, read-only). */
  toStream?: (fd: number) => UeventStream;
  /** Close an fd that could not be wrapped (default fs.closeSync). */
  closeFd?: (fd: number) => void;
  log?: Logger;
  /** Delay before reopening after a failed reopen (default 1000 ms). */
  reopenDelayMs?: number;
}

export interface UeventListenerStats {
  /** Datagrams read. */
  received: number;
  /** Datagrams that were not kernel uevents (libudev, garbage). */
  ignored: number;
  /** Times the socket failed and events may have been lost. */
  lost: number;
}

interface Subscriber {
  onEvent: (ev: Uevent) => void;
  onLost?: () => void;
}

interface PendingWatch {
  match: UeventMatch;
  resolve: (ev: Uevent) => void;
  reject: (err: Error) => void;
}

const noop = (): void => {};

export class UeventListener implements UeventSource {
  readonly stats: UeventListenerStats = { received: 0, ignored: 0, lost: 0 };
  private readonly openSocket: () => number;
  private readonly toStream: (fd: number) => UeventStream;
  private readonly closeFd: (fd: number) => void;
  private readonly log: Logger;
  private readonly reopenDelayMs: number;
  private readonly subscribers = new Set<Subscriber>();
  private readonly watches = new Set<PendingWatch>();
  private stream: UeventStream | undefined;
  private reopenTimer: NodeJS.Timeout | undefined;
  private reopenImmediate: NodeJS.Immediate | undefined;
  private started = false;

  constructor(deps: UeventListenerDeps = {}) {
    this.openSocket = deps.openSocket ?? (() => openUeventSocket());
    this.toStream = deps.toStream ?? ((fd) => fdSocket(fd, { readable: true, writable: false }));
    this.closeFd = deps.closeFd ?? ((fd) => fs.closeSync(fd));
    this.log = deps.log ?? nullLogger();
    this.reopenDelayMs = deps.reopenDelayMs ?? 1000;
  }

  /** True while a socket is open and being read. */
  get running(): boolean {
    return this.stream !== undefined;
  }

  /** Open the socket and start reading. Throws (SysError) when the socket cannot be opened. */
  start(): void {
    if (this.started) return;
    this.open();
    this.started = true;
  }

  /** Close the socket. Pending watches reject with UNAVAILABLE; subscribers stay registered. */
  stop(): void {
    this.started = false;
    this.clearReopen();
    const s = this.stream;
    this.stream = undefined;
    if (s) {
      try {
        s.destroy();
      } catch {
        // closing anyway
      }
    }
    const pending = [...this.watches];
    this.watches.clear();
    for (const w of pending) w.reject(new RpcError(Code.UNAVAILABLE, 'uevent listener stopped'));
  }

  subscribe(onEvent: (ev: Uevent) => void, onLost?: () => void): () => void {
    const sub: Subscriber = { onEvent, onLost };
    this.subscribers.add(sub);
    return () => {
      this.subscribers.delete(sub);
    };
  }

  /**
   * Register a one-shot matcher now. Callers watch first, then check sysfs, then await
   * `promise` only if the device was not there: no event can slip between check and wait.
   */
  watch(match: UeventMatch): UeventWatch {
    let entry: PendingWatch | undefined;
    const promise = new Promise<Uevent>((resolve, reject) => {
      entry = { match, resolve, reject };
    });
    // A watch cancelled (or stopped) without anyone awaiting it must not become an
    // unhandled rejection: that would end the process.
    promise.catch(noop);
    const e = entry!;
    this.watches.add(e);
    return {
      promise,
      cancel: () => {
        if (this.watches.delete(e)) e.reject(new RpcError(Code.CANCELLED, 'uevent watch cancelled'));
      },
    };
  }

  /**
   * The first uevent matching `match` from now on. Rejects DEADLINE_EXCEEDED after
   * `timeoutMs`, CANCELLED when `signal` aborts.
   */
  waitFor(match: UeventMatch, timeoutMs: number, signal?: AbortSignal): Promise<Uevent> {
    if (signal?.aborted) return Promise.reject(new RpcError(Code.CANCELLED, 'cancelled waiting for a uevent'));
    const w = this.watch(match);
    return new Promise<Uevent>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (): void => {
        if (timer) clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const onAbort = (): void => {
        done();
        w.cancel();
        reject(new RpcError(Code.CANCELLED, 'cancelled waiting for a uevent'));
      };
      timer = setTimeout(() => {
        done();
        w.cancel();
        reject(new RpcError(Code.DEADLINE_EXCEEDED, `timed out after ${timeoutMs} ms waiting for a uevent`));
      }, timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      w.promise.then(
        (ev) => {
          done();
          resolve(ev);
        },
        (err: unknown) => {
          done();
          reject(err as Error);
        },
      );
    });
  }

  /** Feed one datagram as if read from the socket (used by the reader, and by tests). */
  handleMessage(chunk: Uint8Array): void {
    this.stats.received++;
    const ev = parseUevent(chunk);
    if (!ev) {
      this.stats.ignored++;
      this.log.trace({ bytes: chunk.length }, 'uevent: ignored a non-kernel or malformed message');
      return;
    }
    this.log.debug(
      { action: ev.action, devpath: ev.devpath, subsystem: ev.subsystem, devname: ev.devname, seqnum: ev.seqnum },
      'uevent',
    );
    for (const sub of [...this.subscribers]) {
      try {
        sub.onEvent(ev);
      } catch (err) {
        this.log.error({ err }, 'uevent subscriber failed');
      }
    }
    for (const w of [...this.watches]) {
      let hit = false;
      try {
        hit = w.match(ev);
      } catch (err) {
        this.log.error({ err }, 'uevent matcher failed');
      }
      if (hit && this.watches.delete(w)) w.resolve(ev);
    }
  }

  // -------------------------------------------------------------------------

  private open(): void {
    const fd = this.openSocket();
    let s: UeventStream;
    try {
      s = this.toStream(fd);
    } catch (err) {
      try {
        this.closeFd(fd);
      } catch {
        // reporting the first error
      }
      throw err;
    }
    this.stream = s;
    s.on('data', (chunk: Uint8Array) => {
      if (this.stream === s) this.handleMessage(chunk);
    });
    s.on('error', (err: Error) => this.failed(s, err));
    s.on('close', () => this.failed(s));
  }

  /** The socket broke (ENOBUFS after an overflow, or closed): reopen, then report lost events. */
  private failed(s: UeventStream, err?: Error): void {
    if (this.stream !== s) return;
    this.stream = undefined;
    try {
      s.destroy();
    } catch {
      // already gone
    }
    this.stats.lost++;
    this.log.warn({ err }, 'uevent socket failed; reopening (events may have been lost)');
    if (!this.started) return;
    this.scheduleReopen(0);
  }

  private scheduleReopen(delayMs: number): void {
    this.clearReopen();
    const run = (): void => {
      this.reopenTimer = undefined;
      this.reopenImmediate = undefined;
      if (!this.started || this.stream) return;
      try {
        this.open();
      } catch (err) {
        this.log.error({ err }, 'uevent socket reopen failed; retrying');
        this.scheduleReopen(this.reopenDelayMs);
        return;
      }
      this.notifyLost();
    };
    if (delayMs <= 0) {
      this.reopenImmediate = setImmediate(run);
    } else {
      const t = setTimeout(run, delayMs);
      t.unref();
      this.reopenTimer = t;
    }
  }

  private clearReopen(): void {
    if (this.reopenTimer) clearTimeout(this.reopenTimer);
    if (this.reopenImmediate) clearImmediate(this.reopenImmediate);
    this.reopenTimer = undefined;
    this.reopenImmediate = undefined;
  }

  private notifyLost(): void {
    for (const sub of [...this.subscribers]) {
      if (!sub.onLost) continue;
      try {
        sub.onLost();
      } catch (err) {
        this.log.error({ err }, 'uevent subscriber failed');
      }
    }
  }
}
