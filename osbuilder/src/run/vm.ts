// A running guest: QEMU (and virtiofsd for virtio-fs shares) started from a VmConfig, the agent
// reached over its virtio-serial socket, the console log scanned for panics, QMP for hotplug.
// Host-side code: child_process is fine here (the no-child_process rule is the agent's).
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { panicLines, qemuArgs, type VmConfig } from './qemu';

export const VIRTIOFSD = '/usr/lib/qemu/virtiofsd';

/** Host-side boot timeline, ms since QEMU was spawned, from when each console line first appeared. */
export interface Timeline {
  /** `Linux version` (the kernel's first line). */
  kernelMs?: number;
  /** `Run /init as init process` (the kernel executes the agent). */
  initMs?: number;
  /** The agent's `listening` log line. */
  listeningMs?: number;
}

const TIMELINE_MARKS: Array<[keyof Timeline, RegExp]> = [
  ['kernelMs', /Linux version/],
  ['initMs', /Run \S+ as init process/],
  ['listeningMs', /"msg":"listening"[,}]/],
];

export class Vm {
  readonly qemu: ChildProcess;
  private readonly helpers: ChildProcess[] = [];
  readonly startedAt: number;
  private exitP: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exited = false;

  private constructor(readonly config: VmConfig, qemu: ChildProcess, helpers: ChildProcess[], startedAt: number) {
    this.qemu = qemu;
    this.helpers = helpers;
    this.startedAt = startedAt;
    let stderr = '';
    qemu.stderr?.on('data', (d: Buffer) => void (stderr = (stderr + d.toString()).slice(-8000)));
    // Watch the console for the timeline marks (every 10 ms until they are all seen or QEMU exits).
    const watch = setInterval(() => this.watchConsole(), 10);
    watch.unref();
    qemu.once('exit', () => clearInterval(watch));
    this.stopWatch = () => clearInterval(watch);
    this.exitP = new Promise((resolve) => {
      qemu.once('exit', (code, signal) => {
        this.exited = true;
        this.qemuStderr = stderr;
        for (const h of this.helpers) if (h.exitCode === null) h.kill('SIGTERM');
        resolve({ code, signal });
      });
    });
  }

  qemuStderr = '';
  readonly timeline: Timeline = {};
  private consoleSeen = '';
  private stopWatch: () => void = () => {};

  private watchConsole(): void {
    const now = performance.now() - this.startedAt;
    const text = this.console();
    if (text.length === this.consoleSeen.length) return;
    this.consoleSeen = text;
    for (const [k, re] of TIMELINE_MARKS) if (this.timeline[k] === undefined && re.test(text)) this.timeline[k] = Math.round(now);
    if (TIMELINE_MARKS.every(([k]) => this.timeline[k] !== undefined)) this.stopWatch();
  }

  /** Start virtiofsd for each virtio-fs share, then QEMU. */
  static async start(config: VmConfig, o: { qemu?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Vm> {
    const helpers: ChildProcess[] = [];
    try {
      for (const s of config.shared ?? []) {
        if (s.kind !== 'virtiofs') continue;
        if (!s.socket) throw new Error(`virtio-fs share ${s.tag}: no socket path`);
        fs.rmSync(s.socket, { force: true });
        const d = spawn(VIRTIOFSD, [`--socket-path=${s.socket}`, '-o', `source=${s.path}`, '-o', 'cache=auto', '-o', 'sandbox=chroot', '-f'], { stdio: ['ignore', 'ignore', 'pipe'] });
        helpers.push(d);
        await waitForPath(s.socket, 5000, d);
      }
      fs.writeFileSync(config.consoleLog, '');
      for (const sock of [config.agentSocket, config.qmpSocket]) if (sock) fs.rmSync(sock, { force: true });
      const startedAt = performance.now();
      const qemu = spawn(o.qemu ?? config.qemu ?? 'qemu-system-x86_64', qemuArgs(config), { stdio: ['ignore', 'ignore', 'pipe'], env: o.env ?? process.env });
      return new Vm(config, qemu, helpers, startedAt);
    } catch (err) {
      for (const h of helpers) h.kill('SIGKILL');
      throw err;
    }
  }

  /** The console log so far. */
  console(): string {
    try {
      return fs.readFileSync(this.config.consoleLog, 'utf8');
    } catch {
      return '';
    }
  }

  /** Console lines that mean a panic, an oops or a dead init. */
  panics(): string[] {
    return panicLines(this.console());
  }

  /** Wait until the console matches `re` (or the VM exits / times out). Returns ms since start. */
  async waitConsole(re: RegExp, timeoutMs: number): Promise<number> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      if (re.test(this.console())) return performance.now() - this.startedAt;
      if (this.exited) throw new Error(`QEMU exited before the console showed ${re}: ${this.qemuStderr.trim() || 'no error output'}\n${tail(this.console())}`);
      if (performance.now() > deadline) throw new Error(`no ${re} on the console within ${timeoutMs} ms\n${tail(this.console())}`);
      await sleep(20);
    }
  }

