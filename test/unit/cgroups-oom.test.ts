import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import type net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { openCgroups } from '../../agent/src/cgroups';
import { realFs } from '../../agent/src/cgroups/fsops';
import { watchOomV1, type V1OomDeps } from '../../agent/src/cgroups/oom';
import { SysError } from '../../agent/src/sys/libc';
import { cleanupTemps, copyTree, read, until, write } from './cgroups-helpers';

afterAll(cleanupTemps);

const EVENTS = (oom: number, kill: number) => `low 0\nhigh 0\nmax 9\noom ${oom}\noom_kill ${kill}\noom_group_kill 0\n`;
const OOMCTL = (kill?: number, disable = 0) =>
  `oom_kill_disable ${disable}\nunder_oom 0\n` + (kill === undefined ? '' : `oom_kill ${kill}\n`);

describe('watchOom: cgroup v2 (memory.events oom_kill)', () => {
  it('fires when oom_kill grows, not on other changes (check() is what the timers run)', () => {
    const root = copyTree('cgroup-v2');
    const file = `${root}/kata/sbx/c1/memory.events`;
    write(file, EVENTS(1, 1));
    let n = 0;
    const w = openCgroups(root).watchOom('/kata/sbx/c1', () => n++, { pollIntervalMs: 60_000 });
    try {
      w.check();
      expect(n).toBe(0); // the count at start is the baseline
      write(file, EVENTS(2, 1)); // an OOM without a kill
      w.check();
      expect(n).toBe(0);
      write(file, EVENTS(3, 2));
      w.check();
      expect(n).toBe(1);
      w.check();
      expect(n).toBe(1); // once per increase
      write(file, EVENTS(5, 4));
      w.check();
      expect(n).toBe(2);
    } finally {
      w.close();
    }
  });

  it('notices a modified memory.events on its own (inotify or the poll fallback)', async () => {
    const root = copyTree('cgroup-v2');
    const file = `${root}/kata/sbx/c1/memory.events`;
    write(file, EVENTS(0, 0));
    let n = 0;
    const w = openCgroups(root).watchOom('/kata/sbx/c1', () => n++, { pollIntervalMs: 50 });
    try {
      expect(['inotify', 'poll']).toContain(w.via);
      write(file, EVENTS(1, 1));
      await until(() => n === 1, 5000, 'the OOM callback');
    } finally {
      w.close();
    }
  });

  it('the poll alone is enough', async () => {
    const root = copyTree('cgroup-v2');
    const file = `${root}/kata/sbx/c1/memory.events`;
    write(file, EVENTS(0, 0));
    let n = 0;
    // fs.watch on a path that gets replaced (rename) loses the inode: only the poll sees the new file
    const w = openCgroups(root).watchOom('/kata/sbx/c1', () => n++, { pollIntervalMs: 30 });
    try {
      fs.writeFileSync(`${file}.new`, EVENTS(1, 3));
      fs.renameSync(`${file}.new`, file);
      await until(() => n === 1, 5000, 'the OOM callback');
    } finally {
      w.close();
    }
  });

  it('closes itself when the cgroup goes away; after close nothing fires', () => {
    const root = copyTree('cgroup-v2');
    const file = `${root}/kata/sbx/c1/memory.events`;
    let n = 0;
    const w = openCgroups(root).watchOom('/kata/sbx/c1', () => n++, { pollIntervalMs: 60_000 });
    fs.rmSync(file);
    w.check();
    write(file, EVENTS(9, 9));
    w.check();
    expect(n).toBe(0);
    w.close();
    w.close(); // idempotent
  });

  it('a throwing callback does not break the watcher', () => {
    const root = copyTree('cgroup-v2');
    const file = `${root}/kata/sbx/c1/memory.events`;
    let n = 0;
    const w = openCgroups(root).watchOom('/kata/sbx/c1', () => {
      n++;
      throw new Error('boom');
    }, { pollIntervalMs: 60_000 });
    write(file, EVENTS(5, 5));
    expect(() => w.check()).not.toThrow();
    write(file, EVENTS(6, 6));
    w.check();
    expect(n).toBe(2);
    w.close();
  });

  it('a cgroup without memory.events is ENOENT', () => {
    const root = copyTree('cgroup-v2');
    expect(() => openCgroups(root).watchOom('/kata/sbx/c2', () => undefined)).toThrow(SysError);
  });
});

class FakeStream extends EventEmitter {
  destroyed = false;
  constructor(readonly fd: number) {
    super();
  }
  destroy(): void {
    if (!this.destroyed) fs.closeSync(this.fd);
    this.destroyed = true;
  }
}

function fakeDeps(): V1OomDeps & { streams: FakeStream[] } {
  const streams: FakeStream[] = [];
  return {
    streams,
    eventfd: () => fs.openSync('/dev/null', 'r'),
    openStream: (fd) => {
      const s = new FakeStream(fd);
      streams.push(s);
      return s as unknown as net.Socket;
    },
  };
}

