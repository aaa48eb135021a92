// Sanity checks of a finished tree, before it is renamed into place:
//  - init: with AGENT_INIT=yes, /sbin/init and /init lead to the agent; with systemd, /sbin/init
//    is an executable, the default target is kata-containers.target and the agent's unit is there;
//  - the agent is an executable file (a script's interpreter too), crun is there;
//  - every library they need resolves inside the tree (elfdeps, the loader's order);
//  - runnable: as root on a machine of the tree's architecture, `kata-agent --version` and
//    `crun --version` are run chrooted into the tree (`unshare --mount-proc --root=TREE`: crun
//    re-executes itself from a memfd through /proc/self/exe, so it needs a /proc, mounted in a
//    private mount namespace that goes away with it); otherwise the interpreter and library
//    checks above are all there is (said in the result).
import fs from 'node:fs';
import path from 'node:path';
import { failedError } from '../util/errors';
import { lexists } from '../util/rootfs';
import { findTool, runTool } from '../util/tools';
import { LibResolver, readElf } from './elfdeps';
import { resolveInRoot } from './fsroot';
import type { InitKind } from './manifest';

export const CRUN_DIRS = ['/usr/local/bin', '/usr/bin', '/usr/sbin', '/bin', '/sbin'];
export const SYSTEMD_UNIT_DIR = '/usr/lib/systemd/system';

export interface CheckOptions {
  root: string;
  agentPath: string;
  init: InitKind;
  /** More ELF files whose libraries must resolve (guest paths). */
  elfInputs?: string[];
  /** Run the agent and crun chrooted (default: when root). */
  chroot?: boolean;
  run?: typeof runTool;
}

export interface CheckReport {
  /** What was checked, one line each. */
  passed: string[];
  /** Whether the agent was run. */
  ran: boolean;
}

/** The script interpreter of a "#!" file (guest path), or undefined. */
export function shebang(host: string): string | undefined {
  let fd: number;
  try {
    fd = fs.openSync(host, 'r');
  } catch {
    return undefined;
  }
  try {
    const b = Buffer.alloc(256);
    const n = fs.readSync(fd, b, 0, b.length, 0);
    const s = b.toString('latin1', 0, n);
    if (!s.startsWith('#!')) return undefined;
    return s.slice(2).split('\n')[0]!.trim().split(/\s+/)[0];
  } finally {
    fs.closeSync(fd);
  }
}

export async function checkRootfs(o: CheckOptions): Promise<CheckReport> {
  const problems: string[] = [];
  const passed: string[] = [];
  const root = o.root;
  const exe = (p: string): { host: string; ok: boolean; why?: string } => {
    const host = resolveInRoot(root, p);
    let st: fs.Stats;
    try {
      st = fs.statSync(host);
    } catch {
      return { host, ok: false, why: `${p} does not exist${lexists(resolveInRoot(root, p, { followLast: false })) ? ' (dangling link)' : ''}` };
    }
    if (!st.isFile()) return { host, ok: false, why: `${p} is not a regular file` };
    if ((st.mode & 0o111) === 0) return { host, ok: false, why: `${p} is not executable` };
    return { host, ok: true };
  };

  // The agent, and what runs it.
  const agent = exe(o.agentPath);
  const elf: string[] = [...(o.elfInputs ?? [])];
  if (!agent.ok) problems.push(`the agent: ${agent.why}`);
  else {
    const interp = shebang(agent.host);
    if (interp) {
      const i = exe(interp);
      if (!i.ok) problems.push(`the agent's interpreter: ${i.why}`);
      else if (!readElf(i.host)) problems.push(`the agent's interpreter ${interp} is not an ELF executable`);
      else elf.unshift(interp);
    } else if (!readElf(agent.host)) problems.push(`the agent ${o.agentPath} is neither an ELF executable nor a script`);
    else elf.unshift(o.agentPath);
    passed.push(`agent ${o.agentPath}${interp ? ` (run by ${interp})` : ''}`);
  }

  // Init.
  if (o.init === 'agent') {
    for (const p of ['/sbin/init', '/init']) {
      const i = exe(p);
      if (!i.ok) problems.push(`init: ${i.why}`);
      else if (agent.ok && i.host !== agent.host) problems.push(`init: ${p} does not lead to the agent ${o.agentPath}`);
    }
    if (!problems.some((p) => p.startsWith('init:'))) passed.push('init: /sbin/init and /init are the agent');
  } else {
    const i = exe('/sbin/init');
    if (!i.ok) problems.push(`init: ${i.why}`);
    else elf.push('/sbin/init');
    const target = resolveInRoot(root, '/etc/systemd/system/default.target');
    if (!fs.existsSync(target) || !target.endsWith('/kata-containers.target')) problems.push('init: the default systemd target is not kata-containers.target');
    for (const u of ['kata-agent.service', 'kata-containers.target']) {
      if (!fs.existsSync(resolveInRoot(root, `${SYSTEMD_UNIT_DIR}/${u}`))) problems.push(`init: ${SYSTEMD_UNIT_DIR}/${u} is missing`);
    }
    if (!problems.some((p) => p.startsWith('init:'))) passed.push('init: systemd, default target kata-containers.target');
  }

  // crun.
  const crun = CRUN_DIRS.map((d) => `${d}/crun`).find((p) => exe(p).ok);
  if (!crun) problems.push(`crun: not found in ${CRUN_DIRS.join(', ')}`);
  else elf.push(crun);

  // Libraries.
  const closure = new LibResolver({ root }).closure([...new Set(elf)]);
  for (const m of closure.missing) problems.push(`libraries: ${m.name} (needed by ${m.neededBy}) is not in the rootfs`);
  if (closure.missing.length === 0) passed.push(`libraries: ${closure.objects.length - new Set(elf).size} shared objects resolve for ${[...new Set(elf)].join(', ')}`);

  if (problems.length > 0) throw failedError(`the rootfs failed its checks: ${problems.join('; ')}`);

  // Run them.
  const unshare = findTool('unshare');
  const chrootTool = findTool('chroot');
  const chroot = o.chroot ?? (process.getuid?.() === 0 && (unshare ?? chrootTool) !== undefined);
  let ran = false;
  if (chroot) {
    const run = o.run ?? runTool;
    const env = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/root', LANG: 'C' };
    const [tool, pre] = unshare ? [unshare, ['--mount-proc', `--root=${root}`]] : [chrootTool ?? '/usr/sbin/chroot', [root]];
    for (const [what, args] of [
      ['the agent', [o.agentPath, '--version']],
      ['crun', [crun!, '--version']],
    ] as const) {
      const r = await run(tool, [...pre, ...args], { env, allowFail: true });
      if (r.code !== 0) {
        const tail = (r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ');
        throw failedError(`the rootfs failed its checks: ${what} does not run in it (${path.basename(tool)} ${[...pre, ...args].join(' ')} exited ${r.code}${tail ? `: ${tail}` : ''})`);
      }
      passed.push(`runs: ${args.join(' ')} -> ${r.stdout.trim().split('\n')[0]}`);
    }
    ran = true;
  } else {
    passed.push('runs: not run (needs root); the interpreter and libraries were checked instead');
  }
  return { passed, ran };
}
