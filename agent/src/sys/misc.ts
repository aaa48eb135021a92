// Small process-wide syscalls: prctl, sethostname, reboot, sync, kill, setsid,
// pipe2, fcntl, ioctl (TIOCSWINSZ, TIOCSCTTY), close.
import { check, fn, koffi } from './libc';

export const PR_SET_CHILD_SUBREAPER = 36;
export const PR_GET_CHILD_SUBREAPER = 37;

export function prctl(option: number, arg2: number): number {
  const f = fn('int prctl(int option, unsigned long a2, unsigned long a3, unsigned long a4, unsigned long a5)');
  return check(f(option, arg2, 0, 0, 0) as number, 'prctl', undefined, `option ${option}`);
}

export function setChildSubreaper(): void {
  prctl(PR_SET_CHILD_SUBREAPER, 1);
}

export function isChildSubreaper(): boolean {
  const f = fn('int prctl(int option, _Out_ int *a2, unsigned long a3, unsigned long a4, unsigned long a5)');
  const out = [0];
  check(f(PR_GET_CHILD_SUBREAPER, out, 0, 0, 0) as number, 'prctl', undefined, 'PR_GET_CHILD_SUBREAPER');
  return out[0] !== 0;
}

export function sethostname(name: string): void {
  const buf = Buffer.from(name, 'utf8');
  const f = fn('int sethostname(const uint8_t *name, size_t len)');
  check(f(buf, buf.length) as number, 'sethostname', undefined, name);
}

export const RB = {
  AUTOBOOT: 0x01234567,
  HALT_SYSTEM: 0xcdef0123,
  POWER_OFF: 0x4321fedc,
} as const;

export function reboot(cmd: number): void {
  const f = fn('int reboot(int cmd)');
  check(f(cmd | 0) as number, 'reboot');
}

export function sync(): void {
  fn('void sync(void)')();
}

export function kill(pid: number, sig: number): void {
  const f = fn('int kill(int pid, int sig)');
  check(f(pid, sig) as number, 'kill', undefined, `pid ${pid} signal ${sig}`);
}

export function setsid(): number {
  return check(fn('int setsid(void)')() as number, 'setsid');
}

export function getpid(): number {
  return fn('int getpid(void)')() as number;
}

export const O_CLOEXEC = 0o2000000;
export const O_NONBLOCK = 0o4000;

export function pipe2(flags = O_CLOEXEC): [number, number] {
  const f = fn('int pipe2(_Out_ int *fds, int flags)');
  const fds = [0, 0];
  const out = new Int32Array(2);
  check(f(out, flags) as number, 'pipe2');
  fds[0] = out[0]!;
  fds[1] = out[1]!;
  return [fds[0], fds[1]];
}

export const F_GETFD = 1;
export const F_SETFD = 2;
export const F_GETFL = 3;
export const F_SETFL = 4;
export const F_SETPIPE_SZ = 1031;
export const F_GETPIPE_SZ = 1032;
export const FD_CLOEXEC = 1;

export function fcntl(fd: number, cmd: number, arg = 0): number {
  const f = fn('int fcntl(int fd, int cmd, int arg)');
  return check(f(fd, cmd, arg) as number, 'fcntl', undefined, `fd ${fd} cmd ${cmd}`);
}

/** Set a pipe's capacity; returns the size the kernel actually chose. */
export function setPipeSize(fd: number, size: number): number {
  return fcntl(fd, F_SETPIPE_SZ, size);
}

export function close(fd: number): void {
  check(fn('int close(int fd)')(fd) as number, 'close', undefined, `fd ${fd}`);
}

export const TIOCSCTTY = 0x540e;
export const TIOCSWINSZ = 0x5414;
export const TIOCGWINSZ = 0x5413;

export function setControllingTty(fd: number, force = true): void {
  const f = fn('int ioctl(int fd, unsigned long req, int arg)');
  check(f(fd, TIOCSCTTY, force ? 1 : 0) as number, 'ioctl', undefined, `TIOCSCTTY fd ${fd}`);
}

export interface WinSize {
  rows: number;
  cols: number;
  xpixel?: number;
  ypixel?: number;
}

export function setWinSize(fd: number, ws: WinSize): void {
  const buf = Buffer.alloc(8);
  buf.writeUInt16LE(ws.rows, 0);
  buf.writeUInt16LE(ws.cols, 2);
  buf.writeUInt16LE(ws.xpixel ?? 0, 4);
  buf.writeUInt16LE(ws.ypixel ?? 0, 6);
  const f = fn('int ioctl(int fd, unsigned long req, const uint8_t *ws)');
  check(f(fd, TIOCSWINSZ, buf) as number, 'ioctl', undefined, `TIOCSWINSZ fd ${fd}`);
}

export function getWinSize(fd: number): WinSize {
  const buf = Buffer.alloc(8);
  const f = fn('int ioctl(int fd, unsigned long req, _Out_ uint8_t *ws)');
  check(f(fd, TIOCGWINSZ, buf) as number, 'ioctl', undefined, `TIOCGWINSZ fd ${fd}`);
  return { rows: buf.readUInt16LE(0), cols: buf.readUInt16LE(2), xpixel: buf.readUInt16LE(4), ypixel: buf.readUInt16LE(6) };
}

export { koffi };
