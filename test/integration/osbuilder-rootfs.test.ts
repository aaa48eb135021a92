// osbuilder rootfs for real (root): the minimal rootfs from this machine's crun, busybox and
// node with the default agent packer, checked with independent tools (chroot, the tree's own
// dynamic loader's --list, busybox); twice, to compare the trees. The debian rootfs downloads
// ~100 MB from deb.debian.org (reachable from these machines and CI); GK_NET_TESTS=0 skips it
// on a machine without network.
import { execFileSync, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../osbuilder/src/cli';
import { listDistrosCommand, newDistroCommand, rootfsCommand } from '../../osbuilder/src/rootfs/command';
import { EXIT } from '../../osbuilder/src/util/errors';
import { resolveInRoot } from '../../osbuilder/src/rootfs/fsroot';
import { bundleEntry, REPO_ROOT } from '../helpers/bundle';

const isRoot = process.getuid?.() === 0;
const have = (p: string): boolean => fs.existsSync(p);
const canRun = isRoot && have('/usr/bin/crun') && have('/bin/busybox') && have('/usr/bin/unshare') && process.arch === 'x64';
const EPOCH = '1700000000';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-rootfs-it-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function cli(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCli(argv, [rootfsCommand, listDistrosCommand, newDistroCommand], {
    stdout: (s) => void (out += s),
    stderr: (s) => void (err += s),
    env: { PATH: process.env.PATH, SOURCE_DATE_EPOCH: EPOCH, ...env },
  });
  return { code, out, err };
}

/** Run `cmd` chrooted in root, with a /proc (crun re-executes itself through /proc/self/exe). */
function inRoot(root: string, cmd: string[]): { code: number; out: string } {
  const script = 'mount -t proc proc "$0/proc" && exec chroot "$0" "$@"';
  const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, root, ...cmd], {
    encoding: 'utf8',
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
  });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}

/** Everything about a tree that must be reproducible: paths, types, modes, owners, mtimes, contents, link targets. */
function fingerprint(root: string): string[] {
  const out: string[] = [];
  const visit = (dir: string): void => {
    for (const n of fs.readdirSync(dir).sort()) {
      const p = path.join(dir, n);
      const st = fs.lstatSync(p);
      const what = st.isSymbolicLink()
        ? `-> ${fs.readlinkSync(p)}`
        : st.isFile()
          ? crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex')
          : st.isDirectory()
            ? 'dir'
            : 'other';
      out.push(`${path.relative(root, p)} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${Math.floor(st.mtimeMs / 1000)} ${what}`);
      if (st.isDirectory()) visit(p);
    }
  };
  visit(root);
  return out;
}

