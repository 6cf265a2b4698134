// Named prepared statements for the journal's batch statements on the embedded database
// (and the same statements with bound, unnamed parameters on a server: boundOn).
// Each batch statement (an append, a snapshot upsert, a recovery read) is the same text
// with a new jsonb parameter, but MikroORM's execute() inlines its parameters, so
// PostgreSQL parsed and planned every one anew. Prepared once per connection (pg keeps a
// connection's named statements and prepares them again on a new one), PGlite ran the
// journal's append in 0.99 ms against 1.70 ms inlined (probe /work/probe/prep.ts, one row
// a batch, warm). Only on the embedded node: a server behind a transaction-mode
// connection pooler (PgBouncer before 1.21) loses named statements between transactions.

import type pg from 'pg';
import type { Orm, Sql } from './orm.ts';
import { hasSqlState } from '../resilience.ts';

/** A statement run many times: `sql` with `?` placeholders (MikroORM's), `text` the same numbered ($1, $2, ...). */
export interface Prepared {
  readonly name: string;
  readonly sql: string;
  readonly text: string;
}

export type RunPrepared = <T>(statement: Prepared, values: unknown[]) => Promise<T[]>;

/** `sql` as a named statement (its `?` placeholders numbered; it holds no other `?`). */
export function prepared(name: string, sql: string): Prepared {
  let n = 0;
  return { name, sql, text: sql.replace(/\?/g, () => `$${++n}`) };
}

/** A store's batch statements: prepared when given a runner for them, else inlined through `sql` (MikroORM's). */
export function batchStatements(sql: Sql, runPrepared: RunPrepared | undefined): RunPrepared {
  return runPrepared ?? (<T>(statement: Prepared, values: unknown[]) => sql<T>(statement.sql, values));
}

/** Runs prepared statements on the ORM's own pool (its one connection on the embedded node). */
export function preparedOn(orm: Orm): RunPrepared {
  return runnerOn(orm, runOn);
}

/**
 * Runs the batch statements with their values bound as parameters, unnamed (the server's):
 * inlined by MikroORM, each statement's text was scanned for its placeholders and its jsonb
 * value copied a character at a time to escape it (formatQuery, escapeLiteral). In a one-node
 * profile of the cluster bench's closed loop MikroORM's share fell from 20 to 3.5 µs per
 * dispatch command and pg's own rose by 11 (it now encodes the parameter): a few µs net, more
 * with three nodes, whose smaller batches make more statements per command. Unnamed, nothing
 * outlives the statement: safe behind a transaction-mode pooler.
 */
export function boundOn(orm: Orm): RunPrepared {
  return runnerOn(orm, (client, s, values) => client.query({ text: s.text, values }));
}

function runnerOn(orm: Orm, run: (client: pg.PoolClient, s: Prepared, values: unknown[]) => Promise<pg.QueryResult>): RunPrepared {
  let pool: Promise<pg.Pool> | undefined;
  return async <T>(statement: Prepared, values: unknown[]) => {
    pool ??= orm.em.getConnection().getNativeClient() as Promise<pg.Pool>;
    const client = await (await pool).connect();
    let failed: unknown;
    try {
      return (await run(client, statement, values)).rows as T[];
    } catch (error) {
      failed = error;
      throw error;
    } finally {
      // A connection that failed (not a statement PostgreSQL refused) is not handed out again.
      client.release(failed !== undefined && !hasSqlState(failed) ? (failed as Error) : undefined);
    }
  };
}

/**
 * PGlite is one session however many connections come and go, so it keeps a statement a
 * connection before this one prepared; and a failed execution may leave the driver not
 * knowing the statement was prepared. Told it exists already (42P05), the driver is told
 * so and runs it again.
 */
async function runOn(client: pg.PoolClient, s: Prepared, values: unknown[]): Promise<pg.QueryResult> {
  try {
    return await client.query({ name: s.name, text: s.text, values });
  } catch (error) {
    if ((error as { code?: unknown }).code !== DUPLICATE_PREPARED_STATEMENT) throw error;
    (client as unknown as { connection: { parsedStatements: Record<string, string> } }).connection.parsedStatements[s.name] = s.text;
    return client.query({ name: s.name, text: s.text, values });
  }
}

const DUPLICATE_PREPARED_STATEMENT = '42P05';
