// Start the built agent (dist/kata-agent.mjs) as PID 1 of private PID, mount and UTS
// namespaces listening on a unix socket, and run the built agent-ctl against it.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
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
  logs(): string;
  /** Parsed JSON log lines so far. */
  logLines(): Record<string, any>[];
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

export const isRoot = process.getuid?.() === 0;

export async function startNsAgent(extraArgs: string[] = [], env: Record<string, string> = {}): Promise<NsAgent> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-agent-'));
  const sock = path.join(dir, 'agent.sock');
  const child = spawn(
    'unshare',
    ['-pfmu', '--mount-proc', process.execPath, AGENT, '--listen', `unix://${sock}`, '--log-level', 'debug', ...extraArgs],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } },
  );
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
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
  const agentPid = Number(fs.readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/)[0]);
  return {
    unsharePid: child.pid!,
    agentPid,
    sock,
    addr: `unix://${sock}`,
    dir,
    child,
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
      if (child.exitCode === null) {
        child.kill('SIGKILL'); // unshare; the namespace dies with its PID 1 below
        try {
          process.kill(agentPid, 'SIGKILL');
        } catch {
          /* gone */
        }
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
