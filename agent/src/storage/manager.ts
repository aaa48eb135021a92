// The sandbox's storages: mounted on request (CreateSandbox / CreateContainer
// storages), reference-counted per mount point (the same mount point asked for
// by several owners is mounted once, as Kata's sandbox storages are), released
// per owner, remounted by UpdateEphemeralMounts, all unmounted at the end.
// Operations run one at a time (a mutex), so a storage another call is still
// setting up is never seen half made.
import { Mutex } from '../sandbox/mutex';
import { cancelled } from '../sandbox/abort';
import { Code, RpcError, toStatus } from '../rpc/status';
import { MS } from '../sys/mount';
import { checkMountPoint, DEFAULT_STORAGE_ROOT, fsFailure, realTarget, removeCreated } from './confine';
import { errnoText, FSGID_OPTION, plan, realise, restorePool, teardown, type DriverContext, type Prepared } from './drivers';
import { applyFsGroup } from './fsgroup';
import { parseOptions, withoutOption } from './options';
import type { StorageDeps, StorageInfo, StorageSpec } from './types';

export interface StorageManagerOptions {
  /** Mount points must lie strictly under this directory (default /run/kata-containers/). */
  root?: string;
  deps: StorageDeps;
}

interface Entry {
  seq: number;
  /** The spec as first requested (mountPoint normalised; prepared.mountPoint is the real path). */
  spec: StorageSpec;
  identity: string;
  prepared: Prepared;
  owners: Map<string, number>;
  shared: boolean;
  unmountError?: string;
}

/** What makes two requests for one mount point the same storage. */
function identity(s: StorageSpec): string {
  return JSON.stringify([s.driver, s.source, s.fstype, [...s.options].sort(), [...s.driverOptions].sort()]);
}

function describe(s: Pick<StorageSpec, 'driver' | 'source' | 'fstype'>): string {
  return `${s.driver} ${JSON.stringify(s.source)}${s.fstype ? ` (${s.fstype})` : ''}`;
}

function refs(e: Entry): number {
  let n = 0;
  for (const c of e.owners.values()) n += c;
  return n;
}

export class StorageManager {
  readonly root: string;
  private readonly deps: StorageDeps;
  private readonly entries = new Map<string, Entry>();
  private readonly lock = new Mutex();
  private seq = 0;

  constructor(opts: StorageManagerOptions) {
    this.root = opts.root ?? DEFAULT_STORAGE_ROOT;
    this.deps = opts.deps;
  }

  /** The real path a mount point will have (lexical checks against the root; nothing is created below it). */
  private keyOf(mountPoint: string, what: string): string {
    return realTarget(this.deps.fs, this.root, mountPoint, what);
  }

  private hugepagesInUse(pageSizeKb: number): number {
    let n = 0;
    for (const e of this.entries.values()) {
      const h = e.prepared.hugepages;
      if (h && h.pageSizeKb === pageSizeKb && !e.unmountError) n += h.pages;
    }
    return n;
  }

