// Process environment and host name for a PID-1 agent (the kernel starts init
// with an almost empty environment).
import { at, errMsg, type InitContext } from './sys';

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

const DEFAULTS: Record<string, string> = {
  PATH: DEFAULT_PATH,
  HOME: '/',
};

/** Fill PATH and HOME when unset or empty; returns the names that were set. */
export function setupEnvironment(env: Record<string, string | undefined> = process.env): string[] {
  const set: string[] = [];
  for (const [k, v] of Object.entries(DEFAULTS)) {
    if (env[k] === undefined || env[k] === '') {
      env[k] = v;
      set.push(k);
    }
  }
  return set;
}

/** Host name from <root>/etc/hostname (first word), else "localhost". Returns the name set, or undefined on failure. */
export function setHostnameFromEtc(ctx: InitContext): string | undefined {
  let name = 'localhost';
  try {
    const w = ctx.sys.readFile(at(ctx.root, '/etc/hostname')).trim().split(/\s+/)[0];
    if (w) name = w;
  } catch {
    // no /etc/hostname: keep the default
  }
  try {
    ctx.sys.sethostname(name);
    return name;
  } catch (e) {
    ctx.log.warn({ hostname: name, err: errMsg(e) }, 'cannot set host name');
    return undefined;
  }
}
