import type protobuf from 'protobufjs/light.js';
import { describe, expect, it } from 'vitest';
import { lookupType, methodInfo } from '../../agent/src/rpc/proto';
import { Code, RpcError } from '../../agent/src/rpc/status';
import {
  CAPABILITIES,
  RLIMIT_TYPES,
  SECCOMP_ACTIONS,
  SECCOMP_ARCHES,
  SECCOMP_FLAGS,
  SECCOMP_OPERATORS,
  grpcProcessToOci,
  grpcResourcesToOci,
  grpcSpecToOci,
  ociProcessToGrpc,
  ociResourcesToGrpc,
  ociSpecToGrpc,
  ociSpecToJson,
  specProblem,
  validateProcess,
  validateResources,
  validateSpec,
  type GrpcSpec,
  type OciSpec,
} from '../../agent/src/runtime/spec';
import { grpcFixture, ociFixture, readFixture, viaWire } from './runtime-spec-helpers';

const RLIM_INFINITY = 18446744073709551615n;

/** A minimal valid spec in wire shape, with `patch` applied to the fixture object first. */
function minimalWith(patch: (s: any) => void): GrpcSpec {
  const s = readFixture('minimal.grpc.json');
  patch(s);
  return viaWire(s);
}

function thrown(fn: () => unknown): RpcError {
  try {
    fn();
  } catch (e) {
    return e as RpcError;
  }
  throw new Error('did not throw');
}

describe('fixtures', () => {
  it('arrive in the decoder shape (null messages, empty lists, oneof only when set)', () => {
    const s = grpcFixture('kata-busybox.grpc.json');
    expect(s.Hooks).toBeNull();
    expect(s.Process!.ConsoleSize).toBeNull();
    expect(s.Linux!.IntelRdt).toBeNull();
    expect(s.Linux!.Devices).toEqual([]);
    expect(s.Linux!.Resources!.Pids).toBeNull();
    const calls = s.Linux!.Seccomp!.Syscalls!;
    expect('errnoret' in calls[0]!).toBe(false);
    expect(calls[5]!.errnoret).toBe(38);
    const m = grpcFixture('minimal.grpc.json');
    expect(m.Root).toEqual({ Path: '', Readonly: false });
    expect(m.Linux!.Resources).toBeNull();
  });

  it('all-fields sets every field of grpc.Spec to a non-default value', () => {
    const isDefault = (x: unknown) =>
      x === undefined ||
      x === null ||
      x === 0 ||
      x === '' ||
      x === false ||
      (Array.isArray(x) && x.length === 0) ||
      (typeof x === 'object' && Object.keys(x as object).length === 0);
    const messageType = (f: protobuf.Field) => {
      f.resolve();
      return f.resolvedType && 'fieldsArray' in f.resolvedType ? (f.resolvedType as protobuf.Type) : null;
    };
    const skip = (type: protobuf.Type, f: protobuf.Field) => type.name === 'Spec' && (f.name === 'Solaris' || f.name === 'Windows');
    // Every scalar/map/repeated-scalar field reachable from `type` ("Spec.Linux.Devices[].Path").
    const leaves = (type: protobuf.Type, at: string): string[] =>
      type.fieldsArray.flatMap((f) => {
        if (skip(type, f)) return [];
        const sub = messageType(f);
        const where = `${at}.${f.name}`;
        return sub && !f.map ? leaves(sub, f.repeated ? `${where}[]` : where) : [where];
      });
    // The leaves set to a non-default value somewhere in `obj` (any element of a list counts).
    const covered = (type: protobuf.Type, obj: Record<string, any>, at: string, out: Set<string>): Set<string> => {
      for (const f of type.fieldsArray) {
        if (skip(type, f)) continue;
        const sub = messageType(f);
        const v = obj[f.name];
        const where = `${at}.${f.name}`;
        if (sub && !f.map) {
          if (f.repeated) for (const e of v ?? []) covered(sub, e, `${where}[]`, out);
          else if (v) covered(sub, v, where, out);
        } else if (!isDefault(v)) {
          out.add(where);
        }
      }
      return out;
    };
    const missingIn = (type: protobuf.Type, obj: Record<string, any>, at: string): string[] => {
      const got = covered(type, obj, at, new Set());
      return leaves(type, at).filter((l) => !got.has(l));
    };
    expect(missingIn(lookupType('grpc.Spec'), grpcFixture('all-fields.grpc.json') as any, 'Spec')).toEqual([]);
    // The check itself notices a field left at its default.
    const s = readFixture('all-fields.grpc.json');
    s.Linux.Seccomp.Syscalls[3].Args[1].ValueTwo = 0;
    expect(missingIn(lookupType('grpc.Spec'), viaWire(s) as any, 'Spec')).toEqual(['Spec.Linux.Seccomp.Syscalls[].Args[].ValueTwo']);
  });

  it.each(['kata-busybox.grpc.json', 'all-fields.grpc.json', 'minimal.grpc.json'])('%s passes validateSpec', (f) => {
    expect(specProblem(grpcFixture(f))).toBeUndefined();
    expect(() => validateSpec(grpcFixture(f))).not.toThrow();
  });
});

