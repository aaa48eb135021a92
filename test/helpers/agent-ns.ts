// Start the built agent (dist/kata-agent.mjs) as PID 1 of private PID, mount and UTS
// namespaces listening on a unix socket, and run the built agent-ctl against it.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: the nearest directory above this file holding guestkit's package.json (also when bundled into tmp/). */
function findRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      if (JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).name === 'guestkit') return dir;
    } catch {
      // no package.json here
    }
    const up = path.dirname(dir);
    if (up === dir) throw new Error('cannot find the guestkit repository root');
    dir = up;
  }
}

export const ROOT = findRoot();
export const AGENT = path.join(ROOT, 'dist/kata-agent.mjs');
export const AGENT_CTL = path.join(ROOT, 'dist/agent-ctl.mjs');

export interface NsAgent {
  /** pid (host view) of `unshare`, whose child is the agent. */
  unsharePid: number;
  /** pid (host view) of the agent, PID 1 of its namespace. */
  agentPid: number;
  sock: string;
  addr: string;
  dir: string;
  child: ChildProcess;
  /** A path inside the agent's mount namespace, as seen from here (/proc/<pid>/root/...). */
  inAgent(p: string): string;
  /** The agent's mountinfo text. */
  mountInfo(): string;
  logs(): string;
  /** Parsed JSON log lines so far. */
  logLines(): Record<string, any>[];
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

export interface NsAgentOptions {
  /** Extra agent flags. */
  args?: string[];
  /** Agent executable (default dist/kata-agent.mjs). */
  agent?: string;
  /** Log level (default debug: tests read the log). */
  logLevel?: string;
  /** Environment changes for the agent; an undefined value removes the variable. */
  env?: Record<string, string | undefined>;
  /** Kernel command line the agent reads (--cmdline-file) instead of the host's /proc/cmdline. */
  cmdline?: string;
  /**
   * Run the agent under an outer mount namespace that unmounts the host's /sys/fs/cgroup
   * (hybrid on this machine, which crun refuses), so the agent's PID-1 init mounts the cgroup
   * hierarchies its command line asks for, as in a guest.
   */
  ownCgroups?: boolean;
}

export const isRoot = process.getuid?.() === 0;

/** Append the agent's stdout to $GK_AGENT_LOG when set (debugging a failing run). */
const logCopy = process.env.GK_AGENT_LOG ? fs.createWriteStream(process.env.GK_AGENT_LOG, { flags: 'a' }) : undefined;

export async function startNsAgent(opts: NsAgentOptions = {}): Promise<NsAgent> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-agent-'));
  const sock = path.join(dir, 'agent.sock');
  const agentArgv = [process.execPath, opts.agent ?? AGENT, '--listen', `unix://${sock}`, '--log-level', opts.logLevel ?? 'debug', ...(opts.args ?? [])];
  if (opts.cmdline !== undefined) {
    fs.writeFileSync(path.join(dir, 'cmdline'), `${opts.cmdline}\n`);
    agentArgv.push('--cmdline-file', path.join(dir, 'cmdline'));
  }
  const inner = ['-pfmu', '--mount-proc', ...agentArgv];
  const argv = opts.ownCgroups
    ? ['-m', 'sh', '-c', 'umount -R /sys/fs/cgroup 2>/dev/null || umount -l /sys/fs/cgroup; exec unshare "$@"', 'sh', ...inner]
    : inner;
  const child = spawn('unshare', argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  let out = '';
  child.stdout!.on('data', (d) => {
    out += d;
    logCopy?.write(d);
  });
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const deadline = Date.now() + 20_000;
  while (!/"msg":"listening"/.test(out)) {
    if (Date.now() > deadline || child.exitCode !== null) {
      child.kill('SIGKILL');
      throw new Error(`agent did not start listening; output:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  // `unshare` (after exec'ing through sh, with ownCgroups) forks the agent: its only child.
  const agentPid = Number(fs.readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/)[0]);
  return {
    unsharePid: child.pid!,
    agentPid,
    sock,
    addr: `unix://${sock}`,
    dir,
    child,
    inAgent: (p: string) => path.join(`/proc/${agentPid}/root`, p),
    mountInfo: () => fs.readFileSync(`/proc/${agentPid}/mountinfo`, 'utf8'),
    logs: () => out,
    logLines: () =>
      out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .map((l) => {
          try {
            return JSON.parse(l) as Record<string, any>;
          } catch {
            return {};
          }
        }),
    exited,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        try {
          process.kill(agentPid, 'SIGKILL'); // the namespace (and its containers) dies with its PID 1
        } catch {
          /* gone */
        }
        child.kill('SIGKILL');
        await exited;
      }
      fs.rmSync(dir, { recursive: true, force: true });
      // On this hybrid host the agent's cgroup2 mount is the host's unified hierarchy: the
      // agent's own (now empty) cgroup would outlive it.
      for (const d of ['/sys/fs/cgroup/unified/kata-agent', '/sys/fs/cgroup/kata-agent']) {
        try {
          fs.rmdirSync(d);
        } catch {
          // absent, or not ours to remove
        }
      }
    },
  };
}

export interface CtlResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function agentCtl(args: string[], input?: string): CtlResult {
  const r = spawnSync(process.execPath, [AGENT_CTL, ...args], { encoding: 'utf8', input, timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

export function connectUnix(p: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(p);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}
