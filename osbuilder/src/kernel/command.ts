// `osbuilder kernel config` and `osbuilder kernel build`: the guest kernel from kernel-configs/.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseOptions } from '../cli';
import type { Command, CommandContext } from '../commands/types';
import { failedError, usageError } from '../util/errors';
import { writeAtomically } from '../util/output';
import { humanBytes } from '../util/progress';
import { findTool, runTool } from '../util/tools';
import { buildKey, cacheRoot, makeConfig, makeKernel, requireKernelTools, resolveSource, ARCH_INFO, kbuildEnv, type KernelSource } from './build';
import { fragmentsDigest, KERNEL_ARCHES, localVersion, type KernelArch } from './fragments';

const HELP = `Usage: osbuilder kernel config --arch ARCH --output FILE [--src DIR|TARBALL] [--modules]
       osbuilder kernel build  --arch ARCH --output DIR  [--src DIR|TARBALL] [--modules] [--jobs N] [--no-cache]

The guest kernel, from the config fragments in kernel-configs/fragments/: common/*.conf, then
ARCH/*.conf (a fragment whose first line is "# !ARCH" is left out for that arch), then
modules/*.conf with --modules. Fragments are merged (a symbol asked with two different values
is an error) on top of allnoconfig (make allnoconfig with KCONFIG_ALLCONFIG, as the kernel's
merge_config.sh -n does), then make olddefconfig. Every symbol a fragment asked for must then
have the asked value, except those in kernel-configs/whitelist.conf (renamed or removed across
kernel versions); otherwise the command fails with the list and, where Kconfig tells, the
dependencies that are off. The config version in kernel-configs/VERSION is stamped into the
kernel's release (uname -r ends in ${localVersion(1).replace('1', 'N')}).

  config   writes the verified .config to FILE
  build    builds ${Object.entries(ARCH_INFO).map(([a, i]) => `${i.target} (${a})`).join(' / ')} with LZ4 compression and /proc/config.gz
           into DIR: vmlinuz, config, System.map, kernel.json (release, config version, size,
           sha256, make time). No
           modules unless --modules. The result is cached by a hash of the source, the
           fragments and the options: a second build with the same inputs is a copy.

Options:
  --arch ARCH        ${KERNEL_ARCHES.join(' or ')} (default: the host's, ${hostArchName() ?? 'x86_64'})
  --output, -o PATH  FILE (config) or DIR (build); written to a temporary name, renamed at the end
  --src DIR|TARBALL  a Linux source tree or tarball (default: /usr/src/linux-source-*.tar.xz,
                     Debian's linux-source package, installed with apt-get when missing and root)
  --modules          build loadable modules support (and the modules, into DIR/modules)
  --jobs, -j N       parallel make jobs (default: the number of CPUs)
  --no-cache         build even if a cached kernel for the same inputs exists
  --quiet            no progress output

Environment:
  SOURCE_DATE_EPOCH  the build time stamped into the kernel (default: the source's Makefile mtime)
  GUESTKIT_CACHE     cache folder (default: $XDG_CACHE_HOME/guestkit or ~/.cache/guestkit):
                     extracted sources under kernel/src, finished kernels under kernel/builds

Needs: make, gcc, flex, bison (config); and bc, perl, libelf-dev, libssl-dev (build); for
another arch, its cross compiler (gcc-aarch64-linux-gnu for arm64).

Examples:
  osbuilder kernel config --arch x86_64 -o guest.config
  osbuilder kernel build --arch x86_64 -o build/kernel
  osbuilder kernel build --src ~/linux -o build/kernel --jobs 8

Exit codes: 0 done; 1 a fragment symbol is missing from the final config, or the build
failed; 2 bad command line; 3 missing source or tools; 130 interrupted.
`;

function hostArchName(): KernelArch | undefined {
  return ({ x64: 'x86_64', arm64: 'arm64' } as Record<string, KernelArch>)[process.arch];
}

/** kernel-configs/ of the repository holding osbuilder (or above the working directory). */
export function findConfigsDir(starts: string[] = [moduleDir(), process.cwd()]): string | undefined {
  for (const start of starts) {
    for (let dir = path.resolve(start); ; dir = path.dirname(dir)) {
      if (fs.existsSync(path.join(dir, 'kernel-configs', 'VERSION'))) return path.join(dir, 'kernel-configs');
      if (path.dirname(dir) === dir) break;
    }
  }
  return undefined;
}

