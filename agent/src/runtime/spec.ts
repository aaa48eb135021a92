// Kata's grpc.Spec (agent/proto/oci.proto, as decoded by rpc/proto.ts: the
// upstream field names, absent messages null, absent repeated/maps empty,
// 64-bit numbers as Number) <-> OCI runtime-spec config.json, validation of
// what a host sends, and the rewrite that makes a host's spec runnable by an
// OCI runtime (crun, runc) inside the guest. Everything here is pure.
//
// Conversion follows the Kata agent's grpc -> oci conversion
// (src/libs/protocols/src/trans.rs `impl From<grpc::...> for oci::...`; the
// older rustjail/src/lib.rs `grpc_to_oci`). protobuf cannot tell "unset" from
// 0/"", and Kata's hosts encode an unset OCI optional as the zero value (the Go
// runtime's OCItoGRPC copies nil pointers as 0; runtime-rs uses map_or(0)), so:
// - strings: "" = unset (field omitted); repeated: empty = unset; messages:
//   null = unset. Process.Cwd "" becomes "/" (Kata skips the chdir, which
//   leaves the process in "/"; OCI runtimes require an absolute cwd).
// - memory limit/reservation/swap, cpu quota/realtimeRuntime: 0 = unset, any
//   other value kept (-1 = unlimited in OCI; Kata keeps only values > 0, which
//   makes "-1" in UpdateContainer a no-op instead of lifting a limit).
//   kernel/kernelTCP, swappiness, shares, period, realtimePeriod, blkio
//   weights, classID: only values > 0 (as Kata; swappiness > 100 is the
//   uint64 form of Docker's -1 "default" and is dropped as runc does).
// - device cgroup rules: major/minor only when > 0 (as Kata: the hosts encode
//   the wildcard as 0, so a literal minor 0 cannot be expressed), type/access
//   only when non-empty ("a"/all by OCI default).
// - linux.devices: fileMode only when non-zero (crun and runc then use 0666);
//   uid/gid always, as Kata.
// - oomScoreAdj only when non-zero (as Kata); consoleSize only when non-zero.
// - seccomp errnoRet: set when the host set the oneof, and only for actions
//   that take an errno (SCMP_ACT_ERRNO, SCMP_ACT_TRACE); otherwise omitted,
//   which OCI defines as EPERM. (Kata's current agent turns an unset oneof
//   into errno 0 - a silently succeeding syscall; its older lib.rs used EPERM.)
// - hook timeout only when > 0 (OCI: must be > 0 if set). All six hook lists
//   are converted (Kata's trans.rs copies Poststart into poststop; we do not).
// - intelRdt only when it carries a schema (OCI makes an empty intelRdt an
//   error without resctrl).
// - capability names: surrounding JSON quotes stripped and "CAP_" added if
//   missing, as Kata's cap_vec2hashset; duplicates dropped.
// - environment: entries that are not KEY=VALUE (no '=', empty key) are
//   dropped with a warning, as Kata's valid_env (we do not trim them).
// - u64 values above 2^53 cannot be exact as Number; the decoder's rounding
//   of 2^64-1 (RLIM_INFINITY, Docker's "-1") to 2^64 is saturated back to
//   2^64-1. Such values are `bigint` in the OCI objects: serialise with
//   ociSpecToJson() (JSON.stringify throws on bigint).
import path from 'node:path';
import { Code, RpcError } from '../rpc/status';

// ---------------------------------------------------------------------------
// Types: the decoded grpc messages (input) and the OCI JSON (output)

/** A 64-bit integer as a decoder may deliver it. */
export type Int64In = number | string | bigint | { low: number; high: number; unsigned?: boolean } | null | undefined;
/** A 64-bit integer in an OCI object: a Number when exact, else a bigint. */
export type Num64 = number | bigint;

export interface GrpcBox {
  Height?: number;
  Width?: number;
}
export interface GrpcUser {
  UID?: number;
  GID?: number;
  AdditionalGids?: number[];
  Username?: string;
}
export interface GrpcCapabilities {
  Bounding?: string[];
  Effective?: string[];
  Inheritable?: string[];
  Permitted?: string[];
  Ambient?: string[];
}
export interface GrpcRlimit {
  Type?: string;
  Hard?: Int64In;
  Soft?: Int64In;
}
export interface GrpcProcess {
  Terminal?: boolean;
  ConsoleSize?: GrpcBox | null;
  User?: GrpcUser | null;
  Args?: string[];
  Env?: string[];
  Cwd?: string;
  Capabilities?: GrpcCapabilities | null;
  Rlimits?: GrpcRlimit[];
  NoNewPrivileges?: boolean;
  ApparmorProfile?: string;
  OOMScoreAdj?: Int64In;
  SelinuxLabel?: string;
}
export interface GrpcRoot {
  Path?: string;
  Readonly?: boolean;
}
export interface GrpcMount {
  destination?: string;
  source?: string;
  type?: string;
  options?: string[];
}
export interface GrpcHook {
  Path?: string;
  Args?: string[];
  Env?: string[];
  Timeout?: Int64In;
}
export interface GrpcHooks {
  Prestart?: GrpcHook[];
  Poststart?: GrpcHook[];
  Poststop?: GrpcHook[];
  CreateRuntime?: GrpcHook[];
  CreateContainer?: GrpcHook[];
  StartContainer?: GrpcHook[];
}
export interface GrpcIdMapping {
  HostID?: number;
  ContainerID?: number;
  Size?: number;
}
export interface GrpcNamespace {
  Type?: string;
  Path?: string;
}
export interface GrpcDevice {
  Path?: string;
  Type?: string;
  Major?: Int64In;
  Minor?: Int64In;
  FileMode?: number;
  UID?: number;
  GID?: number;
}
export interface GrpcDeviceCgroup {
  Allow?: boolean;
  Type?: string;
  Major?: Int64In;
  Minor?: Int64In;
  Access?: string;
}
export interface GrpcMemory {
  Limit?: Int64In;
  Reservation?: Int64In;
  Swap?: Int64In;
  Kernel?: Int64In;
  KernelTCP?: Int64In;
  Swappiness?: Int64In;
  DisableOOMKiller?: boolean;
}
export interface GrpcCPU {
  Shares?: Int64In;
  Quota?: Int64In;
  Period?: Int64In;
  RealtimeRuntime?: Int64In;
  RealtimePeriod?: Int64In;
  Cpus?: string;
  Mems?: string;
}
export interface GrpcPids {
  Limit?: Int64In;
}
export interface GrpcWeightDevice {
  Major?: Int64In;
  Minor?: Int64In;
  Weight?: number;
  LeafWeight?: number;
}
export interface GrpcThrottleDevice {
  Major?: Int64In;
  Minor?: Int64In;
  Rate?: Int64In;
}
export interface GrpcBlockIO {
  Weight?: number;
  LeafWeight?: number;
  WeightDevice?: GrpcWeightDevice[];
  ThrottleReadBpsDevice?: GrpcThrottleDevice[];
  ThrottleWriteBpsDevice?: GrpcThrottleDevice[];
  ThrottleReadIOPSDevice?: GrpcThrottleDevice[];
  ThrottleWriteIOPSDevice?: GrpcThrottleDevice[];
}
export interface GrpcHugepageLimit {
  Pagesize?: string;
  Limit?: Int64In;
}
export interface GrpcInterfacePriority {
  Name?: string;
  Priority?: number;
}
export interface GrpcNetwork {
  ClassID?: number;
  Priorities?: GrpcInterfacePriority[];
}
export interface GrpcResources {
  Devices?: GrpcDeviceCgroup[];
  Memory?: GrpcMemory | null;
  CPU?: GrpcCPU | null;
  Pids?: GrpcPids | null;
  BlockIO?: GrpcBlockIO | null;
  HugepageLimits?: GrpcHugepageLimit[];
  Network?: GrpcNetwork | null;
}
export interface GrpcSeccompArg {
  Index?: Int64In;
  Value?: Int64In;
  ValueTwo?: Int64In;
  Op?: string;
}
export interface GrpcSyscall {
  Names?: string[];
  Action?: string;
  /** The `ErrnoRet` oneof: absent (undefined) when the host did not set it. */
  errnoret?: number | null;
  Args?: GrpcSeccompArg[];
}
export interface GrpcSeccomp {
  DefaultAction?: string;
  Architectures?: string[];
  Flags?: string[];
  Syscalls?: GrpcSyscall[];
}
export interface GrpcIntelRdt {
  L3CacheSchema?: string;
}
export interface GrpcLinux {
  UIDMappings?: GrpcIdMapping[];
  GIDMappings?: GrpcIdMapping[];
  Sysctl?: Record<string, string>;
  Resources?: GrpcResources | null;
  CgroupsPath?: string;
  Namespaces?: GrpcNamespace[];
  Devices?: GrpcDevice[];
  Seccomp?: GrpcSeccomp | null;
  RootfsPropagation?: string;
  MaskedPaths?: string[];
  ReadonlyPaths?: string[];
  MountLabel?: string;
  IntelRdt?: GrpcIntelRdt | null;
}
export interface GrpcSpec {
  Version?: string;
  Process?: GrpcProcess | null;
  Root?: GrpcRoot | null;
  Hostname?: string;
  Mounts?: GrpcMount[];
  Hooks?: GrpcHooks | null;
  Annotations?: Record<string, string>;
  Linux?: GrpcLinux | null;
  Solaris?: unknown;
  Windows?: unknown;
}