  /**
   * Make every storage appear at its mount point, on behalf of `owner` (a
   * container id, or the sandbox). Returns the mount points (real paths, in
   * request order). All or nothing: when one fails, what this call mounted or
   * referenced is undone and the error is thrown.
   */
  add(storages: readonly StorageSpec[], owner: string, signal?: AbortSignal): Promise<string[]> {
    return this.lock.run(async () => {
      const undo: (() => void)[] = [];
      const out: string[] = [];
      try {
        for (const [i, s] of storages.entries()) {
          if (signal?.aborted) throw cancelled(`storage ${i} (${s.driver} at ${s.mountPoint})`, signal);
          const lexical = checkMountPoint(s.mountPoint, this.root, `${s.driver} storage mount point`);
          const mp = this.keyOf(lexical, `${s.driver} storage mount point`);
          const spec: StorageSpec = { ...s, mountPoint: lexical };
          const existing = this.entries.get(mp);
          if (existing) {
            if (existing.unmountError) {
              throw new RpcError(Code.FAILED_PRECONDITION, `${s.driver} storage ${mp}: an earlier storage there could not be unmounted (${existing.unmountError})`);
            }
            if (existing.identity !== identity(spec)) {
              throw new RpcError(
                Code.FAILED_PRECONDITION,
                `${s.driver} storage ${mp}: the mount point already holds ${describe(existing.spec)} with options ${JSON.stringify(existing.spec.options.join(','))}; cannot also put ${describe(spec)} with options ${JSON.stringify(spec.options.join(','))} there`,
              );
            }
            const wasShared = existing.shared;
            existing.owners.set(owner, (existing.owners.get(owner) ?? 0) + 1);
            existing.shared ||= spec.shared;
            undo.push(() => {
              const n = (existing.owners.get(owner) ?? 1) - 1;
              if (n > 0) existing.owners.set(owner, n);
              else existing.owners.delete(owner);
              existing.shared = wasShared;
            });
            this.deps.log.debug({ mountPoint: mp, owner, refs: refs(existing) }, 'storage: referenced again');
            out.push(mp);
            continue;
          }

          const ctx: DriverContext = {
            deps: this.deps,
            root: this.root,
            owner,
            signal,
            hugepagesInUse: (kb) => this.hugepagesInUse(kb),
          };
          const p = await plan(spec, ctx);
          if (signal?.aborted) {
            if (p.type === 'mount') removeCreated(this.deps.fs, p.created);
            throw cancelled(`storage ${i} (${s.driver} at ${s.mountPoint})`, signal);
          }
          const prepared = realise(ctx, spec, p);
          const entry: Entry = { seq: ++this.seq, spec, identity: identity(spec), prepared, owners: new Map([[owner, 1]]), shared: spec.shared };
          this.entries.set(mp, entry);
          undo.push(() => {
            entry.owners.clear();
            try {
              teardown(this.deps, prepared);
            } catch (err) {
              // Still mounted: keep it listed (unreferenced) so closeAll() tries again.
              entry.unmountError = errnoText(err);
              throw err;
            }
            this.entries.delete(mp);
            const h = prepared.hugepages;
            if (h?.raisedFrom !== undefined) restorePool(this.deps, h.pageSizeKb, h.raisedFrom);
          });
          if (spec.fsGroup) {
            try {
              const r = applyFsGroup(this.deps.fs, mp, spec.fsGroup, spec.options.includes('ro'));
              this.deps.log.info({ mountPoint: mp, gid: spec.fsGroup.groupId, result: r }, 'storage: fs_group');
            } catch (e) {
              throw fsFailure(`${s.driver} storage ${mp}: fs_group ${spec.fsGroup.groupId}`, e);
            }
          }
          out.push(mp);
        }
        return out;
      } catch (e) {
        for (const u of undo.reverse()) {
          try {
            u();
          } catch (ue) {
            this.deps.log.warn({ err: errnoText(ue) }, 'storage: rollback step failed');
          }
        }
        if (e instanceof RpcError) throw e;
        const st = toStatus(e);
        throw new RpcError(st.code, `storage: ${st.message}`);
      }
    });
  }

  /** Tear down `victims` (newest first); failures stay in the table, marked, and are returned. */
  private tearDown(victims: Entry[]): { done: string[]; failed: string[] } {
    const done: string[] = [];
    const failed: string[] = [];
    for (const e of victims.sort((a, b) => b.seq - a.seq)) {
      const mp = e.prepared.mountPoint;
      try {
        teardown(this.deps, e.prepared);
        this.entries.delete(mp);
        done.push(mp);
      } catch (err) {
        e.unmountError = errnoText(err);
        failed.push(`${mp}: ${e.unmountError}`);
        this.deps.log.error({ mountPoint: mp, err: e.unmountError }, 'storage: could not unmount');
      }
    }
    return { done, failed };
  }

  /**
   * Drop every reference `owner` holds. Storages left without references are
   * unmounted (newest first), except shared ones, which stay until closeAll().
   * Returns the mount points torn down; throws INTERNAL (after trying all)
   * when some could not be unmounted.
   */
  release(owner: string): Promise<string[]> {
    return this.lock.run(() => {
      const victims: Entry[] = [];
      for (const e of this.entries.values()) {
        if (!e.owners.delete(owner)) continue;
        if (refs(e) === 0 && !e.shared) victims.push(e);
      }
      const { done, failed } = this.tearDown(victims);
      if (failed.length > 0) throw new RpcError(Code.INTERNAL, `releasing the storages of ${JSON.stringify(owner)}: ${failed.join('; ')}`);
      return done;
    });
  }

