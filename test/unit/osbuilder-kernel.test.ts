// osbuilder kernel, pure parts: fragments (arch tags, merge conflicts, whitelist, VERSION digest),
// .config verification and the unmet-dependency explanation against a fake Kconfig tree
// (test/fixtures/kernel-src), the repository's own fragments, and the command line.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../../osbuilder/src/cli';
import { buildKey, findDebianSourceTarball, kbuildEnv, makefileVersion } from '../../osbuilder/src/kernel/build';
import { kernelCommand } from '../../osbuilder/src/kernel/command';
import {
  FragmentError,
  fragmentsDigest,
  listFragmentFiles,
  loadKernelConfigs,
  localVersion,
  mergeFragments,
  parseFragment,
  parseVersionFile,
  parseWhitelist,
  renderMerged,
} from '../../osbuilder/src/kernel/fragments';
import { explainMismatches, indexKconfig, parseDotConfig, unmetSymbols, verifyConfig } from '../../osbuilder/src/kernel/kconfig';
import { EXIT } from '../../osbuilder/src/util/errors';
import { REPO_ROOT } from '../helpers/bundle';

const FIXTURE_SRC = path.join(REPO_ROOT, 'test/fixtures/kernel-src');
const CONFIGS = path.join(REPO_ROOT, 'kernel-configs');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-kernel-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('fragments', () => {
  it('parses values, "is not set", comments and the first-line arch tag', () => {
    const f = parseFragment('# !arm64 !riscv64\n# a comment\nCONFIG_A=y\n# CONFIG_B is not set\n\nCONFIG_C="x y"\nCONFIG_D=0x10\nCONFIG_E=-3\nCONFIG_F=m\n', 'common/x.conf');
    expect(f.excluded).toEqual(['arm64', 'riscv64']);
    expect([...f.entries]).toEqual([
      ['CONFIG_A', 'y'],
      ['CONFIG_B', 'n'],
      ['CONFIG_C', '"x y"'],
      ['CONFIG_D', '0x10'],
      ['CONFIG_E', '-3'],
      ['CONFIG_F', 'm'],
    ]);
    expect(parseFragment('# plain comment\nCONFIG_A=y\n', 'a.conf').excluded).toEqual([]);
  });

  it('rejects malformed lines, naming file and line', () => {
    expect(() => parseFragment('CONFIG_A=y\nCONFIG_B\n', 'common/bad.conf')).toThrow('common/bad.conf:2: expected CONFIG_NAME=value');
    expect(() => parseFragment('CONFIG_A=yes\n', 'c.conf')).toThrow('c.conf:1: bad value "yes" for CONFIG_A');
    expect(() => parseFragment('FOO=y\n', 'c.conf')).toThrow('bad symbol name "FOO"');
    expect(() => parseFragment('CONFIG_A=y\nCONFIG_A=n\n', 'c.conf')).toThrow('CONFIG_A is set twice');
  });

  it('merges in order, skips fragments tagged for the arch, refuses conflicting values', () => {
    const a = parseFragment('CONFIG_A=y\nCONFIG_B=y\n', 'common/a.conf');
    const b = parseFragment('# !arm64\nCONFIG_ACPI=y\n', 'common/acpi.conf');
    const c = parseFragment('CONFIG_B=y\nCONFIG_C=n\n', 'x86_64/c.conf');
    const x86 = mergeFragments([a, b, c], 'x86_64');
    expect(x86.fragments).toEqual(['common/a.conf', 'common/acpi.conf', 'x86_64/c.conf']);
    expect([...x86.wanted.keys()]).toEqual(['CONFIG_A', 'CONFIG_B', 'CONFIG_ACPI', 'CONFIG_C']);
    expect(x86.wanted.get('CONFIG_B')!.file).toBe('common/a.conf');
    const arm = mergeFragments([a, b], 'arm64');
    expect(arm.skipped).toEqual(['common/acpi.conf']);
    expect(arm.wanted.has('CONFIG_ACPI')).toBe(false);
    const d = parseFragment('CONFIG_A=n\n', 'x86_64/d.conf');
    expect(() => mergeFragments([a, d], 'x86_64')).toThrow('CONFIG_A is y in common/a.conf but n in x86_64/d.conf');
    expect(renderMerged(x86, [['CONFIG_LOCALVERSION', '"-guestkit.3"']])).toBe(
      '# merged by osbuilder from: common/a.conf common/acpi.conf x86_64/c.conf\nCONFIG_A=y\nCONFIG_B=y\nCONFIG_ACPI=y\n# CONFIG_C is not set\nCONFIG_LOCALVERSION="-guestkit.3"\n',
    );
  });

  it('whitelist and VERSION files', () => {
    expect([...parseWhitelist('# header\nCONFIG_A   # gone in 6.1\n\nCONFIG_B\n')]).toEqual(['CONFIG_A', 'CONFIG_B']);
    expect(() => parseWhitelist('A\n')).toThrow('whitelist.conf:1');
    expect(parseVersionFile(`version=7\nfragments-sha256=${'a'.repeat(64)}\n`)).toEqual({ version: 7, digest: 'a'.repeat(64) });
    expect(() => parseVersionFile('version=x\n')).toThrow(FragmentError);
    expect(localVersion(7)).toBe('-guestkit.7');
  });

  it('a fragment change without a version bump is refused (the digest in VERSION)', () => {
    const dir = path.join(tmp, 'configs');
    fs.cpSync(CONFIGS, dir, { recursive: true });
    expect(() => loadKernelConfigs(dir, 'x86_64')).not.toThrow();
    fs.appendFileSync(path.join(dir, 'fragments/common/fs.conf'), 'CONFIG_SQUASHFS=y\n');
    expect(() => loadKernelConfigs(dir, 'x86_64')).toThrow(/bump version= and record the new digest/);
    fs.writeFileSync(path.join(dir, 'VERSION'), `version=2\nfragments-sha256=${fragmentsDigest(dir)}\n`);
    const set = loadKernelConfigs(dir, 'x86_64');
    expect(set.version).toBe(2);
    expect(set.merged.wanted.get('CONFIG_SQUASHFS')).toEqual({ value: 'y', file: 'common/fs.conf' });
  });
});

