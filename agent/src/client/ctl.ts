// agent-ctl: command line client of the agent protocol. A thin layer over
// AgentClient; agent/bin/agent-ctl.ts only calls run().
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import { methods, type MethodInfo } from '../rpc/proto';
import { AgentClient, checkFields, jsonConversion, resolveMethod, type Proto } from './agent';
import { Code, ConnectionError, RpcError, UsageError } from './errors';

export const EXIT_OK = 0;
export const EXIT_RPC = 1;
export const EXIT_USAGE = 2;
export const EXIT_CONNECT = 3;

const DEFAULT_TIMEOUT_S = 30;

const MAIN_HELP = `Usage: agent-ctl --addr ADDR [--proto ttrpc|grpc] [--timeout SECONDS] COMMAND [ARGS]

Talk to a guestkit (Kata Containers) agent.

Commands:
  check                  Health.Check: is the agent serving?
  version                Health.Version: agent and protocol versions
  call METHOD [--json JSON | --json-file FILE]
                         call any RPC with a JSON request
  list                   print every method name
  help [COMMAND]         this text, or the help of COMMAND (also COMMAND --help)

Options:
  --addr ADDR            agent address (default: $AGENT_CTL_ADDR):
                           unix:///path/to.sock     unix socket (or just /path/to.sock)
                           unix://@name             abstract unix socket
                           tcp://HOST:PORT          TCP (IPv6: tcp://[::1]:PORT)
                           vsock://CID:PORT         AF_VSOCK
                           hvsock://PATH:PORT       Firecracker hybrid vsock (unix socket PATH,
                                                    "CONNECT PORT" handshake)
                           serial:PATH              QEMU chardev unix socket of the agent's
                                                    virtio-serial port
  --proto ttrpc|grpc     wire protocol (default ttrpc); both work on every address kind
  --timeout SECONDS      limit for connecting and for the call, sent to the agent as the
                         call's deadline (default ${DEFAULT_TIMEOUT_S}; 0 = no limit)
  -h, --help             show help

Responses are printed as JSON on stdout (see "agent-ctl help call" for the conversion).

Exit status:
  0  success
  1  the agent answered with an error status, printed on stderr as "CODE_NAME: message"
     (also for a deadline that expired on this side: DEADLINE_EXCEEDED)
  2  usage error (bad option, address, method, or JSON request)
  3  connection failure (cannot connect, or the connection broke before the answer)
`;

const COMMAND_HELP: Record<string, string> = {
  check: `Usage: agent-ctl --addr ADDR [--proto P] [--timeout S] check

Call grpc.Health/Check and print the response, e.g. {"status": "SERVING"}.
Exit status 0 when the agent answered (whatever the serving status), 1 on an
error status, 3 when it cannot be reached.
`,
  version: `Usage: agent-ctl --addr ADDR [--proto P] [--timeout S] version

Call grpc.Health/Version and print the response:
{"grpc_version": "...", "agent_version": "..."}.
`,
  list: `Usage: agent-ctl list

Print the full name of every method the protocol defines, one per line
("grpc.AgentService/CreateContainer"), with its request and response types.
Needs no --addr.
`,
  call: `Usage: agent-ctl --addr ADDR [--proto P] [--timeout S] call METHOD [--json JSON | --json-file FILE]

Call one RPC and print its response as JSON.

METHOD is a method name in any of these forms:
  CreateContainer                      (grpc.AgentService implied)
  Health.Check                         (grpc. implied)
  grpc.AgentService/CreateContainer    (full name, as "agent-ctl list" prints)
  /grpc.AgentService/CreateContainer   (gRPC path)

The request is a JSON object (default {}), given inline with --json or read
from FILE with --json-file (- = stdin). JSON <-> protobuf conversion:
  - field names are the snake_case names of agent/proto/*.proto
    (container_id, exec_id, OCI, ...); unknown fields are a usage error;
  - 64-bit integers: JSON numbers or decimal strings; printed as strings;
  - enums: names ("SERVING") or numbers; printed as names;
  - bytes: base64 strings; printed as base64;
  - the response includes fields left at their default values.
A printed response is therefore valid --json input for a method taking the
same message type.

Example:
  agent-ctl --addr unix:///run/kata/agent.sock call CopyFile --json-file req.json
`,
};
COMMAND_HELP.help = MAIN_HELP;

export interface CtlIO {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  /** Read all of stdin (for --json-file -). */
  readStdin: () => Promise<string>;
  env: Record<string, string | undefined>;
}

function defaultIO(): CtlIO {
  return {
    stdout: (s) => process.stdout.write(s),
    stderr: (s) => process.stderr.write(s),
    readStdin: async () => {
      const chunks: Buffer[] = [];
      for await (const c of process.stdin) chunks.push(c as Buffer);
      return Buffer.concat(chunks).toString('utf8');
    },
    env: process.env,
  };
}

function codeName(code: number): string {
  return Code[code] ?? `CODE_${code}`;
}

function listMethods(): string {
  const rows = [...methods().values()].map((m) => [`${m.service}/${m.method}`, `${m.requestType.name} -> ${m.responseType.fullName.replace(/^\./, '')}`]);
  const w = Math.max(...rows.map((r) => r[0]!.length));
  return rows.map(([n, t]) => `${n!.padEnd(w)}  ${t}`).join('\n') + '\n';
}

