import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { EARLY_MOUNTS, earlyMounts, type InitContext } from '../../agent/src/init';
import { mountedType, parseMountInfo } from '../../agent/src/init/mountinfo';
import { captureLogger, FakeInitSys, type FakeOptions } from '../helpers/init-fake';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixture = (name: string) => fs.readFileSync(path.join(here, '../fixtures/init', name), 'utf8');

function setup(opts: FakeOptions = {}) {
  const sys = new FakeInitSys(opts);
  const { log, lines } = captureLogger();
  const ctx: InitContext = { sys, log, root: opts.root ?? '/' };
  return { sys, log, lines, ctx };
}

const ALL_MOUNTS = [
  'mount proc /proc proc 0xe null',
  'mount sysfs /sys sysfs 0xe null',
  'mount dev /dev devtmpfs 0x2 mode=0755',
  'mount devpts /dev/pts devpts 0xa newinstance,ptmxmode=0666,mode=0620,gid=5',
  'mount shm /dev/shm tmpfs 0x6 mode=1777',
  'mount tmpfs /run tmpfs 0x6 mode=0755',
];

describe('mountinfo parsing', () => {
  it('parses fields and unescapes octal sequences', () => {
    const e = parseMountInfo(fixture('mountinfo-initramfs.txt'));
    expect(e).toHaveLength(6);
    expect(e[3]).toEqual({
      id: 22, parent: 1, mountPoint: '/dev', options: 'rw,nosuid,relatime', optional: [], fstype: 'devtmpfs', source: 'dev',
      superOptions: 'rw,size=1015532k,nr_inodes=253883,mode=755',
    });
    expect(e[5]!.mountPoint).toBe('/mnt/with space');
  });

  it('handles optional fields before the separator and skips junk lines', () => {
    const e = parseMountInfo('36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue\ngarbage\n\n');
    expect(e).toHaveLength(1);
    expect(e[0]).toMatchObject({ mountPoint: '/mnt2', fstype: 'ext3', source: '/dev/root', optional: ['master:1', 'shared:2'] });
  });

  it('mountedType reports the topmost mount at a path', () => {
    const e = parseMountInfo(fixture('mountinfo-initramfs.txt') + '30 22 0:30 / /dev rw - tmpfs tmpfs rw\n');
    expect(mountedType(e, '/dev')).toBe('tmpfs');
    expect(mountedType(e, '/dev/')).toBe('tmpfs');
    expect(mountedType(e, '/proc')).toBe('proc');
    expect(mountedType(e, '/run')).toBeUndefined();
  });
});

