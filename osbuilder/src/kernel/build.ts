// The guest kernel: its source, its config (fragments merged from allnoconfig, then verified) and
// its build (bzImage / Image, LZ4, reproducible, cached by a hash of its inputs).
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { failedError, missingError, usageError } from '../util/errors';
import type { Progress } from '../util/progress';
import { findTool, runTool } from '../util/tools';
import { FragmentError, loadKernelConfigs, localVersion, renderMerged, type KernelArch, type KernelConfigSet } from './fragments';
import { explainMismatches, indexKconfig, parseDotConfig, verifyConfig } from './kconfig';

/** Per arch: the kernel's ARCH, the make target and where it lands, the cross compiler prefix. */
export const ARCH_INFO: Record<KernelArch, { karch: string; target: string; image: string; cross: string; uname: string }> = {
  x86_64: { karch: 'x86_64', target: 'bzImage', image: 'arch/x86/boot/bzImage', cross: 'x86_64-linux-gnu-', uname: 'x86_64' },
  arm64: { karch: 'arm64', target: 'Image', image: 'arch/arm64/boot/Image', cross: 'aarch64-linux-gnu-', uname: 'aarch64' },
};

/** Where osbuilder keeps extracted sources and finished kernels. */
export function cacheRoot(env: NodeJS.ProcessEnv): string {
  if (env.GUESTKIT_CACHE) return path.resolve(env.GUESTKIT_CACHE);
  const base = env.XDG_CACHE_HOME ? path.resolve(env.XDG_CACHE_HOME) : path.join(os.homedir(), '.cache');
  return path.join(base, 'guestkit');
}

export interface KernelSource {
  dir: string;
  /** Identity for the cache key (tarball: name, size and a digest; directory: path and Makefile). */
  identity: string;
  /** e.g. 6.1.192 */
  version: string;
}

/** The kernel version a source tree's Makefile declares. */
export function makefileVersion(makefile: string): string {
  const get = (k: string): string => new RegExp(`^${k}[ \\t]*=[ \\t]*(\\S*)`, 'm').exec(makefile)?.[1] ?? '';
  const v = [get('VERSION'), get('PATCHLEVEL'), get('SUBLEVEL')].filter((x) => x !== '').join('.');
  if (!get('VERSION')) throw usageError('not a Linux source tree (its Makefile has no VERSION)');
  return v + get('EXTRAVERSION');
}

/** The newest /usr/src/linux-source-*.tar.xz (Debian's linux-source package), or undefined. */
export function findDebianSourceTarball(dir = '/usr/src'): string | undefined {
  let names: string[];
  try {
    names = fs.readdirSync(dir).filter((n) => /^linux-source-[\d.]+\.tar\.(xz|bz2|gz)$/.test(n));
  } catch {
    return undefined;
  }
  const ver = (n: string): number[] => n.replace(/^linux-source-/, '').replace(/\.tar\..*$/, '').split('.').map(Number);
  names.sort((a, b) => {
    const x = ver(a);
    const y = ver(b);
    for (let i = 0; i < Math.max(x.length, y.length); i++) if ((x[i] ?? 0) !== (y[i] ?? 0)) return (x[i] ?? 0) - (y[i] ?? 0);
    return 0;
  });
  const last = names.at(-1);
  return last ? path.join(dir, last) : undefined;
}