  /** Unmount everything (shared storages too), newest first. Throws INTERNAL listing what could not be unmounted. */
  closeAll(): Promise<string[]> {
    return this.lock.run(() => {
      const { done, failed } = this.tearDown([...this.entries.values()]);
      if (failed.length > 0) throw new RpcError(Code.INTERNAL, `unmounting the storages: ${failed.join('; ')}`);
      return done;
    });
  }

  /**
   * UpdateEphemeralMounts: remount ephemeral tmpfs storages with new options
   * (the runtime sends ["remount", "size=<N>M", maybe "fsgid=<G>"] when the
   * sandbox's memory changed). fsgid= is dropped (the group was set at mount
   * time), the mount's own flags (nosuid, ...) are kept, the data options
   * given replace theirs. Every storage is checked before any is remounted.
   */
  updateEphemeral(storages: readonly StorageSpec[]): Promise<void> {
    return this.lock.run(() => {
      const work: { entry: Entry; flags: number; data: string; flagWords: string[] }[] = [];
      for (const [i, s] of storages.entries()) {
        const what = `storages[${i}]`;
        if (s.driver !== 'ephemeral') {
          throw new RpcError(Code.INVALID_ARGUMENT, `${what}: only ephemeral storages can be updated, got driver ${JSON.stringify(s.driver)}`);
        }
        if (s.fstype !== '' && s.fstype !== 'tmpfs') {
          throw new RpcError(Code.INVALID_ARGUMENT, `${what}: only tmpfs ephemeral storages can be updated, got fstype ${JSON.stringify(s.fstype)}`);
        }
        const mp = this.keyOf(s.mountPoint, `${what} mount point`);
        const entry = this.entries.get(mp);
        if (!entry || entry.spec.driver !== 'ephemeral' || entry.prepared.state !== 'mounted' || entry.prepared.fstype !== 'tmpfs') {
          throw new RpcError(Code.NOT_FOUND, `${what}: there is no ephemeral tmpfs storage at ${mp}`);
        }
        const words = withoutOption(s.options, FSGID_OPTION);
        if (words.filter((w) => w !== 'remount').length === 0) continue;
        const opts = parseOptions(words, `${what} (${mp})`);
        if (opts.operations.some((o) => o !== 'remount')) {
          throw new RpcError(Code.INVALID_ARGUMENT, `${what}: ${opts.operations.join(',')} is not valid in an update`);
        }
        const flagWords = [...entry.prepared.flagWords, ...opts.flagWords];
        const { flags } = parseOptions(flagWords, what);
        work.push({ entry, flags: flags | MS.REMOUNT, data: opts.data, flagWords });
      }
      for (const w of work) {
        const p = w.entry.prepared;
        try {
          this.deps.mount(p.source ?? 'tmpfs', p.mountPoint, 'tmpfs', w.flags, w.data);
        } catch (e) {
          throw new RpcError(
            toStatus(e).code,
            `ephemeral storage ${p.mountPoint}: remount of tmpfs (flags 0x${w.flags.toString(16)}, options ${JSON.stringify(w.data)}) failed: ${errnoText(e)}`,
          );
        }
        // Keep what list() reports current: data words given replace those of the same key.
        const keys = new Set(w.data.split(',').filter(Boolean).map((d) => d.split('=')[0]));
        p.dataWords = [...p.dataWords.filter((d) => !keys.has(d.split('=')[0])), ...w.data.split(',').filter(Boolean)];
        p.flagWords = w.flagWords;
        this.deps.log.info({ mountPoint: p.mountPoint, data: w.data }, 'storage: ephemeral storage remounted');
      }
    });
  }

  /** The storages, oldest first (diagnostics). */
  list(): StorageInfo[] {
    return [...this.entries.values()]
      .sort((a, b) => a.seq - b.seq)
      .map((e) => {
        const info: StorageInfo = {
          mountPoint: e.prepared.mountPoint,
          driver: e.spec.driver,
          source: e.spec.source,
          fstype: e.prepared.fstype ?? e.spec.fstype,
          options: e.prepared.state === 'directory' ? [...e.spec.options] : [...e.prepared.flagWords, ...e.prepared.dataWords],
          owners: Object.fromEntries(e.owners),
          refs: refs(e),
          shared: e.shared,
          state: e.prepared.state,
        };
        if (e.prepared.device) info.device = e.prepared.device;
        if (e.unmountError) info.unmountError = e.unmountError;
        return info;
      });
  }
}
