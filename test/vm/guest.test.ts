// The VM end-to-end suite (issues 7 and 4): one guest booted from what osbuilder makes (its kernel,
// the minimal rootfs as an lz4 initrd), under QEMU/TCG, driven over the agent's virtio-serial port
// by the client library, as a Kata host would. The cases run in order on the one guest and end
// with DestroySandbox powering it off. Every case scans the console for panics.
//
// Shared with the guest: a virtio-fs directory (tag kataShared, the sandbox storage at
// /run/kata-containers/shared/containers, as Kata lays it out), a 9p directory (tag kataShared9p),
// a virtio-blk disk at PCI slot 0x10 (Kata PCI path "10") holding an ext4 busybox rootfs, and a
// PCIe root port at slot 0x12 into which a second disk is hot-plugged through QMP (path "12/00").
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AgentClient } from '../../agent/src/client/agent';
import { Code } from '../../agent/src/rpc/status';
import { ociSpecToGrpc, type OciSpec } from '../../agent/src/runtime/spec';
import { waitAgent } from '../../osbuilder/src/run/command';
import { Qmp, Vm } from '../../osbuilder/src/run/vm';
import { grpcProcess, readAll as readAllOf, readUntil as readUntilOf, rejection } from '../helpers/agent-calls';
import { makeBusyboxRootfs, minimalOciConfig, type MinimalConfigOptions } from '../helpers/busybox-rootfs';
import { canBootGuests, ensureGuest } from '../helpers/guest';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-vm-'));
const SHARED = path.join(tmp, 'shared'); // virtio-fs
const SHARED_9P = path.join(tmp, 'shared9p');
const GUEST_SHARED = '/run/kata-containers/shared/containers';
const GUEST_9P = '/run/kata-containers/shared/9p';
const SID = 'gk-vm-sandbox';
const CALL = { timeoutMs: 90_000 };

let vm: Vm | undefined;
let c: AgentClient | undefined;
let qmp: Qmp | undefined;

afterAll(async () => {
  c?.close();
  qmp?.close();
  await vm?.stop();
  // The guest's console (kernel and agent logs) outlives the run, for whoever reads a failure.
  if (fs.existsSync(path.join(tmp, 'console.log'))) fs.copyFileSync(path.join(tmp, 'console.log'), path.join(os.tmpdir(), 'gk-vm-guest-console.log'));
  fs.rmSync(tmp, { recursive: true, force: true });
});

function spec(o: MinimalConfigOptions & { mounts?: Array<Record<string, unknown>> }): ReturnType<typeof ociSpecToGrpc> {
  const oci = minimalOciConfig(o) as unknown as OciSpec & { mounts: Array<Record<string, unknown>> };
  if (o.mounts) oci.mounts.push(...o.mounts);
  return ociSpecToGrpc(oci as unknown as OciSpec);
}

const readAll = (cid: string, execId = ''): Promise<string> => readAllOf(c!, 'ReadStdout', cid, execId, CALL);
const readUntil = (cid: string, execId: string, re: RegExp): Promise<string> => readUntilOf(c!, cid, execId, re, CALL);

/** Run a container to completion: create, start, its stdout, its exit status; then remove it. */
async function runContainer(cid: string, o: MinimalConfigOptions & { mounts?: Array<Record<string, unknown>> }, extra: Record<string, unknown> = {}): Promise<{ out: string; status: number }> {
  await c!.call('CreateContainer', { container_id: cid, exec_id: cid, OCI: spec(o), ...extra }, CALL);
  await c!.call('StartContainer', { container_id: cid }, CALL);
  const out = await readAll(cid);
  const w = await c!.call('WaitProcess', { container_id: cid, exec_id: '' }, CALL);
  await c!.call('RemoveContainer', { container_id: cid, timeout: 30 }, CALL);
  return { out, status: w.status as number };
}

/** Total bytes of the file system holding a guest path (GetVolumeStats: statfs in the guest). */
async function fsBytes(guestPath: string): Promise<number> {
  const r = await c!.call('GetVolumeStats', { volume_guest_path: guestPath }, CALL);
  return Number((r.usage as Array<{ unit: number; total: number }>).find((u) => Number(u.unit) === 1)!.total);
}

