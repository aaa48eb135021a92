// Progress for long steps, on stderr. On a terminal a step's running count is redrawn in place
// (at most ~10 times a second); otherwise each step prints a start line and an end line with its
// duration, and long steps print a line every few seconds, so CI logs show progress too.
export interface ProgressOptions {
  quiet?: boolean;
  /** Default: process.stderr. */
  out?: NodeJS.WritableStream & { isTTY?: boolean };
  /** Clock in ms (tests). */
  now?: () => number;
}

export class Progress {
  private readonly out: NodeJS.WritableStream & { isTTY?: boolean };
  private readonly quiet: boolean;
  private readonly now: () => number;
  private readonly tty: boolean;
  private stepName = '';
  private stepStart = 0;
  private lastDraw = 0;
  private drawn = false;

  constructor(private readonly total: number, o: ProgressOptions = {}) {
    this.out = o.out ?? process.stderr;
    this.quiet = o.quiet ?? false;
    this.now = o.now ?? (() => performance.now());
    this.tty = this.out.isTTY === true;
  }

  private index = 0;

  /** Start the next step. */
  step(name: string): void {
    this.endLine();
    this.index++;
    this.stepName = name;
    this.stepStart = this.now();
    this.lastDraw = this.stepStart;
    if (!this.quiet) this.out.write(`[${this.index}/${this.total}] ${name}${this.tty ? '' : '\n'}`);
    this.drawn = this.tty;
  }

  /** Report progress within the step, e.g. update('1234 files, 56 MiB'). */
  update(detail: string): void {
    if (this.quiet) return;
    const t = this.now();
    if (this.tty) {
      if (t - this.lastDraw < 100) return;
      this.out.write(`\r\x1b[2K[${this.index}/${this.total}] ${this.stepName}: ${detail}`);
      this.drawn = true;
    } else {
      if (t - this.lastDraw < 5000) return;
      this.out.write(`    ${this.stepName}: ${detail}\n`);
    }
    this.lastDraw = t;
  }

  /** End the current step (optionally with a result). */
  done(result = ''): void {
    if (this.quiet || this.stepName === '') return;
    const secs = ((this.now() - this.stepStart) / 1000).toFixed(1);
    const line = `[${this.index}/${this.total}] ${this.stepName}: done in ${secs} s${result ? ` (${result})` : ''}`;
    this.out.write(this.tty ? `\r\x1b[2K${line}\n` : `${line}\n`);
    this.drawn = false;
    this.stepName = '';
  }

  /** A plain message between steps. */
  note(msg: string): void {
    if (this.quiet) return;
    this.endLine();
    this.out.write(`${msg}\n`);
  }

  private endLine(): void {
    if (this.drawn && this.tty) this.out.write('\n');
    this.drawn = false;
  }
}

export function humanBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}
