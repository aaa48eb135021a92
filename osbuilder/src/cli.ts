// osbuilder: assembles the guest (rootfs from distro templates, initrd, disk image, kernel) and
// boots it. `osbuilder <verb> [options]`; `osbuilder <verb> --help`. Exit codes: see util/errors.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { Command, CommandContext } from './commands/types';
import { EXIT, OsbuilderError, usageError, type ExitCode } from './util/errors';
import { Progress } from './util/progress';

export const VERSION = '0.1.0';

/** Parse a verb's options (node:util parseArgs, strict): unknown options and missing values are usage errors. */
export function parseOptions<T extends NonNullable<ParseArgsConfig['options']>>(
  verb: string,
  args: string[],
  options: T,
  o: { positionals?: number } = {},
): { values: ReturnType<typeof parseArgs<{ options: T; allowPositionals: true; strict: true }>>['values']; positionals: string[] } {
  let r;
  try {
    r = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw usageError((err as Error).message.replace(/\. To specify a positional argument.*$/s, ''), `see osbuilder ${verb} --help`);
  }
  if (o.positionals !== undefined && r.positionals.length > o.positionals) {
    throw usageError(`unexpected argument ${JSON.stringify(r.positionals[o.positionals])}`, `see osbuilder ${verb} --help`);
  }
  return { values: r.values as never, positionals: r.positionals };
}

export function mainHelp(commands: readonly Command[]): string {
  const w = Math.max(...commands.map((c) => c.name.length));
  return `osbuilder ${VERSION}: build and boot guestkit guests

Usage: osbuilder <command> [options]
       osbuilder <command> --help

Commands:
${commands.map((c) => `  ${c.name.padEnd(w)}  ${c.summary}`).join('\n')}

Global options:
  --quiet     no progress output
  --help, -h  this help; with a command, that command's help
  --version   print the version

Exit codes: 0 done, 1 the build failed, 2 bad command line, 3 a prerequisite is missing
(a tool to install, an input that does not exist), 130 interrupted.
`;
}

export interface CliIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  env: NodeJS.ProcessEnv;
  isTTY?: boolean;
}

/** Run the CLI; resolves with the exit code. Never throws. */
export async function runCli(argv: string[], commands: readonly Command[], io: CliIo): Promise<ExitCode> {
  const quiet = argv.includes('--quiet');
  const args = argv.filter((a) => a !== '--quiet');
  const verb = args[0];
  if (verb === undefined || verb === '--help' || verb === '-h' || verb === 'help') {
    const target = verb === 'help' ? args[1] : undefined;
    const cmd = target ? commands.find((c) => c.name === target) : undefined;
    io.stdout(cmd ? cmd.help : mainHelp(commands));
    return verb === undefined ? EXIT.USAGE : EXIT.OK;
  }
  if (verb === '--version') {
    io.stdout(`osbuilder ${VERSION}\n`);
    return EXIT.OK;
  }
  const cmd = commands.find((c) => c.name === verb);
  if (!cmd) {
    io.stderr(`osbuilder: unknown command ${JSON.stringify(verb)} (commands: ${commands.map((c) => c.name).join(', ')})\n`);
    return EXIT.USAGE;
  }
  const rest = args.slice(1);
  if (rest.includes('--help') || rest.includes('-h')) {
    io.stdout(cmd.help);
    return EXIT.OK;
  }
  const ctx: CommandContext = {
    env: io.env,
    quiet,
    progress: (steps) => new Progress(steps, { quiet, out: { write: (s: string) => (io.stderr(s), true), isTTY: io.isTTY } as never }),
    out: (line) => io.stdout(`${line}\n`),
  };
  try {
    await cmd.run(rest, ctx);
    return EXIT.OK;
  } catch (err) {
    if (err instanceof OsbuilderError) {
      io.stderr(`osbuilder ${verb}: ${err.message}${err.hint ? ` (${err.hint})` : ''}\n`);
      return err.exitCode;
    }
    io.stderr(`osbuilder ${verb}: internal error: ${(err as Error).stack ?? String(err)}\n`);
    return EXIT.FAILED;
  }
}
