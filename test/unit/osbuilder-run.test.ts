// osbuilder run, pure parts: the QEMU command line, the kernel command line, console scanning
// (panics, the boot timeline), the cached-kernel lookup, and the command line's errors.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runCli } from '../../osbuilder/src/cli';
import { findCachedKernel, hostTscKhz, runCommand } from '../../osbuilder/src/run/command';
import { kernelCmdline, panicLines, qemuArgs, type VmConfig } from '../../osbuilder/src/run/qemu';
import { consoleTimeline } from '../../osbuilder/src/run/vm';
import { EXIT } from '../../osbuilder/src/util/errors';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-run-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const base: VmConfig = { accel: 'tcg', machine: 'q35', cpus: 2, memoryMiB: 1024, kernel: '/k/vmlinuz', initrd: '/k/initrd', consoleLog: '/t/console.log' };

/** The value following each occurrence of a flag. */
const values = (args: string[], flag: string): string[] => args.flatMap((a, i) => (a === flag ? [args[i + 1]!] : []));

describe('QEMU command line', () => {
  it('q35 under TCG: kernel, initrd, console to a file, no reboot, no default devices', () => {
    const a = qemuArgs(base);
    expect(values(a, '-M')).toEqual(['q35']);
    expect(values(a, '-accel')).toEqual(['tcg']);
    expect(values(a, '-cpu')).toEqual(['max']);
    expect(values(a, '-smp')).toEqual(['2']);
    expect(values(a, '-m')).toEqual(['1024M']);
    expect(values(a, '-kernel')).toEqual(['/k/vmlinuz']);
    expect(values(a, '-initrd')).toEqual(['/k/initrd']);
    expect(a).toEqual(expect.arrayContaining(['-nodefaults', '-no-reboot', '-nographic']));
    expect(values(a, '-chardev')).toContain('file,id=console,path=/t/console.log');
    expect(values(a, '-serial')).toEqual(['chardev:console']);
    expect(values(a, '-device')).toContain('virtio-rng-pci');
    expect(values(a, '-append')).toEqual(['console=ttyS0 panic=-1 printk.time=1']);
  });

  it('the agent channel: a virtio-serial port named agent.channel.0 on a host socket; QMP; vsock with a CID', () => {
    const a = qemuArgs({ ...base, agentSocket: '/t/agent.sock', qmpSocket: '/t/qmp.sock', vsockCid: 3 });
    expect(values(a, '-chardev')).toContain('socket,id=agent,path=/t/agent.sock,server=on,wait=off');
    expect(values(a, '-device')).toEqual(expect.arrayContaining(['virtio-serial-pci', 'virtserialport,chardev=agent,name=agent.channel.0', 'vhost-vsock-pci,guest-cid=3']));
    expect(values(a, '-qmp')).toEqual(['unix:/t/qmp.sock,server=on,wait=off']);
  });

  it('virtio-fs needs guest RAM in a shared memfd backend; 9p is a local fsdev', () => {
    const a = qemuArgs({
      ...base,
      shared: [
        { tag: 'kataShared', path: '/h/s', kind: 'virtiofs', socket: '/t/vfsd.sock' },
        { tag: 'nine', path: '/h/9', kind: '9p' },
      ],
    });
    expect(values(a, '-M')).toEqual(['q35,memory-backend=mem']);
    expect(values(a, '-object')).toEqual(['memory-backend-memfd,id=mem,size=1024M,share=on']);
    expect(values(a, '-chardev')).toContain('socket,id=fs0,path=/t/vfsd.sock');
    expect(values(a, '-device')).toEqual(expect.arrayContaining(['vhost-user-fs-pci,chardev=fs0,tag=kataShared', 'virtio-9p-pci,fsdev=fs1,mount_tag=nine']));
    expect(values(a, '-fsdev')).toEqual(['local,id=fs1,path=/h/9,security_model=none']);
    expect(() => qemuArgs({ ...base, shared: [{ tag: 'x', path: '/h', kind: 'virtiofs' }] })).toThrow(/no virtiofsd socket/);
  });

  it('disks at fixed PCI slots, hot-plug root ports, and a root image instead of an initrd', () => {
    const a = qemuArgs({ ...base, disks: [{ path: '/d/a.img', id: 'a', slot: 0x10 }, { path: '/d/b.img' }], hotplugPorts: [{ id: 'rp0', slot: 0x12 }] });
    expect(values(a, '-drive')).toEqual(['file=/d/a.img,if=none,id=a,format=raw', 'file=/d/b.img,if=none,id=disk1,format=raw']);
    expect(values(a, '-device')).toEqual(expect.arrayContaining(['virtio-blk-pci,drive=a,id=a-dev,addr=0x10', 'virtio-blk-pci,drive=disk1,id=disk1-dev', 'pcie-root-port,id=rp0,bus=pcie.0,chassis=1,addr=0x12']));
    const img = qemuArgs({ ...base, initrd: undefined, rootImage: '/i/root.img' });
    expect(values(img, '-initrd')).toEqual([]);
    expect(values(img, '-drive')).toEqual(['file=/i/root.img,if=none,id=root,format=raw,readonly=on']);
    expect(kernelCmdline({ ...base, initrd: undefined, rootImage: '/i/root.img' })).toContain('root=/dev/vda1 rootfstype=ext4 ro init=/sbin/init');
  });

  it('microvm: mmio devices, and under TCG the TSC frequency on the command line', () => {
    const a = qemuArgs({ ...base, machine: 'microvm', tscKhz: 2_400_000, agentSocket: '/t/a.sock' });
    expect(values(a, '-M')[0]).toMatch(/^microvm,/);
    expect(values(a, '-global')).toEqual(['virtio-mmio.force-legacy=false']);
    expect(values(a, '-device')).toEqual(expect.arrayContaining(['virtio-serial-device', 'virtio-rng-device']));
    expect(values(a, '-append')[0]).toContain('tsc_early_khz=2400000');
    expect(() => qemuArgs({ ...base, machine: 'microvm', hotplugPorts: [{ id: 'r', slot: 3 }] })).toThrow(/q35/);
  });
});

