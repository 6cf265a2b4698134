// Shard offsets (runtime/ports.ts ShardOffsets) on PostgreSQL: where each shard's consumption
// of the command log resumes, one row per log and shard. A commit is conditional on this
// node's epoch for the shard in the same statement (FENCED_BY), so a node that lost the shard
// without noticing moves nothing, and an offset never goes back.

import { FencedStore } from './fenced-store.ts';
import { FENCED_BY, epochFor, fenceParams } from './shard-epochs.ts';
import type { Orm } from './orm.ts';
import type { ShardId, ShardOffsets, WriteFence } from '../../runtime/ports.ts';

export class PostgresShardOffsets extends FencedStore implements ShardOffsets {
  readonly #log: string;

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

  async commit(shard: ShardId, next: number): Promise<void> {
    const upsert = `on conflict (log, shard) do update set next_offset = greatest(shard_offset.next_offset, excluded.next_offset),
      updated_at = now()`;
    if (!this.fence) {
      await this.sql(`insert into shard_offset (log, shard, next_offset) values (?, ?, ?) ${upsert}`, [this.#log, shard, next]);
      return;
    }
    const what = `offset ${next} of shard ${shard}`;
    const epoch = epochFor(this.fence, shard, what);
    const written = await this.sql(
      `insert into shard_offset (log, shard, next_offset) select ?, ?::int, ?::bigint where ${FENCED_BY} ${upsert} returning 1 as ok`,
      [this.#log, shard, next, ...fenceParams(shard, epoch)],
    );
    if (written.length === 0) throw this.fence.refused(shard, epoch, what);
  }
}
