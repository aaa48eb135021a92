// Each driver's mapping from a Storage to mount(2) calls (and device look-ups),
// through StorageManager with a fake kernel, file tree and device resolver.
import { describe, expect, it } from 'vitest';
import { Code, RpcError } from '../../agent/src/rpc/status';
import { StorageManager } from '../../agent/src/storage/manager';
import { parseStorage } from '../../agent/src/storage/spec';
import { MS } from '../../agent/src/sys/mount';
import { fakes, ROOT, type Fakes } from './storage-helpers';

const MP = `${ROOT}/sandbox/storage/vol`;

function spec(o: Record<string, unknown>) {
  return parseStorage({ mount_point: MP, ...o });
}

async function rejects(p: Promise<unknown>): Promise<RpcError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(RpcError);
    return e as RpcError;
  }
  throw new Error('expected a rejection');
}

function setup(): Fakes & { m: StorageManager } {
  const f = fakes();
  return { ...f, m: new StorageManager({ root: `${ROOT}/`, deps: f.deps }) };
}

describe('virtio-fs', () => {
  it('mounts the tag as virtiofs with the options given', async () => {
    const { m, sys, fs } = setup();
    expect(await m.add([spec({ driver: 'virtio-fs', source: 'kataShared', fstype: 'virtiofs', options: ['nodev', 'dax'] })], 'sb')).toEqual([MP]);
    expect(sys.mounts).toEqual([{ source: 'kataShared', target: MP, fstype: 'virtiofs', flags: MS.NODEV, data: 'dax' }]);
    expect(fs.node(MP)?.kind).toBe('dir');
    expect(m.list()[0]).toMatchObject({ state: 'mounted', fstype: 'virtiofs', refs: 1, owners: { sb: 1 } });
  });

  it('adopts the same share already mounted there and never unmounts it', async () => {
    const { m, sys, fs } = setup();
    fs.mkdirp(MP);
    sys.mount('kataShared', MP, 'virtiofs', 0, '');
    sys.mounts.length = 0;
    await m.add([spec({ driver: 'virtio-fs', source: 'kataShared' })], 'sb');
    expect(sys.mounts).toEqual([]);
    expect(m.list()[0]!.state).toBe('premounted');
    await m.release('sb');
    await m.closeAll();
    expect(sys.umounts).toEqual([]);
    expect(sys.mounted(MP)).toEqual([MP]);
  });

  it('refuses when a different source is mounted there', async () => {
    const { m, sys, fs } = setup();
    fs.mkdirp(MP);
    sys.mount('otherTag', MP, 'virtiofs', 0, '');
    const e = await rejects(m.add([spec({ driver: 'virtio-fs', source: 'kataShared' })], 'sb'));
    expect(e.code).toBe(Code.FAILED_PRECONDITION);
    expect(e.message).toContain('otherTag');
    expect(m.list()).toEqual([]);
  });

  it('refuses another fstype and an empty tag', async () => {
    const { m } = setup();
    expect((await rejects(m.add([spec({ driver: 'virtio-fs', source: 't', fstype: 'nfs' })], 'sb'))).code).toBe(Code.INVALID_ARGUMENT);
    expect((await rejects(m.add([spec({ driver: 'virtio-fs' })], 'sb'))).message).toContain('tag');
  });
});

describe('9p', () => {
  it('adds trans=virtio,version=9p2000.L and passes the rest through', async () => {
    const { m, sys } = setup();
    await m.add([spec({ driver: '9p', source: 'kataShared', fstype: '9p', options: ['nodev', 'msize=8192', 'cache=mmap'] })], 'sb');
    expect(sys.mounts).toEqual([{ source: 'kataShared', target: MP, fstype: '9p', flags: MS.NODEV, data: 'trans=virtio,version=9p2000.L,msize=8192,cache=mmap' }]);
  });

  it("keeps the host's own trans= and version=", async () => {
    const { m, sys } = setup();
    await m.add([spec({ driver: '9p', source: 'tag', options: ['trans=fd', 'version=9p2000.u'] })], 'sb');
    expect(sys.mounts[0]!.data).toBe('trans=fd,version=9p2000.u');
  });
});

