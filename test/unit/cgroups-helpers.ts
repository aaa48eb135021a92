// Shared helpers for the cgroups-*.test.ts files: writable temp copies of the
// fake cgroup trees under test/fixtures/cgroup-v1 and cgroup-v2.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures');

const temps: string[] = [];

/** A writable copy of test/fixtures/<name> (symlinks kept as they are). */
export function copyTree(name: 'cgroup-v1' | 'cgroup-v2'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${name}-`));
  temps.push(dir);
  const dst = path.join(dir, 'cg');
  fs.cpSync(path.join(FIXTURES, name), dst, { recursive: true, verbatimSymlinks: true });
  return dst;
}

export function emptyDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cgroup-empty-'));
  temps.push(dir);
  return dir;
}

export function cleanupTemps(): void {
  for (const d of temps.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}

export function read(file: string): string {
  return fs.readFileSync(file, 'utf8');
}

export function write(file: string, data: string): void {
  fs.writeFileSync(file, data);
}

/** Resolve when `cond` holds (polling), reject after `ms`: a bound, not a timing assertion. */
export async function until(cond: () => boolean, ms = 5000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
