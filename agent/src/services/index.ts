// The RPCs of issue 2: health, guest details and guest-wide operations,
// CopyFile and GetMetrics, registered on the shared Dispatcher.
import { lazyHandler, type Dispatcher } from '../rpc/dispatch';
import { resolveDeps, type ResolvedDeps, type ServiceDeps } from './deps';
import { makeGuestHandlers } from './guest';
import { healthCheck, healthVersion } from './health';

export type { HandlerRegistry, ServiceDeps, ServicePaths, ServiceSys, StatFs } from './deps';
export { DEFAULT_PATHS, resolveDeps } from './deps';

export const ISSUE2_METHODS = [
  'grpc.Health/Check',
  'grpc.Health/Version',
  'grpc.AgentService/GetGuestDetails',
  'grpc.AgentService/SetGuestDateTime',
  'grpc.AgentService/ReseedRandomDev',
  'grpc.AgentService/OnlineCPUMem',
  'grpc.AgentService/MemHotplugByProbe',
  'grpc.AgentService/CopyFile',
  'grpc.AgentService/GetMetrics',
] as const;

export interface Issue2Services {
  deps: ResolvedDeps;
  /** Resolves once background OnlineCPUMem work (wait=false) queued so far has finished. */
  idle(): Promise<void>;
}

export function registerIssue2Services(dispatcher: Dispatcher, deps: ServiceDeps = {}): Issue2Services {
  const d = resolveDeps(deps);
  const guest = makeGuestHandlers(d);
  dispatcher.register('grpc.Health/Check', healthCheck);
  dispatcher.register('grpc.Health/Version', healthVersion);
  dispatcher.register('grpc.AgentService/GetGuestDetails', guest.getGuestDetails);
  dispatcher.register('grpc.AgentService/SetGuestDateTime', guest.setGuestDateTime);
  dispatcher.register('grpc.AgentService/ReseedRandomDev', guest.reseedRandomDev);
  dispatcher.register('grpc.AgentService/OnlineCPUMem', guest.onlineCpuMem);
  dispatcher.register('grpc.AgentService/MemHotplugByProbe', guest.memHotplugByProbe);
  // CopyFile (node:crypto) and GetMetrics are loaded on their first call: the
  // agent does not evaluate them on its way to 'listening'.
  dispatcher.register('grpc.AgentService/CopyFile', lazyHandler(async () => (await import('./copyfile')).makeCopyFile(d)));
  dispatcher.register('grpc.AgentService/GetMetrics', lazyHandler(async () => (await import('./metrics')).makeGetMetrics(d)));
  return { deps: d, idle: guest.idle };
}