describe('block drivers', () => {
  it('blk: resolves the PCI path through devices, passing the signal, and mounts the node', async () => {
    const { m, sys, devices } = setup();
    devices.map.set('pci 02/01', '/dev/vdb');
    const ac = new AbortController();
    await m.add([spec({ driver: 'blk', source: '02/01', fstype: 'ext4', options: ['ro', 'noatime', 'errors=remount-ro'] })], 'c1', ac.signal);
    expect(devices.calls).toEqual(['pci 02/01']);
    expect(devices.signals[0]).toBe(ac.signal);
    expect(sys.mounts).toEqual([{ source: '/dev/vdb', target: MP, fstype: 'ext4', flags: MS.RDONLY | MS.NOATIME, data: 'errors=remount-ro' }]);
    expect(m.list()[0]).toMatchObject({ device: '/dev/vdb', source: '02/01' });
  });

  it('blk: a /dev source must be a block device and is used as is', async () => {
    const { m, sys, devices, fs } = setup();
    fs.file('/dev/vda', '', 0o660, 'block');
    fs.file('/dev/null', '', 0o666, 'char');
    await m.add([spec({ driver: 'blk', source: '/dev/vda', fstype: 'xfs' })], 'c1');
    expect(devices.calls).toEqual([]);
    expect(sys.mounts[0]).toMatchObject({ source: '/dev/vda', fstype: 'xfs' });
    const e = await rejects(m.add([spec({ driver: 'blk', source: '/dev/null', fstype: 'xfs', mount_point: `${ROOT}/b` })], 'c1'));
    expect(e.code).toBe(Code.INVALID_ARGUMENT);
    expect(e.message).toContain('not a block device');
  });

  it('blk: a malformed PCI path or missing fstype fails before any device wait', async () => {
    const { m, devices } = setup();
    expect((await rejects(m.add([spec({ driver: 'blk', source: '../../x', fstype: 'ext4' })], 'c'))).message).toContain('PCI path');
    expect((await rejects(m.add([spec({ driver: 'blk', source: '02/01' })], 'c'))).message).toContain('fstype is empty');
    expect(devices.calls).toEqual([]);
  });

  it('mmioblk, scsi and nvdimm call their device look-ups and mount what they return', async () => {
    const { m, sys, devices } = setup();
    devices.map.set('mmio /dev/vdc', '/dev/vdc');
    devices.map.set('scsi 0:3', '/dev/sdb');
    devices.map.set('pmem /dev/pmem1', '/dev/pmem1');
    await m.add([
      spec({ driver: 'mmioblk', source: '/dev/vdc', fstype: 'ext4', mount_point: `${ROOT}/m1` }),
      spec({ driver: 'scsi', source: '0:3', fstype: 'xfs', options: ['nouuid'], mount_point: `${ROOT}/m2` }),
      spec({ driver: 'nvdimm', source: '/dev/pmem1', fstype: 'ext4', options: ['dax', 'ro'], mount_point: `${ROOT}/m3` }),
    ], 'c1');
    expect(devices.calls).toEqual(['mmio /dev/vdc', 'scsi 0:3', 'pmem /dev/pmem1']);
    expect(sys.mounts).toEqual([
      { source: '/dev/vdc', target: `${ROOT}/m1`, fstype: 'ext4', flags: 0, data: '' },
      { source: '/dev/sdb', target: `${ROOT}/m2`, fstype: 'xfs', flags: 0, data: 'nouuid' },
      { source: '/dev/pmem1', target: `${ROOT}/m3`, fstype: 'ext4', flags: MS.RDONLY, data: 'dax' },
    ]);
  });

  it('validates the sources of mmioblk, scsi and nvdimm', async () => {
    const { m, devices } = setup();
    for (const [driver, source] of [['mmioblk', 'vdc'], ['mmioblk', '/dev/../etc/x'], ['scsi', '0'], ['scsi', 'a:b'], ['nvdimm', '/dev/vda']]) {
      const e = await rejects(m.add([spec({ driver, source, fstype: 'ext4' })], 'c'));
      expect(e.code, `${driver} ${source}`).toBe(Code.INVALID_ARGUMENT);
    }
    expect(devices.calls).toEqual([]);
  });

  it('a device that does not appear fails with its code, naming the mount point, and leaves nothing', async () => {
    const { m, devices, fs, sys } = setup();
    devices.behaviour = new RpcError(Code.DEADLINE_EXCEEDED, 'timed out after 3000 ms waiting for 0000:00:02.0/01');
    const e = await rejects(m.add([spec({ driver: 'blk', source: '02/01', fstype: 'ext4' })], 'c1'));
    expect(e.code).toBe(Code.DEADLINE_EXCEEDED);
    expect(e.message).toContain(MP);
    expect(e.message).toContain('timed out');
    expect(fs.node(MP)).toBeUndefined();
    expect(sys.mounts).toEqual([]);
  });

  it('an abort ends a device wait that would hang', async () => {
    const { m, devices, sys } = setup();
    devices.behaviour = 'hang';
    const ac = new AbortController();
    const p = m.add([spec({ driver: 'scsi', source: '0:1', fstype: 'ext4' })], 'c1', ac.signal);
    await Promise.resolve();
    ac.abort(new RpcError(Code.DEADLINE_EXCEEDED, 'deadline'));
    const e = await rejects(p);
    expect(e.code).toBe(Code.DEADLINE_EXCEEDED);
    expect(sys.mounts).toEqual([]);
    // the manager is usable afterwards (its lock was released)
    devices.behaviour = 'resolve';
    await m.add([spec({ driver: 'scsi', source: '0:1', fstype: 'ext4' })], 'c1');
    expect(sys.mounts).toHaveLength(1);
  });

  it('a failed mount names source, mount point, fstype and errno, and maps the errno', async () => {
    const { m, sys, fs } = setup();
    sys.failMount = () => 'ENOENT';
    const e = await rejects(m.add([spec({ driver: 'mmioblk', source: '/dev/vdd', fstype: 'ext4', options: ['nodev', 'data=ordered'] })], 'c'));
    expect(e.code).toBe(Code.NOT_FOUND);
    for (const s of ['/dev/fake-_dev_vdd', MP, 'ext4', 'ENOENT', 'data=ordered']) expect(e.message).toContain(s);
    expect(fs.node(MP)).toBeUndefined();
    sys.failMount = () => 'ENODEV';
    expect((await rejects(m.add([spec({ driver: 'mmioblk', source: '/dev/vdd', fstype: 'nosuchfs' })], 'c'))).code).toBe(Code.INTERNAL);
  });
});

