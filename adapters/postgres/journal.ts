// The event journal and snapshot store on PostgreSQL (runtime/ports.ts Journal).
// SQL goes through MikroORM's connection: appends are the hot path and need no
// unit of work or identity map. The primary key (persistence_key, sequence_nr)
// keeps two writers from forking an entity's history; with a WriteFence, every
// append and snapshot is also conditional on the epoch this node holds for the
// entity's shard (shard-epochs.ts), so a node that lost the shard writes nothing.
//
// Group commit: appends are queued and the ones that arrive within one tick (of every
// entity and shard of the node) are written by one statement, so one transaction: a
// multi-row INSERT fed from one jsonb parameter, with one epoch check (FOR SHARE) per shard
// of the batch. Each caller gets its own outcome: a row whose position is taken fails alone
// (JournalConflictError, ON CONFLICT DO NOTHING and the rows not returned), a row of a
// fenced shard fails alone (ShardFencedError), a row whose command the entity journaled
// already fails alone (DuplicateCommandError); a lost connection fails the whole batch,
// which wrote nothing (retriable), and data the database refuses (22P05, ...) is retried
// row by row so only the bad row fails. Batches are bounded in rows and bytes; a few run at
// once (the pool's connections), the rest queue and grow meanwhile.

import type { Orm } from './orm.ts';
import type { AppendOptions, Journal, JournalEntry, SnapshotEntry, WriteFence } from '../../runtime/ports.ts';
import { epochFor } from './shard-epochs.ts';
import { DuplicateCommandError, JournalConflictError, StorageRejectedError, StorageUnavailableError } from '../../runtime/errors.ts';
import { countsAsOutage, hasSqlState, isRetriableConflict } from '../resilience.ts';
import { parseEntityKey, shardOf, type Placement } from '../../runtime/entity.ts';
import { batchStatements, prepared, type Prepared, type RunPrepared } from './prepared.ts';
import { RecoveryReads, type RecoveryReadStats } from './recovery-reads.ts';
import { SnapshotWrites, type SnapshotWriteStats } from './snapshot-writes.ts';
import { journalEntry, snapshotEntry, truthy, type JournalDbRow, type SnapshotDbRow } from './rows.ts';

const UNIQUE_VIOLATION = '23505';


export interface JournalOptions {
  /** Rows in one statement at most. Default 500. */
  readonly maxRows?: number;
  /** Bytes of event data (JSON) in one statement at most; a bigger single row goes alone. Default 1 MiB. */
  readonly maxBytes?: number;
  /** Batches written at once; more appends wait and join the next. Default 2. */
  readonly maxInFlight?: number;
  /** Runs the batch statements as named prepared statements (prepared.ts; the embedded node's); default: inlined by MikroORM. */
  readonly prepared?: RunPrepared;
}

export interface GroupCommitStats {
  /** Appends written or refused by a batch statement. */
  appends: number;
  /** Batch statements run (one per batch, plus one per row when a refused batch is retried row by row). */
  statements: number;
  /** Rows in the largest batch so far. */
  largestBatch: number;
}

interface PendingAppend {
  readonly entry: JournalEntry;
  readonly what: string;
  /** The entry's data as JSON, computed once: its length bounds batches. */
  readonly json: string;
  readonly shard: number | null;
  readonly fence: { shard: number; epoch: number } | undefined;
  readonly unlessCommand: string | undefined;
  resolve(): void;
  reject(error: unknown): void;
}

interface BatchRow { i: number; fenced: boolean; dup: boolean; written: boolean }

/**
 * One statement for a batch: `u` the rows, `held` the shards' epochs (locked FOR SHARE until
 * commit, so an epoch taken meanwhile waits for this write; in shard order, as epochs are taken), `f` each row's verdict, `ins`
 * the rows written. Duplicate commands are found by journal_command_idx (Migration0009).
 */
