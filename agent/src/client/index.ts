// Host-side client of the agent protocol (agent-ctl, tests, benchmarks).
export { AgentClient, resolveMethod, checkFields, jsonConversion, type Proto, type ConnectOptions } from './agent';
export { dial, parseAddress, formatAddress, setVsockDialer, hybridVsockHandshake, type Address, type DialOptions, type VsockDialer } from './dial';
export { Code, RpcError, ConnectionError, UsageError, type CallOptions } from './errors';
export { TtrpcClient } from './ttrpc';
export { GrpcClient, grpcTimeout } from './grpc';
