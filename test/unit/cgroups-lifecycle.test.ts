import fs from 'node:fs';
import os from 'node:os';
import { afterAll, describe, expect, it } from 'vitest';
import { AGENT_CGROUP, openCgroups, setupAgentCgroup } from '../../agent/src/cgroups';
import { realFs } from '../../agent/src/cgroups/fsops';
import { SysError } from '../../agent/src/sys/libc';
import { Code, RpcError } from '../../agent/src/rpc/status';
import { cleanupTemps, copyTree, read, write } from './cgroups-helpers';

afterAll(cleanupTemps);

const isDir = (p: string) => fs.existsSync(p) && fs.statSync(p).isDirectory();

describe('create', () => {
  it('v2: mkdir -p, delegating controllers in every ancestor but not the leaf', () => {
    const root = copyTree('cgroup-v2');
    const cg = openCgroups(root);
    cg.create('/kata/sbx2/c9');
    expect(isDir(`${root}/kata/sbx2/c9`)).toBe(true);
    // root had "cpu memory pids": the rest of its controllers were added
    expect(read(`${root}/cgroup.subtree_control`)).toBe('+cpuset +io +hugetlb +rdma +misc');
    // /kata had "cpu memory"
    expect(read(`${root}/kata/cgroup.subtree_control`)).toBe('+cpuset +io +hugetlb +pids');
    // the new leaf got nothing written
    expect(fs.readdirSync(`${root}/kata/sbx2/c9`)).toEqual([]);
    expect(cg.exists('/kata/sbx2/c9')).toBe(true);
  });

  it('v2: an ancestor that already delegates everything is not written', () => {
    const root = copyTree('cgroup-v2');
    const cg = openCgroups(root);
    const before = fs.statSync(`${root}/kata/sbx/cgroup.subtree_control`).mtimeMs;
    write(`${root}/cgroup.subtree_control`, 'cpuset cpu io memory hugetlb pids rdma misc\n');
    write(`${root}/kata/cgroup.subtree_control`, 'cpuset cpu io memory hugetlb pids\n');
    cg.create('/kata/sbx/c7');
    expect(read(`${root}/cgroup.subtree_control`)).toBe('cpuset cpu io memory hugetlb pids rdma misc\n');
    expect(read(`${root}/kata/sbx/cgroup.subtree_control`)).toBe('cpuset cpu io memory hugetlb pids\n');
    expect(fs.statSync(`${root}/kata/sbx/cgroup.subtree_control`).mtimeMs).toBe(before);
  });

  it('v2: a refused bulk enable falls back to one controller at a time', () => {
    const root = copyTree('cgroup-v2');
    const writes: Array<[string, string]> = [];
    const cg = openCgroups(root, undefined, {
      ops: {
        write(file, data) {
          writes.push([file.slice(root.length), data]);
          if (file.endsWith('subtree_control') && (data.includes(' ') || data === '+rdma')) {
            throw new SysError('write', os.constants.errno.EINVAL, file);
          }
          realFs.write(file, data);
        },
      },
    });
    cg.create('/x');
    expect(writes).toEqual([
      ['/cgroup.subtree_control', '+cpuset +io +hugetlb +rdma +misc'],
      ['/cgroup.subtree_control', '+cpuset'],
      ['/cgroup.subtree_control', '+io'],
      ['/cgroup.subtree_control', '+hugetlb'],
      ['/cgroup.subtree_control', '+rdma'],
      ['/cgroup.subtree_control', '+misc'],
    ]);
    expect(isDir(`${root}/x`)).toBe(true);
  });

  it('v1: in every hierarchy once (co-mounted counted once); new cpusets inherit cpus/mems', () => {
    const root = copyTree('cgroup-v1');
    const mkdirs: string[] = [];
    const cg = openCgroups(root, undefined, {
      ops: {
        mkdir(dir) {
          const existed = fs.existsSync(dir);
          realFs.mkdir(dir);
          if (existed) return;
          mkdirs.push(dir.slice(root.length));
          // like the kernel: a new v1 cpuset comes with empty cpuset.cpus/mems
          if (dir.startsWith(`${root}/cpuset/`)) {
            fs.writeFileSync(`${dir}/cpuset.cpus`, '\n');
            fs.writeFileSync(`${dir}/cpuset.mems`, '\n');
          }
        },
      },
    });
    cg.create('/kata/new/c1');
    expect(mkdirs.sort()).toEqual(
      ['blkio', 'cpu,cpuacct', 'cpuset', 'devices', 'freezer', 'hugetlb', 'memory', 'pids']
        .flatMap((h) => [`/${h}/kata/new`, `/${h}/kata/new/c1`])
        .sort(),
    );
    expect(read(`${root}/cpuset/kata/new/cpuset.cpus`)).toBe('0-1');
    expect(read(`${root}/cpuset/kata/new/c1/cpuset.cpus`)).toBe('0-1');
    expect(read(`${root}/cpuset/kata/new/c1/cpuset.mems`)).toBe('0');
    expect(isDir(`${root}/systemd/kata/new`)).toBe(false); // named hierarchy untouched
  });

  it('hybrid: also created in unified/ (membership only)', () => {
    const root = copyTree('cgroup-v1');
    fs.mkdirSync(`${root}/unified`);
    write(`${root}/unified/cgroup.controllers`, 'hugetlb\n');
    write(`${root}/unified/cgroup.subtree_control`, '');
    write(`${root}/unified/cgroup.procs`, '');
    const cg = openCgroups(root);
    cg.create('/a/b');
    expect(isDir(`${root}/unified/a/b`)).toBe(true);
    expect(read(`${root}/unified/cgroup.subtree_control`)).toBe('');
    expect(cg.paths('/a/b')['']).toBe(`${root}/unified/a/b`);
  });
});

