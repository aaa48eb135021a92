// writeBundle / removeBundle under an injected bundle root (a temp dir).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Code } from '../../agent/src/rpc/status';
import { BUNDLE_ROOT, confineBundleDir, removeBundle, writeBundle } from '../../agent/src/runtime/bundle';

let tmp = '';
let root = '';
const noMounts = () => [] as string[];

beforeEach(() => {
  tmp = fs.realpathSync(fs.mkdtempSync(path.join(os.tmpdir(), 'gk-bundle-')));
  root = path.join(tmp, 'run');
  fs.mkdirSync(root);
});

afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('writeBundle', () => {
  it('creates the directory 0700 and config.json 0600 from an object or a string', async () => {
    const dir = path.join(root, 'c1');
    const file = await writeBundle(dir, { ociVersion: '1.0.2', process: { args: ['sh'] } }, { root });
    expect(file).toBe(path.join(dir, 'config.json'));
    expect(fs.statSync(dir).mode & 0o7777).toBe(0o700);
    expect(fs.statSync(file).mode & 0o7777).toBe(0o600);
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toEqual({ ociVersion: '1.0.2', process: { args: ['sh'] } });
    // rewrite with text; an existing looser directory is tightened
    fs.chmodSync(dir, 0o755);
    await writeBundle(dir, '{"ociVersion":"1.1.0"}', { root });
    expect(fs.readFileSync(file, 'utf8')).toBe('{"ociVersion":"1.1.0"}');
    expect(fs.statSync(dir).mode & 0o7777).toBe(0o700);
    expect(fs.readdirSync(dir)).toEqual(['config.json']); // no temp file left
  });

  it('creates missing parents below the root', async () => {
    await writeBundle(path.join(root, 'a', 'b', 'c'), {}, { root });
    expect(fs.existsSync(path.join(root, 'a', 'b', 'c', 'config.json'))).toBe(true);
  });

  it('refuses paths outside the root, the root itself, and escapes through .. or symlinks', async () => {
    fs.mkdirSync(path.join(tmp, 'elsewhere'));
    fs.symlinkSync(path.join(tmp, 'elsewhere'), path.join(root, 'link'));
    const bad = [
      path.join(tmp, 'outside'),
      root,
      `${root}/`,
      `${root}/../run2/x`,
      `${root}x/c1`,
      path.join(root, 'link', 'c1'),
      path.join(root, 'link'),
      '',
      'relative/c1',
    ];
    for (const dir of bad) {
      await expect(writeBundle(dir, {}, { root }), dir).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT });
    }
    expect(fs.readdirSync(path.join(tmp, 'elsewhere'))).toEqual([]);
    expect(fs.existsSync(path.join(tmp, 'outside'))).toBe(false);
  });

  it('defaults to /run/kata-containers as the root', () => {
    expect(BUNDLE_ROOT).toBe('/run/kata-containers');
    expect(() => confineBundleDir('/tmp/x')).toThrow(/not below \/run\/kata-containers/);
    expect(() => confineBundleDir('/run/kata-containers/../x')).toThrow();
    expect(confineBundleDir('/run/kata-containers/abc')).toMatch(/\/abc$/);
  });
});

describe('removeBundle', () => {
  it('removes the whole tree; a missing bundle is fine', async () => {
    const dir = path.join(root, 'c1');
    await writeBundle(dir, {}, { root });
    fs.mkdirSync(path.join(dir, 'rootfs', 'bin'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'rootfs', 'bin', 'x'), 'x');
    await removeBundle(dir, { root, mountPoints: noMounts });
    expect(fs.existsSync(dir)).toBe(false);
    await removeBundle(dir, { root, mountPoints: noMounts });
  });

  it('does not follow symlinks out of the bundle', async () => {
    const dir = path.join(root, 'c1');
    await writeBundle(dir, {}, { root });
    fs.mkdirSync(path.join(tmp, 'precious'));
    fs.writeFileSync(path.join(tmp, 'precious', 'f'), 'keep');
    fs.symlinkSync(path.join(tmp, 'precious'), path.join(dir, 'rootfs'));
    await removeBundle(dir, { root, mountPoints: noMounts });
    expect(fs.existsSync(dir)).toBe(false);
    expect(fs.readFileSync(path.join(tmp, 'precious', 'f'), 'utf8')).toBe('keep');
  });

  it('refuses while something is mounted in the tree, and leaves it intact', async () => {
    const dir = path.join(root, 'c1');
    await writeBundle(dir, {}, { root });
    fs.mkdirSync(path.join(dir, 'rootfs'));
    fs.writeFileSync(path.join(dir, 'rootfs', 'image-file'), 'x');
    const mounts = () => ['/', '/proc', path.join(root, 'c10'), path.join(dir, 'rootfs')];
    await expect(removeBundle(dir, { root, mountPoints: mounts })).rejects.toMatchObject({
      code: Code.FAILED_PRECONDITION,
      message: expect.stringContaining(`still mounted: ${path.join(dir, 'rootfs')}`),
    });
    expect(fs.existsSync(path.join(dir, 'rootfs', 'image-file'))).toBe(true);
    // a sibling whose name merely starts with the same characters does not count
    await removeBundle(dir, { root, mountPoints: () => ['/', path.join(root, 'c10')] });
    expect(fs.existsSync(dir)).toBe(false);
  });

  it('uses /proc/self/mountinfo by default', async () => {
    const dir = path.join(root, 'c1');
    await writeBundle(dir, {}, { root });
    await removeBundle(dir, { root });
    expect(fs.existsSync(dir)).toBe(false);
  });

  it('refuses paths outside the root and non-directories', async () => {
    fs.mkdirSync(path.join(tmp, 'outside'));
    await expect(removeBundle(path.join(tmp, 'outside'), { root })).rejects.toMatchObject({ code: Code.INVALID_ARGUMENT });
    expect(fs.existsSync(path.join(tmp, 'outside'))).toBe(true);
    fs.writeFileSync(path.join(root, 'file'), '');
    await expect(removeBundle(path.join(root, 'file'), { root, mountPoints: noMounts })).rejects.toMatchObject({ code: Code.FAILED_PRECONDITION });
  });
});
