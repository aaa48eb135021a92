// CreateSandboxRequest.kernel_modules: `modprobe -v -- NAME PARAM...` for
// each module, in order (Kata: load_kernel_module, /sbin/modprobe -v NAME
// PARAMS). "--" keeps a parameter from being read as a modprobe option.
import type { RunOptions, RunResult } from '../proc/run';
import { Code, RpcError } from '../rpc/status';

export interface KernelModule {
  name: string;
  parameters: string[];
}

const MODPROBE_TIMEOUT_MS = 60_000;

export function validateKernelModules(mods: readonly KernelModule[]): void {
  mods.forEach((m, i) => {
    if (typeof m.name !== 'string' || m.name.trim() === '') throw new RpcError(Code.INVALID_ARGUMENT, `kernel_modules[${i}].name is empty`);
    if (/[\s/\0]/.test(m.name)) throw new RpcError(Code.INVALID_ARGUMENT, `kernel_modules[${i}].name ${JSON.stringify(m.name)} is not a module name`);
    m.parameters.forEach((p, j) => {
      if (p.includes('\0')) throw new RpcError(Code.INVALID_ARGUMENT, `kernel_modules[${i}].parameters[${j}] contains a NUL byte`);
    });
  });
}

export async function loadKernelModule(
  m: KernelModule,
  run: (file: string, args: string[], opts?: RunOptions) => Promise<RunResult>,
): Promise<void> {
  let r: RunResult;
  try {
    r = await run('modprobe', ['-v', '--', m.name, ...m.parameters], { timeoutMs: MODPROBE_TIMEOUT_MS });
  } catch (err) {
    if ((err as { code?: string }).code === 'ENOENT') {
      throw new RpcError(Code.FAILED_PRECONDITION, `cannot load kernel module ${m.name}: modprobe is not installed in the guest`);
    }
    throw new RpcError(Code.INTERNAL, `cannot load kernel module ${m.name}: ${(err as Error).message}`);
  }
  if (r.code === 0) return;
  const out = `${r.stderr.trim()}${r.stdout.trim() ? ` ${r.stdout.trim()}` : ''}`.trim();
  const how = r.timedOut ? 'timed out' : r.signal !== undefined ? `killed by signal ${r.signal}` : `exit code ${r.code}`;
  const msg = `cannot load kernel module ${m.name}: modprobe failed (${how})${out ? `: ${out}` : ''}`;
  // "modprobe: FATAL: Module x not found in directory /lib/modules/...", or no module tree at all.
  if (/not found|No such file or directory|could not open moddep/i.test(out)) throw new RpcError(Code.NOT_FOUND, msg);
  throw new RpcError(r.timedOut ? Code.DEADLINE_EXCEEDED : Code.INTERNAL, msg);
}
