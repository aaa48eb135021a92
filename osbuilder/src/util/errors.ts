// osbuilder's exit codes and the error that carries one. Every failure the CLI reports is one
// line on stderr ("osbuilder <verb>: <what is wrong> [(<how to fix it>)]") and one of these codes.

export const EXIT = {
  OK: 0,
  /** The build itself failed (a tool failed, a check did not pass). */
  FAILED: 1,
  /** Bad command line: unknown verb, option or distro, missing or bad value. */
  USAGE: 2,
  /** A prerequisite is missing: a tool not installed, an input that does not exist or cannot be read. */
  MISSING: 3,
  /** Interrupted (SIGINT/SIGTERM). */
  INTERRUPTED: 130,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export class OsbuilderError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode = EXIT.FAILED,
    /** How to fix it, shown after the message. */
    readonly hint?: string,
  ) {
    super(message);
    this.name = 'OsbuilderError';
  }
}

export const usageError = (message: string, hint?: string): OsbuilderError => new OsbuilderError(message, EXIT.USAGE, hint);
export const missingError = (message: string, hint?: string): OsbuilderError => new OsbuilderError(message, EXIT.MISSING, hint);
export const failedError = (message: string, hint?: string): OsbuilderError => new OsbuilderError(message, EXIT.FAILED, hint);
