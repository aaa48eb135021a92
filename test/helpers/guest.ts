// What the VM suite boots: the guest kernel (`osbuilder kernel build`, cached by its inputs, so
// only the first run on a machine compiles it) and the minimal rootfs packed as an lz4 initrd
// with the current agent. Built once per test run, under a lock (vitest runs files in parallel).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from './bundle';

export interface Guest {
  kernel: string;
  initrd: string;
  /** uname -r of the kernel. */
  release: string;
}

const OSBUILDER = path.join(REPO_ROOT, 'dist/osbuilder.mjs');
const DIR = path.join(os.tmpdir(), `gk-vm-guest-${process.ppid}`);

/** Can this machine boot guests (QEMU installed, root for the kernel build's package installs)? */
export function canBootGuests(): boolean {
  return fs.existsSync('/usr/bin/qemu-system-x86_64') && process.arch === 'x64' && process.getuid?.() === 0 && fs.existsSync('/usr/bin/crun') && fs.existsSync('/bin/busybox');
}

function osbuilder(...args: string[]): void {
  const r = spawnSync(process.execPath, [OSBUILDER, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) throw new Error(`osbuilder ${args.join(' ')} exited ${r.status}:\n${r.stderr.split('\n').slice(-15).join('\n')}`);
}

async function withLock<T>(lock: string, fn: () => T): Promise<T> {
  for (;;) {
    try {
      fs.mkdirSync(lock);
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    return fn();
  } finally {
    fs.rmdirSync(lock);
  }
}

/** The guest kernel and initrd for this test run (built on first use). */
export async function ensureGuest(): Promise<Guest> {
  fs.mkdirSync(DIR, { recursive: true });
  return withLock(path.join(DIR, '.lock'), () => {
    const done = path.join(DIR, 'guest.json');
    if (fs.existsSync(done)) return JSON.parse(fs.readFileSync(done, 'utf8')) as Guest;
    const kernelDir = path.join(DIR, 'kernel');
    osbuilder('kernel', 'build', '--quiet', '--output', kernelDir);
    const rootfs = path.join(DIR, 'rootfs');
    osbuilder('rootfs', 'minimal', '--quiet', '--output', rootfs);
    const initrd = path.join(DIR, 'initrd.lz4');
    osbuilder('initrd', '--quiet', '--rootfs', rootfs, '--compression', 'lz4', '--output', initrd);
    fs.rmSync(rootfs, { recursive: true, force: true });
    const info = JSON.parse(fs.readFileSync(path.join(kernelDir, 'kernel.json'), 'utf8')) as { release: string };
    const g: Guest = { kernel: path.join(kernelDir, 'vmlinuz'), initrd, release: info.release };
    fs.writeFileSync(done, JSON.stringify(g));
    return g;
  });
}

/** A busybox-only initrd whose /init runs `script` (sh) and powers off: for kernel checks. */
export function busyboxInitrd(out: string, script: string): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-bb-root-'));
  try {
    for (const d of ['bin', 'proc', 'sys', 'dev']) fs.mkdirSync(path.join(root, d));
    fs.copyFileSync('/bin/busybox', path.join(root, 'bin/busybox'));
    fs.chmodSync(path.join(root, 'bin/busybox'), 0o755);
    fs.symlinkSync('busybox', path.join(root, 'bin/sh'));
    fs.writeFileSync(path.join(root, 'init'), `#!/bin/sh\n/bin/busybox mount -t proc proc /proc\n/bin/busybox mount -t sysfs sysfs /sys\n${script}\n/bin/busybox poweroff -f\n`, { mode: 0o755 });
    osbuilder('initrd', '--quiet', '--rootfs', root, '--compression', 'lz4', '--output', out);
    return out;
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
}
