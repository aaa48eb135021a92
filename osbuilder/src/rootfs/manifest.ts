// A distro is a folder rootfs-templates/<distro>/ holding manifest.json (how to get the base
// system, which packages, init kinds, architectures, whether it is tested here) and files/, the
// mustache templates of the files osbuilder writes into the tree. This module reads and
// validates a manifest; every problem is reported with the field it is in.
import fs from 'node:fs';
import path from 'node:path';
import { missingError, usageError } from '../util/errors';

/** How the agent is started: it is /sbin/init itself, or systemd starts it from a unit. */
export type InitKind = 'agent' | 'systemd';
export type When = 'always' | 'agent-init' | 'systemd';

export interface FileEntry {
  /** Absolute path in the tree. */
  dest: string;
  /** Template path, relative to the distro's files/ folder. */
  template: string;
  mode: number;
  when: When;
}

export interface MmdebstrapSpec {
  kind: 'mmdebstrap';
  /** sources.list lines or mirror URLs (templates: {{osVersion}}, {{arch}}, {{debArch}}). */
  mirrors: string[];
  variant: string;
  components: string[];
  /** A keyring file the archive is signed with, and how to get it when it is missing. */
  keyring?: string;
  keyringHint?: string;
  /** mmdebstrap hook directories: a name of mmdebstrap's own (/usr/share/mmdebstrap/hooks/NAME) or a path. */
  hooks: string[];
}

export interface CommandSpec {
  kind: 'command';
  /** The package manager run on the build machine (e.g. apk, dnf), and how to get it when it is missing. */
  tool: string;
  toolHint?: string;
  /** Its arguments (templates: {{rootfs}}, {{osVersion}}, {{arch}}); the packages are appended. */
  args: string[];
}

export interface MinimalSpec {
  kind: 'minimal';
  /** Executables copied from the build machine (found in PATH), with their libraries. */
  copy: string[];
  /** Libraries copied (by name, found as the loader finds them) when SECCOMP=yes. */
  seccompLibs: string[];
  /** busybox applet links: "all" (busybox --list-full) or the applet names. */
  applets: 'all' | string[];
}

export type BaseSpec = MmdebstrapSpec | CommandSpec | MinimalSpec;

export interface DistroManifest {
  /** The folder name. */
  name: string;
  /** The folder. */
  dir: string;
  description: string;
  /** OS_VERSION when none is given (a suite for Debian, a release number for Fedora...). */
  osVersion: string;
  /** OS_VERSION must match this (a regular expression source; default: a plain word). */
  osVersionPattern: string;
  /** Architectures (uname -m names) the distro can be built for. */
  arch: string[];
  /** Init kinds it supports; AGENT_INIT=yes needs 'agent', AGENT_INIT=no needs 'systemd'. */
  init: InitKind[];
  base: BaseSpec;
  /** Installed into every rootfs of the distro. */
  packages: string[];
  /** Added when SECCOMP=yes. */
  seccompPackages: string[];
  /** Added when AGENT_INIT=no (systemd and what makes it /sbin/init). */
  systemdPackages: string[];
  /** Extra cleanup (guest paths; a trailing /* removes a directory's contents). */
  cleanup: string[];
  files: FileEntry[];
  /** Never built here (cannot be fetched from this build machine): shown as untested. */
  untested: boolean;
  /** The build is allowed to fail (CI does not fail on it). */
  mayFail: boolean;
}

export const DISTRO_NAME_RE = /^[a-z][a-z0-9-]{0,30}[a-z0-9]$/;
export const PACKAGE_RE = /^[A-Za-z0-9][A-Za-z0-9+._:-]*$/;
const ARCHES = ['x86_64', 'aarch64', 'ppc64le', 's390x', 'riscv64'];
const WHEN: When[] = ['always', 'agent-init', 'systemd'];

export class ManifestError extends Error {
  override name = 'ManifestError';
}

type Obj = Record<string, unknown>;