describe('remove', () => {
  it('v2: descendants first, then the cgroup; parents stay', async () => {
    const root = copyTree('cgroup-v2');
    const order: string[] = [];
    const cg = openCgroups(root, undefined, {
      ops: {
        rmdir(dir) {
          order.push(dir.slice(root.length));
          realFs.rmdir(dir);
        },
      },
    });
    cg.create('/kata/gone/a/b');
    cg.create('/kata/gone/c');
    await cg.remove('/kata/gone');
    expect(order).toEqual(['/kata/gone/a/b', '/kata/gone/a', '/kata/gone/c', '/kata/gone']);
    expect(isDir(`${root}/kata/gone`)).toBe(false);
    expect(isDir(`${root}/kata`)).toBe(true);
  });

  it('retries EBUSY until it succeeds', async () => {
    const root = copyTree('cgroup-v2');
    let busy = 3;
    let calls = 0;
    const cg = openCgroups(root, undefined, {
      ops: {
        rmdir(dir) {
          calls++;
          if (busy-- > 0) throw new SysError('rmdir', os.constants.errno.EBUSY, dir);
          realFs.rmdir(dir);
        },
      },
    });
    cg.create('/busy');
    await cg.remove('/busy', { busyTimeoutMs: 5000 });
    expect(calls).toBe(4);
    expect(isDir(`${root}/busy`)).toBe(false);
  });

  it('gives up on EBUSY after the bound, with the SysError naming the cgroup', async () => {
    const root = copyTree('cgroup-v2');
    const cg = openCgroups(root, undefined, {
      ops: {
        rmdir(dir) {
          throw new SysError('rmdir', os.constants.errno.EBUSY, dir);
        },
      },
    });
    cg.create('/stuck');
    await expect(cg.remove('/stuck', { busyTimeoutMs: 50 })).rejects.toMatchObject({ code: 'EBUSY', path: `${root}/stuck` });
  });

  it('other errors are not retried', async () => {
    const root = copyTree('cgroup-v2');
    let calls = 0;
    const cg = openCgroups(root, undefined, {
      ops: {
        rmdir(dir) {
          calls++;
          throw new SysError('rmdir', os.constants.errno.EPERM, dir);
        },
      },
    });
    cg.create('/perm');
    await expect(cg.remove('/perm')).rejects.toMatchObject({ code: 'EPERM' });
    expect(calls).toBe(1);
  });

  it('a missing cgroup is a no-op; the root is refused', async () => {
    const root = copyTree('cgroup-v2');
    const cg = openCgroups(root);
    await expect(cg.remove('/does/not/exist')).resolves.toBeUndefined();
    await expect(cg.remove('/')).rejects.toBeInstanceOf(RpcError);
  });

  it('v1: removed from every hierarchy', async () => {
    const root = copyTree('cgroup-v1');
    const cg = openCgroups(root);
    cg.create('/tmpcg/x');
    expect(isDir(`${root}/memory/tmpcg/x`)).toBe(true);
    await cg.remove('/tmpcg');
    for (const h of ['blkio', 'cpu,cpuacct', 'cpuset', 'devices', 'freezer', 'hugetlb', 'memory', 'pids']) {
      expect(isDir(`${root}/${h}/tmpcg`)).toBe(false);
    }
    expect(cg.exists('/tmpcg')).toBe(false);
  });
});

