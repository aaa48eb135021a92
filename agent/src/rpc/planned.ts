// Where each RPC that is not served yet is planned, for the UNIMPLEMENTED message
// (keep in step with docs/protocol.md).
const ISSUE3 = 'issue 3, sandbox and container lifecycle';
const ISSUE4 = 'issue 4, storage and devices';

const table: Record<string, string> = {
  CreateContainer: ISSUE3, StartContainer: ISSUE3, RemoveContainer: ISSUE3, ExecProcess: ISSUE3,
  SignalProcess: ISSUE3, WaitProcess: ISSUE3, UpdateContainer: ISSUE3, StatsContainer: ISSUE3,
  PauseContainer: ISSUE3, ResumeContainer: ISSUE3, GetDiagnosticData: ISSUE3, WriteStdin: ISSUE3,
  ReadStdout: ISSUE3, ReadStderr: ISSUE3, CloseStdin: ISSUE3, TtyWinResize: ISSUE3, CreateSandbox: ISSUE3,
  DestroySandbox: ISSUE3, GetOOMEvent: ISSUE3, SetPolicy: ISSUE3, ListProcesses: ISSUE3,
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