function ext4Image(file: string, sizeMiB: number, fill: (dir: string) => void): void {
  const dir = fs.mkdtempSync(path.join(tmp, 'img-'));
  fill(dir);
  const r = spawnSync('mkfs.ext4', ['-q', '-F', '-d', dir, '-L', path.basename(file), file, `${sizeMiB}M`], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mkfs.ext4: ${r.stderr}`);
  fs.rmSync(dir, { recursive: true, force: true });
}

describe.runIf(canBootGuests() && fs.existsSync('/usr/lib/qemu/virtiofsd'))('VM end-to-end: the agent in a QEMU guest (TCG)', () => {
  beforeAll(async () => {
    const guest = await ensureGuest();
    fs.mkdirSync(SHARED);
    fs.mkdirSync(SHARED_9P);
    makeBusyboxRootfs(path.join(SHARED, 'c-fs', 'rootfs'));
    makeBusyboxRootfs(path.join(SHARED_9P, 'c-9p', 'rootfs'));
    makeBusyboxRootfs(path.join(SHARED, 'c-hp', 'rootfs'));
    fs.mkdirSync(path.join(SHARED, 'vol'));
    fs.writeFileSync(path.join(SHARED, 'vol', 'from-host.txt'), 'virtio-fs volume\n');
    fs.mkdirSync(path.join(SHARED_9P, 'vol'));
    fs.writeFileSync(path.join(SHARED_9P, 'vol', 'from-host.txt'), '9p volume\n');
    ext4Image(path.join(tmp, 'rootfs.img'), 64, (d) => void makeBusyboxRootfs(d));
    ext4Image(path.join(tmp, 'data.img'), 32, (d) => fs.writeFileSync(path.join(d, 'hello.txt'), 'hot-plugged disk\n'));
    vm = await Vm.start({
      accel: 'tcg',
      machine: 'q35',
      cpus: 2,
      memoryMiB: 1024,
      kernel: guest.kernel,
      initrd: guest.initrd,
      append: 'agent.channel=serial agent.log=debug agent.hotplug_timeout=10s',
      agentSocket: path.join(tmp, 'agent.sock'),
      qmpSocket: path.join(tmp, 'qmp.sock'),
      consoleLog: path.join(tmp, 'console.log'),
      shared: [
        { tag: 'kataShared', path: SHARED, kind: 'virtiofs', socket: path.join(tmp, 'virtiofsd.sock') },
        { tag: 'kataShared9p', path: SHARED_9P, kind: '9p' },
      ],
      disks: [{ path: path.join(tmp, 'rootfs.img'), id: 'rootdisk', slot: 0x10 }],
      hotplugPorts: [{ id: 'rp0', slot: 0x12 }],
    });
    await waitAgent(vm, 240_000);
    c = await AgentClient.connect(`serial:${path.join(tmp, 'agent.sock')}`);
    qmp = await Qmp.connect(path.join(tmp, 'qmp.sock'));
  }, 1_800_000);

  afterEach(() => {
    if (vm) expect(vm.panics(), vm.console().slice(-4000)).toEqual([]);
  });

  it('Check and GetGuestDetails: the agent answers over virtio-serial and lists its storage handlers', async () => {
    expect(await c!.check(CALL)).toMatchObject({ status: expect.anything() });
    const d = await c!.call('GetGuestDetails', { mem_block_size: true, mem_hotplug_probe: true }, CALL);
    expect(d.agent_details.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(d.agent_details.storage_handlers).toEqual(expect.arrayContaining(['virtio-fs', '9p', 'blk']));
    expect(Number(d.mem_block_size_bytes)).toBeGreaterThan(0);
  });

  it('CreateSandbox with host name, DNS and the virtio-fs share as its storage', async () => {
    await c!.call(
      'CreateSandbox',
      {
        sandbox_id: SID,
        hostname: 'gk-vm-guest',
        dns: ['nameserver 192.0.2.53'],
        storages: [{ driver: 'virtio-fs', source: 'kataShared', fstype: 'virtiofs', options: [], mount_point: GUEST_SHARED }],
      },
      CALL,
    );
    expect(vm!.console()).not.toMatch(/"level":"error"/);
  });

  it('a container with its rootfs over virtio-fs: output through ReadStdout, exit code through WaitProcess, a virtio-fs volume', async () => {
    const r = await runContainer('c-fs', {
      args: ['sh', '-c', 'echo hello from a guestkit VM; hostname; cat /etc/resolv.conf; cat /vol/from-host.txt; echo written > /vol/from-guest.txt; exit 7'],
      mounts: [
        { destination: '/vol', type: 'bind', source: `${GUEST_SHARED}/vol`, options: ['rbind', 'rw'] },
        { destination: '/etc/resolv.conf', type: 'bind', source: '/etc/resolv.conf', options: ['rbind', 'ro'] },
      ],
    });
    expect(r.out).toBe('hello from a guestkit VM\ngk-vm-guest\nnameserver 192.0.2.53\nvirtio-fs volume\n');
    expect(r.status).toBe(7);
    expect(fs.readFileSync(path.join(SHARED, 'vol', 'from-guest.txt'), 'utf8')).toBe('written\n'); // through virtio-fs to the host
  });

  it('a container with its rootfs over 9p (a container storage), and a 9p volume; the 9p mount goes with the container', async () => {
    const storage = { driver: '9p', source: 'kataShared9p', fstype: '9p', options: ['trans=virtio', 'version=9p2000.L', 'msize=262144', 'cache=mmap'], mount_point: GUEST_9P };
    const r = await runContainer(
      'c-9p',
      { args: ['sh', '-c', 'cat /vol/from-host.txt; ls /bin/busybox'], rootPath: `${GUEST_9P}/c-9p/rootfs`, mounts: [{ destination: '/vol', type: 'bind', source: `${GUEST_9P}/vol`, options: ['rbind', 'ro'] }] },
      { storages: [storage] },
    );
    expect(r.out).toBe('9p volume\n/bin/busybox\n');
    expect(r.status).toBe(0);
    // RemoveContainer unmounted the 9p storage and removed its mount point.
    const gone = await rejection(fsBytes(GUEST_9P));
    expect(gone.code).toBe(Code.NOT_FOUND);
  });

  it('a container with its rootfs on a virtio-blk disk (PCI path 10, ext4), unmounted with the container', async () => {
    const mp = `${GUEST_SHARED}/c-blk/rootfs`;
    const storage = { driver: 'blk', source: '10', fstype: 'ext4', options: [], mount_point: mp };
    await c!.call('CreateContainer', { container_id: 'c-blk', exec_id: 'c-blk', OCI: spec({ args: ['sleep', '600'], rootPath: mp }), storages: [storage] }, CALL);
    expect(await fsBytes(mp)).toBeLessThan(80 * 1024 * 1024); // the 64 MiB ext4, not the share
    await c!.call('StartContainer', { container_id: 'c-blk' }, CALL);
    // A terminal exec with a window size.
    // It waits for a second line before exiting (see the terminal exec in containers.test.ts).
    await c!.call('ExecProcess', { container_id: 'c-blk', exec_id: 'tty', process: grpcProcess(['sh', '-c', 'read x; stty size; tty; cat /etc/passwd | head -1; read y'], true) }, CALL);
    await c!.call('TtyWinResize', { container_id: 'c-blk', exec_id: 'tty', row: 40, column: 120 }, CALL);
    await c!.call('WriteStdin', { container_id: 'c-blk', exec_id: 'tty', data: Buffer.from('go\r') }, CALL);
    const out = await readUntil('c-blk', 'tty', /root:x:0:0/);
    expect(out).toMatch(/40 120\r?\n/);
    expect(out).toMatch(/\/dev\/pts\/\d+/);
    await c!.call('WriteStdin', { container_id: 'c-blk', exec_id: 'tty', data: Buffer.from('done\r') }, CALL);
    expect((await c!.call('WaitProcess', { container_id: 'c-blk', exec_id: 'tty' }, CALL)).status).toBe(0);
    await c!.call('SignalProcess', { container_id: 'c-blk', exec_id: '', signal: 9 }, CALL);
    expect((await c!.call('WaitProcess', { container_id: 'c-blk', exec_id: '' }, CALL)).status).toBe(137);
    await c!.call('RemoveContainer', { container_id: 'c-blk', timeout: 30 }, CALL);
    expect((await rejection(fsBytes(mp))).code).toBe(Code.NOT_FOUND); // unmounted, mount point removed
  });

  it('a virtio-blk disk hot-plugged through QMP device_add (PCI path 12/00), used as a volume, then unplugged', async () => {
    await qmp!.execute('blockdev-add', { driver: 'raw', 'node-name': 'hp0', file: { driver: 'file', filename: path.join(tmp, 'data.img') } });
    await qmp!.execute('device_add', { driver: 'virtio-blk-pci', drive: 'hp0', id: 'hp0dev', bus: 'rp0' });
    const mp = '/run/kata-containers/sandbox/storage/hp0';
    const r = await runContainer(
      'c-hp',
      { args: ['cat', '/data/hello.txt'], mounts: [{ destination: '/data', type: 'bind', source: mp, options: ['rbind', 'ro'] }] },
      { storages: [{ driver: 'blk', source: '12/00', fstype: 'ext4', options: ['ro'], mount_point: mp }] },
    );
    expect(r).toEqual({ out: 'hot-plugged disk\n', status: 0 });
    expect((await rejection(fsBytes(mp))).code).toBe(Code.NOT_FOUND); // unmounted with its container
    await qmp!.execute('device_del', { id: 'hp0dev' });
    // A disk that is not there: the wait ends with DEADLINE_EXCEEDED naming it (short timeout).
    const err = await rejection(
      c!.call('CreateContainer', { container_id: 'c-nodisk', exec_id: 'c-nodisk', OCI: spec({ args: ['true'] }), storages: [{ driver: 'blk', source: '1f', fstype: 'ext4', options: [], mount_point: '/run/kata-containers/sandbox/storage/none' }] }, CALL),
    );
    expect(err.code).toBe(Code.DEADLINE_EXCEEDED);
    expect(err.message).toMatch(/1f/);
  }, 180_000);

  it('DestroySandbox powers the guest off: QEMU exits 0', async () => {
    await c!.call('DestroySandbox', {}, CALL).catch((err: unknown) => {
      // The reply can be lost when the guest powers off right after sending it.
      if (!(err instanceof Error) || !/closed|reset|EOF|ECONNRESET/i.test(err.message)) throw err;
    });
    const { code } = await vm!.waitExit(120_000);
    expect(code).toBe(0);
    expect(vm!.console()).toMatch(/reboot: Power down/);
  }, 180_000);
});
