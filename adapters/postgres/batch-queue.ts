// One batch at a time, for the stores whose writes or reads of many entities go in one
// statement (reminders, snapshots, recovery reads): what arrives while a batch runs waits and
// goes in the next, the first of them after the current tick, so the callers of one tick share
// it. The store says how a batch is taken from the queue (its bounds, one write per key) and
// runs it; a batch settles its own callers and never throws.

export interface BatchQueueOptions<T> {
  /** The next batch, in arrival order, and what waits for a later one. */
  take(queue: readonly T[]): { batch: T[]; rest: T[] };
  run(batch: readonly T[]): Promise<void>;
}

export class BatchQueue<T> {
  readonly #o: BatchQueueOptions<T>;
  #queue: T[] = [];
  #scheduled = false;
  #running: Promise<void> | undefined;

  constructor(options: BatchQueueOptions<T>) {
    this.#o = options;
  }

  push(item: T): void {
    this.#queue.push(item);
    this.#schedule();
  }

  /** Once everything pushed so far has been run. */
  async settled(): Promise<void> {
    while (this.#running || this.#queue.length > 0) {
      if (!this.#running) this.#running = this.#drain();
      await this.#running;
    }
  }

  #schedule(): void {
    if (this.#scheduled || this.#running || this.#queue.length === 0) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      if (!this.#running) this.#running = this.#drain();
    });
  }

  async #drain(): Promise<void> {
    try {
      while (this.#queue.length > 0) {
        const { batch, rest } = this.#o.take(this.#queue);
        this.#queue = rest;
        await this.#o.run(batch);
      }
    } finally {
      this.#running = undefined;
      this.#schedule();
    }
  }
}

/** At most `max` in arrival order, one per key: a second for a key waits for a later batch (so one key's order holds). */
export function onePerKey<T>(queue: readonly T[], max: number, keyOf: (item: T) => string): { batch: T[]; rest: T[] } {
  const batch: T[] = [];
  const rest: T[] = [];
  const keys = new Set<string>();
  for (const item of queue) {
    const key = keyOf(item);
    if (batch.length >= max || keys.has(key)) { rest.push(item); continue; }
    keys.add(key);
    batch.push(item);
  }
  return { batch, rest };
}
