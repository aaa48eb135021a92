import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_HOTPLUG_TIMEOUT_MS,
  DEFAULT_OCI_RUNTIME,
  DEFAULT_SERVER_ADDR,
  USAGE,
  chooseListenAddress,
  defaultConfig,
  loadConfig,
  parseBool,
  parseCmdline,
  parseDurationMs,
  readConfig,
  cmdlineFileFromArgv,
  type AgentConfig,
} from '../../agent/src/config';

const here = path.dirname(fileURLToPath(import.meta.url));
const fixture = (name: string) => fs.readFileSync(path.join(here, '../fixtures/cmdline', name), 'utf8');

function fromCmdline(cmdline: string) {
  return loadConfig({ cmdline });
}

describe('defaults', () => {
  it('empty input gives Kata defaults and no warnings', () => {
    const { config, warnings, ignored } = loadConfig({});
    expect(warnings).toEqual([]);
    expect(ignored).toEqual([]);
    expect(config).toEqual({
      logLevel: 'info',
      serverAddr: 'vsock://-1:1024',
      serverAddrExplicit: false,
      channel: 'auto',
      hotplugTimeoutMs: 3000,
      debugConsole: false,
      debugConsoleVport: 0,
      logVport: 0,
      containerPipeSize: 0,
      devMode: false,
      unifiedCgroupHierarchy: true,
      cgroupNoV1: [],
      ociRuntime: 'crun',
      noInit: false,
      cmdlineFile: '',
      help: false,
      version: false,
      sources: {},
    } satisfies AgentConfig);
    expect(DEFAULT_SERVER_ADDR).toBe('vsock://-1:1024');
    expect(DEFAULT_HOTPLUG_TIMEOUT_MS).toBe(3000);
    expect(DEFAULT_OCI_RUNTIME).toBe('crun');
  });

  it('defaultConfig() returns fresh objects', () => {
    const a = defaultConfig();
    a.cgroupNoV1.push('x');
    a.sources.logLevel = 'env';
    expect(defaultConfig().cgroupNoV1).toEqual([]);
    expect(defaultConfig().sources).toEqual({});
  });
});

