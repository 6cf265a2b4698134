// Storage for a node: PostgreSQL at DATABASE_URL, or the embedded PGlite under
// DATA_DIR. Both go through the same MikroORM setup and migrations.

import { join } from 'node:path';
import type { Config } from '../config/index.ts';
import type { Logger } from '../runtime/logger.ts';
import type { Journal, ReminderStore } from '../runtime/ports.ts';
import { startEmbeddedPostgres } from './postgres/embedded.ts';
import { PostgresJournal } from './postgres/journal.ts';
import { openOrm, type Orm } from './postgres/orm.ts';
import { PostgresReminderStore } from './postgres/reminders.ts';
import { countsAsOutage, guard, type Guard } from './resilience.ts';

export interface Storage {
  readonly orm: Orm;
  readonly journal: Journal;
  readonly reminders: ReminderStore;
  readonly embedded: boolean;
  /** One circuit for the one database, shared by every request-path store. */
  readonly sqlGuard: Guard;
  close(): Promise<void>;
}

export async function openStorage(config: Config, logger: Logger): Promise<Storage> {
  const started = performance.now();
  const embedded = config.storage.databaseUrl === undefined
    ? await startEmbeddedPostgres({ dataDir: join(config.storage.dataDir, 'pg') })
    : undefined;
  const url = embedded?.url ?? config.storage.databaseUrl!;
  let orm: Orm;
  try {
    orm = await openOrm({ url, poolMax: embedded ? 1 : 10 });
  } catch (error) {
    await embedded?.stop();
    throw new Error(`cannot open PostgreSQL${embedded ? ' (embedded)' : ''}: ${(error as Error).message}`, { cause: error });
  }
  logger.info({ embedded: Boolean(embedded), ms: Math.round(performance.now() - started) }, 'storage ready');
  const journal = new PostgresJournal(orm);
  return {
    orm, journal, reminders: new PostgresReminderStore(orm), embedded: Boolean(embedded),
    // Shared by every user: only errors saying the server is down or unreachable move it, never one request's bad input.
    sqlGuard: guard({ name: 'PostgreSQL', countsAsOutage }),
    async close() {
      await journal.close();
      await embedded?.stop();
    },
  };
}
