// Occupied cells of a cluster, on PostgreSQL: the cells that ever held a driver,
// one row each in `occupied_cell`, written by the node that owns the cell when the
// cell publishes `cell.occupied` and read by every node's searches.
//
// Staleness. The set only grows, so a cell known occupied is cached for good. A
// cell the table did not hold is cached as empty for `absentTtlMs` (2 s), then
// asked again: a driver going online in a never-used cell is therefore found by
// the owning node at once (its own mark is in memory) and by the other nodes
// within absentTtlMs plus the write (a few milliseconds; retried with backoff
// while PostgreSQL is down, so a mark is never lost while the node runs). When a
// lookup fails the search asks every cell it was given (fail open): slower, never
// hiding a driver, and still bounded by SEARCH_MAX_CELLS.

import type { OccupiedCells } from '../../runtime/ports.ts';
import type { Guard } from '../resilience.ts';
import type { Orm } from './orm.ts';

export interface PostgresOccupiedCellsOptions {
  /** How long a cell the table did not hold is believed empty before it is looked up again. */
  readonly absentTtlMs?: number;
  readonly now?: () => number;
  readonly onError?: (error: unknown, context: string) => void;
}

/** Cells per statement, well under PostgreSQL's bind-parameter limit. */
const BATCH = 1_000;
/** Empty-cell entries kept before expired ones are swept. */
const ABSENT_SWEEP_AT = 50_000;

export class PostgresOccupiedCells implements OccupiedCells {
  readonly #orm: Orm;
  readonly #guard: Guard;
  readonly #absentTtlMs: number;
  readonly #now: () => number;
  readonly #onError: (error: unknown, context: string) => void;
  readonly #known = new Set<string>();
  /** Cell -> when the table last said it is not there. */
  readonly #absent = new Map<string, number>();
  /** Marks not yet written. */
  readonly #pending = new Set<string>();
  #flushing: Promise<void> | undefined;
  #retry: NodeJS.Timeout | undefined;
  #retryMs = 0;
  #closed = false;
  #lookups = 0;

  constructor(orm: Orm, g: Guard, options: PostgresOccupiedCellsOptions = {}) {
    this.#orm = orm;
    this.#guard = g;
    this.#absentTtlMs = options.absentTtlMs ?? 2_000;
    this.#now = options.now ?? Date.now;
    this.#onError = options.onError ?? (() => undefined);
  }

  #sql<T>(sql: string, params: unknown[]): Promise<T[]> {
    return this.#guard.run(() => this.#orm.em.getConnection().execute(sql, params) as Promise<T[]>);
  }

  mark(cell: string): void {
    // Known already (looked up, written or being written): a repeat mark changes nothing.
    if (this.#known.has(cell)) return;
    this.#known.add(cell);
    this.#absent.delete(cell);
    this.#pending.add(cell);
    this.#flush();
  }

  /** Lookups sent to PostgreSQL so far (for tests and diagnostics). */
  get lookups(): number {
    return this.#lookups;
  }

  async filter(cells: readonly string[]): Promise<readonly string[]> {
    const now = this.#now();
    const believedEmpty = (c: string) => { const at = this.#absent.get(c); return at !== undefined && now - at < this.#absentTtlMs; };
    const unknown = cells.filter((c) => !this.#known.has(c) && !believedEmpty(c));
    if (unknown.length > 0) {
      try {
        for (let i = 0; i < unknown.length; i += BATCH) {
          const batch = unknown.slice(i, i + BATCH);
          this.#lookups++;
          const rows = await this.#sql<{ cell: string }>(
            `select cell from occupied_cell where cell in (${batch.map(() => '?').join(',')})`, batch);
          for (const r of rows) { this.#known.add(r.cell); this.#absent.delete(r.cell); }
          for (const c of batch) if (!this.#known.has(c)) this.#absent.set(c, now);
        }
      } catch (error) {
        this.#onError(error, 'occupied cells lookup failed; asking every cell');
        return cells;
      }
      if (this.#absent.size > ABSENT_SWEEP_AT) {
        for (const [c, at] of this.#absent) if (now - at >= this.#absentTtlMs) this.#absent.delete(c);
        // Still too many fresh ones: forgetting empty answers is always safe (they are asked again).
        if (this.#absent.size > ABSENT_SWEEP_AT) this.#absent.clear();
      }
    }
    return cells.filter((c) => this.#known.has(c));
  }

  /** Starts writing pending marks unless a write or a retry is already under way. */
  #flush(): void {
    if (this.#flushing || this.#retry) return;
    this.#flushing = this.#write().finally(() => {
      this.#flushing = undefined;
      // Marks that arrived as the last write finished.
      if (this.#pending.size > 0 && !this.#retry && !this.#closed) this.#flush();
    });
  }

  /** Writes pending marks; on failure keeps them and tries again with backoff (0.5 s doubling to 30 s). */
  async #write(): Promise<void> {
    while (this.#pending.size > 0) {
      const batch = [...this.#pending].slice(0, BATCH);
      try {
        await this.#sql(`insert into occupied_cell (cell) values ${batch.map(() => '(?)').join(',')} on conflict do nothing`, batch);
        for (const c of batch) this.#pending.delete(c);
        this.#retryMs = 0;
      } catch (error) {
        this.#onError(error, `could not record ${this.#pending.size} occupied cell(s); retrying`);
        if (!this.#closed) {
          this.#retryMs = Math.min(30_000, Math.max(500, this.#retryMs * 2));
          this.#retry = setTimeout(() => { this.#retry = undefined; this.#flush(); }, this.#retryMs);
          this.#retry.unref();
        }
        return;
      }
    }
  }

  /** Marks not yet in PostgreSQL. */
  get pending(): number {
    return this.#pending.size;
  }

  async close(): Promise<void> {
    this.#closed = true;
    if (this.#retry) { clearTimeout(this.#retry); this.#retry = undefined; }
    await this.#flushing;
    // One last attempt for what is still pending (a failed write left it there).
    if (this.#pending.size > 0) await this.#write();
  }
}