describe('grpcSpecToOci', () => {
  it.each([
    ['kata-busybox.grpc.json', 'kata-busybox.oci.json'],
    ['all-fields.grpc.json', 'all-fields.oci.json'],
  ])('maps %s field by field', (g, o) => {
    expect(grpcSpecToOci(grpcFixture(g))).toEqual(ociFixture(o));
  });

  it('maps the minimal spec', () => {
    expect(grpcSpecToOci(grpcFixture('minimal.grpc.json'))).toEqual({
      ociVersion: '1.0.2',
      process: { terminal: false, user: { uid: 0, gid: 0 }, args: ['/bin/true'], cwd: '/', noNewPrivileges: false },
      root: { path: '', readonly: false },
      linux: {},
    });
  });

  it('tolerates plain objects with fields left out', () => {
    expect(grpcSpecToOci({} as GrpcSpec)).toEqual({ ociVersion: '1.0.2' });
    expect(grpcSpecToOci({ Process: {}, Linux: { Resources: {}, Seccomp: {} } } as GrpcSpec)).toEqual({
      ociVersion: '1.0.2',
      process: { terminal: false, user: { uid: 0, gid: 0 }, cwd: '/', noNewPrivileges: false },
      linux: { resources: {}, seccomp: { defaultAction: '' } },
    });
  });

  it('keeps capability sets present but empty (no capabilities) apart from absent ones', () => {
    const none = grpcSpecToOci(minimalWith((s) => (s.Process.Capabilities = {})));
    expect(none.process!.capabilities).toEqual({ bounding: [], effective: [], inheritable: [], permitted: [], ambient: [] });
    expect(grpcSpecToOci(grpcFixture('minimal.grpc.json')).process!.capabilities).toBeUndefined();
  });

  it('normalises capability names as Kata (JSON quotes, missing CAP_ prefix, case) and drops duplicates', () => {
    const s = grpcSpecToOci(
      minimalWith((s) => (s.Process.Capabilities = { Bounding: ['"CAP_MKNOD"', 'net_admin', 'CAP_KILL', 'kill'] })),
    );
    expect(s.process!.capabilities!.bounding).toEqual(['CAP_MKNOD', 'CAP_NET_ADMIN', 'CAP_KILL']);
  });

  it('drops environment entries that are not KEY=VALUE, warning without the value', () => {
    const warnings: string[] = [];
    const p = grpcProcessToOci(
      { Args: ['sh'], Env: ['A=1', 'SECRET_NO_EQUALS', '=hidden', 'B=', 'C==x'] },
      { warn: (m) => warnings.push(m) },
    );
    expect(p.env).toEqual(['A=1', 'B=', 'C==x']);
    expect(warnings).toEqual(['Process.Env[1] is not KEY=VALUE; dropped', 'Process.Env[2] is not KEY=VALUE; dropped']);
  });

  it('canonicalises the namespace aliases net and mnt', () => {
    const s = grpcSpecToOci(minimalWith((s) => (s.Linux.Namespaces = [{ Type: 'net' }, { Type: 'mnt' }, { Type: 'ipc' }])));
    expect(s.linux!.namespaces).toEqual([{ type: 'network' }, { type: 'mount' }, { type: 'ipc' }]);
  });

  // protobuf has no "unset": Kata's hosts send an unset OCI optional as 0.
  it.each<[string, any, any]>([
    ['memory: 0 is unset, -1 (unlimited) kept', { Memory: { Limit: 0, Reservation: -1, Swap: -1 } }, { memory: { reservation: -1, swap: -1 } }],
    ['memory: kernel limits only when > 0', { Memory: { Kernel: -1, KernelTCP: 0 } }, { memory: {} }],
    ['memory: swappiness 0 unset, > 100 dropped', { Memory: { Swappiness: 0 } }, { memory: {} }],
    ['memory: swappiness 2^64-1 (Docker -1) dropped', { Memory: { Swappiness: '18446744073709551615' } }, { memory: {} }],
    ['memory: swappiness kept', { Memory: { Swappiness: 100, DisableOOMKiller: false } }, { memory: { swappiness: 100 } }],
    ['cpu: quota -1 kept, zeros unset', { CPU: { Quota: -1, Shares: 0, Period: 0 } }, { cpu: { quota: -1 } }],
    ['cpu: realtime', { CPU: { RealtimeRuntime: -1, RealtimePeriod: 1000 } }, { cpu: { realtimeRuntime: -1, realtimePeriod: 1000 } }],
    ['pids: present with 0 kept', { Pids: { Limit: 0 } }, { pids: { limit: 0 } }],
    ['pids: -1 kept', { Pids: { Limit: -1 } }, { pids: { limit: -1 } }],
    [
      'device rules: major/minor <= 0 are wildcards, empty type/access unset',
      { Devices: [{ Allow: true, Type: 'c', Major: 5, Minor: 0, Access: '' }, { Allow: true, Type: '', Major: -1, Minor: -1, Access: 'm' }] },
      { devices: [{ allow: true, type: 'c', major: 5 }, { allow: true, access: 'm' }] },
    ],
    ['blkio: zero weights unset', { BlockIO: { Weight: 0, WeightDevice: [{ Major: 8, Minor: 0, Weight: 0, LeafWeight: 7 }] } }, { blockIO: { weightDevice: [{ major: 8, minor: 0, leafWeight: 7 }] } }],
    ['network: empty message left out', { Network: { ClassID: 0, Priorities: [] } }, {}],
    ['network: priorities only', { Network: { Priorities: [{ Name: 'eth0', Priority: 1 }] } }, { network: { priorities: [{ name: 'eth0', priority: 1 }] } }],
  ])('resources: %s', (_name, grpcRes, oci) => {
    expect(grpcSpecToOci(minimalWith((s) => (s.Linux.Resources = grpcRes))).linux!.resources).toEqual(oci);
  });

  it.each<[string, (s: any) => void, (o: OciSpec) => unknown, unknown]>([
    ['oomScoreAdj 0 is unset', (s) => (s.Process.OOMScoreAdj = 0), (o) => o.process!.oomScoreAdj, undefined],
    ['oomScoreAdj negative kept', (s) => (s.Process.OOMScoreAdj = -998), (o) => o.process!.oomScoreAdj, -998],
    ['consoleSize 0x0 is unset', (s) => (s.Process.ConsoleSize = {}), (o) => o.process!.consoleSize, undefined],
    ['consoleSize kept', (s) => (s.Process.ConsoleSize = { Height: 24 }), (o) => o.process!.consoleSize, { height: 24, width: 0 }],
    ['cwd "" becomes /', (s) => (s.Process.Cwd = ''), (o) => o.process!.cwd, '/'],
    ['username only when set', (s) => (s.Process.User = { UID: 5 }), (o) => o.process!.user, { uid: 5, gid: 0 }],
    [
      'hook timeout only when > 0',
      (s) => (s.Hooks = { Poststop: [{ Path: '/a', Timeout: 0 }, { Path: '/b', Timeout: -3 }, { Path: '/c', Timeout: 7 }] }),
      (o) => o.hooks,
      { poststop: [{ path: '/a' }, { path: '/b' }, { path: '/c', timeout: 7 }] },
    ],
    ['an empty Hooks message stays an empty hooks object', (s) => (s.Hooks = {}), (o) => o.hooks, {}],
    ['intelRdt without schema left out', (s) => (s.Linux.IntelRdt = {}), (o) => o.linux!.intelRdt, undefined],
    [
      'device fileMode 0 left out (runtime default 0666), uid/gid kept',
      (s) => (s.Linux.Devices = [{ Path: '/dev/x', Type: 'p' }]),
      (o) => o.linux!.devices,
      [{ path: '/dev/x', type: 'p', major: 0, minor: 0, uid: 0, gid: 0 }],
    ],
    ['namespace path only when set', (s) => (s.Linux.Namespaces = [{ Type: 'uts', Path: '' }]), (o) => o.linux!.namespaces, [{ type: 'uts' }]],
    ['empty strings unset', (s) => (s.Hostname = ''), (o) => 'hostname' in o, false],
    ['mount fields only when set', (s) => (s.Mounts = [{ destination: '/x' }]), (o) => o.mounts, [{ destination: '/x' }]],
    ['no Version: the default', (s) => delete s.Version, (o) => o.ociVersion, '1.0.2'],
  ])('%s', (_name, patch, pick, expected) => {
    expect(pick(grpcSpecToOci(minimalWith(patch)))).toEqual(expected);
  });

  it.each([...SECCOMP_ACTIONS])('passes seccomp action %s by name', (action) => {
    const o = grpcSpecToOci(
      minimalWith((s) => (s.Linux.Seccomp = { DefaultAction: action, Syscalls: [{ Names: ['getpid'], Action: action }] })),
    );
    expect(o.linux!.seccomp!.defaultAction).toBe(action);
    expect(o.linux!.seccomp!.syscalls![0]!.action).toBe(action);
  });

  it.each([...SECCOMP_OPERATORS])('passes seccomp operator %s by name', (op) => {
    const o = grpcSpecToOci(
      minimalWith(
        (s) =>
          (s.Linux.Seccomp = {
            DefaultAction: 'SCMP_ACT_ALLOW',
            Syscalls: [{ Names: ['x'], Action: 'SCMP_ACT_ERRNO', Args: [{ Index: 3, Value: 7, ValueTwo: 1, Op: op }] }],
          }),
      ),
    );
    expect(o.linux!.seccomp!.syscalls![0]!.args).toEqual([{ index: 3, value: 7, valueTwo: 1, op }]);
  });

  it.each<[string, number | undefined, number | undefined]>([
    ['SCMP_ACT_ERRNO', 1, 1],
    ['SCMP_ACT_ERRNO', 0, 0],
    ['SCMP_ACT_ERRNO', undefined, undefined],
    ['SCMP_ACT_TRACE', 5, 5],
    ['SCMP_ACT_ALLOW', 0, undefined],
    ['SCMP_ACT_KILL', 3, undefined],
    ['SCMP_ACT_LOG', 1, undefined],
  ])('seccomp %s with errnoret %s -> errnoRet %s', (action, sent, expected) => {
    const call: any = { Names: ['x'], Action: action };
    if (sent !== undefined) call.errnoret = sent;
    const o = grpcSpecToOci(minimalWith((s) => (s.Linux.Seccomp = { DefaultAction: 'SCMP_ACT_ALLOW', Syscalls: [call] })));
    const out = o.linux!.seccomp!.syscalls![0]!;
    expect(out.errnoRet).toBe(expected);
    expect('errnoRet' in out).toBe(expected !== undefined);
  });

  it('passes every seccomp architecture and flag, and every rlimit type, by name', () => {
    const o = grpcSpecToOci(
      minimalWith((s) => {
        s.Linux.Seccomp = { DefaultAction: 'SCMP_ACT_ALLOW', Architectures: [...SECCOMP_ARCHES], Flags: [...SECCOMP_FLAGS] };
        s.Process.Rlimits = [...RLIMIT_TYPES].map((t, i) => ({ Type: t, Hard: i + 1, Soft: i }));
      }),
    );
    expect(o.linux!.seccomp!.architectures).toEqual([...SECCOMP_ARCHES]);
    expect(o.linux!.seccomp!.flags).toEqual([...SECCOMP_FLAGS]);
    expect(o.process!.rlimits!.map((r) => r.type)).toEqual([...RLIMIT_TYPES]);
    expect(o.process!.rlimits![3]).toEqual({ type: [...RLIMIT_TYPES][3], hard: 4, soft: 3 });
  });
});

