// eventfd(2): a kernel counter readable as an fd. Used for cgroup v1 memory
// OOM notifications (cgroup.event_control). Reading it as a stream goes
// through a libuv Pipe handle (transport/handles.ts), so no thread blocks.
import { check, fn } from './libc';

export const EFD_SEMAPHORE = 1;
export const EFD_NONBLOCK = 0o4000;
export const EFD_CLOEXEC = 0o2000000;

/** Create an eventfd; close-on-exec and non-blocking by default. Throws SysError. */
export function eventfd(initval = 0, flags = EFD_CLOEXEC | EFD_NONBLOCK): number {
  const f = fn('int eventfd(unsigned int initval, int flags)');
  return check(f(initval >>> 0, flags) as number, 'eventfd');
}
