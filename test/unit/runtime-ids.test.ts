import { describe, expect, it } from 'vitest';
import { Code, RpcError } from '../../agent/src/rpc/status';
import {
  MAX_ID_LENGTH,
  idProblem,
  isValidId,
  validateContainerId,
  validateExecId,
  validateSandboxId,
} from '../../agent/src/runtime/ids';

// Kata's own table (kata-sys-util validate.rs test_verify_cid) plus the
// length bound and non-ASCII ids, where we are stricter than Kata.
const valid = [
  'aa',
  'a.',
  'a..',
  'aa.',
  'hello..world',
  'aa1245124sadfasdfgasdga.',
  'aAzZ0123456789_.-',
  'abcdefghijklmnopqrstuvwxyz0123456789.-_',
  '0123456789abcdefghijklmnopqrstuvwxyz.-_',
  'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_',
  '0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ.-_',
  '3f4b1c0d2e5a6978b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e',
  'a'.repeat(MAX_ID_LENGTH),
];

const invalid: Array<[string, string]> = [
  ['', 'must not be empty'],
  [' ', 'must start with an ASCII letter or digit'],
  ['.', 'must start'],
  ['-', 'must start'],
  ['_', 'must start'],
  [' a', 'must start'],
  ['.a', 'must start'],
  ['-a', 'must start'],
  ['_a', 'must start'],
  ['..', 'must start'],
  ['.hidden', 'must start'],
  ['a', 'at least 2 characters'],
  ['Z', 'at least 2 characters'],
  ['0', 'at least 2 characters'],
  ['-1', 'must start'],
  ['/', 'must start'],
  ['a/', "only ASCII letters, digits, '_', '.' and '-'"],
  ['a/../', 'only ASCII'],
  ['../a', 'must start'],
  ['foo/../bar', 'only ASCII'],
  ['foo bar', 'only ASCII'],
  ['/etc/passwd', 'must start'],
  ['foo/../../../etc/passwd', 'only ASCII'],
  ['ab\0c', 'only ASCII'],
  ['ab\nc', 'only ASCII'],
  ['caf\u00e9', 'only ASCII'], // Kata's Rust is_alphanumeric() would accept this
  ['\u00e9t\u00e9', 'must start'],
  ['\u0661\u0662', 'must start'], // Arabic-Indic digits
  ['a'.repeat(MAX_ID_LENGTH + 1), `at most ${MAX_ID_LENGTH} characters, got ${MAX_ID_LENGTH + 1}`],
];

describe('ids', () => {
  it('bounds ids at NAME_MAX', () => {
    expect(MAX_ID_LENGTH).toBe(255);
  });

  it.each(valid)('accepts %j', (id) => {
    expect(idProblem(id)).toBeUndefined();
    expect(isValidId(id)).toBe(true);
    expect(() => validateContainerId(id)).not.toThrow();
    expect(() => validateExecId(id)).not.toThrow();
    expect(() => validateSandboxId(id)).not.toThrow();
  });

  it.each(invalid)('rejects %j', (id, why) => {
    expect(isValidId(id)).toBe(false);
    expect(idProblem(id)).toContain(why);
    let err: unknown;
    try {
      validateContainerId(id);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RpcError);
    expect((err as RpcError).code).toBe(Code.INVALID_ARGUMENT);
    expect((err as RpcError).message).toMatch(/^invalid container id /);
    expect((err as RpcError).message).toContain(why);
  });

  it('names the kind of id and quotes it escaped', () => {
    expect(() => validateContainerId('../x')).toThrow('invalid container id "../x": must start with an ASCII letter or digit');
    expect(() => validateExecId('a/b')).toThrow(`invalid exec id "a/b": must contain only`);
    expect(() => validateSandboxId('x')).toThrow('invalid sandbox id "x": must be at least 2 characters long');
    expect(() => validateContainerId('a\nb')).toThrow('invalid container id "a\\nb"');
  });

  it('cuts a long id in the message', () => {
    const id = 'b'.repeat(5000);
    let msg = '';
    try {
      validateContainerId(id);
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toBe(`invalid container id "${'b'.repeat(80)}"...: must be at most 255 characters, got 5000`);
  });

  it('rejects non-strings', () => {
    for (const v of [undefined, null, 42, {}, ['aa']]) {
      expect(isValidId(v)).toBe(false);
      expect(() => validateContainerId(v)).toThrow(/must be a string/);
    }
  });

  it('accepts an empty exec id only when asked (the init process)', () => {
    expect(() => validateExecId('')).toThrow('invalid exec id "": must not be empty');
    expect(() => validateExecId('', { allowEmpty: true })).not.toThrow();
    expect(() => validateExecId('.', { allowEmpty: true })).toThrow(/must start/);
  });
});
