// pino JSON logging. Level from agent.log= (or KATA_AGENT_LOG_LEVEL / --log-level).
import pino, { type Logger, type DestinationStream } from 'pino';

export type { Logger };

export const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;
export type Level = (typeof LEVELS)[number];

/** Kata also accepts "warning" and "critical"/"panic"; map them to pino levels. */
export function normalizeLevel(s: string): Level | undefined {
  const l = s.trim().toLowerCase();
  if ((LEVELS as readonly string[]).includes(l)) return l as Level;
  if (l === 'warning') return 'warn';
  if (l === 'critical' || l === 'panic') return 'fatal';
  return undefined;
}

export function createLogger(level: Level = 'info', dest?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { source: 'agent', pid: process.pid, name: 'kata-agent' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    // `dest: 1` rather than `fd: 1`: the same SonicBoom on fd 1, but pino.destination()
    // then never touches process.stdout (which would build a whole stdio stream at start-up).
    dest ?? pino.destination({ dest: 1, sync: true }),
  );
}

/** A silent logger for unit tests and library use. */
export function nullLogger(): Logger {
  return pino({ level: 'silent' });
}
