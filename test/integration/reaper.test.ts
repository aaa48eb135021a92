// The Reaper as PID 1 of a private PID namespace, and as a child subreaper
// below another PID 1: 1000 orphans must all be reaped, none left as zombies.
// Needs root (unshare -p). This test process itself only uses child_process;
// the Reaper runs in the bundled fixture.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { bundleEntry } from '../helpers/bundle';

const pexec = promisify(execFile);
const isRoot = process.getuid?.() === 0;

interface Report {
  pid: number;
  subreaper: boolean;
  shCode?: number;
  zombies: number;
  orphansReaped: number;
  onOrphanCalls: number;
  dispatched: number;
}

let fixture = '';

async function runFixture(argv: string[], env: Record<string, string> = {}): Promise<Report> {
  const { stdout } = await pexec(argv[0]!, argv.slice(1), {
    env: { ...process.env, ...env },
    timeout: 120_000,
    maxBuffer: 16 * 1024 * 1024,
  });
  const line = stdout.trim().split('\n').at(-1)!;
  return JSON.parse(line) as Report;
}

describe.skipIf(!isRoot)('Reaper in a PID namespace (root)', () => {
  beforeAll(async () => {
    fixture = await bundleEntry('test/integration/fixtures/proc-orphans.ts');
  });

  it('as PID 1 reaps 1000 orphans and leaves no zombie', async () => {
    const r = await runFixture(['unshare', '-pf', '--mount-proc', process.execPath, fixture]);
    expect(r.pid).toBe(1);
    expect(r.shCode).toBe(0);
    expect(r.dispatched).toBe(1); // the shell, delivered to its watcher
    expect(r.orphansReaped).toBeGreaterThanOrEqual(1000);
    expect(r.onOrphanCalls).toBe(r.orphansReaped);
    expect(r.zombies).toBe(0);
  }, 120_000);

  it('as a child subreaper below a non-reaping PID 1 catches the orphans too', async () => {
    // sh is PID 1 and never waits for strangers: any orphan that reached it
    // instead of the subreaper would stay a zombie.
    const r = await runFixture([
      'unshare', '-pf', '--mount-proc', '/bin/sh', '-c', `"${process.execPath}" "${fixture}"; true`,
    ]);
    expect(r.pid).not.toBe(1);
    expect(r.subreaper).toBe(true);
    expect(r.shCode).toBe(0);
    expect(r.orphansReaped).toBeGreaterThanOrEqual(1000);
    expect(r.zombies).toBe(0);
  }, 120_000);

  it('control: without the reaper the orphans stay zombies (the check can fail)', async () => {
    const r = await runFixture(['unshare', '-pf', '--mount-proc', process.execPath, fixture], {
      NO_REAP: '1',
      ORPHANS: '50',
      BATCH: '50',
    });
    expect(r.pid).toBe(1);
    expect(r.orphansReaped).toBe(0);
    expect(r.zombies).toBeGreaterThanOrEqual(50);
  }, 60_000);
});
