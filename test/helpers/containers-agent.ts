// Start the real agent (dist/kata-agent.mjs) as PID 1 of private PID, mount and UTS
// namespaces, on a unix socket, with a kernel command line file. The outer
// mount namespace first unmounts the host's /sys/fs/cgroup tree (hybrid on
// this machine, which crun refuses), so the agent's own PID-1 init mounts the
// cgroup hierarchies as the command line says (systemd.unified_cgroup_hierarchy=0:
// a tmpfs with one cgroup v1 hierarchy per controller).
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AgentClient } from '../../agent/src/client/agent';
import { AGENT } from './agent-ns';
import { makeBusyboxRootfs } from './busybox-rootfs';

export interface ContainersAgent {
  /** pid (host view) of the agent, PID 1 of its namespaces. */
  agentPid: number;
  addr: string;
  dir: string;
  child: ChildProcess;
  /** A path inside the agent's mount namespace, as seen from here (/proc/<pid>/root/...). */
  inAgent(p: string): string;
  /** The agent's mountinfo text. */
  mountInfo(): string;
  logs(): string;
  logLines(): Record<string, any>[];
  client(): Promise<AgentClient>;
  /** A busybox rootfs at the agent's /run/kata-containers/shared/containers/<cid>/rootfs. */
  makeRootfs(cid: string): string;
  exited: Promise<number | null>;
  stop(): Promise<void>;
}


export async function startContainersAgent(opts: { cmdline: string; extraArgs?: string[] }): Promise<ContainersAgent> {
  const bundle = AGENT;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-ctr-agent-'));
  const sock = path.join(dir, 'agent.sock');
  const cmdlineFile = path.join(dir, 'cmdline');
  fs.writeFileSync(cmdlineFile, `${opts.cmdline}\n`);
  const script = 'umount -R /sys/fs/cgroup 2>/dev/null || umount -l /sys/fs/cgroup; exec unshare -pfmu --mount-proc "$@"';
  const child = spawn(
    'unshare',
    [
      '-m',
      'sh',
      '-c',
      script,
      'sh',
      process.execPath,
      bundle,
      '--listen',
      `unix://${sock}`,
      '--log-level',
      'debug',
      '--cmdline-file',
      cmdlineFile,
      ...(opts.extraArgs ?? []),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  const logFile = process.env.GK_AGENT_LOG ? fs.createWriteStream(process.env.GK_AGENT_LOG, { flags: 'a' }) : undefined;
  child.stdout!.on('data', (d) => { out += d; logFile?.write(d); });
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const deadline = Date.now() + 20_000;
  while (!/"msg":"listening"/.test(out)) {
    if (Date.now() > deadline || child.exitCode !== null) {
      child.kill('SIGKILL');
      throw new Error(`agent did not start; output:\n${out}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  const agentPid = Number(fs.readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/)[0]);
  const inAgent = (p: string) => path.join(`/proc/${agentPid}/root`, p);
  const clients: AgentClient[] = [];
  return {
    agentPid,
    addr: `unix://${sock}`,
    dir,
    child,
    inAgent,
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
    async client() {
      const c = await AgentClient.connect(`unix://${sock}`);
      clients.push(c);
      return c;
    },
    makeRootfs(cid: string) {
      return makeBusyboxRootfs(inAgent(`/run/kata-containers/shared/containers/${cid}/rootfs`));
    },
    exited,
    async stop() {
      for (const c of clients) c.close();
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
    },
  };
}
