// File access for cgroup trees. Real cgroupfs and the fake trees of the unit
// tests behave alike through these: writes open an EXISTING file (O_WRONLY |
// O_TRUNC, never O_CREAT, so a missing controller file is ENOENT, not a new
// file) and issue one write(2); errors become SysError naming the file.
import fs from 'node:fs';
import os from 'node:os';
import { SysError } from '../sys/libc';

const E = os.constants.errno;

export interface FsOps {
  /** File content, or undefined when it does not exist (ENOENT/ENOTDIR/ENODEV). */
  read(file: string): string | undefined;
  /** One write of `data` to an existing file. Throws SysError. */
  write(file: string, data: string): void;
  mkdir(dir: string): void;
  rmdir(dir: string): void;
  /** Names of the subdirectories of `dir` (symlinks followed); [] if missing. */
  subdirs(dir: string): string[];
  /** Every entry name of `dir`; [] if missing. */
  list(dir: string): string[];
  exists(file: string): boolean;
  isDir(file: string): boolean;
  realpath(file: string): string;
}

/** Turn a node fs error into a SysError (syscall, errno name, path). */
export function toSysError(err: unknown, syscall: string, file: string): Error {
  if (err instanceof SysError) return err;
  const e = err as NodeJS.ErrnoException;
  if (typeof e?.code === 'string') {
    const n = (E as Record<string, number>)[e.code] ?? (typeof e.errno === 'number' ? Math.abs(e.errno) : 0);
    if (n) return new SysError(syscall, n, file);
  }
  return err instanceof Error ? err : new Error(String(err));
}

const MISSING = new Set(['ENOENT', 'ENOTDIR', 'ENODEV']);

export function isMissing(err: unknown): boolean {
  const code = (err as { code?: unknown })?.code;
  return typeof code === 'string' && MISSING.has(code);
}

export const realFs: FsOps = {
  read(file) {
    try {
      return fs.readFileSync(file, 'utf8');
    } catch (e) {
      if (isMissing(e)) return undefined;
      throw toSysError(e, 'read', file);
    }
  },
  write(file, data) {
    let fd: number;
    try {
      fd = fs.openSync(file, fs.constants.O_WRONLY | fs.constants.O_TRUNC);
    } catch (e) {
      throw toSysError(e, 'open', file);
    }
    try {
      fs.writeSync(fd, Buffer.from(data));
    } catch (e) {
      throw toSysError(e, 'write', file);
    } finally {
      fs.closeSync(fd);
    }
  },
  mkdir(dir) {
    try {
      fs.mkdirSync(dir, { mode: 0o755 });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST') return;
      throw toSysError(e, 'mkdir', dir);
    }
  },
  rmdir(dir) {
    try {
      fs.rmdirSync(dir);
    } catch (e) {
      throw toSysError(e, 'rmdir', dir);
    }
  },
  subdirs(dir) {
    let ents: fs.Dirent[];
    try {
      ents = fs.readdirSync(dir, { withFileTypes: true });
    } catch (e) {
      if (isMissing(e)) return [];
      throw toSysError(e, 'readdir', dir);
    }
    const out: string[] = [];
    for (const d of ents) {
      if (d.isDirectory()) out.push(d.name);
      else if (d.isSymbolicLink()) {
        try {
          if (fs.statSync(`${dir}/${d.name}`).isDirectory()) out.push(d.name);
        } catch {
          // dangling link
        }
      }
    }
    return out.sort();
  },
  list(dir) {
    try {
      return fs.readdirSync(dir).sort();
    } catch (e) {
      if (isMissing(e)) return [];
      throw toSysError(e, 'readdir', dir);
    }
  },
  exists(file) {
    return fs.existsSync(file);
  },
  isDir(file) {
    try {
      return fs.statSync(file).isDirectory();
    } catch {
      return false;
    }
  },
  realpath(file) {
    try {
      return fs.realpathSync(file);
    } catch {
      return file;
    }
  },
};