export interface OciBox {
  height: number;
  width: number;
}
export interface OciUser {
  uid: number;
  gid: number;
  umask?: number;
  additionalGids?: number[];
  username?: string;
}
export interface OciCapabilities {
  bounding?: string[];
  effective?: string[];
  inheritable?: string[];
  permitted?: string[];
  ambient?: string[];
}
export interface OciRlimit {
  type: string;
  hard: Num64;
  soft: Num64;
}
export interface OciProcess {
  terminal?: boolean;
  consoleSize?: OciBox;
  user: OciUser;
  args?: string[];
  env?: string[];
  cwd: string;
  capabilities?: OciCapabilities;
  rlimits?: OciRlimit[];
  noNewPrivileges?: boolean;
  apparmorProfile?: string;
  oomScoreAdj?: number;
  selinuxLabel?: string;
}
export interface OciRoot {
  path: string;
  readonly?: boolean;
}
export interface OciMount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}
export interface OciHook {
  path: string;
  args?: string[];
  env?: string[];
  timeout?: number;
}
export interface OciHooks {
  prestart?: OciHook[];
  createRuntime?: OciHook[];
  createContainer?: OciHook[];
  startContainer?: OciHook[];
  poststart?: OciHook[];
  poststop?: OciHook[];
}
export interface OciIdMapping {
  containerID: number;
  hostID: number;
  size: number;
}
export type OciNamespaceType = 'pid' | 'network' | 'mount' | 'ipc' | 'uts' | 'user' | 'cgroup' | 'time';
export interface OciNamespace {
  /** One of OciNamespaceType for any spec that passed validateSpec(). */
  type: string;
  path?: string;
}
export interface OciDevice {
  path: string;
  type: string;
  major: number;
  minor: number;
  fileMode?: number;
  uid?: number;
  gid?: number;
}
export interface OciDeviceCgroup {
  allow: boolean;
  type?: string;
  major?: number;
  minor?: number;
  access?: string;
}
export interface OciMemory {
  limit?: Num64;
  reservation?: Num64;
  swap?: Num64;
  kernel?: Num64;
  kernelTCP?: Num64;
  swappiness?: Num64;
  disableOOMKiller?: boolean;
}
export interface OciCpu {
  shares?: Num64;
  quota?: Num64;
  period?: Num64;
  realtimeRuntime?: Num64;
  realtimePeriod?: Num64;
  cpus?: string;
  mems?: string;
}
export interface OciPids {
  limit: Num64;
}
export interface OciWeightDevice {
  major: number;
  minor: number;
  weight?: number;
  leafWeight?: number;
}
export interface OciThrottleDevice {
  major: number;
  minor: number;
  rate: Num64;
}
export interface OciBlockIO {
  weight?: number;
  leafWeight?: number;
  weightDevice?: OciWeightDevice[];
  throttleReadBpsDevice?: OciThrottleDevice[];
  throttleWriteBpsDevice?: OciThrottleDevice[];
  throttleReadIOPSDevice?: OciThrottleDevice[];
  throttleWriteIOPSDevice?: OciThrottleDevice[];
}
export interface OciHugepageLimit {
  pageSize: string;
  limit: Num64;
}
export interface OciInterfacePriority {
  name: string;
  priority: number;
}
export interface OciNetwork {
  classID?: number;
  priorities?: OciInterfacePriority[];
}
export interface OciResources {
  devices?: OciDeviceCgroup[];
  memory?: OciMemory;
  cpu?: OciCpu;
  pids?: OciPids;
  blockIO?: OciBlockIO;
  hugepageLimits?: OciHugepageLimit[];
  network?: OciNetwork;
}
export interface OciSeccompArg {
  index: number;
  value: Num64;
  valueTwo?: Num64;
  op: string;
}
export interface OciSyscall {
  names: string[];
  action: string;
  errnoRet?: number;
  args?: OciSeccompArg[];
}
export interface OciSeccomp {
  defaultAction: string;
  architectures?: string[];
  flags?: string[];
  syscalls?: OciSyscall[];
}
export interface OciIntelRdt {
  l3CacheSchema?: string;
}
export interface OciLinux {
  uidMappings?: OciIdMapping[];
  gidMappings?: OciIdMapping[];
  sysctl?: Record<string, string>;
  resources?: OciResources;
  cgroupsPath?: string;
  namespaces?: OciNamespace[];
  devices?: OciDevice[];
  seccomp?: OciSeccomp;
  rootfsPropagation?: string;
  maskedPaths?: string[];
  readonlyPaths?: string[];
  mountLabel?: string;
  intelRdt?: OciIntelRdt;
}
export interface OciSpec {
  ociVersion: string;
  process?: OciProcess;
  root?: OciRoot;
  hostname?: string;
  mounts?: OciMount[];
  hooks?: OciHooks;
  annotations?: Record<string, string>;
  linux?: OciLinux;
}

export interface ConvertOptions {
  /** Called for input that is dropped or altered (never with secret values). */
  warn?: (message: string) => void;
}

// ---------------------------------------------------------------------------
// Known names

/** ociVersion written when the host sends none. */
export const DEFAULT_OCI_VERSION = '1.0.2';

export const NAMESPACE_TYPES: ReadonlySet<string> = new Set<OciNamespaceType>([
  'pid',
  'network',
  'mount',
  'ipc',
  'uts',
  'user',
  'cgroup',
  'time',
]);
/** Short names some tools use (oci-spec-rs prints "net"/"mnt"); normalised on conversion. */
const NAMESPACE_ALIASES: Readonly<Record<string, OciNamespaceType>> = { net: 'network', mnt: 'mount' };

export const SECCOMP_ACTIONS: ReadonlySet<string> = new Set([
  'SCMP_ACT_KILL',
  'SCMP_ACT_KILL_PROCESS',
  'SCMP_ACT_KILL_THREAD',
  'SCMP_ACT_TRAP',
  'SCMP_ACT_ERRNO',
  'SCMP_ACT_TRACE',
  'SCMP_ACT_ALLOW',
  'SCMP_ACT_LOG',
  'SCMP_ACT_NOTIFY',
]);
/** Actions that carry an errno (OCI: errnoRet with any other action is an error). */
const ERRNO_ACTIONS: ReadonlySet<string> = new Set(['SCMP_ACT_ERRNO', 'SCMP_ACT_TRACE']);

export const SECCOMP_OPERATORS: ReadonlySet<string> = new Set([
  'SCMP_CMP_NE',
  'SCMP_CMP_LT',
  'SCMP_CMP_LE',
  'SCMP_CMP_EQ',
  'SCMP_CMP_GE',
  'SCMP_CMP_GT',
  'SCMP_CMP_MASKED_EQ',
]);

export const SECCOMP_ARCHES: ReadonlySet<string> = new Set([
  'SCMP_ARCH_X86',
  'SCMP_ARCH_X86_64',
  'SCMP_ARCH_X32',
  'SCMP_ARCH_ARM',
  'SCMP_ARCH_AARCH64',
  'SCMP_ARCH_MIPS',
  'SCMP_ARCH_MIPS64',
  'SCMP_ARCH_MIPS64N32',
  'SCMP_ARCH_MIPSEL',
  'SCMP_ARCH_MIPSEL64',
  'SCMP_ARCH_MIPSEL64N32',
  'SCMP_ARCH_PPC',
  'SCMP_ARCH_PPC64',
  'SCMP_ARCH_PPC64LE',
  'SCMP_ARCH_S390',
  'SCMP_ARCH_S390X',
  'SCMP_ARCH_PARISC',
  'SCMP_ARCH_PARISC64',
  'SCMP_ARCH_RISCV64',
  'SCMP_ARCH_LOONGARCH64',
  'SCMP_ARCH_M68K',
  'SCMP_ARCH_SH',
  'SCMP_ARCH_SHEB',
]);

