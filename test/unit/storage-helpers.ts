// Fakes for the storage-*.test.ts files: an in-memory file tree (StorageFs)
// with symlinks, owners and modes; a fake kernel mount table that records every
// mount(2)/umount2(2); and a recording BlockDevices.
import path from 'node:path';
import type { MountInfoEntry } from '../../agent/src/init/mountinfo';
import { nullLogger } from '../../agent/src/log';
import { MNT, MS } from '../../agent/src/sys/mount';
import type { BlockDevices, FileKind, FileStat, StorageDeps, StorageFs } from '../../agent/src/storage/types';

export function sysErr(code: string, what: string): Error & { code: string } {
  return Object.assign(new Error(`${what}: ${code}`), { code });
}

interface Node {
  kind: FileKind;
  mode: number;
  uid: number;
  gid: number;
  target?: string;
  content?: string;
}

const TYPE_BITS: Record<FileKind, number> = { dir: 0o040000, file: 0o100000, symlink: 0o120000, block: 0o060000, char: 0o020000, other: 0o010000 };

export class FakeFs implements StorageFs {
  readonly nodes = new Map<string, Node>([['/', { kind: 'dir', mode: 0o755, uid: 0, gid: 0 }]]);
  /** Every mutating call, e.g. "mkdir /a 755", "lchown /a -1 5", "chmod /a 2775". */
  readonly calls: string[] = [];
  /** Make an operation fail: key "op path" -> errno code. */
  readonly failures = new Map<string, string>();
  /** Called after a successful writeFile (e.g. a kernel that grants fewer huge pages). */
  onWrite?: (p: string, data: string) => void;
  /** Called before mkdir (to race against it). */
  beforeMkdir?: (p: string) => void;

  mkdirp(p: string, mode = 0o755): this {
    let cur = '';
    for (const c of p.split('/').filter(Boolean)) {
      cur += `/${c}`;
      if (!this.nodes.has(cur)) this.nodes.set(cur, { kind: 'dir', mode, uid: 0, gid: 0 });
    }
    return this;
  }

  file(p: string, content = '', mode = 0o644, kind: FileKind = 'file'): this {
    this.mkdirp(path.posix.dirname(p));
    this.nodes.set(p, { kind, mode, uid: 0, gid: 0, content });
    return this;
  }

  symlink(target: string, p: string): this {
    this.mkdirp(path.posix.dirname(p));
    this.nodes.set(p, { kind: 'symlink', mode: 0o777, uid: 0, gid: 0, target });
    return this;
  }

  node(p: string): Node | undefined {
    return this.nodes.get(p);
  }

  private check(op: string, p: string): void {
    const code = this.failures.get(`${op} ${p}`);
    if (code) throw sysErr(code, `${op} ${p}`);
  }

  /** Resolve symlinks (all components, the last one only when followLast). Undefined when missing. */
  resolve(p: string, followLast: boolean, depth = 0): string | undefined {
    if (depth > 40) throw sysErr('ELOOP', p);
    const parts = p.split('/').filter(Boolean);
    let cur = '/';
    for (let i = 0; i < parts.length; i++) {
      const next = cur === '/' ? `/${parts[i]}` : `${cur}/${parts[i]}`;
      const n = this.nodes.get(next);
      const last = i === parts.length - 1;
      if (!n) return last ? next : undefined;
      if (n.kind === 'symlink' && (!last || followLast)) {
        const t = n.target!.startsWith('/') ? n.target! : path.posix.join(cur, n.target!);
        return this.resolve(path.posix.normalize([t, ...parts.slice(i + 1)].join('/')), followLast, depth + 1);
      }
      if (!last && n.kind !== 'dir') throw sysErr('ENOTDIR', next);
      cur = next;
    }
    return cur;
  }

  private stated(p: string | undefined): FileStat | undefined {
    const n = p === undefined ? undefined : this.nodes.get(p);
    return n && { kind: n.kind, mode: TYPE_BITS[n.kind] | n.mode, uid: n.uid, gid: n.gid };
  }

  lstat(p: string): FileStat | undefined {
    return this.stated(this.resolve(p, false));
  }

  stat(p: string): FileStat | undefined {
    return this.stated(this.resolve(p, true));
  }

