// Before any test: regenerate the protocol descriptor from agent/proto/*.proto and
// rebuild dist/ (esbuild, ~1 s) so integration tests run the current executables.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  const root = fileURLToPath(new URL('..', import.meta.url));
  execFileSync(process.execPath, ['agent/scripts/build.mjs'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
}