describe('64-bit values', () => {
  it('keeps RLIM_INFINITY exact although the decoder rounds it (longs: Number)', () => {
    const s = minimalWith(
      (s) =>
        (s.Process.Rlimits = [
          { Type: 'RLIMIT_MEMLOCK', Hard: '18446744073709551615', Soft: '18446744073709551615' },
          { Type: 'RLIMIT_NOFILE', Hard: 1048576, Soft: 1024 },
        ]),
    );
    expect(s.Process!.Rlimits![0]!.Hard).toBe(2 ** 64); // what the decoder gives
    const o = grpcSpecToOci(s);
    expect(o.process!.rlimits).toEqual([
      { type: 'RLIMIT_MEMLOCK', hard: RLIM_INFINITY, soft: RLIM_INFINITY },
      { type: 'RLIMIT_NOFILE', hard: 1048576, soft: 1024 },
    ]);
    const json = ociSpecToJson(o);
    expect(json).toContain('{"type":"RLIMIT_MEMLOCK","hard":18446744073709551615,"soft":18446744073709551615}');
    expect(() => JSON.stringify(o)).toThrow(/BigInt/);
  });

  it('accepts 64-bit values as numbers, strings, bigints and Long-like objects', () => {
    const proc = (hard: unknown) => grpcProcessToOci({ Args: ['x'], Rlimits: [{ Type: 'RLIMIT_CORE', Hard: hard as any, Soft: 0 }] });
    expect(proc(-1).rlimits![0]!.hard).toBe(RLIM_INFINITY); // a uint64 -1 is 2^64-1 on the wire
    expect(proc('9007199254740993').rlimits![0]!.hard).toBe(9007199254740993n);
    expect(proc(12345n).rlimits![0]!.hard).toBe(12345);
    expect(proc({ low: -1, high: -1, unsigned: true }).rlimits![0]!.hard).toBe(RLIM_INFINITY);
    expect(proc({ low: 5, high: 1 }).rlimits![0]!.hard).toBe(2 ** 32 + 5);
    expect(proc('garbage').rlimits![0]!.hard).toBe(0);
    const mem = grpcResourcesToOci({ Memory: { Limit: '-9223372036854775808' } });
    expect(mem.memory!.limit).toBe(-9223372036854775808n);
  });

  it('serialises like JSON.stringify when there is no bigint', () => {
    const o = ociFixture('all-fields.oci.json');
    expect(ociSpecToJson(o)).toBe(JSON.stringify(o));
    expect(ociSpecToJson(o, 2)).toBe(JSON.stringify(o, null, 2));
    const odd = { a: undefined, b: [undefined, () => 1, NaN], c: {}, d: [], e: null, f: 'q"\u0000' };
    expect(ociSpecToJson(odd)).toBe(JSON.stringify(odd));
    expect(ociSpecToJson(odd, 4)).toBe(JSON.stringify(odd, null, 4));
    expect(ociSpecToJson({ big: [RLIM_INFINITY] }, 1)).toBe('{\n "big": [\n  18446744073709551615\n ]\n}');
  });
});

