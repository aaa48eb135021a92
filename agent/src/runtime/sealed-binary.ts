// A sealed in-memory copy of the OCI runtime binary, executed in place of the file.
//
// crun and runc defend against CVE-2019-5736 (a container overwriting the runtime through
// /proc/self/exe) by checking, at every start, whether they run from a fully sealed memfd;
// when not, they make a private copy of themselves (crun 1.8: a read-only bind mount of
// /proc/self/exe; runc: a memfd) and execute themselves again. That second exec, with its
// second round of dynamic linking, is about half the cost of a short crun call (measured:
// `crun start` 4.7 -> 2.5 ms, docs/benchmarks.md). Both runtimes skip the copy when
// /proc/self/exe already is a memfd sealed against writes, shrinking and growing, and runc
// documents that mode (contrib/cmd/memfd-bind). So the agent makes that copy once: it
// reads the binary into a memfd, seals it, keeps the fd (close-on-exec) and spawns the
// runtime as /proc/<agent pid>/fd/<fd> with argv[0] unchanged. The protection is the same
// (the container can reach only a sealed, unwritable copy) and one copy serves every call.
// /proc/<pid>/fd is used rather than /proc/self/fd because the spawner closes every fd the
// child does not need before it executes.
import fs from 'node:fs';
import { F_SEAL, MFD, addSeals, closeFd, getSeals, memfdCreate } from '../sys/fs';

/** The seals the runtimes check for (runc's RUNC_MEMFD_SEALS, crun's copy of it). */
export const RUNTIME_SEALS = F_SEAL.SEAL | F_SEAL.SHRINK | F_SEAL.GROW | F_SEAL.WRITE;

export interface SealedBinary {
  /** The memfd, owned by the agent for its lifetime (close-on-exec). */
  fd: number;
  /** What to execute: /proc/<pid>/fd/<fd>. */
  execPath: string;
  /** Size of the copy in bytes (guest memory it holds). */
  bytes: number;
}

export interface SealedBinaryDeps {
  readFile(path: string): Buffer;
  memfdCreate(name: string, flags: number): number;
  write(fd: number, buf: Buffer, offset: number): number;
  addSeals(fd: number, seals: number): void;
  getSeals(fd: number): number;
  close(fd: number): void;
  /** The agent's pid as its children see it (their /proc). */
  pid: number;
}

export const realSealedBinaryDeps: SealedBinaryDeps = {
  readFile: (p) => fs.readFileSync(p),
  memfdCreate,
  write: (fd, buf, offset) => fs.writeSync(fd, buf, offset, buf.length - offset),
  addSeals,
  getSeals,
  close: closeFd,
  pid: process.pid,
};

/**
 * Copy `binary` (an absolute path to a regular file) into a sealed memfd. Throws
 * (SysError or a file-system error) when the kernel or the file does not allow it; the
 * caller then runs the binary from its path.
 */
export function sealBinary(binary: string, name: string, deps: SealedBinaryDeps = realSealedBinaryDeps): SealedBinary {
  const data = deps.readFile(binary);
  if (data.length === 0) throw new Error(`${binary} is empty`);
  const fd = deps.memfdCreate(name, MFD.CLOEXEC | MFD.ALLOW_SEALING);
  try {
    let off = 0;
    while (off < data.length) {
      const n = deps.write(fd, data, off);
      if (n <= 0) throw new Error(`short write to the memfd copy of ${binary}`);
      off += n;
    }
    deps.addSeals(fd, RUNTIME_SEALS);
    const seals = deps.getSeals(fd);
    if ((seals & RUNTIME_SEALS) !== RUNTIME_SEALS) throw new Error(`memfd seals are 0x${seals.toString(16)}, not 0x${RUNTIME_SEALS.toString(16)}`);
  } catch (err) {
    deps.close(fd);
    throw err;
  }
  return { fd, execPath: `/proc/${deps.pid}/fd/${fd}`, bytes: data.length };
}
