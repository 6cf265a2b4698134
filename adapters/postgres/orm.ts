// Opens MikroORM on PostgreSQL and brings the schema up to date.

import type { Duplex } from 'node:stream';
import { MikroORM } from '@mikro-orm/postgresql';
import { Migrator } from '@mikro-orm/migrations';
import { entities } from './entities.ts';
import { migrations } from './migrations.ts';
import { sleep } from '../../runtime/backoff.ts';

export type Orm = MikroORM;

/** A statement runner on the ORM's connection: what each store's raw SQL goes through. */
export type Sql = <T>(sql: string, params?: unknown[]) => Promise<T[]>;

export function sqlOn(orm: Orm): Sql {
  return <T>(sql: string, params: unknown[] = []) => orm.em.getConnection().execute(sql, params) as Promise<T[]>;
}

export interface OrmOptions {
  readonly url: string;
  /** Connections in the pool; PGlite serves one at a time, so the embedded node uses 1. */
  readonly poolMax?: number;
  readonly debug?: boolean;
  /**
   * PostgreSQL's statement_timeout on every connection of the pool (a startup parameter,
   * so it outlives `reset all`): a statement running longer fails with 57014 instead of
   * holding its connection for good. Default 30 s; 0 turns it off. PGlite ignores it (no
   * timers inside WebAssembly): embedded.ts enforces the same bound for the embedded node.
   */
  readonly statementTimeoutMs?: number;
  /** Each connection's socket, made by this instead of a TCP connection to `url` (pg's `stream` option): the embedded node's own. */
  readonly stream?: () => Duplex;
}

export const DEFAULT_STATEMENT_TIMEOUT_MS = 30_000;

export async function openOrm(options: OrmOptions): Promise<Orm> {
  const orm = await MikroORM.init({
    clientUrl: options.url,
    entities,
    extensions: [Migrator],
    migrations: { migrationsList: migrations, transactional: true, allOrNothing: true, snapshot: false, silent: true },
    pool: { min: 0, max: options.poolMax ?? 10 },
    // Passed to every pg Client the pool makes (pg sends it in the startup packet). A
    // transaction left idle as long (its node paused, cut off or dead) is ended by the server:
    // an open transaction anywhere on the server holds every projection's cut-off back
    // (tx < pg_snapshot_xmin), and without this one would until TCP noticed, hours later.
    driverOptions: {
      statement_timeout: options.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS,
      idle_in_transaction_session_timeout: options.statementTimeoutMs ?? DEFAULT_STATEMENT_TIMEOUT_MS,
      ...(options.stream ? { stream: options.stream } : {}),
    },
    debug: options.debug ?? false,
    ensureDatabase: false,
    discovery: { warnWhenNoEntities: false },
  });
  try {
    await migrate(orm);
  } catch (error) {
    await orm.close(true);
    throw error;
  }
  return orm;
}

/**
 * Nodes of a new cluster start together and race to create the schema; the loser's
 * transaction fails on PostgreSQL's catalog (duplicate type or table). Trying again
 * then finds the winner's work done, so a few retries settle it.
 */
async function migrate(orm: Orm): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      // A schema change may rightly run longer than any request's statement (an index on a
      // big table): the migrations' one transaction runs without the pool's statement_timeout.
      // (getPending first: it sets the migrator up on a connection of its own, which must
      // not be asked for while the transaction holds the embedded node's only one.)
      if ((await orm.migrator.getPending()).length === 0) return;
      const connection = orm.em.getConnection();
      await connection.transactional(async (trx) => {
        await connection.execute('set local statement_timeout = 0', [], 'run', trx);
        await orm.migrator.up({ transaction: trx });
      });
      return;
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (attempt >= 5 || (code !== '23505' && code !== '42P07')) throw error;
      await sleep(100 * attempt + Math.random() * 100);
    }
  }
}
