// A minimal async mutex: jobs run one at a time, in call order.

export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  private depth = 0;

  /** Run `job` once every job queued before it has settled. */
  run<T>(job: () => Promise<T> | T): Promise<T> {
    this.depth++;
    const p = this.tail.then(job);
    this.tail = p.then(
      () => this.depth--,
      () => this.depth--,
    );
    return p;
  }

  /** Jobs queued or running. */
  get pending(): number {
    return this.depth;
  }
}
