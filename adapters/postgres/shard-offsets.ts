// Shard offsets (runtime/ports.ts ShardOffsets) on PostgreSQL: where each shard's consumption
// of the command log resumes, one row per log and shard. A commit is conditional on this
// node's epoch for the shard in the same statement (HELD_EPOCHS), so a node that lost the
// shard without noticing moves nothing, and an offset never goes back.
//
// Commits that meet go in one statement: every batch a node handles ends with its shard's
// commit, so a node serving many shards wrote one statement per shard per fetch, more than
// any other statement of the cluster path (0.22 to 0.33 per dispatch command, counted). Each
// row is fenced on its own, and each caller told its own outcome.

import { FencedStore } from './fenced-store.ts';
import { HELD_EPOCHS, epochFor, settleFenced } from './shard-epochs.ts';
import { BatchQueue, onePerKey } from './batch-queue.ts';
import type { Orm } from './orm.ts';
import type { ShardId, ShardOffsets, WriteFence } from '../../runtime/ports.ts';

/** Rows in one statement at most (a node serves at most this many shards in practice). */
const MAX_ROWS = 256;

const BATCH_COMMIT = `with u as (
    select * from jsonb_to_recordset(?::jsonb) as u(i int, sh int, n bigint, ep bigint)
  ), ${HELD_EPOCHS}, ins as (
    insert into shard_offset (log, shard, next_offset) select ?, sh, n from f where not fenced order by sh
    on conflict (log, shard) do update set next_offset = greatest(shard_offset.next_offset, excluded.next_offset),
      updated_at = now()
    returning 1
  )
  select f.i, f.fenced from f`;

interface PendingCommit {
  readonly shard: ShardId;
  readonly next: number;
  /** undefined: not fenced. */
  readonly epoch: number | undefined;
  resolve(): void;
  reject(error: unknown): void;
}

export class PostgresShardOffsets extends FencedStore implements ShardOffsets {
  readonly #log: string;
  /** One commit per shard in a batch: a second waits for the next (a statement may not upsert a row twice). */
  readonly #queue = new BatchQueue<PendingCommit>({
    take: (queue) => onePerKey(queue, MAX_ROWS, (c) => String(c.shard)),
    run: (batch) => this.#write(batch),
  });

  /** `log`: the command log's name (the Kafka topic), so two clusters on one database keep apart. */
  constructor(orm: Orm, log: string, fence?: WriteFence) {
    super(orm, fence);
    this.#log = log;
  }

  async next(shards: readonly ShardId[]): Promise<ReadonlyMap<ShardId, number>> {
    if (shards.length === 0) return new Map();
    const rows = await this.sql<{ shard: number; next_offset: string | number }>(
      `select shard, next_offset from shard_offset where log = ? and shard in (${shards.map(() => '?').join(',')})`, [this.#log, ...shards],
    );
    return new Map(rows.map((r) => [Number(r.shard), Number(r.next_offset)]));
  }

  commit(shard: ShardId, next: number): Promise<void> {
    return new Promise((resolve, reject) => {
      // No epoch held: refused at once (epochFor throws, which rejects), as the statement would refuse it.
      const epoch = this.fence ? epochFor(this.fence, shard, this.#what(shard, next)) : undefined;
      this.#queue.push({ shard, next, epoch, resolve, reject });
    });
  }

  #what(shard: ShardId, next: number): string {
    return `offset ${next} of shard ${shard}`;
  }

  async #write(batch: readonly PendingCommit[]): Promise<void> {
    const json = JSON.stringify(batch.map((c, i) => ({ i, sh: c.shard, n: c.next, ep: c.epoch ?? null })));
    let rows: { i: number | string; fenced: unknown }[];
    try {
      rows = await this.sql(BATCH_COMMIT, [json, this.#log]);
    } catch (error) {
      for (const c of batch) c.reject(error);
      return;
    }
    settleFenced(batch, rows, (c) => this.fence?.refused(c.shard, c.epoch, this.#what(c.shard, c.next)));
  }
}
