// Hot-plugged devices: uevents, sysfs lookups, waiting for block devices, and the
// OCI spec rewrite that gives containers the guest's device numbers.
export {
  type Uevent,
  type UeventMatch,
  type UeventSource,
  type UeventStream,
  type UeventWatch,
  type UeventListenerDeps,
  type UeventListenerStats,
  UeventListener,
  parseUevent,
} from './uevent';
export {
  type BlockDevice,
  type PciPathInput,
  type PciSlot,
  type ScsiAddr,
  type SysfsWrite,
  PCI_PATH_MAX_DEPTH,
  blockDeviceName,
  bridgeSecondaryBus,
  devpathOf,
  findBlockDevice,
  formatPciPath,
  namedBlockDevice,
  parsePciPath,
  parseScsiAddr,
  pciBlockDevice,
  pciDeviceDir,
  pciRescan,
  pciRootBusDir,
  pmemBlockDevice,
  pmemName,
  readDevNumbers,
  scsiBlockDevice,
  scsiScan,
  writeSysfs,
} from './sysfs';
export {
  type DeviceMatch,
  type DeviceWaiterOptions,
  type WaitedDevice,
  DeviceWaiter,
  blockUnderDevpath,
  namedBlockMatch,
  scsiBlockMatch,
} from './wait';
export { type DeviceChange, type DeviceUpdate, updateSpecDevices } from './spec';
export { openUeventSocket, NETLINK_KOBJECT_UEVENT, UEVENT_GROUP_KERNEL, DEFAULT_UEVENT_RCVBUF } from '../sys/uevent';
