// Identifier validation for container, exec and sandbox ids.
//
// Kata's rule (kata-sys-util validate.rs `verify_id`, used by the agent's
// CreateContainer; the Go runtime's VerifyContainerID documents the same
// regex) is
//
//     ^[a-zA-Z0-9][a-zA-Z0-9_.-]+$
//
// i.e. at least two characters, the first alphanumeric. We apply it to every
// id a host names (container, exec, sandbox) because ids become path
// components (bundle directories, state directories, cgroup names) in the
// guest: the rule excludes '/', leading '.', '..' and empty ids.
//
// Two deliberate choices (Kata has no explicit bound and uses Rust's
// Unicode-aware `is_alphanumeric`):
// - ASCII only, as the documented regex says: ids are used verbatim in file
//   names, cgroup paths and runtime state; non-ASCII letters buy nothing.
// - At most MAX_ID_LENGTH (255 = NAME_MAX) characters: a longer id cannot be a
//   directory name, so Kata's own agent would fail later with ENAMETOOLONG.
//   Real ids are 64 hex digits (containerd, CRI-O, Docker); containerd caps
//   its identifiers at 76.
import { Code, RpcError } from '../rpc/status';

/** Longest id accepted: NAME_MAX, the longest single path component. */
export const MAX_ID_LENGTH = 255;

const ID_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;
const FIRST_RE = /^[a-zA-Z0-9]/;
const REST_RE = /^[a-zA-Z0-9_.-]*$/;

/** Why `id` is not a valid id, or undefined when it is. */
export function idProblem(id: unknown): string | undefined {
  if (typeof id !== 'string') return 'must be a string';
  if (id.length === 0) return 'must not be empty';
  if (id.length > MAX_ID_LENGTH) return `must be at most ${MAX_ID_LENGTH} characters, got ${id.length}`;
  if (ID_RE.test(id)) return undefined;
  if (!FIRST_RE.test(id)) return 'must start with an ASCII letter or digit';
  if (!REST_RE.test(id)) return "must contain only ASCII letters, digits, '_', '.' and '-'";
  return 'must be at least 2 characters long';
}

export function isValidId(id: unknown): id is string {
  return idProblem(id) === undefined;
}

/** The id as shown in an error message: quoted, escaped, and cut to 80 characters. */
export function shown(id: unknown): string {
  if (typeof id !== 'string') return String(id);
  return id.length > 80 ? `${JSON.stringify(id.slice(0, 80))}...` : JSON.stringify(id);
}

function check(kind: string, id: unknown): asserts id is string {
  const problem = idProblem(id);
  if (problem !== undefined) throw new RpcError(Code.INVALID_ARGUMENT, `invalid ${kind} id ${shown(id)}: ${problem}`);
}

/** Throws RpcError(INVALID_ARGUMENT, 'invalid container id "<id>": ...') unless `id` is valid. */
export function validateContainerId(id: unknown): asserts id is string {
  check('container', id);
}

/** Throws RpcError(INVALID_ARGUMENT, 'invalid sandbox id "<id>": ...') unless `id` is valid. */
export function validateSandboxId(id: unknown): asserts id is string {
  check('sandbox', id);
}

/**
 * Throws RpcError(INVALID_ARGUMENT, 'invalid exec id "<id>": ...') unless `id`
 * is valid. With `allowEmpty`, "" passes: several Kata requests (SignalProcess,
 * WaitProcess, ...) use an empty exec id for the container's init process.
 */
export function validateExecId(id: unknown, opts: { allowEmpty?: boolean } = {}): asserts id is string {
  if (opts.allowEmpty && id === '') return;
  check('exec', id);
}
