// Reminders (runtime/ports.ts ReminderStore) on PostgreSQL, indexed by shard so a
// node that gains shards finds the entities with timers to re-arm. With a WriteFence,
// writes are conditional on this node's epoch for the reminder's shard (shard-epochs.ts).

import { FencedStore } from './fenced-store.ts';
import type { Reminder, ReminderStore, ShardId } from '../../runtime/ports.ts';
import { FENCED_BY, epochFor, fenceParams, staleEpoch } from './shard-epochs.ts';
import type { EntityKey } from '../../runtime/entity.ts';

export class PostgresReminderStore extends FencedStore implements ReminderStore {
  async set(r: Reminder): Promise<void> {
    const values = [r.entityKey, r.name, r.shard, new Date(r.dueAt)];
    const upsert = 'on conflict (entity_key, name) do update set shard = excluded.shard, due_at = excluded.due_at';
    if (!this.fence) {
      await this.sql(`insert into reminder (entity_key, name, shard, due_at) values (?, ?, ?, ?) ${upsert}`, values);
      return;
    }
    const what = `reminder ${r.name} of ${r.entityKey}`;
    const epoch = epochFor(this.fence, r.shard, what);
    const written = await this.sql(
      'insert into reminder (entity_key, name, shard, due_at) ' +
      `select ?, ?, ?::int, ?::timestamptz where ${FENCED_BY} ${upsert} returning 1 as ok`,
      [...values, ...fenceParams(r.shard, epoch)]);
    if (written.length === 0) throw this.fence.refused(r.shard, epoch, what);
  }

  async clear(entityKey: EntityKey, name: string, shard?: ShardId): Promise<void> {
    if (!this.fence || shard === undefined) {
      await this.sql('delete from reminder where entity_key = ? and name = ?', [entityKey, name]);
      return;
    }
    const what = `clearing reminder ${name} of ${entityKey}`;
    const epoch = epochFor(this.fence, shard, what);
    const deleted = await this.sql(`delete from reminder where entity_key = ? and name = ? and ${FENCED_BY} returning 1 as ok`,
      [entityKey, name, ...fenceParams(shard, epoch)]);
    // Nothing deleted: a stale epoch, or no such reminder.
    if (deleted.length === 0 && await staleEpoch((q, p) => this.sql(q, p), shard, epoch)) throw this.fence.refused(shard, epoch, what);
  }

  async forShards(shards: readonly ShardId[]): Promise<Reminder[]> {
    if (shards.length === 0) return [];
    const rows = await this.sql<{ entity_key: string; name: string; shard: number; due_at: Date | string }>(
      `select entity_key, name, shard, due_at from reminder where shard in (${shards.map(() => '?').join(',')})`, [...shards],
    );
    return rows.map((r) => ({ entityKey: r.entity_key, name: r.name, shard: r.shard, dueAt: new Date(r.due_at).getTime() }));
  }
}