describe('ephemeral', () => {
  it('tmpfs: flags and size/mode data; fsgid chowns the root and sets setgid instead of going to the kernel', async () => {
    const { m, sys, fs } = setup();
    await m.add([spec({ driver: 'ephemeral', source: 'tmpfs', fstype: 'tmpfs', options: ['nosuid', 'nodev', 'size=64M', 'mode=0777', 'fsgid=1000'] })], 'c1');
    expect(sys.mounts).toEqual([{ source: 'tmpfs', target: MP, fstype: 'tmpfs', flags: MS.NOSUID | MS.NODEV, data: 'size=64M,mode=0777' }]);
    expect(fs.calls.filter((c) => c.startsWith('lchown') || c.startsWith('chmod'))).toEqual([`lchown ${MP} -1 1000`, `chmod ${MP} 2755`]);
  });

  it('defaults fstype and source to tmpfs and refuses other file systems or a bad fsgid', async () => {
    const { m, sys } = setup();
    await m.add([spec({ driver: 'ephemeral' })], 'c1');
    expect(sys.mounts[0]).toMatchObject({ source: 'tmpfs', fstype: 'tmpfs' });
    expect((await rejects(m.add([spec({ driver: 'ephemeral', fstype: 'ext4', mount_point: `${ROOT}/e2` })], 'c1'))).code).toBe(Code.INVALID_ARGUMENT);
    expect((await rejects(m.add([spec({ driver: 'ephemeral', options: ['fsgid=abc'], mount_point: `${ROOT}/e3` })], 'c1'))).message).toContain('fsgid=abc');
    expect((await rejects(m.add([spec({ driver: 'ephemeral', options: ['remount'], mount_point: `${ROOT}/e4` })], 'c1'))).message).toContain('UpdateEphemeralMounts');
  });

  describe('hugetlbfs', () => {
    const pool = '/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages';
    function withPools(f: Fakes, n2m = '0'): void {
      f.fs.file(pool, `${n2m}\n`);
      f.fs.file('/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages', '0\n');
    }

    it('raises the pool to cover size before mounting, cumulatively', async () => {
      const f = setup();
      withPools(f);
      const order: string[] = [];
      f.fs.onWrite = (p, d) => order.push(`write ${d}`);
      const origMount = f.deps.mount;
      f.deps.mount = (...a) => {
        order.push('mount');
        origMount(...a);
      };
      await f.m.add([spec({ driver: 'ephemeral', source: 'nodev', fstype: 'hugetlbfs', options: ['pagesize=2M', 'size=5M'] })], 'c1');
      expect(order).toEqual(['write 3', 'mount']);
      expect(f.sys.mounts[0]).toEqual({ source: 'nodev', target: MP, fstype: 'hugetlbfs', flags: 0, data: 'pagesize=2M,size=5M' });
      // a second one asks for 3 + 2 pages; a pool already big enough is left alone
      await f.m.add([spec({ driver: 'ephemeral', fstype: 'hugetlbfs', options: ['pagesize=2097152,size=4194304'], mount_point: `${ROOT}/h2` })], 'c2');
      expect(f.fs.readFile(pool)).toBe('5');
      f.fs.writeFile(pool, '100');
      f.fs.calls.length = 0;
      await f.m.add([spec({ driver: 'ephemeral', fstype: 'hugetlbfs', options: ['pagesize=2M', 'size=2M'], mount_point: `${ROOT}/h3` })], 'c3');
      expect(f.fs.calls.filter((c) => c.startsWith('writeFile'))).toEqual([]);
      // release does not shrink the pool (as Kata)
      await f.m.release('c1');
      expect(f.fs.readFile(pool)).toBe('100');
    });

    it('fails with RESOURCE_EXHAUSTED when the kernel grants fewer pages, restoring the pool, mounting nothing', async () => {
      const f = setup();
      withPools(f, '1');
      f.fs.onWrite = (p, d) => {
        if (d === '4') f.fs.nodes.get(p)!.content = '2\n';
      };
      const e = await rejects(f.m.add([spec({ driver: 'ephemeral', fstype: 'hugetlbfs', options: ['pagesize=2M', 'size=8M'] })], 'c1'));
      expect(e.code).toBe(Code.RESOURCE_EXHAUSTED);
      expect(e.message).toMatch(/only 2 of 4 huge pages of 2048 kB/);
      expect(f.fs.readFile(pool)).toBe('1');
      expect(f.sys.mounts).toEqual([]);
      expect(f.fs.node(MP)).toBeUndefined();
    });

    it('restores the pool when the mount itself fails', async () => {
      const f = setup();
      withPools(f);
      f.sys.failMount = () => 'EINVAL';
      await rejects(f.m.add([spec({ driver: 'ephemeral', fstype: 'hugetlbfs', options: ['pagesize=1G', 'size=1G'] })], 'c1'));
      expect(f.fs.calls.filter((c) => c.startsWith('writeFile'))).toEqual([
        'writeFile /sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages 1',
        'writeFile /sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages 0',
      ]);
    });

    it('refuses missing or unsupported sizes', async () => {
      const f = setup();
      withPools(f);
      for (const options of [['pagesize=2M'], ['size=2M'], ['pagesize=4M', 'size=8M'], ['pagesize=2M', 'size=lots'], ['pagesize=100', 'size=1M']]) {
        const e = await rejects(f.m.add([spec({ driver: 'ephemeral', fstype: 'hugetlbfs', options })], 'c1'));
        expect(e.code, options.join(',')).toBe(Code.INVALID_ARGUMENT);
      }
      expect(f.sys.mounts).toEqual([]);
    });
  });
});

