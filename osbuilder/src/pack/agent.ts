// The agent packed for the guest: ONE executable (Node's single-executable support: a stripped
// node binary carrying the bundled agent and a V8 code cache of it) plus koffi's native addon
// beside it. This is what the rootfs builder installs as /usr/bin/kata-agent.
//
// Steps: bundle the agent into one CommonJS script (bundle.ts; the commit stamped in), make the
// SEA blob with that node (sea.ts; deterministic code cache, checked to be accepted), strip the
// node binary (strip --strip-all: 99 -> 86 MB; it must happen BEFORE injection), cut its built-in
// ICU data to English (icu.ts; 33 -> 4.3 MB of data, zero-filled in place), inject the blob
// (elf.ts), and check the result runs (`kata-agent --version` prints the stamped commit) when
// it can run here. Outputs are written to temporary names and renamed into place at the end.
//
// Reproducible: the same repository tree, node binary and tools give byte-identical files.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { failedError, missingError, usageError } from '../util/errors';
import { writeAtomically } from '../util/output';
import type { Progress } from '../util/progress';
import { humanBytes } from '../util/progress';
import { requireTool, runTool } from '../util/tools';
import { bundleAgentForSea, KOFFI_ADDON } from './bundle';
import { IcuError, shrinkNodeIcu, type IcuProfile, type IcuShrinkResult } from './icu';
import { ElfError, injectSeaBlob, machineArch, readElfHeader, readInterpreter, readSectionHeaders } from './elf';
import { checkCodeCache, cleanNodeEnv, makeSeaBlob } from './sea';
import { findKoffiAddon, gitCommit, packageVersion } from './stamp';

/** Where the packed files go in the guest. */
export const AGENT_DEST = '/usr/bin/kata-agent';
export const KOFFI_DEST = path.posix.join(path.posix.dirname(AGENT_DEST), KOFFI_ADDON);
export const PACK_STEPS = 5;

export interface PackedFile {
  /** The file on the host (in outDir). */
  src: string;
  /** Its absolute path in the guest rootfs. */
  dest: string;
  mode: number;
}

export interface PackResult {
  files: PackedFile[];
  version: string;
  commit: string;
  /** The packed agent executable (in outDir). */
  executable: string;
  /** Its size in bytes. */
  bytes: number;
  /** The ICU data profile, and for `small` what was cut (undefined: the binary had no built-in ICU data). */
  icu: { profile: IcuProfile; shrink?: IcuShrinkResult };
}

export interface PackOptions {
  outDir: string;
  progress?: Progress;
  repoRoot: string;
  /** The node binary to pack (default: the one running osbuilder). */
  node?: string;
  /** Embed a V8 code cache of the agent (default true). */
  codeCache?: boolean;
  /** node's built-in ICU data: `small` (English only, the default) or `full` (as in the binary). */
  icu?: IcuProfile;
}

/** Strip a node binary (all symbols and debug sections) into `out`. */
export async function stripNode(node: string, out: string): Promise<void> {
  const strip = requireTool('strip', 'to strip the node binary of the packed agent');
  await runTool(strip, ['--strip-all', '-o', out, node]);
}

/** Names of .debug* sections (none in a stripped binary). */
export function debugSections(elf: Buffer): string[] {
  return readSectionHeaders(elf).filter((s) => s.name.startsWith('.debug') || s.name.startsWith('.zdebug')).map((s) => s.name);
}