async function readRequest(json: string | undefined, file: string | undefined, io: CtlIO): Promise<unknown> {
  if (json !== undefined && file !== undefined) throw new UsageError('give --json or --json-file, not both');
  let text: string;
  let where: string;
  if (json !== undefined) {
    text = json;
    where = '--json';
  } else if (file !== undefined) {
    where = file === '-' ? 'stdin' : file;
    try {
      text = file === '-' ? await io.readStdin() : fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw new UsageError(`cannot read ${where}: ${(err as Error).message}`);
    }
  } else {
    return {};
  }
  try {
    return text.trim() === '' ? {} : JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${where} is not valid JSON: ${(err as Error).message}`);
  }
}

function encodeRequestJson(info: MethodInfo, obj: unknown): Uint8Array {
  checkFields(info.requestType, obj);
  try {
    const t = info.requestType;
    return t.encode(t.fromObject(obj as Record<string, unknown>)).finish();
  } catch (err) {
    throw new UsageError(`bad ${info.requestType.name}: ${(err as Error).message}`);
  }
}

function responseJson(info: MethodInfo, payload: Uint8Array): string {
  const t = info.responseType;
  return JSON.stringify(t.toObject(t.decode(payload), jsonConversion), null, 2) + '\n';
}

/** Run agent-ctl with `argv` (without node and script); resolves with the exit status. */
export async function run(argv: string[], ioIn?: Partial<CtlIO>): Promise<number> {
  const io = { ...defaultIO(), ...ioIn };
  const fail = (code: number, msg: string): number => {
    io.stderr(msg.endsWith('\n') ? msg : `${msg}\n`);
    return code;
  };

  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        addr: { type: 'string' },
        proto: { type: 'string' },
        timeout: { type: 'string' },
        json: { type: 'string' },
        'json-file': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (err) {
    return fail(EXIT_USAGE, `agent-ctl: ${(err as Error).message}\nTry "agent-ctl --help".`);
  }
  const { values, positionals } = parsed;
  const [command, ...args] = positionals;

  if (command === undefined) {
    if (values.help) {
      io.stdout(MAIN_HELP);
      return EXIT_OK;
    }
    return fail(EXIT_USAGE, MAIN_HELP);
  }
  if (command === 'help') {
    const topic = args[0];
    if (topic === undefined) {
      io.stdout(MAIN_HELP);
      return EXIT_OK;
    }
    const h = COMMAND_HELP[topic];
    if (!h) return fail(EXIT_USAGE, `agent-ctl: no command ${JSON.stringify(topic)}\nTry "agent-ctl --help".`);
    io.stdout(h);
    return EXIT_OK;
  }
  const help = COMMAND_HELP[command];
  if (!help) return fail(EXIT_USAGE, `agent-ctl: unknown command ${JSON.stringify(command)}\nTry "agent-ctl --help".`);
  if (values.help) {
    io.stdout(help);
    return EXIT_OK;
  }

  try {
    const wantArgs = command === 'call' ? 1 : 0;
    if (args.length !== wantArgs) {
      throw new UsageError(command === 'call' ? 'call needs exactly one METHOD' : `${command} takes no arguments`);
    }
    if (command !== 'call' && (values.json !== undefined || values['json-file'] !== undefined)) {
      throw new UsageError('--json and --json-file belong to the call command');
    }
    if (command === 'list') {
      io.stdout(listMethods());
      return EXIT_OK;
    }

    const proto = (values.proto ?? 'ttrpc') as Proto;
    if (proto !== 'ttrpc' && proto !== 'grpc') throw new UsageError(`--proto must be ttrpc or grpc, not ${JSON.stringify(values.proto)}`);
    let timeoutMs: number | undefined = DEFAULT_TIMEOUT_S * 1000;
    if (values.timeout !== undefined) {
      const s = Number(values.timeout);
      if (values.timeout.trim() === '' || !Number.isFinite(s) || s < 0) {
        throw new UsageError(`--timeout wants a number of seconds, not ${JSON.stringify(values.timeout)}`);
      }
      timeoutMs = s === 0 ? undefined : s * 1000;
    }
    const addr = values.addr ?? io.env.AGENT_CTL_ADDR;
    if (!addr) throw new UsageError('--addr is required (or set AGENT_CTL_ADDR)');

    let info: MethodInfo;
    let payload: Uint8Array;
    if (command === 'check') {
      info = resolveMethod('grpc.Health/Check');
      payload = info.encodeRequest({ service: '' });
    } else if (command === 'version') {
      info = resolveMethod('grpc.Health/Version');
      payload = info.encodeRequest({ service: '' });
    } else {
      info = resolveMethod(args[0]!);
      payload = encodeRequestJson(info, await readRequest(values.json, values['json-file'], io));
    }

    const client = await AgentClient.connect(addr, { proto, timeoutMs: timeoutMs ?? 2 ** 31 - 1 });
    try {
      const res = await client.callBytes(info, payload, { timeoutMs });
      io.stdout(responseJson(info, res));
      return EXIT_OK;
    } finally {
      client.close();
    }
  } catch (err) {
    if (err instanceof UsageError) return fail(EXIT_USAGE, `agent-ctl: ${err.message}`);
    if (err instanceof ConnectionError) return fail(EXIT_CONNECT, `agent-ctl: ${err.message}`);
    if (err instanceof RpcError) return fail(EXIT_RPC, `${codeName(err.code)}: ${err.message}`);
    return fail(EXIT_RPC, `agent-ctl: ${(err as Error)?.stack ?? String(err)}`);
  }
}