describe("the repository's kernel-configs/", () => {
  it('VERSION records the digest of the fragments as they are (bump it when they change)', () => {
    expect(parseVersionFile(fs.readFileSync(path.join(CONFIGS, 'VERSION'), 'utf8')).digest).toBe(fragmentsDigest(CONFIGS));
  });

  it('one file per concern, common and per arch, each loadable', () => {
    const files = listFragmentFiles(CONFIGS);
    for (const f of ['base', 'virtio', 'mmio', 'vsock-net', 'fs', 'cgroup', 'namespaces', 'seccomp', 'hotplug', 'dax-pmem', 'serial', 'hw_random', 'elf', 'security']) {
      expect(files, f).toContain(`common/${f}.conf`);
    }
    expect(files.filter((f) => f.startsWith('x86_64/')).length).toBeGreaterThan(0);
    expect(files.filter((f) => f.startsWith('arm64/')).length).toBeGreaterThan(0);
    const x86 = loadKernelConfigs(CONFIGS, 'x86_64');
    const arm = loadKernelConfigs(CONFIGS, 'arm64');
    // The must-haves of the agent and the VM suite.
    for (const s of ['CONFIG_VIRTIO_CONSOLE', 'CONFIG_VIRTIO_VSOCKETS', 'CONFIG_VIRTIO_FS', 'CONFIG_9P_FS', 'CONFIG_VIRTIO_BLK', 'CONFIG_EXT4_FS', 'CONFIG_EROFS_FS', 'CONFIG_OVERLAY_FS', 'CONFIG_CGROUPS', 'CONFIG_SECCOMP_FILTER', 'CONFIG_IKCONFIG_PROC', 'CONFIG_RD_LZ4', 'CONFIG_DEVTMPFS']) {
      expect(x86.merged.wanted.get(s)?.value, s).toBe('y');
      expect(arm.merged.wanted.get(s)?.value, s).toBe('y');
    }
    expect(x86.merged.wanted.get('CONFIG_SERIAL_8250_CONSOLE')?.value).toBe('y');
    expect(arm.merged.wanted.get('CONFIG_SERIAL_AMBA_PL011_CONSOLE')?.value).toBe('y');
    expect(arm.merged.skipped).toContain('common/acpi-hotplug.conf');
    expect(x86.merged.wanted.has('CONFIG_MODULES')).toBe(false);
    expect(loadKernelConfigs(CONFIGS, 'x86_64', { modules: true }).merged.wanted.get('CONFIG_MODULES')?.value).toBe('y');
    expect(x86.whitelist.has('CONFIG_MEMCG_SWAP')).toBe(true);
  });
});

