// The real syscall bindings behind SetGuestDateTime and ReseedRandomDev.
// Never moves this machine's clock: settimeofday is only called in a child
// that lacks CAP_SYS_TIME (and CAP_SYS_ADMIN), where a valid timeval fails
// with EPERM and an invalid one with EINVAL — which also proves the struct
// timeval layout. The RNG reseed really runs as root (needs CAP_SYS_ADMIN).
import { execFile } from 'node:child_process';
import crypto from 'node:crypto';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { nullLogger } from '../../agent/src/log';
import { Dispatcher } from '../../agent/src/rpc/dispatch';
import { methodInfo } from '../../agent/src/rpc/proto';
import { Code } from '../../agent/src/rpc/status';
import { registerIssue2Services } from '../../agent/src/services';
import { reseedRng } from '../../agent/src/sys/random';
import { bundleEntry } from '../helpers/bundle';

const pexec = promisify(execFile);
const isRoot = process.getuid?.() === 0;

describe.skipIf(!isRoot)('ReseedRandomDev on the real /dev/random (root)', () => {
  it('writes the seed and issues RNDADDTOENTCNT + RNDRESEEDCRNG', () => {
    expect(() => reseedRng('/dev/random', crypto.randomBytes(64))).not.toThrow();
  });

  it('succeeds through the Dispatcher with the default (real) syscalls', async () => {
    const dispatcher = new Dispatcher(nullLogger());
    registerIssue2Services(dispatcher, {});
    const info = methodInfo('grpc.AgentService', 'ReseedRandomDev')!;
    const ctx = { protocol: 'ttrpc' as const, signal: new AbortController().signal, metadata: {}, log: nullLogger() };
    const r = await dispatcher.callBytes('grpc.AgentService', 'ReseedRandomDev', info.encodeRequest({ data: crypto.randomBytes(32) }), ctx);
    expect(r.status).toEqual({ code: Code.OK, message: '' });
  });

  it('reports a missing device as NOT_FOUND', () => {
    expect(() => reseedRng('/dev/does-not-exist-random', Buffer.from('x'))).toThrow(/ENOENT/);
  });
});

describe.skipIf(!isRoot)('settimeofday / RNG ioctls without the capabilities (root minus caps)', () => {
  let child = '';
  beforeAll(async () => {
    child = await bundleEntry('test/integration/fixtures/services-sys-child.ts');
  }, 60_000);

  it('fail with the kernel errors, mapped to protocol statuses', async () => {
    const { stdout } = await pexec(
      'setpriv',
      ['--bounding-set=-sys_time,-sys_admin', '--inh-caps=-sys_time,-sys_admin', process.execPath, child],
      { timeout: 60_000 },
    );
    const r = JSON.parse(stdout.trim().split('\n').at(-1)!);
    expect(r.validTime).toBe('EPERM');
    expect(r.usecTooBig).toBe('EINVAL');
    expect(r.negativeSec).toBe('EINVAL');
    expect(r.reseed).toBe('EPERM'); // the write works (0666), RNDADDTOENTCNT needs CAP_SYS_ADMIN
    expect(r.rpcTime.code).toBe(Code.PERMISSION_DENIED);
    expect(r.rpcTime.message).toMatch(/settimeofday.*EPERM/);
    expect(r.rpcReseed.code).toBe(Code.PERMISSION_DENIED);
    expect(r.rpcReseed.message).toMatch(/RNDADDTOENTCNT/);
  }, 60_000);
});