class Reader {
  constructor(
    private readonly file: string,
    private readonly o: Obj,
    private readonly prefix = '',
  ) {}
  fail(field: string, msg: string): never {
    throw new ManifestError(`${this.file}: ${this.prefix}${field}: ${msg}`);
  }
  has(k: string): boolean {
    return this.o[k] !== undefined;
  }
  raw(k: string): unknown {
    return this.o[k];
  }
  str(k: string, def?: string): string {
    const v = this.o[k] ?? def;
    if (typeof v !== 'string' || v === '') this.fail(k, v === undefined ? 'missing' : 'must be a non-empty string');
    return v;
  }
  optStr(k: string): string | undefined {
    return this.has(k) ? this.str(k) : undefined;
  }
  bool(k: string, def: boolean): boolean {
    const v = this.o[k] ?? def;
    if (typeof v !== 'boolean') this.fail(k, 'must be true or false');
    return v;
  }
  strs(k: string, def?: string[], re?: RegExp): string[] {
    const v = this.o[k] ?? def;
    if (!Array.isArray(v) || v.some((x) => typeof x !== 'string' || x === '')) this.fail(k, v === undefined ? 'missing' : 'must be a list of strings');
    if (re) for (const x of v as string[]) if (!re.test(x)) this.fail(k, `bad entry ${JSON.stringify(x)}`);
    return v as string[];
  }
  obj(k: string): Reader {
    const v = this.o[k];
    if (v === null || typeof v !== 'object' || Array.isArray(v)) this.fail(k, v === undefined ? 'missing' : 'must be an object');
    return new Reader(this.file, v as Obj, `${this.prefix}${k}.`);
  }
  list(k: string): Reader[] {
    const v = this.o[k] ?? [];
    if (!Array.isArray(v)) this.fail(k, 'must be a list');
    return v.map((x, i) => {
      if (x === null || typeof x !== 'object' || Array.isArray(x)) this.fail(`${k}[${i}]`, 'must be an object');
      return new Reader(this.file, x as Obj, `${this.prefix}${k}[${i}].`);
    });
  }
  onlyKeys(keys: string[]): void {
    for (const k of Object.keys(this.o)) if (!keys.includes(k)) this.fail(k, `unknown field (known: ${keys.join(', ')})`);
  }
}

const TOP_KEYS = [
  '$comment', 'description', 'osVersion', 'osVersionPattern', 'arch', 'init', 'base', 'packages', 'seccompPackages',
  'systemdPackages', 'cleanup', 'files', 'untested', 'mayFail',
];

