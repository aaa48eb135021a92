import { describe, expect, it } from 'vitest';
import {
  defaultRootfsPath,
  grpcSpecToOci,
  ociSpecToJson,
  rewriteForGuest,
  validateSpec,
  type GuestContext,
  type OciHook,
  type OciNamespace,
  type OciSpec,
} from '../../agent/src/runtime/spec';
import { CID, POD_UID, SID, grpcFixture, ociFixture } from './runtime-spec-helpers';

const SANDBOX_NS = '/run/kata-containers/sandbox/ns';
const CGROUP = `/kubepods/besteffort/pod${POD_UID}/${CID}`;

function ctx(over: Partial<GuestContext> = {}): GuestContext {
  return {
    containerId: CID,
    sandboxId: SID,
    sandboxPidns: false,
    sharedNamespaces: { ipc: `${SANDBOX_NS}/ipc`, uts: `${SANDBOX_NS}/uts` },
    cgroupsPath: CGROUP,
    ...over,
  };
}

/** The busybox fixture converted as CreateContainer would: decoded, validated, converted. */
function busybox(): OciSpec {
  const g = grpcFixture('kata-busybox.grpc.json');
  validateSpec(g);
  return grpcSpecToOci(g);
}

function withNamespaces(namespaces: OciNamespace[], extra: Partial<OciSpec> = {}): OciSpec {
  return {
    ociVersion: '1.1.0',
    process: { user: { uid: 0, gid: 0 }, cwd: '/', args: ['sh'] },
    root: { path: '/r', readonly: false },
    ...extra,
    linux: { namespaces, ...(extra.linux ?? {}) },
  };
}

const hook = (path: string): OciHook => ({ path, args: [path] });

describe('rewriteForGuest on the busybox pod container', () => {
  it('produces the spec crun gets in the guest', () => {
    const input = busybox();
    const { spec, warnings, netSysctls } = rewriteForGuest(input, ctx());
    expect(spec.root).toEqual({ path: defaultRootfsPath(CID), readonly: false });
    expect(spec.linux!.namespaces).toEqual([
      { type: 'ipc', path: `${SANDBOX_NS}/ipc` },
      { type: 'uts', path: `${SANDBOX_NS}/uts` },
      { type: 'mount' },
      { type: 'cgroup' },
      { type: 'pid' },
    ]);
    expect(spec.hostname).toBeUndefined(); // joined the sandbox's uts namespace
    expect(spec.linux!.cgroupsPath).toBe(CGROUP);
    expect(spec.linux!.sysctl).toEqual({ 'kernel.shm_rmid_forced': '1' });
    expect(netSysctls).toEqual({ 'net.ipv4.ping_group_range': '0 2147483647' });
    expect(spec.process!.apparmorProfile).toBeUndefined();
    expect(warnings).toEqual([
      'dropped the network namespace (host path "/var/run/netns/cni-5e2c1a7b-94d0-3f68-b1e2-7a0c9d3f5b48"): ' +
        "the container shares the guest's network namespace",
      'dropped process.apparmorProfile "cri-containerd.apparmor.d": no AppArmor in the guest',
    ]);
    // Everything else is passed through untouched.
    const expected = ociFixture('kata-busybox.oci.json');
    for (const k of ['ociVersion', 'mounts', 'annotations'] as const) expect(spec[k]).toEqual(expected[k]);
    const { apparmorProfile: _a, ...process } = expected.process!;
    expect(spec.process).toEqual(process);
    for (const k of ['resources', 'seccomp', 'maskedPaths', 'readonlyPaths'] as const) {
      expect(spec.linux![k]).toEqual(expected.linux![k]);
    }
    expect(spec.hooks).toBeUndefined();
    // The input is not modified.
    expect(input).toEqual(busybox());
    expect(JSON.parse(ociSpecToJson(spec))).toEqual(spec);
  });
});

