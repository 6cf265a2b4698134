// The Journal conformance suite (journal.ts) against each implementation: in memory (the
// runtime's tests), PostgreSQL (cluster nodes) and PGlite (the embedded node, same adapter).
// The memory journal does not fence writes by epoch, so the fencing case runs on the
// PostgreSQL adapter only.

import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryJournal } from '../../adapters/memory/journal.ts';
import { preparedOn } from '../../adapters/postgres/prepared.ts';
import { PostgresJournal } from '../../adapters/postgres/journal.ts';
import { PostgresShardEpochs } from '../../adapters/postgres/shard-epochs.ts';
import { startEmbeddedPostgres } from '../../adapters/postgres/embedded.ts';
import { openOrm, type Orm } from '../../adapters/postgres/orm.ts';
import { freshDatabase } from '../helpers/services.ts';
import { journalConformance, type JournalImplementation } from './journal.ts';

journalConformance('memory', {
  async make() {
    const journal = new MemoryJournal();
    return { journal, close: () => journal.close() };
  },
});

/**
 * One database per implementation for the whole file (cases use keys of their own); each
 * journal gets an ORM of its own, which its close() closes, as a node's does.
 */
function postgresAdapter(open: () => Promise<{ url: string; poolMax: number }>, embedded = false): JournalImplementation {
  // As the node runs it: the embedded node's journal prepares its batch statements.
  const options = (o: Orm) => (embedded ? { prepared: preparedOn(o) } : {});
  // The schema is brought up once, before the cases' ORMs open concurrently.
  let migrated: Promise<void> | undefined;
  const orm = async (): Promise<Orm> => {
    const db = await open();
    await (migrated ??= openOrm({ url: db.url, poolMax: 1 }).then((o) => o.close(true)));
    return openOrm({ url: db.url, poolMax: db.poolMax });
  };
  return {
    async make() {
      const o = await orm();
      const journal = new PostgresJournal(o, undefined, undefined, options(o));
      return { journal, close: () => journal.close() };
    },
    async makeFenced(placement, fence) {
      const o = await orm();
      const journal = new PostgresJournal(o, placement, fence, options(o));
      return { journal, epochs: new PostgresShardEpochs(o), close: () => journal.close() };
    },
  };
}

let pgDb: Promise<Awaited<ReturnType<typeof freshDatabase>>> | undefined;
journalConformance('PostgreSQL', postgresAdapter(async () => ({ url: (await (pgDb ??= freshDatabase())).url, poolMax: 4 })));

// PGlite serves one connection at a time: the cases' ORMs (pool of one each) take turns.
let embedded: Promise<{ url: string; stop(): Promise<void>; dir: string }> | undefined;
journalConformance('PGlite', postgresAdapter(async () => {
  embedded ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dispatch-journal-conformance-'));
    const db = await startEmbeddedPostgres({ dataDir: join(dir, 'pg'), openTimeoutMs: 300_000 });
    return { url: db.url, stop: () => db.stop(), dir };
  })();
  return { url: (await embedded).url, poolMax: 1 };
}, true));

test.after.always(async () => {
  if (pgDb) await (await pgDb).drop();
  if (embedded) {
    const db = await embedded;
    await db.stop();
    rmSync(db.dir, { recursive: true, force: true });
  }
});