export const SECCOMP_FLAGS: ReadonlySet<string> = new Set([
  'SECCOMP_FILTER_FLAG_TSYNC',
  'SECCOMP_FILTER_FLAG_LOG',
  'SECCOMP_FILTER_FLAG_SPEC_ALLOW',
  'SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV',
]);

/** Linux capabilities 0..40 (CAP_LAST_CAP = CAP_CHECKPOINT_RESTORE since 5.9). */
export const CAPABILITIES: ReadonlySet<string> = new Set([
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_DAC_READ_SEARCH',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETPCAP',
  'CAP_LINUX_IMMUTABLE',
  'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST',
  'CAP_NET_ADMIN',
  'CAP_NET_RAW',
  'CAP_IPC_LOCK',
  'CAP_IPC_OWNER',
  'CAP_SYS_MODULE',
  'CAP_SYS_RAWIO',
  'CAP_SYS_CHROOT',
  'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT',
  'CAP_SYS_NICE',
  'CAP_SYS_RESOURCE',
  'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG',
  'CAP_MKNOD',
  'CAP_LEASE',
  'CAP_AUDIT_WRITE',
  'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE',
  'CAP_MAC_ADMIN',
  'CAP_SYSLOG',
  'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND',
  'CAP_AUDIT_READ',
  'CAP_PERFMON',
  'CAP_BPF',
  'CAP_CHECKPOINT_RESTORE',
]);

export const RLIMIT_TYPES: ReadonlySet<string> = new Set([
  'RLIMIT_AS',
  'RLIMIT_CORE',
  'RLIMIT_CPU',
  'RLIMIT_DATA',
  'RLIMIT_FSIZE',
  'RLIMIT_LOCKS',
  'RLIMIT_MEMLOCK',
  'RLIMIT_MSGQUEUE',
  'RLIMIT_NICE',
  'RLIMIT_NOFILE',
  'RLIMIT_NPROC',
  'RLIMIT_RSS',
  'RLIMIT_RTPRIO',
  'RLIMIT_RTTIME',
  'RLIMIT_SIGPENDING',
  'RLIMIT_STACK',
]);

const DEVICE_TYPES: ReadonlySet<string> = new Set(['c', 'b', 'u', 'p']);
const DEVICE_RULE_TYPES: ReadonlySet<string> = new Set(['', 'a', 'c', 'b']);
const ROOTFS_PROPAGATIONS: ReadonlySet<string> = new Set([
  'shared',
  'slave',
  'private',
  'unbindable',
  'rshared',
  'rslave',
  'rprivate',
  'runbindable',
]);
/** sysctls that need an IPC namespace besides fs.mqueue.* (Kata validator.rs SYSCTLS; crun). */
const IPC_SYSCTLS: ReadonlySet<string> = new Set([
  'kernel.msgmax',
  'kernel.msgmnb',
  'kernel.msgmni',
  'kernel.sem',
  'kernel.shmall',
  'kernel.shmmax',
  'kernel.shmmni',
  'kernel.shm_rmid_forced',
]);

// ---------------------------------------------------------------------------
// Small helpers

const U64_MAX = (1n << 64n) - 1n;
const I64_MAX = (1n << 63n) - 1n;
const I64_MIN = -(1n << 63n);
const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const MIN_SAFE = BigInt(Number.MIN_SAFE_INTEGER);

function toBigInt(v: unknown, signed: boolean): bigint {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number') {
    if (!Number.isFinite(v)) return 0n;
    // A decoded u64 near 2^64 (RLIM_INFINITY) rounds up to 2^64 as a double.
    if (!signed && v >= 2 ** 64) return U64_MAX;
    if (signed && v >= 2 ** 63) return I64_MAX;
    if (signed && v < -(2 ** 63)) return I64_MIN;
    return BigInt(Math.trunc(v));
  }
  if (typeof v === 'string') {
    const t = v.trim();
    return /^[+-]?\d+$/.test(t) ? BigInt(t) : 0n;
  }
  if (v !== null && typeof v === 'object' && 'low' in v && 'high' in v) {
    const o = v as { low: number; high: number };
    return (BigInt(o.high >>> 0) << 32n) | BigInt(o.low >>> 0);
  }
  return 0n;
}

function exact(b: bigint): Num64 {
  return b >= MIN_SAFE && b <= MAX_SAFE ? Number(b) : b;
}

/** A uint64 field as a Num64 (negative input wraps, as on the wire: -1 -> 2^64-1). */
function u64(v: unknown): Num64 {
  return exact(BigInt.asUintN(64, toBigInt(v, false)));
}

/** An int64 field as a Num64. */
function i64(v: unknown): Num64 {
  return exact(BigInt.asIntN(64, toBigInt(v, true)));
}

/** A small integer field (int32/uint32, device numbers) as a Number. */
function int(v: unknown): number {
  const b = BigInt.asIntN(64, toBigInt(v, true));
  if (b > MAX_SAFE) return Number.MAX_SAFE_INTEGER;
  if (b < MIN_SAFE) return Number.MIN_SAFE_INTEGER;
  return Number(b);
}

function u32(v: unknown): number {
  const n = int(v);
  return n < 0 ? 0 : n > 0xffffffff ? 0xffffffff : n;
}

const isZero = (n: Num64): boolean => n === 0 || n === 0n;
const positive = (n: Num64): boolean => n > 0;

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

function bool(v: unknown): boolean {
  return v === true;
}

function list<T>(v: T[] | null | undefined): T[] {
  return Array.isArray(v) ? v : [];
}

function strings(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

function isMessage<T>(v: T | null | undefined): v is T {
  return v !== null && v !== undefined && typeof v === 'object';
}

function stringMap(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (v === null || typeof v !== 'object') return out;
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) if (typeof x === 'string') out[k] = x;
  return out;
}

const q = (s: string): string => JSON.stringify(s);

// ---------------------------------------------------------------------------
// grpc -> OCI

/** A capability name as OCI runtimes expect it: "CAP_XXX" (Kata also accepts JSON-quoted and unprefixed names). */
export function normalizeCapability(name: string): string {
  let n = name.trim();
  if (n.length >= 2 && n.startsWith('"') && n.endsWith('"')) n = n.slice(1, -1).trim();
  n = n.toUpperCase();
  return n.startsWith('CAP_') ? n : `CAP_${n}`;
}

function capList(v: unknown): string[] {
  return [...new Set(strings(v).map(normalizeCapability))];
}

/** The canonical OCI namespace type for a type string ("net" -> "network"); unknown types unchanged. */
export function canonicalNamespaceType(type: string): string {
  return NAMESPACE_ALIASES[type] ?? type;
}

function envToOci(env: unknown, warn: (m: string) => void): string[] {
  const out: string[] = [];
  strings(env).forEach((e, i) => {
    const eq = e.indexOf('=');
    if (eq <= 0) warn(`Process.Env[${i}] is not KEY=VALUE; dropped`);
    else out.push(e);
  });
  return out;
}

function userToOci(u: GrpcUser | null | undefined): OciUser {
  const user: OciUser = { uid: 0, gid: 0 };
  if (!isMessage(u)) return user;
  user.uid = u32(u.UID);
  user.gid = u32(u.GID);
  const gids = list(u.AdditionalGids).map(u32);
  if (gids.length > 0) user.additionalGids = gids;
  if (str(u.Username)) user.username = str(u.Username);
  return user;
}

/** grpc.Process (CreateContainer's Spec.Process, ExecProcess's process) -> OCI process. */
export function grpcProcessToOci(p: GrpcProcess, opts: ConvertOptions = {}): OciProcess {
  const warn = opts.warn ?? (() => {});
  const out: OciProcess = {
    terminal: bool(p.Terminal),
    user: userToOci(p.User),
    cwd: str(p.Cwd) || '/',
  };
  if (isMessage(p.ConsoleSize)) {
    const height = u32(p.ConsoleSize.Height);
    const width = u32(p.ConsoleSize.Width);
    if (height !== 0 || width !== 0) out.consoleSize = { height, width };
  }
  const args = strings(p.Args);
  if (args.length > 0) out.args = args;
  const env = envToOci(p.Env, warn);
  if (env.length > 0) out.env = env;
  if (isMessage(p.Capabilities)) {
    const c = p.Capabilities;
    // All five sets, even empty: a present message with empty sets means "no
    // capabilities", while an absent one leaves the runtime's default.
    out.capabilities = {
      bounding: capList(c.Bounding),
      effective: capList(c.Effective),
      inheritable: capList(c.Inheritable),
      permitted: capList(c.Permitted),
      ambient: capList(c.Ambient),
    };
  }
  const rlimits = list(p.Rlimits).map((r) => ({ type: str(r.Type), hard: u64(r.Hard), soft: u64(r.Soft) }));
  if (rlimits.length > 0) out.rlimits = rlimits;
  out.noNewPrivileges = bool(p.NoNewPrivileges);
  if (str(p.ApparmorProfile)) out.apparmorProfile = str(p.ApparmorProfile);
  const oom = int(p.OOMScoreAdj);
  if (oom !== 0) out.oomScoreAdj = oom;
  if (str(p.SelinuxLabel)) out.selinuxLabel = str(p.SelinuxLabel);
  return out;
}

