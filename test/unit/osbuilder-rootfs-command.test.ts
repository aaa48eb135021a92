// osbuilder rootfs / list-distros / new-distro through runCli, with a fake agent packer (a static
// busybox as the agent), a fake mmdebstrap (a skeleton tree with crun), and no chroot runs (the
// integration test runs them).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../osbuilder/src/cli';
import type { Command } from '../../osbuilder/src/commands/types';
import { EXIT, failedError, missingError } from '../../osbuilder/src/util/errors';
import { Progress } from '../../osbuilder/src/util/progress';
import { TOOL_PACKAGES, type RunResult } from '../../osbuilder/src/util/tools';
import type { PackAgent } from '../../osbuilder/src/rootfs/agent';
import { buildRootfs, makeListDistrosCommand, makeNewDistroCommand, makeRootfsCommand, type RootfsDeps } from '../../osbuilder/src/rootfs/command';
import { makeSkeleton } from '../../osbuilder/src/rootfs/distro-minimal';
import { LibResolver } from '../../osbuilder/src/rootfs/elfdeps';
import { completeLibraries } from '../../osbuilder/src/rootfs/libs';
import { resolveInRoot, walk } from '../../osbuilder/src/rootfs/fsroot';
import { loadManifest } from '../../osbuilder/src/rootfs/manifest';

const REPO = path.resolve(__dirname, '../..');
const EPOCH = 1_700_000_000;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-rootfs-cmd-'));
const templates = path.join(tmp, 'templates');
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
beforeAll(() => fs.cpSync(path.join(REPO, 'rootfs-templates'), templates, { recursive: true }));

const packCalls: Array<{ outDir: string; repoRoot: string }> = [];
const fakePacker: PackAgent = async ({ outDir, repoRoot }) => {
  packCalls.push({ outDir, repoRoot });
  expect(fs.statSync(outDir).isDirectory()).toBe(true);
  return { files: [{ src: '/bin/busybox', dest: '/usr/bin/kata-agent', mode: 0o755 }], version: '9.9.9', commit: 'c0ffee0000000000000000000000000000000000' };
};

interface MmdebCall {
  args: string[];
  env: NodeJS.ProcessEnv;
}
const mmdebCalls: MmdebCall[] = [];
/** A fake mmdebstrap: logs like the real one and leaves a skeleton with crun (and systemd when asked). */
const fakeMmdebstrap = async (file: string, argv: string[], o: { env?: NodeJS.ProcessEnv; onStderr?: (s: string) => void } = {}): Promise<RunResult> => {
  // As root, mmdebstrap runs in a private mount namespace: unshare --mount ... -- mmdebstrap ARGS.
  const wrapped = process.getuid?.() === 0;
  expect(wrapped ? path.basename(file) : file).toBe(wrapped ? 'unshare' : '/fake/mmdebstrap');
  const args = wrapped ? argv.slice(argv.indexOf('--') + 2) : argv;
  if (wrapped) expect(argv.slice(0, argv.indexOf('--') + 2)).toEqual(['--mount', '--propagation', 'private', '--', '/fake/mmdebstrap']);
  mmdebCalls.push({ args, env: o.env ?? {} });
  o.onStderr?.('I: running apt-get update...\nI: downloading packages with apt...\nI: extracting ar');
  o.onStderr?.('chives...\n');
  const suiteAt = args.findIndex((a) => !a.startsWith('--'));
  const target = args[suiteAt + 1]!;
  makeSkeleton(target, true);
  fs.copyFileSync('/usr/bin/crun', path.join(target, 'usr/bin/crun'));
  fs.chmodSync(path.join(target, 'usr/bin/crun'), 0o755);
  completeLibraries(target, ['/usr/bin/crun']); // what crun's package dependencies would bring
  fs.mkdirSync(path.join(target, 'usr/share/doc/crun'), { recursive: true });
  fs.writeFileSync(path.join(target, 'usr/share/doc/crun/changelog'), 'x'.repeat(1000));
  if (args.some((a) => a.startsWith('--include=') && a.includes('systemd-sysv'))) {
    fs.mkdirSync(path.join(target, 'usr/lib/systemd'), { recursive: true });
    fs.copyFileSync('/bin/busybox', path.join(target, 'usr/lib/systemd/systemd'));
    fs.symlinkSync('/lib/systemd/systemd', path.join(target, 'usr/sbin/init'));
    fs.writeFileSync(path.join(target, 'etc/machine-id'), 'random-machine-id-0123456789abcdef\n');
  }
  return { code: 0, stdout: '', stderr: '' };
};

