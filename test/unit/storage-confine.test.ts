// Mount-point confinement, on a real temp directory (node:fs) and, for races,
// on the in-memory fake.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Code, RpcError } from '../../agent/src/rpc/status';
import { checkMountPoint, confine, realTarget, removeCreated } from '../../agent/src/storage/confine';
import { realStorageFs } from '../../agent/src/storage/realdeps';
import { FakeFs } from './storage-helpers';

const temps: string[] = [];
afterEach(() => {
  for (const d of temps.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

function tmp(): string {
  const d = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'gk-confine-')));
  temps.push(d);
  return d;
}

function rpcErr(f: () => unknown): RpcError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(RpcError);
    return e as RpcError;
  }
  throw new Error('expected an RpcError');
}

describe('checkMountPoint (lexical)', () => {
  const root = '/run/kata-containers/';
  it('normalises paths under the root', () => {
    expect(checkMountPoint('/run/kata-containers/a//b/./c/', root)).toBe('/run/kata-containers/a/b/c');
    expect(checkMountPoint('/run//kata-containers/x', '/run/kata-containers')).toBe('/run/kata-containers/x');
  });

  it.each([
    ['', 'is empty'],
    ['run/kata-containers/a', 'not an absolute path'],
    ['/run/kata-containers/a/../../../etc', 'contains ".."'],
    ['/run/kata-containers/..', 'contains ".."'],
    ['/run/kata-containers', 'is not under /run/kata-containers/'],
    ['/run/kata-containers/.', 'is not under /run/kata-containers/'],
    ['/run/kata-containers-evil/a', 'is not under /run/kata-containers/'],
    ['/etc', 'is not under /run/kata-containers/'],
  ])('rejects %j', (p, msg) => {
    const e = rpcErr(() => checkMountPoint(p, root));
    expect(e.code).toBe(Code.INVALID_ARGUMENT);
    expect(e.message).toContain(msg);
    if (p) expect(e.message).toContain(JSON.stringify(p));
  });
});

