// Storage drivers (Storage.driver): each turns a StorageSpec into a plan (what
// to mount from where, with which flags and data, after which preparations);
// realise() carries a plan out at the confined mount point and teardown()
// undoes it. Names and mappings follow Kata's agent (src/agent/src/storage/
// {fs,block,ephemeral,local}_handler.rs, mount.rs), plus a plain "bind" driver.
import { cancelled, raceAbort } from '../sandbox/abort';
import { Code, RpcError, toStatus } from '../rpc/status';
import { MNT, MS, UMOUNT_NOFOLLOW } from '../sys/mount';
import { confine, fsFailure, removeCreated, type TargetKind } from './confine';
import { MODE_SETGID } from './fsgroup';
import { PER_MOUNT_FLAGS, optionValue, parseOptions, parseSize, withoutOption, type ParsedOptions } from './options';
import type { StorageDeps, StorageSpec } from './types';

export const DEFAULT_HUGEPAGES_DIR = '/sys/kernel/mm/hugepages';

/** Kata's KATA_MOUNT_OPTION_FS_GID. */
export const FSGID_OPTION = 'fsgid';
/** Kata's rw-overlay marker: upper/work directories under <root>/<container id>/. */
export const OVERLAY_RW_OPTION = 'io.katacontainers.fs-opt.overlay-rw';

export interface DriverContext {
  deps: StorageDeps;
  /** The storage root (configuration). */
  root: string;
  /** Who asks (a container id for CreateContainer storages). */
  owner: string;
  signal?: AbortSignal;
  /** Huge pages of this size (kB) that live hugetlbfs storages already count on. */
  hugepagesInUse(pageSizeKb: number): number;
}

export interface MountPlan {
  type: 'mount';
  kind: TargetKind;
  source: string;
  fstype: string;
  opts: ParsedOptions;
  /** The block device a block driver resolved its source to. */
  device?: string;
  /** virtio-fs / 9p: the same share already mounted at the mount point is adopted, not remounted. */
  adoptExisting?: boolean;
  /** bind: per-mount flags applied afterwards with MS_REMOUNT|MS_BIND. */
  bindRemountFlags?: number;
  /** ephemeral: chown the root to this group and set its setgid bit after mounting. */
  fsgid?: number;
  hugepages?: { pageSizeKb: number; pages: number };
  /** Created while planning (overlay upper/work directories); removed if realising fails. */
  created: string[];
}

export interface DirectoryPlan {
  type: 'directory';
  mode?: number;
  fsgid?: number;
}

export type Plan = MountPlan | DirectoryPlan;

export interface Prepared {
  state: 'mounted' | 'premounted' | 'directory';
  /** The real mount point. */
  mountPoint: string;
  /** Made on the way (innermost last); removed at teardown when empty. */
  created: string[];
  /** What was mounted (mount plans). */
  source?: string;
  fstype?: string;
  device?: string;
  /** Flag words of the original mount (kept by remounts). */
  flagWords: string[];
  dataWords: string[];
  hugepages?: { pageSizeKb: number; pages: number; raisedFrom?: number };
}

// ---------------------------------------------------------------------------
// helpers

function where(spec: StorageSpec): string {
  return `${spec.driver} storage ${JSON.stringify(spec.mountPoint)}`;
}

function invalid(spec: StorageSpec, msg: string): RpcError {
  return new RpcError(Code.INVALID_ARGUMENT, `${where(spec)}: ${msg}`);
}

function errCode(e: unknown): string | undefined {
  const c = (e as { code?: unknown } | null)?.code;
  return typeof c === 'string' ? c : undefined;
}

/** "EBUSY (16)" for a SysError, the code or message otherwise. */
export function errnoText(e: unknown): string {
  const o = e as { code?: unknown; errno?: unknown; message?: unknown } | null;
  if (typeof o?.code === 'string') {
    if (typeof o.errno !== 'number') return o.code;
    const n = Math.abs(o.errno);
    return `${o.code} (${n})`;
  }
  return typeof o?.message === 'string' ? o.message : String(e);
}

function fstypeOf(spec: StorageSpec, allowed: readonly string[]): string {
  const t = spec.fstype === '' ? allowed[0]! : spec.fstype;
  if (!allowed.includes(t)) {
    throw invalid(spec, `fstype ${JSON.stringify(spec.fstype)} is not valid for this driver (use ${allowed.map((a) => JSON.stringify(a)).join(' or ')})`);
  }
  return t;
}