function mountToOci(m: GrpcMount): OciMount {
  const out: OciMount = { destination: str(m.destination) };
  if (str(m.type)) out.type = str(m.type);
  if (str(m.source)) out.source = str(m.source);
  const options = strings(m.options);
  if (options.length > 0) out.options = options;
  return out;
}

function hookToOci(h: GrpcHook): OciHook {
  const out: OciHook = { path: str(h.Path) };
  const args = strings(h.Args);
  if (args.length > 0) out.args = args;
  const env = strings(h.Env);
  if (env.length > 0) out.env = env;
  const timeout = int(h.Timeout);
  if (timeout > 0) out.timeout = timeout;
  return out;
}

const HOOK_FIELDS = [
  ['Prestart', 'prestart'],
  ['CreateRuntime', 'createRuntime'],
  ['CreateContainer', 'createContainer'],
  ['StartContainer', 'startContainer'],
  ['Poststart', 'poststart'],
  ['Poststop', 'poststop'],
] as const;

function hooksToOci(h: GrpcHooks): OciHooks {
  const out: OciHooks = {};
  for (const [g, o] of HOOK_FIELDS) {
    const hooks = list(h[g]).map(hookToOci);
    if (hooks.length > 0) out[o] = hooks;
  }
  return out;
}

function idMapToOci(m: GrpcIdMapping): OciIdMapping {
  return { containerID: u32(m.ContainerID), hostID: u32(m.HostID), size: u32(m.Size) };
}

function deviceToOci(d: GrpcDevice): OciDevice {
  const out: OciDevice = { path: str(d.Path), type: str(d.Type), major: int(d.Major), minor: int(d.Minor) };
  const mode = u32(d.FileMode);
  if (mode !== 0) out.fileMode = mode;
  out.uid = u32(d.UID);
  out.gid = u32(d.GID);
  return out;
}

function deviceRuleToOci(d: GrpcDeviceCgroup): OciDeviceCgroup {
  const out: OciDeviceCgroup = { allow: bool(d.Allow) };
  if (str(d.Type)) out.type = str(d.Type);
  const major = int(d.Major);
  if (major > 0) out.major = major;
  const minor = int(d.Minor);
  if (minor > 0) out.minor = minor;
  if (str(d.Access)) out.access = str(d.Access);
  return out;
}

function memoryToOci(m: GrpcMemory): OciMemory {
  const out: OciMemory = {};
  const limit = i64(m.Limit);
  if (!isZero(limit)) out.limit = limit;
  const reservation = i64(m.Reservation);
  if (!isZero(reservation)) out.reservation = reservation;
  const swap = i64(m.Swap);
  if (!isZero(swap)) out.swap = swap;
  const kernel = i64(m.Kernel);
  if (positive(kernel)) out.kernel = kernel;
  const kernelTCP = i64(m.KernelTCP);
  if (positive(kernelTCP)) out.kernelTCP = kernelTCP;
  const swappiness = u64(m.Swappiness);
  if (positive(swappiness) && swappiness <= 100) out.swappiness = swappiness;
  if (bool(m.DisableOOMKiller)) out.disableOOMKiller = true;
  return out;
}

function cpuToOci(c: GrpcCPU): OciCpu {
  const out: OciCpu = {};
  const shares = u64(c.Shares);
  if (positive(shares)) out.shares = shares;
  const quota = i64(c.Quota);
  if (!isZero(quota)) out.quota = quota;
  const period = u64(c.Period);
  if (positive(period)) out.period = period;
  const rtRuntime = i64(c.RealtimeRuntime);
  if (!isZero(rtRuntime)) out.realtimeRuntime = rtRuntime;
  const rtPeriod = u64(c.RealtimePeriod);
  if (positive(rtPeriod)) out.realtimePeriod = rtPeriod;
  if (str(c.Cpus)) out.cpus = str(c.Cpus);
  if (str(c.Mems)) out.mems = str(c.Mems);
  return out;
}

function throttleToOci(t: GrpcThrottleDevice): OciThrottleDevice {
  return { major: int(t.Major), minor: int(t.Minor), rate: u64(t.Rate) };
}

function blockIOToOci(b: GrpcBlockIO): OciBlockIO {
  const out: OciBlockIO = {};
  const weight = u32(b.Weight);
  if (weight > 0) out.weight = weight;
  const leafWeight = u32(b.LeafWeight);
  if (leafWeight > 0) out.leafWeight = leafWeight;
  const wd = list(b.WeightDevice).map((d) => {
    const dev: OciWeightDevice = { major: int(d.Major), minor: int(d.Minor) };
    if (u32(d.Weight) > 0) dev.weight = u32(d.Weight);
    if (u32(d.LeafWeight) > 0) dev.leafWeight = u32(d.LeafWeight);
    return dev;
  });
  if (wd.length > 0) out.weightDevice = wd;
  const lists = [
    ['ThrottleReadBpsDevice', 'throttleReadBpsDevice'],
    ['ThrottleWriteBpsDevice', 'throttleWriteBpsDevice'],
    ['ThrottleReadIOPSDevice', 'throttleReadIOPSDevice'],
    ['ThrottleWriteIOPSDevice', 'throttleWriteIOPSDevice'],
  ] as const;
  for (const [g, o] of lists) {
    const devs = list(b[g]).map(throttleToOci);
    if (devs.length > 0) out[o] = devs;
  }
  return out;
}

/** grpc.LinuxResources (Spec.Linux.Resources; UpdateContainer's resources) -> OCI linux.resources. */
export function grpcResourcesToOci(r: GrpcResources): OciResources {
  const out: OciResources = {};
  const devices = list(r.Devices).map(deviceRuleToOci);
  if (devices.length > 0) out.devices = devices;
  if (isMessage(r.Memory)) out.memory = memoryToOci(r.Memory);
  if (isMessage(r.CPU)) out.cpu = cpuToOci(r.CPU);
  if (isMessage(r.Pids)) out.pids = { limit: i64(r.Pids.Limit) };
  if (isMessage(r.BlockIO)) out.blockIO = blockIOToOci(r.BlockIO);
  const huge = list(r.HugepageLimits).map((h) => ({ pageSize: str(h.Pagesize), limit: u64(h.Limit) }));
  if (huge.length > 0) out.hugepageLimits = huge;
  if (isMessage(r.Network)) {
    const net: OciNetwork = {};
    const classID = u32(r.Network.ClassID);
    if (classID > 0) net.classID = classID;
    const prios = list(r.Network.Priorities).map((p) => ({ name: str(p.Name), priority: u32(p.Priority) }));
    if (prios.length > 0) net.priorities = prios;
    // An empty network object is left out: it asks for nothing, and net_cls /
    // net_prio do not exist on cgroup v2.
    if (net.classID !== undefined || net.priorities !== undefined) out.network = net;
  }
  return out;
}

function seccompToOci(s: GrpcSeccomp): OciSeccomp {
  const out: OciSeccomp = { defaultAction: str(s.DefaultAction) };
  const arches = strings(s.Architectures);
  if (arches.length > 0) out.architectures = arches;
  const flags = strings(s.Flags);
  if (flags.length > 0) out.flags = flags;
  const syscalls = list(s.Syscalls).map((sc) => {
    const call: OciSyscall = { names: strings(sc.Names), action: str(sc.Action) };
    if (sc.errnoret !== undefined && sc.errnoret !== null && ERRNO_ACTIONS.has(call.action)) {
      call.errnoRet = u32(sc.errnoret);
    }
    const args = list(sc.Args).map((a) => {
      const arg: OciSeccompArg = { index: int(a.Index), value: u64(a.Value), op: str(a.Op) };
      const two = u64(a.ValueTwo);
      if (!isZero(two)) arg.valueTwo = two;
      return arg;
    });
    if (args.length > 0) call.args = args;
    return call;
  });
  if (syscalls.length > 0) out.syscalls = syscalls;
  return out;
}

