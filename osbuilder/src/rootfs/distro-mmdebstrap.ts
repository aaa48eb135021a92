// Package-based bases: Debian and Ubuntu through mmdebstrap, other distros through their own
// package manager run on the build machine (the manifest's "command" base: apk, dnf...).
//
// mmdebstrap: `mmdebstrap --variant=minbase --include=crun,... SUITE TARGET MIRROR...`, with
// dpkg told not to unpack documentation, man pages and locales at all (they are removed again
// by cleanup, for files that escape the filters). Its "I: ..." lines (it prints no progress
// bars when its stderr is not a terminal) become progress updates.
import fs from 'node:fs';
import { missingError } from '../util/errors';
import { findTool, requireTool, runTool, type RunResult } from '../util/tools';
import type { CommandSpec, MmdebstrapSpec } from './manifest';
import { renderTemplate } from './template';

export type RunTool = typeof runTool;

/** uname -m names to Debian architecture names. */
export const DEB_ARCH: Record<string, string> = { x86_64: 'amd64', aarch64: 'arm64', ppc64le: 'ppc64el', s390x: 's390x', riscv64: 'riscv64' };

/** Where mmdebstrap keeps its own hooks (merged-usr, ...). */
export const MMDEBSTRAP_HOOKS = '/usr/share/mmdebstrap/hooks';

export function hookDir(hook: string): string {
  return hook.startsWith('/') ? hook : `${MMDEBSTRAP_HOOKS}/${hook}`;
}

export const DPKG_EXCLUDES = ['/usr/share/doc/*', '/usr/share/man/*', '/usr/share/info/*', '/usr/share/locale/*', '/usr/share/lintian/*', '/usr/share/linda/*'];

export interface PackageBuild {
  target: string;
  osVersion: string;
  arch: string;
  packages: string[];
  env: NodeJS.ProcessEnv;
  /** A line of the tool's output (stderr). */
  onLine?: (line: string) => void;
  run?: RunTool;
  /** The tool's path (default: found in PATH, MISSING when it is not there). */
  tool?: string;
}

export function mmdebstrapArgs(spec: MmdebstrapSpec, b: Pick<PackageBuild, 'target' | 'osVersion' | 'arch' | 'packages'>): string[] {
  const debArch = DEB_ARCH[b.arch] ?? b.arch;
  const view = { osVersion: b.osVersion, arch: b.arch, debArch };
  const args = [
    `--variant=${spec.variant}`,
    `--arch=${debArch}`,
    `--components=${spec.components.join(',')}`,
    ...DPKG_EXCLUDES.map((p) => `--dpkgopt=path-exclude=${p}`),
    '--aptopt=Acquire::Retries "3"',
  ];
  if (b.packages.length > 0) args.push(`--include=${b.packages.join(',')}`);
  if (spec.keyring) args.push(`--keyring=${spec.keyring}`);
  for (const h of spec.hooks) args.push(`--hook-dir=${hookDir(h)}`);
  args.push(b.osVersion, b.target, ...spec.mirrors.map((m, i) => renderTemplate(m, view, { name: `base.mirrors[${i}]` })));
  return args;
}

/** Split a stream of chunks into lines. */
export function lineSplitter(onLine: (line: string) => void): (chunk: string) => void {
  let buf = '';
  return (chunk) => {
    buf += chunk;
    let i: number;
    while ((i = buf.search(/[\r\n]/)) >= 0) {
      const line = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (line) onLine(line);
    }
  };
}

/**
 * As root, mmdebstrap mounts /proc, /sys (rbind) and device nodes into the tree while it works.
 * It runs in a private mount namespace of its own (`unshare --mount --propagation private`), so
 * those mounts never exist outside it: when mmdebstrap dies, however it dies, they are gone, and
 * removing a half-built tree can never reach into the host's /sys or /dev through them.
 */
export function privateMountsPrefix(): string[] {
  const unshare = process.getuid?.() === 0 ? findTool('unshare') : undefined;
  return unshare ? [unshare, '--mount', '--propagation', 'private', '--'] : [];
}

export async function buildMmdebstrap(spec: MmdebstrapSpec, b: PackageBuild): Promise<RunResult> {
  const tool = b.tool ?? requireTool('mmdebstrap', 'to build a Debian-based rootfs');
  checkMmdebstrapInputs(spec);
  const run = b.run ?? runTool;
  const [file, ...pre] = [...privateMountsPrefix(), tool];
  return run(file!, [...pre, ...mmdebstrapArgs(spec, b)], { env: b.env, onStderr: b.onLine ? lineSplitter(b.onLine) : undefined });
}

/** The archive keyring and the hooks must be there (MISSING, with the manifest's hint). */
export function checkMmdebstrapInputs(spec: MmdebstrapSpec): void {
  if (spec.keyring && !fs.existsSync(spec.keyring)) throw missingError(`the archive keyring ${spec.keyring} is not installed`, spec.keyringHint);
  for (const h of spec.hooks) {
    if (!fs.existsSync(hookDir(h))) throw missingError(`the mmdebstrap hook directory ${hookDir(h)} does not exist`, 'apt-get install mmdebstrap (1.0 or later)');
  }
}

/** The package manager of a "command" base (MISSING, with the manifest's hint). */
export function requireCommandTool(spec: CommandSpec): string {
  const tool = findTool(spec.tool);
  if (!tool) throw missingError(`${spec.tool} is needed to build this rootfs but is not installed`, spec.toolHint);
  return tool;
}

export function commandArgs(spec: CommandSpec, b: Pick<PackageBuild, 'target' | 'osVersion' | 'arch' | 'packages'>): string[] {
  const view = { rootfs: b.target, osVersion: b.osVersion, arch: b.arch, debArch: DEB_ARCH[b.arch] ?? b.arch };
  return [...spec.args.map((a, i) => renderTemplate(a, view, { name: `base.args[${i}]` })), ...b.packages];
}

/** A distro's own package manager, installing into an empty target directory. */
export async function buildWithCommand(spec: CommandSpec, b: PackageBuild): Promise<RunResult> {
  const tool = b.tool ?? requireCommandTool(spec);
  fs.mkdirSync(b.target, { recursive: true });
  const run = b.run ?? runTool;
  const split = b.onLine ? lineSplitter(b.onLine) : undefined;
  return run(tool, commandArgs(spec, b), { env: b.env, onStderr: split });
}