describe('kernel command line: every option', () => {
  const cases: [cmdline: string, expected: Partial<AgentConfig>][] = [
    ['agent.log=debug', { logLevel: 'debug' }],
    ['agent.log=trace', { logLevel: 'trace' }],
    ['agent.log=info', { logLevel: 'info' }],
    ['agent.log=warn', { logLevel: 'warn' }],
    ['agent.log=warning', { logLevel: 'warn' }],
    ['agent.log=error', { logLevel: 'error' }],
    ['agent.log=fatal', { logLevel: 'fatal' }],
    ['agent.log=critical', { logLevel: 'fatal' }],
    ['agent.log=panic', { logLevel: 'fatal' }],
    ['agent.log=DEBUG', { logLevel: 'debug' }],
    ['agent.server_addr=unix:///run/agent.sock', { serverAddr: 'unix:///run/agent.sock', serverAddrExplicit: true }],
    ['agent.server_addr=vsock://-1:2048', { serverAddr: 'vsock://-1:2048', serverAddrExplicit: true }],
    ['agent.server_addr=serial', { serverAddr: 'serial', serverAddrExplicit: true }],
    ['agent.server_addr=serial:agent.channel.0', { serverAddr: 'serial:agent.channel.0', serverAddrExplicit: true }],
    ['agent.server_addr=tcp://127.0.0.1:1024', { serverAddr: 'tcp://127.0.0.1:1024', serverAddrExplicit: true }],
    ['agent.hotplug_timeout=10', { hotplugTimeoutMs: 10_000 }],
    ['agent.hotplug_timeout=3s', { hotplugTimeoutMs: 3000 }],
    ['agent.hotplug_timeout=500ms', { hotplugTimeoutMs: 500 }],
    ['agent.hotplug_timeout=1m30s', { hotplugTimeoutMs: 90_000 }],
    ['agent.hotplug_timeout=1.5s', { hotplugTimeoutMs: 1500 }],
    ['agent.debug_console', { debugConsole: true }],
    ['agent.debug_console=true', { debugConsole: true }],
    ['agent.debug_console=1', { debugConsole: true }],
    ['agent.debug_console=false', { debugConsole: false }],
    ['agent.debug_console=0', { debugConsole: false }],
    ['agent.debug_console_vport=1026', { debugConsoleVport: 1026 }],
    ['agent.debug_console_vport=4294967295', { debugConsoleVport: 4294967295 }],
    ['agent.log_vport=1025', { logVport: 1025 }],
    ['agent.container_pipe_size=2097152', { containerPipeSize: 2097152 }],
    ['agent.container_pipe_size=0', { containerPipeSize: 0 }],
    ['agent.devmode', { devMode: true }],
    ['agent.devmode=false', { devMode: false }],
    ['agent.channel=vsock', { channel: 'vsock' }],
    ['agent.channel=serial', { channel: 'serial' }],
    ['agent.channel=auto', { channel: 'auto' }],
    ['agent.oci_runtime=/usr/local/bin/runc', { ociRuntime: '/usr/local/bin/runc' }],
    ['systemd.unified_cgroup_hierarchy=0', { unifiedCgroupHierarchy: false }],
    ['systemd.unified_cgroup_hierarchy=false', { unifiedCgroupHierarchy: false }],
    ['systemd.unified_cgroup_hierarchy=no', { unifiedCgroupHierarchy: false }],
    ['systemd.unified_cgroup_hierarchy=1', { unifiedCgroupHierarchy: true }],
    ['systemd.unified_cgroup_hierarchy=yes', { unifiedCgroupHierarchy: true }],
    ['systemd.unified_cgroup_hierarchy=true', { unifiedCgroupHierarchy: true }],
    ['cgroup_no_v1=all', { cgroupNoV1: ['all'] }],
    ['cgroup_no_v1=memory,cpu', { cgroupNoV1: ['memory', 'cpu'] }],
    ['cgroup_no_v1=', { cgroupNoV1: [] }],
  ];
  it.each(cases)('%s', (cmdline, expected) => {
    const { config, warnings } = fromCmdline(cmdline);
    expect(warnings).toEqual([]);
    expect(config).toMatchObject(expected);
    // every field set from the command line is attributed to it
    for (const k of Object.keys(expected)) {
      if (k === 'serverAddrExplicit') continue;
      expect(config.sources[k as keyof AgentConfig['sources']]).toBe('cmdline');
    }
  });

  it('systemd.unified_cgroup_hierarchy=0 is reflected only in that field', () => {
    const { config } = fromCmdline('systemd.unified_cgroup_hierarchy=0');
    expect({ ...config, unifiedCgroupHierarchy: true, sources: {} }).toEqual(defaultConfig());
  });
});

