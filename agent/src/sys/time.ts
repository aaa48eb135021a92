// Wall clock and sysconf values: settimeofday (SetGuestDateTime), clock ticks
// per second and the page size (process metrics).
import { check, fn } from './libc';

/**
 * Set CLOCK_REALTIME with settimeofday(2), as the Kata agent does.
 * struct timeval is { time_t tv_sec; suseconds_t tv_usec } = two int64 on
 * 64-bit Linux. The kernel rejects tv_usec outside [0, 1e6) and negative
 * seconds with EINVAL, and callers without CAP_SYS_TIME with EPERM.
 */
export function settimeofday(sec: number, usec: number): void {
  const tv = Buffer.from(new BigInt64Array([BigInt(sec), BigInt(usec)]).buffer); // native byte order
  const f = fn('int settimeofday(const uint8_t *tv, const void *tz)');
  check(f(tv, null) as number, 'settimeofday', undefined, `${sec}.${String(usec).padStart(6, '0')}`);
}

const _SC_CLK_TCK = 2;
const _SC_PAGESIZE = 30;

export function sysconf(name: number): number {
  const f = fn('long sysconf(int name)');
  const r = Number(f(name));
  return check(r, 'sysconf', undefined, `name ${name}`);
}

let ticks: number | undefined;
/** USER_HZ: the unit of the tick counts in /proc/<pid>/stat and /proc/stat. */
export function clockTicksPerSecond(): number {
  ticks ??= sysconf(_SC_CLK_TCK);
  return ticks;
}

let page: number | undefined;
export function pageSize(): number {
  page ??= sysconf(_SC_PAGESIZE);
  return page;
}
