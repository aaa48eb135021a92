// swapon(2) / swapoff(2).
import { check, fn } from './libc';

/** Enable swapping on a block device or file that carries a swap signature (mkswap). */
export function swapon(path: string, flags = 0): void {
  check(fn('int swapon(const char *path, int flags)')(path, flags) as number, 'swapon', path);
}

export function swapoff(path: string): void {
  check(fn('int swapoff(const char *path)')(path) as number, 'swapoff', path);
}
