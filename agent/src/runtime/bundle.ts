// OCI bundle directories: <dir>/config.json (0600) in a 0700 directory. The
// rootfs inside is the caller's business (mounted there before create and
// unmounted before removal). Every path must lie strictly below the bundle
// root (/run/kata-containers, injectable for tests), also after resolving
// symlinks, and removal refuses to run while anything is mounted in the tree:
// a recursive delete through a still-mounted rootfs would destroy the image.
// The file operations are synchronous: bundles live on the agent's tmpfs, where a
// syscall costs microseconds and a libuv thread-pool round trip ~0.1-0.2 ms (D13).
import fs from 'node:fs';
import path from 'node:path';
import { parseMountInfo } from '../init/mountinfo';
import { Code, RpcError } from '../rpc/status';

export const BUNDLE_ROOT = '/run/kata-containers';
export const CONFIG_NAME = 'config.json';

export interface BundleOptions {
  /** Bundles must lie strictly below this directory (default /run/kata-containers). */
  root?: string;
  /** Mount points currently visible (default: from /proc/self/mountinfo). */
  mountPoints?: () => string[];
}

function procMountPoints(): string[] {
  return parseMountInfo(fs.readFileSync('/proc/self/mountinfo', 'utf8')).map((e) => e.mountPoint);
}

function inside(child: string, parent: string): boolean {
  return child.startsWith(parent === '/' ? '/' : `${parent}/`) && child !== parent;
}

/** realpath of the nearest existing ancestor of `p` (inclusive) + the rest of `p`. */
function realpathPartial(p: string): string {
  let existing = p;
  const rest: string[] = [];
  for (;;) {
    try {
      return path.join(fs.realpathSync(existing), ...rest);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      const parent = path.dirname(existing);
      if (parent === existing) return p;
      rest.unshift(path.basename(existing));
      existing = parent;
    }
  }
}

/**
 * The bundle directory as an absolute, symlink-free path strictly below the
 * root. Throws INVALID_ARGUMENT otherwise.
 */
export function confineBundleDir(dir: string, root = BUNDLE_ROOT): string {
  if (typeof dir !== 'string' || dir === '' || dir.includes('\0')) {
    throw new RpcError(Code.INVALID_ARGUMENT, `invalid bundle path ${JSON.stringify(dir)}`);
  }
  const absRoot = path.resolve(root);
  const abs = path.resolve(dir);
  if (!inside(abs, absRoot)) {
    throw new RpcError(Code.INVALID_ARGUMENT, `bundle path ${dir} is not below ${absRoot}`);
  }
  let real: string;
  let realRoot: string;
  try {
    real = realpathPartial(abs);
    realRoot = realpathPartial(absRoot);
  } catch (err) {
    throw new RpcError(Code.INTERNAL, `bundle path ${dir}: ${(err as Error).message}`);
  }
  if (!inside(real, realRoot)) {
    throw new RpcError(Code.INVALID_ARGUMENT, `bundle path ${dir} resolves to ${real}, outside ${realRoot}`);
  }
  return real;
}

/**
 * Create the bundle directory (0700; parents as needed) and write
 * config.json (0600, atomically). `config` is the OCI spec object or its JSON
 * text. Returns the config.json path.
 */
export async function writeBundle(dir: string, config: string | object, opts: BundleOptions = {}): Promise<string> {
  const real = confineBundleDir(dir, opts.root);
  const text = typeof config === 'string' ? config : JSON.stringify(config);
  try {
    fs.mkdirSync(real, { recursive: true, mode: 0o700 });
    const st = fs.lstatSync(real);
    if (!st.isDirectory()) throw new Error('not a directory');
    fs.chmodSync(real, 0o700);
    const file = path.join(real, CONFIG_NAME);
    const tmp = path.join(real, `.${CONFIG_NAME}.${process.pid}.tmp`);
    fs.writeFileSync(tmp, text, { mode: 0o600, flag: 'w' });
    fs.chmodSync(tmp, 0o600);
    fs.renameSync(tmp, file);
    return file;
  } catch (err) {
    if (err instanceof RpcError) throw err;
    throw new RpcError(Code.INTERNAL, `write bundle ${real}: ${(err as Error).message}`);
  }
}

/**
 * Remove a bundle directory recursively. A missing directory is not an error.
 * Refuses (FAILED_PRECONDITION) when a mount point lies in the tree or a
 * subdirectory is on another file system.
 */
export async function removeBundle(dir: string, opts: BundleOptions = {}): Promise<void> {
  const real = confineBundleDir(dir, opts.root);
  let top: fs.Stats;
  try {
    top = fs.lstatSync(real);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new RpcError(Code.INTERNAL, `remove bundle ${real}: ${(err as Error).message}`);
  }
  if (!top.isDirectory()) throw new RpcError(Code.FAILED_PRECONDITION, `remove bundle ${real}: not a directory`);
  let mounts: string[];
  try {
    mounts = (opts.mountPoints ?? procMountPoints)();
  } catch (err) {
    throw new RpcError(Code.INTERNAL, `remove bundle ${real}: cannot list mounts: ${(err as Error).message}`);
  }
  const busy = mounts.filter((m) => m === real || inside(m, real));
  if (busy.length > 0) {
    throw new RpcError(Code.FAILED_PRECONDITION, `remove bundle ${real}: still mounted: ${busy.join(', ')}`);
  }
  const crossing = findOtherDevice(real, top.dev);
  if (crossing !== undefined) {
    throw new RpcError(Code.FAILED_PRECONDITION, `remove bundle ${real}: ${crossing} is on another file system`);
  }
  try {
    fs.rmSync(real, { recursive: true, force: true });
  } catch (err) {
    throw new RpcError(Code.INTERNAL, `remove bundle ${real}: ${(err as Error).message}`);
  }
}

/** The first directory below `dir` (not following symlinks) whose device differs from `dev`. */
function findOtherDevice(dir: string, dev: number): string | undefined {
  const stack = [dir];
  while (stack.length > 0) {
    const d = stack.pop()!;
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(d, { withFileTypes: true });
    } catch {
      continue; // vanished or unreadable: rm will report it
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const p = path.join(d, e.name);
      try {
        if (fs.lstatSync(p).dev !== dev) return p;
      } catch {
        continue;
      }
      stack.push(p);
    }
  }
  return undefined;
}