describe('confine (real directories)', () => {
  it('creates missing directories one by one and reports them', () => {
    const root = path.join(tmp(), 'root');
    fs.mkdirSync(root);
    fs.mkdirSync(path.join(root, 'a'));
    const c = confine(realStorageFs, root, `${root}/a/b/c`, 'dir');
    expect(c.path).toBe(`${root}/a/b/c`);
    expect(c.created).toEqual([`${root}/a/b`, `${root}/a/b/c`]);
    expect(fs.statSync(c.path).isDirectory()).toBe(true);
    // again: nothing new
    expect(confine(realStorageFs, root, `${root}/a/b/c`, 'dir').created).toEqual([]);
    // removeCreated takes them away again, innermost first
    expect(removeCreated(realStorageFs, c.created)).toEqual([]);
    expect(fs.existsSync(`${root}/a/b`)).toBe(false);
    expect(fs.existsSync(`${root}/a`)).toBe(true);
  });

  it('creates the root itself when missing', () => {
    const root = path.join(tmp(), 'x', 'y');
    const c = confine(realStorageFs, root, `${root}/m`, 'dir');
    expect(fs.statSync(`${root}/m`).isDirectory()).toBe(true);
    expect(c.created).toEqual([`${root}/m`]);
  });

  it('refuses a symlink that leads out of the root, creating nothing outside', () => {
    const t = tmp();
    const root = path.join(t, 'root');
    const outside = path.join(t, 'outside');
    fs.mkdirSync(root);
    fs.mkdirSync(outside);
    fs.symlinkSync(outside, path.join(root, 'link'));
    const e = rpcErr(() => confine(realStorageFs, root, `${root}/link/sub/mp`, 'dir'));
    expect(e.code).toBe(Code.INVALID_ARGUMENT);
    expect(e.message).toContain(`${root}/link/sub/mp`);
    expect(e.message).toContain('symbolic link');
    expect(fs.readdirSync(outside)).toEqual([]);
    // a relative symlink with .. is refused the same way
    fs.symlinkSync('../outside', path.join(root, 'rel'));
    expect(rpcErr(() => confine(realStorageFs, root, `${root}/rel`, 'dir')).code).toBe(Code.INVALID_ARGUMENT);
  });

  it('refuses symlinks even when they point inside the root, and as the last component', () => {
    const root = path.join(tmp(), 'root');
    fs.mkdirSync(path.join(root, 'real'), { recursive: true });
    fs.symlinkSync(path.join(root, 'real'), path.join(root, 'alias'));
    expect(rpcErr(() => confine(realStorageFs, root, `${root}/alias/x`, 'dir')).message).toContain(`${root}/alias`);
    expect(rpcErr(() => confine(realStorageFs, root, `${root}/alias`, 'dir')).code).toBe(Code.INVALID_ARGUMENT);
    expect(fs.existsSync(`${root}/real/x`)).toBe(false);
  });

  it('refuses a file where a directory is needed, and the reverse', () => {
    const root = path.join(tmp(), 'root');
    fs.mkdirSync(root);
    fs.writeFileSync(path.join(root, 'f'), '');
    expect(rpcErr(() => confine(realStorageFs, root, `${root}/f/x`, 'dir')).message).toContain('is not a directory');
    expect(rpcErr(() => confine(realStorageFs, root, `${root}/f`, 'dir')).message).toContain('is not a directory');
    fs.mkdirSync(path.join(root, 'd'));
    expect(rpcErr(() => confine(realStorageFs, root, `${root}/d`, 'file')).message).toContain('the source is a file');
  });

  it('creates an empty file for a file target', () => {
    const root = path.join(tmp(), 'root');
    fs.mkdirSync(root);
    const c = confine(realStorageFs, root, `${root}/d/file`, 'file');
    expect(c.created).toEqual([`${root}/d`, `${root}/d/file`]);
    expect(fs.statSync(`${root}/d/file`).isFile()).toBe(true);
    removeCreated(realStorageFs, c.created);
    expect(fs.existsSync(`${root}/d`)).toBe(false);
  });

  it('works through a root that is itself reached by a symlink (configuration), giving real paths', () => {
    const t = tmp();
    fs.mkdirSync(path.join(t, 'real-root'));
    fs.symlinkSync(path.join(t, 'real-root'), path.join(t, 'root-link'));
    const c = confine(realStorageFs, path.join(t, 'root-link'), `${t}/root-link/m`, 'dir');
    expect(c.path).toBe(`${t}/real-root/m`);
    expect(realTarget(realStorageFs, path.join(t, 'root-link'), `${t}/root-link/m`)).toBe(`${t}/real-root/m`);
  });

  it('removes what it created when it fails half-way', () => {
    const fake = new FakeFs().mkdirp('/r');
    fake.failures.set('mkdir /r/a/b', 'EACCES');
    const e = rpcErr(() => confine(fake, '/r', '/r/a/b/c', 'dir'));
    expect(e.code).toBe(Code.PERMISSION_DENIED);
    expect(e.message).toContain('/r/a/b');
    expect(fake.node('/r/a')).toBeUndefined();
  });
});

describe('confine (races, fake fs)', () => {
  it('re-checks a component after mkdir: a symlink planted in the race is refused', () => {
    const fake = new FakeFs().mkdirp('/r').mkdirp('/outside');
    fake.beforeMkdir = (p) => {
      if (p === '/r/a') fake.symlink('/outside', '/r/a');
    };
    const e = rpcErr(() => confine(fake, '/r', '/r/a/b', 'dir'));
    expect(e.message).toContain('symbolic link /r/a');
    expect(fake.node('/outside/b')).toBeUndefined();
  });

  it('accepts a directory someone else created in the race (EEXIST)', () => {
    const fake = new FakeFs().mkdirp('/r');
    fake.beforeMkdir = (p) => {
      if (p === '/r/a') fake.mkdirp('/r/a');
    };
    const c = confine(fake, '/r', '/r/a/b', 'dir');
    expect(c.created).toEqual(['/r/a/b']);
  });
});