describe('kernel command line: bad values keep the default and warn', () => {
  const cases: [cmdline: string, field: keyof AgentConfig, value: unknown, warning: RegExp][] = [
    ['agent.log=verbose', 'logLevel', 'info', /agent\.log=verbose: unknown log level/],
    ['agent.log', 'logLevel', 'info', /agent\.log: requires a value/],
    ['agent.log=', 'logLevel', 'info', /unknown log level/],
    ['agent.server_addr=', 'serverAddr', DEFAULT_SERVER_ADDR, /agent\.server_addr=: invalid address/],
    ['agent.server_addr=/tmp/sock', 'serverAddr', DEFAULT_SERVER_ADDR, /invalid address/],
    ['agent.server_addr=http://x', 'serverAddr', DEFAULT_SERVER_ADDR, /unknown scheme/],
    ['agent.server_addr=vsock://-1:port', 'serverAddr', DEFAULT_SERVER_ADDR, /invalid address/],
    ['agent.server_addr', 'serverAddr', DEFAULT_SERVER_ADDR, /requires a value/],
    ['agent.hotplug_timeout=0', 'hotplugTimeoutMs', 3000, /greater than zero/],
    ['agent.hotplug_timeout=0s', 'hotplugTimeoutMs', 3000, /greater than zero/],
    ['agent.hotplug_timeout=-1', 'hotplugTimeoutMs', 3000, /not a duration/],
    ['agent.hotplug_timeout=abc', 'hotplugTimeoutMs', 3000, /not a duration/],
    ['agent.hotplug_timeout=1.5', 'hotplugTimeoutMs', 3000, /not a duration/],
    ['agent.hotplug_timeout=3x', 'hotplugTimeoutMs', 3000, /not a duration/],
    ['agent.hotplug_timeout=3s2', 'hotplugTimeoutMs', 3000, /not a duration/],
    ['agent.hotplug_timeout=', 'hotplugTimeoutMs', 3000, /empty duration/],
    ['agent.debug_console=maybe', 'debugConsole', false, /not a boolean/],
    ['agent.debug_console_vport=-5', 'debugConsoleVport', 0, /non-negative integer/],
    ['agent.debug_console_vport=4294967296', 'debugConsoleVport', 0, /out of range/],
    ['agent.debug_console_vport=12ab', 'debugConsoleVport', 0, /non-negative integer/],
    ['agent.log_vport=x', 'logVport', 0, /non-negative integer/],
    ['agent.container_pipe_size=-1', 'containerPipeSize', 0, /non-negative integer/],
    ['agent.container_pipe_size=2147483648', 'containerPipeSize', 0, /out of range/],
    ['agent.devmode=2', 'devMode', false, /not a boolean/],
    ['agent.channel=virtio', 'channel', 'auto', /unknown channel/],
    ['agent.oci_runtime=', 'ociRuntime', 'crun', /empty value/],
    ['systemd.unified_cgroup_hierarchy=a', 'unifiedCgroupHierarchy', true, /not a boolean/],
    ['systemd.unified_cgroup_hierarchy=11', 'unifiedCgroupHierarchy', true, /not a boolean/],
    ['systemd.unified_cgroup_hierarchy', 'unifiedCgroupHierarchy', true, /requires a value/],
  ];
  it.each(cases)('%s', (cmdline, field, value, warning) => {
    const { config, warnings } = fromCmdline(cmdline);
    expect(config[field]).toEqual(value);
    expect(config.sources[field as keyof AgentConfig['sources']]).toBeUndefined();
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(warning);
  });

  it('a bad value after a good one keeps the good one', () => {
    const { config, warnings } = fromCmdline('agent.log=debug agent.log=loud');
    expect(config.logLevel).toBe('debug');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/keeping logLevel="debug"/);
  });

  it('a bad server_addr does not mark the address explicit', () => {
    expect(fromCmdline('agent.server_addr=nope').config.serverAddrExplicit).toBe(false);
  });
});