const BATCH_INSERT = prepared('dispatch_journal_append', `with u as (
    select * from jsonb_to_recordset(?::jsonb) as u(i int, k text, s bigint, d jsonb, t jsonb, c timestamptz, sh int, ep bigint, cmd text)
  ), held as (
    select shard, epoch from shard_epoch where shard in (select sh from u where ep is not null) order by shard for share
  ), f as (
    select u.*,
      (u.ep is not null and not exists (select 1 from held h where h.shard = u.sh and h.epoch = u.ep)) as fenced,
      (seen.found is not null) as dup
    from u left join lateral (
      -- Per row, by the index (a plain EXISTS may be planned as a hashed scan of the whole journal).
      select 1 as found from journal j where u.cmd is not null and j.persistence_key = u.k and j.data->>'cmd' = u.cmd limit 1
    ) seen on true
  ), ins as (
    insert into journal (persistence_key, sequence_nr, data, tags, created_at, shard)
    select k, s, d, t, c, sh from f where not fenced and not dup order by i
    on conflict (persistence_key, sequence_nr) do nothing
    returning persistence_key, sequence_nr
  )
  select f.i, f.fenced, f.dup, ins.sequence_nr is not null as written
  from f left join ins on ins.persistence_key = f.k and ins.sequence_nr = f.s`);

export class PostgresJournal implements Journal {
  readonly #orm: Orm;
  readonly #placement: Placement | undefined;
  readonly #fence: WriteFence | undefined;
  readonly #maxRows: number;
  readonly #maxBytes: number;
  readonly #maxInFlight: number;
  #queue: PendingAppend[] = [];
  #scheduled = false;
  #inFlight = 0;
  readonly #batches = new Set<Promise<void>>();
  readonly #stats: GroupCommitStats = { appends: 0, statements: 0, largestBatch: 0 };
  /** The batch statements: prepared where the journal was given a runner for them (the embedded node), else inlined. */
  readonly #batchStatement: RunPrepared;
  readonly #recoveries = new RecoveryReads((what, statement, params) => this.#runBatch(what, statement, params));
  readonly #snapshots: SnapshotWrites;

  /**
   * With `placement`, each row records its entity's shard, which projections read by (projections.ts);
   * with `fence` too, appends and snapshots are refused (ShardFencedError) unless this node holds the shard's current epoch.
   */
  constructor(orm: Orm, placement?: Placement, fence?: WriteFence, groupCommit: JournalOptions = {}) {
    this.#orm = orm;
    this.#placement = placement;
    this.#fence = fence;
    this.#maxRows = Math.max(1, groupCommit.maxRows ?? 500);
    this.#maxBytes = Math.max(1, groupCommit.maxBytes ?? 1024 * 1024);
    this.#maxInFlight = Math.max(1, groupCommit.maxInFlight ?? 2);
    this.#batchStatement = batchStatements((sql, params) => this.#sql(sql, params), groupCommit.prepared);
    this.#snapshots = new SnapshotWrites(this.#batchStatement, fence, classified);
  }