export async function packAgent(o: PackOptions): Promise<PackResult> {
  const repoRoot = path.resolve(o.repoRoot);
  if (!fs.existsSync(path.join(repoRoot, 'agent/bin/kata-agent.ts'))) {
    throw usageError(`${repoRoot} is not a guestkit repository (no agent/bin/kata-agent.ts)`);
  }
  const node = path.resolve(o.node ?? process.execPath);
  if (!fs.existsSync(node)) throw missingError(`node binary ${node} does not exist`);
  const codeCache = o.codeCache ?? true;
  const icuProfile = o.icu ?? 'small';
  const p = o.progress;
  const outDir = path.resolve(o.outDir);
  fs.mkdirSync(outDir, { recursive: true });
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'osbuilder-pack-'));
  try {
    const version = packageVersion(repoRoot);
    const commit = await gitCommit(repoRoot);

    p?.step('bundling the agent (one CommonJS script)');
    const bundle = await bundleAgentForSea({ repoRoot, commit });
    const mainScript = path.join(work, 'kata-agent.cjs');
    fs.writeFileSync(mainScript, bundle.code);
    for (const w of bundle.warnings) p?.note(`warning: ${w}`);
    p?.done(humanBytes(bundle.code.length));

    p?.step(`making the single-executable blob${codeCache ? ' (with V8 code cache)' : ''}`);
    const blob = await makeSeaBlob({ node, mainScript, workDir: work, codeCache });
    if (codeCache) {
      const blobFile = path.join(work, 'sea-prep.blob');
      const { accepted } = await checkCodeCache(node, blobFile);
      if (!accepted) throw failedError(`${node} rejects the code cache it generated (V8 flags in the environment?)`, 'retry with --no-code-cache');
    }
    p?.done(humanBytes(blob.length));

    p?.step(`stripping ${node}`);
    const stripped = path.join(work, 'node.stripped');
    await stripNode(node, stripped);
    const base = fs.readFileSync(stripped);
    const debug = debugSections(base);
    if (debug.length) throw failedError(`strip left debug sections in the node binary: ${debug.join(', ')}`);
    let icuShrink: IcuShrinkResult | undefined;
    if (icuProfile === 'small') {
      try {
        icuShrink = shrinkNodeIcu(base);
      } catch (err) {
        if (err instanceof IcuError || err instanceof ElfError) throw failedError(`cannot cut the ICU data of ${node}: ${err.message}`, 'retry with --icu full');
        throw err;
      }
    }
    const icuNote = icuShrink ? `; ICU data ${humanBytes(icuShrink.bytes)} -> ${humanBytes(icuShrink.keptBytes)} (English)` : icuProfile === 'small' ? '; no built-in ICU data' : '';
    p?.done(`${humanBytes(base.length)}${icuNote}`);

    p?.step('injecting the blob');
    let packed: Buffer;
    try {
      packed = injectSeaBlob(base, blob);
    } catch (err) {
      if (err instanceof ElfError) throw failedError(`cannot make a single executable of ${node}: ${err.message}`);
      throw err;
    }
    const h = readElfHeader(base);
    const arch = machineArch(h.machine);
    if (!arch) throw failedError(`${node}: unsupported ELF machine ${h.machine}`);
    const addon = findKoffiAddon(repoRoot, arch, readInterpreter(base));
    const executable = path.join(outDir, path.posix.basename(AGENT_DEST));
    const koffiOut = path.join(outDir, KOFFI_ADDON);
    await writeAtomically(executable, async (tmp) => {
      fs.writeFileSync(tmp, packed, { mode: 0o755 });
      fs.chmodSync(tmp, 0o755);
    });
    await writeAtomically(koffiOut, async (tmp) => {
      fs.copyFileSync(addon, tmp);
      fs.chmodSync(tmp, 0o644);
    });
    p?.done(`${humanBytes(packed.length)} + koffi ${humanBytes(fs.statSync(koffiOut).size)}`);

    p?.step('checking the packed agent');
    if (arch === process.arch) {
      const r = await runTool(executable, ['--version'], { env: cleanNodeEnv(), allowFail: true });
      const want = `kata-agent (guestkit) ${version} (commit ${commit})`;
      if (r.code !== 0 || r.stdout.trim() !== want) {
        throw failedError(`the packed agent does not run: \`kata-agent --version\` exited ${r.code}: ${(r.stdout + r.stderr).trim().split('\n').slice(-3).join(' / ')}`);
      }
      p?.done(want);
    } else {
      p?.done(`skipped (a ${arch} binary on a ${process.arch} host)`);
    }

    return {
      files: [
        { src: executable, dest: AGENT_DEST, mode: 0o755 },
        { src: koffiOut, dest: KOFFI_DEST, mode: 0o644 },
      ],
      version,
      commit,
      executable,
      bytes: packed.length,
      icu: { profile: icuProfile, shrink: icuShrink },
    };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}
