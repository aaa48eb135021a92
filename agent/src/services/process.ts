// Process RPCs: ExecProcess, SignalProcess, WaitProcess and the stdio ones
// (WriteStdin, ReadStdout, ReadStderr, CloseStdin, TtyWinResize).
import type { Handler } from '../rpc/dispatch';
import type { GrpcProcess } from '../runtime/spec';
import type { Sandbox } from '../sandbox/sandbox';
import { bytesField, intField, stringField } from './util';

export interface ProcessHandlers {
  execProcess: Handler;
  signalProcess: Handler;
  waitProcess: Handler;
  writeStdin: Handler;
  readStdout: Handler;
  readStderr: Handler;
  closeStdin: Handler;
  ttyWinResize: Handler;
}

const ids = (req: Record<string, any>): [string, string] => [
  stringField(req.container_id, 'container_id'),
  stringField(req.exec_id, 'exec_id'),
];

export function makeProcessHandlers(sandbox: Sandbox): ProcessHandlers {
  const read =
    (stream: 'stdout' | 'stderr'): Handler =>
    async (req, ctx) => {
      const [cid, eid] = ids(req);
      const data = await sandbox.readStream(cid, eid, stream, intField(req.len, 'len', 0, 0xffffffff), ctx.signal);
      return { data };
    };
  return {
    execProcess: async (req) => {
      const [cid, eid] = ids(req);
      await sandbox.execProcess(cid, eid, (req.process ?? null) as GrpcProcess | null);
      return {};
    },
    signalProcess: async (req) => {
      const [cid, eid] = ids(req);
      await sandbox.signalProcess(cid, eid, intField(req.signal, 'signal', 0, 0xffffffff));
      return {};
    },
    waitProcess: async (req, ctx) => {
      const [cid, eid] = ids(req);
      return { status: await sandbox.waitProcess(cid, eid, ctx.signal) };
    },
    writeStdin: async (req, ctx) => {
      const [cid, eid] = ids(req);
      return { len: await sandbox.writeStdin(cid, eid, bytesField(req.data, 'data'), ctx.signal) };
    },
    readStdout: read('stdout'),
    readStderr: read('stderr'),
    closeStdin: (req) => {
      const [cid, eid] = ids(req);
      sandbox.closeStdin(cid, eid);
      return {};
    },
    ttyWinResize: (req) => {
      const [cid, eid] = ids(req);
      sandbox.ttyWinResize(cid, eid, intField(req.row, 'row', 0, 0xffffffff), intField(req.column, 'column', 0, 0xffffffff));
      return {};
    },
  };
}
