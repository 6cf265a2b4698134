// Opens MikroORM on PostgreSQL and brings the schema up to date.

import { MikroORM } from '@mikro-orm/postgresql';
import { Migrator } from '@mikro-orm/migrations';
import { entities } from './entities.ts';
import { migrations } from './migrations.ts';

export type Orm = MikroORM;

export interface OrmOptions {
  readonly url: string;
  /** Connections in the pool; PGlite serves one at a time, so the embedded node uses 1. */
  readonly poolMax?: number;
  readonly debug?: boolean;
}

export async function openOrm(options: OrmOptions): Promise<Orm> {
  const orm = await MikroORM.init({
    clientUrl: options.url,
    entities,
    extensions: [Migrator],
    migrations: { migrationsList: migrations, transactional: true, allOrNothing: true, snapshot: false, silent: true },
    pool: { min: 0, max: options.poolMax ?? 10 },
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
      await orm.migrator.up();
      return;
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (attempt >= 5 || (code !== '23505' && code !== '42P07')) throw error;
      await new Promise((r) => setTimeout(r, 100 * attempt + Math.random() * 100));
    }
  }
}
