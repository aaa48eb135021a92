// osbuilder kernel config for real: Debian's linux-source tarball (installed by .ci/install-deps),
// extracted into the cache, the repository's fragments merged from allnoconfig and verified, for
// x86_64 and arm64; and a fragment that cannot be met, failing with its unmet dependencies.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../osbuilder/src/cli';
import { findDebianSourceTarball, makeConfig, resolveSource, type KernelSource } from '../../osbuilder/src/kernel/build';
import { kernelCommand } from '../../osbuilder/src/kernel/command';
import { fragmentsDigest } from '../../osbuilder/src/kernel/fragments';
import { parseDotConfig } from '../../osbuilder/src/kernel/kconfig';
import { EXIT, OsbuilderError } from '../../osbuilder/src/util/errors';
import { REPO_ROOT } from '../helpers/bundle';

const tarball = findDebianSourceTarball();
const haveTools = ['make', 'gcc', 'flex', 'bison'].every((t) => ['/usr/bin', '/bin'].some((d) => fs.existsSync(path.join(d, t))));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-kernel-it-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCli(args, [kernelCommand], { stdout: (s) => void (out += s), stderr: (s) => void (err += s), env: process.env });
  return { code, out, err };
}

describe.runIf(tarball !== undefined && haveTools)('osbuilder kernel config (Debian linux-source)', () => {
  let src: KernelSource;
  beforeAll(async () => {
    src = await resolveSource({ env: process.env, install: false });
  }, 300_000);

  it('x86_64: every fragment symbol verified in the final config, the version stamped, no modules', async () => {
    const out = path.join(tmp, 'x86_64.config');
    const r = await cli(['kernel', 'config', '--arch', 'x86_64', '-o', out, '--quiet']);
    expect(r.err).toBe('');
    expect(r.code).toBe(EXIT.OK);
    expect(r.out).toMatch(new RegExp(`^${out}: Linux ${src.version.replace(/\./g, '\\.')} x86_64 config, version \\d+ \\(\\d+ fragments\\)\\n$`));
    const c = parseDotConfig(fs.readFileSync(out, 'utf8'));
    for (const s of ['CONFIG_VIRTIO_CONSOLE', 'CONFIG_VIRTIO_VSOCKETS', 'CONFIG_VIRTIO_FS', 'CONFIG_9P_FS', 'CONFIG_EXT4_FS', 'CONFIG_IKCONFIG_PROC', 'CONFIG_KERNEL_LZ4', 'CONFIG_SERIAL_8250_CONSOLE', 'CONFIG_ACPI_NFIT']) expect(c.get(s), s).toBe('y');
    expect(c.get('CONFIG_LOCALVERSION')).toMatch(/^"-guestkit\.\d+"$/);
    expect(c.get('CONFIG_MODULES') ?? 'n').toBe('n');
    // allnoconfig underneath: what no fragment asks for stays off.
    expect(c.get('CONFIG_SOUND') ?? 'n').toBe('n');
    expect(c.get('CONFIG_USB_SUPPORT') ?? 'n').toBe('n');
  }, 120_000);

  it('arm64: the arch fragments, and the ACPI fragment (# !arm64) left out', async () => {
    const out = path.join(tmp, 'arm64.config');
    const r = await cli(['kernel', 'config', '--arch', 'arm64', '-o', out, '--quiet']);
    expect(r.code).toBe(EXIT.OK);
    expect(r.out).toContain('skipped for arm64: common/acpi-hotplug.conf');
    const c = parseDotConfig(fs.readFileSync(out, 'utf8'));
    expect(c.get('CONFIG_ARM64')).toBe('y');
    expect(c.get('CONFIG_SERIAL_AMBA_PL011_CONSOLE')).toBe('y');
    expect(c.get('CONFIG_ACPI_NFIT') ?? 'n').toBe('n');
  }, 120_000);

  it('--modules: module support on, from fragments/modules/', async () => {
    const out = path.join(tmp, 'modules.config');
    const r = await cli(['kernel', 'config', '--arch', 'x86_64', '--modules', '-o', out, '--quiet']);
    expect(r.code).toBe(EXIT.OK);
    const c = parseDotConfig(fs.readFileSync(out, 'utf8'));
    expect(c.get('CONFIG_MODULES')).toBe('y');
    expect(c.get('CONFIG_MODULE_UNLOAD')).toBe('y');
  }, 120_000);

  it('a symbol whose dependencies are off fails the config, naming them', async () => {
    const configs = path.join(tmp, 'configs');
    fs.cpSync(path.join(REPO_ROOT, 'kernel-configs'), configs, { recursive: true });
    // ZONE_DEVICE needs memory hot-remove and a virtual memmap: drop those, keep asking for it.
    const dax = path.join(configs, 'fragments/common/dax-pmem.conf');
    fs.writeFileSync(dax, fs.readFileSync(dax, 'utf8').replace('CONFIG_SPARSEMEM_VMEMMAP=y\n', ''));
    const hp = path.join(configs, 'fragments/common/hotplug.conf');
    fs.writeFileSync(hp, fs.readFileSync(hp, 'utf8').replace('CONFIG_MEMORY_HOTREMOVE=y\n', '').replace('CONFIG_VIRTIO_MEM=y\n', ''));
    fs.writeFileSync(path.join(configs, 'VERSION'), `version=99\nfragments-sha256=${fragmentsDigest(configs)}\n`);
    const err = await makeConfig({ src, configsDir: configs, arch: 'x86_64', buildDir: path.join(tmp, 'build-bad'), epoch: 0 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(OsbuilderError);
    expect((err as OsbuilderError).exitCode).toBe(EXIT.FAILED);
    const msg = (err as Error).message;
    expect(msg).toMatch(/^\d+ symbols asked by the fragments are not in the final config:/);
    expect(msg).toContain('CONFIG_ZONE_DEVICE: asked y (common/dax-pmem.conf), got n; unmet dependencies: CONFIG_MEMORY_HOTREMOVE, CONFIG_SPARSEMEM_VMEMMAP (mm/Kconfig)');
    expect(msg).toContain('CONFIG_FS_DAX: asked y (common/dax-pmem.conf), got n; unmet dependencies:');
  }, 120_000);
});