describe.runIf(canRun)('osbuilder rootfs minimal (root, real tools)', () => {
  const root = path.join(tmp, 'rootfs');
  let res: { code: number; out: string; err: string };
  // Taken before anything runs in the tree (running crun touches its /tmp).
  let print: string[] = [];
  let late = '';
  beforeAll(async () => {
    res = await cli(['rootfs', 'minimal', '-o', root]);
    print = fingerprint(root);
    late = execFileSync('find', [root, '-newermt', `@${EPOCH}`], { encoding: 'utf8' }).trim();
  }, 60_000);

  it('builds and reports its size', () => {
    expect(res.err).not.toMatch(/osbuilder rootfs: /);
    expect(res.code).toBe(EXIT.OK);
    expect(res.out).toMatch(/: minimal host, init the agent, \d+ MiB in \d+ entries\n$/);
    expect(res.err).toMatch(/\[6\/7\] checks: done in [\d.]+ s \(the agent and crun run\)/);
  });

  it('has /sbin/init and /init leading to the agent, which runs in the tree', () => {
    const agent = inRoot(root, ['/bin/readlink', '-f', '/usr/bin/kata-agent']).out;
    expect(agent).toMatch(/^\/usr\/(bin|lib)\//);
    expect(inRoot(root, ['/bin/readlink', '-f', '/sbin/init']).out).toBe(agent);
    expect(inRoot(root, ['/bin/readlink', '-f', '/init']).out).toBe(agent);
    const v = inRoot(root, ['/sbin/init', '--version']);
    expect(v.out).toMatch(/^kata-agent \(guestkit\) \d+\.\d+\.\d+/);
    expect(v.code).toBe(0);
  });

  it('has busybox applets: a shell and the usual tools work in the tree', () => {
    expect(fs.readlinkSync(path.join(root, 'usr/bin/sh'))).toBe('/usr/bin/busybox');
    const r = inRoot(root, ['/bin/sh', '-c', 'ls / && cat /etc/hostname && test -d /proc/self && echo ok']);
    expect(r.out).toMatch(/\busr\b[\s\S]*guestkit\nok\n$/);
    expect(r.code).toBe(0);
  });

  it('runs crun from the shell: chroot <rootfs> /bin/sh -c "crun --version"', () => {
    const r = inRoot(root, ['/bin/sh', '-c', 'crun --version']);
    expect(r.out).toMatch(/^crun version \d/);
    expect(r.code).toBe(0);
  });

  it('the tree\'s own dynamic loader finds every library of crun and node in the tree', () => {
    // The agent is node (a single executable), or a script run by a node in the tree.
    const head = fs.readFileSync(resolveInRoot(root, '/usr/bin/kata-agent')).subarray(0, 256).toString('latin1');
    const node = head.startsWith('#!') ? head.slice(2).split('\n')[0]!.trim().split(' ')[0]! : '/usr/bin/kata-agent';
    for (const exe of ['/usr/bin/crun', node]) {
      const r = inRoot(root, ['/lib64/ld-linux-x86-64.so.2', '--list', exe]);
      expect(r.code, r.out).toBe(0);
      expect(r.out).not.toMatch(/not found/);
      expect(r.out).toMatch(/libc\.so\.6 => \/lib\/x86_64-linux-gnu\/libc\.so\.6/);
    }
  });

  it('holds no documentation, and every mtime is at most SOURCE_DATE_EPOCH', () => {
    expect(late).toBe('');
    expect(fs.existsSync(path.join(root, 'usr/share/doc'))).toBe(false);
  });

  it('is reproducible: a second build is the same tree', async () => {
    const again = path.join(tmp, 'rootfs2');
    const r = await cli(['rootfs', 'minimal', '-o', again]);
    expect(r.code).toBe(EXIT.OK);
    const diff = fingerprint(again).filter((l, i) => l !== print[i]);
    expect(diff).toEqual([]);
    expect(fingerprint(again)).toHaveLength(print.length);
  }, 60_000);
});

describe.runIf(canRun && have('/usr/bin/mmdebstrap'))('missing mmdebstrap (hidden in a private mount namespace)', () => {
  it('is MISSING (3), naming the package, and writes nothing', async () => {
    const dir = path.join(REPO_ROOT, 'tmp', 'osbuilder-rootfs-test');
    fs.mkdirSync(dir, { recursive: true });
    const entry = path.join(dir, 'entry.ts');
    fs.writeFileSync(
      entry,
      `import { runCli } from '../../osbuilder/src/cli';
import { rootfsCommand } from '../../osbuilder/src/rootfs/command';
process.exitCode = await runCli(process.argv.slice(2), [rootfsCommand], {
  stdout: (s) => void process.stdout.write(s), stderr: (s) => void process.stderr.write(s), env: process.env });
`,
    );
    const bundle = await bundleEntry(entry);
    const out = path.join(tmp, 'never');
    const script = 'mount --bind /dev/null /usr/bin/mmdebstrap && exec "$0" "$@"';
    const r = spawnSync('unshare', ['-m', '--propagation', 'private', 'sh', '-c', script, process.execPath, bundle, 'rootfs', 'debian', '-o', out], { encoding: 'utf8' });
    expect(r.stderr).toBe('osbuilder rootfs: mmdebstrap is needed to build the debian rootfs but is not installed (apt-get install mmdebstrap)\n');
    expect(r.status).toBe(EXIT.MISSING);
    expect(fs.existsSync(out)).toBe(false);
  });
});

describe.runIf(canRun && process.env.GK_NET_TESTS !== '0')('osbuilder rootfs debian (network: deb.debian.org)', () => {
  it('builds bookworm minbase with crun and the agent as init', async () => {
    const root = path.join(tmp, 'debian');
    const r = await cli(['rootfs', 'debian', '-o', root], { EXTRA_PKGS: 'iproute2' });
    expect(r.err).not.toMatch(/osbuilder rootfs: /);
    expect(r.code).toBe(EXIT.OK);
    expect(r.out).toMatch(/: debian bookworm, init the agent, \d+ MiB in \d+ entries\n$/);
    expect(fs.readFileSync(path.join(root, 'etc/debian_version'), 'utf8')).toMatch(/^12\./);
    const pkgs = inRoot(root, ['dpkg-query', '-W', '-f', '${Package} ${Status}\\n', 'crun', 'libseccomp2', 'iproute2']);
    expect(pkgs.out.trim().split('\n').sort()).toEqual(['crun install ok installed', 'iproute2 install ok installed', 'libseccomp2 install ok installed']);
    expect(inRoot(root, ['/sbin/init', '--version']).out).toMatch(/^kata-agent \(guestkit\)/);
    expect(inRoot(root, ['/bin/sh', '-c', 'crun --version']).out).toMatch(/^crun version/);
    expect(fs.readdirSync(path.join(root, 'var/lib/apt/lists')).filter((n) => n !== 'partial' && n !== 'lock')).toEqual([]);
    expect(fs.readdirSync(path.join(root, 'usr/share/doc'))).toEqual([]);
    expect(fs.readdirSync(path.join(root, 'usr/share/locale'))).toEqual([]);
    expect(fs.readFileSync(path.join(root, 'var/lib/osbuilder/osbuilder.yaml'), 'utf8')).toMatch(/name: debian\n  version: "bookworm"/);
  }, 600_000);
});