function noOperations(spec: StorageSpec, opts: ParsedOptions): void {
  if (opts.operations.length > 0) {
    throw invalid(spec, `the option ${JSON.stringify(opts.operations[0])} is not valid here${opts.operations[0] === 'remount' ? ' (remounts come through UpdateEphemeralMounts)' : ''}`);
  }
}

function parseGid(spec: StorageSpec, v: string): number {
  if (!/^\d+$/.test(v) || Number(v) > 0xffffffff) throw invalid(spec, `${FSGID_OPTION}=${v} is not a group id`);
  return Number(v);
}

function mountPlan(spec: StorageSpec, p: Omit<MountPlan, 'type' | 'kind' | 'created'> & { kind?: TargetKind; created?: string[] }): MountPlan {
  noOperations(spec, p.opts);
  return { type: 'mount', kind: 'dir', created: [], ...p };
}

async function resolveDevice(
  ctx: DriverContext,
  spec: StorageSpec,
  what: string,
  call: (signal?: AbortSignal) => Promise<{ path: string }>,
): Promise<string> {
  if (ctx.signal?.aborted) throw cancelled(`${where(spec)}: waiting for ${what}`, ctx.signal);
  try {
    const r = await raceAbort(call(ctx.signal), ctx.signal, `${where(spec)}: waiting for ${what}`);
    if (!r || typeof r.path !== 'string' || r.path === '') throw new RpcError(Code.INTERNAL, `no device path for ${what}`);
    return r.path;
  } catch (e) {
    const st = toStatus(e);
    if (e instanceof RpcError && st.message.startsWith(where(spec))) throw e;
    throw new RpcError(st.code, `${where(spec)}: ${what}: ${st.message}`);
  }
}

function requireFstype(spec: StorageSpec): string {
  if (spec.fstype === '') throw invalid(spec, 'fstype is empty (a block device needs its file system type, e.g. ext4)');
  return spec.fstype;
}

// ---------------------------------------------------------------------------
// drivers

type Planner = (spec: StorageSpec, ctx: DriverContext) => Promise<Plan> | Plan;

function virtioFs(spec: StorageSpec): Plan {
  const fstype = fstypeOf(spec, ['virtiofs']);
  if (spec.source === '') throw invalid(spec, 'source (the virtio-fs tag) is empty');
  return mountPlan(spec, { source: spec.source, fstype, opts: parseOptions(spec.options, where(spec)), adoptExisting: true });
}

function ninep(spec: StorageSpec): Plan {
  const fstype = fstypeOf(spec, ['9p']);
  if (spec.source === '') throw invalid(spec, 'source (the 9p mount tag) is empty');
  const words: string[] = [];
  if (optionValue(spec.options, 'trans') === undefined) words.push('trans=virtio');
  if (optionValue(spec.options, 'version') === undefined) words.push('version=9p2000.L');
  words.push(...spec.options);
  return mountPlan(spec, { source: spec.source, fstype, opts: parseOptions(words, where(spec)), adoptExisting: true });
}

const PCI_PATH = /^[0-9a-f]{1,2}(\/[0-9a-f]{1,2})*$/i;

async function blk(spec: StorageSpec, ctx: DriverContext): Promise<Plan> {
  const fstype = requireFstype(spec);
  const opts = parseOptions(spec.options, where(spec));
  noOperations(spec, opts);
  let device: string;
  if (spec.source.startsWith('/dev/')) {
    // Kata: a cold-plugged disk named by its node; it must be a block device.
    const st = ctx.deps.fs.stat(spec.source);
    if (!st) throw new RpcError(Code.NOT_FOUND, `${where(spec)}: device ${spec.source} does not exist`);
    if (st.kind !== 'block') throw invalid(spec, `${spec.source} is not a block device`);
    device = spec.source;
  } else {
    if (!PCI_PATH.test(spec.source)) throw invalid(spec, `source ${JSON.stringify(spec.source)} is not a PCI path (like "02/01") or a /dev node`);
    device = await resolveDevice(ctx, spec, `virtio-blk device at PCI path ${spec.source}`, (s) => ctx.deps.devices.pciBlock(spec.source, s));
  }
  return mountPlan(spec, { source: device, fstype, opts, device });
}