describe('local', () => {
  it('makes a directory with the mode (plus setgid with fsgid) and the group, and mounts nothing', async () => {
    const { m, sys, fs } = setup();
    expect(await m.add([spec({ driver: 'local', options: ['mode=0777', 'fsgid=2000'] })], 'c1')).toEqual([MP]);
    expect(sys.mounts).toEqual([]);
    expect(fs.node(MP)).toMatchObject({ kind: 'dir', mode: 0o2777, gid: 2000 });
    expect(m.list()[0]!.state).toBe('directory');
    // mode alone: no setgid, no chown
    await m.add([spec({ driver: 'local', options: ['mode=0750'], mount_point: `${ROOT}/l2` })], 'c1');
    expect(fs.node(`${ROOT}/l2`)).toMatchObject({ mode: 0o750, gid: 0 });
    expect((await rejects(m.add([spec({ driver: 'local', options: ['mode=99'], mount_point: `${ROOT}/l3` })], 'c1'))).code).toBe(Code.INVALID_ARGUMENT);
  });

  it('release removes the directory only when it is empty', async () => {
    const { m, fs } = setup();
    await m.add([spec({ driver: 'local', mount_point: `${ROOT}/l/a` }), spec({ driver: 'local', mount_point: `${ROOT}/l/b` })], 'c1');
    fs.file(`${ROOT}/l/b/data`, 'x');
    await m.release('c1');
    expect(fs.node(`${ROOT}/l/a`)).toBeUndefined();
    expect(fs.node(`${ROOT}/l/b/data`)).toBeDefined();
  });
});