describe('round trips', () => {
  it('kata-busybox: grpc -> OCI -> grpc -> wire is the identity', () => {
    const g = grpcFixture('kata-busybox.grpc.json');
    expect(viaWire(ociSpecToGrpc(grpcSpecToOci(g)))).toEqual(g);
  });

  it('all-fields: grpc -> OCI -> grpc loses only the documented unset encodings', () => {
    const g = grpcFixture('all-fields.grpc.json');
    const back = viaWire(ociSpecToGrpc(grpcSpecToOci(g)));
    const expected = structuredClone(g) as any;
    expected.Linux.Resources.Devices[2].Minor = 0; // wildcard -1 comes back as the hosts' 0
    delete expected.Linux.Seccomp.Syscalls[2].errnoret; // no errno for SCMP_ACT_KILL_PROCESS
    expect(back).toEqual(expected);
  });

  it.each(['kata-busybox.oci.json', 'all-fields.oci.json'])('%s: OCI -> grpc -> wire -> OCI is the identity', (f) => {
    const o = ociFixture(f);
    expect(grpcSpecToOci(viaWire(ociSpecToGrpc(o)))).toEqual(o);
  });

  it('keeps RLIM_INFINITY through OCI -> grpc -> wire -> OCI', () => {
    const o: OciSpec = {
      ociVersion: '1.1.0',
      process: { user: { uid: 0, gid: 0 }, cwd: '/', args: ['x'], rlimits: [{ type: 'RLIMIT_AS', hard: RLIM_INFINITY, soft: 7 }] },
    };
    expect(ociSpecToGrpc(o).Process!.Rlimits![0]!.Hard).toBe('18446744073709551615');
    expect(grpcSpecToOci(viaWire(ociSpecToGrpc(o))).process!.rlimits).toEqual(o.process!.rlimits);
  });

  it('UpdateContainer resources survive the real request codec', () => {
    const info = methodInfo('grpc.AgentService', 'UpdateContainer')!;
    const oci = ociFixture('all-fields.oci.json').linux!.resources!;
    const req = info.decodeRequest(info.encodeRequest({ container_id: 'c1', resources: ociResourcesToGrpc(oci) }));
    expect(grpcResourcesToOci(req.resources)).toEqual(oci);
  });

  it('ExecProcess process survives the real request codec', () => {
    const info = methodInfo('grpc.AgentService', 'ExecProcess')!;
    const oci = ociFixture('all-fields.oci.json').process!;
    const req = info.decodeRequest(info.encodeRequest({ container_id: 'c1', exec_id: 'e1', process: ociProcessToGrpc(oci) }));
    expect(grpcProcessToOci(req.process)).toEqual(oci);
  });
});