async function mmioblk(spec: StorageSpec, ctx: DriverContext): Promise<Plan> {
  const fstype = requireFstype(spec);
  const opts = parseOptions(spec.options, where(spec));
  noOperations(spec, opts);
  if (!/^\/dev\/[^/]+$/.test(spec.source) || spec.source === '/dev/..' || spec.source === '/dev/.') {
    throw invalid(spec, `source ${JSON.stringify(spec.source)} is not a device node like /dev/vdb`);
  }
  const device = await resolveDevice(ctx, spec, `virtio-mmio block device ${spec.source}`, (s) => ctx.deps.devices.mmioBlock(spec.source, s));
  return mountPlan(spec, { source: device, fstype, opts, device });
}

async function scsi(spec: StorageSpec, ctx: DriverContext): Promise<Plan> {
  const fstype = requireFstype(spec);
  const opts = parseOptions(spec.options, where(spec));
  noOperations(spec, opts);
  if (!/^\d+:\d+$/.test(spec.source)) throw invalid(spec, `source ${JSON.stringify(spec.source)} is not a SCSI address "target:lun"`);
  const device = await resolveDevice(ctx, spec, `SCSI device ${spec.source}`, (s) => ctx.deps.devices.scsiBlock(spec.source, s));
  return mountPlan(spec, { source: device, fstype, opts, device });
}

async function nvdimm(spec: StorageSpec, ctx: DriverContext): Promise<Plan> {
  const fstype = requireFstype(spec);
  // "dax" (when the host asks for it) is a data word and goes to the file system as is.
  const opts = parseOptions(spec.options, where(spec));
  noOperations(spec, opts);
  if (!/^\/dev\/pmem\d+$/.test(spec.source)) throw invalid(spec, `source ${JSON.stringify(spec.source)} is not a /dev/pmemN node`);
  const device = await resolveDevice(ctx, spec, `nvdimm device ${spec.source}`, (s) => ctx.deps.devices.pmem(spec.source, s));
  return mountPlan(spec, { source: device, fstype, opts, device });
}

function ephemeral(spec: StorageSpec, ctx: DriverContext): Plan {
  const fstype = fstypeOf(spec, ['tmpfs', 'hugetlbfs']);
  const source = spec.source === '' ? fstype : spec.source;
  const gidText = optionValue(spec.options, FSGID_OPTION);
  const fsgid = gidText === undefined ? undefined : parseGid(spec, gidText);
  const words = withoutOption(spec.options, FSGID_OPTION);
  const opts = parseOptions(words, where(spec));
  if (fstype === 'tmpfs') return mountPlan(spec, { source, fstype, opts, fsgid });

  // hugetlbfs: the pool of the page size must hold `size` before the mount (Kata: allocate_hugepages).
  const ps = optionValue(words, 'pagesize');
  const sz = optionValue(words, 'size');
  if (ps === undefined || sz === undefined) throw invalid(spec, 'hugetlbfs needs both pagesize= and size= options');
  const pageSize = parseSize(ps);
  const size = parseSize(sz);
  if (!pageSize || pageSize % 1024 !== 0) throw invalid(spec, `pagesize=${ps} is not a page size`);
  if (size === undefined || size === 0) throw invalid(spec, `size=${sz} is not a size in bytes (k/M/G suffixes allowed)`);
  const pageSizeKb = pageSize / 1024;
  const dir = `${ctx.deps.hugepagesDir ?? DEFAULT_HUGEPAGES_DIR}/hugepages-${pageSizeKb}kB`;
  if (!ctx.deps.fs.stat(dir)) throw invalid(spec, `huge pages of ${ps} are not supported by this kernel (no ${dir})`);
  return mountPlan(spec, { source, fstype, opts, fsgid, hugepages: { pageSizeKb, pages: Math.ceil(size / pageSize) } });
}

