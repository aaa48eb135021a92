// CreateSandboxRequest.dns: the lines of the guest's resolv.conf, written to
// /run/kata-containers/sandbox/resolv.conf and bind-mounted over
// /etc/resolv.conf (Kata: setup_guest_dns). Unlike Kata, a missing
// /etc/resolv.conf is created (Kata then silently does nothing).
import fs from 'node:fs';
import path from 'node:path';
import { Code, RpcError } from '../rpc/status';

export interface DnsDeps {
  mount: (source: string | null, target: string, fstype: string | null, flags: number, data: string | null) => void;
  umount2: (target: string, flags?: number) => void;
}

const MS_BIND = 0x1000;
const MNT_DETACH = 2;

export function resolvConfText(lines: readonly string[]): string {
  return lines.map((l) => l.trim()).join('\n') + '\n';
}

/**
 * Write `src` and bind it over `dst`. Returns a function that undoes both.
 * Throws RpcError (FAILED_PRECONDITION when `dst` is a directory) or the
 * mount's SysError.
 */
export function setupGuestDns(lines: readonly string[], src: string, dst: string, deps: DnsDeps): () => void {
  for (let i = 0; i < lines.length; i++) {
    if (lines[i]!.includes('\0') || /[\r\n]/.test(lines[i]!.trim())) {
      throw new RpcError(Code.INVALID_ARGUMENT, `dns[${i}] must be a single line`);
    }
  }
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(dst);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (st?.isDirectory()) throw new RpcError(Code.FAILED_PRECONDITION, `cannot set up DNS: ${dst} is a directory`);
  fs.mkdirSync(path.dirname(src), { recursive: true, mode: 0o755 });
  fs.writeFileSync(src, resolvConfText(lines), { mode: 0o644 });
  fs.chmodSync(src, 0o644);
  let created = false;
  if (!st) {
    let link: string | undefined;
    try {
      link = fs.readlinkSync(dst);
    } catch {
      link = undefined;
    }
    if (link !== undefined) throw new RpcError(Code.FAILED_PRECONDITION, `cannot set up DNS: ${dst} is a dangling symlink to ${link}`);
    fs.mkdirSync(path.dirname(dst), { recursive: true, mode: 0o755 });
    fs.writeFileSync(dst, '', { mode: 0o644, flag: 'wx' });
    created = true;
  }
  try {
    deps.mount(src, dst, null, MS_BIND, null);
  } catch (err) {
    if (created) fs.rmSync(dst, { force: true });
    throw err;
  }
  return () => {
    try {
      deps.umount2(dst, MNT_DETACH);
    } catch {
      // already gone
    }
    if (created) fs.rmSync(dst, { force: true });
    fs.rmSync(src, { force: true });
  };
}
