// Agent configuration: defaults < kernel command line < environment < CLI flags.
//
// loadConfig() is pure (text and maps in, config + warnings out) so every rule
// is unit-testable; readConfig() feeds it /proc/cmdline, process.env and argv.
// A bad value never aborts start-up: it becomes a warning and the previous
// (lower-precedence or default) value is kept. Option names and defaults follow
// Kata's agent (agent.log, agent.server_addr, agent.hotplug_timeout, ...).
import fs from 'node:fs';
import { normalizeLevel, type Level } from './log';
import { parseListenAddress } from './transport/address';

export type Channel = 'auto' | 'vsock' | 'serial';
export type ConfigSource = 'default' | 'cmdline' | 'env' | 'argv';

export interface AgentConfig {
  /** agent.log / KATA_AGENT_LOG_LEVEL / --log-level (normalised to a pino level). */
  logLevel: Level;
  /**
   * agent.server_addr / KATA_AGENT_SERVER_ADDR / --listen, e.g. vsock://-1:1024, unix:///run/a.sock,
   * serial:agent.channel.0 (validated with transport/address parseListenAddress; stored as written).
   */
  serverAddr: string;
  /** True when serverAddr came from the cmdline, env or a flag (not the default). */
  serverAddrExplicit: boolean;
  /**
   * agent.channel / --channel. 'auto': when serverAddr is not explicit, listen on vsock if the
   * guest has AF_VSOCK, else on the virtio-serial port named SERIAL_PORT_NAME. Resolved at start-up.
   */
  channel: Channel;
  /** agent.hotplug_timeout in milliseconds (> 0). */
  hotplugTimeoutMs: number;
  /** agent.debug_console (flag). */
  debugConsole: boolean;
  /** agent.debug_console_vport; 0 = not set. */
  debugConsoleVport: number;
  /** agent.log_vport; 0 = not set. */
  logVport: number;
  /** agent.container_pipe_size in bytes; 0 = kernel default. */
  containerPipeSize: number;
  /** agent.devmode (flag). */
  devMode: boolean;
  /** systemd.unified_cgroup_hierarchy; true (default) = pure cgroup2, false = cgroup v1 controllers. */
  unifiedCgroupHierarchy: boolean;
  /** cgroup_no_v1= as a list (e.g. ['all'] or ['memory', 'cpu']); [] when absent. */
  cgroupNoV1: string[];
  /** agent.oci_runtime / --oci-runtime: OCI runtime binary (name looked up in PATH, or a path). */
  ociRuntime: string;
  /** --no-init: skip PID-1 duties even when running as PID 1. */
  noInit: boolean;
  /** --cmdline-file: the file read as the kernel command line instead of /proc/cmdline ('' = /proc/cmdline). */
  cmdlineFile: string;
  /** --help / -h was given: the caller prints USAGE and exits. */
  help: boolean;
  /** --version / -V was given: the caller prints the version and exits. */
  version: boolean;
  /** Where each field got its value from (fields absent here are defaults). */
  sources: Partial<Record<ConfigField, ConfigSource>>;
}

export type ConfigField = Exclude<keyof AgentConfig, 'sources'>;

export interface LoadConfigInput {
  /** Text of /proc/cmdline ('' when unavailable). */
  cmdline?: string;
  env?: Record<string, string | undefined>;
  /** Command-line arguments after the program name (process.argv.slice(2)). */
  argv?: readonly string[];
}

export interface LoadConfigResult {
  config: AgentConfig;
  /** Human-readable problems (unknown agent.* option, bad value, unknown flag); log them at warn. */
  warnings: string[];
  /** Kata agent options that are recognised but not implemented here (silently ignored). */
  ignored: string[];
}

export const DEFAULT_SERVER_ADDR = 'vsock://-1:1024';
export const DEFAULT_HOTPLUG_TIMEOUT_MS = 3000;
export const DEFAULT_OCI_RUNTIME = 'crun';
/** virtio-serial port name used when the channel resolves to serial. */
export const SERIAL_PORT_NAME = 'agent.channel.0';
export const ENV_SERVER_ADDR = 'KATA_AGENT_SERVER_ADDR';
export const ENV_LOG_LEVEL = 'KATA_AGENT_LOG_LEVEL';