describe('root', () => {
  it.each<[string, Partial<GuestContext>, OciSpec['root'], string, string[]]>([
    ['ctx.rootfsPath wins', { rootfsPath: '/run/kata-containers/x/rootfs' }, { path: '/elsewhere' }, '/run/kata-containers/x/rootfs', []],
    ['a relative ctx.rootfsPath is under bundleDir', { rootfsPath: 'rootfs', bundleDir: `/run/kata-containers/${CID}` }, undefined, `/run/kata-containers/${CID}/rootfs`, []],
    ["the host's absolute guest path is kept", {}, { path: '/run/kata-containers/shared/containers/abc/rootfs/' }, '/run/kata-containers/shared/containers/abc/rootfs', []],
    ['no root: the default', {}, undefined, defaultRootfsPath(CID), []],
    ['an empty root path: the default', {}, { path: '' }, defaultRootfsPath(CID), []],
    [
      "a path relative to the host's bundle: the default, with a warning",
      {},
      { path: 'rootfs' },
      defaultRootfsPath(CID),
      [`root.path "rootfs" is relative to the host's bundle; using ${defaultRootfsPath(CID)}`],
    ],
  ])('%s', (_n, over, root, expected, warns) => {
    const s = withNamespaces([{ type: 'mount' }]);
    if (root) s.root = root;
    else delete s.root;
    const r = rewriteForGuest(s, ctx(over));
    expect(r.spec.root!.path).toBe(expected);
    expect(r.warnings).toEqual(warns);
  });

  it('keeps readonly', () => {
    const s = withNamespaces([{ type: 'mount' }]);
    s.root = { path: '/x', readonly: true };
    expect(rewriteForGuest(s, ctx({ rootfsPath: '/y' })).spec.root).toEqual({ path: '/y', readonly: true });
  });

  it('uses /run/kata-containers/shared/containers/<cid>/rootfs as Kata hosts do', () => {
    expect(defaultRootfsPath('abc')).toBe('/run/kata-containers/shared/containers/abc/rootfs');
  });
});

