// External tools osbuilder runs: found in PATH up front, so a missing one is a one-line error
// naming the Debian package that provides it (exit code 3), not a spawn failure halfway through.
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { failedError, missingError } from './errors';

/** Debian packages of the tools osbuilder uses. */
export const TOOL_PACKAGES: Record<string, string> = {
  mmdebstrap: 'mmdebstrap',
  'mkfs.ext4': 'e2fsprogs',
  e2fsck: 'e2fsprogs',
  debugfs: 'e2fsprogs',
  dumpe2fs: 'e2fsprogs',
  'mkfs.erofs': 'erofs-utils',
  'fsck.erofs': 'erofs-utils',
  lz4: 'lz4',
  zstd: 'zstd',
  xz: 'xz-utils',
  gzip: 'gzip',
  cpio: 'cpio',
  strip: 'binutils',
  readelf: 'binutils',
  objcopy: 'binutils',
  crun: 'crun',
  busybox: 'busybox-static',
  make: 'make',
  gcc: 'gcc',
  'qemu-system-x86_64': 'qemu-system-x86',
};

const SEARCH = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/** The tool's path, or undefined. */
export function findTool(name: string, pathEnv = process.env.PATH ?? ''): string | undefined {
  if (name.includes('/')) return fs.existsSync(name) ? name : undefined;
  for (const dir of [...pathEnv.split(':').filter(Boolean), ...SEARCH]) {
    const p = path.join(dir, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      if (fs.statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** The tool's path; MISSING (exit 3) naming the package to install when it is not there. */
export function requireTool(name: string, why: string): string {
  const p = findTool(name);
  if (p) return p;
  const pkg = TOOL_PACKAGES[name];
  throw missingError(`${name} is needed ${why} but is not installed`, pkg ? `apt-get install ${pkg}` : undefined);
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run a tool to completion; resolves with its output, throws FAILED (with its stderr) on a non-zero exit unless `allowFail`. */
export function runTool(
  file: string,
  args: string[],
  o: {
    env?: NodeJS.ProcessEnv;
    cwd?: string;
    input?: Buffer | string;
    allowFail?: boolean;
    onStdout?: (chunk: string) => void;
    onStderr?: (chunk: string) => void;
  } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { env: o.env ?? process.env, cwd: o.cwd, stdio: [o.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => {
      const t = d.toString();
      stdout += t;
      o.onStdout?.(t);
    });
    child.stderr!.on('data', (d: Buffer) => {
      const s = d.toString();
      stderr += s;
      o.onStderr?.(s);
    });
    child.once('error', (err) => reject(failedError(`cannot run ${file}: ${err.message}`)));
    child.once('close', (code, signal) => {
      const c = code ?? 128 + (signal ? 1 : 0);
      if (c !== 0 && !o.allowFail) {
        const tail = stderr.trim().split('\n').slice(-5).join('\n    ');
        reject(failedError(`${path.basename(file)} ${args.join(' ')} exited ${code ?? signal}${tail ? `:\n    ${tail}` : ''}`));
      } else resolve({ code: c, stdout, stderr });
    });
    if (o.input !== undefined) child.stdin!.end(o.input);
  });
}