describe('earlyMounts', () => {
  it('on an empty root mounts everything in order, creating missing mount points', () => {
    const { sys, ctx, lines } = setup({ dirs: ['/proc', '/sys', '/dev', '/run'] });
    const res = earlyMounts(ctx);
    expect(res.map((r) => [r.target, r.status])).toEqual([
      ['/proc', 'mounted'], ['/sys', 'mounted'], ['/dev', 'mounted'], ['/dev/pts', 'mounted'], ['/dev/shm', 'mounted'], ['/run', 'mounted'],
    ]);
    expect(sys.callsOf('mount')).toEqual(ALL_MOUNTS);
    // /dev/pts and /dev/shm do not exist on a fresh devtmpfs: created with the right modes before mounting
    expect(sys.callsOf('mkdir')).toEqual(['mkdir /dev/pts 755', 'mkdir /dev/shm 1777']);
    const order = sys.calls.filter((c) => c.includes('/dev/shm'));
    expect(order).toEqual(['mkdir /dev/shm 1777', 'mount shm /dev/shm tmpfs 0x6 mode=1777']);
    expect(lines.filter((l) => l.level === 'error')).toEqual([]);
  });

  it('makes /dev/ptmx a symlink to pts/ptmx, replacing the device node', () => {
    const { sys, ctx } = setup({ files: { '/dev/ptmx': 'char 5:2' } });
    earlyMounts(ctx);
    expect(sys.links.get('/dev/ptmx')).toBe('pts/ptmx');
    expect(sys.files.has('/dev/ptmx')).toBe(false);
    const i = sys.calls.indexOf('unlink /dev/ptmx');
    expect(i).toBeGreaterThan(sys.calls.findIndex((c) => c.startsWith('mount devpts')));
    expect(sys.calls[i + 1]).toBe('symlink pts/ptmx /dev/ptmx');
  });

  it('leaves an existing pts/ptmx symlink alone', () => {
    const { sys, ctx } = setup({ symlinks: { '/dev/ptmx': 'pts/ptmx' } });
    earlyMounts(ctx);
    expect(sys.callsOf('unlink', 'symlink').filter((c) => c.includes('ptmx'))).toEqual([]);
  });

  it('replaces a symlink pointing elsewhere', () => {
    const { sys, ctx } = setup({ symlinks: { '/dev/ptmx': '/somewhere/else' } });
    earlyMounts(ctx);
    expect(sys.links.get('/dev/ptmx')).toBe('pts/ptmx');
  });

  it('creates /dev/fd and /dev/std* symlinks only when missing', () => {
    const { sys, ctx } = setup({ symlinks: { '/dev/fd': '/proc/self/fd' }, files: { '/dev/stdin': 'x' } });
    earlyMounts(ctx);
    expect(sys.callsOf('symlink').filter((c) => !c.includes('ptmx'))).toEqual([
      'symlink /proc/self/fd/1 /dev/stdout',
      'symlink /proc/self/fd/2 /dev/stderr',
    ]);
  });

  it('skips file systems that are already mounted (same type at the target)', () => {
    // initramfs left proc, sysfs and devtmpfs mounted, and a tmpfs (not devpts) on /dev/pts
    const { sys, ctx, lines } = setup({ mountinfo: fixture('mountinfo-initramfs.txt') });
    const res = earlyMounts(ctx);
    expect(res.map((r) => [r.target, r.status])).toEqual([
      ['/proc', 'skipped'], ['/sys', 'skipped'], ['/dev', 'skipped'], ['/dev/pts', 'mounted'], ['/dev/shm', 'mounted'], ['/run', 'mounted'],
    ]);
    expect(sys.callsOf('mount')).toEqual(ALL_MOUNTS.slice(3));
    expect(lines.filter((l) => l.msg === 'already mounted; skipping').map((l) => l.target)).toEqual(['/proc', '/sys', '/dev']);
  });

  it('checks mountinfo again after /proc is up (mounts made earlier in the run count)', () => {
    const { sys, ctx } = setup();
    const table = [EARLY_MOUNTS[0]!, EARLY_MOUNTS[5]!, EARLY_MOUNTS[5]!];
    const res = earlyMounts(ctx, table);
    expect(res.map((r) => r.status)).toEqual(['mounted', 'mounted', 'skipped']);
    expect(sys.callsOf('mount')).toHaveLength(2);
  });

  it('a failed mount is logged and the rest continue', () => {
    const { sys, ctx, lines } = setup({ failMount: (m) => (m.fstype === 'sysfs' ? 'ENODEV' : undefined) });
    const res = earlyMounts(ctx);
    expect(res.find((r) => r.target === '/sys')).toMatchObject({ status: 'failed', error: expect.stringContaining('ENODEV') });
    expect(res.filter((r) => r.status === 'mounted').map((r) => r.target)).toEqual(['/proc', '/dev', '/dev/pts', '/dev/shm', '/run']);
    const err = lines.filter((l) => l.level === 'error');
    expect(err).toHaveLength(1);
    expect(err[0]).toMatchObject({ msg: 'mount failed', target: '/sys', fstype: 'sysfs' });
    expect(String(err[0]!.err)).toContain('ENODEV');
    expect(sys.callsOf('mount')).toHaveLength(6);
  });

  it('every mount failing still returns (never throws) with all failures reported', () => {
    const { sys, ctx, lines } = setup({ failMount: () => 'EPERM' });
    const res = earlyMounts(ctx);
    expect(res.every((r) => r.status === 'failed')).toBe(true);
    expect(lines.filter((l) => l.msg === 'mount failed')).toHaveLength(6);
    // no devpts => /dev/ptmx untouched; no /dev => no fd symlinks
    expect(sys.callsOf('symlink', 'unlink')).toEqual([]);
  });

  it('a failed mkdir is logged and the mount is still attempted', () => {
    const { sys, ctx, lines } = setup({ fail: ['mkdir'] });
    earlyMounts(ctx, [EARLY_MOUNTS[0]!]);
    expect(sys.calls).toEqual(['mkdir /proc 755', 'mount proc /proc proc 0xe null']);
    expect(lines.some((l) => l.level === 'warn' && l.msg === 'cannot create mount point')).toBe(true);
  });

  it('a failed ptmx link is reported as a failure entry and logged', () => {
    const { ctx, lines } = setup({ fail: ['symlink'], files: { '/dev/ptmx': 'char' } });
    const res = earlyMounts(ctx);
    expect(res.at(-1)).toMatchObject({ target: '/dev/ptmx', status: 'failed' });
    expect(lines.some((l) => l.level === 'error' && String(l.msg).includes('/dev/ptmx'))).toBe(true);
  });

  it('works under a root prefix', () => {
    const { sys, ctx } = setup({ root: '/tmp/r', files: { '/tmp/r/dev/ptmx': 'c' } });
    const res = earlyMounts(ctx);
    expect(res.map((r) => r.target)).toEqual(['/proc', '/sys', '/dev', '/dev/pts', '/dev/shm', '/run']);
    expect(sys.callsOf('mount')).toEqual(ALL_MOUNTS.map((c) => c.replace(/ \//, ' /tmp/r/')));
    expect(sys.links.get('/tmp/r/dev/ptmx')).toBe('pts/ptmx');
    expect(sys.links.get('/tmp/r/dev/fd')).toBe('/proc/self/fd');
  });
});