describe('console', () => {
  it('finds panics, oopses and a dead init; ignores a clean boot', () => {
    const clean = '[    0.000000] Linux version 6.1\n[    1.7] Run /init as init process\n';
    expect(panicLines(clean)).toEqual([]);
    const bad = `${clean}[    2.0] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100\n[    2.1] Oops: 0000 [#1] SMP\n`;
    expect(panicLines(bad)).toHaveLength(2);
  });

  it('reads the boot timeline: kernel start, init exec, the agent listening line', () => {
    const t = consoleTimeline('[    0.000000] Linux version 6.1.192-guestkit.2\n[    1.682846] Run /init as init process\n{"level":"info","startup_ms":1196,"msg":"listening"}\n{"msg":"listening on virtio-serial"}\n');
    expect(t).toEqual({ kernelStartS: 0, runInitS: 1.682846, agentListening: { startupMs: 1196 } });
    expect(consoleTimeline('nothing')).toEqual({});
  });

  it('host TSC kHz from /proc/cpuinfo', () => {
    expect(hostTscKhz('processor\t: 0\ncpu MHz\t\t: 2445.406\n')).toBe(2445406);
    expect(hostTscKhz('')).toBeUndefined();
  });
});

describe('osbuilder run command line', () => {
  function io(env: NodeJS.ProcessEnv = {}) {
    const o = { stdout: '', stderr: '' };
    return { o, io: { stdout: (s: string) => void (o.stdout += s), stderr: (s: string) => void (o.stderr += s), env } };
  }

  it('the newest cached kernel of this arch', () => {
    const cache = path.join(tmp, 'cache');
    const mk = (key: string, arch: string, age: number): void => {
      const d = path.join(cache, 'kernel/builds', key);
      fs.mkdirSync(d, { recursive: true });
      fs.writeFileSync(path.join(d, 'vmlinuz'), '');
      fs.writeFileSync(path.join(d, 'kernel.json'), JSON.stringify({ arch }));
      const t = new Date(Date.now() - age * 1000);
      fs.utimesSync(path.join(d, 'kernel.json'), t, t);
    };
    mk('old', 'x86_64', 100);
    mk('new', 'x86_64', 10);
    mk('other', 'arm64', 1);
    fs.mkdirSync(path.join(cache, 'kernel/builds/broken'));
    expect(findCachedKernel({ GUESTKIT_CACHE: cache })).toBe(process.arch === 'x64' ? path.join(cache, 'kernel/builds/new/vmlinuz') : path.join(cache, 'kernel/builds/other/vmlinuz'));
    expect(findCachedKernel({ GUESTKIT_CACHE: path.join(tmp, 'empty') })).toBeUndefined();
  });

  it('usage errors and missing inputs', async () => {
    for (const [args, code] of [
      [['run'], EXIT.USAGE],
      [['run', '--initrd', '/x', '--machine', 'pc'], EXIT.USAGE],
      [['run', '--initrd', '/x', '--memory', '12'], EXIT.USAGE],
      [['run', '--initrd', '/x', '--accel', 'hvf'], EXIT.USAGE],
      [['run', '--initrd', '/x', '--share-type', 'nfs'], EXIT.USAGE],
      [['run', '--initrd', '/x', '--channel', 'tcp'], EXIT.USAGE],
      [['run', '--initrd', '/x', '--cid', '2'], EXIT.USAGE],
      [['run', '--initrd', path.join(tmp, 'no-initrd')], EXIT.MISSING],
    ] as const) {
      const a = io();
      expect(await runCli([...args], [runCommand], a.io), args.join(' ')).toBe(code);
      expect(a.o.stderr.trim().split('\n')).toHaveLength(1);
    }
    const a = io();
    expect(await runCli(['run', '--initrd', '/x', '--kernel', '/k', '--debian-kernel'], [runCommand], a.io)).toBe(EXIT.USAGE);
  });

  it('--help documents the agent socket, shares, disks and exit codes', async () => {
    const a = io();
    expect(await runCli(['run', '--help'], [runCommand], a.io)).toBe(EXIT.OK);
    for (const s of ['serial:PATH', 'agent.channel.0', '--share DIR[:TAG]', '--disk FILE', '--qmp PATH', 'TCG', 'Exit codes']) expect(a.o.stdout).toContain(s);
  });
});
