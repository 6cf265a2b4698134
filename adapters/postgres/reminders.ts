// Reminders (runtime/ports.ts ReminderStore) on PostgreSQL, indexed by shard so a
// node that gains shards finds the entities with timers to re-arm.

import type { Orm } from './orm.ts';
import type { Reminder, ReminderStore } from '../../runtime/ports.ts';

export class PostgresReminderStore implements ReminderStore {
  readonly #orm: Orm;

  constructor(orm: Orm) {
    this.#orm = orm;
  }

  async set(r: Reminder): Promise<void> {
    await this.#orm.em.getConnection().execute(
      `insert into reminder (entity_key, name, shard, due_at) values (?, ?, ?, ?)
       on conflict (entity_key, name) do update set shard = excluded.shard, due_at = excluded.due_at`,
      [r.entityKey, r.name, r.shard, new Date(r.dueAt)],
    );
  }

  async clear(entityKey: string, name: string): Promise<void> {
    await this.#orm.em.getConnection().execute('delete from reminder where entity_key = ? and name = ?', [entityKey, name]);
  }

  async forShards(shards: readonly number[]): Promise<Reminder[]> {
    if (shards.length === 0) return [];
    const rows = await this.#orm.em.getConnection().execute(
      `select entity_key, name, shard, due_at from reminder where shard in (${shards.map(() => '?').join(',')})`, [...shards],
    ) as { entity_key: string; name: string; shard: number; due_at: Date | string }[];
    return rows.map((r) => ({ entityKey: r.entity_key, name: r.name, shard: r.shard, dueAt: new Date(r.due_at).getTime() }));
  }
}
