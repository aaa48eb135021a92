// osbuilder run's alternative kernel, pure parts: finding Debian's cloud kernel, modules.dep, the
// load order of the modules it needs, and the archive put in front of the initrd (a fake
// /lib/modules tree; the archive read back with an independent newc reader).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findDebianCloudKernel, moduleLoadOrder, moduleName, OVERLAY_INIT, overlayInit, parseModulesDep, writeModulesOverlay } from '../../osbuilder/src/run/debian-kernel';
import { readNewc } from '../helpers/osbuilder-cpio-reader';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-run-deb-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const DEP = [
  'kernel/drivers/virtio/virtio_ring.ko:',
  'kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko',
  'kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko',
  'kernel/drivers/virtio/virtio_pci_legacy_dev.ko:',
  'kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko',
  'kernel/fs/fuse/fuse.ko:',
  'kernel/fs/fuse/virtiofs.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko kernel/fs/fuse/fuse.ko',
  'kernel/net/vmw_vsock/vmw-vsock-virtio-transport.ko:',
  '',
].join('\n');

describe('modules', () => {
  it('names modules as the kernel does and parses modules.dep', () => {
    expect(moduleName('kernel/net/vmw_vsock/vmw-vsock-virtio-transport.ko')).toBe('vmw_vsock_virtio_transport');
    expect(moduleName('kernel/fs/fuse/fuse.ko.xz')).toBe('fuse');
    const dep = parseModulesDep(DEP);
    expect(dep.get('virtiofs')).toEqual({ file: 'kernel/fs/fuse/virtiofs.ko', deps: ['kernel/drivers/virtio/virtio.ko', 'kernel/drivers/virtio/virtio_ring.ko', 'kernel/fs/fuse/fuse.ko'] });
    expect(dep.size).toBe(8);
  });

  it('loads dependencies first, each module once; skips built-ins; refuses unknown names', () => {
    const dep = parseModulesDep(DEP);
    expect(moduleLoadOrder(dep, ['virtio_pci', 'virtio_console', 'virtiofs']).map(moduleName)).toEqual([
      'virtio_pci_legacy_dev',
      'virtio_ring',
      'virtio',
      'virtio_pci',
      'virtio_console',
      'fuse',
      'virtiofs',
    ]);
    expect(moduleLoadOrder(dep, ['virtiofs'], new Set(['fuse', 'virtio', 'virtio_ring'])).map(moduleName)).toEqual(['virtiofs']);
    expect(() => moduleLoadOrder(dep, ['9p'])).toThrow('module 9p is not in modules.dep');
    const loop = parseModulesDep('a.ko: b.ko\nb.ko: a.ko\n');
    expect(() => moduleLoadOrder(loop, ['a'])).toThrow(/loop/);
  });

  it('the init script loads each module with busybox insmod, then executes the agent', () => {
    expect(overlayInit('6.1.0-1-cloud-amd64', ['kernel/fs/fuse/fuse.ko'])).toBe(
      '#!/bin/sh\n' +
        '# osbuilder run: the Debian cloud kernel has the virtio drivers as modules: load them, then\n' +
        '# execute the agent (it stays PID 1).\n' +
        '/bin/busybox insmod /usr/lib/modules/6.1.0-1-cloud-amd64/kernel/fs/fuse/fuse.ko || echo "osbuilder run: cannot load fuse" >&2\n' +
        'exec /usr/bin/kata-agent "$@"\n',
    );
  });
});

describe('the cloud kernel and its overlay archive', () => {
  function fakeSystem(): { boot: string; mods: string } {
    const boot = path.join(tmp, 'boot');
    const mods = path.join(tmp, 'lib-modules');
    fs.mkdirSync(boot, { recursive: true });
    for (const r of ['6.1.0-9-cloud-amd64', '6.1.0-10-cloud-amd64', '6.1.0-11-cloud-amd64']) fs.writeFileSync(path.join(boot, `vmlinuz-${r}`), 'k');
    fs.writeFileSync(path.join(boot, 'vmlinuz-6.1.0-12-amd64'), 'generic');
    // Modules installed for -10 only (-11 has a kernel without its modules).
    const m = path.join(mods, '6.1.0-10-cloud-amd64');
    for (const line of DEP.split('\n').filter(Boolean)) {
      const f = line.slice(0, line.indexOf(':'));
      fs.mkdirSync(path.join(m, path.dirname(f)), { recursive: true });
      fs.writeFileSync(path.join(m, f), `module ${f}`);
    }
    fs.writeFileSync(path.join(m, 'modules.dep'), DEP);
    fs.writeFileSync(path.join(m, 'modules.builtin'), 'kernel/fs/overlayfs/overlay.ko\n');
    return { boot, mods };
  }

  it('finds the newest cloud kernel whose modules are installed', () => {
    const { boot, mods } = fakeSystem();
    expect(findDebianCloudKernel(boot, mods)).toEqual({ kernel: path.join(boot, 'vmlinuz-6.1.0-10-cloud-amd64'), release: '6.1.0-10-cloud-amd64', modulesDir: path.join(mods, '6.1.0-10-cloud-amd64') });
    expect(findDebianCloudKernel(path.join(tmp, 'none'), mods)).toBeUndefined();
  });

  it('writes the modules under usr/lib/modules and /init.modules, never an entry for lib or init', () => {
    const { boot, mods } = fakeSystem();
    const k = findDebianCloudKernel(boot, mods)!;
    const out = path.join(tmp, 'overlay.cpio');
    const loaded = writeModulesOverlay(k, out, ['virtio_console', 'virtiofs', 'overlay']);
    expect(loaded).toEqual(['virtio_ring', 'virtio', 'virtio_console', 'fuse', 'virtiofs']); // overlay is built in
    const recs = readNewc(fs.readFileSync(out)).filter((r) => r.name !== 'TRAILER!!!');
    const names = recs.map((r) => r.name);
    expect(names).toContain('usr/lib/modules/6.1.0-10-cloud-amd64/kernel/fs/fuse/virtiofs.ko');
    expect(names).toContain(OVERLAY_INIT.slice(1));
    expect(names.filter((n) => n === 'lib' || n.startsWith('lib/') || n === 'init')).toEqual([]);
    const init = recs.find((r) => r.name === 'init.modules')!;
    expect(init.mode & 0o777).toBe(0o755);
    expect(recs.every((r) => r.uid === 0 && r.gid === 0)).toBe(true);
  });
});
