// Shared by the runtime-spec*.test.ts files: fixtures in the decoder's shape.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { decode, encode, lookupType } from '../../agent/src/rpc/proto';
import type { GrpcSpec, OciSpec } from '../../agent/src/runtime/spec';

const DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../fixtures/specs');

export const CID = '3f4b1c0d2e5a6978b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e';
export const SID = 'e51c3f0a9b7d46c28e1f5a3b9c0d7e6f4a2b8c1d9e0f3a5b7c6d4e2f1a0b9c8d';
export const POD_UID = '7c2f3b5e-1d4a-4f6b-9e8c-2a1b3c4d5e6f';

export function readFixture<T = any>(name: string): T {
  return JSON.parse(fs.readFileSync(path.join(DIR, name), 'utf8')) as T;
}

/** Encode a grpc.Spec object with the repo's schema and decode it again: the shape handlers get. */
export function viaWire(obj: object): GrpcSpec {
  const t = lookupType('grpc.Spec');
  return decode(t, encode(t, obj as Record<string, any>)) as GrpcSpec;
}

/** A *.grpc.json fixture as the decoder yields it. */
export function grpcFixture(name: string): GrpcSpec {
  return viaWire(readFixture(name));
}

export function ociFixture(name: string): OciSpec {
  return readFixture<OciSpec>(name);
}