function linuxToOci(l: GrpcLinux): OciLinux {
  const out: OciLinux = {};
  const uid = list(l.UIDMappings).map(idMapToOci);
  if (uid.length > 0) out.uidMappings = uid;
  const gid = list(l.GIDMappings).map(idMapToOci);
  if (gid.length > 0) out.gidMappings = gid;
  const sysctl = stringMap(l.Sysctl);
  if (Object.keys(sysctl).length > 0) out.sysctl = sysctl;
  if (isMessage(l.Resources)) out.resources = grpcResourcesToOci(l.Resources);
  if (str(l.CgroupsPath)) out.cgroupsPath = str(l.CgroupsPath);
  const namespaces = list(l.Namespaces).map((n) => {
    const ns: OciNamespace = { type: canonicalNamespaceType(str(n.Type)) };
    if (str(n.Path)) ns.path = str(n.Path);
    return ns;
  });
  if (namespaces.length > 0) out.namespaces = namespaces;
  const devices = list(l.Devices).map(deviceToOci);
  if (devices.length > 0) out.devices = devices;
  if (isMessage(l.Seccomp)) out.seccomp = seccompToOci(l.Seccomp);
  if (str(l.RootfsPropagation)) out.rootfsPropagation = str(l.RootfsPropagation);
  const masked = strings(l.MaskedPaths);
  if (masked.length > 0) out.maskedPaths = masked;
  const ro = strings(l.ReadonlyPaths);
  if (ro.length > 0) out.readonlyPaths = ro;
  if (str(l.MountLabel)) out.mountLabel = str(l.MountLabel);
  if (isMessage(l.IntelRdt) && str(l.IntelRdt.L3CacheSchema)) {
    out.intelRdt = { l3CacheSchema: str(l.IntelRdt.L3CacheSchema) };
  }
  return out;
}

/** grpc.Spec (CreateContainer's OCI field, as decoded) -> OCI config.json object. */
export function grpcSpecToOci(spec: GrpcSpec, opts: ConvertOptions = {}): OciSpec {
  const out: OciSpec = { ociVersion: str(spec.Version) || DEFAULT_OCI_VERSION };
  if (isMessage(spec.Process)) out.process = grpcProcessToOci(spec.Process, opts);
  if (isMessage(spec.Root)) out.root = { path: str(spec.Root.Path), readonly: bool(spec.Root.Readonly) };
  if (str(spec.Hostname)) out.hostname = str(spec.Hostname);
  const mounts = list(spec.Mounts).map(mountToOci);
  if (mounts.length > 0) out.mounts = mounts;
  if (isMessage(spec.Hooks)) out.hooks = hooksToOci(spec.Hooks);
  const annotations = stringMap(spec.Annotations);
  if (Object.keys(annotations).length > 0) out.annotations = annotations;
  if (isMessage(spec.Linux)) out.linux = linuxToOci(spec.Linux);
  return out;
}

// ---------------------------------------------------------------------------
// OCI -> grpc (host side: agent-ctl, tests). Produces the decoder's shape:
// every scalar present with its default, absent messages null, 64-bit values
// beyond 2^53 as decimal strings (protobufjs fromObject accepts them).

function wire64(v: Num64 | undefined): number | string {
  if (v === undefined) return 0;
  return typeof v === 'bigint' ? v.toString() : v;
}

/** OCI process -> grpc.Process. */
export function ociProcessToGrpc(p: OciProcess): Required<GrpcProcess> {
  const c = p.capabilities;
  return {
    Terminal: p.terminal ?? false,
    ConsoleSize: p.consoleSize ? { Height: p.consoleSize.height, Width: p.consoleSize.width } : null,
    User: {
      UID: p.user?.uid ?? 0,
      GID: p.user?.gid ?? 0,
      AdditionalGids: [...(p.user?.additionalGids ?? [])],
      Username: p.user?.username ?? '',
    },
    Args: [...(p.args ?? [])],
    Env: [...(p.env ?? [])],
    Cwd: p.cwd ?? '',
    Capabilities: c
      ? {
          Bounding: [...(c.bounding ?? [])],
          Effective: [...(c.effective ?? [])],
          Inheritable: [...(c.inheritable ?? [])],
          Permitted: [...(c.permitted ?? [])],
          Ambient: [...(c.ambient ?? [])],
        }
      : null,
    Rlimits: (p.rlimits ?? []).map((r) => ({ Type: r.type, Hard: wire64(r.hard), Soft: wire64(r.soft) })),
    NoNewPrivileges: p.noNewPrivileges ?? false,
    ApparmorProfile: p.apparmorProfile ?? '',
    OOMScoreAdj: p.oomScoreAdj ?? 0,
    SelinuxLabel: p.selinuxLabel ?? '',
  };
}

/** OCI linux.resources -> grpc.LinuxResources (wildcard device numbers become 0, as Kata's hosts send them). */
export function ociResourcesToGrpc(r: OciResources): Required<GrpcResources> {
  const m = r.memory;
  const c = r.cpu;
  const b = r.blockIO;
  const throttle = (l: OciThrottleDevice[] | undefined) =>
    (l ?? []).map((t) => ({ Major: t.major, Minor: t.minor, Rate: wire64(t.rate) }));
  return {
    Devices: (r.devices ?? []).map((d) => ({
      Allow: d.allow,
      Type: d.type ?? '',
      Major: d.major ?? 0,
      Minor: d.minor ?? 0,
      Access: d.access ?? '',
    })),
    Memory: m
      ? {
          Limit: wire64(m.limit),
          Reservation: wire64(m.reservation),
          Swap: wire64(m.swap),
          Kernel: wire64(m.kernel),
          KernelTCP: wire64(m.kernelTCP),
          Swappiness: wire64(m.swappiness),
          DisableOOMKiller: m.disableOOMKiller ?? false,
        }
      : null,
    CPU: c
      ? {
          Shares: wire64(c.shares),
          Quota: wire64(c.quota),
          Period: wire64(c.period),
          RealtimeRuntime: wire64(c.realtimeRuntime),
          RealtimePeriod: wire64(c.realtimePeriod),
          Cpus: c.cpus ?? '',
          Mems: c.mems ?? '',
        }
      : null,
    Pids: r.pids ? { Limit: wire64(r.pids.limit) } : null,
    BlockIO: b
      ? {
          Weight: b.weight ?? 0,
          LeafWeight: b.leafWeight ?? 0,
          WeightDevice: (b.weightDevice ?? []).map((d) => ({
            Major: d.major,
            Minor: d.minor,
            Weight: d.weight ?? 0,
            LeafWeight: d.leafWeight ?? 0,
          })),
          ThrottleReadBpsDevice: throttle(b.throttleReadBpsDevice),
          ThrottleWriteBpsDevice: throttle(b.throttleWriteBpsDevice),
          ThrottleReadIOPSDevice: throttle(b.throttleReadIOPSDevice),
          ThrottleWriteIOPSDevice: throttle(b.throttleWriteIOPSDevice),
        }
      : null,
    HugepageLimits: (r.hugepageLimits ?? []).map((h) => ({ Pagesize: h.pageSize, Limit: wire64(h.limit) })),
    Network: r.network
      ? {
          ClassID: r.network.classID ?? 0,
          Priorities: (r.network.priorities ?? []).map((p) => ({ Name: p.name, Priority: p.priority })),
        }
      : null,
  };
}

function ociHookToGrpc(h: OciHook): Required<GrpcHook> {
  return { Path: h.path, Args: [...(h.args ?? [])], Env: [...(h.env ?? [])], Timeout: h.timeout ?? 0 };
}

function ociSeccompToGrpc(s: OciSeccomp): Required<GrpcSeccomp> {
  return {
    DefaultAction: s.defaultAction,
    Architectures: [...(s.architectures ?? [])],
    Flags: [...(s.flags ?? [])],
    Syscalls: (s.syscalls ?? []).map((sc) => {
      const call: GrpcSyscall = {
        Names: [...sc.names],
        Action: sc.action,
        Args: (sc.args ?? []).map((a) => ({
          Index: a.index,
          Value: wire64(a.value),
          ValueTwo: wire64(a.valueTwo),
          Op: a.op,
        })),
      };
      if (sc.errnoRet !== undefined) call.errnoret = sc.errnoRet;
      return call;
    }),
  };
}

function ociLinuxToGrpc(l: OciLinux): Required<GrpcLinux> {
  const idmap = (m: OciIdMapping) => ({ HostID: m.hostID, ContainerID: m.containerID, Size: m.size });
  return {
    UIDMappings: (l.uidMappings ?? []).map(idmap),
    GIDMappings: (l.gidMappings ?? []).map(idmap),
    Sysctl: { ...(l.sysctl ?? {}) },
    Resources: l.resources ? ociResourcesToGrpc(l.resources) : null,
    CgroupsPath: l.cgroupsPath ?? '',
    Namespaces: (l.namespaces ?? []).map((n) => ({ Type: n.type, Path: n.path ?? '' })),
    Devices: (l.devices ?? []).map((d) => ({
      Path: d.path,
      Type: d.type,
      Major: d.major,
      Minor: d.minor,
      FileMode: d.fileMode ?? 0,
      UID: d.uid ?? 0,
      GID: d.gid ?? 0,
    })),
    Seccomp: l.seccomp ? ociSeccompToGrpc(l.seccomp) : null,
    RootfsPropagation: l.rootfsPropagation ?? '',
    MaskedPaths: [...(l.maskedPaths ?? [])],
    ReadonlyPaths: [...(l.readonlyPaths ?? [])],
    MountLabel: l.mountLabel ?? '',
    IntelRdt: l.intelRdt ? { L3CacheSchema: l.intelRdt.l3CacheSchema ?? '' } : null,
  };
}

