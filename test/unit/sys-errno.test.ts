// errno names: Node's table plus the Linux numbers it leaves out (mount and device errors),
// so a failed mount of a non-block device says ENOTBLK, not "E15".
import { describe, expect, it } from 'vitest';
import { SysError, errnoName } from '../../agent/src/sys/libc';

describe('errnoName', () => {
  it('names from Node\'s table, canonical name first', () => {
    expect(errnoName(2)).toBe('ENOENT');
    expect(errnoName(11)).toBe('EAGAIN');
  });
  it('Linux numbers Node lacks', () => {
    expect(errnoName(15)).toBe('ENOTBLK');
    expect(errnoName(117)).toBe('EUCLEAN');
    expect(errnoName(123)).toBe('ENOMEDIUM');
    expect(new SysError('mount', 15, '/x').message).toBe('mount /x: ENOTBLK (15)');
    expect(new SysError('mount', 15, '/x').code).toBe('ENOTBLK');
  });
  it('an unknown number stays numeric', () => {
    expect(errnoName(4000)).toBe('E4000');
  });
});
