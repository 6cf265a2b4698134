// Reminders (runtime/ports.ts ReminderStore) on PostgreSQL, indexed by shard so a
// node that gains shards finds the entities with timers to re-arm. With a WriteFence,
// writes are conditional on this node's epoch for the reminder's shard (shard-epochs.ts).
//
// Group commit, as the journal's: the sets (and the clears) that arrive within one tick
// are written by one statement, each row checked against its shard's epoch, each caller
// told its own outcome. A command that sets a timer waits for its reminder before its
// journal row, and every offer, deadline and presence timer is one: one statement per
// reminder, on the embedded node's single connection, was most of its statements (at 100
// bookings a second, 800 of 1,200 a second) and what held bookings back.

import { FencedStore } from './fenced-store.ts';
import { HELD_EPOCHS, settleFenced } from './shard-epochs.ts';
import { batchStatements, prepared, type RunPrepared } from './prepared.ts';
import { BatchQueue, onePerKey } from './batch-queue.ts';
import type { Orm } from './orm.ts';
import type { Reminder, ReminderStore, ShardId, WriteFence } from '../../runtime/ports.ts';
import type { EntityKey } from '../../runtime/entity.ts';

/** Rows in one statement at most. */
const MAX_ROWS = 500;

const SET_BATCH = prepared('dispatch_reminders_set', `with u as (
    select * from jsonb_to_recordset(?::jsonb) as u(i int, k text, n text, sh int, due timestamptz, ep bigint)
  ), ${HELD_EPOCHS}, ins as (
    insert into reminder (entity_key, name, shard, due_at) select k, n, sh, due from f where not fenced order by i
    on conflict (entity_key, name) do update set shard = excluded.shard, due_at = excluded.due_at
    returning 1
  )
  select f.i, f.fenced from f`);

const CLEAR_BATCH = prepared('dispatch_reminders_clear', `with u as (
    select * from jsonb_to_recordset(?::jsonb) as u(i int, k text, n text, sh int, ep bigint)
  ), ${HELD_EPOCHS}, del as (
    delete from reminder r using f where not f.fenced and r.entity_key = f.k and r.name = f.n
    returning 1
  )
  select f.i, f.fenced from f`);

interface Pending {
  readonly kind: 'set' | 'clear';
  readonly entityKey: EntityKey;
  readonly name: string;
  readonly shard: ShardId | undefined;
  readonly dueAt: number;
  /** The epoch the write carries (undefined: not fenced). */
  readonly epoch: number | undefined;
  readonly what: string;
  resolve(): void;
  reject(error: unknown): void;
}

export class PostgresReminderStore extends FencedStore implements ReminderStore {
  /** Runs the batch statements: prepared on the embedded node (prepared.ts), else inlined by MikroORM. */
  readonly #batch: RunPrepared;
  readonly #queue = new BatchQueue<Pending>({
    // One write per (entity, name): a second waits for the next batch, so the order holds.
    take: (queue) => onePerKey(queue, MAX_ROWS, (p) => `${p.entityKey}\u0000${p.name}`),
    run: (batch) => this.#run(batch),
  });

  constructor(orm: Orm, fence?: WriteFence, options: { prepared?: RunPrepared } = {}) {
    super(orm, fence);
    this.#batch = batchStatements(this.sql, options.prepared);
  }

  set(r: Reminder): Promise<void> {
    const what = `reminder ${r.name} of ${r.entityKey}`;
    return this.#enqueue('set', r.entityKey, r.name, r.shard, r.dueAt, what);
  }

  /** With `shard` and a fence, refused when this node's epoch for it is stale (a missing reminder is not an error). */
  clear(entityKey: EntityKey, name: string, shard?: ShardId): Promise<void> {
    return this.#enqueue('clear', entityKey, name, shard, 0, `clearing reminder ${name} of ${entityKey}`);
  }

  async forShards(shards: readonly ShardId[]): Promise<Reminder[]> {
    if (shards.length === 0) return [];
    const rows = await this.sql<{ entity_key: string; name: string; shard: number; due_at: Date | string }>(
      `select entity_key, name, shard, due_at from reminder where shard in (${shards.map(() => '?').join(',')})`, [...shards],
    );
    return rows.map((r) => ({ entityKey: r.entity_key, name: r.name, shard: r.shard, dueAt: new Date(r.due_at).getTime() }));
  }

  #enqueue(kind: Pending['kind'], entityKey: EntityKey, name: string, shard: ShardId | undefined, dueAt: number, what: string): Promise<void> {
    // A write this node may not make fails at once, as before: it holds no epoch for the shard.
    let epoch: number | undefined;
    if (this.fence && shard !== undefined) {
      epoch = this.fence.epochOf(shard);
      if (epoch === undefined) return Promise.reject(this.fence.refused(shard, undefined, what));
    }
    return new Promise<void>((resolve, reject) => this.#queue.push({ kind, entityKey, name, shard, dueAt, epoch, what, resolve, reject }));
  }

  /** A batch's sets and clears, one statement each, at once. */
  async #run(batch: readonly Pending[]): Promise<void> {
    await Promise.all([this.#write('set', batch.filter((p) => p.kind === 'set')), this.#write('clear', batch.filter((p) => p.kind === 'clear'))]);
  }

  async #write(kind: Pending['kind'], batch: readonly Pending[]): Promise<void> {
    if (batch.length === 0) return;
    const json = JSON.stringify(batch.map((p, i) => kind === 'set'
      ? { i, k: p.entityKey, n: p.name, sh: p.shard ?? null, due: new Date(p.dueAt).toISOString(), ep: p.epoch ?? null }
      : { i, k: p.entityKey, n: p.name, sh: p.shard ?? null, ep: p.epoch ?? null }));
    let rows: { i: number | string; fenced: unknown }[];
    try {
      rows = await this.#batch(kind === 'set' ? SET_BATCH : CLEAR_BATCH, [json]);
    } catch (error) {
      for (const p of batch) p.reject(error);
      return;
    }
    settleFenced(batch, rows, (p) => (p.shard === undefined ? undefined : this.fence?.refused(p.shard, p.epoch, p.what)));
  }
}
