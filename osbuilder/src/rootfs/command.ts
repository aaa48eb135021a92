// osbuilder rootfs DISTRO, osbuilder list-distros, osbuilder new-distro NAME.
//
// A rootfs is built in a temporary sibling of the output directory and renamed into place
// at the end (util/output writeAtomically), in seven steps: the base system (mmdebstrap, the
// distro's package manager, or the minimal skeleton with tools copied from this machine), the
// agent (from the packer), init and the templated files, the libraries the agent and the copied
// tools need, cleanup, sanity checks, and the final touches (mtimes clamped to
// SOURCE_DATE_EPOCH, size).
import { sourceDateEpoch as sharedEpoch } from '../util/epoch';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseOptions, VERSION } from '../cli';
import type { Command, CommandContext } from '../commands/types';
import { failedError, OsbuilderError, usageError } from '../util/errors';
import { writeAtomically } from '../util/output';
import { humanBytes, type Progress } from '../util/progress';
import { requireTool } from '../util/tools';
import { packAgent as defaultPackAgent } from '../pack/agent';
import { AGENT_PATH, installAgent, NestedProgress, type PackAgent, type PackedAgent } from './agent';
import { checkRootfs, SYSTEMD_UNIT_DIR } from './checks';
import { cleanupRootfs, DEFAULT_CLEANUP } from './cleanup';
import { buildMinimal, makeSkeleton } from './distro-minimal';
import { buildMmdebstrap, buildWithCommand, checkMmdebstrapInputs, requireCommandTool, type RunTool } from './distro-mmdebstrap';
import { readElf } from './elfdeps';
import { clampMtimes, existsInRoot, resolveInRoot, symlinkInRoot, treeSize, writeFileInRoot } from './fsroot';
import { completeLibraries } from './libs';
import {
  DISTRO_NAME_RE,
  distroNames,
  loadManifest,
  ManifestError,
  PACKAGE_RE,
  parseManifest,
  type DistroManifest,
  type InitKind,
} from './manifest';
import { renderTemplate, TemplateError } from './template';

/** What the commands need from outside (tests replace them). */
export interface RootfsDeps {
  /** The agent packer (default: osbuilder/src/pack/agent.ts's packAgent). */
  packAgent?: PackAgent;
  /** rootfs-templates/ (default: the repository's; --templates overrides). */
  templatesDir?: string;
  /** The repository (dist/, node_modules/, package.json; default: found above this module). */
  repoRoot?: string;
  /** Runs mmdebstrap / the package manager. */
  run?: RunTool;
  /** Finds a required tool (MISSING when absent). */
  requireTool?: typeof requireTool;
  /** Run the agent and crun chrooted in the checks (default: when root). */
  chroot?: boolean;
}

export const DEFAULT_HOSTNAME = 'guestkit';

