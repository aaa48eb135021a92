// Types of the storage layer: the normalised form of a Kata `Storage` message,
// the block-device resolver the block drivers call (implemented by the devices
// module, structurally), and the system calls the layer makes (injected so the
// logic runs against fakes in unit tests; ./realdeps has the real ones).
import type { MountInfoEntry } from '../init/mountinfo';
import type { Logger } from '../log';

/** types.FSGroupChangePolicy. */
export const FsGroupChangePolicy = { Always: 0, OnRootMismatch: 1 } as const;
export type FsGroupChangePolicy = (typeof FsGroupChangePolicy)[keyof typeof FsGroupChangePolicy];

export interface FsGroup {
  groupId: number;
  policy: FsGroupChangePolicy;
}

/** A validated, normalised agent.Storage (see ./spec parseStorage). */
export interface StorageSpec {
  driver: string;
  driverOptions: string[];
  /** Meaning depends on the driver: tag, PCI path, SCSI address, device or directory. */
  source: string;
  fstype: string;
  /** mount(8)-style option words, one per element ("a,b" elements are split). */
  options: string[];
  /** Guest path (as given; StorageManager checks and normalises it against its root). */
  mountPoint: string;
  /** Absent when the message had no fs_group. */
  fsGroup?: FsGroup;
  shared: boolean;
}

/**
 * Resolution of hot-plugged block devices to their guest device nodes. Each
 * call waits (bounded by the devices module's hotplug timeout and `signal`)
 * until the device has appeared. The devices module's DeviceWaiter satisfies
 * this structurally.
 */
export interface BlockDevices {
  /** virtio-blk on PCI: "02/01" (bridge slot / device slot, hex) -> /dev/vdX. */
  pciBlock(pciPath: string, signal?: AbortSignal): Promise<{ path: string }>;
  /** virtio-scsi: "target:lun" -> /dev/sdX. */
  scsiBlock(addr: string, signal?: AbortSignal): Promise<{ path: string }>;
  /** virtio-blk on MMIO: the device node the host predicted ("/dev/vdb"). */
  mmioBlock(name: string, signal?: AbortSignal): Promise<{ path: string }>;
  /** nvdimm: "/dev/pmemN". */
  pmem(devPath: string, signal?: AbortSignal): Promise<{ path: string }>;
}

export type FileKind = 'dir' | 'file' | 'symlink' | 'block' | 'char' | 'other';

export interface FileStat {
  kind: FileKind;
  /** st_mode (type and permission bits). */
  mode: number;
  uid: number;
  gid: number;
}

/**
 * File operations (path based, synchronous, node:fs semantics: failures throw
 * errors whose `.code` is the errno name).
 */
export interface StorageFs {
  /** lstat(2); undefined when the path does not exist (ENOENT). */
  lstat(path: string): FileStat | undefined;
  /** stat(2) (follows symlinks); undefined when missing. */
  stat(path: string): FileStat | undefined;
  realpath(path: string): string;
  /** mkdir(2), one level; EEXIST when something is there. */
  mkdir(path: string, mode: number): void;
  rmdir(path: string): void;
  /** Create an empty regular file exclusively (O_CREAT|O_EXCL|O_NOFOLLOW). */
  createFile(path: string, mode: number): void;
  unlink(path: string): void;
  /** lchown(2); -1 leaves an id unchanged. */
  lchown(path: string, uid: number, gid: number): void;
  /** chmod(2) with the full mode (permission, setgid, sticky bits). */
  chmod(path: string, mode: number): void;
  readdir(path: string): string[];
  readFile(path: string): string;
  writeFile(path: string, data: string): void;
}

export interface StorageDeps {
  /** mount(2). Throws (SysError-like, `.code` errno name) on failure. */
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void;
  /** umount2(2). */
  umount(target: string, flags: number): void;
  /** The calling process's mount table (/proc/self/mountinfo). */
  mountInfo(): MountInfoEntry[];
  fs: StorageFs;
  devices: BlockDevices;
  log: Logger;
  /** Where the huge page pools are (default /sys/kernel/mm/hugepages). */
  hugepagesDir?: string;
}

/** One storage as list() reports it. */
export interface StorageInfo {
  mountPoint: string;
  driver: string;
  source: string;
  fstype: string;
  options: string[];
  /** The device node a block driver resolved the source to. */
  device?: string;
  /** References per owner. */
  owners: Record<string, number>;
  refs: number;
  shared: boolean;
  /** What the agent did at the mount point: mounted it, adopted a mount it found, or made a directory. */
  state: 'mounted' | 'premounted' | 'directory';
  /** Set when an unmount failed; closeAll() tries again. */
  unmountError?: string;
}

/** Storage.driver values this layer handles (Kata's names, plus "bind"). */
export const STORAGE_DRIVERS = [
  'virtio-fs',
  '9p',
  'blk',
  'mmioblk',
  'scsi',
  'nvdimm',
  'ephemeral',
  'local',
  'overlayfs',
  'bind',
] as const;
export type StorageDriver = (typeof STORAGE_DRIVERS)[number];
