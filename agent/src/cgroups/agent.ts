// The agent's own cgroup.
import { AGENT_CGROUP } from './paths';
import type { Cgroups } from './types';

export interface AgentCgroupOptions {
  /** cgroup v2 memory.low for the agent (protection from reclaim); ignored on v1. */
  memoryLowBytes?: number;
}

/**
 * Move process `pid` (the agent) into /kata-agent: created (on v2 with the
 * root's controllers delegated to it) and joined in every hierarchy. On v2 the
 * agent's memory.low is set after the move. Returns the cgroup's directory.
 * Throws (SysError/RpcError); the caller logs and carries on.
 */
export function setupAgentCgroup(cg: Cgroups, pid: number, opts: AgentCgroupOptions = {}): string {
  cg.create(AGENT_CGROUP);
  cg.addProcess(AGENT_CGROUP, pid);
  if (cg.mode === 'v2' && opts.memoryLowBytes !== undefined && opts.memoryLowBytes > 0) {
    cg.update(AGENT_CGROUP, { memory: { reservation: Math.trunc(opts.memoryLowBytes) } });
  }
  return cg.path(AGENT_CGROUP);
}
