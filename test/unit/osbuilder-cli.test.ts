// The osbuilder CLI frame: verb dispatch, --help, exit codes, one-line errors, option parsing,
// progress output, and atomic outputs.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { mainHelp, parseOptions, runCli } from '../../osbuilder/src/cli';
import type { Command } from '../../osbuilder/src/commands/types';
import { EXIT, missingError } from '../../osbuilder/src/util/errors';
import { writeAtomically } from '../../osbuilder/src/util/output';
import { Progress, humanBytes } from '../../osbuilder/src/util/progress';
import { findTool, requireTool } from '../../osbuilder/src/util/tools';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gk-osb-cli-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function io() {
  const o = { stdout: '', stderr: '', env: {} as NodeJS.ProcessEnv };
  return { o, io: { stdout: (s: string) => void (o.stdout += s), stderr: (s: string) => void (o.stderr += s), env: o.env } };
}

const echo: Command = {
  name: 'echo',
  summary: 'print its option',
  help: 'Usage: osbuilder echo --word W\n',
  async run(args, ctx) {
    const { values } = parseOptions('echo', args, { word: { type: 'string' }, fail: { type: 'boolean' } }, { positionals: 0 });
    if (values.fail) throw missingError('mkfs.erofs is needed to build an erofs image but is not installed', 'apt-get install erofs-utils');
    const p = ctx.progress(1);
    p.step('echoing');
    p.done();
    ctx.out(String(values.word));
  },
};

describe('runCli', () => {
  it('--help lists the commands; a command\'s --help is its own; no arguments is a usage error with the help', async () => {
    const a = io();
    expect(await runCli(['--help'], [echo], a.io)).toBe(EXIT.OK);
    expect(a.o.stdout).toContain('echo  print its option');
    expect(a.o.stdout).toContain('Exit codes: 0 done, 1 the build failed, 2 bad command line, 3 a prerequisite is missing');
    const b = io();
    expect(await runCli(['echo', '--help'], [echo], b.io)).toBe(EXIT.OK);
    expect(b.o.stdout).toBe(echo.help);
    const c = io();
    expect(await runCli([], [echo], c.io)).toBe(EXIT.USAGE);
    expect(c.o.stdout).toBe(mainHelp([echo]));
  });

  it('runs a verb: results on stdout, progress on stderr (not with --quiet)', async () => {
    const a = io();
    expect(await runCli(['echo', '--word', 'hi'], [echo], a.io)).toBe(EXIT.OK);
    expect(a.o.stdout).toBe('hi\n');
    expect(a.o.stderr).toMatch(/^\[1\/1\] echoing\n\[1\/1\] echoing: done in \d+\.\d s\n$/);
    const q = io();
    expect(await runCli(['echo', '--quiet', '--word', 'hi'], [echo], q.io)).toBe(EXIT.OK);
    expect(q.o.stderr).toBe('');
  });

  it('errors are one line with the right exit code: unknown verb, unknown option, stray argument, missing tool', async () => {
    const cases: Array<[string[], number, RegExp]> = [
      [['frob'], EXIT.USAGE, /^osbuilder: unknown command "frob" \(commands: echo\)\n$/],
      [['echo', '--nope'], EXIT.USAGE, /^osbuilder echo: Unknown option '--nope' \(see osbuilder echo --help\)\n$/],
      [['echo', 'stray'], EXIT.USAGE, /^osbuilder echo: unexpected argument "stray" \(see osbuilder echo --help\)\n$/],
      [['echo', '--word'], EXIT.USAGE, /argument missing|requires a value|--word/],
      [['echo', '--fail'], EXIT.MISSING, /^osbuilder echo: mkfs\.erofs is needed .* \(apt-get install erofs-utils\)\n$/],
    ];
    for (const [argv, code, re] of cases) {
      const a = io();
      expect(await runCli(argv, [echo], a.io), argv.join(' ')).toBe(code);
      expect(a.o.stderr, argv.join(' ')).toMatch(re);
      expect(a.o.stderr.trim().split('\n')).toHaveLength(1);
    }
  });

  it('an unexpected exception is exit 1 with "internal error", never a crash', async () => {
    const boom: Command = { ...echo, name: 'boom', run: async () => { throw new TypeError('x is undefined'); } };
    const a = io();
    expect(await runCli(['boom'], [boom], a.io)).toBe(EXIT.FAILED);
    expect(a.o.stderr).toMatch(/^osbuilder boom: internal error: TypeError: x is undefined/);
  });
});

describe('writeAtomically', () => {
  it('renames into place on success; on failure the old output stays and no temporary is left', async () => {
    const out = path.join(tmp, 'out.img');
    await writeAtomically(out, async (t) => fs.writeFileSync(t, 'v1'));
    expect(fs.readFileSync(out, 'utf8')).toBe('v1');
    await expect(writeAtomically(out, async (t) => {
      fs.writeFileSync(t, 'half');
      throw new Error('mkfs failed');
    })).rejects.toThrow('mkfs failed');
    expect(fs.readFileSync(out, 'utf8')).toBe('v1');
    expect(fs.readdirSync(tmp).filter((f) => f.includes('.tmp-'))).toEqual([]);
    // directories too (a rootfs)
    const dir = path.join(tmp, 'rootfs');
    await writeAtomically(dir, async (t) => {
      fs.mkdirSync(t);
      fs.writeFileSync(path.join(t, 'init'), '');
    });
    await writeAtomically(dir, async (t) => {
      fs.mkdirSync(t);
      fs.writeFileSync(path.join(t, 'init2'), '');
    });
    expect(fs.readdirSync(dir)).toEqual(['init2']);
  });
  it('a missing output directory is MISSING (exit 3)', async () => {
    await expect(writeAtomically(path.join(tmp, 'no/such/dir/x'), async () => undefined)).rejects.toMatchObject({ exitCode: EXIT.MISSING });
  });
});

describe('progress and tools', () => {
  it('non-terminal progress: start and end lines, periodic updates at most every 5 s', () => {
    let t = 0;
    let text = '';
    const p = new Progress(2, { out: { write: (s: string) => ((text += s), true) } as never, now: () => t });
    p.step('writing cpio');
    p.update('10 files');
    t = 6000;
    p.update('500 files');
    t = 7000;
    p.done('3 MiB');
    expect(text).toBe('[1/2] writing cpio\n    writing cpio: 500 files\n[1/2] writing cpio: done in 7.0 s (3 MiB)\n');
  });
  it('humanBytes; findTool/requireTool name the package', () => {
    expect(humanBytes(512)).toBe('512 B');
    expect(humanBytes(3 * 1024 * 1024)).toBe('3.0 MiB');
    expect(findTool('sh')).toMatch(/\/sh$/);
    expect(findTool('gk-no-such-tool')).toBeUndefined();
    expect(() => requireTool('gk-no-such-tool', 'for nothing')).toThrow(/gk-no-such-tool is needed for nothing but is not installed/);
  });
});
