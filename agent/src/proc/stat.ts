// /proc/<pid>/stat parsing (pure), for the metrics and the ListProcesses table.

/**
 * Fields of a /proc/<pid>/stat line, 1-based as in proc(5); field 2 (comm) may hold spaces
 * and parentheses, so fields are counted from its last ")". A missing or non-numeric field
 * reads 0. Throws on a line without ")".
 */
export function parseProcStat(text: string): { comm: string; field: (n: number) => number } {
  const close = text.lastIndexOf(')');
  if (close < 0) throw new Error('malformed stat: no ")"');
  const open = text.indexOf('(');
  // Field 3 (state) is the first after "comm)".
  const rest = text.slice(close + 1).trim().split(/\s+/);
  return {
    comm: open >= 0 && open < close ? text.slice(open + 1, close) : '',
    field: (n: number) => {
      const v = Number(rest[n - 3]);
      return Number.isFinite(v) ? v : 0;
    },
  };
}
