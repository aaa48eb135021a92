// Guest OCI hooks (CreateSandboxRequest.guest_hook_path): executables found
// in <path>/prestart, <path>/poststart and <path>/poststop are appended to
// every container's hooks (Kata: Sandbox::add_hooks / find_hooks). As Kata:
// only regular files (not symlinks) with an execute bit count, each hook is
// run with args [<file name>, <hook type>]; a missing directory means no hooks
// of that type. Entries are sorted by name (Kata takes read_dir's order).
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../log';
import type { GuestHooks, OciHook } from '../runtime/spec';

export const GUEST_HOOK_TYPES = ['prestart', 'poststart', 'poststop'] as const;

export function scanGuestHooks(dir: string, log?: Logger): GuestHooks {
  const out: GuestHooks = {};
  for (const type of GUEST_HOOK_TYPES) {
    const typeDir = path.join(dir, type);
    let names: string[];
    try {
      names = fs.readdirSync(typeDir).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
        log?.warn({ dir: typeDir, err: String(err) }, 'guest hooks: cannot read directory');
      }
      continue;
    }
    const hooks: OciHook[] = [];
    for (const name of names) {
      const p = path.join(typeDir, name);
      let st: fs.Stats;
      try {
        st = fs.lstatSync(p);
      } catch {
        continue;
      }
      if (!st.isFile() || (st.mode & 0o111) === 0) continue;
      hooks.push({ path: p, args: [name, type] });
      log?.info({ type, path: p, mode: (st.mode & 0o7777).toString(8) }, 'guest hook found');
    }
    if (hooks.length > 0) out[type] = hooks;
  }
  return out;
}
