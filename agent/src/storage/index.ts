// Storage drivers: Kata `Storage` entries made to appear at their mount points.
export { StorageManager, type StorageManagerOptions } from './manager';
export { parseStorage, parseStorages, splitOptions, knownDrivers } from './spec';
export { checkMountPoint, confine, realTarget, DEFAULT_STORAGE_ROOT } from './confine';
export { applyFsGroup } from './fsgroup';
export { realStorageDeps, realStorageFs, type RealStorageDepsOptions } from './realdeps';
export {
  FsGroupChangePolicy,
  STORAGE_DRIVERS,
  type BlockDevices,
  type FileStat,
  type FsGroup,
  type StorageDeps,
  type StorageDriver,
  type StorageFs,
  type StorageInfo,
  type StorageSpec,
} from './types';
