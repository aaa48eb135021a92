// CreateSandbox, DestroySandbox and GetOOMEvent: decode, call the Sandbox, encode.
import type { Handler } from '../rpc/dispatch';
import { invalidArgument } from '../rpc/status';
import type { KernelModule } from '../sandbox/kernel-modules';
import type { Sandbox } from '../sandbox/sandbox';
import { boolField, stringField } from './util';

export interface SandboxHandlers {
  createSandbox: Handler;
  destroySandbox: Handler;
  getOOMEvent: Handler;
}

export function stringList(v: unknown, name: string): string[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw invalidArgument(`${name} must be a list of strings`);
  return v.map((x, i) => stringField(x, `${name}[${i}]`));
}

export function messageList(v: unknown, name: string): unknown[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw invalidArgument(`${name} must be a list`);
  return v;
}

export function makeSandboxHandlers(sandbox: Sandbox): SandboxHandlers {
  return {
    createSandbox: async (req) => {
      const kernelModules: KernelModule[] = messageList(req.kernel_modules, 'kernel_modules').map((m, i) => {
        const o = (m ?? {}) as Record<string, unknown>;
        return {
          name: stringField(o.name, `kernel_modules[${i}].name`),
          parameters: stringList(o.parameters, `kernel_modules[${i}].parameters`),
        };
      });
      await sandbox.createSandbox({
        hostname: stringField(req.hostname, 'hostname'),
        dns: stringList(req.dns, 'dns'),
        storages: messageList(req.storages, 'storages'),
        sandboxPidns: boolField(req.sandbox_pidns),
        sandboxId: stringField(req.sandbox_id, 'sandbox_id'),
        guestHookPath: stringField(req.guest_hook_path, 'guest_hook_path'),
        kernelModules,
      });
      return {};
    },
    destroySandbox: async () => {
      await sandbox.destroySandbox();
      return {};
    },
    getOOMEvent: async (_req, ctx) => ({ container_id: await sandbox.nextOomEvent(ctx.signal) }),
  };
}