describe('namespaces', () => {
  const types = (s: OciSpec) => s.linux!.namespaces!.map((n) => (n.path ? `${n.type}=${n.path}` : n.type));

  it('drops the network namespace so the container stays in the guest network', () => {
    const r = rewriteForGuest(withNamespaces([{ type: 'network' }, { type: 'mount' }]), ctx());
    expect(types(r.spec)).toEqual(['mount', 'pid']);
    expect(r.warnings).toEqual(["dropped the network namespace: the container shares the guest's network namespace"]);
  });

  it('with dropNetworkNamespacePath false keeps a new network namespace (no host path) and its sysctls', () => {
    const s = withNamespaces([{ type: 'network', path: '/var/run/netns/x' }, { type: 'mount' }], {
      linux: { sysctl: { 'net.core.somaxconn': '1024' } },
    });
    const r = rewriteForGuest(s, ctx({ dropNetworkNamespacePath: false }));
    expect(types(r.spec)).toEqual(['network', 'mount', 'pid']);
    expect(r.spec.linux!.sysctl).toEqual({ 'net.core.somaxconn': '1024' });
    expect(r.netSysctls).toEqual({});
    expect(r.warnings).toEqual(['ignored the host path "/var/run/netns/x" of the network namespace']);
  });

  it('moves net.* sysctls (dotted or slashed) out of the spec, keeps the others', () => {
    const s = withNamespaces([{ type: 'mount' }, { type: 'ipc' }], {
      linux: {
        sysctl: {
          'net.ipv4.ip_unprivileged_port_start': '0',
          'net/ipv4/conf/eth0.100/forwarding': '1',
          'kernel.msgmax': '8192',
          'network.not.net': 'x',
        },
      },
    });
    const r = rewriteForGuest(s, ctx());
    expect(r.netSysctls).toEqual({ 'net.ipv4.ip_unprivileged_port_start': '0', 'net/ipv4/conf/eth0.100/forwarding': '1' });
    expect(r.spec.linux!.sysctl).toEqual({ 'kernel.msgmax': '8192', 'network.not.net': 'x' });
  });

  it('removes an emptied sysctl map', () => {
    const s = withNamespaces([{ type: 'mount' }], { linux: { sysctl: { 'net.core.somaxconn': '1' } } });
    expect(rewriteForGuest(s, ctx()).spec.linux!.sysctl).toBeUndefined();
  });

  it('joins the sandbox ipc and uts namespaces and drops the hostname (set by CreateSandbox)', () => {
    const s = withNamespaces([{ type: 'ipc', path: '/proc/9/ns/ipc' }, { type: 'uts', path: '/proc/9/ns/uts' }, { type: 'mount' }], {
      hostname: 'pod',
    });
    const r = rewriteForGuest(s, ctx());
    expect(types(r.spec)).toEqual([`ipc=${SANDBOX_NS}/ipc`, `uts=${SANDBOX_NS}/uts`, 'mount', 'pid']);
    expect(r.spec.hostname).toBeUndefined();
    expect(r.warnings).toEqual([]);
  });

  it('without shared namespaces creates new ipc/uts ones, ignoring host paths, and keeps the hostname', () => {
    const s = withNamespaces([{ type: 'ipc', path: '/proc/9/ns/ipc' }, { type: 'uts' }, { type: 'mount' }], { hostname: 'pod' });
    const r = rewriteForGuest(s, ctx({ sharedNamespaces: {} }));
    expect(types(r.spec)).toEqual(['ipc', 'uts', 'mount', 'pid']);
    expect(r.spec.hostname).toBe('pod');
    expect(r.warnings).toEqual(['ignored the host path "/proc/9/ns/ipc" of the ipc namespace']);
  });

  it('joins only the shared namespaces the spec asks for (as Kata)', () => {
    const r = rewriteForGuest(withNamespaces([{ type: 'mount' }], { hostname: 'h' }), ctx());
    expect(types(r.spec)).toEqual(['mount', 'pid']);
    expect(r.spec.hostname).toBe('h');
  });

  it('keeps the hostname when only ipc is joined', () => {
    const s = withNamespaces([{ type: 'ipc' }, { type: 'uts' }, { type: 'mount' }], { hostname: 'h' });
    const r = rewriteForGuest(s, ctx({ sharedNamespaces: { ipc: '/ns/ipc' } }));
    expect(types(r.spec)).toEqual(['ipc=/ns/ipc', 'uts', 'mount', 'pid']);
    expect(r.spec.hostname).toBe('h');
  });

  it.each<[string, Partial<GuestContext>, string]>([
    ['sandboxPidns with a sandbox pid namespace: joined', { sandboxPidns: true, sharedNamespaces: { pid: '/proc/77/ns/pid' } }, 'pid=/proc/77/ns/pid'],
    ['sandboxPidns before the sandbox has one (first container): new', { sandboxPidns: true, sharedNamespaces: {} }, 'pid'],
    ['no sandboxPidns: new even if the sandbox has one', { sandboxPidns: false, sharedNamespaces: { pid: '/proc/77/ns/pid' } }, 'pid'],
  ])('pid: %s', (_n, over, pid) => {
    const s = withNamespaces([{ type: 'pid', path: '/proc/1/ns/pid' }, { type: 'mount' }, { type: 'pid' }]);
    const r = rewriteForGuest(s, ctx(over));
    expect(types(r.spec)).toEqual(['mount', pid]);
    expect(r.warnings).toEqual([]);
  });

  it('adds a pid namespace when the spec has none', () => {
    expect(types(rewriteForGuest(withNamespaces([{ type: 'mount' }]), ctx()).spec)).toEqual(['mount', 'pid']);
  });

  it('drops the time namespace and clears host paths of mount, user and cgroup', () => {
    const s = withNamespaces([
      { type: 'time', path: '/proc/5/ns/time' },
      { type: 'mount', path: '/proc/5/ns/mnt' },
      { type: 'user', path: '/proc/5/ns/user' },
      { type: 'cgroup' },
    ]);
    const r = rewriteForGuest(s, ctx());
    expect(types(r.spec)).toEqual(['mount', 'user', 'cgroup', 'pid']);
    expect(r.warnings).toEqual([
      'dropped the time namespace (host path "/proc/5/ns/time")',
      'ignored the host path "/proc/5/ns/mnt" of the mount namespace',
      'ignored the host path "/proc/5/ns/user" of the user namespace',
    ]);
  });

  it('adds a mount namespace when the spec has none', () => {
    const r = rewriteForGuest(withNamespaces([{ type: 'ipc' }]), ctx({ sharedNamespaces: {} }));
    expect(types(r.spec)).toEqual(['ipc', 'mount', 'pid']);
    expect(r.warnings).toEqual(['added a mount namespace: the spec has none']);
  });

  it('treats the aliases net and mnt like network and mount', () => {
    const r = rewriteForGuest(withNamespaces([{ type: 'net' }, { type: 'mnt' }]), ctx());
    expect(types(r.spec)).toEqual(['mount', 'pid']);
  });

  it('creates linux when the spec has none', () => {
    const s: OciSpec = { ociVersion: '1.0.2', process: { user: { uid: 0, gid: 0 }, cwd: '/', args: ['x'] } };
    const r = rewriteForGuest(s, ctx());
    expect(r.spec.linux).toEqual({ namespaces: [{ type: 'mount' }, { type: 'pid' }], cgroupsPath: CGROUP });
  });
});