/** OCI config.json object -> grpc.Spec (what a Kata host sends). */
export function ociSpecToGrpc(spec: OciSpec): Required<GrpcSpec> {
  const h = spec.hooks;
  return {
    Version: spec.ociVersion ?? '',
    Process: spec.process ? ociProcessToGrpc(spec.process) : null,
    Root: spec.root ? { Path: spec.root.path, Readonly: spec.root.readonly ?? false } : null,
    Hostname: spec.hostname ?? '',
    Mounts: (spec.mounts ?? []).map((m) => ({
      destination: m.destination,
      source: m.source ?? '',
      type: m.type ?? '',
      options: [...(m.options ?? [])],
    })),
    Hooks: h
      ? {
          Prestart: (h.prestart ?? []).map(ociHookToGrpc),
          Poststart: (h.poststart ?? []).map(ociHookToGrpc),
          Poststop: (h.poststop ?? []).map(ociHookToGrpc),
          CreateRuntime: (h.createRuntime ?? []).map(ociHookToGrpc),
          CreateContainer: (h.createContainer ?? []).map(ociHookToGrpc),
          StartContainer: (h.startContainer ?? []).map(ociHookToGrpc),
        }
      : null,
    Annotations: { ...(spec.annotations ?? {}) },
    Linux: spec.linux ? ociLinuxToGrpc(spec.linux) : null,
    Solaris: null,
    Windows: null,
  };
}

// ---------------------------------------------------------------------------
// JSON

/**
 * JSON text of an OCI object, like JSON.stringify(value, null, indent) but
 * writing bigint values as plain integers (uint64 limits such as
 * RLIM_INFINITY = 18446744073709551615 that a Number cannot hold).
 */
export function ociSpecToJson(value: unknown, indent = 0): string {
  const nl = (depth: number) => (indent > 0 ? `\n${' '.repeat(indent * depth)}` : '');
  const colon = indent > 0 ? ': ' : ':';
  const walk = (v: unknown, depth: number): string | undefined => {
    if (v === null) return 'null';
    switch (typeof v) {
      case 'bigint':
        return v.toString();
      case 'number':
        return Number.isFinite(v) ? JSON.stringify(v) : 'null';
      case 'string':
        return JSON.stringify(v);
      case 'boolean':
        return v ? 'true' : 'false';
      case 'object':
        break;
      default:
        return undefined;
    }
    if (Array.isArray(v)) {
      if (v.length === 0) return '[]';
      const items = v.map((x) => `${nl(depth + 1)}${walk(x, depth + 1) ?? 'null'}`);
      return `[${items.join(',')}${nl(depth)}]`;
    }
    const parts: string[] = [];
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      const s = walk(x, depth + 1);
      if (s !== undefined) parts.push(`${nl(depth + 1)}${JSON.stringify(k)}${colon}${s}`);
    }
    return parts.length === 0 ? '{}' : `{${parts.join(',')}${nl(depth)}}`;
  };
  return walk(value, 0) ?? 'null';
}

// ---------------------------------------------------------------------------
// Validation of what the host sent (grpc field names in the messages)

const isAbsolute = (p: string): boolean => p.startsWith('/');

/** The parts of a sysctl name ("net.ipv4.ip_forward" or "net/ipv4/conf/eth0.1/forwarding"), or undefined if malformed. */
function sysctlParts(key: string): string[] | undefined {
  const parts = key.includes('/') ? key.split('/') : key.split('.');
  if (parts.length < 2 || parts.some((p) => p === '' || p === '.' || p === '..')) return undefined;
  return parts;
}

/** True for a sysctl of the network namespace ("net.*"). */
export function isNetSysctl(key: string): boolean {
  return sysctlParts(key)?.[0] === 'net';
}

function firstNul(v: unknown, where: string, maps: ReadonlySet<string>, depth = 0): string | undefined {
  if (depth > 16) return undefined;
  if (typeof v === 'string') return v.includes('\0') ? where : undefined;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) {
      const r = firstNul(v[i], `${where}[${i}]`, maps, depth + 1);
      if (r) return r;
    }
    return undefined;
  }
  if (v === null || typeof v !== 'object') return undefined;
  const isMap = maps.has(where.slice(where.lastIndexOf('.') + 1));
  for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
    const name = isMap ? `${where}[${q(k)}]` : where ? `${where}.${k}` : k;
    if (k.includes('\0')) return `${where || 'Spec'} key ${q(k)}`;
    const r = firstNul(x, name, maps, depth + 1);
    if (r) return r;
  }
  return undefined;
}

const MAP_FIELDS: ReadonlySet<string> = new Set(['Annotations', 'Sysctl']);

/** "<field> contains a NUL byte" for the first string (or map key) holding one: C runtimes would cut it there. */
function nulProblem(v: unknown, where: string): string | undefined {
  const at = firstNul(v, where, MAP_FIELDS);
  return at === undefined ? undefined : `${at} contains a NUL byte`;
}

/** Why a grpc.Process is unusable (field names prefixed with `where`), or undefined. */
export function processProblem(p: GrpcProcess | null | undefined, where = 'Process'): string | undefined {
  if (!isMessage(p)) return `${where} is missing`;
  const args = list(p.Args);
  if (args.length === 0) return `${where}.Args is empty`;
  if (typeof args[0] !== 'string' || args[0] === '') return `${where}.Args[0] is empty`;
  const cwd = str(p.Cwd);
  if (cwd !== '' && !isAbsolute(cwd)) return `${where}.Cwd ${q(cwd)} is not an absolute path`;
  if (isMessage(p.Capabilities)) {
    for (const set of ['Bounding', 'Effective', 'Inheritable', 'Permitted', 'Ambient'] as const) {
      const caps = strings(p.Capabilities[set]);
      for (let i = 0; i < caps.length; i++) {
        if (!CAPABILITIES.has(normalizeCapability(caps[i]!))) {
          return `${where}.Capabilities.${set}[${i}] ${q(caps[i]!)} is unknown`;
        }
      }
    }
  }
  const rlimits = list(p.Rlimits);
  for (let i = 0; i < rlimits.length; i++) {
    const r = rlimits[i]!;
    if (!RLIMIT_TYPES.has(str(r.Type))) return `${where}.Rlimits[${i}].Type ${q(str(r.Type))} is unknown`;
    if (u64(r.Soft) > u64(r.Hard)) return `${where}.Rlimits[${i}] (${str(r.Type)}) soft limit exceeds hard limit`;
  }
  const oom = int(p.OOMScoreAdj);
  if (oom < -1000 || oom > 1000) return `${where}.OOMScoreAdj ${oom} is out of range (-1000..1000)`;
  return nulProblem(p, where);
}

const PAGE_SIZE_RE = /^[1-9]\d*(KB|MB|GB|TB|PB)$/;
const CPU_LIST_RE = /^\d+(-\d+)?(,\d+(-\d+)?)*$/;

/** Why a grpc.LinuxResources is unusable (field names prefixed with `where`), or undefined. */
export function resourcesProblem(r: GrpcResources | null | undefined, where = 'Resources'): string | undefined {
  if (!isMessage(r)) return undefined;
  const devices = list(r.Devices);
  for (let i = 0; i < devices.length; i++) {
    const d = devices[i]!;
    if (!DEVICE_RULE_TYPES.has(str(d.Type))) return `${where}.Devices[${i}].Type ${q(str(d.Type))} is unknown`;
    if (!/^[rwm]*$/.test(str(d.Access))) return `${where}.Devices[${i}].Access ${q(str(d.Access))} is not a subset of "rwm"`;
  }
  if (isMessage(r.Memory)) {
    const sw = u64(r.Memory.Swappiness);
    // 2^64-1 is Docker's "-1" (use the default); runc ignores it too.
    if (sw > 100 && sw !== U64_MAX) return `${where}.Memory.Swappiness ${sw} is out of range (0..100)`;
  }
  if (isMessage(r.CPU)) {
    for (const f of ['Cpus', 'Mems'] as const) {
      const v = str(r.CPU[f]);
      if (v !== '' && !CPU_LIST_RE.test(v.replace(/\s+/g, ''))) return `${where}.CPU.${f} ${q(v)} is not a list like "0-3,5"`;
    }
  }
  const huge = list(r.HugepageLimits);
  for (let i = 0; i < huge.length; i++) {
    const ps = str(huge[i]!.Pagesize);
    if (!PAGE_SIZE_RE.test(ps)) return `${where}.HugepageLimits[${i}].Pagesize ${q(ps)} is not a page size like "2MB"`;
  }
  return undefined;
}

