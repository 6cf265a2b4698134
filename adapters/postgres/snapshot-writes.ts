// Snapshot writes of the PostgreSQL journal, batched like its appends. Entities snapshot
// themselves when they passivate, and they passivate together: the drivers that came
// online together go idle together, and on the embedded node 3,000 of them wrote 3,000
// statements on its one connection in a burst, about a millisecond of the database's
// thread each, while bookings waited behind them. So snapshots that arrive while a batch
// is written wait and go together: one statement, each row checked against its shard's
// epoch (FOR SHARE, as appends are), each caller told its own outcome. An older snapshot
// never replaces a newer one; a second snapshot of one entity waits for the next batch
// (a statement may not upsert a row twice). Refused data (22P05, ...) is retried row by
// row so only the bad snapshot fails.

import type { SnapshotEntry, WriteFence } from '../../runtime/ports.ts';
import { countsAsOutage, hasSqlState } from '../resilience.ts';
import { HELD_EPOCHS, settleFenced } from './shard-epochs.ts';
import { prepared, type Prepared } from './prepared.ts';
import { BatchQueue, onePerKey } from './batch-queue.ts';

/** Rows in one statement at most. */
const MAX_ROWS = 200;

const BATCH_UPSERT = prepared('dispatch_snapshot_upsert', `with u as (
    select * from jsonb_to_recordset(?::jsonb) as u(i int, k text, s bigint, d jsonb, c timestamptz, sh int, ep bigint)
  ), ${HELD_EPOCHS}, ins as (
    insert into snapshot (persistence_key, sequence_nr, data, created_at) select k, s, d, c from f where not fenced order by i
    on conflict (persistence_key) do update set sequence_nr = excluded.sequence_nr, data = excluded.data, created_at = excluded.created_at
    where snapshot.sequence_nr <= excluded.sequence_nr
    returning 1
  )
  select f.i, f.fenced from f`);

/** Runs one statement as it is, its errors unclassified. */
export type Execute = <T>(statement: Prepared, params: unknown[]) => Promise<T[]>;

export interface SnapshotWriteStats {
  snapshots: number;
  statements: number;
}

export interface PendingSnapshot {
  readonly entry: SnapshotEntry;
  readonly what: string;
  /** The shard and epoch the write carries; undefined: not fenced. */
  readonly fence: { shard: number; epoch: number } | undefined;
  resolve(): void;
  reject(error: unknown): void;
}

export class SnapshotWrites {
  readonly #execute: Execute;
  readonly #fence: WriteFence | undefined;
  /** The error a failed statement is reported with, in the runtime's classes. */
  readonly #classified: (error: unknown, what: string) => Error;
  readonly #queue = new BatchQueue<PendingSnapshot>({
    take: (queue) => onePerKey(queue, MAX_ROWS, (p) => p.entry.persistenceKey),
    run: (batch) => this.#write(batch),
  });
  readonly #stats: SnapshotWriteStats = { snapshots: 0, statements: 0 };

  constructor(execute: Execute, fence: WriteFence | undefined, classified: (error: unknown, what: string) => Error) {
    this.#execute = execute;
    this.#fence = fence;
    this.#classified = classified;
  }

  get stats(): Readonly<SnapshotWriteStats> {
    return { ...this.#stats };
  }

  /** Once every snapshot asked for so far is written (or failed). */
  settled(): Promise<void> {
    return this.#queue.settled();
  }

  save(entry: SnapshotEntry, what: string, fence: PendingSnapshot['fence']): Promise<void> {
    return new Promise((resolve, reject) => this.#queue.push({ entry, what, fence, resolve, reject }));
  }

  async #write(batch: readonly PendingSnapshot[]): Promise<void> {
    this.#stats.statements++;
    const json = `[${batch.map((p, i) => `{"i":${i},"k":${JSON.stringify(p.entry.persistenceKey)},"s":${p.entry.sequenceNr},`
      + `"d":${JSON.stringify(p.entry.data) ?? 'null'},"c":${JSON.stringify(new Date(p.entry.createdAt).toISOString())},`
      + `"sh":${p.fence?.shard ?? 'null'},"ep":${p.fence?.epoch ?? 'null'}}`).join(',')}]`;
    let rows: { i: number | string; fenced: unknown }[];
    try {
      rows = await this.#execute(BATCH_UPSERT, [json]);
    } catch (error) {
      if (batch.length > 1 && !countsAsOutage(error) && hasSqlState(error)) {
        for (const p of batch) await this.#write([p]);
        return;
      }
      for (const p of batch) p.reject(this.#classified(error, p.what));
      return;
    }
    this.#stats.snapshots += batch.length;
    settleFenced(batch, rows, (p) => p.fence && this.#fence?.refused(p.fence.shard, p.fence.epoch, p.what));
  }
}
