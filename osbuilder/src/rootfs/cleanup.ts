// Remove what a guest never uses, as Kata's rootfs builder does: documentation, man and info
// pages, locales, package manager caches and lists, logs, temporary files. Paths are guest
// paths resolved inside the tree; "DIR/*" empties DIR (keeps the directory), "DIR/*.ext"
// removes the matching entries of DIR, anything else is removed outright.
import fs from 'node:fs';
import path from 'node:path';
import { resolveInRoot, treeSize } from './fsroot';

export const DEFAULT_CLEANUP = [
  '/usr/share/doc/*',
  '/usr/share/man/*',
  '/usr/share/info/*',
  '/usr/share/locale/*',
  '/usr/share/i18n/*',
  '/usr/share/lintian/*',
  '/usr/share/linda/*',
  '/usr/share/bug/*',
  '/var/cache/apt/*',
  '/var/lib/apt/lists/*',
  '/var/cache/debconf/*-old',
  '/var/lib/dpkg/*-old',
  '/var/cache/ldconfig/aux-cache',
  '/var/cache/dnf/*',
  '/var/cache/apk/*',
  '/var/cache/man/*',
  '/var/log/*',
  '/tmp/*',
  '/var/tmp/*',
  '/root/.cache',
];

/** Glob: only '*' inside the last component. */
function matcher(pattern: string): RegExp {
  return new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`);
}

/** Remove `paths` (guest paths, see above) from the tree; returns the bytes freed. */
export function cleanupRootfs(root: string, paths: readonly string[] = DEFAULT_CLEANUP): { bytes: number; removed: number } {
  let bytes = 0;
  let removed = 0;
  const rm = (host: string): void => {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(host);
    } catch {
      return;
    }
    bytes += st.isDirectory() ? treeSize(host).bytes : st.size;
    fs.rmSync(host, { recursive: true, force: true });
    removed++;
  };
  for (const p of paths) {
    const dir = path.posix.dirname(p);
    const base = path.posix.basename(p);
    if (!base.includes('*')) {
      rm(resolveInRoot(root, p, { followLast: false }));
      continue;
    }
    // The directory's parents are followed inside the tree (/var/run -> /run); the directory
    // itself is not when it is a link (a /usr/share/doc -> / would empty the whole tree).
    const hostDir = resolveInRoot(root, dir, { followLast: false });
    let names: string[];
    try {
      if (!fs.lstatSync(hostDir).isDirectory()) continue;
      names = fs.readdirSync(hostDir);
    } catch {
      continue;
    }
    const re = matcher(base);
    for (const n of names.sort()) if (re.test(n)) rm(path.join(hostDir, n));
  }
  return { bytes, removed };
}
