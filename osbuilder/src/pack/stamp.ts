// What gets stamped into the packed agent and recorded in osbuilder.yaml: the version
// (package.json) and the git commit of the tree it was built from; and which prebuilt koffi
// addon matches the node binary being packed.
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { missingError } from '../util/errors';
import { findTool, runTool } from '../util/tools';

/** The commit as stamped: the full hash, "-dirty" when the work tree has changes (tracked or not). */
export function describeCommit(head: string | undefined, porcelain: string | undefined): string {
  const sha = head?.trim() ?? '';
  if (!/^[0-9a-f]{40}([0-9a-f]{24})?$/.test(sha)) return 'unknown';
  return porcelain !== undefined && porcelain.trim() !== '' ? `${sha}-dirty` : sha;
}

/** The commit of the repository at `repoRoot` ('unknown' without git or outside a repository). */
export async function gitCommit(repoRoot: string): Promise<string> {
  const git = findTool('git');
  if (!git) return 'unknown';
  const head = await runTool(git, ['-C', repoRoot, 'rev-parse', '--verify', '-q', 'HEAD'], { allowFail: true });
  if (head.code !== 0) return 'unknown';
  const st = await runTool(git, ['-C', repoRoot, 'status', '--porcelain'], { allowFail: true });
  return describeCommit(head.stdout, st.code === 0 ? st.stdout : undefined);
}

export function packageVersion(repoRoot: string): string {
  const pkg = JSON.parse(fs.readFileSync(path.join(repoRoot, 'package.json'), 'utf8')) as { version?: string };
  if (!pkg.version) throw missingError(`${repoRoot}/package.json has no version`);
  return pkg.version;
}

/**
 * koffi's prebuilt addons: package @koromix/koffi-<platform>-<arch> (an optional dependency of
 * koffi), in <libc>_<arch>/koffi.node where libc is musl when the node binary's interpreter is
 * musl's loader, else linux (glibc).
 */
export function koffiAddonLocation(arch: string, interpreter: string | undefined): { pkg: string; file: string } {
  const musl = interpreter !== undefined && path.basename(interpreter).startsWith('ld-musl-');
  return { pkg: `@koromix/koffi-linux-${arch}`, file: `${musl ? 'musl' : 'linux'}_${arch}/koffi.node` };
}

/** The koffi addon for a node binary of `arch` and `interpreter`, from the repository's node_modules. */
export function findKoffiAddon(repoRoot: string, arch: string, interpreter: string | undefined): string {
  const { pkg, file } = koffiAddonLocation(arch, interpreter);
  const req = createRequire(path.join(repoRoot, 'package.json'));
  let dir: string;
  try {
    // From koffi's own directory: the platform package is koffi's dependency.
    const koffiReq = createRequire(req.resolve('koffi'));
    dir = path.dirname(koffiReq.resolve(`${pkg}/package.json`));
  } catch {
    throw missingError(`koffi's prebuilt addon package ${pkg} is not installed in ${repoRoot}`, `npm ci (on a ${arch} host) installs it`);
  }
  const addon = path.join(dir, file);
  if (!fs.existsSync(addon)) throw missingError(`koffi's addon ${addon} does not exist`);
  return addon;
}
