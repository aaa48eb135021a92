// Kernel config fragments (kernel-configs/): parsing, selection per arch, merging, the whitelist
// and the config version. Pure functions over file contents, plus a loader for the folder.
//
// Layout: kernel-configs/fragments/common/*.conf, fragments/<arch>/*.conf (x86_64, arm64), and
// fragments/modules/*.conf (only with --modules); kernel-configs/whitelist.conf; and
// kernel-configs/VERSION, which records the config version and a digest of every fragment and
// the whitelist, so a change to a fragment without a version bump fails the test suite.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export const KERNEL_ARCHES = ['x86_64', 'arm64'] as const;
export type KernelArch = (typeof KERNEL_ARCHES)[number];

export class FragmentError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FragmentError';
  }
}

/** A symbol's value as Kconfig writes it: y, m, n, a number, or a quoted string. */
export type ConfigValue = string;

export interface Fragment {
  /** Path relative to the fragments folder, e.g. common/fs.conf. */
  file: string;
  /** Arches this fragment is excluded from (first-line tag `# !arm64`, several separated by spaces). */
  excluded: string[];
  /** CONFIG_ name -> value, in file order. */
  entries: Map<string, ConfigValue>;
}

const SYMBOL = /^CONFIG_[A-Za-z0-9_]+$/;

/** Parse one fragment (`CONFIG_X=y`, `# CONFIG_X is not set`, comments, blank lines). */
export function parseFragment(text: string, file: string): Fragment {
  const lines = text.split('\n');
  const excluded: string[] = [];
  const tag = /^#\s*((?:!\S+\s*)+)$/.exec(lines[0]?.trim() ?? '');
  if (tag) for (const t of tag[1]!.trim().split(/\s+/)) excluded.push(t.slice(1));
  const entries = new Map<string, ConfigValue>();
  lines.forEach((raw, i) => {
    const line = raw.trim();
    const where = `${file}:${i + 1}`;
    let sym: string;
    let value: string;
    const unset = /^#\s*(CONFIG_\S+) is not set$/.exec(line);
    if (unset) {
      sym = unset[1]!;
      value = 'n';
    } else if (line === '' || line.startsWith('#')) {
      return;
    } else {
      const eq = line.indexOf('=');
      if (eq < 0) throw new FragmentError(`${where}: expected CONFIG_NAME=value, got ${JSON.stringify(line)}`);
      sym = line.slice(0, eq);
      value = line.slice(eq + 1);
      if (!/^(y|m|n|-?\d+|0x[0-9a-fA-F]+|"(?:[^"\\]|\\.)*")$/.test(value)) throw new FragmentError(`${where}: bad value ${JSON.stringify(value)} for ${sym}`);
    }
    if (!SYMBOL.test(sym)) throw new FragmentError(`${where}: bad symbol name ${JSON.stringify(sym)}`);
    if (entries.has(sym)) throw new FragmentError(`${where}: ${sym} is set twice in the same fragment`);
    entries.set(sym, value);
  });
  return { file, excluded, entries };
}

/** What a whitelist allows to be missing from the final config (`CONFIG_X  # reason` lines). */
export function parseWhitelist(text: string): Set<string> {
  const out = new Set<string>();
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*$/, '').trim();
    if (!line) return;
    if (!SYMBOL.test(line)) throw new FragmentError(`whitelist.conf:${i + 1}: expected a CONFIG_ name, got ${JSON.stringify(line)}`);
    out.add(line);
  });
  return out;
}

export interface MergedFragments {
  /** Fragments used, in merge order. */
  fragments: string[];
  /** Fragments skipped for this arch (their `# !arch` tag). */
  skipped: string[];
  /** The asked value of every symbol, and the fragment that asked. */
  wanted: Map<string, { value: ConfigValue; file: string }>;
}

/**
 * Merge fragments (already in merge order). A symbol asked by two fragments with different values
 * is an error naming both (fragments are concerns, not overrides); the same value twice is fine.
 */
export function mergeFragments(fragments: Fragment[], arch: string): MergedFragments {
  const wanted = new Map<string, { value: ConfigValue; file: string }>();
  const used: string[] = [];
  const skipped: string[] = [];
  for (const f of fragments) {
    if (f.excluded.includes(arch)) {
      skipped.push(f.file);
      continue;
    }
    used.push(f.file);
    for (const [sym, value] of f.entries) {
      const prev = wanted.get(sym);
      if (prev && prev.value !== value) throw new FragmentError(`${sym} is ${prev.value} in ${prev.file} but ${value} in ${f.file}`);
      if (!prev) wanted.set(sym, { value, file: f.file });
    }
  }
  return { fragments: used, skipped, wanted };
}