function moduleDir(): string {
  try {
    return path.dirname(fileURLToPath(import.meta.url));
  } catch {
    return process.cwd();
  }
}

function sourceEpoch(env: NodeJS.ProcessEnv, src: KernelSource): number {
  if (env.SOURCE_DATE_EPOCH !== undefined) {
    const n = Number(env.SOURCE_DATE_EPOCH);
    if (!Number.isInteger(n) || n < 0) throw usageError(`SOURCE_DATE_EPOCH must be a non-negative integer, not ${JSON.stringify(env.SOURCE_DATE_EPOCH)}`);
    return n;
  }
  return Math.floor(fs.statSync(path.join(src.dir, 'Makefile')).mtimeMs / 1000);
}

export interface KernelBuildInfo {
  arch: KernelArch;
  release: string;
  configVersion: number;
  source: string;
  key: string;
  image: string;
  bytes: number;
  sha256: string;
  modules: boolean;
  /** Wall time of make (config excluded), and its -j. */
  buildSeconds: number;
  jobs: number;
}

async function run(args: string[], ctx: CommandContext): Promise<void> {
  const sub = args[0];
  if (sub !== 'config' && sub !== 'build') throw usageError(sub === undefined ? 'kernel: say config or build' : `kernel: unknown subcommand ${JSON.stringify(sub)} (config or build)`, 'see osbuilder kernel --help');
  const { values } = parseOptions(
    `kernel ${sub}`,
    args.slice(1),
    {
      arch: { type: 'string' },
      output: { type: 'string', short: 'o' },
      src: { type: 'string' },
      modules: { type: 'boolean' },
      jobs: { type: 'string', short: 'j' },
      'no-cache': { type: 'boolean' },
    },
    { positionals: 0 },
  );
  const arch = (values.arch ?? hostArchName() ?? 'x86_64') as KernelArch;
  if (!(KERNEL_ARCHES as readonly string[]).includes(arch)) throw usageError(`kernel: --arch must be one of ${KERNEL_ARCHES.join(', ')}, not ${JSON.stringify(values.arch)}`);
  if (!values.output) throw usageError(`kernel ${sub}: --output ${sub === 'config' ? 'FILE' : 'DIR'} is required`, 'see osbuilder kernel --help');
  if (sub === 'config' && (values.jobs !== undefined || values['no-cache'])) throw usageError('kernel config: --jobs and --no-cache are for kernel build');
  const jobs = values.jobs === undefined ? os.availableParallelism() : Number(values.jobs);
  if (!Number.isInteger(jobs) || jobs < 1) throw usageError(`kernel build: --jobs must be a positive integer, not ${JSON.stringify(values.jobs)}`);
  const configsDir = findConfigsDir();
  if (!configsDir) throw usageError('cannot find kernel-configs/ (run osbuilder from the guestkit repository)');
  const modules = values.modules === true;
  const output = path.resolve(values.output);
  if (!fs.existsSync(path.dirname(output))) throw usageError(`the directory of ${output} does not exist`);
  if (sub === 'build' && fs.existsSync(output)) {
    const st = fs.statSync(output);
    const ours = st.isDirectory() && (fs.readdirSync(output).length === 0 || fs.existsSync(path.join(output, 'kernel.json')));
    if (!ours) throw usageError(`${output} exists and is not a kernel output of osbuilder (no kernel.json): not replacing it`);
  }
  if (sub === 'config' && fs.existsSync(output) && fs.statSync(output).isDirectory()) throw usageError(`${output} is a directory: kernel config writes a file`);

  const { cross } = requireKernelTools({ build: sub === 'build', arch });
  const p = ctx.progress(sub === 'config' ? 2 : 4);
  p.step('kernel source');
  const src = await resolveSource({ src: values.src, env: ctx.env, progress: p });
  p.done(`Linux ${src.version}, ${src.dir}`);
  const epoch = sourceEpoch(ctx.env, src);

  if (sub === 'config') {
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'osbuilder-kconfig-'));
    try {
      p.step(`config for ${arch}`);
      const r = await makeConfig({ src, configsDir, arch, modules, buildDir: work, cross, epoch, progress: p });
      await writeAtomically(output, async (tmp) => fs.writeFileSync(tmp, r.config));
      p.done(`${r.set.merged.wanted.size} symbols asked, all present${r.whitelistedMissing.length ? `; whitelisted and absent: ${r.whitelistedMissing.join(', ')}` : ''}`);
      ctx.out(`${output}: Linux ${src.version} ${arch} config, version ${r.set.version} (${r.set.merged.fragments.length} fragments${r.set.merged.skipped.length ? `, skipped for ${arch}: ${r.set.merged.skipped.join(' ')}` : ''})`);
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
    return;
  }

  // build
  const key = buildKey({ src, configsDigest: fragmentsDigest(configsDir), arch, modules, epoch, cross });
  const cached = path.join(cacheRoot(ctx.env), 'kernel', 'builds', key);
  let info: KernelBuildInfo;
  if (!values['no-cache'] && fs.existsSync(path.join(cached, 'kernel.json'))) {
    p.step('config');
    p.done(`cached (${key})`);
    p.step('build');
    p.done('cached');
    info = JSON.parse(fs.readFileSync(path.join(cached, 'kernel.json'), 'utf8')) as KernelBuildInfo;
  } else {
    const work = path.join(cacheRoot(ctx.env), 'kernel', 'work', key);
    fs.rmSync(work, { recursive: true, force: true });
    p.step(`config for ${arch}`);
    const r = await makeConfig({ src, configsDir, arch, modules, buildDir: work, cross, epoch, progress: p });
    p.done(`${r.set.merged.wanted.size} symbols asked, all present`);
    p.step(`building ${ARCH_INFO[arch].target} (-j${jobs})`);
    const buildStart = performance.now();
    const image = await makeKernel({ src, arch, buildDir: work, cross, epoch, jobs, modules, progress: p });
    const release = (await runTool(findTool('make')!, ['-s', '-C', src.dir, `O=${work}`, `ARCH=${ARCH_INFO[arch].karch}`, 'kernelrelease'], { env: kbuildEnv(epoch) })).stdout.trim();
    const data = fs.readFileSync(image);
    const tmp = `${cached}.tmp-${process.pid}`;
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(tmp, { recursive: true });
    fs.writeFileSync(path.join(tmp, 'vmlinuz'), data);
    fs.writeFileSync(path.join(tmp, 'config'), r.config);
    // Symbols for reading oopses offline (the kernel has no kallsyms table: D22); add the
    // "Kernel Offset" a panic prints to the addresses.
    fs.copyFileSync(path.join(work, 'System.map'), path.join(tmp, 'System.map'));
    if (modules) {
      await runTool(findTool('make')!, ['-s', '-C', src.dir, `O=${work}`, `ARCH=${ARCH_INFO[arch].karch}`, `INSTALL_MOD_PATH=${path.join(tmp, 'modules')}`, 'modules_install'], { env: kbuildEnv(epoch) });
    }
    info = {
      arch,
      release,
      configVersion: r.set.version,
      source: src.identity,
      key,
      image: ARCH_INFO[arch].target,
      bytes: data.length,
      sha256: createHash('sha256').update(data).digest('hex'),
      modules,
      buildSeconds: Math.round((performance.now() - buildStart) / 100) / 10,
      jobs,
    };
    fs.writeFileSync(path.join(tmp, 'kernel.json'), `${JSON.stringify(info, null, 2)}\n`);
    fs.rmSync(cached, { recursive: true, force: true });
    fs.mkdirSync(path.dirname(cached), { recursive: true });
    fs.renameSync(tmp, cached);
    fs.rmSync(work, { recursive: true, force: true });
    p.done(`${release}, ${humanBytes(data.length)}`);
  }
  p.step(`writing ${output}`);
  if (!fs.existsSync(path.join(cached, 'vmlinuz'))) throw failedError(`the cached kernel ${cached} is incomplete: rerun with --no-cache`);
  await writeAtomically(output, async (tmp) => {
    fs.cpSync(cached, tmp, { recursive: true });
  });
  p.done();
  ctx.out(`${path.join(output, 'vmlinuz')}: Linux ${info.release} ${arch} ${info.image}, ${humanBytes(info.bytes)}`);
}

export const kernelCommand: Command = {
  name: 'kernel',
  summary: 'the guest kernel: config from kernel-configs/ fragments (verified), and its build',
  help: HELP,
  run,
};
