// Per-interface network counters for StatsContainer (agent.proto
// NetworkStats) from /proc/<pid>/net/dev: the network namespace the
// container's init is in (the guest's, since containers share it).
import fs from 'node:fs';

export interface NetworkStats {
  name: string;
  rx_bytes: number;
  rx_packets: number;
  rx_errors: number;
  rx_dropped: number;
  tx_bytes: number;
  tx_packets: number;
  tx_errors: number;
  tx_dropped: number;
}

/**
 * Parse /proc/net/dev. Columns after "name:" are receive bytes, packets,
 * errs, drop, fifo, frame, compressed, multicast, then transmit bytes,
 * packets, errs, drop, fifo, colls, carrier, compressed. Malformed lines are
 * skipped; the loopback interface is left out (it is not the container's
 * traffic). Counters beyond 2^53 lose precision (JS numbers).
 */
export function parseNetDev(text: string, opts: { includeLoopback?: boolean } = {}): NetworkStats[] {
  const out: NetworkStats[] = [];
  for (const line of text.split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0 || line.includes('|')) continue;
    const name = line.slice(0, colon).trim();
    if (name === '' || (name === 'lo' && !opts.includeLoopback)) continue;
    const f = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)
      .map(Number);
    if (f.length < 16 || f.some((n) => !Number.isFinite(n) || n < 0)) continue;
    out.push({
      name,
      rx_bytes: f[0]!,
      rx_packets: f[1]!,
      rx_errors: f[2]!,
      rx_dropped: f[3]!,
      tx_bytes: f[8]!,
      tx_packets: f[9]!,
      tx_errors: f[10]!,
      tx_dropped: f[11]!,
    });
  }
  return out;
}

/** Stats of the network namespace of `pid` (falls back to the agent's own when the process is gone). */
export function readNetworkStats(procRoot: string, pid?: number): NetworkStats[] {
  const candidates = pid !== undefined && pid > 0 ? [`${procRoot}/${pid}/net/dev`, `${procRoot}/net/dev`] : [`${procRoot}/net/dev`];
  for (const file of candidates) {
    try {
      return parseNetDev(fs.readFileSync(file, 'utf8'));
    } catch {
      // next candidate
    }
  }
  return [];
}
