// Before any test: regenerate the protocol descriptor from agent/proto/*.proto and
// rebuild dist/ (esbuild, ~1 s) so integration tests run the current executables; drop the VM
// guests earlier runs left in the temporary directory.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export default function setup(): void {
  const root = fileURLToPath(new URL('..', import.meta.url));
  execFileSync(process.execPath, ['agent/scripts/build.mjs'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  // The VM suite's guest (test/helpers/guest.ts) of earlier runs: gk-vm-guest-<pid of that run>.
  for (const name of fs.readdirSync(os.tmpdir())) {
    const m = /^gk-vm-guest-(\d+)$/.exec(name);
    if (!m || Number(m[1]) === process.pid) continue;
    try {
      process.kill(Number(m[1]), 0); // that run is still going
    } catch {
      fs.rmSync(path.join(os.tmpdir(), name), { recursive: true, force: true });
    }
  }
}
