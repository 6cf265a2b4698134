// The event journal and snapshot store on PostgreSQL (runtime/ports.ts Journal).
// SQL goes through MikroORM's connection: appends are the hot path and need no
// unit of work or identity map. The primary key (persistence_key, sequence_nr)
// keeps two writers from forking an entity's history; with a WriteFence, every
// append and snapshot is also conditional on the epoch this node holds for the
// entity's shard (shard-epochs.ts), so a node that lost the shard writes nothing.

import type { Orm } from './orm.ts';
import type { Journal, JournalEntry, SnapshotEntry, WriteFence } from '../../runtime/ports.ts';
import { FENCED_BY, epochFor, fenceParams, staleEpoch } from './shard-epochs.ts';
import { JournalConflictError, StorageRejectedError, StorageUnavailableError } from '../../runtime/errors.ts';
import { countsAsOutage, hasSqlState } from '../resilience.ts';
import { parseEntityKey, shardOf, type Placement } from '../../runtime/entity.ts';

const UNIQUE_VIOLATION = '23505';

interface JournalDbRow { persistence_key: string; sequence_nr: string | number; data: unknown; tags: string[]; created_at: Date | string }
interface SnapshotDbRow { persistence_key: string; sequence_nr: string | number; data: unknown; created_at: Date | string }

export class PostgresJournal implements Journal {
  readonly #orm: Orm;
  readonly #placement: Placement | undefined;
  readonly #fence: WriteFence | undefined;

  /**
   * With `placement`, each row records its entity's shard, which projections read by (projections.ts);
   * with `fence` too, appends and snapshots are refused (ShardFencedError) unless this node holds the shard's current epoch.
   */
  constructor(orm: Orm, placement?: Placement, fence?: WriteFence) {
    this.#orm = orm;
    this.#placement = placement;
    this.#fence = fence;
  }

