// The system calls PID-1 set-up needs, behind an interface so the init logic
// can be unit-tested with a recording fake (see test/unit/init-*.test.ts).
// The real implementation lives in ./realsys (it loads libc through sys/).
import type { Logger } from '../log';

export interface InitSys {
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void;
  /** mkdir -p. */
  mkdir(path: string, mode?: number): void;
  exists(path: string): boolean;
  /** Target of a symlink, or undefined when path is missing or not a symlink. */
  readlink(path: string): string | undefined;
  symlink(target: string, path: string): void;
  unlink(path: string): void;
  /** Whole file as UTF-8; throws when it cannot be read. */
  readFile(path: string): string;
  writeFile(path: string, data: string): void;
  setsid(): void;
  isatty(fd: number): boolean;
  /** Open a terminal device read-write; returns the fd (kept open). */
  openConsole(path: string): number;
  /** ioctl(fd, TIOCSCTTY, 1). */
  setControllingTty(fd: number): void;
  sethostname(name: string): void;
  setChildSubreaper(): void;
  sync(): void;
  reboot(cmd: number): void;
  exit(code: number): void;
}

/** Shared state of the init steps: the syscalls, the logger and the root prefix ('/' in a guest). */
export interface InitContext {
  sys: InitSys;
  log: Logger;
  /** Prefix for every absolute path (tests run the real mounts under a temp dir). */
  root: string;
}

/** Join an absolute guest path onto the root prefix. */
export function at(root: string, p: string): string {
  if (root === '/' || root === '') return p;
  return root.replace(/\/+$/, '') + (p.startsWith('/') ? p : `/${p}`);
}

export function errMsg(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
