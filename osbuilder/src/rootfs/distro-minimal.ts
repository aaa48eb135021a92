// The `minimal` base: no package manager. A merged-/usr skeleton (bin, sbin, lib, lib64 are
// links into /usr), the mount points the agent uses (/proc /sys /dev /run /tmp), and executables
// copied from the build machine (crun, busybox, and whatever EXTRA_PKGS names), busybox's applets
// as links to it. Their libraries are copied afterwards with the agent's (libs.ts).
import fs from 'node:fs';
import path from 'node:path';
import { failedError, missingError } from '../util/errors';
import { findTool, runTool, TOOL_PACKAGES } from '../util/tools';
import { copyFileInRoot, existsInRoot, mkdirInRoot, resolveInRoot, symlinkInRoot } from './fsroot';
import { LibResolver, readElf } from './elfdeps';
import type { MinimalSpec } from './manifest';

export const MINIMAL_DIRS: Array<[string, number]> = [
  ['/usr/bin', 0o755],
  ['/usr/sbin', 0o755],
  ['/usr/lib', 0o755],
  ['/etc', 0o755],
  ['/proc', 0o555],
  ['/sys', 0o555],
  ['/dev', 0o755],
  ['/run', 0o755],
  ['/tmp', 0o1777],
  ['/var/tmp', 0o1777],
  ['/var/lib', 0o755],
  ['/root', 0o700],
  ['/mnt', 0o755],
];

/** Applets never linked: the agent is the init. */
const SKIP_APPLETS = new Set(['init', 'linuxrc']);

/** The skeleton: directories and the merged-/usr links (lib64 on 64-bit machines). */
export function makeSkeleton(root: string, bits64: boolean): void {
  fs.mkdirSync(root, { recursive: true });
  fs.chmodSync(root, 0o755);
  for (const [d, mode] of MINIMAL_DIRS) mkdirInRoot(root, d, mode);
  const links: Array<[string, string]> = [
    ['usr/bin', '/bin'],
    ['usr/sbin', '/sbin'],
    ['usr/lib', '/lib'],
  ];
  if (bits64) {
    mkdirInRoot(root, '/usr/lib64');
    links.push(['usr/lib64', '/lib64']);
  }
  for (const [target, p] of links) symlinkInRoot(root, target, p);
}

export interface MinimalResult {
  /** Guest paths of the executables copied (inputs of the library closure). */
  executables: string[];
  /** Libraries asked for by name (SECCOMP=yes), copied to where the build machine has them. */
  extraLibs: string[];
  /** What was copied, for osbuilder.yaml ("crun", "busybox", ...). */
  packages: string[];
  applets: number;
}

/** Copy the executables and link the applets. `extra`: EXTRA_PKGS (executable names or absolute paths). */
export async function buildMinimal(
  root: string,
  spec: MinimalSpec,
  o: { extra: string[]; seccomp: boolean; onStep?: (detail: string) => void },
): Promise<MinimalResult> {
  const executables: string[] = [];
  const packages: string[] = [];
  let busybox: string | undefined;
  for (const name of [...spec.copy, ...o.extra]) {
    const src = findTool(name);
    if (!src) {
      const pkg = TOOL_PACKAGES[path.basename(name)];
      throw missingError(`${name} is needed in the minimal rootfs but is not installed on this machine`, pkg ? `apt-get install ${pkg}` : undefined);
    }
    const real = fs.realpathSync(src);
    if (!readElf(real)) throw failedError(`${src} is not an ELF executable (minimal copies executables with their libraries only)`);
    const dest = `/usr/bin/${path.basename(name)}`;
    copyFileInRoot(root, real, dest, 0o755);
    executables.push(dest);
    packages.push(path.basename(name));
    if (path.basename(name) === 'busybox') busybox = real;
    o.onStep?.(`copied ${dest}`);
  }
  const extraLibs: string[] = [];
  if (o.seccomp && spec.seccompLibs.length > 0) {
    const like = executables.map((e) => readElf(path.join(root, e))).find((i) => i?.dynamic);
    const host = new LibResolver();
    for (const lib of spec.seccompLibs) {
      const found = like ? host.resolve(lib, { path: '/', info: { ...like, rpath: [], runpath: [] } }) : undefined;
      if (!found) throw missingError(`${lib} (SECCOMP=yes) is not installed on this machine`, 'apt-get install libseccomp2, or SECCOMP=no');
      if (!existsInRoot(root, found)) copyFileInRoot(root, fs.realpathSync(found), found, 0o644);
      extraLibs.push(found);
    }
  }
  let applets = 0;
  if (busybox) applets = await linkApplets(root, busybox, spec.applets);
  return { executables, extraLibs, packages, applets };
}

/** Link busybox's applets (its --list-full places them) to /usr/bin/busybox; existing paths are kept. */
export async function linkApplets(root: string, busybox: string, which: 'all' | string[]): Promise<number> {
  const r = await runTool(busybox, ['--list-full'], { allowFail: true });
  const full = r.code === 0 ? r.stdout.split('\n').map((l) => l.trim()).filter(Boolean) : [];
  const byName = new Map(full.map((p) => [path.posix.basename(p), `/${p}`]));
  const names = which === 'all' ? [...byName.keys()] : which;
  let n = 0;
  for (const name of [...names].sort()) {
    if (SKIP_APPLETS.has(name) || !/^[\w.[-]+$/.test(name)) continue;
    if (which !== 'all' && full.length > 0 && !byName.has(name)) throw failedError(`busybox has no applet ${JSON.stringify(name)}`);
    const p = byName.get(name) ?? `/usr/bin/${name}`;
    if (existsInRoot(root, p) || isLink(root, p)) continue;
    symlinkInRoot(root, '/usr/bin/busybox', p);
    n++;
  }
  return n;
}

function isLink(root: string, p: string): boolean {
  try {
    return fs.lstatSync(resolveInRoot(root, p, { followLast: false })).isSymbolicLink();
  } catch {
    return false;
  }
}
