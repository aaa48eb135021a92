// Process creation and reaping at the syscall level: posix_spawn(p) with file
// actions and attributes, waitpid, and the wait-status decoders.
//
// posix_spawn_file_actions_t and posix_spawnattr_t are opaque glibc structs
// (80 and 336 bytes on x86_64/aarch64); they live in generously sized zeroed
// Buffers and are always passed through *_init / *_destroy.
import os from 'node:os';
import { SysError, errno, fn } from './libc';

const E = os.constants.errno;

// posix_spawnattr flags (glibc <spawn.h>).
export const POSIX_SPAWN = {
  RESETIDS: 0x01,
  SETPGROUP: 0x02,
  SETSIGDEF: 0x04,
  SETSIGMASK: 0x08,
  SETSCHEDPARAM: 0x10,
  SETSCHEDULER: 0x20,
  USEVFORK: 0x40,
  SETSID: 0x80,
} as const;

// open(2) flags used with addopen.
export const O_RDONLY = 0;
export const O_WRONLY = 1;
export const O_RDWR = 2;

// waitpid options.
export const WNOHANG = 1;
export const WUNTRACED = 2;

const FILE_ACTIONS_SIZE = 256;
const SPAWNATTR_SIZE = 512;
const SIGSET_SIZE = 128;

/** One posix_spawn file action, applied in order in the child. */
export type SpawnFileAction =
  | { op: 'dup2'; fd: number; newfd: number }
  | { op: 'close'; fd: number }
  | { op: 'open'; fd: number; path: string; flags: number; mode?: number }
  | { op: 'chdir'; path: string }
  | { op: 'closefrom'; from: number };

export interface SpawnAttrs {
  /** POSIX_SPAWN_SETSID: the child becomes a session (and group) leader. */
  setsid?: boolean;
  /** POSIX_SPAWN_SETPGROUP with this pgid (0 = own group). Not together with setsid. */
  pgroup?: number;
  /** Reset every signal to SIG_DFL in the child (default true). */
  resetSignals?: boolean;
  /** Give the child an empty signal mask (default true). */
  emptySigmask?: boolean;
  /**
   * Signals left out of the reset: the child inherits the agent's disposition (Node ignores
   * SIGPIPE, so [13] gives the child SIGPIPE ignored). Only with resetSignals.
   */
  keepDisposition?: readonly number[];
}

/**
 * Start `path` with posix_spawn (or posix_spawnp when `path` has no '/', which
 * searches the *caller's* PATH). `argv` includes argv[0]; `envp` is KEY=VAL.
 * Returns the child's pid; throws SysError('posix_spawn', err, path).
 */
export function posixSpawn(
  path: string,
  argv: readonly string[],
  envp: readonly string[],
  actions: readonly SpawnFileAction[] = [],
  attrs: SpawnAttrs = {},
): number {
  const usePath = !path.includes('/');
  const syscall = usePath ? 'posix_spawnp' : 'posix_spawn';
  const fa = Buffer.alloc(FILE_ACTIONS_SIZE);
  const attr = Buffer.alloc(SPAWNATTR_SIZE);
  spawnCheck(fn('int posix_spawn_file_actions_init(uint8_t *fa)')(fa) as number, 'posix_spawn_file_actions_init', path);
  try {
    spawnCheck(fn('int posix_spawnattr_init(uint8_t *attr)')(attr) as number, 'posix_spawnattr_init', path);
    try {
      for (const a of actions) addAction(fa, a, path);
      setAttrs(attr, attrs, path);
      const spawn = fn(
        `int ${syscall}(_Out_ int *pid, const char *path, const uint8_t *fa, const uint8_t *attr, const char **argv, const char **envp)`,
      );
      const pid = new Int32Array(1);
      const err = spawn(pid, path, fa, attr, [...argv, null], [...envp, null]) as number;
      // The error is the return value (errno is not set); report it as posix_spawn
      // whichever variant ran so callers can match on one name.
      if (err !== 0) throw new SysError('posix_spawn', err, path);
      return pid[0]!;
    } finally {
      fn('int posix_spawnattr_destroy(uint8_t *attr)')(attr);
    }
  } finally {
    fn('int posix_spawn_file_actions_destroy(uint8_t *fa)')(fa);
  }
}

function spawnCheck(ret: number, syscall: string, path: string, detail?: string): void {
  // posix_spawn* helpers return an error number rather than -1/errno.
  if (ret !== 0) throw new SysError(syscall, ret, path, detail);
}