/** The merged fragment as a Kconfig input file (KCONFIG_ALLCONFIG), with extra symbols appended. */
export function renderMerged(m: MergedFragments, extra: Array<[string, ConfigValue]> = []): string {
  const lines = [`# merged by osbuilder from: ${m.fragments.join(' ')}`];
  for (const [sym, { value }] of m.wanted) lines.push(value === 'n' ? `# ${sym} is not set` : `${sym}=${value}`);
  for (const [sym, value] of extra) lines.push(value === 'n' ? `# ${sym} is not set` : `${sym}=${value}`);
  return `${lines.join('\n')}\n`;
}

export interface ConfigVersion {
  version: number;
  /** The digest recorded next to it. */
  digest: string;
}

/** kernel-configs/VERSION: `version=N` and `fragments-sha256=HEX` lines. */
export function parseVersionFile(text: string): ConfigVersion {
  const v = /^version=(\d+)$/m.exec(text);
  const d = /^fragments-sha256=([0-9a-f]{64})$/m.exec(text);
  if (!v || !d) throw new FragmentError('kernel-configs/VERSION must have version=N and fragments-sha256=HEX lines');
  return { version: Number(v[1]), digest: d[1]! };
}

/** The folder's fragment files (relative paths, sorted: common, arches, modules). */
export function listFragmentFiles(configsDir: string): string[] {
  const root = path.join(configsDir, 'fragments');
  const out: string[] = [];
  const dirs = fs.existsSync(root) ? fs.readdirSync(root).sort() : [];
  for (const d of dirs) {
    const full = path.join(root, d);
    if (!fs.statSync(full).isDirectory()) continue;
    for (const f of fs.readdirSync(full).sort()) if (f.endsWith('.conf')) out.push(`${d}/${f}`);
  }
  return out;
}

/** sha256 over every fragment (path and contents) and the whitelist: what VERSION must record. */
export function fragmentsDigest(configsDir: string): string {
  const h = crypto.createHash('sha256');
  for (const f of listFragmentFiles(configsDir)) {
    h.update(`${f}\0`);
    h.update(fs.readFileSync(path.join(configsDir, 'fragments', f)));
    h.update('\0');
  }
  const wl = path.join(configsDir, 'whitelist.conf');
  h.update('whitelist.conf\0');
  if (fs.existsSync(wl)) h.update(fs.readFileSync(wl));
  return h.digest('hex');
}

export interface KernelConfigSet {
  configsDir: string;
  version: number;
  merged: MergedFragments;
  whitelist: Set<string>;
}

/** Load and merge the fragments for an arch (common, then the arch's own, then modules/ if asked). */
export function loadKernelConfigs(configsDir: string, arch: KernelArch, o: { modules?: boolean } = {}): KernelConfigSet {
  const files = listFragmentFiles(configsDir);
  if (files.length === 0) throw new FragmentError(`no fragments under ${path.join(configsDir, 'fragments')}`);
  const order = (f: string): number => (f.startsWith('common/') ? 0 : f.startsWith(`${arch}/`) ? 1 : f.startsWith('modules/') ? 2 : 3);
  const chosen = files.filter((f) => order(f) < 2 || (o.modules && order(f) === 2)).sort((a, b) => order(a) - order(b) || (a < b ? -1 : 1));
  const fragments = chosen.map((f) => parseFragment(fs.readFileSync(path.join(configsDir, 'fragments', f), 'utf8'), f));
  const wlFile = path.join(configsDir, 'whitelist.conf');
  const whitelist = fs.existsSync(wlFile) ? parseWhitelist(fs.readFileSync(wlFile, 'utf8')) : new Set<string>();
  const version = parseVersionFile(fs.readFileSync(path.join(configsDir, 'VERSION'), 'utf8'));
  const digest = fragmentsDigest(configsDir);
  if (digest !== version.digest) {
    throw new FragmentError(`kernel-configs/VERSION records fragments-sha256=${version.digest.slice(0, 12)}... but the fragments hash to ${digest.slice(0, 12)}...: bump version= and record the new digest`);
  }
  return { configsDir, version: version.version, merged: mergeFragments(fragments, arch), whitelist };
}

/** The local version stamped into the kernel (uname -r suffix) for a config version. */
export const localVersion = (version: number): string => `-guestkit.${version}`;
