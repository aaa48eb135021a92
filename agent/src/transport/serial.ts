// virtio-serial "listener". A virtio-serial port (/dev/vportNpM) is one byte
// stream that carries one session at a time: open it, wait until the host
// sends something, hand it over as a net.Socket, and when it ends (EOF = the
// host side went away) or fails, close it and open it again, until close().
// While no host is connected, reads return EOF at once, so an open that ends
// before any byte arrived is just a quiet retry.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from '../log';
import { ownedFdSocket } from './handles';
import type { Listener, OnConnection } from './types';

export const DEFAULT_SYSFS_VIRTIO_PORTS = '/sys/class/virtio-ports';
export const DEFAULT_DEV_DIR = '/dev';

export interface SerialOptions {
  /** Where port names are looked up (default /sys/class/virtio-ports). */
  sysfsRoot?: string;
  /** Where the device nodes are (default /dev). */
  devDir?: string;
  /** Use this device path instead of looking the name up (tests). */
  device?: string;
  /** Delay before reopening after a session or an empty open ended (default 50 ms). */
  reopenDelayMs?: number;
  /** Longest delay between attempts when opening keeps failing (default 1000 ms). */
  maxRetryDelayMs?: number;
}

/** The names of the virtio-serial ports present: Map<name, device path>. */
export function listVirtioPorts(sysfsRoot = DEFAULT_SYSFS_VIRTIO_PORTS, devDir = DEFAULT_DEV_DIR): Map<string, string> {
  const out = new Map<string, string>();
  let entries: string[];
  try {
    entries = fs.readdirSync(sysfsRoot).sort();
  } catch {
    return out;
  }
  for (const e of entries) {
    let name: string;
    try {
      name = fs.readFileSync(path.join(sysfsRoot, e, 'name'), 'utf8').trim();
    } catch {
      continue; // a port without a name (or not a port directory)
    }
    if (name && !out.has(name)) out.set(name, path.join(devDir, e));
  }
  return out;
}

/** The device path of the virtio-serial port called `name`, or undefined. */
export function findVirtioPort(name: string, sysfsRoot = DEFAULT_SYSFS_VIRTIO_PORTS, devDir = DEFAULT_DEV_DIR): string | undefined {
  return listVirtioPorts(sysfsRoot, devDir).get(name);
}

/** Open a char device (or FIFO) as a net.Socket through a libuv Pipe handle. */
export function openCharDeviceSocket(device: string): net.Socket {
  return ownedFdSocket(fs.openSync(device, fs.constants.O_RDWR | fs.constants.O_NONBLOCK | fs.constants.O_NOCTTY));
}

/** Serve sessions over the virtio-serial port `name`. Rejects if the port does not exist. */
export async function listenSerial(name: string, onConnection: OnConnection, log: Logger, opts: SerialOptions = {}): Promise<Listener> {
  const sysfsRoot = opts.sysfsRoot ?? DEFAULT_SYSFS_VIRTIO_PORTS;
  let device = opts.device;
  if (device === undefined) {
    const ports = listVirtioPorts(sysfsRoot, opts.devDir ?? DEFAULT_DEV_DIR);
    device = ports.get(name);
    if (device === undefined) {
      const have = [...ports.keys()];
      throw new Error(
        `virtio-serial port ${JSON.stringify(name)} not found under ${sysfsRoot}` +
          (have.length ? ` (present: ${have.join(', ')})` : ' (no ports present)'),
      );
    }
  }
  const dev = device;
  const peer = `serial:${name}`;
  const reopenDelay = opts.reopenDelayMs ?? 50;
  const maxRetryDelay = opts.maxRetryDelayMs ?? 1000;

  let closed = false;
  let current: net.Socket | undefined;
  let timer: NodeJS.Timeout | undefined;
  let failures = 0;
  let waitingLogged = false;
  const currentClosed: { p?: Promise<void> } = {};

  const schedule = (ms: number): void => {
    if (closed) return;
    timer = setTimeout(() => {
      timer = undefined;
      openOnce();
    }, ms);
  };

  const openOnce = (): void => {
    if (closed) return;
    let sock: net.Socket;
    try {
      sock = openCharDeviceSocket(dev);
    } catch (err) {
      failures++;
      const delay = Math.min(maxRetryDelay, reopenDelay * 2 ** Math.min(failures, 10));
      (failures === 1 ? log.warn : log.debug).call(log, { err, device: dev, retryMs: delay }, 'cannot open virtio-serial port');
      schedule(delay);
      return;
    }
    if (failures > 0) log.info({ device: dev }, 'virtio-serial port open again');
    failures = 0;
    if (!waitingLogged) {
      log.debug({ device: dev, port: name }, 'virtio-serial port open, waiting for the host');
      waitingLogged = true;
    }
    current = sock;
    let session = false;
    currentClosed.p = new Promise<void>((resolve) => sock.once('close', () => resolve()));

    const onReadable = (): void => {
      if (sock.readableLength > 0) {
        // The host is talking: start a session with the bytes still buffered.
        sock.off('readable', onReadable);
        session = true;
        waitingLogged = false;
        log.info({ device: dev, port: name }, 'virtio-serial session started');
        try {
          onConnection(sock, { transport: 'serial', peer });
        } catch (err) {
          log.error({ err, peer }, 'connection handler failed');
          sock.destroy();
        }
      } else {
        sock.read(); // lets 'end' fire at EOF
      }
    };
    sock.on('readable', onReadable);
    sock.on('error', (err) => log.debug({ err, device: dev }, 'virtio-serial port error'));
    // EOF: the host went away (or never came). No half-open state on a port,
    // and a consumer ending its side ends the session: close and reopen.
    sock.on('end', () => sock.destroy());
    sock.on('finish', () => sock.destroy());
    sock.once('close', () => {
      if (current === sock) current = undefined;
      if (session) log.info({ device: dev, port: name }, 'virtio-serial session ended');
      else log.trace({ device: dev }, 'virtio-serial port closed before any data');
      schedule(reopenDelay);
    });
  };

  openOnce();
  log.info({ address: peer, device: dev }, 'listening on virtio-serial');

  return {
    address: peer,
    async close(): Promise<void> {
      closed = true;
      if (timer) clearTimeout(timer);
      timer = undefined;
      const s = current;
      if (s) {
        s.destroy();
        await currentClosed.p;
      }
    },
  };
}