  /** Resolves when QEMU exits. */
  waitExit(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (timeoutMs === undefined) return this.exitP;
    return Promise.race([this.exitP, sleep(timeoutMs).then(() => Promise.reject(new Error(`QEMU still running after ${timeoutMs} ms`)))]);
  }

  /** Kill QEMU (and helpers) if still running. */
  async stop(): Promise<void> {
    if (!this.exited) {
      this.qemu.kill('SIGKILL');
      await this.exitP;
    }
    for (const h of this.helpers) if (h.exitCode === null && h.signalCode === null) h.kill('SIGKILL');
  }
}

/** Times from the console: kernel start, init exec and the agent's `listening` line (ms since QEMU start are not in the log: these are guest uptimes in ms). */
export function consoleTimeline(text: string): { kernelStartS?: number; runInitS?: number; agentListening?: { uptimeMs?: number; startupMs?: number } } {
  const out: ReturnType<typeof consoleTimeline> = {};
  const run = /\[\s*(\d+\.\d+)\] Run (\S+) as init process/.exec(text);
  if (run) out.runInitS = Number(run[1]);
  const k = /\[\s*(\d+\.\d+)\] Linux version/.exec(text);
  if (k) out.kernelStartS = Number(k[1]);
  const l = /^.*"msg":"listening"[,}].*$/m.exec(text);
  if (l) {
    const line = l[0];
    const st = /"startup_ms":(\d+(?:\.\d+)?)/.exec(line);
    out.agentListening = { startupMs: st ? Number(st[1]) : undefined };
  }
  return out;
}

export function tail(text: string, n = 25): string {
  return text.trimEnd().split('\n').slice(-n).join('\n');
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitForPath(p: string, timeoutMs: number, proc?: ChildProcess): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!fs.existsSync(p)) {
    if (proc && (proc.exitCode !== null || proc.signalCode !== null)) throw new Error(`${path.basename(String(proc.spawnfile))} exited before creating ${p}`);
    if (performance.now() > deadline) throw new Error(`${p} did not appear within ${timeoutMs} ms`);
    await sleep(10);
  }
}

/** A minimal QMP client: capabilities negotiation, then one command at a time. */
export class Qmp {
  private buf = '';
  private waiters: Array<(msg: Record<string, unknown>) => void> = [];
  readonly events: Array<Record<string, unknown>> = [];
  private constructor(private readonly sock: net.Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      let nl: number;
      while ((nl = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, nl).trim();
        this.buf = this.buf.slice(nl + 1);
        if (!line) continue;
        const msg = JSON.parse(line) as Record<string, unknown>;
        if ('event' in msg) this.events.push(msg);
        else this.waiters.shift()?.(msg);
      }
    });
  }

  static async connect(socketPath: string, timeoutMs = 5000): Promise<Qmp> {
    await waitForPath(socketPath, timeoutMs);
    const sock = net.connect(socketPath);
    await new Promise<void>((resolve, reject) => {
      sock.once('connect', resolve);
      sock.once('error', reject);
    });
    const q = new Qmp(sock);
    await q.next(); // greeting
    await q.execute('qmp_capabilities');
    return q;
  }

  private next(): Promise<Record<string, unknown>> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Run a command; resolves with `return`, rejects with QMP's error description. */
  async execute(command: string, args?: Record<string, unknown>): Promise<unknown> {
    const reply = this.next();
    this.sock.write(`${JSON.stringify(args ? { execute: command, arguments: args } : { execute: command })}\n`);
    const r = await reply;
    if (r.error) throw new Error(`QMP ${command}: ${(r.error as { desc?: string }).desc ?? JSON.stringify(r.error)}`);
    return r.return;
  }

  close(): void {
    this.sock.destroy();
  }
}
