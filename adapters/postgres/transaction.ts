// One transaction on one pooled connection, released whatever happens.
//
// MikroORM 7 runs transactions through kysely's ControlledTransaction, which releases its
// pooled connection only after a successful COMMIT or ROLLBACK (kysely 0.29.6): when the
// connection dies under a BEGIN, or under a COMMIT and then the ROLLBACK, the connection
// is never given back. A 5 s database outage leaked one per projection loop; the pool's
// `end()` then waited for them forever, and enough of them would drain the pool. Here the
// connection comes from the same pg pool and goes back in `finally`; one whose ROLLBACK
// failed is destroyed, since nobody knows what state it is in.

import type pg from 'pg';
import type { Orm } from './orm.ts';

export type Sql = <T = Record<string, unknown>>(sql: string, params?: readonly unknown[]) => Promise<T[]>;

export async function inTransaction<T>(orm: Orm, work: (sql: Sql) => Promise<T>): Promise<T> {
  const pool = await orm.em.getConnection().getNativeClient() as unknown as pg.Pool;
  const platform = orm.em.getPlatform();
  const client = await pool.connect();
  // The same `?` placeholders and inlined parameters as MikroORM's own execute.
  const sql: Sql = async (q, params = []) => (await client.query(platform.formatQuery(q, params as unknown[]))).rows;
  let broken: Error | undefined;
  try {
    await client.query('begin');
    const result = await work(sql);
    await client.query('commit');
    return result;
  } catch (error) {
    await client.query('rollback').catch((rollbackError: Error) => { broken = rollbackError; });
    throw error;
  } finally {
    client.release(broken);
  }
}
