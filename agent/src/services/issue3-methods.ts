// The RPCs of the container stack (issue 3, sandbox and container lifecycle; issue 4, storage
// and devices): known without loading their implementation, so the agent can register them
// and load services/issue3.ts on first use.
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
  // issue 4: storages, devices, volumes, swap
  'grpc.AgentService/UpdateEphemeralMounts',
  'grpc.AgentService/RemoveStaleVirtiofsShareMounts',
  'grpc.AgentService/GetVolumeStats',
  'grpc.AgentService/ResizeVolume',
  'grpc.AgentService/AddSwap',
  'grpc.AgentService/AddSwapPath',
] as const;

/**
 * What GetGuestDetails reports (AgentDetails.storage_handlers / device_handlers): exactly the
 * Storage.driver and Device.type values the container stack serves (a unit test holds these
 * equal to storage/types.ts STORAGE_DRIVERS and sandbox/devices.ts DEVICE_HANDLERS, which are
 * not imported here to keep them off the start-up path).
 */
export const STORAGE_HANDLER_NAMES: readonly string[] = ['virtio-fs', '9p', 'blk', 'mmioblk', 'scsi', 'nvdimm', 'ephemeral', 'local', 'overlayfs', 'bind'];
export const DEVICE_HANDLER_NAMES: readonly string[] = ['blk', 'mmioblk', 'scsi', 'nvdimm'];