describe('overlayfs', () => {
  it('creates confined upper/work directories and mounts overlay with their real paths', async () => {
    const { m, sys, fs } = setup();
    fs.mkdirp('/lower1').mkdirp('/lower2');
    await m.add([spec({ driver: 'overlayfs', source: 'overlay', fstype: 'overlay', options: ['lowerdir=/lower1:/lower2', `upperdir=${ROOT}/ov/upper`, `workdir=${ROOT}/ov/work`, 'index=off'] })], 'c1');
    expect(fs.node(`${ROOT}/ov/upper`)?.kind).toBe('dir');
    expect(fs.node(`${ROOT}/ov/work`)?.kind).toBe('dir');
    expect(sys.mounts).toEqual([{ source: 'overlay', target: MP, fstype: 'overlay', flags: 0, data: `lowerdir=/lower1:/lower2,index=off,upperdir=${ROOT}/ov/upper,workdir=${ROOT}/ov/work` }]);
  });

  it("Kata's overlay-rw option puts upper/work under <root>/<container id>/", async () => {
    const { m, sys, fs } = setup();
    await m.add([spec({ driver: 'overlayfs', options: ['lowerdir=/l', 'io.katacontainers.fs-opt.overlay-rw'] })], 'cid7');
    expect(sys.mounts[0]!.data).toBe(`lowerdir=/l,upperdir=${ROOT}/cid7/upper,workdir=${ROOT}/cid7/work`);
    expect(fs.node(`${ROOT}/cid7/upper`)?.kind).toBe('dir');
  });

  it('refuses a missing lowerdir, half an upper layer, or one outside the root; created directories are removed on failure', async () => {
    const { m, fs, sys } = setup();
    const cases: [string[], string][] = [
      [['upperdir=/x'], 'lowerdir'],
      [['lowerdir=/l', `upperdir=${ROOT}/u`], 'together'],
      [['lowerdir=/l', 'upperdir=/etc/u', `workdir=${ROOT}/w`], 'upperdir'],
    ];
    for (const [options, msg] of cases) {
      const e = await rejects(m.add([spec({ driver: 'overlayfs', options })], 'c1'));
      expect(e.code).toBe(Code.INVALID_ARGUMENT);
      expect(e.message).toContain(msg);
    }
    sys.failMount = () => 'EINVAL';
    await rejects(m.add([spec({ driver: 'overlayfs', options: ['lowerdir=/l', `upperdir=${ROOT}/o2/upper`, `workdir=${ROOT}/o2/work`] })], 'c1'));
    expect(fs.node(`${ROOT}/o2`)).toBeUndefined();
    expect(fs.node(MP)).toBeUndefined();
  });
});

