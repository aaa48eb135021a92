import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Code } from '../../agent/src/rpc/status';
import type { StatFs } from '../../agent/src/services';
import { Exposition, parseMountinfoLine } from '../../agent/src/services/metrics';
import { parseProcStat } from '../../agent/src/proc/stat';
import { call, cleanupTemps, fixture, makeServices, tempDir } from './services-helpers';

afterEach(cleanupTemps);

const METRICS = 'grpc.AgentService/GetMetrics';

interface ParsedSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * A strict parser for the Prometheus text exposition format 0.0.4: HELP/TYPE
 * at most once per family and before its samples, samples of a family
 * contiguous, valid names/labels/escapes/values, no duplicate series.
 */
function parseExposition(text: string): { types: Map<string, string>; samples: ParsedSample[] } {
  if (text !== '' && !text.endsWith('\n')) throw new Error('exposition must end with a newline');
  const types = new Map<string, string>();
  const helps = new Set<string>();
  const samples: ParsedSample[] = [];
  const seriesSeen = new Set<string>();
  const finished = new Set<string>();
  let current: string | undefined;
  const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
  const lines = text.split('\n').slice(0, -1);
  for (const [i, line] of lines.entries()) {
    const where = `line ${i + 1}: ${line}`;
    const enter = (name: string) => {
      if (current !== name) {
        if (current !== undefined) finished.add(current);
        if (finished.has(name)) throw new Error(`family ${name} is not contiguous (${where})`);
        current = name;
      }
    };
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!m) continue; // other comments are allowed
      const [, kind, name, rest] = m as unknown as [string, string, string, string];
      if (!NAME.test(name)) throw new Error(`bad metric name (${where})`);
      enter(name);
      if (samples.some((s) => s.name === name)) throw new Error(`${kind} after samples (${where})`);
      if (kind === 'TYPE') {
        if (types.has(name)) throw new Error(`duplicate TYPE (${where})`);
        if (!['counter', 'gauge', 'histogram', 'summary', 'untyped'].includes(rest)) throw new Error(`bad type (${where})`);
        types.set(name, rest);
      } else {
        if (helps.has(name)) throw new Error(`duplicate HELP (${where})`);
        if (/\\[^\\n]/.test(rest.replace(/\\\\/g, ''))) throw new Error(`bad HELP escape (${where})`);
        helps.add(name);
      }
      continue;
    }
    if (line.trim() === '') throw new Error(`blank line (${where})`);
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$/.exec(line);
    if (!m) throw new Error(`bad sample (${where})`);
    const name = m[1]!;
    enter(name);
    if (!types.has(name)) throw new Error(`sample without TYPE (${where})`);
    const labels: Record<string, string> = {};
    let rest = m[3] ?? '';
    while (rest !== '') {
      const lm = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"(,|$)/.exec(rest);
      if (!lm) throw new Error(`bad labels (${where})`);
      if (lm[1]! in labels) throw new Error(`duplicate label (${where})`);
      labels[lm[1]!] = lm[2]!.replace(/\\(["\\n])/g, (_, c: string) => (c === 'n' ? '\n' : c));
      rest = rest.slice(lm[0].length);
    }
    const v = m[4]!;
    const value = v === '+Inf' ? Infinity : v === '-Inf' ? -Infinity : v === 'NaN' ? NaN : Number(v);
    if (!['+Inf', '-Inf', 'NaN'].includes(v) && !/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(v)) throw new Error(`bad value (${where})`);
    const key = `${name}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seriesSeen.has(key)) throw new Error(`duplicate series (${where})`);
    seriesSeen.add(key);
    samples.push({ name, labels, value });
  }
  return { types, samples };
}

function get(samples: ParsedSample[], name: string, labels: Record<string, string> = {}): number | undefined {
  const s = samples.find((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v) && Object.keys(x.labels).length === Object.keys(labels).length);
  return s?.value;
}

const fakeStatfs = (p: string): StatFs => {
  if (p === '/') return { bsize: 4096, blocks: 1000, bfree: 250, bavail: 200, files: 500, ffree: 100 };
  if (p === '/mnt/my disk') return { bsize: 512, blocks: 2048, bfree: 2048, bavail: 2048, files: 64, ffree: 64 };
  throw Object.assign(new Error(`statfs ${p}: ENOENT`), { code: 'ENOENT' });
};

function fakeServices(proc = fixture('proc-basic')) {
  return makeServices({
    paths: { proc },
    sys: { clockTicksPerSecond: () => 100, pageSize: () => 4096, statfs: fakeStatfs },
  });
}

describe('GetMetrics', () => {
  it('exposes the Kata agent process metrics from <proc>/self', async () => {
    const { dispatcher } = fakeServices();
    const r = await call(dispatcher, METRICS, {});
    expect(r.code).toBe(Code.OK);
    const { types, samples } = parseExposition(r.res!.metrics);
    expect(types.get('kata_agent_scrape_count')).toBe('counter');
    expect(types.get('kata_agent_threads')).toBe('gauge');
    expect(get(samples, 'kata_agent_threads')).toBe(7);
    expect(get(samples, 'kata_agent_total_time')).toBe(4); // (250 + 150) ticks / 100
    expect(get(samples, 'kata_agent_total_vm')).toBe(1073741824);
    expect(get(samples, 'kata_agent_total_rss')).toBe(12800 * 4096);
    expect(get(samples, 'kata_agent_proc_stat', { item: 'cstime' })).toBe(20);
    expect(get(samples, 'kata_agent_proc_status', { item: 'vmrss' })).toBe(51200);
    expect(get(samples, 'kata_agent_proc_status', { item: 'nonvoluntary_ctxt_switches' })).toBe(12);
    expect(get(samples, 'kata_agent_io_stat', { item: 'write_bytes' })).toBe(8192);
    expect(get(samples, 'kata_agent_open_fds')).toBe(5);
    expect(get(samples, 'kata_agent_start_time_seconds')).toBeCloseTo(1_700_000_000 + 12.34, 6);
  });

  it('exposes guest load, tasks, meminfo (bytes), vmstat, cpu time (ms), disks and net devices', async () => {
    const { dispatcher } = fakeServices();
    const { samples } = parseExposition((await call(dispatcher, METRICS, {})).res!.metrics);
    expect(get(samples, 'kata_guest_load', { item: 'load1' })).toBe(0.52);
    expect(get(samples, 'kata_guest_load', { item: 'load15' })).toBe(0.15);
    expect(get(samples, 'kata_guest_tasks', { item: 'cur' })).toBe(3);
    expect(get(samples, 'kata_guest_tasks', { item: 'max' })).toBe(118);
    expect(get(samples, 'kata_guest_meminfo', { item: 'mem_total' })).toBe(2015788 * 1024);
    expect(get(samples, 'kata_guest_meminfo', { item: 'hugepages_total' })).toBe(4); // a count, no kB
    expect(get(samples, 'kata_guest_meminfo', { item: 'high_total' })).toBe(0); // absent -> 0, as Kata
    expect(get(samples, 'kata_guest_meminfo', { item: 'per_cpu' })).toBe(784 * 1024);
    expect(get(samples, 'kata_guest_vm_stat', { item: 'pgfault' })).toBe(987654);
    expect(get(samples, 'kata_guest_cpu_time', { cpu: 'total', item: 'user' })).toBe(192140);
    expect(get(samples, 'kata_guest_cpu_time', { cpu: '1', item: 'idle' })).toBe(620330);
    expect(get(samples, 'kata_guest_cpu_time', { cpu: '0', item: 'steal' })).toBe(1530);
    expect(get(samples, 'kata_guest_diskstat', { disk: 'vda', item: 'flushes' })).toBe(40);
    expect(get(samples, 'kata_guest_diskstat', { disk: 'vda', item: 'sectors_read' })).toBe(60000);
    expect(get(samples, 'kata_guest_diskstat', { disk: 'vdb', item: 'weighted_time_in_progress' })).toBe(2);
    expect(get(samples, 'kata_guest_diskstat', { disk: 'vdb', item: 'discards' })).toBe(0); // old kernel line
    expect(get(samples, 'kata_guest_netdev_stat', { interface: 'eth0', item: 'recv_bytes' })).toBe(199979414);
    expect(get(samples, 'kata_guest_netdev_stat', { interface: 'eth0', item: 'recv_errs' })).toBe(1);
    expect(get(samples, 'kata_guest_netdev_stat', { interface: 'eth0', item: 'sent_drop' })).toBe(4);
    expect(get(samples, 'kata_guest_netdev_stat', { interface: 'lo', item: 'sent_packets' })).toBe(39);
  });

  it('reports rw filesystems of real types once per device, with unescaped mount points', async () => {
    const { dispatcher } = fakeServices();
    const { samples } = parseExposition((await call(dispatcher, METRICS, {})).res!.metrics);
    const fsb = samples.filter((s) => s.name === 'kata_guest_filesystem_bytes');
    expect([...new Set(fsb.map((s) => `${s.labels.mount}|${s.labels.device}`))].sort()).toEqual(['/mnt/my disk|vdc', '/|vda1']);
    expect(get(samples, 'kata_guest_filesystem_bytes', { mount: '/', device: 'vda1', item: 'total' })).toBe(4096 * 1000);
    expect(get(samples, 'kata_guest_filesystem_bytes', { mount: '/', device: 'vda1', item: 'available' })).toBe(4096 * 250);
    expect(get(samples, 'kata_guest_filesystem_bytes', { mount: '/', device: 'vda1', item: 'used' })).toBe(4096 * 750);
    expect(get(samples, 'kata_guest_filesystem_inodes', { mount: '/', device: 'vda1', item: 'used' })).toBe(400);
  });

  it('counts scrapes', async () => {
    const { dispatcher } = fakeServices();
    const first = parseExposition((await call(dispatcher, METRICS, {})).res!.metrics);
    const second = parseExposition((await call(dispatcher, METRICS, {})).res!.metrics);
    expect(get(first.samples, 'kata_agent_scrape_count')).toBe(1);
    expect(get(second.samples, 'kata_agent_scrape_count')).toBe(2);
  });

  it('skips unreadable sources instead of failing', async () => {
    const proc = tempDir();
    fs.mkdirSync(path.join(proc, 'self'));
    fs.writeFileSync(path.join(proc, 'self/stat'), 'garbage');
    const { dispatcher } = fakeServices(proc);
    const r = await call(dispatcher, METRICS, {});
    expect(r.code).toBe(Code.OK);
    const { samples } = parseExposition(r.res!.metrics);
    expect([...new Set(samples.map((s) => s.name))]).toEqual(['kata_agent_scrape_count']);
  });

  it('produces a valid exposition from the real /proc', async () => {
    const { dispatcher } = makeServices();
    const r = await call(dispatcher, METRICS, {});
    expect(r.code).toBe(Code.OK);
    const { samples } = parseExposition(r.res!.metrics);
    expect(get(samples, 'kata_agent_threads')).toBeGreaterThanOrEqual(1);
    expect(get(samples, 'kata_agent_total_rss')).toBeGreaterThan(0);
    expect(get(samples, 'kata_guest_meminfo', { item: 'mem_total' })).toBe(
      Number(/^MemTotal:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'))![1]) * 1024,
    );
  });
});

describe('Exposition', () => {
  it('escapes label values and HELP text and sorts families', () => {
    const x = new Exposition();
    x.family('b_metric', 'second')(1);
    x.family('a_metric', 'back\\slash\nnewline')(Infinity, { v: 'q"uo\\te\nnl' });
    x.family('c_empty', 'never set');
    const text = x.render();
    expect(text).toBe(
      '# HELP a_metric back\\\\slash\\nnewline\n# TYPE a_metric gauge\na_metric{v="q\\"uo\\\\te\\nnl"} +Inf\n' +
        '# HELP b_metric second\n# TYPE b_metric gauge\nb_metric 1\n',
    );
    expect(parseExposition(text).samples[0]!.labels.v).toBe('q"uo\\te\nnl');
  });

  it('the test parser rejects malformed expositions', () => {
    expect(() => parseExposition('x 1\n')).toThrow(/without TYPE/);
    expect(() => parseExposition('# TYPE x gauge\nx{a="1} 1\n')).toThrow(/bad labels/);
    expect(() => parseExposition('# TYPE x gauge\nx 1\n# TYPE y gauge\ny 1\nx 2\n')).toThrow(/not contiguous/);
    expect(() => parseExposition('# TYPE x gauge\nx one\n')).toThrow(/bad value/);
    expect(() => parseExposition('# TYPE x gauge\nx 1')).toThrow(/newline/);
  });
});

describe('proc parsers', () => {
  it('parseProcStat handles a comm with spaces and parentheses', () => {
    const f = parseProcStat(fs.readFileSync(fixture('proc-basic/self/stat'), 'utf8')).field;
    expect([f(3), f(4), f(14), f(20), f(22)]).toEqual([0, 0, 250, 7, 1234]); // state "S" is not numeric -> 0
  });

  it('parseMountinfoLine reads optional fields and octal escapes', () => {
    expect(parseMountinfoLine('25 20 254:3 / /mnt/my\\040disk rw,relatime master:1 shared:2 - xfs /dev/vdc rw,attr2')).toEqual({
      majmin: '254:3',
      mountPoint: '/mnt/my disk',
      fstype: 'xfs',
      source: '/dev/vdc',
      superOptions: 'rw,attr2',
    });
    expect(parseMountinfoLine('garbage')).toBeUndefined();
  });
});
