// A recording, in-memory InitSys for the init unit tests, and a log capture.
import { createLogger, type Logger } from '../../agent/src/log';
import { MS } from '../../agent/src/sys/mount';
import { at, type InitSys } from '../../agent/src/init/sys';

export interface FakeMount {
  source: string | null;
  target: string;
  fstype: string | null;
  flags: number;
  data: string | null;
}

export type Failable =
  | 'mkdir' | 'symlink' | 'unlink' | 'setsid' | 'isatty' | 'openConsole' | 'setControllingTty'
  | 'sethostname' | 'setChildSubreaper' | 'sync' | 'reboot';

export interface FakeOptions {
  root?: string;
  /** Regular files (absolute paths, already including any root prefix). */
  files?: Record<string, string>;
  dirs?: string[];
  symlinks?: Record<string, string>;
  /** mountinfo lines present before any mount (the file exists even without a proc mount). */
  mountinfo?: string;
  isatty0?: boolean;
  /** Return an errno name to make that mount fail. */
  failMount?: (m: FakeMount) => string | undefined;
  /** Return an errno name to make that write fail. */
  failWrite?: (path: string, data: string) => string | undefined;
  fail?: Failable[];
}

function sysErr(call: string, code: string, path?: string): Error {
  return Object.assign(new Error(`${call}${path ? ` ${path}` : ''}: ${code}`), { code, syscall: call });
}

export class FakeInitSys implements InitSys {
  readonly calls: string[] = [];
  readonly mounts: FakeMount[] = [];
  readonly writes: [path: string, data: string][] = [];
  readonly files = new Map<string, string>();
  readonly dirs = new Set<string>();
  readonly links = new Map<string, string>();
  readonly opts: FakeOptions;
  private nextFd = 10;

  constructor(opts: FakeOptions = {}) {
    this.opts = opts;
    for (const [p, c] of Object.entries(opts.files ?? {})) this.files.set(p, c);
    for (const d of opts.dirs ?? []) this.dirs.add(d);
    for (const [p, t] of Object.entries(opts.symlinks ?? {})) this.links.set(p, t);
  }

  private failing(call: Failable, path?: string): void {
    if (this.opts.fail?.includes(call)) throw sysErr(call, 'EPERM', path);
  }

  private get root(): string {
    return this.opts.root ?? '/';
  }

  /** Mountinfo text: the preset lines plus one per successful (non-remount) mount. */
  mountinfoText(): string {
    const lines = (this.opts.mountinfo ?? '').split('\n').filter((l) => l.trim() !== '');
    this.mounts
      .filter((m) => !(m.flags & MS.REMOUNT))
      .forEach((m, i) => lines.push(`${100 + i} 1 0:${100 + i} / ${m.target.replace(/ /g, '\\040')} rw - ${m.fstype} ${m.source ?? 'none'} ${m.data ?? 'rw'}`));
    return lines.join('\n') + '\n';
  }

  private procVisible(): boolean {
    const procDir = at(this.root, '/proc');
    return this.opts.mountinfo !== undefined || this.mounts.some((m) => m.target === procDir && m.fstype === 'proc');
  }

  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void {
    const m = { source, target, fstype, flags, data };
    this.calls.push(`mount ${source} ${target} ${fstype} 0x${flags.toString(16)} ${data}`);
    const code = this.opts.failMount?.(m);
    if (code) throw sysErr('mount', code, target);
    this.mounts.push(m);
    this.dirs.add(target);
  }
  mkdir(path: string, mode?: number): void {
    this.calls.push(`mkdir ${path} ${(mode ?? 0o755).toString(8)}`);
    this.failing('mkdir', path);
    this.dirs.add(path);
  }
  exists(path: string): boolean {
    return this.files.has(path) || this.dirs.has(path) || this.links.has(path);
  }
  readlink(path: string): string | undefined {
    return this.links.get(path);
  }
  symlink(target: string, path: string): void {
    this.calls.push(`symlink ${target} ${path}`);
    this.failing('symlink', path);
    if (this.exists(path)) throw sysErr('symlink', 'EEXIST', path);
    this.links.set(path, target);
  }
  unlink(path: string): void {
    this.calls.push(`unlink ${path}`);
    this.failing('unlink', path);
    if (!this.files.delete(path) && !this.links.delete(path)) throw sysErr('unlink', 'ENOENT', path);
  }
  readFile(path: string): string {
    if (path === at(this.root, '/proc/self/mountinfo')) {
      if (!this.procVisible()) throw sysErr('open', 'ENOENT', path);
      return this.mountinfoText();
    }
    const c = this.files.get(path);
    if (c === undefined) throw sysErr('open', 'ENOENT', path);
    return c;
  }
  writeFile(path: string, data: string): void {
    this.calls.push(`write ${path} ${JSON.stringify(data)}`);
    const code = this.opts.failWrite?.(path, data);
    if (code) throw sysErr('write', code, path);
    this.writes.push([path, data]);
  }
  setsid(): void {
    this.calls.push('setsid');
    this.failing('setsid');
  }
  isatty(fd: number): boolean {
    this.failing('isatty');
    return fd === 0 && this.opts.isatty0 === true;
  }
  openConsole(path: string): number {
    this.calls.push(`open ${path}`);
    this.failing('openConsole', path);
    return this.nextFd++;
  }
  setControllingTty(fd: number): void {
    this.calls.push(`TIOCSCTTY ${fd}`);
    this.failing('setControllingTty');
  }
  sethostname(name: string): void {
    this.calls.push(`sethostname ${name}`);
    this.failing('sethostname');
  }
  setChildSubreaper(): void {
    this.calls.push('subreaper');
    this.failing('setChildSubreaper');
  }
  sync(): void {
    this.calls.push('sync');
    this.failing('sync');
  }
  reboot(cmd: number): void {
    this.calls.push(`reboot 0x${(cmd >>> 0).toString(16)}`);
    this.failing('reboot');
  }
  exit(code: number): void {
    this.calls.push(`exit ${code}`);
  }

  /** Only the calls whose first word is one of `kinds`. */
  callsOf(...kinds: string[]): string[] {
    return this.calls.filter((c) => kinds.includes(c.split(' ')[0]!));
  }
}

export interface LogLine {
  level: string;
  msg: string;
  [k: string]: unknown;
}

/** A trace-level pino logger whose JSON lines land in `lines`. */
export function captureLogger(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log = createLogger('trace', { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  return { log, lines };
}
