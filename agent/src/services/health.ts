// grpc.Health: liveness and version, as the Kata agent answers them.
import type { Handler } from '../rpc/dispatch';
import { AGENT_VERSION, API_VERSION } from '../version';

/** HealthCheckResponse.ServingStatus.SERVING */
export const SERVING = 1;

export const healthCheck: Handler = () => ({ status: SERVING });

export const healthVersion: Handler = () => ({ grpc_version: API_VERSION, agent_version: AGENT_VERSION });
