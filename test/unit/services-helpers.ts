// Shared helpers for the services-*.test.ts files: a Dispatcher with the
// issue-2 services, wire-level calls and temp copies of fixture trees.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { nullLogger } from '../../agent/src/log';
import { Dispatcher, type CallContext } from '../../agent/src/rpc/dispatch';
import { methodInfo } from '../../agent/src/rpc/proto';
import { Code } from '../../agent/src/rpc/status';
import { registerIssue2Services, type ServiceDeps } from '../../agent/src/services';

export const FIXTURES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures');

export function fixture(name: string): string {
  return path.join(FIXTURES, name);
}

const temps: string[] = [];

/** A fresh temp directory (removed by cleanupTemps). */
export function tempDir(prefix = 'services-'): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  temps.push(d);
  return d;
}

/** A writable copy of a fixture tree. */
export function copyFixture(name: string): string {
  const d = path.join(tempDir(`${name}-`), name);
  fs.cpSync(fixture(name), d, { recursive: true });
  return d;
}

export function cleanupTemps(): void {
  for (const d of temps.splice(0)) fs.rmSync(d, { recursive: true, force: true });
}

export function makeCtx(signal?: AbortSignal): CallContext {
  return { protocol: 'ttrpc', signal: signal ?? new AbortController().signal, metadata: {}, log: nullLogger() };
}

export function makeServices(deps: ServiceDeps = {}) {
  const dispatcher = new Dispatcher(nullLogger());
  const services = registerIssue2Services(dispatcher, deps);
  return { dispatcher, services };
}

export interface WireResult {
  code: Code;
  message: string;
  res?: Record<string, any>;
}

/** Encode `req`, call through Dispatcher.callBytes like a transport does, decode the reply. */
export async function call(
  dispatcher: Dispatcher,
  fullMethod: string,
  req: Record<string, unknown> = {},
  ctx: CallContext = makeCtx(),
): Promise<WireResult> {
  const [service, method] = fullMethod.split('/') as [string, string];
  const info = methodInfo(service, method);
  if (!info) throw new Error(`no method ${fullMethod}`);
  const r = await dispatcher.callBytes(service, method, info.encodeRequest(req), ctx);
  return {
    code: r.status.code,
    message: r.status.message,
    res: r.payload ? info.decodeResponse(Buffer.concat(r.payload)) : undefined,
  };
}

/** Call the handler with an already decoded object (to pass values the wire cannot carry). */
export async function callObject(
  dispatcher: Dispatcher,
  fullMethod: string,
  req: Record<string, unknown>,
  ctx: CallContext = makeCtx(),
): Promise<WireResult> {
  const [service, method] = fullMethod.split('/') as [string, string];
  const info = methodInfo(service, method)!;
  try {
    const res = await dispatcher.callObject(info, req, ctx);
    return { code: Code.OK, message: '', res };
  } catch (err) {
    const e = err as { code: Code; message: string };
    return { code: e.code, message: e.message };
  }
}