async function sha256File(file: string): Promise<string> {
  const h = crypto.createHash('sha256');
  for await (const chunk of fs.createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/**
 * Resolve the kernel source: `--src DIR|TARBALL`, else Debian's linux-source tarball (installed
 * with apt-get when missing and allowed). A tarball is extracted once into the cache.
 */
export async function resolveSource(o: { src?: string; env: NodeJS.ProcessEnv; progress?: Progress; install?: boolean }): Promise<KernelSource> {
  let src = o.src;
  if (!src) {
    src = findDebianSourceTarball();
    if (!src && o.install !== false && process.getuid?.() === 0 && findTool('apt-get')) {
      o.progress?.update('installing linux-source (apt-get)');
      await runTool(findTool('apt-get')!, ['install', '-y', '-qq', '--no-install-recommends', 'linux-source'], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
      src = findDebianSourceTarball();
    }
    if (!src) throw missingError('no kernel source: Debian\'s linux-source tarball is not in /usr/src', 'apt-get install linux-source, or pass --src DIR|TARBALL');
  }
  if (!fs.existsSync(src)) throw missingError(`kernel source ${src} does not exist`);
  const st = fs.statSync(src);
  if (st.isDirectory()) {
    const mk = path.join(src, 'Makefile');
    if (!fs.existsSync(mk)) throw usageError(`${src} is not a Linux source tree (no Makefile)`);
    const makefile = fs.readFileSync(mk, 'utf8');
    return { dir: path.resolve(src), identity: `dir:${path.resolve(src)}:${crypto.createHash('sha256').update(makefile).digest('hex')}`, version: makefileVersion(makefile) };
  }
  // A tarball: extract once (to a temporary sibling, renamed when complete).
  o.progress?.update(`hashing ${path.basename(src)}`);
  const digest = await sha256File(src);
  const dest = path.join(cacheRoot(o.env), 'kernel', 'src', `${path.basename(src).replace(/\.tar\..*$/, '')}-${digest.slice(0, 12)}`);
  if (!fs.existsSync(dest)) {
    const tar = findTool('tar');
    if (!tar) throw missingError('tar is needed to extract the kernel source');
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    const tmp = `${dest}.tmp-${process.pid}`;
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(tmp);
    o.progress?.update(`extracting ${path.basename(src)}`);
    try {
      await runTool(tar, ['-xf', src, '-C', tmp, '--strip-components=1']);
      fs.renameSync(tmp, dest);
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  }
  const makefile = fs.readFileSync(path.join(dest, 'Makefile'), 'utf8');
  return { dir: dest, identity: `tarball:${path.basename(src)}:${digest}`, version: makefileVersion(makefile) };
}

/** Tools the kernel build needs (Debian package names for the hint). */
export const KERNEL_TOOLS: Record<string, string> = { make: 'make', gcc: 'gcc', flex: 'flex', bison: 'bison', bc: 'bc', perl: 'perl' };

export function requireKernelTools(o: { build: boolean; arch: KernelArch }): { cross?: string } {
  const needed = o.build ? Object.keys(KERNEL_TOOLS) : ['make', 'gcc', 'flex', 'bison'];
  const missing = needed.filter((t) => !findTool(t));
  const pkgs = missing.map((t) => KERNEL_TOOLS[t]!);
  if (o.build) {
    if (!fs.existsSync('/usr/include/libelf.h')) pkgs.push('libelf-dev');
    if (!fs.existsSync('/usr/include/openssl/ssl.h')) pkgs.push('libssl-dev');
  }
  if (pkgs.length) throw missingError(`the kernel ${o.build ? 'build' : 'config'} needs ${pkgs.join(', ')}`, `apt-get install ${pkgs.join(' ')}`);
  const info = ARCH_INFO[o.arch];
  if (info.uname === hostUname()) return {};
  if (findTool(`${info.cross}gcc`)) return { cross: info.cross };
  if (o.build) throw missingError(`building an ${o.arch} kernel on ${hostUname()} needs ${info.cross}gcc`, `apt-get install gcc-${info.cross.replace(/-$/, '')}`);
  return {}; // configuring works with the host compiler (its compiler checks then describe gcc for the host)
}

export const hostUname = (): string => ({ x64: 'x86_64', arm64: 'aarch64' } as Record<string, string>)[process.arch] ?? process.arch;

export interface ConfigResult {
  /** The final .config text. */
  config: string;
  set: KernelConfigSet;
  /** Whitelisted symbols that did not make it (reported, not fatal). */
  whitelistedMissing: string[];
}

function makeArgs(src: KernelSource, buildDir: string, arch: KernelArch, cross?: string): string[] {
  return ['-C', src.dir, `O=${buildDir}`, `ARCH=${ARCH_INFO[arch].karch}`, ...(cross ? [`CROSS_COMPILE=${cross}`] : [])];
}

/** Reproducible-build environment for make (no host name, user or time leaks into the kernel). */
export function kbuildEnv(epoch: number): NodeJS.ProcessEnv {
  return {
    ...process.env,
    KBUILD_BUILD_TIMESTAMP: new Date(epoch * 1000).toUTCString(),
    KBUILD_BUILD_USER: 'guestkit',
    KBUILD_BUILD_HOST: 'guestkit',
    KBUILD_BUILD_VERSION: '1',
    LC_ALL: 'C',
    TZ: 'UTC',
  };
}

/**
 * Make the config in `buildDir`: allnoconfig with the merged fragments as KCONFIG_ALLCONFIG, then
 * olddefconfig; verify every asked symbol. Throws FAILED with the list of missing symbols.
 */
export async function makeConfig(o: {
  src: KernelSource;
  configsDir: string;
  arch: KernelArch;
  modules?: boolean;
  buildDir: string;
  cross?: string;
  epoch: number;
  progress?: Progress;
}): Promise<ConfigResult> {
  let set: KernelConfigSet;
  try {
    set = loadKernelConfigs(o.configsDir, o.arch, { modules: o.modules });
  } catch (err) {
    if (err instanceof FragmentError) throw failedError(`kernel-configs: ${err.message}`);
    throw err;
  }
  fs.mkdirSync(o.buildDir, { recursive: true });
  const merged = path.join(o.buildDir, 'guestkit-merged.conf');
  fs.writeFileSync(
    merged,
    renderMerged(set.merged, [
      ['CONFIG_LOCALVERSION', `"${localVersion(set.version)}"`],
      ['CONFIG_LOCALVERSION_AUTO', 'n'],
      ...(o.modules ? [] : ([['CONFIG_MODULES', 'n']] as Array<[string, string]>)),
    ]),
  );
  const make = findTool('make')!;
  const args = makeArgs(o.src, o.buildDir, o.arch, o.cross);
  const env = kbuildEnv(o.epoch);
  o.progress?.update('allnoconfig + fragments');
  await runTool(make, [...args, `KCONFIG_ALLCONFIG=${merged}`, 'allnoconfig'], { env });
  o.progress?.update('olddefconfig');
  await runTool(make, [...args, 'olddefconfig'], { env });
  const config = fs.readFileSync(path.join(o.buildDir, '.config'), 'utf8');
  const final = parseDotConfig(config);
  const mismatches = verifyConfig(set.merged.wanted, final, set.whitelist);
  const fatal = mismatches.filter((m) => !m.whitelisted);
  if (fatal.length) {
    const lines = explainMismatches(fatal, indexKconfig(o.src.dir, fatal.map((m) => m.symbol)), final);
    throw failedError(`${fatal.length} symbol${fatal.length === 1 ? '' : 's'} asked by the fragments ${fatal.length === 1 ? 'is' : 'are'} not in the final config:\n  ${lines.join('\n  ')}`, 'fix the fragment, or list a symbol that this kernel renamed or removed in kernel-configs/whitelist.conf');
  }
  return { config, set, whitelistedMissing: mismatches.filter((m) => m.whitelisted).map((m) => m.symbol) };
}

/** The cache key of a kernel build: source identity, fragments digest, arch, options. */
export function buildKey(o: { src: KernelSource; configsDigest: string; arch: KernelArch; modules: boolean; epoch: number; cross?: string }): string {
  return crypto
    .createHash('sha256')
    .update(JSON.stringify({ v: 1, src: o.src.identity, fragments: o.configsDigest, arch: o.arch, modules: o.modules, epoch: o.epoch, cross: o.cross ?? '' }))
    .digest('hex')
    .slice(0, 16);
}

/** Run make for the image, reporting compiled objects as progress. */
export async function makeKernel(o: { src: KernelSource; arch: KernelArch; buildDir: string; cross?: string; epoch: number; jobs: number; modules: boolean; progress?: Progress }): Promise<string> {
  const make = findTool('make')!;
  const targets = [ARCH_INFO[o.arch].target, ...(o.modules ? ['modules'] : [])];
  let objects = 0;
  let partial = '';
  const onOutput = (s: string): void => {
    partial += s;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) {
      const m = /^\s+(CC|AS|LD|AR)\s+(\S+)/.exec(l);
      if (m) {
        objects++;
        o.progress?.update(`${objects} objects, ${m[2]}`);
      }
    }
  };
  try {
    await runTool(make, [...makeArgs(o.src, o.buildDir, o.arch, o.cross), `-j${o.jobs}`, ...targets], { env: kbuildEnv(o.epoch), onStdout: onOutput });
  } catch (err) {
    throw failedError(`the kernel build failed: ${(err as Error).message}`);
  }
  return path.join(o.buildDir, ARCH_INFO[o.arch].image);
}