/** Validate a parsed manifest.json of distro `name` in `dir`. */
export function parseManifest(json: unknown, name: string, dir: string): DistroManifest {
  const file = path.join(dir, 'manifest.json');
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new ManifestError(`${file}: must be a JSON object`);
  const r = new Reader(file, json as Obj);
  r.onlyKeys(TOP_KEYS);
  const arch = r.strs('arch');
  for (const a of arch) if (!ARCHES.includes(a)) r.fail('arch', `unknown architecture ${JSON.stringify(a)} (known: ${ARCHES.join(', ')})`);
  const init = r.strs('init', ['agent']);
  for (const i of init) if (i !== 'agent' && i !== 'systemd') r.fail('init', `unknown init kind ${JSON.stringify(i)} (agent, systemd)`);
  if (init.length === 0) r.fail('init', 'must name at least one init kind');
  const osVersionPattern = r.str('osVersionPattern', '^[a-z0-9][a-z0-9._-]*$');
  let osRe: RegExp | undefined;
  try {
    osRe = new RegExp(osVersionPattern);
  } catch (err) {
    r.fail('osVersionPattern', (err as Error).message);
  }
  const osVersion = r.str('osVersion');
  if (!osRe!.test(osVersion)) r.fail('osVersion', `does not match osVersionPattern ${osVersionPattern}`);

  const b = r.obj('base');
  const kind = b.str('kind');
  let base: BaseSpec | undefined;
  if (kind === 'mmdebstrap') {
    b.onlyKeys(['kind', 'mirrors', 'variant', 'components', 'keyring', 'keyringHint', 'hooks']);
    base = {
      kind,
      mirrors: b.strs('mirrors'),
      variant: b.str('variant', 'minbase'),
      components: b.strs('components', ['main']),
      keyring: b.optStr('keyring'),
      keyringHint: b.optStr('keyringHint'),
      hooks: b.strs('hooks', [], /^([\w.-]+|\/[^\0]+)$/),
    };
    if (base.mirrors.length === 0) b.fail('mirrors', 'must name at least one mirror');
  } else if (kind === 'command') {
    b.onlyKeys(['kind', 'tool', 'toolHint', 'args']);
    base = { kind, tool: b.str('tool'), toolHint: b.optStr('toolHint'), args: b.strs('args') };
  } else if (kind === 'minimal') {
    b.onlyKeys(['kind', 'copy', 'seccompLibs', 'applets']);
    const applets = b.raw('applets') === 'all' ? 'all' : b.strs('applets', ['sh']);
    base = { kind, copy: b.strs('copy'), seccompLibs: b.strs('seccompLibs', []), applets };
    if (init.includes('systemd')) r.fail('init', 'a minimal rootfs has no systemd: only "agent"');
  } else {
    b.fail('kind', `unknown base kind ${JSON.stringify(kind)} (mmdebstrap, command, minimal)`);
  }

  const files: FileEntry[] = r.list('files').map((f) => {
    f.onlyKeys(['dest', 'template', 'mode', 'when']);
    const dest = f.str('dest');
    if (!dest.startsWith('/') || dest.split('/').includes('..')) f.fail('dest', `must be an absolute path without "..": ${dest}`);
    const template = f.str('template');
    if (path.isAbsolute(template) || template.split('/').includes('..')) f.fail('template', 'must be a path inside files/');
    if (!fs.existsSync(path.join(dir, 'files', template))) f.fail('template', `${path.join(dir, 'files', template)} does not exist`);
    const modeStr = f.str('mode', '0644');
    if (!/^0?[0-7]{3,4}$/.test(modeStr)) f.fail('mode', `must be an octal string like "0644", not ${JSON.stringify(modeStr)}`);
    const when = f.str('when', 'always') as When;
    if (!WHEN.includes(when)) f.fail('when', `must be one of ${WHEN.join(', ')}`);
    return { dest, template, mode: parseInt(modeStr, 8), when };
  });
  const seen = new Set<string>();
  for (const f of files) {
    if (seen.has(`${f.dest}|${f.when}`)) r.fail('files', `${f.dest} is listed twice`);
    seen.add(`${f.dest}|${f.when}`);
  }
  const cleanup = r.strs('cleanup', []);
  for (const c of cleanup) if (!c.startsWith('/') || c.split('/').includes('..') || c === '/' || c === '/*') r.fail('cleanup', `bad path ${JSON.stringify(c)}`);

  return {
    name,
    dir,
    description: r.str('description'),
    osVersion,
    osVersionPattern,
    arch,
    init: init as InitKind[],
    base: base!,
    packages: r.strs('packages', [], PACKAGE_RE),
    seccompPackages: r.strs('seccompPackages', [], PACKAGE_RE),
    systemdPackages: r.strs('systemdPackages', [], PACKAGE_RE),
    cleanup,
    files,
    untested: r.bool('untested', false),
    mayFail: r.bool('mayFail', false),
  };
}

/** Read rootfs-templates/<name>/manifest.json. Unknown distro: usage error listing the known ones. */
export function loadManifest(templatesDir: string, name: string): DistroManifest {
  const names = distroNames(templatesDir);
  if (!DISTRO_NAME_RE.test(name) || !names.includes(name)) {
    throw usageError(`unknown distro ${JSON.stringify(name)}`, `distros: ${names.join(', ') || '(none)'}; see osbuilder list-distros`);
  }
  const dir = path.join(templatesDir, name);
  const file = path.join(dir, 'manifest.json');
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ManifestError(`${file}: ${(err as Error).message}`);
  }
  return parseManifest(json, name, dir);
}

/** The distro folders (those holding a manifest.json), sorted. */
export function distroNames(templatesDir: string): string[] {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(templatesDir, { withFileTypes: true });
  } catch {
    throw missingError(`the distro templates folder ${templatesDir} does not exist`, 'pass --templates DIR');
  }
  return entries
    .filter((e) => e.isDirectory() && fs.existsSync(path.join(templatesDir, e.name, 'manifest.json')))
    .map((e) => e.name)
    .sort();
}

/** The repository's rootfs-templates/: the first one found walking up from `start`. */
export function findTemplatesDir(start: string): string | undefined {
  for (let dir = path.resolve(start); ; dir = path.dirname(dir)) {
    const p = path.join(dir, 'rootfs-templates');
    if (fs.existsSync(path.join(dir, 'package.json')) && fs.existsSync(p)) return p;
    if (path.dirname(dir) === dir) return undefined;
  }
}
