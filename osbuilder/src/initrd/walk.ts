// The rootfs side of `osbuilder initrd`: walk a directory tree into a sorted list of nodes
// (metadata only; file contents are read later, while the archive streams out), check that
// it has an init, and turn the nodes into newc entries with reproducible metadata.
import fs from 'node:fs';
import { MAX_FIELD, S_IFBLK, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, type ArchiveEntry } from './cpio';
import { failedError } from '../util/errors';

/** One file system object of the tree. */
export interface TreeNode {
  /** Path relative to the root as bytes ("." for the root itself, else "a/b", no leading "./"). */
  rel: Buffer;
  /** Absolute path (bytes: names need not be UTF-8). */
  abs: Buffer;
  mode: number;
  /** Regular files: their size; symlinks: the target's length. */
  size: number;
  /** Whole seconds (floored). */
  mtime: number;
  nlink: number;
  /** Regular files with more than one link: "dev:ino", to find the other links in the tree. */
  linkKey?: string;
  /** A directory on another file system than the root (a mount point): not descended into. */
  otherFs?: boolean;
  rdevMajor: number;
  rdevMinor: number;
  /** Symlinks: the target. */
  target?: Buffer;
}

export const typeOf = (mode: number): number => mode & S_IFMT;

/** Linux dev_t split (glibc's gnu_dev_major/minor). */
export function devMajor(dev: bigint): number {
  return Number(((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn & 0xffffffffn));
}
export function devMinor(dev: bigint): number {
  return Number((dev & 0xffn) | ((dev >> 12n) & 0xffffff00n));
}

const SLASH = Buffer.from('/');
const DOT = Buffer.from('.');

function sysMessage(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ?? e.message;
}

function nodeOf(rel: Buffer, abs: Buffer, rootDev?: bigint): TreeNode {
  let st: fs.BigIntStats;
  try {
    st = fs.lstatSync(abs, { bigint: true });
  } catch (err) {
    throw failedError(`cannot stat ${abs.toString()}: ${sysMessage(err)}`);
  }
  const mode = Number(st.mode);
  let size = Number(st.size);
  let target: Buffer | undefined;
  if (typeOf(mode) === S_IFLNK) {
    try {
      target = fs.readlinkSync(abs, { encoding: 'buffer' });
    } catch (err) {
      throw failedError(`cannot read the symlink ${abs.toString()}: ${sysMessage(err)}`);
    }
    size = target.length;
  } else if (typeOf(mode) !== S_IFREG) {
    size = 0;
  }
  const ns = st.mtimeNs;
  const mtime = ns < 0n ? 0 : Number(ns / 1_000_000_000n);
  if (typeOf(mode) === S_IFREG && size > MAX_FIELD) throw failedError(`${abs.toString()} is ${size} bytes: a newc cpio archive cannot hold files of 4 GiB or more`);
  const dev = typeOf(mode) === S_IFCHR || typeOf(mode) === S_IFBLK;
  const node: TreeNode = {
    rel,
    abs,
    mode,
    size,
    mtime,
    nlink: Number(st.nlink),
    rdevMajor: dev ? devMajor(st.rdev) : 0,
    rdevMinor: dev ? devMinor(st.rdev) : 0,
  };
  if (target) node.target = target;
  if (typeOf(mode) === S_IFREG && st.nlink > 1n) node.linkKey = `${st.dev}:${st.ino}`;
  if (typeOf(mode) === S_IFDIR && rootDev !== undefined && st.dev !== rootDev) node.otherFs = true;
  return node;
}

/**
 * Every object under `root` (root first as "."), sorted bytewise by path, so that parents come
 * before their children. Stays on the root's file system: a directory that is a mount point
 * (e.g. a proc mounted in a chroot) is archived as an empty directory.
 */
export function walkTree(root: string, o: { onProgress?: (nodes: number) => void } = {}): TreeNode[] {
  let rootAbs: Buffer;
  try {
    rootAbs = fs.realpathSync(root, { encoding: 'buffer' }); // a symlink to the rootfs is fine
  } catch (err) {
    throw failedError(`cannot read ${root}: ${sysMessage(err)}`);
  }
  const top = nodeOf(DOT, rootAbs);
  if (typeOf(top.mode) !== S_IFDIR) throw failedError(`${root} is not a directory`);
  const rootDev = fs.statSync(rootAbs, { bigint: true }).dev;
  const nodes: TreeNode[] = [top];
  const dirs: TreeNode[] = [top];
  while (dirs.length > 0) {
    const dir = dirs.pop()!;
    let names: Buffer[];
    try {
      names = fs.readdirSync(dir.abs, { encoding: 'buffer' });
    } catch (err) {
      throw failedError(`cannot read the directory ${dir.abs.toString()}: ${sysMessage(err)}`);
    }
    for (const name of names) {
      const rel = dir === top ? name : Buffer.concat([dir.rel, SLASH, name]);
      const abs = Buffer.concat([dir.abs, SLASH, name]);
      const n = nodeOf(rel, abs, rootDev);
      nodes.push(n);
      if (typeOf(n.mode) === S_IFDIR && !n.otherFs) dirs.push(n);
    }
    if (o.onProgress) o.onProgress(nodes.length);
  }
  nodes.sort((a, b) => (a === top ? -1 : b === top ? 1 : Buffer.compare(a.rel, b.rel)));
  return nodes;
}

export { findInit, resolveInRoot, type InitCheck, type Resolved } from '../util/rootfs';

export interface PlanOptions {
  /** SOURCE_DATE_EPOCH: mtimes later than this are clamped to it; added entries get it. */
  epoch: number;
  /** Add dev/console (char 5:1, 0600) when the tree has none (default true). */
  addConsole?: boolean;
  /** Add an `init -> /sbin/init` symlink (when the tree has no /init but a /sbin/init). */
  addInitLink?: boolean;
  /** Reads a regular file's bytes while the archive streams (default: readFileChunks). */
  readData?: (node: TreeNode) => AsyncIterable<Buffer>;
}

export interface Plan {
  /** Number of entries (without the trailer). */
  count: number;
  /** The entries in archive order, made one at a time. */
  entries: () => Generator<ArchiveEntry>;
  /** Names of entries that are not in the tree (dev, dev/console, init). */
  added: string[];
  files: number;
  /** Data bytes of regular files (each hard-linked file once). */
  dataBytes: number;
}

/**
 * Read exactly `node.size` bytes of a regular file, a chunk at a time as the consumer asks for
 * them; FAILED when the file changed size meanwhile. The reads are synchronous: for the many
 * small files of a rootfs, a round trip through the thread pool per open/read/close costs ten
 * times more than the reads themselves, and nothing else runs in the meantime (the compressor
 * is another process).
 */
export async function* readFileChunks(node: TreeNode, chunkSize = 1 << 20): AsyncGenerator<Buffer> {
  let fd: number;
  try {
    fd = fs.openSync(node.abs, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  } catch (err) {
    throw failedError(`cannot read ${node.abs.toString()}: ${sysMessage(err)}`);
  }
  try {
    let left = node.size;
    while (left > 0) {
      // One extra byte on the last read tells whether the file grew.
      const want = Math.min(chunkSize, left);
      const buf = Buffer.allocUnsafe(want === left ? want + 1 : want);
      const got = readSync(fd, buf, node);
      if (got === 0) throw failedError(`${node.abs.toString()} shrank while the initrd was being written`);
      if (got > left) throw failedError(`${node.abs.toString()} grew while the initrd was being written`);
      left -= got;
      yield got === buf.length ? buf : buf.subarray(0, got);
    }
    if (readSync(fd, Buffer.alloc(1), node) !== 0) throw failedError(`${node.abs.toString()} grew while the initrd was being written`);
  } finally {
    fs.closeSync(fd);
  }
}

function readSync(fd: number, buf: Buffer, node: TreeNode): number {
  try {
    return fs.readSync(fd, buf, 0, buf.length, null);
  } catch (err) {
    throw failedError(`cannot read ${node.abs.toString()}: ${sysMessage(err)}`);
  }
}

/**
 * The archive entries for a sorted tree: uid/gid 0, mtimes clamped to the epoch, inode numbers
 * 1, 2, 3... in archive order, hard links (regular files linked within the tree) sharing one
 * inode with the data on the last link, directory link counts computed from the tree
 * (2 + subdirectories), every other object with nlink 1. Missing dev/console (and an init
 * link) are added at their sorted place. The entries are made lazily, one at a time, as the
 * archive is written (`entries()` can be iterated more than once).
 */
export function planArchive(nodes: TreeNode[], o: PlanOptions): Plan {
  const clamp = (t: number): number => Math.min(Math.max(0, t), o.epoch);
  const readData = o.readData ?? ((n: TreeNode) => readFileChunks(n));
  if (nodes[0]?.rel.toString('latin1') !== '.') throw new Error('planArchive: the first node must be the root "."');
  const find = (rel: string): TreeNode | undefined => {
    const b = Buffer.from(rel);
    return nodes.find((n) => n.rel.equals(b));
  };
  if (find('TRAILER!!!')) throw failedError('the rootfs has a file named TRAILER!!! at its top, which would end the initrd early');

  // Synthetic entries (kept as nodes so they sort with the rest).
  const added: string[] = [];
  const synth: TreeNode[] = [];
  const mk = (rel: string, mode: number, extra: Partial<TreeNode> = {}): void => {
    synth.push({ rel: Buffer.from(rel), abs: Buffer.alloc(0), mode, size: 0, mtime: o.epoch, nlink: 1, rdevMajor: 0, rdevMinor: 0, ...extra });
    added.push(rel);
  };
  if (o.addConsole !== false && !find('dev/console')) {
    const dev = find('dev');
    if (!dev) mk('dev', S_IFDIR | 0o755);
    if (!dev || typeOf(dev.mode) === S_IFDIR) mk('dev/console', S_IFCHR | 0o600, { rdevMajor: 5, rdevMinor: 1 });
  }
  if (o.addInitLink && !find('init')) {
    const target = Buffer.from('/sbin/init');
    mk('init', S_IFLNK | 0o777, { size: target.length, target });
  }
  const all = synth.length === 0 ? nodes : [nodes[0]!, ...[...nodes.slice(1), ...synth].sort((a, b) => Buffer.compare(a.rel, b.rel))];

  // Directory link counts and hard-link groups, from the tree itself.
  const subdirs = new Map<string, number>();
  const linkCount = new Map<string, number>();
  let files = 0;
  let dataBytes = 0;
  for (const n of all) {
    if (typeOf(n.mode) === S_IFDIR && n !== all[0]) {
      const slash = n.rel.lastIndexOf(0x2f);
      const parent = slash < 0 ? '.' : n.rel.subarray(0, slash).toString('latin1');
      subdirs.set(parent, (subdirs.get(parent) ?? 0) + 1);
    }
    if (typeOf(n.mode) === S_IFREG) {
      const seen = n.linkKey === undefined ? 0 : (linkCount.get(n.linkKey) ?? 0);
      if (n.linkKey !== undefined) linkCount.set(n.linkKey, seen + 1);
      if (seen === 0) {
        files++;
        dataBytes += n.size;
      }
    }
  }

  function* entries(): Generator<ArchiveEntry> {
    const inoOf = new Map<string, number>();
    const seen = new Map<string, number>();
    let nextIno = 1;
    for (const n of all) {
      const type = typeOf(n.mode);
      const base = { name: n.rel, mode: n.mode, uid: 0, gid: 0, mtime: clamp(n.mtime) };
      if (type === S_IFREG) {
        const k = n.linkKey;
        const links = k === undefined ? 1 : linkCount.get(k)!;
        if (k !== undefined && links > 1) {
          let ino = inoOf.get(k);
          if (ino === undefined) inoOf.set(k, (ino = nextIno++));
          const nth = (seen.get(k) ?? 0) + 1;
          seen.set(k, nth);
          const last = nth === links;
          yield { ...base, ino, nlink: links, filesize: last ? n.size : 0, data: last && n.size > 0 ? () => readData(n) : undefined };
        } else {
          yield { ...base, ino: nextIno++, nlink: 1, filesize: n.size, data: n.size > 0 ? () => readData(n) : undefined };
        }
      } else if (type === S_IFDIR) {
        yield { ...base, ino: nextIno++, nlink: 2 + (subdirs.get(n.rel.toString('latin1')) ?? 0), filesize: 0 };
      } else if (type === S_IFLNK) {
        const target = n.target ?? Buffer.alloc(0);
        yield { ...base, ino: nextIno++, nlink: 1, filesize: target.length, data: target };
      } else {
        // Character and block devices, fifos, sockets: no data; devices carry rdev.
        yield { ...base, ino: nextIno++, nlink: 1, filesize: 0, rdevmajor: n.rdevMajor, rdevminor: n.rdevMinor };
      }
    }
  }
  return { count: all.length, entries, added, files, dataBytes };
}
