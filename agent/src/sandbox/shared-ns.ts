// The sandbox's shared IPC and UTS namespaces, persisted as bind mounts of
// nsfs files so containers can join them by path (linux.namespaces[].path).
// Kata unshares on a helper thread and bind-mounts /proc/<tid>/ns/<type>;
// Node cannot unshare a thread, so util-linux `unshare --ipc=FILE --uts=FILE
// true` does it (spawned through the agent's Spawner). A new UTS namespace
// starts with the host name of its creator, i.e. of the agent.
//
// unshare(1) bind-mounts onto FILE, which must exist; a bind mount of a
// namespace file below a shared mount would also appear in peer mount
// namespaces (and the kernel refuses some of those), so the directory is made
// a private mount first when the mount it lies on is shared.
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../log';
import type { RunOptions, RunResult } from '../proc/run';
import { Code, RpcError } from '../rpc/status';
import { isMountPoint, isOnSharedMount, parseMountInfoFull } from './mounts';

export type NsKind = 'ipc' | 'uts';

export interface SharedNsDeps {
  run: (file: string, args: string[], opts?: RunOptions) => Promise<RunResult>;
  mount: (source: string | null, target: string, fstype: string | null, flags: number, data: string | null) => void;
  umount2: (target: string, flags?: number) => void;
  /** Text of /proc/self/mountinfo. */
  mountInfo: () => string;
  log: Logger;
}

export interface SharedNamespaces {
  paths: Partial<Record<NsKind, string>>;
  /** Unmount and remove the namespace files (and the directory's own mount). Never throws. */
  cleanup(): void;
}

const MS_BIND = 0x1000;
const MS_PRIVATE = 1 << 18;
const MNT_DETACH = 2;
const UNSHARE_TIMEOUT_MS = 10_000;

export async function createSharedNamespaces(dir: string, kinds: readonly NsKind[], deps: SharedNsDeps): Promise<SharedNamespaces> {
  const made: string[] = [];
  let dirMounted = false;
  const cleanup = (): void => {
    for (const f of made.reverse()) {
      try {
        deps.umount2(f, MNT_DETACH);
      } catch (err) {
        if ((err as { code?: string }).code !== 'EINVAL' && (err as { code?: string }).code !== 'ENOENT') {
          deps.log.warn({ path: f, err: String(err) }, 'shared namespace: cannot unmount');
        }
      }
      quietly(() => fs.rmSync(f, { force: true }), deps.log, f);
    }
    made.length = 0;
    if (dirMounted) {
      try {
        deps.umount2(dir, MNT_DETACH);
      } catch (err) {
        deps.log.warn({ path: dir, err: String(err) }, 'shared namespace: cannot unmount the directory');
      }
      dirMounted = false;
    }
    quietly(() => fs.rmdirSync(dir), deps.log, dir);
  };
  if (kinds.length === 0) return { paths: {}, cleanup: () => undefined };
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    const entries = parseMountInfoFull(deps.mountInfo());
    if (isOnSharedMount(entries, dir) && !isMountPoint(entries, dir)) {
      deps.mount(dir, dir, null, MS_BIND, null);
      dirMounted = true;
      deps.mount(null, dir, null, MS_PRIVATE, null);
      deps.log.debug({ dir }, 'shared namespace: made the directory a private mount');
    } else if (isOnSharedMount(entries, dir)) {
      deps.mount(null, dir, null, MS_PRIVATE, null);
    }
    const paths: Partial<Record<NsKind, string>> = {};
    const args: string[] = [];
    for (const k of kinds) {
      const f = path.join(dir, k);
      fs.writeFileSync(f, '', { mode: 0o600 });
      made.push(f);
      paths[k] = f;
      args.push(`--${k}=${f}`);
    }
    let r: RunResult;
    try {
      r = await deps.run('unshare', [...args, 'true'], { timeoutMs: UNSHARE_TIMEOUT_MS });
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'ENOENT') {
        throw new RpcError(Code.FAILED_PRECONDITION, 'cannot create the shared namespaces: unshare (util-linux) is not installed in the guest');
      }
      throw err;
    }
    if (r.code !== 0) {
      const why = (r.stderr || r.stdout).trim() || (r.timedOut ? 'timed out' : `exit code ${r.code}`);
      throw new RpcError(Code.INTERNAL, `cannot create the shared namespaces (unshare ${args.join(' ')}): ${why}`);
    }
    const after = parseMountInfoFull(deps.mountInfo());
    for (const f of made) {
      const e = after.find((m) => m.mountPoint === f);
      if (!e || e.fstype !== 'nsfs') {
        throw new RpcError(Code.INTERNAL, `cannot create the shared namespaces: ${f} is not a namespace file after unshare`);
      }
    }
    deps.log.info({ paths }, 'shared namespaces created');
    return { paths, cleanup };
  } catch (err) {
    cleanup();
    throw err;
  }
}

function quietly(f: () => void, log: Logger, p: string): void {
  try {
    f();
  } catch (err) {
    if ((err as { code?: string }).code !== 'ENOENT') log.warn({ path: p, err: String(err) }, 'shared namespace: cannot remove');
  }
}