describe('kernel command line: parsing', () => {
  it('unknown agent.* options are warnings; other kernel parameters are silent', () => {
    const { config, warnings } = fromCmdline('console=hvc0 quiet agent.bogus=1 agent.debug_consolex agent.logx=debug root=/dev/vda1');
    expect(config).toEqual(defaultConfig());
    expect(warnings).toEqual([
      'kernel cmdline: unknown option agent.bogus ignored',
      'kernel cmdline: unknown option agent.debug_consolex ignored',
      'kernel cmdline: unknown option agent.logx ignored',
    ]);
  });

  it('known but unimplemented Kata options are ignored without warnings', () => {
    const { warnings, ignored } = fromCmdline('agent.cdh_api_timeout=50 agent.trace agent.mem_agent_enable=1 agent.https_proxy=http://p:81/');
    expect(warnings).toEqual([]);
    expect(ignored).toEqual(['agent.cdh_api_timeout', 'agent.trace', 'agent.mem_agent_enable', 'agent.https_proxy']);
  });

  it('the last occurrence wins', () => {
    expect(fromCmdline('agent.log=debug agent.log=error').config.logLevel).toBe('error');
    expect(fromCmdline('agent.debug_console agent.debug_console=0').config.debugConsole).toBe(false);
  });

  it('any amount of whitespace, tabs and a trailing newline separate parameters', () => {
    const { config, warnings } = fromCmdline('  agent.log=debug\t\tagent.devmode   agent.log_vport=7\n');
    expect(warnings).toEqual([]);
    expect(config).toMatchObject({ logLevel: 'debug', devMode: true, logVport: 7 });
  });

  it('double quotes group a value with spaces and are removed', () => {
    expect(parseCmdline('a="b c" "d=e f" g')).toEqual([
      { key: 'a', value: 'b c' },
      { key: 'd', value: 'e f' },
      { key: 'g', value: undefined },
    ]);
    expect(fromCmdline('agent.oci_runtime="/opt/my runtime/crun"').config.ociRuntime).toBe('/opt/my runtime/crun');
    expect(fromCmdline('agent.server_addr="unix:///run/a b.sock"').config.serverAddr).toBe('unix:///run/a b.sock');
  });

  it('only the first "=" separates key and value', () => {
    expect(parseCmdline('rootflags=data=ordered x=')).toEqual([
      { key: 'rootflags', value: 'data=ordered' },
      { key: 'x', value: '' },
    ]);
  });

  it('parameters after a bare "--" belong to init and are not parsed', () => {
    expect(parseCmdline('a=1 -- b=2')).toEqual([{ key: 'a', value: '1' }]);
    expect(fromCmdline('agent.log=debug -- agent.log=trace').config.logLevel).toBe('debug');
  });

  it('"-" and "_" in option names are equivalent (as for the kernel)', () => {
    const { config, warnings } = fromCmdline('agent.debug-console agent.container-pipe-size=4096 systemd.unified-cgroup-hierarchy=0');
    expect(warnings).toEqual([]);
    expect(config).toMatchObject({ debugConsole: true, containerPipeSize: 4096, unifiedCgroupHierarchy: false });
  });

  it('a real Kata QEMU command line', () => {
    const { config, warnings, ignored } = fromCmdline(fixture('kata-qemu.txt'));
    expect(warnings).toEqual([]);
    expect(ignored).toEqual(['agent.cdh_api_timeout']);
    expect(config).toMatchObject({
      logLevel: 'debug',
      debugConsole: true,
      debugConsoleVport: 1026,
      logVport: 1025,
      hotplugTimeoutMs: 10_000,
      containerPipeSize: 2097152,
      serverAddr: DEFAULT_SERVER_ADDR,
      serverAddrExplicit: false,
      unifiedCgroupHierarchy: true,
    });
  });

  it('a custom command line with quotes, v1 cgroups and init arguments', () => {
    const { config, warnings } = fromCmdline(fixture('custom.txt'));
    expect(warnings).toEqual(['kernel cmdline: unknown option agent.bogus ignored']);
    expect(config).toMatchObject({
      serverAddr: 'vsock://-1:2048',
      serverAddrExplicit: true,
      channel: 'serial',
      hotplugTimeoutMs: 90_000,
      ociRuntime: '/usr/local/bin/crun',
      unifiedCgroupHierarchy: false,
      cgroupNoV1: ['net_cls', 'net_prio'],
      devMode: true,
      logLevel: 'info',
    });
  });
});

