// SOURCE_DATE_EPOCH (reproducible-builds.org): the one timestamp every output may carry. From the
// environment, else the time of the repository's last commit, else 0.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { usageError } from './errors';

function moduleDir(): string {
  try {
    return path.dirname(fileURLToPath(import.meta.url));
  } catch {
    return process.cwd();
  }
}

/** Seconds since 1970; a malformed SOURCE_DATE_EPOCH is a usage error. */
export function sourceDateEpoch(env: NodeJS.ProcessEnv, repoDir: string = moduleDir()): number {
  const v = env.SOURCE_DATE_EPOCH;
  if (v !== undefined && v !== '') {
    if (!/^\d+$/.test(v) || Number(v) > 0xffffffff) throw usageError(`SOURCE_DATE_EPOCH=${JSON.stringify(v)} is not a number of seconds (0..4294967295)`);
    return Number(v);
  }
  try {
    const out = execFileSync('git', ['-C', repoDir, 'log', '-1', '--format=%ct'], { stdio: ['ignore', 'pipe', 'ignore'], encoding: 'utf8' }).trim();
    return /^\d+$/.test(out) ? Number(out) : 0;
  } catch {
    return 0;
  }
}
