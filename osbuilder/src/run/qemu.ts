// The QEMU command line for a guestkit guest. Pure: a VmConfig in, an argument list out.
//
// Devices:
//  - the agent channel: a virtio-serial port named agent.channel.0 on a host unix socket
//    (QEMU listens; the host client connects), or vhost-vsock-pci where the host has it;
//  - shared directories: virtio-fs (vhost-user-fs-pci to a virtiofsd socket; needs guest RAM in a
//    shared memfd backend) or 9p (virtio-9p-pci, local, security_model=none);
//  - virtio-blk disks (raw images), a virtio-rng, and a QMP socket for hotplug (device_add);
//  - the console (ttyS0) into a log file; -no-reboot, and panic=-1 on the kernel command line, so a
//    dying PID 1 ends QEMU.

export type Accel = 'kvm' | 'tcg';
export type Machine = 'q35' | 'microvm';

export interface SharedDir {
  /** The mount tag the guest uses. */
  tag: string;
  /** Host directory. */
  path: string;
  kind: 'virtiofs' | '9p';
  /** virtio-fs: virtiofsd's socket (started by the runner). */
  socket?: string;
}

export interface Disk {
  path: string;
  /** Drive id (also the QMP id); default disk<N>. */
  id?: string;
  readonly?: boolean;
  /** PCI slot on the root bus (e.g. 0x10: Kata PCI path "10"); default: QEMU's choice. */
  slot?: number;
}

export interface VmConfig {
  qemu?: string;
  accel: Accel;
  machine: Machine;
  cpus: number;
  /** Guest RAM in MiB. */
  memoryMiB: number;
  kernel: string;
  initrd?: string;
  /** A disk image to boot from (root=/dev/vda1), instead of or besides an initrd. */
  rootImage?: string;
  /** Extra kernel command line (appended after the runner's own). */
  append?: string;
  /** Host unix socket of the agent's virtio-serial port. */
  agentSocket?: string;
  /** Guest CID for vhost-vsock-pci (only where /dev/vhost-vsock exists). */
  vsockCid?: number;
  /** QMP socket (hotplug, queries). */
  qmpSocket?: string;
  consoleLog: string;
  shared?: SharedDir[];
  disks?: Disk[];
  /** Host TSC frequency in kHz (microvm under TCG needs it on the kernel command line). */
  tscKhz?: number;
  /** PCIe root ports to hot-plug devices into later (q35): id and root-bus slot, e.g. { id: 'rp0', slot: 0x12 }. */
  hotplugPorts?: Array<{ id: string; slot: number }>;
}

/** The kernel command line the runner uses (console, panic handling, quiet boot, the agent's options). */
export function kernelCmdline(c: VmConfig): string {
  const parts = ['console=ttyS0', 'panic=-1', 'printk.time=1'];
  if (c.machine === 'microvm' && c.accel === 'tcg' && c.tscKhz) parts.push(`tsc_early_khz=${c.tscKhz}`);
  if (c.rootImage && !c.initrd) parts.push('root=/dev/vda1', 'rootfstype=ext4', 'ro', 'init=/sbin/init');
  if (c.append) parts.push(c.append);
  return parts.join(' ');
}

/** The QEMU argument list (without the binary). */
export function qemuArgs(c: VmConfig): string[] {
  const a: string[] = [];
  const shared = c.shared ?? [];
  const needShm = shared.some((s) => s.kind === 'virtiofs');
  const dev = (name: string): string => (c.machine === 'microvm' ? name.replace(/-pci$/, '-device') : name);
  if (c.machine === 'microvm') {
    a.push('-M', `microvm,x-option-roms=off,pit=off,pic=off,isa-serial=on,rtc=off${needShm ? ',memory-backend=mem' : ''}`);
    a.push('-global', 'virtio-mmio.force-legacy=false');
  } else {
    a.push('-M', `q35${needShm ? ',memory-backend=mem' : ''}`);
  }
  a.push('-accel', c.accel, '-cpu', c.accel === 'kvm' ? 'host' : 'max', '-smp', String(c.cpus), '-m', `${c.memoryMiB}M`);
  if (needShm) a.push('-object', `memory-backend-memfd,id=mem,size=${c.memoryMiB}M,share=on`);
  a.push('-nodefaults', '-no-user-config', '-nographic', '-no-reboot', '-display', 'none');
  a.push('-chardev', `file,id=console,path=${c.consoleLog}`, '-serial', 'chardev:console');
  a.push('-kernel', c.kernel);
  if (c.initrd) a.push('-initrd', c.initrd);
  a.push('-append', kernelCmdline(c));
  a.push('-device', dev('virtio-rng-pci'));
  if (c.agentSocket) {
    a.push('-device', dev('virtio-serial-pci'));
    a.push('-chardev', `socket,id=agent,path=${c.agentSocket},server=on,wait=off`);
    a.push('-device', 'virtserialport,chardev=agent,name=agent.channel.0');
  }
  if (c.vsockCid !== undefined) a.push('-device', `${dev('vhost-vsock-pci')},guest-cid=${c.vsockCid}`);
  if (c.qmpSocket) a.push('-qmp', `unix:${c.qmpSocket},server=on,wait=off`);
  shared.forEach((s, i) => {
    if (s.kind === 'virtiofs') {
      if (!s.socket) throw new Error(`virtio-fs share ${s.tag} has no virtiofsd socket`);
      a.push('-chardev', `socket,id=fs${i},path=${s.socket}`);
      a.push('-device', `${dev('vhost-user-fs-pci')},chardev=fs${i},tag=${s.tag}`);
    } else {
      a.push('-fsdev', `local,id=fs${i},path=${s.path},security_model=none`);
      a.push('-device', `${dev('virtio-9p-pci')},fsdev=fs${i},mount_tag=${s.tag}`);
    }
  });
  const disks: Disk[] = [...(c.rootImage ? [{ path: c.rootImage, id: 'root', readonly: true }] : []), ...(c.disks ?? [])];
  disks.forEach((d, i) => {
    const id = d.id ?? `disk${i}`;
    a.push('-drive', `file=${d.path},if=none,id=${id},format=raw${d.readonly ? ',readonly=on' : ''}`);
    a.push('-device', `${dev('virtio-blk-pci')},drive=${id},id=${id}-dev${d.slot !== undefined && c.machine === 'q35' ? `,addr=0x${d.slot.toString(16)}` : ''}`);
  });
  (c.hotplugPorts ?? []).forEach((port, i) => {
    if (c.machine !== 'q35') throw new Error('hot-plug ports need the q35 machine');
    a.push('-device', `pcie-root-port,id=${port.id},bus=pcie.0,chassis=${i + 1},addr=0x${port.slot.toString(16)}`);
  });
  return a;
}

/** What in a console log means the guest kernel died or PID 1 did. */
export const PANIC_PATTERNS = [/Kernel panic/, /\bOops\b/, /Attempted to kill init/, /BUG: /, /general protection fault/];

/** The console lines that match a panic pattern. */
export function panicLines(consoleText: string): string[] {
  return consoleText.split('\n').filter((l) => PANIC_PATTERNS.some((p) => p.test(l)));
}
