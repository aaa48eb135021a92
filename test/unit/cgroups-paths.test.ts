import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  containerCgroupPath,
  detectCgroups,
  normalizeRel,
  openCgroups,
  sandboxCgroupPath,
} from '../../agent/src/cgroups';
import { Code, RpcError } from '../../agent/src/rpc/status';
import { cleanupTemps, copyTree, emptyDir, FIXTURES } from './cgroups-helpers';

afterAll(cleanupTemps);

describe('detectCgroups', () => {
  it('v2: a root holding cgroup.controllers', () => {
    expect(detectCgroups(path.join(FIXTURES, 'cgroup-v2'))).toBe('v2');
  });
  it('v1: per-controller hierarchies, no cgroup.controllers', () => {
    expect(detectCgroups(path.join(FIXTURES, 'cgroup-v1'))).toBe('v1');
  });
  it('hybrid: v1 hierarchies plus a cgroup2 tree at unified/', () => {
    const root = copyTree('cgroup-v1');
    fs.mkdirSync(path.join(root, 'unified'));
    fs.writeFileSync(path.join(root, 'unified/cgroup.controllers'), 'hugetlb\n');
    fs.writeFileSync(path.join(root, 'unified/cgroup.procs'), '1\n');
    expect(detectCgroups(root)).toBe('hybrid');
    expect(openCgroups(root).mode).toBe('hybrid');
  });
  it('an empty directory is v1 with no controllers', () => {
    const d = emptyDir();
    expect(detectCgroups(d)).toBe('v1');
    expect(openCgroups(d).controllers()).toEqual([]);
  });
  it('this machine: /sys/fs/cgroup is detected by its mounts', () => {
    let magic: number | undefined;
    try {
      magic = Number(fs.statfsSync('/sys/fs/cgroup').type);
    } catch {
      return; // no /sys/fs/cgroup here
    }
    const got = detectCgroups('/sys/fs/cgroup');
    if (magic === 0x63677270) expect(got).toBe('v2');
    else expect(['v1', 'hybrid']).toContain(got);
  });
});

describe('openCgroups paths', () => {
  it('v2: path is root + normalised rel', () => {
    const root = path.join(FIXTURES, 'cgroup-v2');
    const cg = openCgroups(root);
    expect(cg.mode).toBe('v2');
    expect(cg.path('/kata/sbx/c1')).toBe(`${root}/kata/sbx/c1`);
    expect(cg.path('kata//sbx/./c1/')).toBe(`${root}/kata/sbx/c1`);
    expect(cg.path('/')).toBe(root);
    expect(cg.paths('/a')).toEqual({ '': `${root}/a` });
    expect(cg.controllers()).toEqual(['cpuset', 'cpu', 'io', 'memory', 'hugetlb', 'pids', 'rdma', 'misc']);
    expect(cg.exists('/kata/sbx/c1')).toBe(true);
    expect(cg.exists('/kata/sbx/nope')).toBe(false);
  });

  it('v1: hierarchies found by scanning (co-mounted cpu,cpuacct; named and non-cgroup dirs skipped)', () => {
    const root = path.join(FIXTURES, 'cgroup-v1');
    const cg = openCgroups(root);
    expect(cg.mode).toBe('v1');
    expect(cg.controllers()).toEqual(['blkio', 'cpu', 'cpuacct', 'cpuset', 'devices', 'freezer', 'hugetlb', 'memory', 'pids']);
    expect(cg.path('/kata/sbx/c1', 'memory')).toBe(`${root}/memory/kata/sbx/c1`);
    // default controller: pids
    expect(cg.path('/kata/sbx/c1')).toBe(`${root}/pids/kata/sbx/c1`);
    expect(fs.realpathSync(cg.path('/kata', 'cpuacct'))).toBe(fs.realpathSync(`${root}/cpu,cpuacct/kata`));
    const p = cg.paths('/kata');
    expect(Object.keys(p).sort()).toEqual(cg.controllers());
    expect(cg.exists('/kata/sbx/c2')).toBe(true); // only in cpu,cpuacct and blkio
    expect(cg.exists('/kata/sbx/c3')).toBe(false);
  });

  it('v1: asking for an unmounted controller is FAILED_PRECONDITION', () => {
    const cg = openCgroups(path.join(FIXTURES, 'cgroup-v1'));
    expect(() => cg.path('/x', 'rdma')).toThrow(RpcError);
    try {
      cg.path('/x', 'rdma');
    } catch (e) {
      expect((e as RpcError).code).toBe(Code.FAILED_PRECONDITION);
    }
  });

  it("'..' in a path is refused", () => {
    const cg = openCgroups(path.join(FIXTURES, 'cgroup-v2'));
    expect(() => cg.path('/kata/../../etc')).toThrow(/\.\./);
  });
});

describe('normalizeRel', () => {
  it.each([
    ['', '/'],
    ['/', '/'],
    ['a', '/a'],
    ['/a/b/', '/a/b'],
    ['//a//./b', '/a/b'],
  ])('%j -> %j', (input, out) => {
    expect(normalizeRel(input)).toBe(out);
  });
  it.each(['..', '/a/../b', 'a/..', 'a\0b'])('refuses %j', (input) => {
    expect(() => normalizeRel(input)).toThrow(RpcError);
  });
});

describe('containerCgroupPath', () => {
  const SB = 'sb1';
  const CID = 'c0ffee';
  it.each([
    ['empty -> /kata/<sandbox>/<cid>', '', `/kata/${SB}/${CID}`],
    ['undefined -> /kata/<sandbox>/<cid>', undefined, `/kata/${SB}/${CID}`],
    ['"/" counts as empty', '/', `/kata/${SB}/${CID}`],
    ['cgroupfs path kept', '/kubepods/burstable/pod123/c0ffee', '/kubepods/burstable/pod123/c0ffee'],
    ['relative path made absolute', 'kubepods/besteffort/pod9/x', '/kubepods/besteffort/pod9/x'],
    ['path normalised', '//kubepods//pod1/./x/', '/kubepods/pod1/x'],
    ['systemd form', 'kubepods-burstable-pod1.slice:cri-containerd:abc', '/kubepods-burstable-pod1.slice/cri-containerd/abc'],
    ['systemd form, empty prefix', 'system.slice::abc', '/system.slice/abc'],
    ['systemd form, root slice "-"', '-:docker:abc', '/docker/abc'],
    ['systemd form, empty name -> cid', 'system.slice:kata_agent:', `/system.slice/kata_agent/${CID}`],
    ['systemd form, all empty -> cid', '::', `/${CID}`],
  ])('%s', (_name, input, out) => {
    expect(containerCgroupPath(SB, input, CID)).toBe(out);
  });

  it.each([
    ['".." component', '/kubepods/../../x'],
    ["the agent's own cgroup", '/kata-agent'],
    ["under the agent's own cgroup", '/kata-agent/x'],
    ["systemd form naming the agent's cgroup", ':kata-agent:x'],
  ])('refuses %s', (_n, input) => {
    let err: unknown;
    try {
      containerCgroupPath(SB, input, CID);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RpcError);
    expect((err as RpcError).code).toBe(Code.INVALID_ARGUMENT);
  });

  it.each(['', '.', '..', 'a/b'])('refuses container id %j', (cid) => {
    expect(() => containerCgroupPath(SB, '', cid)).toThrow(RpcError);
  });

  it('refuses a bad sandbox id when it is needed', () => {
    expect(() => containerCgroupPath('a/b', '', CID)).toThrow(RpcError);
    expect(sandboxCgroupPath('s')).toBe('/kata/s');
  });
});
