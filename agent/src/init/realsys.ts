// InitSys backed by the real system: sys/mount, sys/misc (koffi) and node:fs.
import fs from 'node:fs';
import tty from 'node:tty';
import { mount } from '../sys/mount';
import { reboot, setChildSubreaper, setControllingTty, sethostname, setsid, sync } from '../sys/misc';
import type { InitSys } from './sys';

export const realInitSys: InitSys = {
  mount,
  mkdir: (p, mode = 0o755) => {
    fs.mkdirSync(p, { recursive: true, mode });
  },
  exists: (p) => fs.existsSync(p),
  readlink: (p) => {
    try {
      return fs.readlinkSync(p);
    } catch {
      return undefined;
    }
  },
  symlink: (target, p) => fs.symlinkSync(target, p),
  unlink: (p) => fs.unlinkSync(p),
  readFile: (p) => fs.readFileSync(p, 'utf8'),
  writeFile: (p, data) => fs.writeFileSync(p, data),
  setsid: () => {
    setsid();
  },
  isatty: (fd) => tty.isatty(fd),
  openConsole: (p) => fs.openSync(p, fs.constants.O_RDWR | fs.constants.O_NOCTTY),
  // Never steal (arg 0): a kernel-started PID 1 owns an unclaimed console anyway, and on a
  // host (tests, demo in a PID namespace) forcing would take the terminal from another session.
  setControllingTty: (fd) => setControllingTty(fd, false),
  sethostname,
  setChildSubreaper,
  sync,
  reboot,
  exit: (code) => process.exit(code),
};
