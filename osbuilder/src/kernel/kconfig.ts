// The final .config against what the fragments asked for, and why a symbol did not make it:
// Kconfig drops a symbol whose dependencies are not met without a word, so osbuilder reads the
// Kconfig files for the symbol's `depends on` lines and names the dependencies that are off.
import fs from 'node:fs';
import path from 'node:path';
import type { ConfigValue } from './fragments';

/** A .config as symbol -> value; `# CONFIG_X is not set` is 'n'. */
export function parseDotConfig(text: string): Map<string, ConfigValue> {
  const out = new Map<string, ConfigValue>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const unset = /^# (CONFIG_\w+) is not set$/.exec(line);
    if (unset) out.set(unset[1]!, 'n');
    else {
      const m = /^(CONFIG_\w+)=(.*)$/.exec(line);
      if (m) out.set(m[1]!, m[2]!);
    }
  }
  return out;
}

export interface Mismatch {
  symbol: string;
  wanted: ConfigValue;
  /** What the final config has ('n' when the symbol is absent or not set). */
  got: ConfigValue;
  /** The fragment that asked. */
  file: string;
  whitelisted: boolean;
}

/** Every asked symbol whose final value differs (an asked `n` is met by an absent symbol). */
export function verifyConfig(wanted: Map<string, { value: ConfigValue; file: string }>, final: Map<string, ConfigValue>, whitelist: Set<string>): Mismatch[] {
  const out: Mismatch[] = [];
  for (const [symbol, { value, file }] of wanted) {
    const got = final.get(symbol) ?? 'n';
    if (got !== value) out.push({ symbol, wanted: value, got, file, whitelisted: whitelist.has(symbol) });
  }
  return out;
}

export interface KconfigEntry {
  /** Kconfig file relative to the source tree. */
  file: string;
  /** The `depends on` expressions of the symbol's definitions. */
  depends: string[];
}

/** Index `config X` / `menuconfig X` definitions of the symbols asked about, from every Kconfig* file. */
export function indexKconfig(srcDir: string, symbols: Iterable<string>): Map<string, KconfigEntry[]> {
  const want = new Set([...symbols].map((s) => s.replace(/^CONFIG_/, '')));
  const out = new Map<string, KconfigEntry[]>();
  const walk = (dir: string): void => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      if (e.name.startsWith('.')) continue;
      const full = path.join(dir, e.name);
      if (e.isDirectory()) walk(full);
      else if (e.name.startsWith('Kconfig')) scan(full);
    }
  };
  const scan = (file: string): void => {
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    let current: KconfigEntry | undefined;
    for (const line of lines) {
      const def = /^\s*(?:menu)?config\s+(\w+)\s*$/.exec(line);
      if (def) {
        current = undefined;
        if (want.has(def[1]!)) {
          current = { file: path.relative(srcDir, file), depends: [] };
          const key = `CONFIG_${def[1]}`;
          out.set(key, [...(out.get(key) ?? []), current]);
        }
        continue;
      }
      if (/^\s*(?:endmenu|endif|endchoice|choice|menu|if|source|comment|help|---help---)\b/.test(line)) current = undefined;
      const dep = /^\s*depends\s+on\s+(.+?)\s*$/.exec(line);
      if (current && dep) current.depends.push(dep[1]!);
    }
  };
  walk(srcDir);
  return out;
}

/**
 * The symbols of a Kconfig expression that stand in its way: named ones that are off, and
 * negated ones (`!X`) that are on. (An approximation for `||` expressions: every off operand is
 * listed.)
 */
export function unmetSymbols(expr: string, final: Map<string, ConfigValue>): string[] {
  const out: string[] = [];
  for (const m of expr.matchAll(/(!?)\s*([A-Za-z0-9_]+)/g)) {
    const name = m[2]!;
    if (!/[A-Z]/.test(name)) continue; // y/m/n and numbers
    const sym = `CONFIG_${name}`;
    const on = (final.get(sym) ?? 'n') !== 'n';
    if ((m[1] === '!' ? on : !on) && !out.includes(sym)) out.push(sym);
  }
  return out;
}

/** One line per mismatch: asked, got, the fragment, and the unmet dependencies where Kconfig tells. */
export function explainMismatches(mismatches: Mismatch[], index: Map<string, KconfigEntry[]>, final: Map<string, ConfigValue>): string[] {
  return mismatches.map((m) => {
    const head = `${m.symbol}: asked ${m.wanted} (${m.file}), got ${m.got}`;
    const defs = index.get(m.symbol);
    if (!defs) return `${head}; no such symbol in this kernel's Kconfig`;
    const unmet = [...new Set(defs.flatMap((d) => d.depends.flatMap((e) => unmetSymbols(e, final))))];
    if (unmet.length) return `${head}; unmet dependencies: ${unmet.join(', ')} (${defs[0]!.file})`;
    return `${head} (${defs[0]!.file}${defs[0]!.depends.length ? `; depends on ${defs[0]!.depends.join(' && ')}` : ''})`;
  });
}
