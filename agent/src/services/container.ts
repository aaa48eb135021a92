// Container RPCs: CreateContainer, StartContainer, RemoveContainer,
// UpdateContainer, StatsContainer, PauseContainer, ResumeContainer,
// ListProcesses, GetDiagnosticData. Decode, call the Sandbox, encode.
import type { Handler } from '../rpc/dispatch';
import type { Sandbox } from '../sandbox/sandbox';
import type { GrpcResources, GrpcSpec } from '../runtime/spec';
import { messageList, stringList } from './sandbox';
import { boolField, intField, stringField } from './util';

export interface ContainerHandlers {
  createContainer: Handler;
  startContainer: Handler;
  removeContainer: Handler;
  updateContainer: Handler;
  statsContainer: Handler;
  pauseContainer: Handler;
  resumeContainer: Handler;
  listProcesses: Handler;
  getDiagnosticData: Handler;
}

const cidOf = (req: Record<string, any>): string => stringField(req.container_id, 'container_id');

export function makeContainerHandlers(sandbox: Sandbox): ContainerHandlers {
  return {
    createContainer: async (req) => {
      await sandbox.createContainer({
        containerId: cidOf(req),
        execId: stringField(req.exec_id, 'exec_id'),
        devices: messageList(req.devices, 'devices'),
        storages: messageList(req.storages, 'storages'),
        spec: (req.OCI ?? null) as GrpcSpec | null,
        // Kata 1.x hosts send agent_pidns (field 8, see docs/protocol.md) for the same purpose.
        sandboxPidns: boolField(req.sandbox_pidns) || boolField(req.agent_pidns),
      });
      return {};
    },
    startContainer: async (req) => {
      await sandbox.startContainer(cidOf(req));
      return {};
    },
    removeContainer: async (req, ctx) => {
      await sandbox.removeContainer(cidOf(req), intField(req.timeout, 'timeout', 0, 0xffffffff), ctx.signal);
      return {};
    },
    updateContainer: async (req) => {
      await sandbox.updateContainer(cidOf(req), (req.resources ?? null) as GrpcResources | null);
      return {};
    },
    statsContainer: (req) => sandbox.statsContainer(cidOf(req)),
    pauseContainer: async (req) => {
      await sandbox.pauseContainer(cidOf(req));
      return {};
    },
    resumeContainer: async (req) => {
      await sandbox.resumeContainer(cidOf(req));
      return {};
    },
    listProcesses: async (req) => ({
      process_list: await sandbox.listProcesses(cidOf(req), stringField(req.format, 'format'), stringList(req.args, 'args')),
    }),
    getDiagnosticData: async (req) => ({
      data: await sandbox.diagnosticData(cidOf(req), stringField(req.log_type, 'log_type')),
    }),
  };
}
