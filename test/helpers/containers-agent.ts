// The real agent as PID 1 of its own namespaces (startNsAgent), set up for containers: its
// init mounts its own cgroups from the given command line (ownCgroups), plus a client and
// busybox root file systems where a Kata host would share them.
import { AgentClient } from '../../agent/src/client/agent';
import { startNsAgent, type NsAgent, type NsAgentOptions } from './agent-ns';
import { makeBusyboxRootfs } from './busybox-rootfs';

export interface ContainersAgent extends NsAgent {
  client(): Promise<AgentClient>;
  /** A busybox rootfs at the agent's /run/kata-containers/shared/containers/<cid>/rootfs. */
  makeRootfs(cid: string): string;
}

export async function startContainersAgent(opts: Omit<NsAgentOptions, 'ownCgroups'> & { cmdline: string }): Promise<ContainersAgent> {
  const agent = await startNsAgent({ ...opts, ownCgroups: true });
  const clients: AgentClient[] = [];
  return {
    ...agent,
    async client() {
      const c = await AgentClient.connect(agent.addr);
      clients.push(c);
      return c;
    },
    makeRootfs: (cid: string) => makeBusyboxRootfs(agent.inAgent(`/run/kata-containers/shared/containers/${cid}/rootfs`)),
    async stop() {
      for (const c of clients) c.close();
      await agent.stop();
    },
  };
}
