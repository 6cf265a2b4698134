// Recovery reads of the PostgreSQL journal, batched: every entity activated on a node
// reads its snapshot and the journal after it (Journal.recover), one statement each. A
// node activates many at once (every booking created is a new entity), and on the
// embedded node those statements queue on its one connection, each a round trip to the
// database's thread, ahead of the commands' own writes. So reads that arrive while one
// is running wait and go together: one statement for the lot, each key's snapshot and
// up to `limit` journal rows after it (a lateral read per key, by the primary key).
// At most one batch runs at a time (batch-queue.ts).

import type { JournalEntry, SnapshotEntry } from '../../runtime/ports.ts';
import { prepared, type Prepared } from './prepared.ts';
import { BatchQueue } from './batch-queue.ts';
import { journalEntry, snapshotEntry, truthy, type JournalDbRow } from './rows.ts';

export interface Recovered {
  readonly snapshot: SnapshotEntry | undefined;
  readonly entries: JournalEntry[];
}

/** Runs one statement, failing in the runtime's error classes. */
export type RunSql = <T>(what: string, statement: Prepared, params: unknown[]) => Promise<T[]>;

export interface RecoveryReadStats {
  /** recover() calls answered. */
  reads: number;
  /** Statements run for them. */
  statements: number;
}

interface Pending {
  readonly key: string;
  readonly limit: number;
  resolve(value: Recovered): void;
  reject(error: unknown): void;
}

interface Row extends JournalDbRow {
  snap: unknown;
}

/** Keys in one statement at most. */
const MAX_KEYS = 200;

const RECOVER_MANY = prepared('dispatch_recover', `with k as (select distinct key from jsonb_array_elements_text(?::jsonb) as k(key)),
  s as (select persistence_key, sequence_nr, data, created_at from snapshot where persistence_key in (select key from k))
  select true as snap, persistence_key, sequence_nr, data, '[]'::jsonb as tags, created_at from s
  union all
  select false, j.persistence_key, j.sequence_nr, j.data, j.tags, j.created_at from k cross join lateral (
    select persistence_key, sequence_nr, data, tags, created_at from journal
    where persistence_key = k.key and sequence_nr > coalesce((select sequence_nr from s where s.persistence_key = k.key), 0)
    order by sequence_nr limit ?) j`);

export class RecoveryReads {
  readonly #run: RunSql;
  readonly #queue = new BatchQueue<Pending>({ take: sameLimit, run: (batch) => this.#read(batch) });
  readonly #stats: RecoveryReadStats = { reads: 0, statements: 0 };

  constructor(run: RunSql) {
    this.#run = run;
  }

  get stats(): Readonly<RecoveryReadStats> {
    return { ...this.#stats };
  }

  recover(key: string, limit: number): Promise<Recovered> {
    return new Promise((resolve, reject) => this.#queue.push({ key, limit, resolve, reject }));
  }

  async #read(batch: readonly Pending[]): Promise<void> {
    const keys = [...new Set(batch.map((p) => p.key))];
    this.#stats.statements++;
    let rows: Row[];
    try {
      const what = keys.length === 1 ? `recover ${keys[0]}` : `recover ${keys.length} entities (${keys[0]}, …)`;
      rows = await this.#run<Row>(what, RECOVER_MANY, [JSON.stringify(keys), batch[0]!.limit]);
    } catch (error) {
      for (const p of batch) p.reject(error);
      return;
    }
    const byKey = group(rows);
    this.#stats.reads += batch.length;
    for (const p of batch) p.resolve(recovered(byKey.get(p.key)));
  }
}

/** The oldest reads with the first one's limit, up to MAX_KEYS distinct keys (a key asked twice shares the read). */
function sameLimit(queue: readonly Pending[]): { batch: Pending[]; rest: Pending[] } {
  const limit = queue[0]!.limit;
  const keys = new Set<string>();
  const batch: Pending[] = [];
  const rest: Pending[] = [];
  for (const p of queue) {
    const fits = p.limit === limit && (keys.has(p.key) || keys.size < MAX_KEYS);
    if (!fits) { rest.push(p); continue; }
    keys.add(p.key);
    batch.push(p);
  }
  return { batch, rest };
}

function group(rows: readonly Row[]): Map<string, Row[]> {
  const byKey = new Map<string, Row[]>();
  for (const r of rows) {
    const list = byKey.get(r.persistence_key);
    if (list) list.push(r); else byKey.set(r.persistence_key, [r]);
  }
  return byKey;
}

/** One key's rows as recover() answers them (each caller its own objects). */
function recovered(rows: readonly Row[] = []): Recovered {
  const snap = rows.find((r) => truthy(r.snap));
  return {
    snapshot: snap && snapshotEntry(snap),
    entries: rows.filter((r) => !truthy(r.snap)).map(journalEntry).sort((a, b) => a.sequenceNr - b.sequenceNr),
  };
}
