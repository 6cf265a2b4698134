// Activates scheduled bookings: node-cron on every node, every `everySeconds`,
// asks the read model for the bookings of the shards this node owns whose pickup
// time falls within the lead window, and tells each to activate. The command id
// is derived from the booking, so two runs (or two nodes around a rebalance)
// activate a booking once; the booking's own reducer is idempotent besides.
// A run also happens at start, so a booking due while the node was down is
// activated late rather than lost.

import { schedule, type ScheduledTask } from 'node-cron';

export interface SchedulerPorts {
  owned(): readonly number[];
  due(shards: readonly number[], before: number): Promise<string[]>;
  activate(bookingId: string, commandId: string): Promise<void>;
  now(): number;
  onError(error: unknown, context: string): void;
}

export interface SchedulerOptions {
  readonly leadMs: number;
  readonly everySeconds: number;
}

export class BookingScheduler {
  readonly #ports: SchedulerPorts;
  readonly #o: SchedulerOptions;
  #task: ScheduledTask | undefined;
  #running: Promise<number> | undefined;

  constructor(ports: SchedulerPorts, options: SchedulerOptions) {
    this.#ports = ports;
    this.#o = options;
  }

  start(): void {
    const every = Math.max(1, Math.min(59, Math.round(this.#o.everySeconds)));
    this.#task = schedule(`*/${every} * * * * *`, () => void this.runOnce(), { noOverlap: true, name: 'activate-scheduled-bookings' });
    void this.runOnce();
  }

  /** One pass; resolves to the number of bookings told to activate. */
  runOnce(): Promise<number> {
    if (this.#running) return this.#running;
    this.#running = this.#pass().finally(() => { this.#running = undefined; });
    return this.#running;
  }

  async stop(): Promise<void> {
    await this.#task?.stop();
    await this.#running;
  }

  async #pass(): Promise<number> {
    try {
      const due = await this.#ports.due(this.#ports.owned(), this.#ports.now() + this.#o.leadMs);
      await Promise.all(due.map((id) => this.#ports.activate(id, `activate:${id}`)));
      return due.length;
    } catch (error) {
      this.#ports.onError(error, 'activating scheduled bookings');
      return 0;
    }
  }
}