export function defaultConfig(): AgentConfig {
  return {
    logLevel: 'info',
    serverAddr: DEFAULT_SERVER_ADDR,
    serverAddrExplicit: false,
    channel: 'auto',
    hotplugTimeoutMs: DEFAULT_HOTPLUG_TIMEOUT_MS,
    debugConsole: false,
    debugConsoleVport: 0,
    logVport: 0,
    containerPipeSize: 0,
    devMode: false,
    unifiedCgroupHierarchy: true,
    cgroupNoV1: [],
    ociRuntime: DEFAULT_OCI_RUNTIME,
    noInit: false,
    cmdlineFile: '',
    help: false,
    version: false,
    sources: {},
  };
}

export const USAGE = `Usage: kata-agent [options]

The guest agent of VM-isolated containers (Kata Containers agent protocol over
ttrpc and gRPC). Runs as PID 1 in the guest; also runs on a host for testing.

Options:
  --listen ADDR        listen address (vsock://CID:PORT, unix:///path, serial[:NAME],
                       tcp://HOST:PORT for development); overrides
                       agent.server_addr and ${ENV_SERVER_ADDR}
  --log-level LEVEL    trace|debug|info|warn|error|fatal (also warning, critical, panic)
  --channel C          auto|vsock|serial: transport when no address is given
  --oci-runtime PATH   OCI runtime binary (default ${DEFAULT_OCI_RUNTIME})
  --no-init            skip PID-1 duties (mounts, console, shutdown) even as PID 1
  --cmdline-file PATH  read the kernel command line options from PATH instead of
                       /proc/cmdline (testing)
  -h, --help           print this help and exit
  -V, --version        print the version and exit

Kernel command line (lower precedence than environment and flags):
  agent.log=LEVEL  agent.server_addr=ADDR  agent.hotplug_timeout=SECONDS|DURATION
  agent.debug_console  agent.debug_console_vport=PORT  agent.log_vport=PORT
  agent.container_pipe_size=BYTES  agent.devmode  agent.channel=auto|vsock|serial
  agent.oci_runtime=PATH  systemd.unified_cgroup_hierarchy=0|1  cgroup_no_v1=all|LIST

Environment: ${ENV_SERVER_ADDR}, ${ENV_LOG_LEVEL}
`;

// ---------------------------------------------------------------------------
// value parsers: return the parsed value or throw an Error with a short reason

const UINT32_MAX = 0xffffffff;
const INT32_MAX = 0x7fffffff;

/** Flag values: bare => true; true/false, 1/0, yes/no, on/off, y/n (case-insensitive). */
export function parseBool(v: string | undefined): boolean {
  if (v === undefined) return true;
  switch (v.trim().toLowerCase()) {
    case '1': case 'true': case 'yes': case 'y': case 'on':
      return true;
    case '0': case 'false': case 'no': case 'n': case 'off':
      return false;
    default:
      throw new Error(`not a boolean: "${v}"`);
  }
}

function parseUint(v: string, max: number): number {
  const s = v.trim();
  if (!/^\d+$/.test(s)) throw new Error(`not a non-negative integer: "${v}"`);
  const n = Number(s);
  if (!Number.isSafeInteger(n) || n > max) throw new Error(`out of range (max ${max}): "${v}"`);
  return n;
}

const DURATION_UNITS_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  'µs': 1e-3,
  'μs': 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * A timeout: a bare integer is seconds (Kata's format); otherwise a Go duration
 * ("3s", "500ms", "1m30s", "1.5s", "2h"). Returns milliseconds (rounded up to whole ms).
 */
export function parseDurationMs(v: string): number {
  const s = v.trim();
  if (/^\d+$/.test(s)) return Number(s) * 1000;
  if (s === '') throw new Error('empty duration');
  const re = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)/gy;
  let total = 0;
  let pos = 0;
  for (;;) {
    re.lastIndex = pos;
    const m = re.exec(s);
    if (!m) break;
    total += Number(m[1]) * DURATION_UNITS_MS[m[2]!]!;
    pos = re.lastIndex;
    if (pos === s.length) break;
  }
  if (pos !== s.length || pos === 0) throw new Error(`not a duration: "${v}" (use seconds or e.g. 3s, 500ms, 1m30s)`);
  if (!Number.isFinite(total)) throw new Error(`duration out of range: "${v}"`);
  return Math.ceil(total);
}

