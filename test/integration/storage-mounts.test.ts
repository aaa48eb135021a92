// Real storage mounts (root only), in a private mount namespace: a child
// `unshare -m --propagation private` runs test/integration/fixtures/
// storage-mounts.ts, which mounts a private tmpfs on a temp prefix and drives
// StorageManager with the real system calls below it. ext4 comes from a loop
// device made here (and always detached).
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseMountInfo } from '../../agent/src/init/mountinfo';
import { bundleEntry } from '../helpers/bundle';

const isRoot = process.getuid?.() === 0;
const hasUnshare = fs.existsSync('/usr/bin/unshare') || fs.existsSync('/bin/unshare');
const canLoop = (() => {
  try {
    execFileSync('losetup', ['--version'], { stdio: 'ignore' });
    execFileSync('mkfs.ext4', ['-V'], { stdio: 'ignore' });
    return fs.existsSync('/dev/loop-control');
  } catch {
    return false;
  }
})();

function run(argv: string[], timeoutMs = 60_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(t);
      resolve({ code, stdout, stderr });
    });
  });
}

const opts = (e: { options: string } | null) => (e ? e.options.split(',') : []);
const sopts = (e: { superOptions: string } | null) => (e ? e.superOptions.split(',') : []);

describe.skipIf(!isRoot || !hasUnshare)('storage drivers with real mounts (root, private mount namespace)', () => {
  let prefix = '';
  let work = '';
  let loopDev = '';
  let d: Record<string, any> = {};

  beforeAll(async () => {
    const fixture = await bundleEntry('test/integration/fixtures/storage-mounts.ts');
    work = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'gk-storage-')));
    prefix = path.join(work, 'prefix');
    fs.mkdirSync(prefix);
    if (canLoop) {
      const img = path.join(work, 'disk.img');
      execFileSync('truncate', ['-s', '32M', img]);
      execFileSync('mkfs.ext4', ['-q', '-F', img]);
      loopDev = execFileSync('losetup', ['-f', '--show', img], { encoding: 'utf8' }).trim();
    }
    const r = await run(['unshare', '-m', '--propagation', 'private', process.execPath, fixture, prefix, loopDev]);
    expect(r.code, r.stderr).toBe(0);
    const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
    expect(line, r.stdout + r.stderr).toBeDefined();
    d = JSON.parse(line!) as Record<string, any>;
  });

  afterAll(() => {
    if (loopDev) {
      try {
        execFileSync('losetup', ['-d', loopDev]);
      } finally {
        const still = execFileSync('losetup', ['-a'], { encoding: 'utf8' });
        expect(still).not.toContain(`${loopDev}:`);
      }
    }
    if (prefix) {
      // the namespace is gone: nothing it mounted may be visible on the host
      const leaked = parseMountInfo(fs.readFileSync('/proc/self/mountinfo', 'utf8')).filter((m) => m.mountPoint.startsWith(work));
      expect(leaked).toEqual([]);
      expect(fs.readdirSync(prefix)).toEqual([]);
    }
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('ephemeral tmpfs: size, mode and flags; UpdateEphemeralMounts resizes keeping the flags; fsgid; unmounted on release', () => {
    const t = d.tmpfs;
    expect(t.unexpectedError).toBeUndefined();
    const mp = `${d.root}/sandbox/ephemeral/e1`;
    expect(t.added).toEqual([mp]);
    expect(t.entry.fstype).toBe('tmpfs');
    expect(opts(t.entry)).toEqual(expect.arrayContaining(['nosuid', 'nodev']));
    expect(sopts(t.entry)).toEqual(expect.arrayContaining(['size=8192k', 'mode=750']));
    expect(t.bytes).toBe(8 * 1024 * 1024);
    expect(t.stat.mode).toBe(0o750);
    expect(t.updatedBytes).toBe(16 * 1024 * 1024);
    expect(sopts(t.updatedEntry)).toEqual(expect.arrayContaining(['size=16384k', 'mode=750']));
    expect(opts(t.updatedEntry)).toEqual(expect.arrayContaining(['nosuid', 'nodev']));
    expect(t.fsgid.gid).toBe(1234);
    expect(t.fsgid.mode & 0o2000).toBe(0o2000);
    expect(t.released.sort()).toEqual([mp, `${d.root}/sandbox/ephemeral/e2`].sort());
    expect(t.after).toEqual([]);
    expect(t.dirsLeft).toBe(false);
  });

  it('local: a directory with mode + setgid and the fsgid group, or the fs_group; nothing mounted; data kept', () => {
    const l = d.local;
    expect(l.unexpectedError).toBeUndefined();
    expect(l.l1).toMatchObject({ mode: 0o2777, gid: 2345 });
    expect(l.l2.gid).toBe(3456);
    expect(l.l2.mode & 0o2770).toBe(0o2770);
    expect(l.mounted).toEqual([]);
    expect(l.l1Kept).toBe(true);
    expect(l.l2Kept).toBe(false);
  });

  it('bind: read-only directory (writes fail with EROFS) and a file bind; both unmounted and cleaned up', () => {
    const b = d.bind;
    expect(b.unexpectedError).toBeUndefined();
    expect(opts(b.entry)).toEqual(expect.arrayContaining(['ro', 'nosuid']));
    expect(b.read).toBe('hello');
    expect(b.write).toBe('EROFS');
    expect(b.file).toBe('127.0.0.1 x\n');
    expect(b.fileEntry).not.toBeNull();
    expect(b.after).toEqual([]);
    expect(b.leftover).toBe(false);
  });

  it('overlayfs: lower visible, writes land in the created upper directory, lower untouched', () => {
    const o = d.overlay;
    expect(o.unexpectedError).toBeUndefined();
    expect(o.entry.fstype).toBe('overlay');
    expect(o.a).toBe('from lower');
    expect(o.upper).toEqual(['b']);
    expect(o.upperB).toBe('written through');
    expect(o.lower).toEqual(['a']);
    expect(o.after).toEqual([]);
  });

  it('hugetlbfs: the 2M pool is raised to cover size before the mount (and restored by the fixture)', (ctx) => {
    const h = d.hugetlbfs;
    if (h.skipped) ctx.skip();
    expect(h.unexpectedError).toBeUndefined();
    expect(h.during).toBeGreaterThanOrEqual(h.before + 2);
    expect(h.entry.fstype).toBe('hugetlbfs');
    expect(sopts(h.entry)).toEqual(expect.arrayContaining(['pagesize=2M', 'size=4194304']));
    expect(h.after).toBeNull();
    expect(h.restored).toBe(true);
  });

  it.skipIf(!canLoop)('mmioblk: ext4 on a loop device from the devices stub, with fs_group; unmounted on release', () => {
    const e = d.ext4;
    expect(e.unexpectedError).toBeUndefined();
    const mp = `${d.root}/sandbox/storage/blk`;
    expect(e.added).toEqual([mp]);
    expect(e.requested).toEqual(['/dev/vdb']);
    expect(e.entry).toMatchObject({ fstype: 'ext4', source: loopDev });
    expect(opts(e.entry)).toEqual(expect.arrayContaining(['nodev', 'noatime']));
    expect(e.root.gid).toBe(4567);
    expect(e.root.mode & 0o2770).toBe(0o2770);
    expect(e.list).toMatchObject({ device: loopDev, state: 'mounted', source: '/dev/vdb' });
    expect(e.after).toBeNull();
  });

  it('all or nothing: a failing block mount undoes the tmpfs and the directory made before it', () => {
    const r = d.rollback;
    expect(r.unexpectedError).toBeUndefined();
    expect(r.error).not.toBeNull();
    expect(r.error.message).toContain('/dev/null');
    expect(r.error.message).toContain(`${d.root}/rb/blk`);
    expect(r.error.message).toContain('ext4');
    expect(r.error.message).toContain('ENOTBLK (15)');
    expect(r.mounted).toEqual([]);
    expect(r.leftover).toEqual([]);
    expect(r.list).toEqual([]);
  });

  it('confinement: a symlink out of the root is refused and nothing appears outside', () => {
    const c = d.confinement;
    expect(c.unexpectedError).toBeUndefined();
    expect(c.error.code).toBe(3);
    expect(c.error.message).toContain(`${d.root}/evil/x`);
    expect(c.outside).toEqual([]);
    expect(c.mountedOutside).toEqual([]);
  });

  it('refcounting: one mount for two owners, gone after the last release; shared kept until closeAll', () => {
    const r = d.refcount;
    expect(r.unexpectedError).toBeUndefined();
    expect(r.count).toBe(1);
    expect(r.afterA).toBe(true);
    expect(r.afterB).toBe(false);
    expect(r.sharedKept).toBe(true);
    expect(r.closed).toEqual([`${d.root}/sandbox/ephemeral/keep`]);
    expect(r.afterClose).toEqual([]);
  });
});