describe('processes', () => {
  it('v2: pids from cgroup.procs, recursive includes children; missing -> []', () => {
    const cg = openCgroups(copyTree('cgroup-v2'));
    expect(cg.pids('/kata/sbx/c1')).toEqual([201, 202]);
    expect(cg.pids('/kata/sbx/c1', { recursive: true })).toEqual([201, 202, 203]);
    expect(cg.pids('/kata/sbx/none')).toEqual([]);
  });

  it('v1: pids from the pids hierarchy', () => {
    const cg = openCgroups(copyTree('cgroup-v1'));
    expect(cg.pids('/kata/sbx/c1')).toEqual([101, 102]);
    expect(cg.pids('/nope')).toEqual([]);
  });

  it('v2: addProcess writes cgroup.procs; a missing cgroup is ENOENT', () => {
    const root = copyTree('cgroup-v2');
    const cg = openCgroups(root);
    cg.addProcess('/kata/sbx/c2', 4242);
    expect(read(`${root}/kata/sbx/c2/cgroup.procs`)).toBe('4242');
    expect(() => cg.addProcess('/nope', 1)).toThrow(SysError);
  });

  it('v1: addProcess writes every hierarchy', () => {
    const root = copyTree('cgroup-v1');
    const cg = openCgroups(root);
    cg.addProcess('/kata/sbx/c1', 777);
    for (const h of ['blkio', 'cpu,cpuacct', 'cpuset', 'devices', 'freezer', 'hugetlb', 'memory', 'pids']) {
      expect(read(`${root}/${h}/kata/sbx/c1/cgroup.procs`)).toBe('777');
    }
    expect(read(`${root}/systemd/kata/sbx/c1/cgroup.procs`)).toBe('101\n102\n');
  });
});