function parseLevel(v: string): Level {
  const l = normalizeLevel(v);
  if (!l) throw new Error(`unknown log level "${v}"`);
  return l;
}

/** A listen address the transport accepts (vsock://, unix://, tcp://, serial[:NAME]); kept as written. */
function parseAddr(v: string): string {
  const s = v.trim();
  parseListenAddress(s); // throws AddressError with the reason
  return s;
}

function parseChannel(v: string): Channel {
  const s = v.trim().toLowerCase();
  if (s === 'auto' || s === 'vsock' || s === 'serial') return s;
  throw new Error(`unknown channel "${v}" (auto|vsock|serial)`);
}

function parseNonEmpty(v: string): string {
  if (v.trim() === '') throw new Error('empty value');
  return v.trim();
}

function parseList(v: string): string[] {
  return v.split(',').map((x) => x.trim()).filter((x) => x !== '');
}

// ---------------------------------------------------------------------------
// kernel command line

/** One kernel parameter: key (as written) and value (undefined when bare). */
export interface CmdlineParam {
  key: string;
  value: string | undefined;
}

/**
 * Split a kernel command line the way the kernel does: whitespace separates
 * parameters except inside double quotes; quotes are removed; the first '='
 * separates key and value. Parsing stops at a bare "--" (what follows is init's argv).
 */
export function parseCmdline(text: string): CmdlineParam[] {
  const out: CmdlineParam[] = [];
  let i = 0;
  const n = text.length;
  while (i < n) {
    while (i < n && /\s/.test(text[i]!)) i++;
    if (i >= n) break;
    let word = '';
    let quoted = false;
    let sawEq = false;
    let key = '';
    let hasValue = false;
    for (; i < n; i++) {
      const c = text[i]!;
      if (c === '"') {
        quoted = !quoted;
        continue;
      }
      if (!quoted && /\s/.test(c)) break;
      if (c === '=' && !sawEq) {
        sawEq = true;
        key = word;
        word = '';
        hasValue = true;
        continue;
      }
      word += c;
    }
    if (!hasValue) key = word;
    if (!hasValue && key === '--') break;
    if (key === '') continue;
    out.push({ key, value: hasValue ? word : undefined });
  }
  return out;
}

type Apply = (cfg: AgentConfig, value: string | undefined) => void;

function valued<K extends ConfigField>(field: K, parse: (v: string) => AgentConfig[K]): { field: K; apply: Apply } {
  return {
    field,
    apply: (cfg, v) => {
      if (v === undefined) throw new Error('requires a value');
      cfg[field] = parse(v);
    },
  };
}

function flag<K extends ConfigField>(field: K): { field: K; apply: Apply } {
  return { field, apply: (cfg, v) => ((cfg as unknown as Record<string, boolean>)[field] = parseBool(v)) };
}

const CMDLINE_OPTIONS: Record<string, { field: ConfigField; apply: Apply }> = {
  'agent.log': valued('logLevel', parseLevel),
  'agent.server_addr': {
    field: 'serverAddr',
    apply: (cfg, v) => {
      if (v === undefined) throw new Error('requires a value');
      cfg.serverAddr = parseAddr(v);
      cfg.serverAddrExplicit = true;
    },
  },
  'agent.hotplug_timeout': valued('hotplugTimeoutMs', (v) => {
    const ms = parseDurationMs(v);
    if (ms <= 0) throw new Error(`must be greater than zero: "${v}"`);
    return ms;
  }),
  'agent.debug_console': flag('debugConsole'),
  'agent.debug_console_vport': valued('debugConsoleVport', (v) => parseUint(v, UINT32_MAX)),
  'agent.log_vport': valued('logVport', (v) => parseUint(v, UINT32_MAX)),
  'agent.container_pipe_size': valued('containerPipeSize', (v) => parseUint(v, INT32_MAX)),
  'agent.devmode': flag('devMode'),
  'agent.channel': valued('channel', parseChannel),
  'agent.oci_runtime': valued('ociRuntime', parseNonEmpty),
  'systemd.unified_cgroup_hierarchy': valued('unifiedCgroupHierarchy', parseBool),
  cgroup_no_v1: valued('cgroupNoV1', parseList),
};

