// `osbuilder pack`: the agent as one executable (Node single-executable application on a
// stripped node binary, with a V8 code cache) and koffi's addon beside it.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseOptions } from '../cli';
import type { Command } from '../commands/types';
import { missingError, usageError } from '../util/errors';
import { humanBytes } from '../util/progress';
import { ICU_PROFILES, type IcuProfile } from './icu';
import { AGENT_DEST, KOFFI_DEST, packAgent, PACK_STEPS } from './agent';

/** The guestkit repository holding this file (or its bundle, dist/osbuilder.mjs), else one above `cwd`. */
export function findRepoRoot(starts: string[]): string | undefined {
  for (const start of starts) {
    for (let dir = path.resolve(start); ; dir = path.dirname(dir)) {
      try {
        const pkg = JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string };
        if (pkg.name === 'guestkit') return dir;
      } catch {
        // not here
      }
      if (path.dirname(dir) === dir) break;
    }
  }
  return undefined;
}

const HELP = `Usage: osbuilder pack --output DIR [--node PATH] [--repo DIR] [--icu small|full] [--no-code-cache] [--json]

Pack the agent for the guest: ONE executable, DIR/kata-agent (Node's single-executable
support: a stripped copy of the node binary carrying the bundled agent and a V8 code cache of
it), and koffi's native addon beside it, DIR/koffi.node. The rootfs builder installs them as
${AGENT_DEST} and ${KOFFI_DEST}. The version (package.json) and the git commit of the
repository are stamped in: \`kata-agent --version\` prints them.

Two packs of the same repository tree with the same node binary give identical files.

Options:
  --output DIR      where to write kata-agent and koffi.node (created if missing; existing
                    files of those names are replaced, nothing else is touched)
  --node PATH       the node binary to pack (default: the node running osbuilder). An official
                    Node 20+ release binary (fixed-address ELF with the single-executable fuse);
                    the packed agent runs only where that binary runs (same arch and libc)
  --repo DIR        the guestkit repository to pack (default: the one osbuilder runs from)
  --icu small|full  node's built-in ICU data: small (default) keeps root and English locale
                    data only, like Node's small-icu builds (33 -> 4.3 MB for Node 20; Intl
                    formats every locale as English, legacy TextDecoder encodings are gone);
                    full keeps the binary's data as it is
  --no-code-cache   no V8 code cache in the executable (smaller, slower to start)
  --json            print the result as JSON (files, version, commit, executable, bytes)

Needs: strip (binutils); git for the commit ("unknown" without it); the repository's
node_modules (esbuild, koffi).

Environment:
  NODE_OPTIONS      ignored: removed for the node processes that make and check the executable

Examples:
  osbuilder pack --output build/agent
  osbuilder pack --output build/agent --node /opt/node-v20.20.2-linux-x64/bin/node --json

Exit codes: 0 done, 1 packing failed, 2 bad command line, 3 a prerequisite is missing (strip,
the node binary, node_modules).
`;

export const packCommand: Command = {
  name: 'pack',
  summary: 'the agent as one executable (Node single executable) plus koffi',
  help: HELP,
  async run(args, ctx) {
    const { values } = parseOptions(
      'pack',
      args,
      {
        output: { type: 'string' },
        node: { type: 'string' },
        repo: { type: 'string' },
        'no-code-cache': { type: 'boolean' },
        icu: { type: 'string' },
        json: { type: 'boolean' },
      },
      { positionals: 0 },
    );
    if (!values.output) throw usageError('pack: --output DIR is required', 'see osbuilder pack --help');
    const repoRoot = values.repo ? path.resolve(values.repo) : findRepoRoot([path.dirname(fileURLToPath(import.meta.url)), process.cwd()]);
    if (!repoRoot) throw missingError('cannot find the guestkit repository', 'run osbuilder from it or pass --repo DIR');
    const icu = values.icu ?? 'small';
    if (!(ICU_PROFILES as readonly string[]).includes(icu)) throw usageError(`pack: --icu must be one of ${ICU_PROFILES.join(', ')}, not ${JSON.stringify(icu)}`);
    if (values.node && !fs.existsSync(values.node)) throw missingError(`node binary ${values.node} does not exist`);
    const r = await packAgent({
      outDir: values.output,
      repoRoot,
      node: values.node,
      codeCache: !values['no-code-cache'],
      icu: icu as IcuProfile,
      progress: ctx.progress(PACK_STEPS),
    });
    if (values.json) {
      ctx.out(JSON.stringify(r, null, 2));
      return;
    }
    ctx.out(`kata-agent ${r.version} (commit ${r.commit}): ${r.executable} (${humanBytes(r.bytes)}, ICU ${r.icu.profile})`);
    for (const f of r.files) ctx.out(`  ${f.src} -> ${f.dest} (mode ${f.mode.toString(8).padStart(4, '0')})`);
  },
};
