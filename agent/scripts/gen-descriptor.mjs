#!/usr/bin/env node
// Compile agent/proto/*.proto into the JSON descriptor the agent and agent-ctl
// load at run time (agent/src/rpc/descriptor.generated.json). The .proto files
// stay the one source of truth; this file is generated and not committed.
import protobuf from 'protobufjs';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const protoDir = path.resolve(here, '../proto');
const out = path.resolve(here, '../src/rpc/descriptor.generated.json');

export function loadProtoRoot() {
  const root = new protobuf.Root();
  root.resolvePath = (origin, target) => {
    if (target.startsWith('google/protobuf/')) return target; // protobuf.common provides these
    const local = path.join(protoDir, path.basename(target));
    if (fs.existsSync(local)) return local;
    return protobuf.util.path.resolve(origin, target);
  };
  const files = fs.readdirSync(protoDir).filter((f) => f.endsWith('.proto')).sort();
  root.loadSync(files.map((f) => path.join(protoDir, f)), { keepCase: true });
  root.resolveAll();
  return root;
}

export function generate() {
  const root = loadProtoRoot();
  const json = JSON.stringify(root.toJSON({ keepComments: false }));
  const prev = fs.existsSync(out) ? fs.readFileSync(out, 'utf8') : '';
  if (prev !== json) fs.writeFileSync(out, json);
  return out;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  console.log(`wrote ${path.relative(process.cwd(), generate())}`);
}
