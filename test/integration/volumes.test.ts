// The volume and swap RPC handlers on the real system (root): statfs of a tmpfs volume, an ext4
// volume on a loop device grown by ResizeVolume after its device grew, a swap file and a swap
// device enabled with AddSwapPath / AddSwap. Runs in a private mount namespace (fixture).
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Code } from '../../agent/src/rpc/status';
import { bundleEntry } from '../helpers/bundle';

const pexec = promisify(execFile);
const isRoot = process.getuid?.() === 0;
const haveTools = ['/usr/sbin/mkfs.ext4', '/usr/sbin/resize2fs', '/usr/sbin/mkswap', '/usr/sbin/losetup'].every((p) => fs.existsSync(p)) && fs.existsSync('/proc/swaps');

describe.skipIf(!isRoot || !haveTools)('volume RPCs on real file systems (root)', () => {
  let r: Record<string, any> = {};
  let work = '';

  beforeAll(async () => {
    const fixture = await bundleEntry('test/integration/fixtures/volume-scenarios.ts');
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-vol-'));
    const { stdout } = await pexec('unshare', ['-m', '--propagation', 'private', process.execPath, fixture, JSON.stringify({ work })], { timeout: 120_000 });
    r = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}');
  }, 150_000);

  afterAll(() => {
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('ran without a fatal error and cleaned up', () => {
    expect(r.fatal).toBeUndefined();
    expect(r.cleanupErrors).toBeUndefined();
    expect(fs.readFileSync('/proc/swaps', 'utf8')).not.toContain(work);
  });

  it('GetVolumeStats: an 8 MiB tmpfs with 1 MiB written', () => {
    const [bytes, inodes] = r.tmpfsStats.usage;
    expect(bytes.unit).toBe(1);
    expect(bytes.total).toBe(8 << 20);
    expect(bytes.used).toBeGreaterThanOrEqual(1 << 20);
    expect(bytes.available).toBe(bytes.total - bytes.used);
    expect(inodes.unit).toBe(2);
    expect(inodes.used).toBeGreaterThanOrEqual(2); // the root and the file
  });

  it('ResizeVolume: refuses a tmpfs and a size beyond the device', () => {
    expect(r.resizeTmpfs).toMatchObject({ code: Code.FAILED_PRECONDITION, message: expect.stringMatching(/not a block device/) });
    expect(r.resizeTooBig).toMatchObject({ code: Code.FAILED_PRECONDITION, message: expect.stringMatching(/less than the 67108864 asked/) });
  });

  it('ResizeVolume: grows ext4 online once the device grew (with CAP_SYS_RESOURCE; without it, resize2fs\'s refusal comes back)', () => {
    const [before, after] = r.extTotals as [number, number];
    expect(before).toBeLessThan(32 << 20);
    if (r.capSysResource) {
      expect(r.resizeError).toBeUndefined();
      expect(after).toBeGreaterThan(before + (24 << 20)); // ~64 MiB minus ext4 metadata
    } else {
      // This sandbox drops CAP_SYS_RESOURCE, which EXT4_IOC_RESIZE_FS requires.
      expect(r.resizeError).toMatchObject({ code: Code.INTERNAL, message: expect.stringMatching(/resize2fs \/dev\/loop\d+ exited 1: .*Permission denied/) });
      expect(after).toBe(before);
    }
  });

  it('AddSwapPath: refuses a file without a swap signature, enables a formatted one, refuses it twice', () => {
    expect(r.swapUnformatted).toMatchObject({ code: Code.INVALID_ARGUMENT, message: expect.stringMatching(/swapon .*EINVAL/) });
    expect(r.procSwapsAfterPath).toContain(path.join(work, 'root/extvol/swapfile'));
    expect(r.swapTwice).toMatchObject({ code: Code.ALREADY_EXISTS });
  });

  it('AddSwap: the device found at the PCI path is in /proc/swaps', () => {
    expect(r.swapDisk).toMatch(/^\/dev\/loop\d+$/);
    expect(r.procSwapsAfterDevice).toContain(r.swapDisk);
  });
});