/** process.arch to uname -m. */
export function hostArch(): string {
  const m: Record<string, string> = { x64: 'x86_64', arm64: 'aarch64', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  return m[process.arch] ?? process.arch;
}

/** The repository above `start` (the nearest directory with package.json and rootfs-templates/ or dist/). */
export function findRepoRoot(start = moduleDir()): string {
  for (let dir = path.resolve(start); ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json')) && (fs.existsSync(path.join(dir, 'rootfs-templates')) || fs.existsSync(path.join(dir, 'dist')))) return dir;
    if (path.dirname(dir) === dir) return process.cwd();
  }
}

function moduleDir(): string {
  try {
    return path.dirname(fileURLToPath(import.meta.url));
  } catch {
    return process.cwd();
  }
}

/** SOURCE_DATE_EPOCH; else the last commit's time of the repository; else 0. */
/** SOURCE_DATE_EPOCH (util/epoch), from the environment or the repository's last commit. */
export async function sourceDateEpoch(env: NodeJS.ProcessEnv, repoRoot: string): Promise<number> {
  return sharedEpoch(env, repoRoot);
}

function yesNo(what: string, v: string): boolean {
  if (v === 'yes') return true;
  if (v === 'no') return false;
  throw usageError(`${what} must be yes or no, not ${JSON.stringify(v)}`);
}

function manifestOrFail<T>(f: () => T): T {
  try {
    return f();
  } catch (err) {
    if (err instanceof ManifestError || err instanceof TemplateError) throw failedError(err.message, 'fix the distro folder (see docs/osbuilder.md)');
    throw err;
  }
}

function templatesDirOf(deps: RootfsDeps, flag: string | undefined): string {
  return path.resolve(flag ?? deps.templatesDir ?? path.join(deps.repoRoot ?? findRepoRoot(), 'rootfs-templates'));
}

// ---------------------------------------------------------------------------------------------
// osbuilder rootfs

const ROOTFS_HELP = `Usage: osbuilder rootfs DISTRO [options]

Build a guest root file system (a directory) for DISTRO: a folder of rootfs-templates/
(osbuilder list-distros). The agent is installed as /usr/bin/kata-agent and, with
AGENT_INIT=yes, is the guest's init (/sbin/init and /init); with AGENT_INIT=no systemd is init
and starts the agent from kata-agent.service (distros with systemd only).

  debian    Debian minbase from deb.debian.org with mmdebstrap (needs network), plus crun
  minimal   no package manager: the agent, its Node runtime, crun and busybox copied from
            this machine with every library they need (found from their ELF headers)

The tree is built beside the output and renamed into place when it passed its checks (init,
agent, crun and their libraries; as root, \`kata-agent --version\` and \`crun --version\` run
chrooted in it). Documentation, man pages, locales, package caches and logs are removed.

Options (environment variable in brackets, as Kata's rootfs builder):
  -o, --output DIR          the rootfs directory [ROOTFS_DIR] (default ./rootfs-DISTRO); an
                            existing one is replaced only if osbuilder built it
  --extra-pkgs "P1 P2"      more packages [EXTRA_PKGS]; for minimal: more executables to copy
                            from this machine (names in PATH or absolute paths)
  --agent-init yes|no       the agent is init (yes, default) or systemd starts it [AGENT_INIT]
  --os-version V            the distro release, e.g. bookworm, trixie [OS_VERSION]
  --seccomp yes|no          add libseccomp (default yes) [SECCOMP]
  --templates DIR           the distro folders (default: the repository's rootfs-templates/)

Environment: SOURCE_DATE_EPOCH (default: the last commit's time) is the build time recorded in
/var/lib/osbuilder/osbuilder.yaml and the latest mtime in the tree.

Examples:
  osbuilder rootfs minimal -o rootfs
  sudo ROOTFS_DIR=/var/tmp/rootfs EXTRA_PKGS="iproute2" osbuilder rootfs debian
  osbuilder rootfs debian --agent-init no --os-version trixie

Exit codes: 0 built; 1 the build or its checks failed (mmdebstrap, a broken distro folder);
2 bad command line (unknown distro or option, AGENT_INIT=no for a distro without systemd);
3 a tool (mmdebstrap; crun, busybox for minimal; strip for the agent), an archive keyring or
the output's parent directory is missing; 130 interrupted.
`;

export interface RootfsOptions {
  distro: string;
  output: string;
  templatesDir: string;
  agentInit: boolean;
  seccomp: boolean;
  osVersion?: string;
  extra: string[];
  env: NodeJS.ProcessEnv;
}

export interface RootfsResult {
  output: string;
  manifest: DistroManifest;
  osVersion: string;
  init: InitKind;
  bytes: number;
  files: number;
  agent: PackedAgent;
  checks: string[];
  /** Libraries copied from the build machine. */
  libsCopied: string[];
}

/** Build a rootfs (what `osbuilder rootfs` does after parsing its options). */
export async function buildRootfs(o: RootfsOptions, deps: RootfsDeps, progress: Progress): Promise<RootfsResult> {
  const repoRoot = deps.repoRoot ?? findRepoRoot();
  const m = manifestOrFail(() => loadManifest(o.templatesDir, o.distro));
  const init: InitKind = o.agentInit ? 'agent' : 'systemd';
  if (!m.init.includes(init)) {
    throw usageError(
      `${m.name} cannot boot with ${init === 'agent' ? 'the agent as init (AGENT_INIT=yes)' : 'systemd (AGENT_INIT=no)'}`,
      `${m.name} supports AGENT_INIT=${m.init.map((i) => (i === 'agent' ? 'yes' : 'no')).join('|')}`,
    );
  }
  const osVersion = o.osVersion ?? m.osVersion;
  if (!new RegExp(m.osVersionPattern).test(osVersion)) throw usageError(`OS_VERSION ${JSON.stringify(osVersion)} is not a ${m.name} release (${m.osVersionPattern})`);
  for (const p of o.extra) {
    const ok = m.base.kind === 'minimal' ? /^[\w./+-]+$/.test(p) : PACKAGE_RE.test(p);
    if (!ok) throw usageError(`bad extra package ${JSON.stringify(p)}`);
  }
  const arch = hostArch();
  if (!m.arch.includes(arch)) throw usageError(`${m.name} cannot be built for ${arch} (${m.arch.join(', ')})`);
  guardOutput(o.output);
  const epoch = await sourceDateEpoch(o.env, repoRoot);
  const packAgent: PackAgent = deps.packAgent ?? defaultPackAgent;
  // Prerequisites before anything is written.
  let baseTool: string | undefined;
  if (m.base.kind === 'mmdebstrap') {
    baseTool = (deps.requireTool ?? requireTool)('mmdebstrap', `to build the ${m.name} rootfs`);
    checkMmdebstrapInputs(m.base);
  } else if (m.base.kind === 'command') {
    baseTool = deps.requireTool ? deps.requireTool(m.base.tool, `to build the ${m.name} rootfs`) : requireCommandTool(m.base);
  }
  if (m.untested) progress.note(`note: ${m.name} is untested (it could not be fetched where osbuilder was developed)${m.mayFail ? '; its build may fail' : ''}`);

  const packages = dedupe([
    ...m.packages,
    ...(o.seccomp ? m.seccompPackages : []),
    ...(init === 'systemd' ? m.systemdPackages : []),
  ]);
  const extraPkgs = dedupe(o.extra);

  return writeAtomically(o.output, async (tmp) => {
    // 1. Base.
    const elfInputs: string[] = [];
    let basePackages = packages;
    if (m.base.kind === 'minimal') {
      progress.step('minimal base: skeleton, tools from this machine');
      makeSkeleton(tmp, (readElf(process.execPath)?.bits ?? 64) === 64);
      const r = await buildMinimal(tmp, m.base, { extra: extraPkgs, seccomp: o.seccomp, onStep: (d) => progress.update(d) });
      elfInputs.push(...r.executables, ...r.extraLibs);
      basePackages = r.packages.filter((p) => !extraPkgs.includes(p));
      progress.done(`${r.executables.join(', ')}; ${r.applets} busybox applets`);
    } else {
      const all = dedupe([...packages, ...extraPkgs]);
      const env = { ...o.env, SOURCE_DATE_EPOCH: String(epoch) };
      const onLine = (line: string): void => progress.update(line.replace(/^I: /, ''));
      if (m.base.kind === 'mmdebstrap') {
        progress.step(`${m.name} ${osVersion} base with mmdebstrap (${m.base.variant} + ${all.join(' ')})`);
        await buildMmdebstrap(m.base, { target: tmp, osVersion, arch, packages: all, env, onLine, run: deps.run, tool: baseTool });
      } else {
        progress.step(`${m.name} ${osVersion} base with ${m.base.tool}`);
        await buildWithCommand(m.base, { target: tmp, osVersion, arch, packages: all, env, onLine, run: deps.run, tool: baseTool });
      }
      if (!fs.existsSync(tmp)) throw failedError(`the ${m.name} base was not created in ${tmp}`);
      progress.done(humanBytes(treeSize(tmp).bytes));
    }

    // 2. Agent.
    progress.step('agent');
    const work = fs.mkdtempSync(path.join(os.tmpdir(), 'osbuilder-agent-'));
    let agent: PackedAgent;
    try {
      agent = await packAgent({ outDir: work, progress: new NestedProgress(progress), repoRoot });
      installAgent(tmp, agent);
    } finally {
      fs.rmSync(work, { recursive: true, force: true });
    }
    for (const f of agent.files) if (readElf(resolveInRoot(tmp, f.dest))) elfInputs.push(f.dest);
    progress.done(`${agent.version} ${agent.commit.slice(0, 12)}, ${agent.files.length} files`);

    // 3. Init and the templated files.
    progress.step(`init (${init === 'agent' ? 'the agent' : 'systemd'}) and files`);
    if (init === 'agent') {
      symlinkInRoot(tmp, AGENT_PATH, '/sbin/init');
      symlinkInRoot(tmp, AGENT_PATH, '/init');
    } else {
      if (!existsInRoot(tmp, '/init')) symlinkInRoot(tmp, '/sbin/init', '/init');
      symlinkInRoot(tmp, `${SYSTEMD_UNIT_DIR}/kata-containers.target`, '/etc/systemd/system/default.target');
    }
    const view = {
      distro: m.name,
      description: m.description,
      osVersion,
      arch,
      hostname: DEFAULT_HOSTNAME,
      osbuilderVersion: VERSION,
      buildTime: epoch,
      buildTimeUtc: new Date(epoch * 1000).toISOString().replace(/\.000Z$/, 'Z'),
      packages: basePackages,
      extraPackages: extraPkgs,
      agent: { path: AGENT_PATH, version: agent.version, commit: agent.commit },
      initKind: init,
      agentInit: init === 'agent',
      systemd: init === 'systemd',
      seccomp: o.seccomp,
    };
    let written = 0;
    for (const f of m.files) {
      if (f.when === 'systemd' && init !== 'systemd') continue;
      if (f.when === 'agent-init' && init !== 'agent') continue;
      const src = fs.readFileSync(path.join(m.dir, 'files', f.template), 'utf8');
      const text = manifestOrFail(() => renderTemplate(src, view, { name: path.join(m.dir, 'files', f.template) }));
      writeFileInRoot(tmp, f.dest, text, f.mode);
      written++;
    }
    progress.done(`${written} files`);

    // 4. Libraries.
    progress.step('libraries');
    const libs = completeLibraries(tmp, elfInputs, { onCopy: (p) => progress.update(p) });
    if (libs.missing.length > 0) {
      throw failedError(`libraries not found on this machine: ${libs.missing.map((x) => `${x.name} (needed by ${x.neededBy})`).join(', ')}`);
    }
    progress.done(libs.copied.length > 0 ? `${libs.copied.length} copied from this machine` : 'all in the base');

    // 5. Cleanup.
    progress.step('cleanup');
    const freed = cleanupRootfs(tmp, [...DEFAULT_CLEANUP, '/var/lib/systemd/random-seed', ...m.cleanup]);
    if (init === 'systemd' && existsInRoot(tmp, '/etc/machine-id')) writeFileInRoot(tmp, '/etc/machine-id', '', 0o444);
    progress.done(`${humanBytes(freed.bytes)} removed`);

    // 6. Checks.
    progress.step('checks');
    const checks = await checkRootfs({ root: tmp, agentPath: AGENT_PATH, init, elfInputs, chroot: deps.chroot });
    progress.done(checks.ran ? 'the agent and crun run' : 'not run (not root)');

    // 7. Finish.
    progress.step('finish');
    fs.chmodSync(tmp, 0o755);
    clampMtimes(tmp, epoch);
    const size = treeSize(tmp);
    progress.done(`${humanBytes(size.bytes)}, ${size.files} entries`);
    return { output: o.output, manifest: m, osVersion, init, bytes: size.bytes, files: size.files, agent, checks: checks.passed, libsCopied: libs.copied };
  });
}

function dedupe(xs: string[]): string[] {
  return [...new Set(xs)];
}

/** Refuse to replace anything but a rootfs osbuilder built (or an empty directory). */
function guardOutput(out: string): void {
  if (out === '/' || out === path.parse(out).root) throw usageError(`refusing to build a rootfs at ${out}`);
  let st: fs.Stats;
  try {
    st = fs.lstatSync(out);
  } catch {
    return;
  }
  if (!st.isDirectory()) throw usageError(`the output ${out} exists and is not a directory`, 'remove it or pick another --output');
  if (fs.readdirSync(out).length === 0) return;
  if (!fs.existsSync(path.join(out, 'var/lib/osbuilder/osbuilder.yaml'))) {
    throw usageError(`the output ${out} exists and was not built by osbuilder: refusing to replace it`, 'remove it or pick another --output');
  }
}

export function makeRootfsCommand(deps: RootfsDeps = {}): Command {
  return {
    name: 'rootfs',
    summary: 'build a guest root file system (a directory) from a distro template',
    help: ROOTFS_HELP,
    async run(args: string[], ctx: CommandContext): Promise<void> {
      const { values, positionals } = parseOptions(
        'rootfs',
        args,
        {
          output: { type: 'string', short: 'o' },
          'extra-pkgs': { type: 'string' },
          'agent-init': { type: 'string' },
          'os-version': { type: 'string' },
          seccomp: { type: 'string' },
          templates: { type: 'string' },
        },
        { positionals: 1 },
      );
      const templatesDir = templatesDirOf(deps, values.templates);
      const distro = positionals[0];
      if (distro === undefined) {
        throw usageError('which distro?', `distros: ${distroNames(templatesDir).join(', ')}; see osbuilder rootfs --help`);
      }
      const env = ctx.env;
      const extra = (values['extra-pkgs'] ?? env.EXTRA_PKGS ?? '').split(/[\s,]+/).filter(Boolean);
      const opts: RootfsOptions = {
        distro,
        templatesDir,
        output: path.resolve(values.output ?? (env.ROOTFS_DIR || `rootfs-${distro}`)),
        agentInit: yesNo('--agent-init (AGENT_INIT)', values['agent-init'] ?? (env.AGENT_INIT || 'yes')),
        seccomp: yesNo('--seccomp (SECCOMP)', values.seccomp ?? (env.SECCOMP || 'yes')),
        osVersion: values['os-version'] ?? (env.OS_VERSION || undefined),
        extra,
        env,
      };
      const progress = ctx.progress(7);
      const r = await buildRootfs(opts, deps, progress);
      ctx.out(`${r.output}: ${r.manifest.name} ${r.osVersion}, init ${r.init === 'agent' ? 'the agent' : 'systemd'}, ${humanBytes(r.bytes)} in ${r.files} entries`);
    },
  };
}

export const rootfsCommand: Command = makeRootfsCommand();

// ---------------------------------------------------------------------------------------------
// osbuilder list-distros

const LIST_HELP = `Usage: osbuilder list-distros [--json] [--templates DIR]

List the distros osbuilder rootfs can build: the folders of rootfs-templates/ (one per distro,
each with a manifest.json and its file templates; see docs/osbuilder.md). "untested" distros
could not be fetched where osbuilder is developed: their builds are not verified.

Options:
  --json           one JSON array (name, description, base, init, arch, osVersion, untested, mayFail)
  --templates DIR  the distro folders (default: the repository's rootfs-templates/)

Exit codes: 0 listed; 1 a distro's manifest is invalid (listed as such); 2 bad command line;
3 the templates folder does not exist.
`;

export function makeListDistrosCommand(deps: RootfsDeps = {}): Command {
  return {
    name: 'list-distros',
    summary: 'list the distros of rootfs-templates/ (tested or not)',
    help: LIST_HELP,
    async run(args: string[], ctx: CommandContext): Promise<void> {
      const { values } = parseOptions('list-distros', args, { json: { type: 'boolean' }, templates: { type: 'string' } }, { positionals: 0 });
      const dir = templatesDirOf(deps, values.templates);
      const rows: Array<{ name: string; m?: DistroManifest; error?: string }> = distroNames(dir).map((name) => {
        try {
          return { name, m: loadManifest(dir, name) };
        } catch (err) {
          return { name, error: (err as Error).message };
        }
      });
      if (values.json) {
        ctx.out(
          JSON.stringify(
            rows.map(({ name, m, error }) =>
              m
                ? { name, description: m.description, base: m.base.kind, init: m.init, arch: m.arch, osVersion: m.osVersion, untested: m.untested, mayFail: m.mayFail }
                : { name, error },
            ),
            null,
            2,
          ),
        );
      } else {
        const table = rows.map(({ name, m, error }) => [
          name,
          m ? (m.base.kind === 'command' ? m.base.tool : m.base.kind) : '-',
          m ? m.init.join(',') : '-',
          m ? m.osVersion : '-',
          m ? m.arch.join(',') : '-',
          m ? (m.untested ? `untested${m.mayFail ? ', may fail' : ''}` : 'tested') : 'INVALID',
          m ? m.description : error!,
        ]);
        const head = ['DISTRO', 'BASE', 'INIT', 'DEFAULT', 'ARCH', 'STATUS', 'DESCRIPTION'];
        const w = head.map((h, i) => Math.max(h.length, ...table.map((r) => r[i]!.length)));
        for (const r of [head, ...table]) ctx.out(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]!))).join('  '));
      }
      const bad = rows.filter((r) => r.error);
      if (bad.length > 0) throw failedError(`invalid distro folder${bad.length > 1 ? 's' : ''}: ${bad.map((r) => r.name).join(', ')}`);
    },
  };
}