function seccompProblem(s: GrpcSeccomp, where: string): string | undefined {
  const def = str(s.DefaultAction);
  if (!SECCOMP_ACTIONS.has(def)) return `${where}.DefaultAction ${q(def)} is unknown`;
  const arches = strings(s.Architectures);
  for (let i = 0; i < arches.length; i++) {
    if (!SECCOMP_ARCHES.has(arches[i]!)) return `${where}.Architectures[${i}] ${q(arches[i]!)} is unknown`;
  }
  const flags = strings(s.Flags);
  for (let i = 0; i < flags.length; i++) {
    if (!SECCOMP_FLAGS.has(flags[i]!)) return `${where}.Flags[${i}] ${q(flags[i]!)} is unknown`;
  }
  const calls = list(s.Syscalls);
  for (let i = 0; i < calls.length; i++) {
    const c = calls[i]!;
    const at = `${where}.Syscalls[${i}]`;
    const names = strings(c.Names);
    if (names.length === 0) return `${at}.Names is empty`;
    const blank = names.findIndex((n) => n === '');
    if (blank >= 0) return `${at}.Names[${blank}] is empty`;
    if (!SECCOMP_ACTIONS.has(str(c.Action))) return `${at}.Action ${q(str(c.Action))} is unknown`;
    const args = list(c.Args);
    for (let j = 0; j < args.length; j++) {
      const a = args[j]!;
      if (!SECCOMP_OPERATORS.has(str(a.Op))) return `${at}.Args[${j}].Op ${q(str(a.Op))} is unknown`;
      const index = u64(a.Index);
      if (index > 5) return `${at}.Args[${j}].Index ${index} is out of range (0..5)`;
    }
  }
  return undefined;
}

function sysctlProblem(key: string, has: (t: string) => boolean, where: string): string | undefined {
  const parts = sysctlParts(key);
  if (!parts) return `${where}[${q(key)}] is not a valid sysctl name`;
  const name = parts.join('.');
  if (parts[0] === 'net') return undefined; // applied in the guest's network namespace
  if (IPC_SYSCTLS.has(name) || (parts[0] === 'fs' && parts[1] === 'mqueue')) {
    return has('ipc') ? undefined : `${where}[${q(key)}] requires an ipc namespace`;
  }
  if (name === 'kernel.domainname') return has('uts') ? undefined : `${where}[${q(key)}] requires a uts namespace`;
  if (name === 'kernel.hostname') return `${where}[${q(key)}] is not allowed (use Hostname)`;
  return `${where}[${q(key)}] is not namespaced`;
}

function linuxProblem(spec: GrpcSpec, l: GrpcLinux): string | undefined {
  const namespaces = list(l.Namespaces);
  const seen = new Set<string>();
  for (let i = 0; i < namespaces.length; i++) {
    const raw = str(namespaces[i]!.Type);
    const type = canonicalNamespaceType(raw);
    if (!NAMESPACE_TYPES.has(type)) return `Linux.Namespaces[${i}].Type ${q(raw)} is unknown`;
    if (seen.has(type)) return `Linux.Namespaces[${i}].Type ${q(raw)} is duplicated`;
    seen.add(type);
  }
  const has = (t: string) => seen.has(t);
  // Kata rustjail validator.rs: hostname(), usernamespace(), security(), sysctl().
  if (str(spec.Hostname) && !has('uts')) return 'Hostname is set but Linux.Namespaces has no uts namespace';
  for (const f of ['UIDMappings', 'GIDMappings'] as const) {
    const maps = list(l[f]);
    if (has('user')) {
      if (!maps.some((m) => u32(m.Size) > 0)) return `Linux.${f} has no mapping with Size > 0`;
    } else if (maps.length > 0) {
      return `Linux.${f} is set but Linux.Namespaces has no user namespace`;
    }
  }
  for (const f of ['MaskedPaths', 'ReadonlyPaths'] as const) {
    const paths = strings(l[f]);
    if (paths.length > 0 && !has('mount')) return `Linux.${f} is set but Linux.Namespaces has no mount namespace`;
    const rel = paths.findIndex((p) => !isAbsolute(p));
    if (rel >= 0) return `Linux.${f}[${rel}] ${q(paths[rel]!)} is not an absolute path`;
  }
  for (const key of Object.keys(stringMap(l.Sysctl))) {
    const p = sysctlProblem(key, has, 'Linux.Sysctl');
    if (p) return p;
  }
  const devices = list(l.Devices);
  for (let i = 0; i < devices.length; i++) {
    const d = devices[i]!;
    if (!DEVICE_TYPES.has(str(d.Type))) return `Linux.Devices[${i}].Type ${q(str(d.Type))} is unknown`;
    if (!isAbsolute(str(d.Path))) return `Linux.Devices[${i}].Path ${q(str(d.Path))} is not an absolute path`;
  }
  const res = resourcesProblem(l.Resources, 'Linux.Resources');
  if (res) return res;
  if (isMessage(l.Seccomp)) {
    const sec = seccompProblem(l.Seccomp, 'Linux.Seccomp');
    if (sec) return sec;
  }
  const prop = str(l.RootfsPropagation);
  if (prop !== '' && !ROOTFS_PROPAGATIONS.has(prop)) return `Linux.RootfsPropagation ${q(prop)} is unknown`;
  return undefined;
}

/**
 * The first structural problem of a CreateContainer grpc.Spec, as a message
 * naming the field ("Process.Args is empty", "Root is missing",
 * 'Linux.Namespaces[2].Type "foo" is unknown'), or undefined if none.
 * Includes the checks of Kata's rustjail validator.rs that do not need the
 * file system, and the names crun would reject later.
 */
export function specProblem(spec: GrpcSpec | null | undefined): string | undefined {
  if (!isMessage(spec)) return 'Spec is missing';
  const proc = processProblem(spec.Process, 'Process');
  if (proc) return proc;
  if (!isMessage(spec.Root)) return 'Root is missing';
  if (!isMessage(spec.Linux)) return 'Linux is missing';
  const mounts = list(spec.Mounts);
  for (let i = 0; i < mounts.length; i++) {
    if (str(mounts[i]!.destination) === '') return `Mounts[${i}].destination is empty`;
  }
  if (isMessage(spec.Hooks)) {
    for (const [g] of HOOK_FIELDS) {
      const hooks = list(spec.Hooks[g]);
      for (let i = 0; i < hooks.length; i++) {
        const p = str(hooks[i]!.Path);
        if (!isAbsolute(p)) return `Hooks.${g}[${i}].Path ${q(p)} is not an absolute path`;
      }
    }
  }
  return linuxProblem(spec, spec.Linux) ?? nulProblem(spec, '');
}

/** Throws RpcError(INVALID_ARGUMENT) naming the first problem of a CreateContainer spec. */
export function validateSpec(spec: GrpcSpec | null | undefined): void {
  const p = specProblem(spec);
  if (p !== undefined) throw new RpcError(Code.INVALID_ARGUMENT, p);
}

/** Throws RpcError(INVALID_ARGUMENT) naming the first problem of an ExecProcess process. */
export function validateProcess(p: GrpcProcess | null | undefined, where = 'Process'): void {
  const problem = processProblem(p, where);
  if (problem !== undefined) throw new RpcError(Code.INVALID_ARGUMENT, problem);
}

/** Throws RpcError(INVALID_ARGUMENT) naming the first problem of UpdateContainer resources. */
export function validateResources(r: GrpcResources | null | undefined, where = 'Resources'): void {
  const problem = resourcesProblem(r, where) ?? nulProblem(r, where);
  if (problem !== undefined) throw new RpcError(Code.INVALID_ARGUMENT, problem);
}

// ---------------------------------------------------------------------------
// The guest rewrite

/** Where Kata's hosts put a container's rootfs in the guest (kataGuestSharedDir()/<cid>/rootfs). */
export const KATA_GUEST_SHARED_DIR = '/run/kata-containers/shared/containers';

export function defaultRootfsPath(containerId: string): string {
  return `${KATA_GUEST_SHARED_DIR}/${containerId}/rootfs`;
}

export interface GuestHooks {
  prestart?: OciHook[];
  poststart?: OciHook[];
  poststop?: OciHook[];
}

