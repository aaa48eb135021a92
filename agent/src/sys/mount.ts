// mount(2) / umount2(2) and their flags.
import { check, fn } from './libc';

export const MS = {
  RDONLY: 0x1,
  NOSUID: 0x2,
  NODEV: 0x4,
  NOEXEC: 0x8,
  SYNCHRONOUS: 0x10,
  REMOUNT: 0x20,
  MANDLOCK: 0x40,
  DIRSYNC: 0x80,
  NOATIME: 0x400,
  NODIRATIME: 0x800,
  BIND: 0x1000,
  MOVE: 0x2000,
  REC: 0x4000,
  SILENT: 0x8000,
  UNBINDABLE: 1 << 17,
  PRIVATE: 1 << 18,
  SLAVE: 1 << 19,
  SHARED: 1 << 20,
  RELATIME: 1 << 21,
  STRICTATIME: 1 << 24,
  LAZYTIME: 1 << 25,
} as const;

export const MNT = { FORCE: 1, DETACH: 2, EXPIRE: 4 } as const;
export const UMOUNT_NOFOLLOW = 8;

export function mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void {
  const f = fn('int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data)');
  check(f(source, target, fstype, flags, data) as number, 'mount', target, `${fstype ?? 'none'} from ${source ?? 'none'}`);
}

export function umount2(target: string, flags = 0): void {
  const f = fn('int umount2(const char *target, int flags)');
  check(f(target, flags) as number, 'umount2', target);
}

/** Mount option words (as in fstab/OCI) -> flags + remaining data string. */
export function parseMountOptions(options: string[]): { flags: number; data: string } {
  const table: Record<string, [number, boolean]> = {
    ro: [MS.RDONLY, true], rw: [MS.RDONLY, false],
    nosuid: [MS.NOSUID, true], suid: [MS.NOSUID, false],
    nodev: [MS.NODEV, true], dev: [MS.NODEV, false],
    noexec: [MS.NOEXEC, true], exec: [MS.NOEXEC, false],
    sync: [MS.SYNCHRONOUS, true], async: [MS.SYNCHRONOUS, false],
    remount: [MS.REMOUNT, true], dirsync: [MS.DIRSYNC, true],
    noatime: [MS.NOATIME, true], atime: [MS.NOATIME, false],
    nodiratime: [MS.NODIRATIME, true], diratime: [MS.NODIRATIME, false],
    bind: [MS.BIND, true], rbind: [MS.BIND | MS.REC, true],
    relatime: [MS.RELATIME, true], norelatime: [MS.RELATIME, false],
    strictatime: [MS.STRICTATIME, true], lazytime: [MS.LAZYTIME, true],
    private: [MS.PRIVATE, true], rprivate: [MS.PRIVATE | MS.REC, true],
    shared: [MS.SHARED, true], rshared: [MS.SHARED | MS.REC, true],
    slave: [MS.SLAVE, true], rslave: [MS.SLAVE | MS.REC, true],
    unbindable: [MS.UNBINDABLE, true], runbindable: [MS.UNBINDABLE | MS.REC, true],
    defaults: [0, true],
  };
  let flags = 0;
  const data: string[] = [];
  for (const o of options) {
    const t = table[o];
    if (!t) data.push(o);
    else if (t[1]) flags |= t[0];
    else flags &= ~t[0];
  }
  return { flags, data: data.join(',') };
}