function local(spec: StorageSpec): Plan {
  const gidText = optionValue(spec.options, FSGID_OPTION);
  const modeText = optionValue(spec.options, 'mode');
  const plan: DirectoryPlan = { type: 'directory' };
  if (gidText !== undefined) plan.fsgid = parseGid(spec, gidText);
  if (modeText !== undefined) {
    if (!/^[0-7]{1,5}$/.test(modeText) || parseInt(modeText, 8) > 0o7777) throw invalid(spec, `mode=${modeText} is not an octal file mode`);
    plan.mode = parseInt(modeText, 8);
  }
  return plan;
}

function overlayfs(spec: StorageSpec, ctx: DriverContext): Plan {
  const fstype = fstypeOf(spec, ['overlay']);
  const source = spec.source === '' ? 'overlay' : spec.source;
  let words = [...spec.options];
  const rw = words.includes(OVERLAY_RW_OPTION);
  words = words.filter((w) => w !== OVERLAY_RW_OPTION);
  if (optionValue(words, 'lowerdir') === undefined) throw invalid(spec, 'overlay needs a lowerdir= option');
  let upper = optionValue(words, 'upperdir');
  let work = optionValue(words, 'workdir');
  if (rw) {
    // Kata: <CONTAINER_BASE>/<container id>/{upper,work} for a writable overlay.
    if (upper !== undefined || work !== undefined) throw invalid(spec, `${OVERLAY_RW_OPTION} cannot be combined with upperdir=/workdir=`);
    if (ctx.owner === '' || ctx.owner === '.' || ctx.owner === '..' || ctx.owner.includes('/')) {
      throw invalid(spec, `${OVERLAY_RW_OPTION} needs a container id, got ${JSON.stringify(ctx.owner)}`);
    }
    const base = ctx.root.replace(/\/+$/, '');
    upper = `${base}/${ctx.owner}/upper`;
    work = `${base}/${ctx.owner}/work`;
  }
  if ((upper === undefined) !== (work === undefined)) throw invalid(spec, 'overlay needs upperdir= and workdir= together');
  const created: string[] = [];
  if (upper !== undefined && work !== undefined) {
    try {
      const u = confine(ctx.deps.fs, ctx.root, upper, 'dir', `${where(spec)}: upperdir`);
      created.push(...u.created);
      const w = confine(ctx.deps.fs, ctx.root, work, 'dir', `${where(spec)}: workdir`);
      created.push(...w.created);
      words = [...withoutOption(withoutOption(words, 'upperdir'), 'workdir'), `upperdir=${u.path}`, `workdir=${w.path}`];
    } catch (e) {
      removeCreated(ctx.deps.fs, created);
      throw e;
    }
  }
  try {
    return mountPlan(spec, { source, fstype, opts: parseOptions(words, where(spec)), created });
  } catch (e) {
    removeCreated(ctx.deps.fs, created);
    throw e;
  }
}

function bind(spec: StorageSpec, ctx: DriverContext): Plan {
  fstypeOf(spec, ['bind', 'none']);
  if (!spec.source.startsWith('/')) throw invalid(spec, `source ${JSON.stringify(spec.source)} is not an absolute path`);
  const st = ctx.deps.fs.stat(spec.source);
  if (!st) throw new RpcError(Code.NOT_FOUND, `${where(spec)}: source ${spec.source} does not exist`);
  const opts = parseOptions(spec.options, where(spec));
  if (opts.dataWords.length > 0) throw invalid(spec, `a bind mount takes no file-system options (got ${opts.dataWords.join(',')})`);
  const bad = opts.operations.find((o) => o === 'remount');
  if (bad) throw invalid(spec, 'the option "remount" is not valid here (remounts come through UpdateEphemeralMounts)');
  const rec = opts.operations.includes('rbind') ? MS.REC : 0;
  return {
    type: 'mount',
    kind: st.kind === 'dir' ? 'dir' : 'file',
    source: spec.source,
    fstype: 'bind',
    opts: { ...opts, flags: MS.BIND | rec, operations: [] },
    bindRemountFlags: opts.flags & PER_MOUNT_FLAGS,
    created: [],
  };
}

const PLANNERS: Record<string, Planner> = {
  'virtio-fs': virtioFs,
  '9p': ninep,
  blk,
  mmioblk,
  scsi,
  nvdimm,
  ephemeral,
  local,
  overlayfs,
  bind,
};

