import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { OsbuilderError } from '../../osbuilder/src/util/errors';
import { distroNames, findTemplatesDir, loadManifest, ManifestError, parseManifest } from '../../osbuilder/src/rootfs/manifest';
import { renderTemplate } from '../../osbuilder/src/rootfs/template';

const REPO_TEMPLATES = path.resolve(__dirname, '../../rootfs-templates');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-manifest-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A distro folder with these templates; returns its dir. */
function folder(name: string, templates: string[] = ['etc/hostname']): string {
  const dir = path.join(tmp, name);
  for (const t of templates) {
    fs.mkdirSync(path.dirname(path.join(dir, 'files', t)), { recursive: true });
    fs.writeFileSync(path.join(dir, 'files', t), '{{hostname}}\n');
  }
  return dir;
}

const good = (): Record<string, unknown> => ({
  description: 'test distro',
  osVersion: 'bookworm',
  arch: ['x86_64'],
  init: ['agent', 'systemd'],
  base: { kind: 'mmdebstrap', mirrors: ['http://deb.debian.org/debian'] },
  packages: ['crun'],
  files: [{ dest: '/etc/hostname', template: 'etc/hostname' }],
});

describe('distro manifests', () => {
  it('parses a manifest with its defaults', () => {
    const dir = folder('okdistro');
    const m = parseManifest(good(), 'okdistro', dir);
    expect(m.name).toBe('okdistro');
    expect(m.base).toEqual({ kind: 'mmdebstrap', mirrors: ['http://deb.debian.org/debian'], variant: 'minbase', components: ['main'], keyring: undefined, keyringHint: undefined, hooks: [] });
    expect(m.files).toEqual([{ dest: '/etc/hostname', template: 'etc/hostname', mode: 0o644, when: 'always' }]);
    expect(m.untested).toBe(false);
    expect(m.mayFail).toBe(false);
    expect(m.seccompPackages).toEqual([]);
    expect(m.cleanup).toEqual([]);
  });

  it('parses file modes, conditions and the other base kinds', () => {
    const dir = folder('kinds', ['a', 'b', 'etc/hostname']);
    const m = parseManifest(
      {
        ...good(),
        init: ['agent'],
        base: { kind: 'minimal', copy: ['crun'], applets: 'all' },
        files: [
          { dest: '/a', template: 'a', mode: '0755', when: 'agent-init' },
          { dest: '/b', template: 'b', mode: '600', when: 'systemd' },
        ],
      },
      'kinds',
      dir,
    );
    expect(m.base).toEqual({ kind: 'minimal', copy: ['crun'], seccompLibs: [], applets: 'all' });
    expect(m.files.map((f) => [f.mode, f.when])).toEqual([
      [0o755, 'agent-init'],
      [0o600, 'systemd'],
    ]);
    const c = parseManifest({ ...good(), base: { kind: 'command', tool: 'dnf', args: ['--installroot={{rootfs}}', 'install'] } }, 'kinds', dir);
    expect(c.base).toEqual({ kind: 'command', tool: 'dnf', toolHint: undefined, args: ['--installroot={{rootfs}}', 'install'] });
  });

  const bad: Array<[string, (m: Record<string, unknown>) => void, RegExp]> = [
    ['an unknown field', (m) => (m.pakages = []), /pakages: unknown field/],
    ['a missing description', (m) => delete m.description, /description: missing/],
    ['an unknown arch', (m) => (m.arch = ['x86']), /arch: unknown architecture "x86"/],
    ['an unknown init kind', (m) => (m.init = ['openrc']), /init: unknown init kind "openrc"/],
    ['no init kind', (m) => (m.init = []), /init: must name at least one/],
    ['an unknown base kind', (m) => (m.base = { kind: 'debootstrap' }), /base\.kind: unknown base kind/],
    ['no mirrors', (m) => (m.base = { kind: 'mmdebstrap', mirrors: [] }), /base\.mirrors: must name at least one/],
    ['systemd for minimal', (m) => (m.base = { kind: 'minimal', copy: [] }), /init: a minimal rootfs has no systemd/],
    ['a bad package name', (m) => (m.packages = ['crun; rm -rf /']), /packages: bad entry/],
    ['packages not a list', (m) => (m.packages = 'crun'), /packages: must be a list of strings/],
    ['a relative dest', (m) => (m.files = [{ dest: 'etc/x', template: 'etc/hostname' }]), /files\[0\]\.dest: must be an absolute path/],
    ['a dest with ..', (m) => (m.files = [{ dest: '/etc/../x', template: 'etc/hostname' }]), /files\[0\]\.dest/],
    ['a template outside files/', (m) => (m.files = [{ dest: '/x', template: '../manifest.json' }]), /files\[0\]\.template: must be a path inside files/],
    ['a missing template', (m) => (m.files = [{ dest: '/x', template: 'etc/nope' }]), /files\[0\]\.template: .*does not exist/],
    ['a bad mode', (m) => (m.files = [{ dest: '/x', template: 'etc/hostname', mode: 'rw' }]), /files\[0\]\.mode: must be an octal string/],
    ['a bad when', (m) => (m.files = [{ dest: '/x', template: 'etc/hostname', when: 'sometimes' }]), /files\[0\]\.when: must be one of/],
    ['a file listed twice', (m) => (m.files = [{ dest: '/x', template: 'etc/hostname' }, { dest: '/x', template: 'etc/hostname' }]), /\/x is listed twice/],
    ['a default version not matching its pattern', (m) => (m.osVersionPattern = '^[0-9]+$'), /osVersion: does not match/],
    ['a bad version pattern', (m) => (m.osVersionPattern = '(['), /osVersionPattern:/],
    ['a cleanup of /', (m) => (m.cleanup = ['/*']), /cleanup: bad path/],
    ['untested not a boolean', (m) => (m.untested = 'yes'), /untested: must be true or false/],
  ];
  for (const [what, mutate, re] of bad) {
    it(`rejects ${what}, naming the field`, () => {
      const m = good();
      mutate(m);
      const dir = folder('bad');
      expect(() => parseManifest(m, 'bad', dir)).toThrow(ManifestError);
      expect(() => parseManifest(m, 'bad', dir)).toThrow(re);
    });
  }

  it('rejects what is not a JSON object', () => {
    expect(() => parseManifest([], 'x', tmp)).toThrow(/must be a JSON object/);
    expect(() => parseManifest(null, 'x', tmp)).toThrow(/must be a JSON object/);
  });

  it('lists distro folders (those with a manifest.json), sorted', () => {
    const root = path.join(tmp, 'templates');
    for (const n of ['zeta', 'alpha', 'no-manifest']) fs.mkdirSync(path.join(root, n), { recursive: true });
    fs.writeFileSync(path.join(root, 'zeta', 'manifest.json'), '{}');
    fs.writeFileSync(path.join(root, 'alpha', 'manifest.json'), '{}');
    fs.writeFileSync(path.join(root, 'README'), 'x');
    expect(distroNames(root)).toEqual(['alpha', 'zeta']);
  });

  it('loadManifest: unknown distro is a usage error listing the distros; bad JSON names the file', () => {
    const root = path.join(tmp, 'templates2');
    fs.mkdirSync(path.join(root, 'broken'), { recursive: true });
    fs.writeFileSync(path.join(root, 'broken', 'manifest.json'), '{ nope');
    try {
      loadManifest(root, 'gentoo');
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(OsbuilderError);
      expect((err as OsbuilderError).exitCode).toBe(2);
      expect((err as OsbuilderError).hint).toMatch(/distros: broken/);
    }
    expect(() => loadManifest(root, '../etc')).toThrow(/unknown distro/);
    expect(() => loadManifest(root, 'broken')).toThrow(/broken\/manifest\.json: .*JSON/);
    expect(() => distroNames(path.join(tmp, 'nothing-here'))).toThrow(/does not exist/);
  });

  it('finds the repository templates', () => {
    expect(findTemplatesDir(__dirname)).toBe(REPO_TEMPLATES);
  });

  describe('the repository distros', () => {
    const names = distroNames(REPO_TEMPLATES);
    it('has debian, minimal, ubuntu, alpine and fedora; only debian and minimal are tested', () => {
      expect(names).toEqual(expect.arrayContaining(['alpine', 'debian', 'fedora', 'minimal', 'ubuntu']));
      const status = Object.fromEntries(names.map((n) => [n, loadManifest(REPO_TEMPLATES, n).untested]));
      expect(status).toMatchObject({ debian: false, minimal: false, ubuntu: true, alpine: true, fedora: true });
    });

    const view = {
      distro: 'x', description: 'd', osVersion: 'v', arch: 'x86_64', hostname: 'h', osbuilderVersion: '0', buildTime: 0,
      buildTimeUtc: '1970-01-01T00:00:00Z', packages: ['p'], extraPackages: [], initKind: 'agent', agentInit: true, systemd: false,
      seccomp: true, agent: { path: '/usr/bin/kata-agent', version: '1', commit: 'c' },
    };
    for (const n of names) {
      it(`${n}: the manifest is valid and every template renders (strict)`, () => {
        const m = loadManifest(REPO_TEMPLATES, n);
        expect(m.files.map((f) => f.dest)).toEqual(expect.arrayContaining(['/etc/hostname', '/etc/resolv.conf', '/var/lib/osbuilder/osbuilder.yaml']));
        if (m.init.includes('systemd')) {
          expect(m.files.filter((f) => f.when === 'systemd').map((f) => path.basename(f.dest)).sort()).toEqual(['kata-agent.service', 'kata-containers.target']);
        }
        for (const f of m.files) renderTemplate(fs.readFileSync(path.join(m.dir, 'files', f.template), 'utf8'), view, { name: f.template });
      });
    }

    it('debian fetches bookworm minbase from deb.debian.org with crun', () => {
      const m = loadManifest(REPO_TEMPLATES, 'debian');
      expect(m.osVersion).toBe('bookworm');
      expect(m.base).toMatchObject({ kind: 'mmdebstrap', variant: 'minbase' });
      expect(m.packages).toContain('crun');
      expect(m.seccompPackages).toContain('libseccomp2');
    });

    it('minimal only boots with the agent as init and copies crun and busybox', () => {
      const m = loadManifest(REPO_TEMPLATES, 'minimal');
      expect(m.init).toEqual(['agent']);
      expect(m.base).toMatchObject({ kind: 'minimal', copy: ['crun', 'busybox'] });
    });
  });
});
