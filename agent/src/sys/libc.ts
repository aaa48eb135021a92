// The only module that loads libc through koffi. Every other file in sys/
// declares its functions through `fn()` and turns failures into SysError.
import koffi, { type LibraryHandle } from 'koffi';

type KoffiFunction = ReturnType<LibraryHandle['func']>;
import os from 'node:os';

let lib: LibraryHandle | undefined;

export function libc(): LibraryHandle {
  if (!lib) lib = koffi.load('libc.so.6');
  return lib;
}

/** Declare a libc function lazily (by C prototype) and cache it. */
export function fn(proto: string): KoffiFunction {
  let f = cache.get(proto);
  if (!f) {
    f = libc().func(proto);
    cache.set(proto, f);
  }
  return f;
}
const cache = new Map<string, KoffiFunction>();

export function errno(): number {
  return koffi.errno();
}

// Several names share a number (EAGAIN/EWOULDBLOCK, EDEADLK/EDEADLOCK...): the first
// (canonical) name wins.
const errnoNames: Record<number, string> = {};
for (const [name, n] of Object.entries(os.constants.errno)) errnoNames[n] ??= name;
// Linux numbers Node's table leaves out (x86_64/aarch64; mount and device errors among them).
const LINUX_EXTRA: Record<number, string> = {
  15: 'ENOTBLK',
  108: 'ESHUTDOWN',
  117: 'EUCLEAN',
  121: 'EREMOTEIO',
  123: 'ENOMEDIUM',
  124: 'EMEDIUMTYPE',
  126: 'ENOKEY',
  127: 'EKEYEXPIRED',
};
for (const [n, name] of Object.entries(LINUX_EXTRA)) errnoNames[Number(n)] ??= name;

export function errnoName(n: number): string {
  return errnoNames[n] ?? `E${n}`;
}

/** A failed syscall: carries the call name, errno and the path(s) involved. */
export class SysError extends Error {
  readonly syscall: string;
  readonly errno: number;
  readonly code: string;
  readonly path?: string;
  constructor(syscall: string, err: number, path?: string, detail?: string) {
    const name = errnoName(err);
    super(
      `${syscall}${path !== undefined ? ` ${path}` : ''}${detail ? ` (${detail})` : ''}: ${name} (${err})`,
    );
    this.name = 'SysError';
    this.syscall = syscall;
    this.errno = err;
    this.code = name;
    this.path = path;
  }
}

/** Throw a SysError when a libc call returned -1 (or `bad`), else return its value. */
export function check<T extends number>(ret: T, syscall: string, path?: string, detail?: string, bad = -1): T {
  if (ret === bad) throw new SysError(syscall, koffi.errno(), path, detail);
  return ret;
}

/** Retry a call while it fails with EINTR. */
export function retryEintr<T extends number>(call: () => T, syscall: string, path?: string): T {
  for (;;) {
    const r = call();
    if (r !== -1) return r;
    const e = koffi.errno();
    if (e !== os.constants.errno.EINTR) throw new SysError(syscall, e, path);
  }
}

export { koffi };