/** The plan for `spec` (its driver is known: parseStorage checked it). */
export async function plan(spec: StorageSpec, ctx: DriverContext): Promise<Plan> {
  const p = PLANNERS[spec.driver];
  if (!p) throw new RpcError(Code.INVALID_ARGUMENT, `unknown storage driver ${JSON.stringify(spec.driver)}`);
  return p(spec, ctx);
}

// ---------------------------------------------------------------------------
// realise / teardown

function doMount(ctx: DriverContext, spec: StorageSpec, source: string | null, target: string, fstype: string | null, flags: number, data: string | null, what: string): void {
  try {
    ctx.deps.mount(source, target, fstype, flags, data);
  } catch (e) {
    throw new RpcError(
      toStatus(e).code,
      `${where(spec)}: ${what} ${fstype ?? ''} ${JSON.stringify(source ?? '')} on ${target} (flags 0x${flags.toString(16)}, options ${JSON.stringify(data ?? '')}) failed: ${errnoText(e)}`,
    );
  }
}

function hugepagesFile(ctx: DriverContext, kb: number): string {
  return `${ctx.deps.hugepagesDir ?? DEFAULT_HUGEPAGES_DIR}/hugepages-${kb}kB/nr_hugepages`;
}

function readPool(ctx: DriverContext, spec: StorageSpec, file: string): number {
  let text: string;
  try {
    text = ctx.deps.fs.readFile(file);
  } catch (e) {
    throw fsFailure(`${where(spec)}: reading ${file}`, e);
  }
  const n = Number(text.trim());
  if (!Number.isInteger(n) || n < 0) throw new RpcError(Code.INTERNAL, `${where(spec)}: unexpected ${JSON.stringify(text)} in ${file}`);
  return n;
}

/** Raise the pool so it covers every live hugetlbfs storage plus this one. Returns the old size when raised. */
function reserveHugepages(ctx: DriverContext, spec: StorageSpec, h: { pageSizeKb: number; pages: number }): number | undefined {
  const file = hugepagesFile(ctx, h.pageSizeKb);
  const cur = readPool(ctx, spec, file);
  const want = ctx.hugepagesInUse(h.pageSizeKb) + h.pages;
  if (cur >= want) return undefined;
  try {
    ctx.deps.fs.writeFile(file, String(want));
  } catch (e) {
    throw fsFailure(`${where(spec)}: writing ${want} to ${file}`, e);
  }
  // The kernel may allocate fewer pages than asked for, without an error.
  const got = readPool(ctx, spec, file);
  if (got < want) {
    restorePool(ctx.deps, h.pageSizeKb, cur);
    throw new RpcError(
      Code.RESOURCE_EXHAUSTED,
      `${where(spec)}: only ${got} of ${want} huge pages of ${h.pageSizeKb} kB could be allocated (${file})`,
    );
  }
  ctx.deps.log.info({ file, from: cur, to: want }, 'storage: huge page pool raised');
  return cur;
}

/** Set a huge page pool back to `n` pages (rollback); failures are logged. */
export function restorePool(deps: StorageDeps, kb: number, n: number): void {
  const file = `${deps.hugepagesDir ?? DEFAULT_HUGEPAGES_DIR}/hugepages-${kb}kB/nr_hugepages`;
  try {
    deps.fs.writeFile(file, String(n));
  } catch (e) {
    deps.log.warn({ file, err: errnoText(e) }, 'storage: could not restore the huge page pool');
  }
}

