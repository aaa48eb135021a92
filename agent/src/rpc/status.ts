// gRPC / google.rpc status codes shared by the ttrpc and gRPC servers.
export enum Code {
  OK = 0,
  CANCELLED = 1,
  UNKNOWN = 2,
  INVALID_ARGUMENT = 3,
  DEADLINE_EXCEEDED = 4,
  NOT_FOUND = 5,
  ALREADY_EXISTS = 6,
  PERMISSION_DENIED = 7,
  RESOURCE_EXHAUSTED = 8,
  FAILED_PRECONDITION = 9,
  ABORTED = 10,
  OUT_OF_RANGE = 11,
  UNIMPLEMENTED = 12,
  INTERNAL = 13,
  UNAVAILABLE = 14,
  DATA_LOSS = 15,
  UNAUTHENTICATED = 16,
}

/** An error that maps to a protocol status. Handlers throw these. */
export class RpcError extends Error {
  readonly code: Code;
  constructor(code: Code, message: string) {
    super(message);
    this.name = 'RpcError';
    this.code = code;
  }
}

export const invalidArgument = (msg: string) => new RpcError(Code.INVALID_ARGUMENT, msg);
export const notFound = (msg: string) => new RpcError(Code.NOT_FOUND, msg);
export const alreadyExists = (msg: string) => new RpcError(Code.ALREADY_EXISTS, msg);
export const unimplemented = (msg: string) => new RpcError(Code.UNIMPLEMENTED, msg);
export const internal = (msg: string) => new RpcError(Code.INTERNAL, msg);
export const deadlineExceeded = (msg: string) => new RpcError(Code.DEADLINE_EXCEEDED, msg);

/** Map any thrown value to {code, message}. SysErrors map by errno. */
export function toStatus(err: unknown): { code: Code; message: string } {
  if (err instanceof RpcError) return { code: err.code, message: err.message };
  const e = err as { code?: unknown; message?: unknown; name?: string };
  const message = typeof e?.message === 'string' ? e.message : String(err);
  switch (e?.code) {
    case 'ENOENT':
      return { code: Code.NOT_FOUND, message };
    case 'EEXIST':
      return { code: Code.ALREADY_EXISTS, message };
    case 'EINVAL':
      return { code: Code.INVALID_ARGUMENT, message };
    case 'EACCES':
    case 'EPERM':
      return { code: Code.PERMISSION_DENIED, message };
    case 'ETIMEDOUT':
      return { code: Code.DEADLINE_EXCEEDED, message };
    default:
      return { code: Code.INTERNAL, message };
  }
}