  /** The shard and epoch a write of this entity must carry, when writes are fenced. */
  #fenceOf(persistenceKey: string, what: string): { shard: number; epoch: number } | undefined {
    const shard = this.#shardOf(persistenceKey);
    if (!this.#fence || shard === null) return undefined;
    return { shard, epoch: epochFor(this.#fence, shard, what) };
  }

  #shardOf(persistenceKey: string): number | null {
    if (!this.#placement) return null;
    try { return shardOf(parseEntityKey(persistenceKey), this.#placement); } catch { return null; }
  }

  #sql<T>(sql: string, params: unknown[] = []): Promise<T[]> {
    return this.#orm.em.getConnection().execute(sql, params) as Promise<T[]>;
  }

  /**
   * Rows journaled before rows recorded their shard (Migration0008) get it now, so the
   * projections (which read by shard) see the whole history. The shard is computed here,
   * not in SQL: it is the runtime's hash. Returns how many entities were filled in.
   */
  async backfillShards(): Promise<number> {
    if (!this.#placement) return 0;
    let entities = 0;
    for (;;) {
      const keys = await this.#sql<{ persistence_key: string }>(
        'select distinct persistence_key from journal where shard is null limit 500');
      const known = keys.map((k) => ({ key: k.persistence_key, shard: this.#shardOf(k.persistence_key) })).filter((k) => k.shard !== null);
      // A fresh tx too: a row an older node wrote during a rolling upgrade may be older than
      // offsets the projections have already passed; with this one they project it next.
      for (const k of known) {
        await this.#sql('update journal set shard = ?, tx = pg_current_xact_id() where persistence_key = ? and shard is null', [k.shard, k.key]);
      }
      entities += known.length;
      if (known.length < 500) return entities;
    }
  }

  /** Reads and snapshot writes fail in the runtime's classes too. */
  async #run<T>(what: string, sql: string, params: unknown[] = []): Promise<T[]> {
    try {
      return await this.#sql<T>(sql, params);
    } catch (error) {
      throw classified(error, what);
    }
  }

  async append(entry: JournalEntry): Promise<void> {
    const what = `append ${entry.persistenceKey}#${entry.sequenceNr}`;
    const fence = this.#fenceOf(entry.persistenceKey, what);
    const values = [entry.persistenceKey, entry.sequenceNr, JSON.stringify(entry.data), JSON.stringify(entry.tags), new Date(entry.createdAt), this.#shardOf(entry.persistenceKey)];
    let written: unknown[];
    try {
      written = fence
        ? await this.#sql(
          `insert into journal (persistence_key, sequence_nr, data, tags, created_at, shard)
           select ?, ?, ?::jsonb, ?::jsonb, ?::timestamptz, ?::int where ${FENCED_BY} returning 1 as ok`,
          [...values, ...fenceParams(fence.shard, fence.epoch)])
        : await this.#sql(
          'insert into journal (persistence_key, sequence_nr, data, tags, created_at, shard) values (?, ?, ?, ?, ?, ?) returning 1 as ok', values);
    } catch (error) {
      if (isUniqueViolation(error)) throw new JournalConflictError(entry.persistenceKey, entry.sequenceNr);
      throw classified(error, what);
    }
    if (fence && written.length === 0) throw this.#fence!.refused(fence.shard, fence.epoch, what);
  }

  async read(persistenceKey: string, afterSequenceNr: number, limit: number): Promise<JournalEntry[]> {
    const rows = await this.#run<JournalDbRow>(`read ${persistenceKey}`,
      'select persistence_key, sequence_nr, data, tags, created_at from journal where persistence_key = ? and sequence_nr > ? order by sequence_nr limit ?',
      [persistenceKey, afterSequenceNr, limit],
    );
    return rows.map((r) => ({
      persistenceKey: r.persistence_key, sequenceNr: Number(r.sequence_nr), data: parseJson(r.data),
      tags: (parseJson(r.tags) as string[] | null) ?? [], createdAt: new Date(r.created_at).getTime(),
    }));
  }

  /** Served by journal_command_idx (Migration0009CommandIds). */
  async findCommand(persistenceKey: string, commandId: string): Promise<JournalEntry | undefined> {
    const [row] = await this.#run<JournalDbRow>(`find command ${commandId} of ${persistenceKey}`,
      "select persistence_key, sequence_nr, data, tags, created_at from journal where persistence_key = ? and data->>'cmd' = ? order by sequence_nr limit 1",
      [persistenceKey, commandId],
    );
    return row && {
      persistenceKey: row.persistence_key, sequenceNr: Number(row.sequence_nr), data: parseJson(row.data),
      tags: (parseJson(row.tags) as string[] | null) ?? [], createdAt: new Date(row.created_at).getTime(),
    };
  }

  async latestSnapshot(persistenceKey: string): Promise<SnapshotEntry | undefined> {
    const [row] = await this.#run<SnapshotDbRow>(`snapshot of ${persistenceKey}`,
      'select persistence_key, sequence_nr, data, created_at from snapshot where persistence_key = ?', [persistenceKey],
    );
    return row && {
      persistenceKey: row.persistence_key, sequenceNr: Number(row.sequence_nr), data: parseJson(row.data),
      createdAt: new Date(row.created_at).getTime(),
    };
  }

  async saveSnapshot(entry: SnapshotEntry): Promise<void> {
    const what = `save snapshot of ${entry.persistenceKey}`;
    const fence = this.#fenceOf(entry.persistenceKey, what);
    const values = [entry.persistenceKey, entry.sequenceNr, JSON.stringify(entry.data), new Date(entry.createdAt)];
    // Never replace a newer snapshot with an older one (a slow write racing a newer one).
    const upsert = `on conflict (persistence_key) do update set sequence_nr = excluded.sequence_nr, data = excluded.data, created_at = excluded.created_at
       where snapshot.sequence_nr <= excluded.sequence_nr returning 1 as ok`;
    if (!fence) {
      await this.#run(what, `insert into snapshot (persistence_key, sequence_nr, data, created_at) values (?, ?, ?, ?) ${upsert}`, values);
      return;
    }
    const written = await this.#run(what,
      `insert into snapshot (persistence_key, sequence_nr, data, created_at)
       select ?, ?, ?::jsonb, ?::timestamptz where ${FENCED_BY} ${upsert}`,
      [...values, ...fenceParams(fence.shard, fence.epoch)]);
    // Nothing written: a stale epoch, or a newer snapshot already there.
    if (written.length === 0 && await staleEpoch((q, p) => this.#run(what, q, p), fence.shard, fence.epoch)) {
      throw this.#fence!.refused(fence.shard, fence.epoch, what);
    }
  }

  async ping(): Promise<void> {
    await this.#sql('select 1');
  }

  async close(): Promise<void> {
    await this.#orm.close(true);
  }
}

/**
 * The database down or unreachable is transient; the database refusing this data
 * (invalid bytes 22021, \u0000 in jsonb 22P05, any other class 22, 23, 42 error) is
 * permanent: the same statement fails the same way however often it is retried.
 */
function classified(error: unknown, what: string): Error {
  const message = `${what}: ${error instanceof Error ? error.message : String(error)}`;
  return countsAsOutage(error) ? new StorageUnavailableError(message, { cause: error })
    : hasSqlState(error) ? new StorageRejectedError(message, { cause: error })
    : error instanceof Error ? error : new Error(message);
}

function parseJson(value: unknown): unknown {
  return typeof value === 'string' ? JSON.parse(value) : value;
}

function isUniqueViolation(error: unknown): boolean {
  const e = error as { code?: string; cause?: { code?: string } };
  return e?.code === UNIQUE_VIOLATION || e?.cause?.code === UNIQUE_VIOLATION || /duplicate key|unique constraint/i.test(String((error as Error)?.message));
}