/** Kata agent options accepted for compatibility but not implemented (no warning). */
export const IGNORED_KATA_OPTIONS: readonly string[] = [
  'agent.trace',
  'agent.passfd_listener_port',
  'agent.cdh_api_timeout',
  'agent.image_pull_timeout',
  'agent.cdi_timeout',
  'agent.launch_process_timeout',
  'agent.visible_cdi_devices',
  'agent.config_file',
  'agent.guest_components_rest_api',
  'agent.guest_components_procs',
  'agent.secure_storage_integrity',
  'agent.https_proxy',
  'agent.no_proxy',
  'agent.unified_cgroup_hierarchy',
  'agent.enable_signature_verification',
  'agent.image_policy_file',
  'agent.image_registry_auth',
  'agent.policy_file',
];

/** The kernel treats '-' and '_' in parameter names alike; so do we. */
function normKey(k: string): string {
  return k.replace(/-/g, '_');
}

function setSource(cfg: AgentConfig, field: ConfigField, src: ConfigSource): void {
  cfg.sources[field] = src;
}

// ---------------------------------------------------------------------------
// CLI flags

interface FlagSpec {
  field: ConfigField;
  takesValue: boolean;
  apply: Apply;
}

const FLAGS: Record<string, FlagSpec> = {
  '--listen': { takesValue: true, ...CMDLINE_OPTIONS['agent.server_addr']! },
  '--log-level': { takesValue: true, ...CMDLINE_OPTIONS['agent.log']! },
  '--channel': { takesValue: true, ...CMDLINE_OPTIONS['agent.channel']! },
  '--oci-runtime': { takesValue: true, ...CMDLINE_OPTIONS['agent.oci_runtime']! },
  '--no-init': { takesValue: false, field: 'noInit', apply: (c) => (c.noInit = true) },
  '--cmdline-file': {
    takesValue: true,
    field: 'cmdlineFile',
    apply: (c, v) => {
      if (v === undefined) throw new Error('requires a value');
      c.cmdlineFile = parseNonEmpty(v);
    },
  },
  '--help': { takesValue: false, field: 'help', apply: (c) => (c.help = true) },
  '-h': { takesValue: false, field: 'help', apply: (c) => (c.help = true) },
  '--version': { takesValue: false, field: 'version', apply: (c) => (c.version = true) },
  '-V': { takesValue: false, field: 'version', apply: (c) => (c.version = true) },
};

// ---------------------------------------------------------------------------

/** Build the configuration. Pure: never touches the file system or process state. */
export function loadConfig(input: LoadConfigInput = {}): LoadConfigResult {
  const cfg = defaultConfig();
  const warnings: string[] = [];
  const ignored: string[] = [];

  // 1. kernel command line (later duplicates win, as for the kernel)
  for (const { key, value } of parseCmdline(input.cmdline ?? '')) {
    const k = normKey(key);
    const opt = CMDLINE_OPTIONS[k];
    if (opt) {
      try {
        opt.apply(cfg, value);
        setSource(cfg, opt.field, 'cmdline');
      } catch (e) {
        warnings.push(`kernel cmdline ${key}${value !== undefined ? `=${value}` : ''}: ${(e as Error).message}; keeping ${show(cfg, opt.field)}`);
      }
      continue;
    }
    if (k.startsWith('agent.')) {
      if (IGNORED_KATA_OPTIONS.includes(k) || k.startsWith('agent.mem_agent_')) ignored.push(key);
      else warnings.push(`kernel cmdline: unknown option ${key} ignored`);
    }
    // anything else (console=, root=, quiet, ...) is not ours
  }

  // 2. environment
  const env = input.env ?? {};
  const envAddr = env[ENV_SERVER_ADDR];
  if (envAddr !== undefined && envAddr !== '') {
    try {
      CMDLINE_OPTIONS['agent.server_addr']!.apply(cfg, envAddr);
      setSource(cfg, 'serverAddr', 'env');
    } catch (e) {
      warnings.push(`${ENV_SERVER_ADDR}=${envAddr}: ${(e as Error).message}; keeping ${cfg.serverAddr}`);
    }
  }
  const envLevel = env[ENV_LOG_LEVEL];
  if (envLevel !== undefined && envLevel !== '') {
    try {
      cfg.logLevel = parseLevel(envLevel);
      setSource(cfg, 'logLevel', 'env');
    } catch (e) {
      warnings.push(`${ENV_LOG_LEVEL}=${envLevel}: ${(e as Error).message}; keeping ${cfg.logLevel}`);
    }
  }

  // 3. CLI flags
  const argv = input.argv ?? [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const name = eq >= 0 ? arg.slice(0, eq) : arg;
    const spec = FLAGS[name];
    if (!spec) {
      warnings.push(arg.startsWith('-') ? `unknown flag ${arg} ignored` : `unexpected argument "${arg}" ignored`);
      continue;
    }
    let value: string | undefined;
    if (spec.takesValue) {
      if (eq >= 0) value = arg.slice(eq + 1);
      else if (i + 1 < argv.length) value = argv[++i];
      else {
        warnings.push(`flag ${name} requires a value`);
        continue;
      }
    } else if (eq >= 0) {
      warnings.push(`flag ${name} takes no value; "${arg}" ignored`);
      continue;
    }
    try {
      spec.apply(cfg, value);
      setSource(cfg, spec.field, 'argv');
    } catch (e) {
      warnings.push(`flag ${name} ${value ?? ''}: ${(e as Error).message}; keeping ${show(cfg, spec.field)}`);
    }
  }

  return { config: cfg, warnings, ignored };
}

