// Outputs are written to a temporary path beside the final one and renamed into place at the
// end, so an interrupted or failed build never leaves a half-written file (or directory) where a
// finished one is expected.
import fs from 'node:fs';
import path from 'node:path';
import { missingError } from './errors';

/** A temporary sibling of `finalPath` (same directory: rename stays atomic). */
export function tempSibling(finalPath: string): string {
  const dir = path.dirname(path.resolve(finalPath));
  return path.join(dir, `.${path.basename(finalPath)}.tmp-${process.pid}-${Date.now().toString(36)}`);
}

/**
 * Run `write(tmpPath)`, then rename tmpPath over `finalPath`. On any failure the temporary is
 * removed and `finalPath` is left as it was. The output's directory must exist.
 */
export async function writeAtomically<T>(finalPath: string, write: (tmpPath: string) => Promise<T>): Promise<T> {
  const dir = path.dirname(path.resolve(finalPath));
  if (!fs.existsSync(dir)) throw missingError(`the output directory ${dir} does not exist`, `create it first: mkdir -p ${dir}`);
  const tmp = tempSibling(finalPath);
  const cleanup = (): void => fs.rmSync(tmp, { recursive: true, force: true });
  const onSignal = (): void => cleanup();
  process.once('exit', onSignal);
  try {
    const r = await write(tmp);
    if (fs.existsSync(finalPath) && fs.statSync(finalPath).isDirectory() && fs.statSync(tmp).isDirectory()) {
      fs.rmSync(finalPath, { recursive: true, force: true });
    }
    fs.renameSync(tmp, finalPath);
    return r;
  } catch (err) {
    cleanup();
    throw err;
  } finally {
    process.off('exit', onSignal);
  }
}