const deps: RootfsDeps = {
  packAgent: fakePacker,
  templatesDir: templates,
  repoRoot: REPO,
  chroot: false,
  run: fakeMmdebstrap as never,
  requireTool: (name) => `/fake/${name}`,
};

function commands(d: RootfsDeps = deps): Command[] {
  return [makeRootfsCommand(d), makeListDistrosCommand(d), makeNewDistroCommand(d)];
}

async function cli(argv: string[], o: { env?: NodeJS.ProcessEnv; deps?: RootfsDeps } = {}): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCli(argv, commands(o.deps), {
    stdout: (s) => void (out += s),
    stderr: (s) => void (err += s),
    env: { PATH: process.env.PATH, SOURCE_DATE_EPOCH: String(EPOCH), ...o.env },
  });
  return { code, out, err };
}

const lstat = (p: string): fs.Stats | undefined => {
  try {
    return fs.lstatSync(p);
  } catch {
    return undefined;
  }
};
const yaml = (root: string): string => fs.readFileSync(path.join(root, 'var/lib/osbuilder/osbuilder.yaml'), 'utf8');
const leftovers = (dir: string): string[] => fs.readdirSync(dir).filter((n) => n.includes('.tmp-'));

describe('osbuilder rootfs minimal', () => {
  const out = path.join(tmp, 'rootfs-minimal');
  let res: { code: number; out: string; err: string };
  beforeAll(async () => {
    res = await cli(['rootfs', 'minimal', '--output', out, '--extra-pkgs', 'true']);
  });

  it('builds, saying where and how big', () => {
    expect(res.err).not.toMatch(/osbuilder rootfs: /);
    expect(res.code).toBe(EXIT.OK);
    expect(res.out).toMatch(new RegExp(`^${out}: minimal host, init the agent, [\\d.]+ MiB in \\d+ entries\\n$`));
    expect(res.err).toMatch(/\[7\/7\] finish: done/);
    expect(leftovers(tmp)).toEqual([]);
    expect(packCalls.at(-1)!.repoRoot).toBe(REPO);
    expect(fs.existsSync(packCalls.at(-1)!.outDir)).toBe(false); // the packer's scratch dir is removed
  });

  it('makes the agent init: /sbin/init and /init lead to /usr/bin/kata-agent', () => {
    expect(fs.readlinkSync(path.join(out, 'init'))).toBe('/usr/bin/kata-agent');
    expect(resolveInRoot(out, '/sbin/init')).toBe(path.join(out, 'usr/bin/kata-agent'));
    expect(fs.statSync(path.join(out, 'usr/bin/kata-agent')).mode & 0o777).toBe(0o755);
  });

  it('has the skeleton: merged /usr, mount points, a sticky /tmp', () => {
    for (const [l, t] of [['bin', 'usr/bin'], ['sbin', 'usr/sbin'], ['lib', 'usr/lib'], ['lib64', 'usr/lib64']]) expect(fs.readlinkSync(path.join(out, l!))).toBe(t);
    for (const d of ['proc', 'sys', 'dev', 'run', 'tmp', 'etc', 'root']) expect(lstat(path.join(out, d))?.isDirectory()).toBe(true);
    expect(fs.statSync(path.join(out, 'tmp')).mode & 0o7777).toBe(0o1777);
  });

  it('copies crun, busybox and the extra executables, links the applets (not init)', () => {
    for (const t of ['crun', 'busybox', 'true']) expect(lstat(path.join(out, 'usr/bin', t))?.isFile()).toBe(true);
    expect(fs.readlinkSync(resolveInRoot(out, '/bin/sh', { followLast: false }))).toBe('/usr/bin/busybox');
    expect(fs.readlinkSync(resolveInRoot(out, '/bin/ls', { followLast: false }))).toBe('/usr/bin/busybox');
    // /sbin/init is the agent, not busybox's init applet.
    expect(fs.readlinkSync(resolveInRoot(out, '/sbin/init', { followLast: false }))).toBe('/usr/bin/kata-agent');
  });

  it('has every library crun and the copied tools need, resolvable inside the tree', () => {
    const c = new LibResolver({ root: out }).closure(['/usr/bin/crun', '/usr/bin/true', '/usr/bin/busybox']);
    expect(c.missing).toEqual([]);
    expect(c.objects.map((o) => o.name)).toEqual(expect.arrayContaining(['interp', 'libc.so.6', 'libseccomp.so.2']));
    for (const o of c.objects) expect(o.hostPath.startsWith(out)).toBe(true);
  });

  it('writes the templated files: hostname, an empty resolv.conf, passwd, osbuilder.yaml', () => {
    expect(fs.readFileSync(path.join(out, 'etc/hostname'), 'utf8')).toBe('guestkit\n');
    expect(fs.readFileSync(path.join(out, 'etc/resolv.conf'), 'utf8')).toBe('');
    expect(fs.readFileSync(path.join(out, 'etc/passwd'), 'utf8')).toMatch(/^root:x:0:0:/);
    const y = yaml(out);
    expect(y).toContain(`build-time: ${EPOCH}\n`);
    expect(y).toContain('build-time-utc: "2023-11-14T22:13:20Z"\n');
    expect(y).toMatch(/distro:\n  name: minimal\n  version: "host"\n  packages:\n    - "crun"\n    - "busybox"\n  extra-packages:\n    - "true"\n/);
    expect(y).toMatch(/agent:\n  path: \/usr\/bin\/kata-agent\n  version: "9.9.9"\n  commit: "c0ffee0{34}"\n  init: agent\n  agent-is-init-daemon: "yes"\n/);
    expect(y).toContain('seccomp: true\n');
    expect(lstat(path.join(out, 'usr/lib/systemd/system/kata-agent.service'))).toBeUndefined();
  });

  it('clamps every mtime to SOURCE_DATE_EPOCH', () => {
    const late = [...walk(out)].filter((e) => e.st.mtimeMs / 1000 > EPOCH).map((e) => e.path);
    expect(late).toEqual([]);
    expect(fs.statSync(out).mtimeMs / 1000).toBeLessThanOrEqual(EPOCH);
  });

  it('replaces a rootfs it built before (and nothing else)', async () => {
    fs.writeFileSync(path.join(out, 'stale-file'), 'x');
    const again = await cli(['rootfs', 'minimal', '-o', out]);
    expect(again.code).toBe(EXIT.OK);
    expect(lstat(path.join(out, 'stale-file'))).toBeUndefined();
    expect(yaml(out)).toContain('extra-packages: []\n');
  });
});

