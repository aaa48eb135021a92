// Where each RPC that is not served yet is planned, for the UNIMPLEMENTED message
// (keep in step with docs/protocol.md).
const table: Record<string, string> = {
  SetPolicy: 'agent policy support (Kata builds it with the agent-policy feature only)',
  UpdateInterface: 'network support', UpdateRoutes: 'network support', ListInterfaces: 'network support',
  ListRoutes: 'network support', AddARPNeighbors: 'network support', GetIPTables: 'network support',
  SetIPTables: 'network support',
  MemAgentMemcgSet: 'memory agent support', MemAgentCompactSet: 'memory agent support',
};

export function plannedFor(method: string): string | undefined {
  return table[method];
}
