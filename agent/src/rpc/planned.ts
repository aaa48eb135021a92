// Where each RPC that is not served yet is planned, for the UNIMPLEMENTED message
// (keep in step with docs/protocol.md).
const ISSUE3 = 'issue 3, sandbox and container lifecycle';
const ISSUE4 = 'issue 4, storage and devices';

const table: Record<string, string> = {
  SetPolicy: ISSUE3,
  UpdateEphemeralMounts: ISSUE4, RemoveStaleVirtiofsShareMounts: ISSUE4, AddSwap: ISSUE4, AddSwapPath: ISSUE4,
  GetVolumeStats: ISSUE4, ResizeVolume: ISSUE4,
  UpdateInterface: 'network support', UpdateRoutes: 'network support', ListInterfaces: 'network support',
  ListRoutes: 'network support', AddARPNeighbors: 'network support', GetIPTables: 'network support',
  SetIPTables: 'network support',
  MemAgentMemcgSet: 'memory agent support', MemAgentCompactSet: 'memory agent support',
};

export function plannedFor(method: string): string | undefined {
  return table[method];
}
