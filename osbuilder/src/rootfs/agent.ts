// Installing the agent into a tree. The agent and its runtime come from a packer with the
// signature of osbuilder/src/pack/agent.ts's packAgent (the default): files to copy, with their
// guest paths. The agent executable is the file installed at /usr/bin/kata-agent (Kata's path);
// it may be an ELF executable (the packed single executable) or a script whose interpreter is in
// the tree (checks.ts verifies either).
import { failedError } from '../util/errors';
import { Progress } from '../util/progress';
import { copyFileInRoot } from './fsroot';

export interface PackedAgent {
  files: Array<{ src: string; dest: string; mode: number }>;
  version: string;
  commit: string;
}
export type PackAgent = (o: { outDir: string; progress?: Progress; repoRoot: string }) => Promise<PackedAgent>;

export const AGENT_PATH = '/usr/bin/kata-agent';

/** Copy the packed files into the tree; returns the guest path of the agent executable. */
export function installAgent(root: string, packed: PackedAgent): string {
  for (const f of packed.files) {
    if (!f.dest.startsWith('/') || f.dest.split('/').includes('..')) throw failedError(`the agent packer gave a bad destination ${JSON.stringify(f.dest)}`);
    copyFileInRoot(root, f.src, f.dest, f.mode);
  }
  return AGENT_PATH;
}

/**
 * A Progress for a sub-task inside one step of another: its steps and results become updates
 * of that step (the packer has steps of its own; the rootfs build counts its own).
 */
export class NestedProgress extends Progress {
  constructor(private readonly parent: Progress) {
    super(0, { quiet: true });
  }
  override step(name: string): void {
    this.parent.update(name);
  }
  override update(detail: string): void {
    this.parent.update(detail);
  }
  override done(result = ''): void {
    if (result) this.parent.update(result);
  }
  override note(msg: string): void {
    this.parent.note(msg);
  }
}
