// Make the executables of a tree runnable: every library (and program interpreter) they need
// that the tree cannot provide is copied from the build machine. For `minimal` that is all of
// them; for a package-based distro only what the agent's runtime brings (e.g. a library node
// needs that the base system lacks). Resolution is elfdeps' (ld.so's order), run inside the tree.
import fs from 'node:fs';
import path from 'node:path';
import { defaultLibDirs, LibResolver, type ElfInfo } from './elfdeps';
import { copyFileInRoot, resolveInRoot } from './fsroot';

export interface CompleteResult {
  /** Guest paths copied from the build machine, in order. */
  copied: string[];
  /** What neither the tree nor the build machine provides. */
  missing: Array<{ name: string; neededBy: string }>;
}

/**
 * Copy into `root` the libraries `inputs` (guest paths of ELF files in the tree) need and the
 * tree lacks, from `hostRoot` (default /), until the closure is complete. A library is copied
 * to the path the build machine's loader finds it at when that directory is one the guest's
 * loader searches by default, else into the first default directory. Nothing in the tree is
 * overwritten.
 */
export function completeLibraries(root: string, inputs: string[], o: { hostRoot?: string; onCopy?: (guestPath: string) => void } = {}): CompleteResult {
  const host = new LibResolver({ root: o.hostRoot ?? '/' });
  const copied: string[] = [];
  for (let pass = 0; ; pass++) {
    const tree = new LibResolver({ root });
    const c = tree.closure(inputs);
    if (c.missing.length === 0 || pass > 64) return { copied, missing: c.missing };
    let progress = false;
    // Program interpreters first: once there, a DT_NEEDED naming one (libc's, node's) is
    // satisfied by its soname and must not be copied a second time under its cache path.
    const interps = c.missing.filter((m) => m.name.includes('/') && m.neededBy !== '(input)');
    for (const m of interps.length > 0 ? interps : c.missing) {
      if (m.neededBy === '(input)') continue;
      const from = tree.info(m.neededBy);
      if (!from) continue;
      const dest = m.name.includes('/') ? hostFileFor(host, m.name) : hostLibFor(host, m.name, from);
      if (!dest) continue;
      const target = dest.guest;
      if (fs.existsSync(resolveInRoot(root, target))) continue; // there, but unusable: reported as missing
      copyFileInRoot(root, dest.hostFile, target, fs.statSync(dest.hostFile).mode & 0o777);
      copied.push(target);
      o.onCopy?.(target);
      progress = true;
    }
    if (!progress) return { copied, missing: c.missing.filter((m) => m.neededBy !== '(input)') };
  }
}

function hostFileFor(host: LibResolver, guestPath: string): { guest: string; hostFile: string } | undefined {
  const f = resolveInRoot(host.root, guestPath);
  return fs.existsSync(f) && fs.statSync(f).isFile() ? { guest: guestPath, hostFile: f } : undefined;
}

function hostLibFor(host: LibResolver, name: string, from: ElfInfo): { guest: string; hostFile: string } | undefined {
  // The tree's rpaths mean nothing on the build machine: only its cache and default directories.
  const found = host.resolve(name, { path: '/', info: { ...from, rpath: [], runpath: [] } });
  if (!found) return undefined;
  const hostFile = resolveInRoot(host.root, found);
  const defaults = defaultLibDirs(from.machine, from.bits);
  const guest = defaults.includes(path.posix.dirname(found)) ? found : path.posix.join(defaults[1] ?? defaults[0]!, name);
  return { guest, hostFile };
}
