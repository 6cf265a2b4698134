// In-memory ReminderStore for tests; the embedded node keeps reminders in PostgreSQL (PGlite).

import type { Reminder, ReminderStore } from '../../runtime/ports.ts';
import type { EntityKey, ShardId } from '../../runtime/entity.ts';

export class MemoryReminderStore implements ReminderStore {
  readonly #rows = new Map<string, Reminder>();

  async set(reminder: Reminder): Promise<void> {
    this.#rows.set(`${reminder.entityKey}\u0000${reminder.name}`, { ...reminder });
  }

  async clear(entityKey: EntityKey, name: string): Promise<void> {
    this.#rows.delete(`${entityKey}\u0000${name}`);
  }

  async forShards(shards: readonly ShardId[]): Promise<Reminder[]> {
    const wanted = new Set(shards);
    return [...this.#rows.values()].filter((r) => wanted.has(r.shard));
  }
}
