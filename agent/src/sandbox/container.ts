// Live state of one container: its init process, its exec'd processes and
// where its bundle and cgroup are. The Sandbox (sandbox.ts) drives them.
import type { OomWatcher } from '../cgroups/types';
import type { ExitStatus } from '../proc/reaper';
import type { OciSpec } from '../runtime/spec';
import { Mutex } from './mutex';
import type { ProcessIO } from './process-io';

/** As the agent tracks it (the runtime has the final word). */
export type ContainerStatus = 'created' | 'running' | 'paused' | 'stopped';

/** A process of a container (its init or an exec), with its stdio and exit status. */
export class ContainerProcess {
  /** Set once the reaper delivered the exit status. */
  exit?: ExitStatus;
  /** Resolves with the exit status (exit code, or 128 + signal). Never rejects. */
  readonly exited: Promise<ExitStatus>;
  /** Cancels the reaper watch (only needed if the process is abandoned alive). */
  unwatch?: () => void;
  private resolveExit!: (st: ExitStatus) => void;
  private readonly exitListeners: Array<(st: ExitStatus) => void> = [];

  constructor(
    readonly containerId: string,
    /** The exec id ('' never: the init is addressed by its container's initExecId). */
    readonly execId: string,
    /** pid in the agent's pid namespace. */
    readonly pid: number,
    readonly io: ProcessIO,
    readonly init: boolean,
    readonly terminal: boolean,
  ) {
    this.exited = new Promise<ExitStatus>((resolve) => {
      this.resolveExit = resolve;
    });
  }

  get running(): boolean {
    return this.exit === undefined;
  }

  /** Run `cb` when the process exits (at once if it already has). */
  onExit(cb: (st: ExitStatus) => void): void {
    if (this.exit) cb(this.exit);
    else this.exitListeners.push(cb);
  }

  /** The reaper's callback. Idempotent. */
  exitedWith(st: ExitStatus): void {
    if (this.exit) return;
    this.exit = st;
    // Output still held open by a daemonized child ends after a quiet period.
    this.io.processExited();
    this.resolveExit(st);
    for (const cb of this.exitListeners.splice(0)) {
      try {
        cb(st);
      } catch {
        // listeners log their own failures
      }
    }
  }
}

export class Container {
  status: ContainerStatus = 'created';
  /** Exec'd processes by exec id (removed by WaitProcess, as Kata does). */
  readonly execs = new Map<string, ContainerProcess>();
  /**
   * Exec'd processes already waited for whose output may still be read
   * (ReadStdout/ReadStderr only) until it is drained; then they are closed.
   */
  readonly draining = new Map<string, ContainerProcess>();
  /** Serialises the operations that change the container (start, exec, pause, resume, update, remove). */
  readonly lock = new Mutex();
  oomWatcher?: OomWatcher;
  /** Resolves once the OOM watch is in place (set up just after CreateContainer replied). */
  oomReady?: Promise<void>;
  /** Names the per-exec files in the bundle (exec ids may be too long for a file name). */
  execSeq = 0;
  /** Set once RemoveContainer (or DestroySandbox) has removed it. */
  removed = false;

  constructor(
    readonly id: string,
    /** CreateContainerRequest.exec_id (Kata: the init's exec id; the container id when empty). */
    readonly initExecId: string,
    readonly bundleDir: string,
    /** The cgroup (relative to the cgroup root), as written into linux.cgroupsPath. */
    readonly cgroupRel: string,
    /** The OCI spec as written into the bundle. */
    readonly spec: OciSpec,
    readonly init: ContainerProcess,
  ) {}

  /** '' (or the init's exec id, or the container id) is the init; else an exec'd process. */
  find(execId: string): ContainerProcess | undefined {
    if (execId === '' || execId === this.initExecId || execId === this.id) return this.init;
    return this.execs.get(execId);
  }

  /** Every process the agent still tracks (init, execs, draining). */
  processes(): ContainerProcess[] {
    return [this.init, ...this.execs.values(), ...this.draining.values()];
  }
}
