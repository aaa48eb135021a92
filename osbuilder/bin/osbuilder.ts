// osbuilder entry point (dist/osbuilder.mjs).
import { runCli } from '../src/cli';
import { COMMANDS } from '../src/commands/index';
import { EXIT } from '../src/util/errors';

let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    interrupted = true;
    process.stderr.write(`\nosbuilder: interrupted (${sig}); partial outputs are removed\n`);
    process.exit(EXIT.INTERRUPTED); // 'exit' handlers remove temporary outputs
  });
}

const code = await runCli(process.argv.slice(2), COMMANDS, {
  stdout: (s) => void process.stdout.write(s),
  stderr: (s) => void process.stderr.write(s),
  env: process.env,
  isTTY: process.stderr.isTTY,
});
if (!interrupted) process.exitCode = code;