describe('durations', () => {
  const good: [string, number][] = [
    ['0', 0],
    ['1', 1000],
    ['45', 45_000],
    ['3s', 3000],
    ['500ms', 500],
    ['1m30s', 90_000],
    ['1.5s', 1500],
    ['.5s', 500],
    ['2h', 7_200_000],
    ['1h2m3s4ms', 3_723_004],
    ['1500us', 2],
    ['1500µs', 2],
    ['100ns', 1],
    ['2000000ns', 2],
    [' 3s ', 3000],
  ];
  it.each(good)('%j -> %d ms', (s, ms) => expect(parseDurationMs(s)).toBe(ms));

  const bad = ['', 's', 'x', '3 s', '1.5', '-1s', '3d', '1m 30s', 'ms500', '1e3s', '3S'];
  it.each(bad)('%j is rejected', (s) => expect(() => parseDurationMs(s)).toThrow());
});

describe('booleans', () => {
  it.each([
    [undefined, true], ['1', true], ['true', true], ['TRUE', true], ['yes', true], ['on', true], ['y', true],
    ['0', false], ['false', false], ['no', false], ['off', false], ['n', false],
  ] as const)('%j -> %j', (v, b) => expect(parseBool(v)).toBe(b));
  it.each(['', '2', 'maybe', 'truex'])('%j is rejected', (v) => expect(() => parseBool(v)).toThrow(/not a boolean/));
});

describe('environment', () => {
  it('KATA_AGENT_SERVER_ADDR and KATA_AGENT_LOG_LEVEL override the command line', () => {
    const { config, warnings } = loadConfig({
      cmdline: 'agent.server_addr=vsock://-1:2000 agent.log=debug',
      env: { KATA_AGENT_SERVER_ADDR: 'unix:///tmp/a.sock', KATA_AGENT_LOG_LEVEL: 'warning' },
    });
    expect(warnings).toEqual([]);
    expect(config).toMatchObject({ serverAddr: 'unix:///tmp/a.sock', serverAddrExplicit: true, logLevel: 'warn' });
    expect(config.sources).toEqual({ serverAddr: 'env', logLevel: 'env' });
  });

  it('bad env values warn and keep the command-line values', () => {
    const { config, warnings } = loadConfig({
      cmdline: 'agent.server_addr=vsock://-1:2000 agent.log=debug',
      env: { KATA_AGENT_SERVER_ADDR: 'nonsense', KATA_AGENT_LOG_LEVEL: 'chatty' },
    });
    expect(config).toMatchObject({ serverAddr: 'vsock://-1:2000', logLevel: 'debug' });
    expect(config.sources).toEqual({ serverAddr: 'cmdline', logLevel: 'cmdline' });
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatch(/^KATA_AGENT_SERVER_ADDR=nonsense: .*keeping vsock:\/\/-1:2000/);
    expect(warnings[1]).toMatch(/^KATA_AGENT_LOG_LEVEL=chatty: unknown log level .*keeping debug/);
  });

  it('empty env values are treated as unset; unrelated variables are ignored', () => {
    const { config, warnings } = loadConfig({ env: { KATA_AGENT_SERVER_ADDR: '', KATA_AGENT_LOG_LEVEL: '', PATH: '/bin' } });
    expect(warnings).toEqual([]);
    expect(config).toEqual(defaultConfig());
  });
});