export const listDistrosCommand: Command = makeListDistrosCommand();

// ---------------------------------------------------------------------------------------------
// osbuilder new-distro

const NEW_HELP = `Usage: osbuilder new-distro NAME [--from DISTRO] [--templates DIR]

Scaffold a new distro folder rootfs-templates/NAME/ from an existing one (default debian): its
file templates and a manifest.json to edit (base, packages, init kinds, architectures). The new
distro is marked untested and allowed to fail until you change that. See docs/osbuilder.md.

NAME: lower-case letters, digits and '-', starting with a letter (2-32 characters).

Options:
  --from DISTRO    the distro to copy (default debian)
  --templates DIR  the distro folders (default: the repository's rootfs-templates/)

Exit codes: 0 created; 2 bad or existing NAME, unknown --from; 3 the templates folder does
not exist; 1 it could not be written.
`;

export function makeNewDistroCommand(deps: RootfsDeps = {}): Command {
  return {
    name: 'new-distro',
    summary: 'scaffold a new distro folder in rootfs-templates/',
    help: NEW_HELP,
    async run(args: string[], ctx: CommandContext): Promise<void> {
      const { values, positionals } = parseOptions('new-distro', args, { from: { type: 'string' }, templates: { type: 'string' } }, { positionals: 1 });
      const dir = templatesDirOf(deps, values.templates);
      const name = positionals[0];
      if (name === undefined) throw usageError('which name?', 'osbuilder new-distro NAME');
      if (!DISTRO_NAME_RE.test(name)) {
        throw usageError(`bad distro name ${JSON.stringify(name)}`, "lower-case letters, digits and '-', starting with a letter, 2-32 characters");
      }
      const names = distroNames(dir);
      const dest = path.join(dir, name);
      if (names.includes(name) || fs.existsSync(dest)) throw usageError(`distro ${JSON.stringify(name)} already exists (${dest})`);
      const from = values.from ?? 'debian';
      const src = manifestOrFail(() => loadManifest(dir, from));
      const raw = JSON.parse(fs.readFileSync(path.join(src.dir, 'manifest.json'), 'utf8')) as Record<string, unknown>;
      const manifest: Record<string, unknown> = {
        $comment: `Scaffolded from ${from} by osbuilder new-distro: edit the description, base, packages, init kinds and arch; set untested/mayFail to false once it builds and boots. See docs/osbuilder.md.`,
        ...Object.fromEntries(Object.entries(raw).filter(([k]) => k !== '$comment')),
        description: `${name}: TODO (scaffolded from ${from})`,
        untested: true,
        mayFail: true,
      };
      await writeAtomically(dest, async (tmp) => {
        fs.mkdirSync(tmp);
        fs.cpSync(path.join(src.dir, 'files'), path.join(tmp, 'files'), { recursive: true });
        fs.writeFileSync(path.join(tmp, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
        // It must load as it is (the copy's templates are the same files).
        try {
          parseManifest(manifest, name, tmp);
        } catch (err) {
          throw new OsbuilderError(`the scaffold does not validate: ${(err as Error).message}`);
        }
      });
      ctx.out(`${dest}: created from ${from}; edit ${path.join(dest, 'manifest.json')} and the templates in ${path.join(dest, 'files')}/`);
    },
  };
}

export const newDistroCommand: Command = makeNewDistroCommand();