describe('bind', () => {
  it('bind-mounts a directory, then remounts read-only with the per-mount flags', async () => {
    const { m, sys, fs } = setup();
    fs.mkdirp('/srv/data');
    await m.add([spec({ driver: 'bind', source: '/srv/data', options: ['ro', 'nosuid', 'rshared'] })], 'c1');
    expect(sys.mounts).toEqual([
      { source: '/srv/data', target: MP, fstype: 'bind', flags: MS.BIND, data: '' },
      { source: null, target: MP, fstype: null, flags: MS.REMOUNT | MS.BIND | MS.RDONLY | MS.NOSUID, data: null },
      { source: null, target: MP, fstype: null, flags: MS.SHARED | MS.REC, data: null },
    ]);
  });

  it('rbind is recursive; without flags there is no remount; a file source gets a file mount point', async () => {
    const { m, sys, fs } = setup();
    fs.mkdirp('/srv/tree').file('/srv/hosts', 'x');
    await m.add([
      spec({ driver: 'bind', source: '/srv/tree', options: ['rbind'], mount_point: `${ROOT}/t` }),
      spec({ driver: 'bind', source: '/srv/hosts', mount_point: `${ROOT}/etc/hosts` }),
    ], 'c1');
    expect(sys.mounts).toEqual([
      { source: '/srv/tree', target: `${ROOT}/t`, fstype: 'bind', flags: MS.BIND | MS.REC, data: '' },
      { source: '/srv/hosts', target: `${ROOT}/etc/hosts`, fstype: 'bind', flags: MS.BIND, data: '' },
    ]);
    expect(fs.node(`${ROOT}/etc/hosts`)?.kind).toBe('file');
    await m.release('c1');
    expect(fs.node(`${ROOT}/etc`)).toBeUndefined();
  });

  it('refuses a missing or relative source and file-system options', async () => {
    const { m, fs } = setup();
    fs.mkdirp('/srv/d');
    expect((await rejects(m.add([spec({ driver: 'bind', source: '/nope' })], 'c'))).code).toBe(Code.NOT_FOUND);
    expect((await rejects(m.add([spec({ driver: 'bind', source: 'srv/d' })], 'c'))).code).toBe(Code.INVALID_ARGUMENT);
    expect((await rejects(m.add([spec({ driver: 'bind', source: '/srv/d', options: ['size=1M'] })], 'c'))).message).toContain('size=1M');
  });

  it('a failed read-only remount undoes the bind mount', async () => {
    const { m, sys, fs } = setup();
    fs.mkdirp('/srv/d');
    sys.failMount = (c) => (c.flags & MS.REMOUNT ? 'EPERM' : undefined);
    const e = await rejects(m.add([spec({ driver: 'bind', source: '/srv/d', options: ['ro'] })], 'c'));
    expect(e.code).toBe(Code.PERMISSION_DENIED);
    expect(sys.mounted()).toEqual([]);
    expect(fs.node(MP)).toBeUndefined();
  });
});

describe('common', () => {
  it('refuses an unknown driver (bypassing parseStorage) and the loop option', async () => {
    const { m } = setup();
    const bogus = { ...spec({ driver: 'local' }), driver: 'nfs' };
    expect((await rejects(m.add([bogus], 'c'))).code).toBe(Code.INVALID_ARGUMENT);
    expect((await rejects(m.add([spec({ driver: 'mmioblk', source: '/dev/vdb', fstype: 'ext4', options: ['loop'] })], 'c'))).message).toContain('loop');
  });

  it('refuses data beyond one page', async () => {
    const { m } = setup();
    const e = await rejects(m.add([spec({ driver: 'virtio-fs', source: 't', options: [`x=${'a'.repeat(5000)}`] })], 'c'));
    expect(e.code).toBe(Code.INVALID_ARGUMENT);
    expect(e.message).toContain('4095');
  });

  it('refuses mount points outside the root before doing anything', async () => {
    const { m, devices, sys } = setup();
    for (const mount_point of ['/etc', `${ROOT}/../x`, `${ROOT}`, 'relative']) {
      const e = await rejects(m.add([spec({ driver: 'blk', source: '02/01', fstype: 'ext4', mount_point })], 'c'));
      expect(e.code).toBe(Code.INVALID_ARGUMENT);
      expect(e.message).toContain(JSON.stringify(mount_point));
    }
    expect(devices.calls).toEqual([]);
    expect(sys.mounts).toEqual([]);
  });

  it('refuses a mount point a container turned into a symlink out of the root', async () => {
    const { m, fs, sys } = setup();
    fs.mkdirp('/etc');
    fs.symlink('/etc', `${ROOT}/sandbox`);
    const e = await rejects(m.add([spec({ driver: 'ephemeral' })], 'c'));
    expect(e.code).toBe(Code.INVALID_ARGUMENT);
    expect(e.message).toContain(`${ROOT}/sandbox`);
    expect(sys.mounts).toEqual([]);
    expect(fs.readdir('/etc')).toEqual([]);
  });

  it('refuses to stack on a mount the agent did not make', async () => {
    const { m, sys, fs } = setup();
    fs.mkdirp(MP);
    sys.mount('/dev/vdz', MP, 'ext4', 0, '');
    const e = await rejects(m.add([spec({ driver: 'ephemeral' })], 'c'));
    expect(e.code).toBe(Code.FAILED_PRECONDITION);
    expect(e.message).toContain('/dev/vdz');
  });
});