  realpath(p: string): string {
    const r = this.resolve(p, true);
    if (!r || !this.nodes.has(r)) throw sysErr('ENOENT', `realpath ${p}`);
    return r;
  }

  private parentOf(p: string): string {
    const parent = this.resolve(path.posix.dirname(p), true);
    if (!parent || !this.nodes.has(parent)) throw sysErr('ENOENT', p);
    if (this.nodes.get(parent)!.kind !== 'dir') throw sysErr('ENOTDIR', p);
    return parent;
  }

  mkdir(p: string, mode: number): void {
    this.beforeMkdir?.(p);
    this.check('mkdir', p);
    const at = path.posix.join(this.parentOf(p), path.posix.basename(p));
    if (this.nodes.has(at)) throw sysErr('EEXIST', `mkdir ${p}`);
    this.nodes.set(at, { kind: 'dir', mode: mode & 0o7777, uid: 0, gid: 0 });
    this.calls.push(`mkdir ${p} ${mode.toString(8)}`);
  }

  rmdir(p: string): void {
    this.check('rmdir', p);
    const n = this.nodes.get(p);
    if (!n) throw sysErr('ENOENT', p);
    if (n.kind !== 'dir') throw sysErr('ENOTDIR', p);
    if (this.readdir(p).length > 0) throw sysErr('ENOTEMPTY', p);
    this.nodes.delete(p);
    this.calls.push(`rmdir ${p}`);
  }

  createFile(p: string, mode: number): void {
    this.check('createFile', p);
    const at = path.posix.join(this.parentOf(p), path.posix.basename(p));
    if (this.nodes.has(at)) throw sysErr('EEXIST', p);
    this.nodes.set(at, { kind: 'file', mode, uid: 0, gid: 0, content: '' });
    this.calls.push(`createFile ${p}`);
  }

  unlink(p: string): void {
    this.check('unlink', p);
    const n = this.nodes.get(p);
    if (!n) throw sysErr('ENOENT', p);
    if (n.kind === 'dir') throw sysErr('EISDIR', p);
    this.nodes.delete(p);
    this.calls.push(`unlink ${p}`);
  }

  lchown(p: string, uid: number, gid: number): void {
    this.check('lchown', p);
    const n = this.nodes.get(this.resolve(p, false) ?? p);
    if (!n) throw sysErr('ENOENT', p);
    if (uid !== -1) n.uid = uid;
    if (gid !== -1) n.gid = gid;
    // like the kernel: chown of a non-directory clears setuid (and setgid when group-executable)
    if (n.kind !== 'dir') n.mode &= ~(0o4000 | (n.mode & 0o010 ? 0o2000 : 0));
    this.calls.push(`lchown ${p} ${uid} ${gid}`);
  }

  chmod(p: string, mode: number): void {
    this.check('chmod', p);
    const r = this.resolve(p, true);
    const n = r && this.nodes.get(r);
    if (!n) throw sysErr('ENOENT', p);
    n.mode = mode & 0o7777;
    this.calls.push(`chmod ${p} ${mode.toString(8)}`);
  }

  readdir(p: string): string[] {
    const r = this.resolve(p, true);
    if (!r || this.nodes.get(r)?.kind !== 'dir') throw sysErr('ENOTDIR', p);
    const prefix = r === '/' ? '/' : `${r}/`;
    const out: string[] = [];
    for (const k of this.nodes.keys()) {
      if (k !== r && k.startsWith(prefix) && !k.slice(prefix.length).includes('/')) out.push(k.slice(prefix.length));
    }
    return out.sort();
  }

  readFile(p: string): string {
    const r = this.resolve(p, true);
    const n = r && this.nodes.get(r);
    if (!n || n.kind !== 'file') throw sysErr('ENOENT', p);
    return n.content ?? '';
  }

  writeFile(p: string, data: string): void {
    this.check('writeFile', p);
    const r = this.resolve(p, true);
    const n = r && this.nodes.get(r);
    if (!n || n.kind !== 'file') throw sysErr('ENOENT', p);
    n.content = data;
    this.calls.push(`writeFile ${p} ${data}`);
    this.onWrite?.(p, data);
  }
}

