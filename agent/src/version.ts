// Agent and protocol version reported by Health.Version and GetGuestDetails.
import pkg from '../../package.json';

export const AGENT_VERSION: string = pkg.version;
/** The git commit the agent was built from, when the build stamps it (esbuild define, see osbuilder pack); else ''. */
declare const __GUESTKIT_COMMIT__: string | undefined;
export const AGENT_COMMIT: string = typeof __GUESTKIT_COMMIT__ === 'string' ? __GUESTKIT_COMMIT__ : '';
/** The Kata API version whose agent.proto we follow (Health.Version grpc_version). */
export const API_VERSION = '0.0.1';