describe('CLI flags', () => {
  it('every flag', () => {
    const { config, warnings } = loadConfig({
      argv: ['--listen', 'unix:///tmp/x.sock', '--log-level', 'trace', '--channel', 'vsock', '--oci-runtime', '/bin/runc', '--no-init', '--help', '--version'],
    });
    expect(warnings).toEqual([]);
    expect(config).toMatchObject({
      serverAddr: 'unix:///tmp/x.sock',
      serverAddrExplicit: true,
      logLevel: 'trace',
      channel: 'vsock',
      ociRuntime: '/bin/runc',
      noInit: true,
      help: true,
      version: true,
    });
    expect(config.sources).toEqual({
      serverAddr: 'argv', logLevel: 'argv', channel: 'argv', ociRuntime: 'argv', noInit: 'argv', help: 'argv', version: 'argv',
    });
  });

  it('--flag=value form and short -h / -V', () => {
    const { config, warnings } = loadConfig({ argv: ['--listen=unix:///a=b.sock', '--log-level=error', '-h', '-V'] });
    expect(warnings).toEqual([]);
    expect(config).toMatchObject({ serverAddr: 'unix:///a=b.sock', logLevel: 'error', help: true, version: true });
  });

  it('flags override env and command line (precedence defaults < cmdline < env < argv)', () => {
    const input = {
      cmdline: 'agent.server_addr=vsock://-1:1 agent.log=debug agent.channel=serial agent.oci_runtime=/a',
      env: { KATA_AGENT_SERVER_ADDR: 'vsock://-1:2', KATA_AGENT_LOG_LEVEL: 'error' },
      argv: ['--listen', 'vsock://-1:3', '--channel', 'vsock'],
    };
    const { config } = loadConfig(input);
    expect(config.serverAddr).toBe('vsock://-1:3');
    expect(config.logLevel).toBe('error'); // env, no flag given
    expect(config.channel).toBe('vsock');
    expect(config.ociRuntime).toBe('/a'); // cmdline only
    expect(config.hotplugTimeoutMs).toBe(3000); // default
    expect(config.sources).toEqual({ serverAddr: 'argv', logLevel: 'env', channel: 'argv', ociRuntime: 'cmdline' });
  });

  it('bad flag values keep the lower-precedence value', () => {
    const { config, warnings } = loadConfig({
      env: { KATA_AGENT_LOG_LEVEL: 'debug' },
      argv: ['--log-level', 'noisy', '--listen', 'nowhere', '--channel', 'pigeon', '--oci-runtime', ''],
    });
    expect(config).toMatchObject({ logLevel: 'debug', serverAddr: DEFAULT_SERVER_ADDR, channel: 'auto', ociRuntime: 'crun' });
    expect(warnings).toHaveLength(4);
    expect(warnings[0]).toMatch(/--log-level noisy: unknown log level/);
    expect(warnings[1]).toMatch(/--listen nowhere: invalid address/);
    expect(warnings[2]).toMatch(/--channel pigeon: unknown channel/);
    expect(warnings[3]).toMatch(/--oci-runtime : empty value/);
  });

  it('unknown flags, stray arguments, missing values and values on switches are warnings', () => {
    const { config, warnings } = loadConfig({ argv: ['--verbose', 'extra', '--no-init=1', '--listen'] });
    expect(config).toEqual(defaultConfig());
    expect(warnings).toEqual([
      'unknown flag --verbose ignored',
      'unexpected argument "extra" ignored',
      'flag --no-init takes no value; "--no-init=1" ignored',
      'flag --listen requires a value',
    ]);
  });

  it('a flag value may start with a dash (taken verbatim)', () => {
    const { warnings } = loadConfig({ argv: ['--log-level', '--help'] });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/unknown log level "--help"/);
  });
});

describe('chooseListenAddress', () => {
  const cases: [argv: string[], vsock: boolean, addr: string][] = [
    [[], true, 'vsock://-1:1024'],
    [[], false, 'serial:agent.channel.0'],
    [['--channel', 'vsock'], false, 'vsock://-1:1024'],
    [['--channel', 'serial'], true, 'serial:agent.channel.0'],
    [['--listen', 'unix:///run/a.sock'], false, 'unix:///run/a.sock'],
    [['--listen', 'vsock://-1:2000', '--channel', 'serial'], false, 'vsock://-1:2000'],
    [['--listen', 'vsock://-1:1024'], false, 'vsock://-1:1024'], // explicit, even if equal to the default
  ];
  it.each(cases)('%j vsock=%j -> %s', (argv, vsock, addr) => {
    expect(chooseListenAddress(loadConfig({ argv }).config, vsock)).toBe(addr);
  });
});