export interface MountCall {
  source: string | null;
  target: string;
  fstype: string | null;
  flags: number;
  data: string | null;
}

/** A fake kernel: a mount table, every call recorded in order. */
export class FakeSys {
  readonly table: MountInfoEntry[] = [];
  readonly mounts: MountCall[] = [];
  readonly umounts: { target: string; flags: number }[] = [];
  /** Every call in order: "mount <target> <fstype>", "umount <target> <flags>". */
  readonly log: string[] = [];
  failMount?: (c: MountCall) => string | undefined;
  failUmount?: (target: string, flags: number) => string | undefined;
  private id = 100;

  mount = (source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void => {
    const c = { source, target, fstype, flags, data };
    this.log.push(`mount ${target} ${fstype ?? '-'} 0x${flags.toString(16)}`);
    const code = this.failMount?.(c);
    if (code) throw Object.assign(sysErr(code, `mount ${target}`), { errno: 22 });
    this.mounts.push(c);
    const op = flags & (MS.REMOUNT | MS.SHARED | MS.PRIVATE | MS.SLAVE | MS.UNBINDABLE);
    if (op === 0) {
      this.table.push({
        id: this.id++, parent: 1, mountPoint: target, optional: [], fstype: fstype ?? '',
        source: source ?? '', options: 'rw', superOptions: data ?? '',
      });
    }
  };

  umount = (target: string, flags: number): void => {
    this.log.push(`umount ${target} ${flags & MNT.DETACH ? 'detach' : 'plain'}`);
    const code = this.failUmount?.(target, flags);
    if (code) throw sysErr(code, `umount2 ${target}`);
    let idx = -1;
    this.table.forEach((e, i) => {
      if (e.mountPoint === target) idx = i;
    });
    if (idx < 0) throw sysErr('EINVAL', `umount2 ${target}`);
    this.table.splice(idx, 1);
    this.umounts.push({ target, flags });
  };

  mountInfo = (): MountInfoEntry[] => this.table.map((e) => ({ ...e }));

  /** Mount points currently in the table under `prefix`. */
  mounted(prefix = '/'): string[] {
    return this.table.filter((e) => e.mountPoint.startsWith(prefix)).map((e) => e.mountPoint);
  }
}

export class FakeDevices implements BlockDevices {
  readonly calls: string[] = [];
  readonly signals: (AbortSignal | undefined)[] = [];
  /** What each kind resolves to (by argument); missing -> /dev/fake-<arg>. */
  readonly map = new Map<string, string>();
  /** Make a call hang until aborted, or fail. */
  behaviour: 'resolve' | 'hang' | Error = 'resolve';

  private go(kind: string, arg: string, signal?: AbortSignal): Promise<{ path: string }> {
    this.calls.push(`${kind} ${arg}`);
    this.signals.push(signal);
    const b = this.behaviour;
    if (b instanceof Error) return Promise.reject(b);
    if (b === 'hang') return new Promise(() => undefined);
    return Promise.resolve({ path: this.map.get(`${kind} ${arg}`) ?? `/dev/fake-${arg.replace(/[/:]/g, '_')}` });
  }

  pciBlock(p: string, s?: AbortSignal) {
    return this.go('pci', p, s);
  }
  scsiBlock(a: string, s?: AbortSignal) {
    return this.go('scsi', a, s);
  }
  mmioBlock(n: string, s?: AbortSignal) {
    return this.go('mmio', n, s);
  }
  pmem(d: string, s?: AbortSignal) {
    return this.go('pmem', d, s);
  }
}

export const ROOT = '/run/kata-containers';

export interface Fakes {
  fs: FakeFs;
  sys: FakeSys;
  devices: FakeDevices;
  deps: StorageDeps;
}

export function fakes(): Fakes {
  const fs = new FakeFs().mkdirp(ROOT);
  const sys = new FakeSys();
  const devices = new FakeDevices();
  const deps: StorageDeps = { mount: sys.mount, umount: sys.umount, mountInfo: sys.mountInfo, fs, devices, log: nullLogger(), hugepagesDir: '/sys/kernel/mm/hugepages' };
  return { fs, sys, devices, deps };
}
