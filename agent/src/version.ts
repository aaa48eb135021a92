// Agent and protocol version reported by Health.Version and GetGuestDetails.
import pkg from '../../package.json';

export const AGENT_VERSION: string = pkg.version;
/** The Kata API version whose agent.proto we follow (Health.Version grpc_version). */
export const API_VERSION = '0.0.1';