describe('freeze', () => {
  it('v2: writes cgroup.freeze and waits for cgroup.events frozen', async () => {
    const root = copyTree('cgroup-v2');
    const cg = openCgroups(root);
    const dir = `${root}/kata/sbx/c1`;
    let settled = false;
    const p = cg.freeze('/kata/sbx/c1', true).then(() => (settled = true));
    expect(read(`${dir}/cgroup.freeze`)).toBe('1');
    await new Promise((r) => setTimeout(r, 30));
    expect(settled).toBe(false); // cgroup.events still says frozen 0
    write(`${dir}/cgroup.events`, 'populated 1\nfrozen 1\n');
    await p;
    expect(settled).toBe(true);
    const t = cg.freeze('/kata/sbx/c1', false);
    expect(read(`${dir}/cgroup.freeze`)).toBe('0');
    write(`${dir}/cgroup.events`, 'populated 1\nfrozen 0\n');
    await t;
  });

  it('v2: DEADLINE_EXCEEDED when the state is never reached', async () => {
    const cg = openCgroups(copyTree('cgroup-v2'));
    await expect(cg.freeze('/kata/sbx/c1', true, { timeoutMs: 50 })).rejects.toMatchObject({ code: Code.DEADLINE_EXCEEDED });
  });

  it('v2: a missing cgroup is ENOENT naming cgroup.freeze', async () => {
    const root = copyTree('cgroup-v2');
    const cg = openCgroups(root);
    await expect(cg.freeze('/nope', true)).rejects.toMatchObject({ code: 'ENOENT', path: `${root}/nope/cgroup.freeze` });
  });

  it('v1: freezer.state FROZEN / THAWED', async () => {
    const root = copyTree('cgroup-v1');
    const cg = openCgroups(root);
    await cg.freeze('/kata/sbx/c1', true);
    expect(read(`${root}/freezer/kata/sbx/c1/freezer.state`)).toBe('FROZEN');
    await cg.freeze('/kata/sbx/c1', false);
    expect(read(`${root}/freezer/kata/sbx/c1/freezer.state`)).toBe('THAWED');
  });

  it('v1: a freeze stuck in FREEZING times out and thaws again', async () => {
    const root = copyTree('cgroup-v1');
    const writes: string[] = [];
    const cg = openCgroups(root, undefined, {
      ops: {
        write(file, data) {
          writes.push(data);
          realFs.write(file, data === 'FROZEN' ? 'FREEZING' : data);
        },
      },
    });
    await expect(cg.freeze('/kata/sbx/c1', true, { timeoutMs: 300 })).rejects.toMatchObject({ code: Code.DEADLINE_EXCEEDED });
    expect(writes[0]).toBe('FROZEN');
    expect(writes.at(-1)).toBe('THAWED');
    expect(read(`${root}/freezer/kata/sbx/c1/freezer.state`)).toBe('THAWED');
  });
});

describe('setupAgentCgroup', () => {
  it('v2: creates /kata-agent with controllers delegated, moves the pid, sets memory.low', () => {
    const root = copyTree('cgroup-v2');
    const cg = openCgroups(root, undefined, {
      ops: {
        mkdir(dir) {
          realFs.mkdir(dir);
          // the kernel would create the interface files of the delegated controllers
          for (const f of ['cgroup.procs', 'memory.low']) if (!fs.existsSync(`${dir}/${f}`)) fs.writeFileSync(`${dir}/${f}`, '');
        },
      },
    });
    const p = setupAgentCgroup(cg, 1234, { memoryLowBytes: 64 << 20 });
    expect(p).toBe(`${root}${AGENT_CGROUP}`);
    expect(read(`${p}/cgroup.procs`)).toBe('1234');
    expect(read(`${p}/memory.low`)).toBe(String(64 << 20));
    expect(read(`${root}/cgroup.subtree_control`)).toBe('+cpuset +io +hugetlb +rdma +misc');
  });

  it('v1: joins every hierarchy; memory.low does not apply', () => {
    const root = copyTree('cgroup-v1');
    const cg = openCgroups(root, undefined, {
      ops: {
        mkdir(dir) {
          realFs.mkdir(dir);
          if (!fs.existsSync(`${dir}/cgroup.procs`)) fs.writeFileSync(`${dir}/cgroup.procs`, '');
        },
      },
    });
    const p = setupAgentCgroup(cg, 99, { memoryLowBytes: 1 << 20 });
    expect(p).toBe(`${root}/pids/kata-agent`);
    expect(read(`${root}/memory/kata-agent/cgroup.procs`)).toBe('99');
    expect(read(`${root}/cpu,cpuacct/kata-agent/cgroup.procs`)).toBe('99');
    expect(fs.existsSync(`${root}/memory/kata-agent/memory.soft_limit_in_bytes`)).toBe(false);
  });

  it('errors surface to the caller (cannot write cgroup.procs)', () => {
    const root = copyTree('cgroup-v2');
    const cg = openCgroups(root); // fake mkdir creates no cgroup.procs
    expect(() => setupAgentCgroup(cg, 1)).toThrow(SysError);
  });
});
