// One osbuilder verb: its help text and what it does. Commands throw OsbuilderError (with an
// exit code) for every failure they report; the CLI prints it as one line.
import type { Progress } from '../util/progress';

export interface CommandContext {
  /** Environment (Kata's osbuilder variables: AGENT_INIT, EXTRA_PKGS, ROOTFS_DIR, SECCOMP, OS_VERSION...). */
  env: NodeJS.ProcessEnv;
  /** --quiet: no progress output. */
  quiet: boolean;
  /** A progress reporter for a command of `steps` steps (on stderr). */
  progress(steps: number): Progress;
  /** Where results go (stdout). */
  out: (line: string) => void;
}

export interface Command {
  name: string;
  /** One line for `osbuilder --help`. */
  summary: string;
  /** The whole `osbuilder <verb> --help` text. */
  help: string;
  run(args: string[], ctx: CommandContext): Promise<void>;
}