/** Carry out `p` for `spec`. On failure nothing it did is left behind (the error is thrown). */
export function realise(ctx: DriverContext, spec: StorageSpec, p: Plan): Prepared {
  const fs = ctx.deps.fs;
  const created: string[] = p.type === 'mount' ? [...p.created] : [];
  let mounted = '';
  let raisedFrom: number | undefined;
  try {
    const c = confine(fs, ctx.root, spec.mountPoint, p.type === 'mount' ? p.kind : 'dir');
    created.unshift(...c.created);
    const mp = c.path;

    if (p.type === 'directory') {
      if (p.fsgid !== undefined) fs.lchown(mp, -1, p.fsgid);
      if (p.mode !== undefined) fs.chmod(mp, p.mode | (p.fsgid !== undefined ? MODE_SETGID : 0));
      return { state: 'directory', mountPoint: mp, created, flagWords: [], dataWords: [] };
    }

    const base = { mountPoint: mp, created, source: p.source, fstype: p.fstype, device: p.device, flagWords: p.opts.flagWords, dataWords: p.opts.dataWords };
    let top: { fstype: string; source: string } | undefined;
    for (const e of ctx.deps.mountInfo()) if (e.mountPoint === mp) top = e;
    if (top) {
      if (p.adoptExisting && top.fstype === p.fstype && top.source === p.source) {
        ctx.deps.log.info({ mountPoint: mp, source: p.source, fstype: p.fstype }, 'storage: already mounted, using it');
        return { state: 'premounted', ...base };
      }
      throw new RpcError(
        Code.FAILED_PRECONDITION,
        `${where(spec)}: ${mp} already has a ${top.fstype} mount of ${JSON.stringify(top.source)} that the agent did not make`,
      );
    }

    if (p.hugepages) raisedFrom = reserveHugepages(ctx, spec, p.hugepages);

    const flags = p.opts.flags;
    doMount(ctx, spec, p.source, mp, p.fstype, flags, p.opts.data, 'mount of');
    mounted = mp;
    if (p.bindRemountFlags) {
      doMount(ctx, spec, null, mp, null, MS.REMOUNT | MS.BIND | p.bindRemountFlags, null, 'read-only/flags remount of');
    }
    if (p.opts.propagation) doMount(ctx, spec, null, mp, null, p.opts.propagation, null, 'propagation change of');
    if (p.fsgid !== undefined) {
      try {
        fs.lchown(mp, -1, p.fsgid);
        const st = fs.stat(mp);
        if (st) fs.chmod(mp, (st.mode & 0o7777) | MODE_SETGID);
      } catch (e) {
        throw fsFailure(`${where(spec)}: ${FSGID_OPTION}=${p.fsgid} on ${mp}`, e);
      }
    }
    ctx.deps.log.info({ mountPoint: mp, source: p.source, fstype: p.fstype, flags, data: p.opts.data }, 'storage: mounted');
    const prepared: Prepared = { state: 'mounted', ...base };
    if (p.hugepages) prepared.hugepages = { ...p.hugepages, raisedFrom };
    return prepared;
  } catch (e) {
    if (mounted) {
      try {
        unmount(ctx.deps, mounted);
      } catch (ue) {
        ctx.deps.log.warn({ mountPoint: mounted, err: errnoText(ue) }, 'storage: rollback unmount failed');
      }
    }
    if (raisedFrom !== undefined && p.type === 'mount' && p.hugepages) restorePool(ctx.deps, p.hugepages.pageSizeKb, raisedFrom);
    removeCreated(fs, created);
    if (e instanceof RpcError) throw e;
    throw fsFailure(where(spec), e);
  }
}

/**
 * umount2(target, UMOUNT_NOFOLLOW); when that fails (busy), a lazy MNT_DETACH
 * as the last resort. "Not mounted" (EINVAL, ENOENT) counts as done.
 * Returns how it went.
 */
export function unmount(deps: Pick<StorageDeps, 'umount' | 'log'>, target: string): 'unmounted' | 'detached' | 'gone' {
  try {
    deps.umount(target, UMOUNT_NOFOLLOW);
    return 'unmounted';
  } catch (e) {
    const c = errCode(e);
    if (c === 'EINVAL' || c === 'ENOENT') {
      deps.log.warn({ mountPoint: target, err: errnoText(e) }, 'storage: was not mounted any more');
      return 'gone';
    }
    deps.log.warn({ mountPoint: target, err: errnoText(e) }, 'storage: unmount failed, detaching lazily');
  }
  try {
    deps.umount(target, MNT.DETACH | UMOUNT_NOFOLLOW);
    return 'detached';
  } catch (e) {
    if (errCode(e) === 'EINVAL' || errCode(e) === 'ENOENT') return 'gone';
    throw e;
  }
}

/** Undo a realised storage: unmount what the agent mounted, remove the (empty) directories it made. */
export function teardown(deps: StorageDeps, p: Prepared): void {
  if (p.state === 'mounted') unmount(deps, p.mountPoint);
  if (p.state !== 'premounted') {
    const left = removeCreated(deps.fs, p.created);
    if (left.length > 0) deps.log.debug({ left }, 'storage: directories left in place (not empty)');
  }
}
