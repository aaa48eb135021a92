import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, bundleEntry } from '../helpers/bundle';

const run = promisify(execFile);

// The agent must not pay for grpc-js (and node:http2) until a gRPC client
// shows up: check in a fresh process, with the agent-side RPC modules bundled
// the way esbuild bundles the agent.
describe('lazy gRPC server', () => {
  it('loads grpc-js and node:http2 only when the gRPC server is first created', async () => {
    const src = (p: string) => JSON.stringify(path.join(REPO_ROOT, p));
    const entry = path.join(REPO_ROOT, 'tmp', 'grpc-lazy-entry.ts');
    fs.mkdirSync(path.dirname(entry), { recursive: true });
    fs.writeFileSync(
      entry,
      `
import { Dispatcher } from ${src('agent/src/rpc/dispatch')};
import { nullLogger } from ${src('agent/src/log')};
import { serveTtrpc } from ${src('agent/src/rpc/ttrpc/server')};
import { closeSharedGrpcServer, grpcLoaded, sharedGrpcServer } from ${src('agent/src/rpc/grpc')};
const http2 = () => (process as any).moduleLoadList.includes('NativeModule http2');
const out: Record<string, unknown> = { http2Before: http2(), grpcBefore: grpcLoaded(), ttrpc: typeof serveTtrpc };
const d = new Dispatcher(nullLogger());
const s = await sharedGrpcServer(d, nullLogger());
out.http2After = http2();
out.grpcAfter = grpcLoaded();
out.sameServer = (await sharedGrpcServer(d, nullLogger())) === s;
out.otherDispatcher = await sharedGrpcServer(new Dispatcher(nullLogger()), nullLogger()).then(() => 'resolved', (e) => String(e));
await closeSharedGrpcServer();
console.log(JSON.stringify(out));
`,
    );
    const bundle = await bundleEntry(entry);
    const { stdout } = await run(process.execPath, [bundle], { timeout: 30_000 });
    expect(JSON.parse(stdout.trim())).toEqual({
      http2Before: false,
      grpcBefore: false,
      ttrpc: 'function',
      http2After: true,
      grpcAfter: true,
      sameServer: true,
      otherDispatcher: expect.stringContaining('already created for another dispatcher'),
    });
  });
});