  /** How appends were grouped (for tests and /metrics). */
  get groupCommitStats(): Readonly<GroupCommitStats> {
    return { ...this.#stats };
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
        await this.#sql(
          'update journal set shard = ?, tx = pg_current_xact_id() where persistence_key = ? and shard is null', [k.shard, k.key],
        );
      }
      entities += known.length;
      if (known.length < 500) return entities;
    }
  }

  async #runBatch<T>(what: string, statement: Prepared, params: unknown[]): Promise<T[]> {
    try {
      return await this.#batchStatement<T>(statement, params);
    } catch (error) {
      throw classified(error, what);
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

  /** Queued for the next batch; settles with this entry's own outcome (see the top of this file). */
  async append(entry: JournalEntry, options?: AppendOptions): Promise<void> {
    const what = `append ${entry.persistenceKey}#${entry.sequenceNr}`;
    const fence = this.#fenceOf(entry.persistenceKey, what);
    const json = JSON.stringify(entry.data) ?? 'null';
    const shard = this.#shardOf(entry.persistenceKey);
    return new Promise<void>((resolve, reject) => {
      this.#queue.push({ entry, what, json, shard, fence, unlessCommand: options?.unlessCommand, resolve, reject });
      this.#schedule();
    });
  }

  /** The queue is written after the current tick, so everything appended within it joins one batch. */
  #schedule(): void {
    if (this.#scheduled || this.#inFlight >= this.#maxInFlight || this.#queue.length === 0) return;
    this.#scheduled = true;
    setImmediate(() => {
      this.#scheduled = false;
      this.#drain();
    });
  }

  #drain(): void {
    while (this.#queue.length > 0 && this.#inFlight < this.#maxInFlight) {
      const batch = this.#take();
      this.#inFlight++;
      const done = this.#write(batch).finally(() => {
        this.#inFlight--;
        this.#batches.delete(done);
        this.#schedule();
      });
      this.#batches.add(done);
    }
  }

  /**
   * The next batch, in arrival order, within the bounds. An entry at a position already in
   * the batch (two writers of one entity) waits for a later one, so each row's outcome can
   * be told from the rows written.
   */
  #take(): PendingAppend[] {
    const batch: PendingAppend[] = [];
    const rest: PendingAppend[] = [];
    const positions = new Set<string>();
    let bytes = 0;
    for (const p of this.#queue) {
      const position = `${p.entry.sequenceNr}#${p.entry.persistenceKey}`;
      const full = batch.length >= this.#maxRows || (batch.length > 0 && bytes + p.json.length > this.#maxBytes);
      if (full || positions.has(position)) { rest.push(p); continue; }
      positions.add(position);
      bytes += p.json.length;
      batch.push(p);
    }
    this.#queue = rest;
    return batch;
  }

  async #write(batch: PendingAppend[]): Promise<void> {
    let rows: BatchRow[];
    try {
      rows = await this.#insert(batch);
    } catch (error) {
      // A deadlock or serialization failure (with an epoch being taken) is a lost race: retriable.
      if (isRetriableConflict(error)) {
        for (const p of batch) p.reject(new StorageUnavailableError(`${p.what}: ${(error as Error).message}`, { cause: error }));
        return;
      }
      // Refused data (not an outage) fails the statement for all: each row alone finds the bad one.
      if (batch.length > 1 && !countsAsOutage(error) && hasSqlState(error)) {
        for (const p of batch) await this.#write([p]);
        return;
      }
      for (const p of batch) {
        p.reject(isUniqueViolation(error) ? new JournalConflictError(p.entry.persistenceKey, p.entry.sequenceNr) : classified(error, p.what));
      }
      return;
    }
    const byIndex = new Map(rows.map((r) => [Number(r.i), r]));
    batch.forEach((p, i) => {
      const row = byIndex.get(i);
      if (row?.written) p.resolve();
      else if (row?.fenced && p.fence) p.reject(this.#fence!.refused(p.fence.shard, p.fence.epoch, p.what));
      else if (row?.dup && p.unlessCommand !== undefined) p.reject(new DuplicateCommandError(p.entry.persistenceKey, p.unlessCommand));
      else if (row) p.reject(new JournalConflictError(p.entry.persistenceKey, p.entry.sequenceNr));
      else p.reject(new StorageUnavailableError(`${p.what}: the batch statement did not report this row`));
    });
  }

  async #insert(batch: PendingAppend[]): Promise<BatchRow[]> {
    this.#stats.statements++;
    this.#stats.appends += batch.length;
    this.#stats.largestBatch = Math.max(this.#stats.largestBatch, batch.length);
    // One jsonb parameter: the data goes in as it is (no second encoding), whatever the batch's size.
    const json = `[${batch.map((p, i) => `{"i":${i},"k":${JSON.stringify(p.entry.persistenceKey)},"s":${p.entry.sequenceNr},"d":${p.json},`
      + `"t":${JSON.stringify(p.entry.tags)},"c":${JSON.stringify(new Date(p.entry.createdAt).toISOString())},"sh":${p.shard ?? 'null'},`
      + `"ep":${p.fence?.epoch ?? 'null'},"cmd":${p.unlessCommand === undefined ? 'null' : JSON.stringify(p.unlessCommand)}}`).join(',')}]`;
    const rows = await this.#batchStatement<BatchRow>(BATCH_INSERT, [json]);
    return rows.map((r) => ({ i: Number(r.i), fenced: truthy(r.fenced), dup: truthy(r.dup), written: truthy(r.written) }));
  }

  async read(persistenceKey: string, afterSequenceNr: number, limit: number): Promise<JournalEntry[]> {
    const rows = await this.#run<JournalDbRow>(`read ${persistenceKey}`,
      'select persistence_key, sequence_nr, data, tags, created_at from journal ' +
      'where persistence_key = ? and sequence_nr > ? order by sequence_nr limit ?',
      [persistenceKey, afterSequenceNr, limit],
    );
    return rows.map(journalEntry);
  }

  /** Served by journal_command_idx (Migration0009CommandIds). */
  async findCommand(persistenceKey: string, commandId: string): Promise<JournalEntry | undefined> {
    const [row] = await this.#run<JournalDbRow>(`find command ${commandId} of ${persistenceKey}`,
      'select persistence_key, sequence_nr, data, tags, created_at from journal ' +
      "where persistence_key = ? and data->>'cmd' = ? order by sequence_nr limit 1",
      [persistenceKey, commandId],
    );
    return row && journalEntry(row);
  }

  async latestSnapshot(persistenceKey: string): Promise<SnapshotEntry | undefined> {
    const [row] = await this.#run<SnapshotDbRow>(`snapshot of ${persistenceKey}`,
      'select persistence_key, sequence_nr, data, created_at from snapshot where persistence_key = ?', [persistenceKey],
    );
    return row && snapshotEntry(row);
  }

  /** The snapshot and the entries after it (Journal.recover): reads that meet go in one statement (recovery-reads.ts). */
  recover(persistenceKey: string, limit: number): Promise<{ snapshot: SnapshotEntry | undefined; entries: JournalEntry[] }> {
    return this.#recoveries.recover(persistenceKey, limit);
  }

  /** How recovery reads were grouped (for tests). */
  get recoveryReadStats(): Readonly<RecoveryReadStats> {
    return this.#recoveries.stats;
  }

  /** Snapshots that meet go in one statement (snapshot-writes.ts); an older one never replaces a newer one. */
  async saveSnapshot(entry: SnapshotEntry): Promise<void> {
    const what = `save snapshot of ${entry.persistenceKey}`;
    return this.#snapshots.save(entry, what, this.#fenceOf(entry.persistenceKey, what));
  }

  /** How snapshot writes were grouped (for tests). */
  get snapshotWriteStats(): Readonly<SnapshotWriteStats> {
    return this.#snapshots.stats;
  }

  async ping(): Promise<void> {
    await this.#sql('select 1');
  }

  async close(): Promise<void> {
    // Appends already queued are written (or fail) first; none is left unsettled.
    while (this.#batches.size > 0 || this.#queue.length > 0) {
      if (this.#batches.size === 0) this.#drain();
      await Promise.allSettled([...this.#batches]);
    }
    await this.#snapshots.settled();
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

function isUniqueViolation(error: unknown): boolean {
  const e = error as { code?: string; cause?: { code?: string } };
  return e?.code === UNIQUE_VIOLATION || e?.cause?.code === UNIQUE_VIOLATION
    || /duplicate key|unique constraint/i.test(String((error as Error)?.message));
}
