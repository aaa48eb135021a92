// Seeding the guest kernel RNG from entropy the host sends (ReseedRandomDev).
import fs from 'node:fs';
import { check, fn } from './libc';

// <linux/random.h> ioctls. _IOW('R', 0x01, int) and _IO('R', 0x07); powerpc
// encodes the direction bits differently.
const PPC = process.arch === 'ppc64' || process.arch === 'ppc';
export const RNDADDTOENTCNT = PPC ? 0x80045201 : 0x40045201;
export const RNDRESEEDCRNG = PPC ? 0x20005207 : 0x5207;

/**
 * Mix `data` into the kernel RNG the way the Kata agent does: write it to the
 * random device, credit entropy with RNDADDTOENTCNT (one bit per byte, as
 * Kata passes the byte count as the bit count), then force a reseed of the
 * CRNG with RNDRESEEDCRNG. The ioctls need CAP_SYS_ADMIN (EPERM otherwise).
 */
export function reseedRng(devPath: string, data: Uint8Array): void {
  const fd = fs.openSync(devPath, fs.constants.O_RDWR);
  try {
    let off = 0;
    while (off < data.length) off += fs.writeSync(fd, data, off, data.length - off);
    const count = Buffer.from(new Int32Array([Math.min(data.length, 0x7fffffff)]).buffer);
    const addEntropy = fn('int ioctl(int fd, unsigned long req, const uint8_t *count)');
    check(addEntropy(fd, RNDADDTOENTCNT, count) as number, 'ioctl', devPath, 'RNDADDTOENTCNT');
    const reseed = fn('int ioctl(int fd, unsigned long req, unsigned long arg)');
    check(reseed(fd, RNDRESEEDCRNG, 0) as number, 'ioctl', devPath, 'RNDRESEEDCRNG');
  } finally {
    fs.closeSync(fd);
  }
}
