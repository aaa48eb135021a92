// Pseudo-terminals: posix_openpt + grantpt + unlockpt + ptsname_r. The master
// fd is close-on-exec and non-blocking, ready to be wrapped in a libuv Pipe
// handle (transport/handles.ts pipeSocketHandle). The slave is opened by path
// by whoever needs it: the agent (a child's stdio), or the child itself (to
// make it its controlling terminal).
import fs from 'node:fs';
import { SysError, check, errno, fn } from './libc';
import { F_GETFL, F_SETFL, O_CLOEXEC, O_NONBLOCK, close, fcntl, setWinSize, type WinSize } from './misc';

const O_RDWR = 0o2;
const O_NOCTTY = 0o400;

export interface Pty {
  /** The master fd (O_CLOEXEC, O_NONBLOCK). The caller owns it. */
  master: number;
  /** The slave device, e.g. /dev/pts/3. */
  slavePath: string;
}

export interface OpenPtyOptions {
  /** Initial window size of the terminal (default: left at the kernel's 0x0). */
  winSize?: WinSize;
}

/** Open a new pseudo-terminal pair. Throws SysError; no fd leaks on failure. */
export function openPty(opts: OpenPtyOptions = {}): Pty {
  const master = check(
    fn('int posix_openpt(int flags)')(O_RDWR | O_NOCTTY | O_CLOEXEC) as number,
    'posix_openpt',
    '/dev/ptmx',
  );
  try {
    check(fn('int grantpt(int fd)')(master) as number, 'grantpt', undefined, `fd ${master}`);
    check(fn('int unlockpt(int fd)')(master) as number, 'unlockpt', undefined, `fd ${master}`);
    const buf = Buffer.alloc(128);
    // ptsname_r returns an error number (not -1/errno).
    const r = fn('int ptsname_r(int fd, _Out_ uint8_t *buf, size_t len)')(master, buf, buf.length) as number;
    if (r !== 0) throw new SysError('ptsname_r', r > 0 ? r : errno(), undefined, `fd ${master}`);
    const end = buf.indexOf(0);
    const slavePath = buf.subarray(0, end < 0 ? buf.length : end).toString('utf8');
    const fl = fcntl(master, F_GETFL);
    if ((fl & O_NONBLOCK) === 0) fcntl(master, F_SETFL, fl | O_NONBLOCK);
    if (opts.winSize) setWinSize(master, opts.winSize);
    return { master, slavePath };
  } catch (err) {
    try {
      close(master);
    } catch {
      // nothing more to do
    }
    throw err;
  }
}

/**
 * Open the slave side by path for the agent's own use (e.g. to hand to a
 * child as stdio): O_RDWR | O_NOCTTY, close-on-exec (node sets O_CLOEXEC).
 */
export function openPtySlave(slavePath: string): number {
  return fs.openSync(slavePath, fs.constants.O_RDWR | fs.constants.O_NOCTTY);
}

