// osbuilder pack, for real: the repository's agent packed with this machine's node into one
// executable; run it (--version with the stamped commit; serving Health over a unix socket, with
// koffi's addon loaded from beside it), check it was stripped, and that two packs are identical.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../osbuilder/src/cli';
import { packAgent, type PackResult } from '../../osbuilder/src/pack/agent';
import { packCommand } from '../../osbuilder/src/pack/command';
import { findSeaBlob, readProgramHeaders, PT } from '../../osbuilder/src/pack/elf';
import { findNodeIcu, parseIcuPackage, shrinkNodeIcu } from '../../osbuilder/src/pack/icu';
import { cleanNodeEnv, parseSeaBlob, SEA_FLAGS } from '../../osbuilder/src/pack/sea';
import { EXIT } from '../../osbuilder/src/util/errors';
import { AGENT_CTL, ROOT } from '../helpers/agent-ns';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-osb-pack-'));
const children = new Set<ChildProcess>();
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  fs.rmSync(tmp, { recursive: true, force: true });
});

const sha256 = (f: string): string => crypto.createHash('sha256').update(fs.readFileSync(f)).digest('hex');
const pkgVersion = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

let a: PackResult;
let b: PackResult;
beforeAll(async () => {
  a = await packAgent({ outDir: path.join(tmp, 'a'), repoRoot: ROOT });
  // The second pack through the command line (what `osbuilder pack --output DIR --json` prints).
  let stdout = '';
  let stderr = '';
  const code = await runCli(['pack', '--quiet', '--json', '--output', path.join(tmp, 'b')], [packCommand], {
    stdout: (s) => void (stdout += s),
    stderr: (s) => void (stderr += s),
    env: process.env,
  });
  expect(stderr).toBe('');
  expect(code).toBe(EXIT.OK);
  b = JSON.parse(stdout) as PackResult;
});