function addAction(fa: Buffer, a: SpawnFileAction, path: string): void {
  switch (a.op) {
    case 'dup2':
      spawnCheck(
        fn('int posix_spawn_file_actions_adddup2(uint8_t *fa, int fd, int newfd)')(fa, a.fd, a.newfd) as number,
        'posix_spawn_file_actions_adddup2',
        path,
        `${a.fd} -> ${a.newfd}`,
      );
      return;
    case 'close':
      spawnCheck(
        fn('int posix_spawn_file_actions_addclose(uint8_t *fa, int fd)')(fa, a.fd) as number,
        'posix_spawn_file_actions_addclose',
        path,
        `fd ${a.fd}`,
      );
      return;
    case 'open':
      // glibc copies the path string, so a temporary conversion is fine.
      spawnCheck(
        fn('int posix_spawn_file_actions_addopen(uint8_t *fa, int fd, const char *path, int oflag, uint32_t mode)')(
          fa,
          a.fd,
          a.path,
          a.flags,
          a.mode ?? 0,
        ) as number,
        'posix_spawn_file_actions_addopen',
        path,
        `fd ${a.fd} ${a.path}`,
      );
      return;
    case 'chdir':
      spawnCheck(
        fn('int posix_spawn_file_actions_addchdir_np(uint8_t *fa, const char *path)')(fa, a.path) as number,
        'posix_spawn_file_actions_addchdir_np',
        path,
        a.path,
      );
      return;
    case 'closefrom':
      spawnCheck(
        fn('int posix_spawn_file_actions_addclosefrom_np(uint8_t *fa, int from)')(fa, a.from) as number,
        'posix_spawn_file_actions_addclosefrom_np',
        path,
        `from ${a.from}`,
      );
      return;
  }
}

function setAttrs(attr: Buffer, attrs: SpawnAttrs, path: string): void {
  let flags = 0;
  if (attrs.setsid) flags |= POSIX_SPAWN.SETSID;
  if (attrs.pgroup !== undefined) {
    if (attrs.setsid) throw new SysError('posix_spawnattr_setpgroup', E.EINVAL, path, 'pgroup with setsid');
    flags |= POSIX_SPAWN.SETPGROUP;
    spawnCheck(
      fn('int posix_spawnattr_setpgroup(uint8_t *attr, int pgroup)')(attr, attrs.pgroup) as number,
      'posix_spawnattr_setpgroup',
      path,
    );
  }
  if (attrs.resetSignals ?? true) {
    // Every signal back to SIG_DFL: Node ignores SIGPIPE (and SIGXFSZ),
    // which a child would otherwise inherit. All 64 bits are set by hand
    // rather than with sigfillset, which leaves out glibc's internal signals
    // 32 and 33: glibc's spawn helper sets those to SIG_IGN in the child
    // unless they are in the SETSIGDEF set, and exec would keep that.
    const set = Buffer.alloc(SIGSET_SIZE);
    set.fill(0xff, 0, 8);
    for (const sig of attrs.keepDisposition ?? []) {
      if (Number.isInteger(sig) && sig >= 1 && sig <= 64) set[(sig - 1) >> 3]! &= ~(1 << ((sig - 1) & 7));
    }
    flags |= POSIX_SPAWN.SETSIGDEF;
    spawnCheck(
      fn('int posix_spawnattr_setsigdefault(uint8_t *attr, const uint8_t *set)')(attr, set) as number,
      'posix_spawnattr_setsigdefault',
      path,
    );
  }
  if (attrs.emptySigmask ?? true) {
    const set = Buffer.alloc(SIGSET_SIZE);
    fn('int sigemptyset(uint8_t *set)')(set);
    flags |= POSIX_SPAWN.SETSIGMASK;
    spawnCheck(
      fn('int posix_spawnattr_setsigmask(uint8_t *attr, const uint8_t *set)')(attr, set) as number,
      'posix_spawnattr_setsigmask',
      path,
    );
  }
  spawnCheck(
    fn('int posix_spawnattr_setflags(uint8_t *attr, short flags)')(attr, flags) as number,
    'posix_spawnattr_setflags',
    path,
  );
}

export interface WaitResult {
  /** The reaped pid; 0 = children exist but none changed state (WNOHANG); -1 = no children (ECHILD). */
  pid: number;
  /** Raw wait status (decode with the W* helpers). */
  status: number;
}

/** waitpid(2), retried on EINTR. ECHILD is not an error: it yields pid -1. */
export function waitpid(pid: number, options = 0): WaitResult {
  const f = fn('int waitpid(int pid, _Out_ int *status, int options)');
  const st = new Int32Array(1);
  for (;;) {
    const r = f(pid, st, options) as number;
    if (r >= 0) return { pid: r, status: r > 0 ? st[0]! : 0 };
    const e = errno();
    if (e === E.EINTR) continue;
    if (e === E.ECHILD) return { pid: -1, status: 0 };
    throw new SysError('waitpid', e, undefined, `pid ${pid}`);
  }
}

// Wait-status decoders (same bit layout as glibc's <bits/waitstatus.h>).
export const WIFEXITED = (s: number): boolean => (s & 0x7f) === 0;
export const WEXITSTATUS = (s: number): number => (s >> 8) & 0xff;
export const WIFSIGNALED = (s: number): boolean => (s & 0x7f) !== 0 && (s & 0x7f) !== 0x7f;
export const WTERMSIG = (s: number): number => s & 0x7f;
export const WCOREDUMP = (s: number): boolean => (s & 0x80) !== 0;
export const WIFSTOPPED = (s: number): boolean => (s & 0xff) === 0x7f;
export const WSTOPSIG = (s: number): number => (s >> 8) & 0xff;
export const WIFCONTINUED = (s: number): boolean => s === 0xffff;

/** Build raw statuses (for tests and fakes). */
export const exitedStatus = (code: number): number => (code & 0xff) << 8;
export const signaledStatus = (sig: number, core = false): number => (sig & 0x7f) | (core ? 0x80 : 0);