function show(cfg: AgentConfig, field: ConfigField): string {
  return `${field}=${JSON.stringify(cfg[field])}`;
}

/**
 * The address to listen on, given whether the guest has AF_VSOCK (probed by the caller at
 * start-up): an explicit server address always wins; otherwise channel vsock -> serverAddr,
 * serial -> the virtio-serial port SERIAL_PORT_NAME, auto -> vsock when available, else serial.
 */
export function chooseListenAddress(
  config: Pick<AgentConfig, 'serverAddr' | 'serverAddrExplicit' | 'channel'>,
  vsockAvailable: boolean,
): string {
  if (config.serverAddrExplicit) return config.serverAddr;
  const serial = `serial:${SERIAL_PORT_NAME}`;
  switch (config.channel) {
    case 'vsock':
      return config.serverAddr;
    case 'serial':
      return serial;
    case 'auto':
      return vsockAvailable ? config.serverAddr : serial;
  }
}

export interface ReadConfigOptions {
  /** The command line file when --cmdline-file is not given (default /proc/cmdline). */
  cmdlinePath?: string;
  env?: Record<string, string | undefined>;
  argv?: readonly string[];
}

/**
 * The value of the last --cmdline-file flag in argv (`--cmdline-file PATH` or
 * `--cmdline-file=PATH`), or undefined. Parsed ahead of loadConfig(), which
 * needs the file's text; loadConfig() then records the flag like any other.
 */
export function cmdlineFileFromArgv(argv: readonly string[]): string | undefined {
  let file: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--cmdline-file') {
      if (i + 1 < argv.length) file = argv[++i];
    } else if (arg.startsWith('--cmdline-file=')) {
      file = arg.slice('--cmdline-file='.length);
    } else if (FLAGS[arg]?.takesValue) {
      i++; // skip the value of another flag (it could be "--cmdline-file")
    }
  }
  return file === undefined || file.trim() === '' ? undefined : file.trim();
}

/**
 * loadConfig() fed from the command line file (--cmdline-file, else
 * opts.cmdlinePath, else /proc/cmdline; missing/unreadable => '', with a
 * warning only for a file named by --cmdline-file), process.env and process.argv.
 */
export function readConfig(opts: ReadConfigOptions = {}): LoadConfigResult {
  const argv = opts.argv ?? process.argv.slice(2);
  const flagged = cmdlineFileFromArgv(argv);
  const file = flagged ?? opts.cmdlinePath ?? '/proc/cmdline';
  let cmdline = '';
  let problem: string | undefined;
  try {
    cmdline = fs.readFileSync(file, 'utf8');
  } catch (err) {
    cmdline = '';
    if (flagged !== undefined) problem = `--cmdline-file ${file}: ${(err as Error).message}; using an empty command line`;
  }
  const res = loadConfig({ cmdline, env: opts.env ?? process.env, argv });
  if (problem !== undefined) res.warnings.unshift(problem);
  return res;
}
