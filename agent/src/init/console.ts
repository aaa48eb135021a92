// Console: become a session leader and take a controlling terminal, so the
// debug console and container ttys behave. Failures are logged (some VMs have
// no console at all).
import { at, errMsg, type InitContext } from './sys';

export interface ConsoleResult {
  sessionLeader: boolean;
  /** 'fd0' or the device path that became the controlling tty; undefined when none. */
  tty?: string;
  errors: string[];
}

/** setsid(), then TIOCSCTTY on fd 0 when it is a tty, else on /dev/console. Never throws. */
export function setupConsole(ctx: InitContext): ConsoleResult {
  const { sys, log } = ctx;
  const res: ConsoleResult = { sessionLeader: false, errors: [] };
  try {
    sys.setsid();
    res.sessionLeader = true;
  } catch (e) {
    res.errors.push(`setsid: ${errMsg(e)}`);
    log.warn({ err: errMsg(e) }, 'setsid failed');
  }
  let fd0tty = false;
  try {
    fd0tty = sys.isatty(0);
  } catch {
    fd0tty = false;
  }
  if (fd0tty) {
    try {
      sys.setControllingTty(0);
      res.tty = 'fd0';
      return res;
    } catch (e) {
      res.errors.push(`TIOCSCTTY fd 0: ${errMsg(e)}`);
      log.warn({ err: errMsg(e) }, 'cannot make fd 0 the controlling terminal; trying /dev/console');
    }
  }
  const dev = at(ctx.root, '/dev/console');
  try {
    const fd = sys.openConsole(dev);
    sys.setControllingTty(fd);
    res.tty = '/dev/console';
  } catch (e) {
    res.errors.push(`/dev/console: ${errMsg(e)}`);
    log.warn({ err: errMsg(e) }, 'no controlling terminal (cannot use /dev/console)');
  }
  return res;
}
