// Shard epochs (runtime/ports.ts ShardEpochs) on PostgreSQL, and the condition every
// fenced write of a shard carries.
//
// Taking an epoch is one upsert that adds one to the current epoch (a compare-and-set
// with no read in between). A fenced write checks the epoch in its own statement or
// transaction with `fencedBy`, which takes a FOR SHARE lock on the shard's row: an epoch
// taken meanwhile waits until the write commits, and a write that comes after it sees the
// new epoch and changes nothing. Every write committed under an epoch is therefore
// committed before the next epoch is taken.

import type { Orm } from './orm.ts';
import type { Epoch, EpochRecord, ShardEpochs, ShardId, WriteFence } from '../../runtime/ports.ts';
import { StorageUnavailableError } from '../../runtime/errors.ts';
import { countsAsOutage } from '../resilience.ts';
import type { NodeId } from '../../runtime/entity.ts';

type Execute = <T>(sql: string, params?: unknown[]) => Promise<T[]>;

export class PostgresShardEpochs implements ShardEpochs {
  readonly #orm: Orm;

  constructor(orm: Orm) {
    this.#orm = orm;
  }

  async acquire(shards: readonly ShardId[], nodeId: NodeId): Promise<ReadonlyMap<ShardId, Epoch>> {
    if (shards.length === 0) return new Map();
    try {
      const rows = await this.#orm.em.getConnection().execute(
        `insert into shard_epoch (shard, epoch, owner, updated_at)
         select s, 1, ?, now() from unnest(array[${shards.map(() => '?').join(',')}]::int[]) s
         on conflict (shard) do update set epoch = shard_epoch.epoch + 1, owner = excluded.owner, released = false, updated_at = now()
         returning shard, epoch`,
        // In shard order: a journal batch locks the rows of several shards in that order too.
        [nodeId, ...[...shards].sort((a, b) => a - b)],
      ) as { shard: number; epoch: string | number }[];
      return new Map(rows.map((r) => [Number(r.shard), Number(r.epoch)]));
    } catch (error) {
      if (countsAsOutage(error)) {
        throw new StorageUnavailableError(`taking epochs for shard(s) ${shards.join(', ')}: ${(error as Error).message}`, { cause: error });
      }
      throw error;
    }
  }

  async currentEpochs(shards: readonly ShardId[]): Promise<ReadonlyMap<ShardId, EpochRecord>> {
    if (shards.length === 0) return new Map();
    const rows = await this.#run(`reading epochs of shard(s) ${shards.join(', ')}`, () => this.#orm.em.getConnection().execute(
      `select shard, epoch, owner, released from shard_epoch where shard in (${shards.map(() => '?').join(',')})`, [...shards],
    )) as { shard: number; epoch: string | number; owner: string; released: boolean }[];
    return new Map(rows.map((r) => [Number(r.shard), { epoch: Number(r.epoch), owner: r.owner, released: Boolean(r.released) }]));
  }

  async release(epochs: ReadonlyMap<ShardId, Epoch>): Promise<void> {
    if (epochs.size === 0) return;
    const pairs = [...epochs].sort(([a], [b]) => a - b);
    await this.#run(`releasing shard(s) ${pairs.map(([s]) => s).join(', ')}`, () => this.#orm.em.getConnection().execute(
      `update shard_epoch set released = true, updated_at = now()
       where (shard, epoch) in (${pairs.map(() => '(?::int, ?::bigint)').join(',')})`,
      pairs.flat(),
    ));
  }

  async #run<T>(what: string, statement: () => Promise<T>): Promise<T> {
    try {
      return await statement();
    } catch (error) {
      if (countsAsOutage(error)) throw new StorageUnavailableError(`${what}: ${(error as Error).message}`, { cause: error });
      throw error;
    }
  }
}

/** `exists (...)`: true while `epoch` is the shard's current one, for SQL expressions of a shard and an epoch (a write of many shards). */
export function fencedBy(shard: string, epoch: string): string {
  return `exists (select 1 from shard_epoch where shard = ${shard} and epoch = ${epoch} for share)`;
}

/**
 * CTEs of a batch write fed from `u` (columns sh, the shard, and ep, the epoch, null where
 * unfenced): `held`, the batch's shards' epochs locked FOR SHARE until commit (so an epoch
 * taken meanwhile waits for the write; in shard order, as epochs are taken), and `f`, every
 * row of `u` with `fenced`, whether its epoch is stale.
 */
export const HELD_EPOCHS = `held as (
    select shard, epoch from shard_epoch where shard in (select sh from u where ep is not null) order by shard for share
  ), f as (
    select u.*, (u.ep is not null and not exists (select 1 from held h where h.shard = u.sh and h.epoch = u.ep)) as fenced from u
  )`;

/** The indexes (`i`) of a HELD_EPOCHS batch's rows whose epoch was stale (pg answers true, the embedded node's driver 't'). */
function fencedRows(rows: readonly { i: number | string; fenced: unknown }[]): Set<number> {
  return new Set(rows.filter((r) => r.fenced === true || r.fenced === 't').map((r) => Number(r.i)));
}

/**
 * Settles each write of a batch by its statement's answer (one row per write, `i` its place
 * in the batch): a fenced one's writer hears `refused(write)` (undefined: no fence to
 * refuse by, so it resolves), the others resolve.
 */
export function settleFenced<W extends { resolve(): void; reject(error: unknown): void }>(
  batch: readonly W[], rows: readonly { i: number | string; fenced: unknown }[], refused: (write: W) => Error | undefined,
): void {
  const fenced = fencedRows(rows);
  batch.forEach((w, i) => {
    const error = fenced.has(i) ? refused(w) : undefined;
    if (error) w.reject(error); else w.resolve();
  });
}

/** `exists (...)`: true while `epoch` is the shard's current one; append to a write's `where`, with `fenceParams`. */
export const FENCED_BY = fencedBy('?', '?');

export function fenceParams(shard: ShardId, epoch: Epoch): [number, number] {
  return [shard, epoch];
}

/** The epoch a write of `shard` must carry, or the error to throw when this node holds none. */
export function epochFor(fence: WriteFence, shard: ShardId, what: string): Epoch {
  const epoch = fence.epochOf(shard);
  if (epoch === undefined) throw fence.refused(shard, undefined, what);
  return epoch;
}

/**
 * A fenced write changed no row: either the epoch is stale (refused) or the write had
 * nothing to change (an older snapshot, a reminder already gone). Asks which.
 */
export async function staleEpoch(sql: Execute, shard: ShardId, epoch: Epoch): Promise<boolean> {
  const [row] = await sql<{ epoch: string | number }>('select epoch from shard_epoch where shard = ?', [shard]);
  return !row || Number(row.epoch) !== epoch;
}