export interface GuestContext {
  containerId: string;
  /** Informational (not used by the rewrite). */
  sandboxId?: string;
  /**
   * The container's root in the guest. Default: the spec's root.path when
   * absolute (Kata's hosts set it to the guest path), else
   * /run/kata-containers/shared/containers/<cid>/rootfs. A relative value is
   * resolved against bundleDir.
   */
  rootfsPath?: string;
  bundleDir?: string;
  /** CreateContainerRequest.sandbox_pidns: join the sandbox's pid namespace. */
  sandboxPidns: boolean;
  /** Namespace files of the sandbox to join (persisted by CreateSandbox / the first container). */
  sharedNamespaces?: { ipc?: string; uts?: string; pid?: string };
  /** linux.cgroupsPath in the guest (computed by the caller). */
  cgroupsPath: string;
  /** The guest's own OCI hooks (Kata: guest_hooks_path), appended to the spec's. */
  guestHooks?: GuestHooks;
  /**
   * true (default): remove the network namespace entry, so the container
   * stays in the guest's network namespace (the VM's network, set up by the
   * agent), as Kata's hosts do. false: keep the entry without its host path
   * (a new, unconnected network namespace: tests only).
   */
  dropNetworkNamespacePath?: boolean;
  /** LSMs the guest kernel enforces; labels/profiles for others are dropped (default: none). */
  lsm?: { apparmor?: boolean; selinux?: boolean };
}

export interface GuestRewrite {
  spec: OciSpec;
  /** What was dropped or changed beyond the routine rewrite; for the log. */
  warnings: string[];
  /**
   * net.* sysctls moved out of the spec when the container shares the guest's
   * network namespace (crun and runc refuse them without a network namespace
   * of the container's own). The caller applies them in the guest's network
   * namespace (/proc/sys/net/...), as Kata's agent does by writing them from
   * inside the container. Keys as the host wrote them ('.' or '/' separated).
   */
  netSysctls: Record<string, string>;
}

function resolveRootfs(spec: OciSpec, ctx: GuestContext, warnings: string[]): string {
  if (ctx.rootfsPath) {
    return ctx.bundleDir && !path.posix.isAbsolute(ctx.rootfsPath)
      ? path.posix.resolve(ctx.bundleDir, ctx.rootfsPath)
      : ctx.rootfsPath;
  }
  const given = spec.root?.path ?? '';
  if (path.posix.isAbsolute(given)) return path.posix.resolve(given);
  const fallback = defaultRootfsPath(ctx.containerId);
  if (given) warnings.push(`root.path ${q(given)} is relative to the host's bundle; using ${fallback}`);
  return fallback;
}

/**
 * Make an OCI spec from a Kata host runnable in the guest (Kata: rpc.rs
 * do_create_container, update_container_namespaces, append_guest_hooks;
 * rustjail validator/container; the hosts' constrainGRPCSpec / amend_spec).
 * Returns a new spec; `oci` is not modified.
 *
 * - root.path := the guest rootfs (see GuestContext.rootfsPath); readonly kept.
 * - namespaces: host paths are meaningless in the guest and never used.
 *   network: removed (see dropNetworkNamespacePath), net.* sysctls moved to
 *   `netSysctls`. time: removed (Kata's hosts drop it; the agent does not
 *   support it). ipc, uts: join the sandbox's namespace when given, else a new
 *   one (only entries the spec has are touched, as Kata). pid: every pid
 *   entry replaced by one: the sandbox's pid namespace when sandboxPidns and
 *   a path is known, else a new one (the first container of a shared-pidns
 *   sandbox creates it; refusing a later container without one, as Kata's
 *   ERR_NO_SANDBOX_PIDNS, is the caller's business). mount, user, cgroup: a
 *   new one. A mount namespace is added if missing: without one the runtime
 *   would set up the container's mounts in the agent's own namespace.
 * - hostname: dropped when joining the sandbox's uts namespace (Kata's
 *   rustjail sets the hostname only in a new uts namespace; the sandbox's was
 *   named by CreateSandbox).
 * - linux.cgroupsPath := ctx.cgroupsPath.
 * - guest hooks appended to prestart/poststart/poststop (Kata's
 *   append_guest_hooks merges prestart into poststart; we do not).
 * - process.apparmorProfile, process.selinuxLabel, linux.mountLabel: dropped
 *   unless ctx.lsm says the guest enforces that LSM (host profile names do
 *   not exist in the guest; Kata's agent applies no AppArmor and its hosts
 *   clear SELinux labels unless guest SELinux is enabled).
 * - kept as sent: mounts, devices, resources (incl. device rules), seccomp,
 *   capabilities, rlimits, masked/readonly paths, annotations, hooks.
 */
export function rewriteForGuest(oci: OciSpec, ctx: GuestContext): GuestRewrite {
  const spec = structuredClone(oci);
  const warnings: string[] = [];
  const netSysctls: Record<string, string> = {};
  const shared = ctx.sharedNamespaces ?? {};
  const dropNetwork = ctx.dropNetworkNamespacePath !== false;

  spec.root = { ...(spec.root ?? {}), path: resolveRootfs(spec, ctx, warnings) };
  const linux: OciLinux = (spec.linux ??= {});

  const namespaces: OciNamespace[] = [];
  let joinedUts = false;
  let hasMount = false;
  const ignoredPath = (ns: OciNamespace) => {
    if (ns.path) warnings.push(`ignored the host path ${q(ns.path)} of the ${ns.type} namespace`);
  };
  for (const entry of linux.namespaces ?? []) {
    const ns: OciNamespace = { ...entry, type: canonicalNamespaceType(entry.type) };
    switch (ns.type) {
      case 'network':
        if (dropNetwork) {
          warnings.push(
            `dropped the network namespace${ns.path ? ` (host path ${q(ns.path)})` : ''}: ` +
              "the container shares the guest's network namespace",
          );
        } else {
          ignoredPath(ns);
          namespaces.push({ type: 'network' });
        }
        break;
      case 'time':
        warnings.push(`dropped the time namespace${ns.path ? ` (host path ${q(ns.path)})` : ''}`);
        break;
      case 'pid':
        break; // replaced below
      case 'ipc':
      case 'uts': {
        const join = shared[ns.type];
        if (join) {
          namespaces.push({ type: ns.type, path: join });
          if (ns.type === 'uts') joinedUts = true;
        } else {
          ignoredPath(ns);
          namespaces.push({ type: ns.type });
        }
        break;
      }
      default:
        ignoredPath(ns);
        if (ns.type === 'mount') hasMount = true;
        namespaces.push({ type: ns.type });
    }
  }
  if (!hasMount) {
    warnings.push('added a mount namespace: the spec has none');
    namespaces.push({ type: 'mount' });
  }
  const pidPath = ctx.sandboxPidns ? shared.pid : undefined;
  namespaces.push(pidPath ? { type: 'pid', path: pidPath } : { type: 'pid' });
  linux.namespaces = namespaces;

  if (joinedUts && spec.hostname !== undefined) delete spec.hostname;

  if (dropNetwork && linux.sysctl) {
    for (const [k, v] of Object.entries(linux.sysctl)) {
      if (isNetSysctl(k)) {
        netSysctls[k] = v;
        delete linux.sysctl[k];
      }
    }
    if (Object.keys(linux.sysctl).length === 0) delete linux.sysctl;
  }

  linux.cgroupsPath = ctx.cgroupsPath;

  const gh = ctx.guestHooks;
  if (gh && (gh.prestart?.length || gh.poststart?.length || gh.poststop?.length)) {
    const hooks: OciHooks = (spec.hooks ??= {});
    for (const k of ['prestart', 'poststart', 'poststop'] as const) {
      const extra = gh[k];
      if (extra && extra.length > 0) hooks[k] = [...(hooks[k] ?? []), ...structuredClone(extra)];
    }
  }

  const lsm = ctx.lsm ?? {};
  if (spec.process?.apparmorProfile && !lsm.apparmor) {
    warnings.push(`dropped process.apparmorProfile ${q(spec.process.apparmorProfile)}: no AppArmor in the guest`);
    delete spec.process.apparmorProfile;
  }
  if (!lsm.selinux) {
    if (spec.process?.selinuxLabel) {
      warnings.push(`dropped process.selinuxLabel ${q(spec.process.selinuxLabel)}: no SELinux in the guest`);
      delete spec.process.selinuxLabel;
    }
    if (linux.mountLabel) {
      warnings.push(`dropped linux.mountLabel ${q(linux.mountLabel)}: no SELinux in the guest`);
      delete linux.mountLabel;
    }
  }

  return { spec, warnings, netSysctls };
}