describe('verification against the final .config', () => {
  const final = parseDotConfig('# comment\nCONFIG_CGROUPS=y\n# CONFIG_NAMESPACES is not set\nCONFIG_BLOCK=y\nCONFIG_LOCALVERSION="-x"\nCONFIG_FOO_FS=m\n');

  it('parses a .config', () => {
    expect([...final]).toEqual([
      ['CONFIG_CGROUPS', 'y'],
      ['CONFIG_NAMESPACES', 'n'],
      ['CONFIG_BLOCK', 'y'],
      ['CONFIG_LOCALVERSION', '"-x"'],
      ['CONFIG_FOO_FS', 'm'],
    ]);
  });

  it('lists what differs; asked n is met by an absent symbol; whitelisted ones are marked', () => {
    const wanted = new Map(
      Object.entries({ CONFIG_CGROUPS: 'y', CONFIG_NAMESPACES: 'y', CONFIG_FOO_FS: 'y', CONFIG_GONE: 'y', CONFIG_ABSENT: 'n', CONFIG_RENAMED: 'y' }).map(([k, v]) => [k, { value: v, file: 'common/x.conf' }]),
    );
    const m = verifyConfig(wanted, final, new Set(['CONFIG_RENAMED']));
    expect(m.map((x) => [x.symbol, x.wanted, x.got, x.whitelisted])).toEqual([
      ['CONFIG_NAMESPACES', 'y', 'n', false],
      ['CONFIG_FOO_FS', 'y', 'm', false],
      ['CONFIG_GONE', 'y', 'n', false],
      ['CONFIG_RENAMED', 'y', 'n', true],
    ]);
  });

  it('explains a miss with the dependencies that are off, from the Kconfig files', () => {
    const idx = indexKconfig(FIXTURE_SRC, ['CONFIG_FOO_FS', 'CONFIG_TIME_NS', 'CONFIG_NAMESPACES', 'CONFIG_NOPE']);
    expect(idx.get('CONFIG_FOO_FS')).toEqual([{ file: 'fs/foo/Kconfig', depends: ['BLOCK && (MMU || EXPERT)', '!ARM'] }]);
    expect(idx.get('CONFIG_TIME_NS')).toEqual([{ file: 'init/Kconfig', depends: ['GENERIC_VDSO_TIME_NS'] }]);
    expect(unmetSymbols('BLOCK && (MMU || EXPERT)', final)).toEqual(['CONFIG_MMU', 'CONFIG_EXPERT']);
    expect(unmetSymbols('!ARM && !CGROUPS', final)).toEqual(['CONFIG_CGROUPS']); // negated: in the way when on
    const lines = explainMismatches(
      [
        { symbol: 'CONFIG_FOO_FS', wanted: 'y', got: 'n', file: 'common/fs.conf', whitelisted: false },
        { symbol: 'CONFIG_NAMESPACES', wanted: 'y', got: 'n', file: 'common/ns.conf', whitelisted: false },
        { symbol: 'CONFIG_NOPE', wanted: 'y', got: 'n', file: 'common/ns.conf', whitelisted: false },
      ],
      idx,
      final,
    );
    expect(lines).toEqual([
      'CONFIG_FOO_FS: asked y (common/fs.conf), got n; unmet dependencies: CONFIG_MMU, CONFIG_EXPERT (fs/foo/Kconfig)',
      'CONFIG_NAMESPACES: asked y (common/ns.conf), got n (init/Kconfig)',
      "CONFIG_NOPE: asked y (common/ns.conf), got n; no such symbol in this kernel's Kconfig",
    ]);
  });
});