describe('usage', () => {
  it('documents every flag and kernel option', () => {
    for (const s of ['--listen', '--log-level', '--channel', '--oci-runtime', '--no-init', '--cmdline-file', '--help', '--version',
      'agent.log', 'agent.server_addr', 'agent.hotplug_timeout', 'agent.debug_console', 'agent.debug_console_vport',
      'agent.log_vport', 'agent.container_pipe_size', 'agent.devmode', 'agent.channel', 'agent.oci_runtime',
      'systemd.unified_cgroup_hierarchy', 'cgroup_no_v1', 'KATA_AGENT_SERVER_ADDR', 'KATA_AGENT_LOG_LEVEL']) {
      expect(USAGE).toContain(s);
    }
  });
});

describe('readConfig', () => {
  it('reads the command line from a file', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cfg-'));
    const f = path.join(dir, 'cmdline');
    fs.writeFileSync(f, 'agent.log=debug agent.devmode\n');
    try {
      const { config } = readConfig({ cmdlinePath: f, env: {}, argv: ['--no-init'] });
      expect(config).toMatchObject({ logLevel: 'debug', devMode: true, noInit: true });
    } finally {
      fs.rmSync(dir, { recursive: true });
    }
  });

  it('a missing command line file means an empty command line', () => {
    const { config, warnings } = readConfig({ cmdlinePath: '/nonexistent/cmdline', env: {}, argv: [] });
    expect(warnings).toEqual([]);
    expect(config).toEqual(defaultConfig());
  });

  it('--cmdline-file PATH replaces /proc/cmdline (both flag forms; the last one wins)', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cfg-'));
    const a = path.join(dir, 'a');
    const b = path.join(dir, 'b');
    fs.writeFileSync(a, 'systemd.unified_cgroup_hierarchy=0 agent.oci_runtime=runc\n');
    fs.writeFileSync(b, 'agent.log=debug\n');
    try {
      const one = readConfig({ cmdlinePath: '/nonexistent/cmdline', env: {}, argv: ['--cmdline-file', a] });
      expect(one.warnings).toEqual([]);
      expect(one.config).toMatchObject({ unifiedCgroupHierarchy: false, ociRuntime: 'runc', cmdlineFile: a });
      expect(one.config.sources).toMatchObject({ unifiedCgroupHierarchy: 'cmdline', ociRuntime: 'cmdline', cmdlineFile: 'argv' });
      // a flag still beats the command line file
      const two = readConfig({ env: {}, argv: [`--cmdline-file=${a}`, '--oci-runtime', 'crun', '--cmdline-file', b] });
      expect(two.warnings).toEqual([]);
      expect(two.config).toMatchObject({ logLevel: 'debug', unifiedCgroupHierarchy: true, ociRuntime: 'crun', cmdlineFile: b });
    } finally {
      fs.rmSync(dir, { recursive: true });
    }
  });

  it('an unreadable --cmdline-file is a warning and an empty command line', () => {
    const { config, warnings } = readConfig({ env: {}, argv: ['--cmdline-file', '/nonexistent/cmdline-file'] });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^--cmdline-file \/nonexistent\/cmdline-file: .*ENOENT.*; using an empty command line$/);
    expect({ ...config, cmdlineFile: '', sources: {} }).toEqual(defaultConfig());
  });

  it('cmdlineFileFromArgv does not take another flag\'s value for the file', () => {
    expect(cmdlineFileFromArgv(['--listen', '--cmdline-file', '--no-init'])).toBeUndefined();
    expect(cmdlineFileFromArgv(['--cmdline-file', 'x', '--cmdline-file=y'])).toBe('y');
    expect(cmdlineFileFromArgv(['--cmdline-file'])).toBeUndefined();
    expect(cmdlineFileFromArgv(['--cmdline-file='])).toBeUndefined();
  });
});