describe('cgroups, hooks, LSM labels', () => {
  it("replaces the host's cgroupsPath", () => {
    const s = withNamespaces([{ type: 'mount' }], { linux: { cgroupsPath: 'kubepods-besteffort.slice:cri-containerd:abc' } });
    expect(rewriteForGuest(s, ctx()).spec.linux!.cgroupsPath).toBe(CGROUP);
  });

  it('appends guest hooks after the spec hooks, per kind', () => {
    const s = withNamespaces([{ type: 'mount' }], {
      hooks: { prestart: [hook('/host/pre')], startContainer: [hook('/host/start')] },
    });
    const guestHooks = { prestart: [hook('/guest/pre')], poststart: [hook('/guest/post')], poststop: [hook('/guest/stop')] };
    const r = rewriteForGuest(s, ctx({ guestHooks }));
    expect(r.spec.hooks).toEqual({
      prestart: [hook('/host/pre'), hook('/guest/pre')],
      startContainer: [hook('/host/start')],
      poststart: [hook('/guest/post')],
      poststop: [hook('/guest/stop')],
    });
    // The context's hooks are copied, not shared.
    r.spec.hooks!.poststart![0]!.args!.push('x');
    expect(guestHooks.poststart[0]!.args).toEqual(['/guest/post']);
  });

  it('creates hooks for guest hooks only when there are some', () => {
    const s = withNamespaces([{ type: 'mount' }]);
    expect(rewriteForGuest(s, ctx({ guestHooks: { prestart: [hook('/g')] } })).spec.hooks).toEqual({ prestart: [hook('/g')] });
    expect(rewriteForGuest(s, ctx({ guestHooks: { prestart: [], poststop: [] } })).spec.hooks).toBeUndefined();
    expect(rewriteForGuest(s, ctx()).spec.hooks).toBeUndefined();
  });

  const labelled = () =>
    withNamespaces([{ type: 'mount' }], {
      process: {
        user: { uid: 0, gid: 0 },
        cwd: '/',
        args: ['sh'],
        apparmorProfile: 'cri-containerd.apparmor.d',
        selinuxLabel: 'system_u:system_r:container_t:s0:c1,c2',
      },
      linux: { mountLabel: 'system_u:object_r:container_file_t:s0:c1,c2' },
    });

  it('drops AppArmor and SELinux labels when the guest has no such LSM (the default)', () => {
    const r = rewriteForGuest(labelled(), ctx());
    expect(r.spec.process!.apparmorProfile).toBeUndefined();
    expect(r.spec.process!.selinuxLabel).toBeUndefined();
    expect(r.spec.linux!.mountLabel).toBeUndefined();
    expect(r.warnings).toEqual([
      'dropped process.apparmorProfile "cri-containerd.apparmor.d": no AppArmor in the guest',
      'dropped process.selinuxLabel "system_u:system_r:container_t:s0:c1,c2": no SELinux in the guest',
      'dropped linux.mountLabel "system_u:object_r:container_file_t:s0:c1,c2": no SELinux in the guest',
    ]);
  });

  it('keeps them when the guest enforces the LSM', () => {
    const r = rewriteForGuest(labelled(), ctx({ lsm: { apparmor: true, selinux: true } }));
    expect(r.spec.process!.apparmorProfile).toBe('cri-containerd.apparmor.d');
    expect(r.spec.process!.selinuxLabel).toBe('system_u:system_r:container_t:s0:c1,c2');
    expect(r.spec.linux!.mountLabel).toBe('system_u:object_r:container_file_t:s0:c1,c2');
    expect(r.warnings).toEqual([]);
  });
});

describe('pass-through', () => {
  it('keeps devices, device rules, resources, seccomp, user namespaces and id mappings of all-fields', () => {
    const input = ociFixture('all-fields.oci.json');
    const r = rewriteForGuest(input, ctx({ lsm: { apparmor: true, selinux: true } }));
    const { namespaces: _n, cgroupsPath: _c, sysctl: _s, ...rest } = r.spec.linux!;
    const { namespaces: _n2, cgroupsPath: _c2, sysctl: _s2, ...expected } = input.linux!;
    expect(rest).toEqual(expected);
    expect(r.spec.process).toEqual(input.process);
    expect(r.spec.mounts).toEqual(input.mounts);
    expect(r.spec.hooks).toEqual(input.hooks);
    expect(r.spec.annotations).toEqual(input.annotations);
    expect(r.spec.hostname).toBeUndefined(); // joined the sandbox's uts namespace
    expect(r.spec.linux!.namespaces).toEqual([{ type: 'user' }, { type: 'mount' }, { type: 'ipc', path: `${SANDBOX_NS}/ipc` }, { type: 'uts', path: `${SANDBOX_NS}/uts` }, { type: 'pid' }]);
  });

  it('keeps bigint rlimits through the clone', () => {
    const s = withNamespaces([{ type: 'mount' }]);
    s.process!.rlimits = [{ type: 'RLIMIT_MEMLOCK', hard: 18446744073709551615n, soft: 18446744073709551615n }];
    const r = rewriteForGuest(s, ctx());
    expect(r.spec.process!.rlimits).toEqual(s.process!.rlimits);
    expect(ociSpecToJson(r.spec)).toContain('"hard":18446744073709551615');
  });
});