describe('kernel source and build inputs', () => {
  it('reads the version from the Makefile (an empty EXTRAVERSION stays empty)', () => {
    expect(makefileVersion(fs.readFileSync(path.join(FIXTURE_SRC, 'Makefile'), 'utf8'))).toBe('6.1.7');
    expect(makefileVersion('VERSION = 6\nPATCHLEVEL = 8\nSUBLEVEL = 0\nEXTRAVERSION = -rc3\n')).toBe('6.8.0-rc3');
    expect(() => makefileVersion('all:\n')).toThrow(/not a Linux source tree/);
  });

  it("finds the newest Debian linux-source tarball", () => {
    const dir = path.join(tmp, 'usr-src');
    fs.mkdirSync(dir);
    for (const n of ['linux-source-6.1.tar.xz', 'linux-source-6.12.tar.xz', 'linux-source-6.9.tar.xz', 'other.tar.xz']) fs.writeFileSync(path.join(dir, n), '');
    expect(findDebianSourceTarball(dir)).toBe(path.join(dir, 'linux-source-6.12.tar.xz'));
    expect(findDebianSourceTarball(path.join(tmp, 'none'))).toBeUndefined();
  });

  it('the cache key changes with every input; the build environment pins user, host and time', () => {
    const base = { src: { dir: '/s', identity: 'tarball:a:1', version: '6.1' }, configsDigest: 'd', arch: 'x86_64' as const, modules: false, epoch: 1 };
    const k = buildKey(base);
    expect(buildKey({ ...base })).toBe(k);
    for (const v of [{ configsDigest: 'e' }, { arch: 'arm64' as const }, { modules: true }, { epoch: 2 }, { src: { ...base.src, identity: 'tarball:a:2' } }]) expect(buildKey({ ...base, ...v })).not.toBe(k);
    const env = kbuildEnv(1700000000);
    expect(env).toMatchObject({ KBUILD_BUILD_TIMESTAMP: 'Tue, 14 Nov 2023 22:13:20 GMT', KBUILD_BUILD_USER: 'guestkit', KBUILD_BUILD_HOST: 'guestkit', KBUILD_BUILD_VERSION: '1' });
  });
});

describe('osbuilder kernel command line', () => {
  function io() {
    const o = { stdout: '', stderr: '' };
    return { o, io: { stdout: (s: string) => void (o.stdout += s), stderr: (s: string) => void (o.stderr += s), env: { GUESTKIT_CACHE: path.join(tmp, 'cache') } } };
  }

  it('usage errors: no subcommand, unknown subcommand, bad arch, missing --output, bad --jobs', async () => {
    for (const args of [['kernel'], ['kernel', 'make'], ['kernel', 'config', '--arch', 'mips', '-o', path.join(tmp, 'c')], ['kernel', 'config'], ['kernel', 'build', '-o', path.join(tmp, 'k'), '--jobs', '0'], ['kernel', 'config', '-o', path.join(tmp, 'c'), '--no-cache']]) {
      const a = io();
      expect(await runCli(args, [kernelCommand], a.io), args.join(' ')).toBe(EXIT.USAGE);
      expect(a.o.stderr.trim().split('\n')).toHaveLength(1);
    }
  });

  it('refuses to replace a directory it did not make', async () => {
    const mine = path.join(tmp, 'not-a-kernel');
    fs.mkdirSync(mine);
    fs.writeFileSync(path.join(mine, 'precious.txt'), 'keep me');
    const a = io();
    expect(await runCli(['kernel', 'build', '-o', mine, '--src', FIXTURE_SRC], [kernelCommand], a.io)).toBe(EXIT.USAGE);
    expect(a.o.stderr).toContain('is not a kernel output of osbuilder');
    expect(fs.readFileSync(path.join(mine, 'precious.txt'), 'utf8')).toBe('keep me');
  });

  it('a missing source is MISSING (3)', async () => {
    const a = io();
    expect(await runCli(['kernel', 'config', '-o', path.join(tmp, 'c'), '--src', path.join(tmp, 'no-such-src')], [kernelCommand], a.io)).toBe(EXIT.MISSING);
    expect(a.o.stderr).toContain('no-such-src does not exist');
    expect(fs.existsSync(path.join(tmp, 'c'))).toBe(false);
  });

  it('--help documents both subcommands, the fragments and exit codes', async () => {
    const a = io();
    expect(await runCli(['kernel', '--help'], [kernelCommand], a.io)).toBe(EXIT.OK);
    for (const s of ['kernel config --arch ARCH --output FILE', 'kernel build  --arch ARCH --output DIR', '# !ARCH', 'whitelist.conf', 'allnoconfig', 'olddefconfig', '--modules', 'Exit codes']) expect(a.o.stdout).toContain(s);
  });
});
