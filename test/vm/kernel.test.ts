// The guest kernel, booted (issue 6): osbuilder's kernel with a busybox-only initrd reads its own
// /proc/config.gz and checks the options the agent and the VM suite depend on; the Debian cloud
// kernel (the runner's alternative) boots the same initrd. Every boot's console is scanned for
// panics, oopses and a dead init.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../osbuilder/src/cli';
import { runCommand } from '../../osbuilder/src/run/command';
import { Vm } from '../../osbuilder/src/run/vm';
import { busyboxInitrd, canBootGuests, ensureGuest, type Guest } from '../helpers/guest';

const MUST_HAVE = [
  'CONFIG_VIRTIO_PCI', 'CONFIG_VIRTIO_CONSOLE', 'CONFIG_VIRTIO_BLK', 'CONFIG_VIRTIO_NET', 'CONFIG_VIRTIO_VSOCKETS', 'CONFIG_VIRTIO_FS',
  'CONFIG_NET_9P_VIRTIO', 'CONFIG_9P_FS', 'CONFIG_EXT4_FS', 'CONFIG_EROFS_FS', 'CONFIG_OVERLAY_FS', 'CONFIG_CGROUPS', 'CONFIG_MEMCG',
  'CONFIG_CGROUP_BPF', 'CONFIG_PID_NS', 'CONFIG_NET_NS', 'CONFIG_USER_NS', 'CONFIG_SECCOMP_FILTER', 'CONFIG_HOTPLUG_PCI_PCIE',
  'CONFIG_BLK_DEV_PMEM', 'CONFIG_FS_DAX', 'CONFIG_HW_RANDOM_VIRTIO', 'CONFIG_SERIAL_8250_CONSOLE', 'CONFIG_BINFMT_ELF', 'CONFIG_IKCONFIG_PROC',
];

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-vm-kernel-'));
const vms: Vm[] = [];
afterAll(async () => {
  for (const v of vms) await v.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function boot(kernel: string, initrd: string, name: string): Promise<{ vm: Vm; console: string }> {
  const vm = await Vm.start({ accel: 'tcg', machine: 'q35', cpus: 1, memoryMiB: 256, kernel, initrd, consoleLog: path.join(tmp, `${name}.log`) });
  vms.push(vm);
  const { code } = await vm.waitExit(120_000);
  const text = vm.console();
  expect(vm.panics(), text.slice(-3000)).toEqual([]);
  expect(code, vm.qemuStderr).toBe(0); // poweroff -f from /init; -no-reboot
  return { vm, console: text };
}

describe.runIf(canBootGuests())('guest kernel in QEMU (TCG)', () => {
  let guest: Guest;
  beforeAll(async () => {
    guest = await ensureGuest();
  }, 1_800_000);

  it("osbuilder's kernel boots, reports its config version, and has every must-have option in /proc/config.gz", async () => {
    const script = `echo GK-MARKER; echo "release $(/bin/busybox uname -r)"; /bin/busybox zcat /proc/config.gz | /bin/busybox grep -E '^CONFIG_[A-Z0-9_]+=' ; echo GK-END`;
    const initrd = busyboxInitrd(path.join(tmp, 'bb-config.lz4'), script);
    const { console: text } = await boot(guest.kernel, initrd, 'config');
    expect(text).toContain('GK-MARKER');
    expect(text).toMatch(new RegExp(`release ${guest.release.replace(/\./g, '\\.')}\\r?\\n`));
    expect(guest.release).toMatch(/-guestkit\.\d+$/);
    const body = text.slice(text.indexOf('GK-MARKER'), text.indexOf('GK-END'));
    const set = new Set([...body.matchAll(/^(CONFIG_\w+)=y\r?$/gm)].map((m) => m[1]));
    expect(MUST_HAVE.filter((s) => !set.has(s))).toEqual([]);
    expect(body).not.toMatch(/^CONFIG_MODULES=y/m);
  }, 180_000);

  const debian = fs.existsSync('/boot') ? fs.readdirSync('/boot').filter((f) => /^vmlinuz-.*-cloud-amd64$/.test(f)).sort().at(-1) : undefined;
  it.runIf(debian !== undefined)('the Debian cloud kernel (the alternative) boots the same kind of initrd to its marker', async () => {
    const initrd = busyboxInitrd(path.join(tmp, 'bb-marker.lz4'), 'echo GK-MARKER');
    const { console: text } = await boot(path.join('/boot', debian!), initrd, 'debian');
    expect(text).toContain('GK-MARKER');
    expect(text).toMatch(/Linux version \S+-cloud-amd64/);
  }, 180_000);

  it.runIf(debian !== undefined)('osbuilder run --debian-kernel: the agent answers on the Debian cloud kernel, its virtio modules loaded at boot', async () => {
    let out = '';
    let err = '';
    const code = await runCli(['run', '--debian-kernel', '--initrd', guest.initrd, '--ready-only', '--json', '--quiet', '--console', path.join(tmp, 'debian-agent.log')], [runCommand], {
      stdout: (x) => void (out += x),
      stderr: (x) => void (err += x),
      env: process.env,
    });
    expect(err).toBe('');
    expect(code).toBe(0);
    const ready = JSON.parse(out) as { agent: string; timeline: { readyMs: number } };
    expect(ready.agent).toMatch(/^serial:/);
    expect(ready.timeline.readyMs).toBeGreaterThan(0);
    const text = fs.readFileSync(path.join(tmp, 'debian-agent.log'), 'utf8');
    expect(text).toMatch(/Run \/init\.modules as init process/);
    expect(text).toContain('"msg":"listening on virtio-serial"');
    expect(text).not.toContain('cannot load');
  }, 240_000);

  it('osbuilder run --machine microvm: virtio-mmio devices, the agent answers (TCG: tsc_early_khz set)', async () => {
    let out = '';
    let err = '';
    const log = path.join(tmp, 'microvm.log');
    const code = await runCli(['run', '--machine', 'microvm', '--kernel', guest.kernel, '--initrd', guest.initrd, '--ready-only', '--json', '--quiet', '--console', log], [runCommand], {
      stdout: (x) => void (out += x),
      stderr: (x) => void (err += x),
      env: process.env,
    });
    expect(err).toBe('');
    expect(code).toBe(0);
    expect((JSON.parse(out) as { timeline: { readyMs: number } }).timeline.readyMs).toBeGreaterThan(0);
    const text = fs.readFileSync(log, 'utf8');
    expect(text).toMatch(/Command line: .*tsc_early_khz=\d+/);
    expect(text).toContain('"msg":"listening on virtio-serial"');
  }, 240_000);
});
