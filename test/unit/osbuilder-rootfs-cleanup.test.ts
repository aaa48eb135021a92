import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cleanupRootfs, DEFAULT_CLEANUP } from '../../osbuilder/src/rootfs/cleanup';
import { clampMtimes, symlinkInRoot, treeSize, walk, writeFileInRoot } from '../../osbuilder/src/rootfs/fsroot';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-cleanup-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function put(root: string, p: string, bytes = 10): void {
  fs.mkdirSync(path.dirname(path.join(root, p)), { recursive: true });
  fs.writeFileSync(path.join(root, p), 'x'.repeat(bytes));
}
const exists = (p: string): boolean => {
  try {
    fs.lstatSync(p);
    return true;
  } catch {
    return false;
  }
};

describe('rootfs cleanup', () => {
  it('removes docs, man pages, locales, apt lists and caches, logs and temporary files; keeps the rest', () => {
    const r = path.join(tmp, 'tree');
    const gone = [
      'usr/share/doc/crun/changelog.gz', 'usr/share/man/man1/crun.1.gz', 'usr/share/info/dir', 'usr/share/locale/de/LC_MESSAGES/x.mo',
      'var/lib/apt/lists/deb.debian.org_dists_bookworm_InRelease', 'var/cache/apt/pkgcache.bin', 'var/cache/debconf/config.dat-old',
      'var/lib/dpkg/status-old', 'var/log/apt/history.log', 'var/log/dpkg.log', 'tmp/scratch', 'var/tmp/x', 'var/cache/ldconfig/aux-cache',
    ];
    const kept = ['var/cache/debconf/config.dat', 'var/lib/dpkg/status', 'usr/bin/crun', 'usr/share/zoneinfo/UTC', 'etc/hostname'];
    for (const p of [...gone, ...kept]) put(r, p, 100);
    const res = cleanupRootfs(r);
    for (const p of gone) expect(exists(path.join(r, p)), p).toBe(false);
    for (const p of kept) expect(exists(path.join(r, p)), p).toBe(true);
    // The directories stay (emptied).
    for (const d of ['usr/share/doc', 'var/log', 'tmp', 'var/lib/apt/lists']) expect(fs.readdirSync(path.join(r, d))).toEqual([]);
    expect(res.bytes).toBe(gone.length * 100);
    expect(treeSize(r).bytes).toBe(kept.length * 100);
  });

  it('stays inside the tree: links are resolved in it, and a linked directory is not emptied through its link', () => {
    const r = path.join(tmp, 'tree-links');
    const outside = path.join(tmp, 'outside');
    put(outside, 'precious');
    put(r, 'usr/bin/crun');
    put(r, 'run/lock/x');
    fs.mkdirSync(path.join(r, 'usr/share'), { recursive: true });
    fs.symlinkSync('/', path.join(r, 'usr/share/doc')); // would be the whole tree
    fs.symlinkSync(outside, path.join(r, 'usr/share/man')); // an absolute host path: inside the tree, it does not exist
    fs.mkdirSync(path.join(r, 'var'), { recursive: true });
    fs.symlinkSync('/run', path.join(r, 'var/run'));
    cleanupRootfs(r, [...DEFAULT_CLEANUP, '/var/run/lock/*']);
    expect(exists(path.join(outside, 'precious'))).toBe(true);
    expect(exists(path.join(r, 'usr/bin/crun'))).toBe(true);
    expect(exists(path.join(r, 'run/lock/x'))).toBe(false); // through the /var/run link, inside the tree
  });
});

describe('tree helpers', () => {
  it('clampMtimes: later mtimes become SOURCE_DATE_EPOCH, earlier ones stay, links are not followed', () => {
    const r = path.join(tmp, 'clamp');
    const target = path.join(tmp, 'link-target');
    fs.writeFileSync(target, 'x');
    put(r, 'new');
    put(r, 'old');
    fs.utimesSync(path.join(r, 'old'), 1000, 1000);
    fs.symlinkSync(target, path.join(r, 'link'));
    const before = fs.statSync(target).mtimeMs;
    clampMtimes(r, 5000);
    expect(fs.statSync(path.join(r, 'new')).mtimeMs).toBe(5_000_000);
    expect(fs.statSync(path.join(r, 'old')).mtimeMs).toBe(1_000_000);
    expect(fs.lstatSync(path.join(r, 'link')).mtimeMs).toBe(5_000_000);
    expect(fs.statSync(r).mtimeMs).toBe(5_000_000);
    expect(fs.statSync(target).mtimeMs).toBe(before);
  });

  it('writeFileInRoot replaces a link instead of writing through it; symlinkInRoot creates parents in the tree', () => {
    const r = path.join(tmp, 'write');
    const outside = path.join(tmp, 'resolv-outside');
    fs.writeFileSync(outside, 'nameserver 1.1.1.1\n');
    fs.mkdirSync(path.join(r, 'etc'), { recursive: true });
    fs.symlinkSync(outside, path.join(r, 'etc/resolv.conf'));
    writeFileInRoot(r, '/etc/resolv.conf', '', 0o644);
    expect(fs.lstatSync(path.join(r, 'etc/resolv.conf')).isFile()).toBe(true);
    expect(fs.readFileSync(outside, 'utf8')).toBe('nameserver 1.1.1.1\n');
    fs.symlinkSync('usr/sbin', path.join(r, 'sbin'));
    symlinkInRoot(r, '/usr/bin/kata-agent', '/sbin/init');
    expect(fs.readlinkSync(path.join(r, 'usr/sbin/init'))).toBe('/usr/bin/kata-agent');
    expect([...walk(r)].map((e) => path.relative(r, e.path))).toEqual(['etc', 'etc/resolv.conf', 'sbin', 'usr', 'usr/sbin', 'usr/sbin/init']);
  });
});