describe('osbuilder rootfs debian (fake mmdebstrap)', () => {
  it('runs mmdebstrap with minbase, crun, seccomp and EXTRA_PKGS for OS_VERSION, then installs the agent as init', async () => {
    const out = path.join(tmp, 'rootfs-debian');
    const r = await cli(['rootfs', 'debian', '-o', out], { env: { OS_VERSION: 'trixie', EXTRA_PKGS: 'iproute2 kmod' } });
    expect(r.err).not.toMatch(/osbuilder rootfs: /);
    expect(r.code).toBe(EXIT.OK);
    const call = mmdebCalls.at(-1)!;
    expect(call.args).toEqual(expect.arrayContaining(['--variant=minbase', '--include=crun,libseccomp2,iproute2,kmod', '--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr']));
    expect(call.args).toContain('--dpkgopt=path-exclude=/usr/share/doc/*');
    const suiteAt = call.args.indexOf('trixie');
    expect(call.args.slice(suiteAt + 2)).toEqual(['deb http://deb.debian.org/debian trixie main', 'deb http://deb.debian.org/debian-security trixie-security main']);
    expect(call.env.SOURCE_DATE_EPOCH).toBe(String(EPOCH));
    expect(resolveInRoot(out, '/sbin/init')).toBe(path.join(out, 'usr/bin/kata-agent'));
    expect(fs.readlinkSync(path.join(out, 'init'))).toBe('/usr/bin/kata-agent');
    expect(new LibResolver({ root: out }).closure(['/usr/bin/crun']).missing).toEqual([]);
    // Cleanup removed the docs.
    expect(fs.readdirSync(path.join(out, 'usr/share/doc'))).toEqual([]);
    expect(yaml(out)).toMatch(/name: debian\n  version: "trixie"\n  packages:\n    - "crun"\n    - "libseccomp2"\n  extra-packages:\n    - "iproute2"\n    - "kmod"\n/);
  });

  it('AGENT_INIT=no: systemd packages, the units, kata-containers.target as default, an empty machine-id', async () => {
    const out = path.join(tmp, 'rootfs-debian-systemd');
    const r = await cli(['rootfs', 'debian', '-o', out, '--seccomp', 'no'], { env: { AGENT_INIT: 'no' } });
    expect(r.err).not.toMatch(/osbuilder rootfs: /);
    expect(r.code).toBe(EXIT.OK);
    expect(mmdebCalls.at(-1)!.args).toContain('--include=crun,systemd,systemd-sysv');
    const unit = fs.readFileSync(path.join(out, 'usr/lib/systemd/system/kata-agent.service'), 'utf8');
    expect(unit).toContain('ExecStart=/usr/bin/kata-agent\n');
    expect(unit).toContain('Description=Kata Containers agent (guestkit 9.9.9)');
    expect(fs.readFileSync(path.join(out, 'usr/lib/systemd/system/kata-containers.target'), 'utf8')).toContain('Requires=kata-agent.service');
    expect(resolveInRoot(out, '/etc/systemd/system/default.target')).toBe(path.join(out, 'usr/lib/systemd/system/kata-containers.target'));
    expect(fs.readlinkSync(path.join(out, 'init'))).toBe('/sbin/init');
    expect(resolveInRoot(out, '/sbin/init')).toBe(path.join(out, 'usr/lib/systemd/systemd'));
    expect(fs.readFileSync(path.join(out, 'etc/machine-id'), 'utf8')).toBe('');
    expect(yaml(out)).toContain('  init: systemd\n  agent-is-init-daemon: "no"\n');
    expect(yaml(out)).toContain('seccomp: false\n');
  });

  it('turns mmdebstrap\'s lines into progress updates', async () => {
    let written = '';
    let t = 0;
    const progress = new Progress(7, { out: { write: (s: string) => ((written += s), true), isTTY: true } as never, now: () => (t += 1000) });
    await buildRootfs(
      { distro: 'debian', output: path.join(tmp, 'rootfs-progress'), templatesDir: templates, agentInit: true, seccomp: true, extra: [], env: { SOURCE_DATE_EPOCH: '0' } },
      deps,
      progress,
    );
    expect(written).toContain('debian bookworm base with mmdebstrap (minbase + crun libseccomp2): running apt-get update...');
    expect(written).toContain(': downloading packages with apt...');
    expect(written).toContain(': extracting archives...'); // a line split across two chunks
  });

  it('the agent\'s runtime gets the libraries the base lacks from this machine; a script agent\'s interpreter is checked', async () => {
    const script = path.join(tmp, 'agent-script');
    fs.writeFileSync(script, '#!/usr/lib/guestkit/node\nconsole.log("kata-agent")\n');
    const nodePacker: PackAgent = async () => ({
      files: [
        { src: process.execPath, dest: '/usr/lib/guestkit/node', mode: 0o755 },
        { src: script, dest: '/usr/bin/kata-agent', mode: 0o755 },
      ],
      version: '1.0.0',
      commit: 'abc',
    });
    const progress = new Progress(7, { quiet: true });
    const o = { distro: 'debian', output: path.join(tmp, 'rootfs-node'), templatesDir: templates, agentInit: true, seccomp: true, extra: [], env: {} };
    const r = await buildRootfs(o, { ...deps, packAgent: nodePacker }, progress);
    // crun's package dependencies do not include the C++ runtime node needs.
    expect(r.libsCopied.map((p) => path.basename(p))).toEqual(expect.arrayContaining(['libstdc++.so.6', 'libgcc_s.so.1']));
    expect(r.libsCopied.map((p) => path.basename(p))).not.toContain('libc.so.6');
    expect(r.checks).toContain('agent /usr/bin/kata-agent (run by /usr/lib/guestkit/node)');
    // An interpreter that is not there fails the checks.
    fs.writeFileSync(script, '#!/usr/lib/guestkit/nodejs\n');
    await expect(buildRootfs(o, { ...deps, packAgent: nodePacker }, progress)).rejects.toThrow(/the agent's interpreter: \/usr\/lib\/guestkit\/nodejs does not exist/);
  });

  it('a base whose crun lacks its libraries fails the checks (1)', async () => {
    const noLibs = async (file: string, argv: string[], o: { onStderr?: (s: string) => void }): Promise<RunResult> => {
      const args = argv.includes('/fake/mmdebstrap') ? argv.slice(argv.indexOf('/fake/mmdebstrap') + 1) : argv;
      const target = args[args.findIndex((a) => !a.startsWith('--')) + 1]!;
      makeSkeleton(target, true);
      fs.copyFileSync('/usr/bin/crun', path.join(target, 'usr/bin/crun'));
      o.onStderr?.('I: done\n');
      return { code: 0, stdout: '', stderr: '' };
    };
    const r = await cli(['rootfs', 'debian', '-o', path.join(tmp, 'never')], { deps: { ...deps, run: noLibs as never } });
    expect(r.code).toBe(EXIT.FAILED);
    expect(r.err).toMatch(/the rootfs failed its checks: libraries: \/lib64\/ld-linux-x86-64\.so\.2 \(needed by \/usr\/bin\/crun\) is not in the rootfs; libraries: libsystemd\.so\.0/);
    expect(leftovers(tmp)).toEqual([]);
  });

  it('a failing mmdebstrap fails the build (exit 1) and leaves nothing behind', async () => {
    const out = path.join(tmp, 'rootfs-fail');
    const failing = async (): Promise<RunResult> => {
      throw failedError('mmdebstrap --variant=minbase ... exited 1:\n    E: cannot reach the mirror');
    };
    const r = await cli(['rootfs', 'debian', '-o', out], { deps: { ...deps, run: failing as never } });
    expect(r.code).toBe(EXIT.FAILED);
    expect(r.err).toMatch(/^osbuilder rootfs: mmdebstrap .*exited 1/m);
    expect(lstat(out)).toBeUndefined();
    expect(leftovers(tmp)).toEqual([]);
  });
});

describe('osbuilder rootfs errors', () => {
  const cases: Array<[string, string[], NodeJS.ProcessEnv, number, RegExp]> = [
    ['no distro', ['rootfs'], {}, EXIT.USAGE, /which distro\? \(distros: alpine, debian, fedora, minimal, ubuntu/],
    ['an unknown distro', ['rootfs', 'gentoo'], {}, EXIT.USAGE, /unknown distro "gentoo" \(distros: alpine, debian, fedora, minimal, ubuntu;/],
    ['AGENT_INIT=no for minimal', ['rootfs', 'minimal'], { AGENT_INIT: 'no' }, EXIT.USAGE, /minimal cannot boot with systemd \(AGENT_INIT=no\) \(minimal supports AGENT_INIT=yes\)/],
    ['--agent-init no for alpine', ['rootfs', 'alpine', '--agent-init', 'no'], {}, EXIT.USAGE, /alpine cannot boot with systemd/],
    ['a bad --agent-init', ['rootfs', 'minimal', '--agent-init', 'maybe'], {}, EXIT.USAGE, /--agent-init \(AGENT_INIT\) must be yes or no, not "maybe"/],
    ['a bad SECCOMP', ['rootfs', 'minimal'], { SECCOMP: 'on' }, EXIT.USAGE, /--seccomp \(SECCOMP\) must be yes or no/],
    ['a bad OS_VERSION', ['rootfs', 'debian', '--os-version', 'Bookworm 12'], {}, EXIT.USAGE, /OS_VERSION "Bookworm 12" is not a debian release/],
    ['a bad extra package', ['rootfs', 'debian', '--extra-pkgs', 'crun;reboot'], {}, EXIT.USAGE, /bad extra package "crun;reboot"/],
    ['an unknown option', ['rootfs', 'minimal', '--colour'], {}, EXIT.USAGE, /Unknown option '--colour'/],
    ['two distros', ['rootfs', 'minimal', 'debian'], {}, EXIT.USAGE, /unexpected argument "debian"/],
    ['a bad SOURCE_DATE_EPOCH', ['rootfs', 'minimal'], { SOURCE_DATE_EPOCH: 'yesterday' }, EXIT.USAGE, /SOURCE_DATE_EPOCH="yesterday" is not a number/],
  ];
  for (const [what, argv, env, code, re] of cases) {
    it(`${what}: exit ${code}`, async () => {
      const r = await cli([...argv, '-o', path.join(tmp, 'never')], { env });
      expect(r.err).toMatch(re);
      expect(r.err.trim().split('\n')).toHaveLength(1);
      expect(r.code).toBe(code);
      expect(lstat(path.join(tmp, 'never'))).toBeUndefined();
    });
  }

  it('missing mmdebstrap: MISSING (3) naming the package, before anything is written', async () => {
    const calls: string[] = [];
    const r = await cli(['rootfs', 'debian', '-o', path.join(tmp, 'never')], {
      deps: {
        ...deps,
        requireTool: (name, why) => {
          calls.push(name);
          throw missingError(`${name} is needed ${why} but is not installed`, `apt-get install ${TOOL_PACKAGES[name]}`);
        },
      },
    });
    expect(calls).toEqual(['mmdebstrap']);
    expect(r.code).toBe(EXIT.MISSING);
    expect(r.err).toBe('osbuilder rootfs: mmdebstrap is needed to build the debian rootfs but is not installed (apt-get install mmdebstrap)\n');
    expect(leftovers(tmp)).toEqual([]);
  });

  it('the output parent must exist (3); an output osbuilder did not build is never replaced (2)', async () => {
    const r = await cli(['rootfs', 'minimal', '-o', path.join(tmp, 'no/such/dir/rootfs')]);
    expect(r.code).toBe(EXIT.MISSING);
    expect(r.err).toMatch(/the output directory .* does not exist/);
    const precious = path.join(tmp, 'precious');
    fs.mkdirSync(precious);
    fs.writeFileSync(path.join(precious, 'data'), 'keep me');
    const r2 = await cli(['rootfs', 'minimal'], { env: { ROOTFS_DIR: precious } });
    expect(r2.code).toBe(EXIT.USAGE);
    expect(r2.err).toMatch(/exists and was not built by osbuilder: refusing to replace it/);
    expect(fs.readFileSync(path.join(precious, 'data'), 'utf8')).toBe('keep me');
    expect((await cli(['rootfs', 'minimal', '-o', '/'])).code).toBe(EXIT.USAGE);
  });

  it('a broken distro folder fails (1), naming the file and field', async () => {
    const t = path.join(tmp, 'templates-broken');
    fs.cpSync(templates, t, { recursive: true });
    const mf = path.join(t, 'minimal', 'manifest.json');
    fs.writeFileSync(mf, fs.readFileSync(mf, 'utf8').replace('"init": ["agent"]', '"init": ["upstart"]'));
    const r = await cli(['rootfs', 'minimal', '--templates', t, '-o', path.join(tmp, 'never')]);
    expect(r.code).toBe(EXIT.FAILED);
    expect(r.err).toMatch(/minimal\/manifest\.json: init: unknown init kind "upstart"/);
    // A template with an unknown variable fails too.
    fs.cpSync(path.join(templates, 'minimal', 'manifest.json'), mf);
    fs.writeFileSync(path.join(t, 'minimal/files/etc/hostname'), '{{hostnmae}}\n');
    const r2 = await cli(['rootfs', 'minimal', '--templates', t, '-o', path.join(tmp, 'never')]);
    expect(r2.code).toBe(EXIT.FAILED);
    expect(r2.err).toMatch(/files\/etc\/hostname:1: \{\{hostnmae\}\} is not defined/);
    expect(leftovers(tmp)).toEqual([]);
  });

  it('an agent packer without /usr/bin/kata-agent fails the checks (1)', async () => {
    const badPacker: PackAgent = async () => ({ files: [{ src: '/bin/busybox', dest: '/usr/lib/x/agent', mode: 0o755 }], version: '1', commit: 'x' });
    const r = await cli(['rootfs', 'minimal', '-o', path.join(tmp, 'never')], { deps: { ...deps, packAgent: badPacker } });
    expect(r.code).toBe(EXIT.FAILED);
    expect(r.err).toMatch(/the rootfs failed its checks: the agent: \/usr\/bin\/kata-agent does not exist/);
    expect(lstat(path.join(tmp, 'never'))).toBeUndefined();
  });

  it('every command has --help with its exit codes', async () => {
    for (const c of ['rootfs', 'list-distros', 'new-distro']) {
      const r = await cli([c, '--help']);
      expect(r.code).toBe(EXIT.OK);
      expect(r.out).toMatch(new RegExp(`^Usage: osbuilder ${c}`));
      expect(r.out).toContain('Exit codes:');
    }
    expect((await cli(['rootfs', '--help'])).out).toMatch(/AGENT_INIT[\s\S]*EXTRA_PKGS[\s\S]*ROOTFS_DIR|ROOTFS_DIR[\s\S]*EXTRA_PKGS[\s\S]*AGENT_INIT/);
  });
});

describe('osbuilder list-distros / new-distro', () => {
  it('lists the distros, marking ubuntu, alpine and fedora untested', async () => {
    const r = await cli(['list-distros']);
    expect(r.code).toBe(EXIT.OK);
    const lines = r.out.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^DISTRO\s+BASE\s+INIT\s+DEFAULT\s+ARCH\s+STATUS\s+DESCRIPTION$/);
    const status = Object.fromEntries(lines.slice(1).map((l) => [l.split(/\s+/)[0], /\buntested\b/.test(l) ? 'untested' : /\btested\b/.test(l) ? 'tested' : '?']));
    expect(status).toEqual({ alpine: 'untested', debian: 'tested', fedora: 'untested', minimal: 'tested', ubuntu: 'untested' });
    const json = JSON.parse((await cli(['list-distros', '--json'])).out) as Array<{ name: string; base: string; init: string[]; untested: boolean }>;
    expect(json.find((d) => d.name === 'debian')).toMatchObject({ base: 'mmdebstrap', init: ['agent', 'systemd'], untested: false });
    expect(json.find((d) => d.name === 'minimal')).toMatchObject({ base: 'minimal', init: ['agent'], untested: false });
  });

  it('an invalid manifest is listed as such and fails the listing (1)', async () => {
    const t = path.join(tmp, 'templates-list');
    fs.cpSync(templates, t, { recursive: true });
    const mf = path.join(t, 'alpine', 'manifest.json');
    fs.writeFileSync(mf, JSON.stringify({ ...JSON.parse(fs.readFileSync(mf, 'utf8')), description: 1 }));
    const r = await cli(['list-distros', '--templates', t]);
    expect(r.code).toBe(EXIT.FAILED);
    expect(r.out).toMatch(/^alpine\s+-\s+-\s+-\s+-\s+INVALID\s+.*description: must be a non-empty string$/m);
    expect(r.out).toMatch(/^debian\s+mmdebstrap/m);
    expect(r.err).toBe('osbuilder list-distros: invalid distro folder: alpine\n');
  });

  it('new-distro scaffolds an untested copy that lists and loads; adding a distro is adding a folder', async () => {
    const t = path.join(tmp, 'templates-new');
    fs.cpSync(templates, t, { recursive: true });
    const r = await cli(['new-distro', 'mydistro', '--templates', t]);
    expect(r.err).toBe('');
    expect(r.code).toBe(EXIT.OK);
    expect(r.out).toContain(path.join(t, 'mydistro'));
    const m = loadManifest(t, 'mydistro');
    expect(m).toMatchObject({ untested: true, mayFail: true, base: { kind: 'mmdebstrap' } });
    expect(m.description).toMatch(/TODO/);
    expect(fs.readFileSync(path.join(t, 'mydistro/files/usr/lib/systemd/system/kata-agent.service'), 'utf8')).toBe(
      fs.readFileSync(path.join(t, 'debian/files/usr/lib/systemd/system/kata-agent.service'), 'utf8'),
    );
    expect((await cli(['list-distros', '--templates', t])).out).toMatch(/^mydistro\s+mmdebstrap\s.*untested, may fail/m);
    const r2 = await cli(['new-distro', 'tiny', '--from', 'minimal', '--templates', t]);
    expect(r2.code).toBe(EXIT.OK);
    expect(loadManifest(t, 'tiny').base.kind).toBe('minimal');
    expect(leftovers(t)).toEqual([]);
  });

  const refusals: Array<[string, string[], RegExp]> = [
    ['an existing name', ['new-distro', 'debian'], /distro "debian" already exists/],
    ['upper case', ['new-distro', 'Debian2'], /bad distro name "Debian2"/],
    ['a leading digit', ['new-distro', '9lives'], /bad distro name/],
    ['one character', ['new-distro', 'x'], /bad distro name/],
    ['a path', ['new-distro', '../evil'], /bad distro name/],
    ['an underscore', ['new-distro', 'my_distro'], /bad distro name/],
    ['a trailing dash', ['new-distro', 'distro-'], /bad distro name/],
    ['no name', ['new-distro'], /which name\?/],
    ['an unknown --from', ['new-distro', 'fresh', '--from', 'gentoo'], /unknown distro "gentoo"/],
  ];
  for (const [what, argv, re] of refusals) {
    it(`new-distro refuses ${what} (2)`, async () => {
      const before = fs.readdirSync(templates).sort();
      const r = await cli(argv);
      expect(r.code).toBe(EXIT.USAGE);
      expect(r.err).toMatch(re);
      expect(fs.readdirSync(templates).sort()).toEqual(before);
    });
  }

  it('a templates folder that does not exist is MISSING (3)', async () => {
    const r = await cli(['list-distros', '--templates', path.join(tmp, 'nope')]);
    expect(r.code).toBe(EXIT.MISSING);
  });
});
