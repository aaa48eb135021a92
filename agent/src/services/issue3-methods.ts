// The RPCs of issue 3 (sandbox and container lifecycle): known without loading their
// implementation, so the agent can register them and load services/issue3.ts on first use.
export const ISSUE3_METHODS = [
  'grpc.AgentService/CreateSandbox',
  'grpc.AgentService/DestroySandbox',
  'grpc.AgentService/GetOOMEvent',
  'grpc.AgentService/CreateContainer',
  'grpc.AgentService/StartContainer',
  'grpc.AgentService/RemoveContainer',
  'grpc.AgentService/UpdateContainer',
  'grpc.AgentService/StatsContainer',
  'grpc.AgentService/PauseContainer',
  'grpc.AgentService/ResumeContainer',
  'grpc.AgentService/ListProcesses',
  'grpc.AgentService/GetDiagnosticData',
  'grpc.AgentService/ExecProcess',
  'grpc.AgentService/SignalProcess',
  'grpc.AgentService/WaitProcess',
  'grpc.AgentService/WriteStdin',
  'grpc.AgentService/ReadStdout',
  'grpc.AgentService/ReadStderr',
  'grpc.AgentService/CloseStdin',
  'grpc.AgentService/TtyWinResize',
] as const;