describe('validateSpec', () => {
  // Each case patches the busybox fixture (before the wire round trip).
  const cases: Array<[string, (s: any) => void]> = [
    ['Process is missing', (s) => delete s.Process],
    ['Process.Args is empty', (s) => (s.Process.Args = [])],
    ['Process.Args[0] is empty', (s) => (s.Process.Args = ['', 'x'])],
    ['Process.Cwd "srv" is not an absolute path', (s) => (s.Process.Cwd = 'srv')],
    ['Process.Capabilities.Effective[1] "CAP_FLY" is unknown', (s) => (s.Process.Capabilities.Effective = ['CAP_KILL', 'CAP_FLY'])],
    ['Process.Rlimits[0].Type "RLIMIT_FOO" is unknown', (s) => (s.Process.Rlimits[0].Type = 'RLIMIT_FOO')],
    ['Process.Rlimits[0] (RLIMIT_NOFILE) soft limit exceeds hard limit', (s) => (s.Process.Rlimits[0].Soft = 2000000)],
    ['Process.OOMScoreAdj 1001 is out of range (-1000..1000)', (s) => (s.Process.OOMScoreAdj = 1001)],
    ['Process.Env[1] contains a NUL byte', (s) => (s.Process.Env[1] = 'HOSTNAME=a\u0000b')],
    ['Root is missing', (s) => delete s.Root],
    ['Linux is missing', (s) => delete s.Linux],
    ['Mounts[2].destination is empty', (s) => (s.Mounts[2].destination = '')],
    ['Hooks.Poststop[0].Path "hook" is not an absolute path', (s) => (s.Hooks = { Poststop: [{ Path: 'hook' }] })],
    ['Linux.Namespaces[2].Type "foo" is unknown', (s) => (s.Linux.Namespaces[2].Type = 'foo')],
    ['Linux.Namespaces[3].Type "ipc" is duplicated', (s) => (s.Linux.Namespaces[3].Type = 'ipc')],
    ['Hostname is set but Linux.Namespaces has no uts namespace', (s) => s.Linux.Namespaces.splice(2, 1)],
    ['Linux.UIDMappings is set but Linux.Namespaces has no user namespace', (s) => (s.Linux.UIDMappings = [{ HostID: 1, ContainerID: 0, Size: 1 }])],
    [
      'Linux.GIDMappings has no mapping with Size > 0',
      (s) => {
        s.Linux.Namespaces.push({ Type: 'user' });
        s.Linux.UIDMappings = [{ HostID: 1000, ContainerID: 0, Size: 1 }];
        s.Linux.GIDMappings = [{ HostID: 1000, ContainerID: 0, Size: 0 }];
      },
    ],
    ['Linux.MaskedPaths is set but Linux.Namespaces has no mount namespace', (s) => s.Linux.Namespaces.splice(3, 1)],
    ['Linux.ReadonlyPaths[1] "proc/bus" is not an absolute path', (s) => (s.Linux.ReadonlyPaths[1] = 'proc/bus')],
    ['Linux.Sysctl["kernel.shm_rmid_forced"] requires an ipc namespace', (s) => s.Linux.Namespaces.splice(1, 1)],
    ['Linux.Sysctl["fs.mqueue.msg_max"] requires an ipc namespace', (s) => {
      s.Linux.Namespaces.splice(1, 1);
      s.Linux.Sysctl = { 'fs.mqueue.msg_max': '10' };
    }],
    ['Linux.Sysctl["kernel.domainname"] requires a uts namespace', (s) => {
      delete s.Hostname;
      s.Linux.Namespaces.splice(2, 1);
      s.Linux.Sysctl = { 'kernel.domainname': 'x' };
    }],
    ['Linux.Sysctl["kernel.hostname"] is not allowed (use Hostname)', (s) => (s.Linux.Sysctl = { 'kernel.hostname': 'x' })],
    ['Linux.Sysctl["vm.swappiness"] is not namespaced', (s) => (s.Linux.Sysctl = { 'vm.swappiness': '1' })],
    ['Linux.Sysctl["net/../kernel/core_pattern"] is not a valid sysctl name', (s) => (s.Linux.Sysctl = { 'net/../kernel/core_pattern': '|/x' })],
    ['Linux.Sysctl["net..ipv4"] is not a valid sysctl name', (s) => (s.Linux.Sysctl = { 'net..ipv4': '1' })],
    ['Linux.Sysctl["net"] is not a valid sysctl name', (s) => (s.Linux.Sysctl = { net: '1' })],
    ['Linux.Devices[0].Type "x" is unknown', (s) => (s.Linux.Devices = [{ Path: '/dev/a', Type: 'x' }])],
    ['Linux.Devices[0].Path "dev/a" is not an absolute path', (s) => (s.Linux.Devices = [{ Path: 'dev/a', Type: 'c' }])],
    ['Linux.Resources.Devices[0].Type "x" is unknown', (s) => (s.Linux.Resources.Devices[0].Type = 'x')],
    ['Linux.Resources.Devices[0].Access "rwx" is not a subset of "rwm"', (s) => (s.Linux.Resources.Devices[0].Access = 'rwx')],
    ['Linux.Resources.Memory.Swappiness 150 is out of range (0..100)', (s) => (s.Linux.Resources.Memory.Swappiness = 150)],
    ['Linux.Resources.CPU.Cpus "a-b" is not a list like "0-3,5"', (s) => (s.Linux.Resources.CPU.Cpus = 'a-b')],
    ['Linux.Resources.HugepageLimits[0].Pagesize "2M" is not a page size like "2MB"', (s) => (s.Linux.Resources.HugepageLimits = [{ Pagesize: '2M', Limit: 1 }])],
    ['Linux.Seccomp.DefaultAction "SCMP_ACT_FOO" is unknown', (s) => (s.Linux.Seccomp.DefaultAction = 'SCMP_ACT_FOO')],
    ['Linux.Seccomp.DefaultAction "" is unknown', (s) => (s.Linux.Seccomp.DefaultAction = '')],
    ['Linux.Seccomp.Architectures[1] "SCMP_ARCH_Z80" is unknown', (s) => (s.Linux.Seccomp.Architectures[1] = 'SCMP_ARCH_Z80')],
    ['Linux.Seccomp.Flags[0] "SECCOMP_FILTER_FLAG_X" is unknown', (s) => (s.Linux.Seccomp.Flags = ['SECCOMP_FILTER_FLAG_X'])],
    ['Linux.Seccomp.Syscalls[1].Names is empty', (s) => (s.Linux.Seccomp.Syscalls[1].Names = [])],
    ['Linux.Seccomp.Syscalls[1].Names[1] is empty', (s) => (s.Linux.Seccomp.Syscalls[1].Names = ['a', ''])],
    ['Linux.Seccomp.Syscalls[5].Action "SCMP_ACT_ERROR" is unknown', (s) => (s.Linux.Seccomp.Syscalls[5].Action = 'SCMP_ACT_ERROR')],
    ['Linux.Seccomp.Syscalls[4].Args[0].Op "SCMP_CMP_MASKED" is unknown', (s) => (s.Linux.Seccomp.Syscalls[4].Args[0].Op = 'SCMP_CMP_MASKED')],
    ['Linux.Seccomp.Syscalls[4].Args[0].Index 6 is out of range (0..5)', (s) => (s.Linux.Seccomp.Syscalls[4].Args[0].Index = 6)],
    ['Linux.RootfsPropagation "weird" is unknown', (s) => (s.Linux.RootfsPropagation = 'weird')],
    ['Annotations["io.kubernetes.cri.container-name"] contains a NUL byte', (s) => (s.Annotations['io.kubernetes.cri.container-name'] = 'a\u0000')],
    ['Annotations key "bad\\u0000key" contains a NUL byte', (s) => (s.Annotations['bad\u0000key'] = 'v')],
    ['Mounts[0].options[1] contains a NUL byte', (s) => (s.Mounts[0].options[1] = 'no\u0000exec')],
  ];

  it.each(cases)('%s', (message, patch) => {
    const s = readFixture('kata-busybox.grpc.json');
    patch(s);
    const spec = viaWire(s);
    expect(specProblem(spec)).toBe(message);
    const err = thrown(() => validateSpec(spec));
    expect(err).toBeInstanceOf(RpcError);
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(err.message).toBe(message);
  });

  it('reports a missing spec', () => {
    expect(specProblem(null)).toBe('Spec is missing');
    expect(thrown(() => validateSpec(undefined)).code).toBe(Code.INVALID_ARGUMENT);
  });

  it('accepts capability aliases, sysctl forms and namespace aliases it can convert', () => {
    const spec = minimalWith((s) => {
      s.Process.Capabilities = { Bounding: ['"CAP_MKNOD"', 'net_raw'] };
      s.Linux.Namespaces = [{ Type: 'mnt' }, { Type: 'net' }, { Type: 'ipc' }, { Type: 'uts' }];
      s.Linux.Sysctl = { 'net/ipv4/conf/eth0.100/forwarding': '1', 'kernel.msgmax': '1', 'kernel.domainname': 'd' };
      s.Linux.Seccomp = { DefaultAction: 'SCMP_ACT_ALLOW', Syscalls: [{ Names: ['x'], Action: 'SCMP_ACT_ERRNO', Args: [{ Index: 5, Op: 'SCMP_CMP_EQ' }] }] };
      s.Linux.Resources = { Memory: { Swappiness: '18446744073709551615' }, CPU: { Cpus: '0-3, 5', Mems: '0' } };
    });
    expect(specProblem(spec)).toBeUndefined();
  });

  it('validateProcess checks an ExecProcess process under its own name', () => {
    expect(() => validateProcess({ Args: ['sh'], Cwd: '/' })).not.toThrow();
    const err = thrown(() => validateProcess({ Args: [] }, 'process'));
    expect(err.code).toBe(Code.INVALID_ARGUMENT);
    expect(err.message).toBe('process.Args is empty');
    expect(thrown(() => validateProcess(null)).message).toBe('Process is missing');
  });

  it('validateResources checks UpdateContainer resources', () => {
    expect(() => validateResources(null)).not.toThrow();
    expect(() => validateResources({ Memory: { Limit: 1 }, Devices: [{ Type: 'c', Access: 'rw' }] })).not.toThrow();
    expect(thrown(() => validateResources({ HugepageLimits: [{ Pagesize: '1G' }] })).message).toBe(
      'Resources.HugepageLimits[0].Pagesize "1G" is not a page size like "2MB"',
    );
    expect(thrown(() => validateResources({ CPU: { Mems: '0\u0000' } })).message).toBe('Resources.CPU.Mems "0\\u0000" is not a list like "0-3,5"');
    expect(thrown(() => validateResources({ HugepageLimits: [{ Pagesize: '2MB\u0000' }] })).code).toBe(Code.INVALID_ARGUMENT);
  });

  it('knows the 41 capabilities of Linux 5.9+', () => {
    expect(CAPABILITIES.size).toBe(41);
    expect(CAPABILITIES.has('CAP_CHECKPOINT_RESTORE')).toBe(true);
  });
});
