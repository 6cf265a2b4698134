// The sweep behind scheduled bookings. Each booking activates itself with a durable
// timer set when it is created (actors/booking.ts); this sweep only catches what
// that missed (bookings made before the timer existed, a timer lost to a fault).
// node-cron on every node, every `everySeconds`, asks the read model for the
// bookings of the shards this node owns that are still `scheduled` there and whose
// pickup time falls within the lead window, and tells each to activate. Activation
// is idempotent in the booking: the timer and the sweep both asking (or two nodes
// around a rebalance) activate it once, and a booking that is no longer scheduled
// changes nothing and publishes its current view, which corrects a read model row
// that missed a transition (a lost `cancelled`), so that row is not swept again.
// Each pass's commands have their own ids for that reason: a fixed id would be
// dropped as a duplicate by a booking the sweep once activated, and never answer.
// A run also happens at start.

import { schedule, type ScheduledTask } from 'node-cron';
import type { ShardId } from '../../runtime/entity.ts';

export interface SchedulerPorts {
  owned(): readonly number[];
  due(shards: readonly ShardId[], before: number): Promise<string[]>;
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
      const now = this.#ports.now();
      const due = await this.#ports.due(this.#ports.owned(), now + this.#o.leadMs);
      await Promise.all(due.map((id) => this.#ports.activate(id, `activate:${id}@${now}`)));
      return due.length;
    } catch (error) {
      this.#ports.onError(error, 'activating scheduled bookings');
      return 0;
    }
  }
}