/** Start the packed agent as a plain process; resolves once it logs 'listening'. */
function startAgent(exe: string, addr: string): Promise<{ child: ChildProcess; out: () => string }> {
  const child = spawn(exe, ['--listen', addr, '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'pipe'], env: cleanNodeEnv() });
  children.add(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => void (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => void (out += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no 'listening' within 20 s:\n${out}`)), 20_000);
    const onData = (): void => {
      if (out.includes('"msg":"listening"')) {
        clearTimeout(timer);
        resolve({ child, out: () => out });
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (c, s) => {
      clearTimeout(timer);
      reject(new Error(`the agent exited (${c ?? s}) before listening:\n${out}`));
    });
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await gone;
}

function agentCtl(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [AGENT_CTL, ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('osbuilder pack', () => {
  it('produces the executable and koffi addon for /usr/bin, with the version and commit', () => {
    expect(a.files).toEqual([
      { src: path.join(tmp, 'a', 'kata-agent'), dest: '/usr/bin/kata-agent', mode: 0o755 },
      { src: path.join(tmp, 'a', 'koffi.node'), dest: '/usr/bin/koffi.node', mode: 0o644 },
    ]);
    expect(a.executable).toBe(a.files[0]!.src);
    expect(a.bytes).toBe(fs.statSync(a.executable).size);
    expect(fs.statSync(a.executable).mode & 0o777).toBe(0o755);
    expect(a.version).toBe(pkgVersion);
    const head = spawnSync('git', ['-C', ROOT, 'rev-parse', 'HEAD'], { encoding: 'utf8' });
    if (head.status === 0) expect(a.commit).toMatch(new RegExp(`^${head.stdout.trim()}(-dirty)?$`));
    // Only the two outputs in the output directory (no temporaries left).
    expect(fs.readdirSync(path.join(tmp, 'a')).sort()).toEqual(['kata-agent', 'koffi.node']);
  });

  it('kata-agent --version prints the stamped version and commit', () => {
    const r = spawnSync(a.executable, ['--version'], { encoding: 'utf8', env: cleanNodeEnv() });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(`kata-agent (guestkit) ${a.version} (commit ${a.commit})\n`);
    expect(r.stderr).toBe(''); // no experimental-feature warning
  });

  it('is a stripped node (no .debug sections) carrying the agent and a code cache', () => {
    const sections = spawnSync('readelf', ['-SW', a.executable], { encoding: 'utf8' });
    expect(sections.status).toBe(0);
    expect(sections.stdout).toContain('.text');
    expect(sections.stdout).not.toMatch(/\.debug_|\.symtab/);
    const elf = fs.readFileSync(a.executable);
    const blob = parseSeaBlob(findSeaBlob(elf)!);
    expect(blob.flags & SEA_FLAGS.useCodeCache).toBe(SEA_FLAGS.useCodeCache);
    expect(blob.codeCache!.length).toBeGreaterThan(10_000);
    expect(blob.codePath).toBe('kata-agent.cjs'); // no temporary path recorded
    expect(blob.code.toString()).toContain('grpc.Health'); // grpc-js, protobufjs and the descriptor inlined
    expect(readProgramHeaders(elf).filter((p) => p.type === PT.LOAD).length).toBeGreaterThan(1);
  });

  it('serves Health over a unix socket as a plain process, with koffi loaded from beside it', async () => {
    const sock = path.join(tmp, 'x.sock');
    const { child, out } = await startAgent(a.executable, `unix://${sock}`);
    try {
      const check = agentCtl('--addr', `unix://${sock}`, 'check');
      expect(check.stderr).toBe('');
      expect(JSON.parse(check.stdout)).toEqual({ status: 'SERVING' });
      const version = agentCtl('--addr', `unix://${sock}`, '--proto', 'grpc', 'version'); // grpc-js inside the executable
      expect(JSON.parse(version.stdout)).toMatchObject({ agent_version: a.version });
      // koffi: prctl(PR_SET_CHILD_SUBREAPER) went through libc (a failure is only a warning).
      expect(out()).toContain('"mode":"subreaper","msg":"init done"');
      expect(out()).not.toContain('cannot become a child subreaper');
    } finally {
      await stop(child);
    }
    // An abstract socket is created with koffi (socket/bind in libc), not by Node.
    const abstract = `unix://@gk-pack-test-${process.pid}`;
    const second = await startAgent(a.executable, abstract);
    try {
      expect(JSON.parse(agentCtl('--addr', abstract, 'check').stdout)).toEqual({ status: 'SERVING' });
    } finally {
      await stop(second.child);
    }
  });

  it("carries node's ICU data cut to English (small profile), in place", () => {
    expect(a.icu.profile).toBe('small');
    const elf = fs.readFileSync(a.executable);
    const at = findNodeIcu(elf)!;
    expect(at.symbol).toMatch(/^icudt\d+_dat$/);
    expect(at.size).toBe(a.icu.shrink!.bytes);
    const pkg = parseIcuPackage(elf.subarray(at.offset, at.offset + at.size));
    const names = pkg.items.map((i) => i.name.slice(i.name.indexOf('/') + 1));
    expect(names).toEqual(expect.arrayContaining(['root.res', 'en.res', 'zoneinfo64.res', 'coll/root.res', 'cnvalias.icu']));
    expect(names).not.toContain('de.res');
    expect(names.filter((n) => n.endsWith('.cnv') || n.endsWith('.dict'))).toEqual([]);
    expect(a.icu.shrink!.keptBytes).toBeLessThan(a.icu.shrink!.bytes / 4);
    expect(elf.subarray(at.offset + a.icu.shrink!.keptBytes, at.offset + at.size).every((x) => x === 0)).toBe(true);
  });

  it('a node with the small ICU data still does Intl, normalization and UTF-8/Latin-1 (English only)', () => {
    const elf = fs.readFileSync(process.execPath);
    if (!findNodeIcu(elf)) return; // a node built without ICU data: nothing to cut
    expect(shrinkNodeIcu(elf)!.keptItems).toBeGreaterThan(50);
    const node = path.join(tmp, 'node-small-icu');
    fs.writeFileSync(node, elf, { mode: 0o755 });
    const script = `
      const out = {
        date: new Intl.DateTimeFormat('en-US', { timeZone: 'Europe/Paris', dateStyle: 'full', timeStyle: 'long' }).format(new Date(0)),
        german: new Intl.NumberFormat('de-DE').format(1234567.5),
        nfkc: '\uFB01'.normalize('NFKC'),
        collate: new Intl.Collator('en').compare('a', 'B'),
        utf8: new TextDecoder('utf-8').decode(Buffer.from('h\u00e9llo')),
        latin1: new TextDecoder('latin1').decode(Buffer.from([0xe9])),
        host: new URL('http://b\u00fccher.example/').host,
      };
      try { new TextDecoder('shift_jis'); out.sjis = 'ok' } catch (e) { out.sjis = e.code }
      console.log(JSON.stringify(out));`;
    const r = spawnSync(node, ['-e', script], { encoding: 'utf8', env: cleanNodeEnv() });
    expect(r.stderr).toBe('');
    expect(JSON.parse(r.stdout)).toEqual({
      date: expect.stringMatching(/^Thursday, January 1, 1970 at 1:00:00\sAM GMT\+1$/), // time zone data kept
      german: '1,234,567.5', // no German locale data: English formatting, as with Node's small-icu
      nfkc: 'fi',
      collate: -1,
      utf8: 'h\u00e9llo',
      latin1: '\u00e9',
      host: 'xn--bcher-kva.example',
      sjis: 'ERR_ENCODING_NOT_SUPPORTED',
    });
  });

  it('needs koffi.node beside it (it is not looked for anywhere else)', () => {
    const alone = path.join(tmp, 'alone');
    fs.mkdirSync(alone);
    const exe = path.join(alone, 'kata-agent');
    fs.linkSync(a.executable, exe);
    const r = spawnSync(exe, ['--listen', `unix://${path.join(alone, 'x.sock')}`, '--log-level', 'info'], { encoding: 'utf8', env: cleanNodeEnv(), timeout: 20_000 });
    expect(r.status).toBe(1); // not PID 1: a startup failure exits
    expect(r.stderr).toContain(`cannot load the koffi addon ${path.join(alone, 'koffi.node')}`);
  });

  it('two packs of the same tree are byte-identical', () => {
    expect(b.version).toBe(a.version);
    expect(b.commit).toBe(a.commit);
    expect(b.bytes).toBe(a.bytes);
    expect(sha256(b.executable)).toBe(sha256(a.executable));
    expect(sha256(b.files[1]!.src)).toBe(sha256(a.files[1]!.src));
  });
});
