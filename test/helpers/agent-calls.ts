// Calls the container tests make the same way against any agent (in namespaces or in a guest):
// a process in the protocol's form, an expected failure, and reading a stream.
import type { AgentClient } from '../../agent/src/client/agent';
import type { CallOptions } from '../../agent/src/client/errors';
import { Code, RpcError } from '../../agent/src/rpc/status';
import { ociSpecToGrpc, type GrpcProcess, type OciSpec } from '../../agent/src/runtime/spec';
import { minimalProcess } from './busybox-rootfs';

/** A process (ExecProcess) as the protocol carries it. */
export function grpcProcess(args: string[], terminal = false): GrpcProcess {
  return ociSpecToGrpc({ ociVersion: '1.0.2', process: minimalProcess(args, terminal) } as unknown as OciSpec).Process!;
}

/** The RpcError a call fails with (throws if it succeeds or fails otherwise). */
export async function rejection(p: Promise<unknown>): Promise<RpcError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof RpcError) return err;
    throw err;
  }
  throw new Error('expected the call to fail');
}

/** Read a stream until the agent reports its end (Kata's EOF status). */
export async function readAll(c: AgentClient, method: 'ReadStdout' | 'ReadStderr', cid: string, execId = '', opts?: CallOptions): Promise<string> {
  let out = '';
  for (;;) {
    try {
      const r = await c.call(method, { container_id: cid, exec_id: execId, len: 65536 }, opts);
      out += Buffer.from(r.data as Uint8Array).toString('utf8');
    } catch (err) {
      if (err instanceof RpcError && err.code === Code.INTERNAL && /eof/.test(err.message)) return out;
      throw err;
    }
  }
}

/** Read stdout until `re` matches the accumulated output. */
export async function readUntil(c: AgentClient, cid: string, execId: string, re: RegExp, opts: CallOptions = { timeoutMs: 20_000 }): Promise<string> {
  let out = '';
  while (!re.test(out)) {
    const r = await c.call('ReadStdout', { container_id: cid, exec_id: execId, len: 4096 }, opts);
    out += Buffer.from(r.data as Uint8Array).toString('utf8');
  }
  return out;
}