describe('watchOom: cgroup v1 (memory.oom_control oom_kill + eventfd)', () => {
  it('polls oom_kill in memory.oom_control', async () => {
    const root = copyTree('cgroup-v1');
    const file = `${root}/memory/kata/sbx/c1/memory.oom_control`;
    let n = 0;
    const w = openCgroups(root).watchOom('/kata/sbx/c1', () => n++, { pollIntervalMs: 30, useEventfd: false });
    try {
      expect(w.via).toBe('poll');
      write(file, OOMCTL(1));
      await until(() => n === 1, 5000, 'the OOM callback');
      write(file, OOMCTL(1));
      w.check();
      expect(n).toBe(1);
    } finally {
      w.close();
    }
  });

  it('registers "<eventfd> <oom_control fd>" in cgroup.event_control (real eventfd)', () => {
    const root = copyTree('cgroup-v1');
    const w = openCgroups(root).watchOom('/kata/sbx/c1', () => undefined, { pollIntervalMs: 60_000 });
    try {
      expect(w.via).toBe('eventfd');
      expect(read(`${root}/memory/kata/sbx/c1/cgroup.event_control`)).toMatch(/^\d+ \d+$/);
    } finally {
      w.close();
    }
  });

  it('an eventfd notification re-checks the counter; no double report with the poll', async () => {
    const root = copyTree('cgroup-v1');
    const dir = `${root}/memory/kata/sbx/c1`;
    const deps = fakeDeps();
    let n = 0;
    const w = watchOomV1(realFs, dir, () => n++, { pollIntervalMs: 60_000 }, deps);
    try {
      expect(w.via).toBe('eventfd');
      const [efd, cfd] = read(`${dir}/cgroup.event_control`).split(' ').map(Number);
      expect(efd).toBe(deps.streams[0]!.fd);
      expect(cfd).toBeGreaterThan(2);
      // the kernel signals when the OOM starts; the kill is counted a moment later
      deps.streams[0]!.emit('data', Buffer.alloc(8));
      expect(n).toBe(0);
      write(`${dir}/memory.oom_control`, OOMCTL(1));
      await until(() => n === 1, 5000, 'the delayed re-check');
      w.check();
      deps.streams[0]!.emit('data', Buffer.alloc(8));
      expect(n).toBe(1);
    } finally {
      w.close();
    }
    expect(deps.streams[0]!.destroyed).toBe(true);
  });

  it('without an oom_kill counter (old kernel) each notification is an OOM', () => {
    const root = copyTree('cgroup-v1');
    const dir = `${root}/memory/kata/sbx/c1`;
    write(`${dir}/memory.oom_control`, OOMCTL(undefined));
    const deps = fakeDeps();
    let n = 0;
    const w = watchOomV1(realFs, dir, () => n++, { pollIntervalMs: 60_000 }, deps);
    deps.streams[0]!.emit('data', Buffer.alloc(8));
    deps.streams[0]!.emit('data', Buffer.alloc(8));
    expect(n).toBe(2);
    w.close();
  });

  it('with the OOM killer disabled each notification is an OOM', () => {
    const root = copyTree('cgroup-v1');
    const dir = `${root}/memory/kata/sbx/c1`;
    write(`${dir}/memory.oom_control`, OOMCTL(0, 1));
    const deps = fakeDeps();
    let n = 0;
    const w = watchOomV1(realFs, dir, () => n++, { pollIntervalMs: 60_000 }, deps);
    deps.streams[0]!.emit('data', Buffer.alloc(8));
    expect(n).toBe(1);
    w.close();
  });

  it('the notification sent on cgroup removal closes the watcher without an OOM', () => {
    const root = copyTree('cgroup-v1');
    const dir = `${root}/memory/kata/sbx/c1`;
    write(`${dir}/memory.oom_control`, OOMCTL(undefined));
    const deps = fakeDeps();
    let n = 0;
    const w = watchOomV1(realFs, dir, () => n++, { pollIntervalMs: 60_000 }, deps);
    fs.rmSync(`${dir}/memory.oom_control`);
    deps.streams[0]!.emit('data', Buffer.alloc(8));
    expect(n).toBe(0);
    expect(deps.streams[0]!.destroyed).toBe(true);
    w.close();
  });

  it('falls back to polling when cgroup.event_control cannot be written', () => {
    const root = copyTree('cgroup-v1');
    const dir = `${root}/memory/kata/sbx/c1`;
    fs.rmSync(`${dir}/cgroup.event_control`);
    const deps = fakeDeps();
    const w = watchOomV1(realFs, dir, () => undefined, {}, deps);
    expect(w.via).toBe('poll');
    expect(deps.streams).toHaveLength(0);
    w.close();
  });
});
