// Storage for a node: PostgreSQL at DATABASE_URL, or the embedded PGlite under
// DATA_DIR. Both go through the same MikroORM setup and migrations.

import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../config/index.ts';
import type { Logger } from '../runtime/logger.ts';
import type { Journal, ReminderStore, DeadLetterStore } from '../runtime/ports.ts';
import { DependencyUnreachableError } from '../runtime/errors.ts';
import { EmbeddedDatabaseError, startEmbeddedPostgres } from './postgres/embedded.ts';
import { PostgresJournal } from './postgres/journal.ts';
import { openOrm, type Orm } from './postgres/orm.ts';
import { boundOn, preparedOn } from './postgres/prepared.ts';
import { PostgresReminderStore } from './postgres/reminders.ts';
import { PostgresDeadLetterStore } from './postgres/dead-letters.ts';
import { PostgresShardEpochs } from './postgres/shard-epochs.ts';
import { ShardFences } from '../runtime/fencing.ts';
import { countsAsOutage, guard, type Guard } from './resilience.ts';

export interface Storage {
  readonly orm: Orm;
  readonly journal: Journal;
  readonly reminders: ReminderStore;
  readonly deadLetters: DeadLetterStore;
  /**
   * The same dead letters for operators, on whichever node serves them: not fenced (the
   * put-back after a failed retry is an operator's write, not a shard owner's).
   */
  readonly operatorDeadLetters: DeadLetterStore;
  /**
   * The epochs this node holds for its shards (runtime/fencing.ts): the region fills it as
   * shards are gained; journal, snapshot, reminder, dead-letter and projection-offset writes carry them.
   */
  readonly fences: ShardFences;
  readonly embedded: boolean;
  /**
   * Gives journal rows from before per-shard projections their shard, in the background:
   * started once the node serves, since a locked or long journal must not hold up its start.
   */
  startBackfill(): void;
  /** One circuit for the one database, shared by every request-path store. */
  readonly sqlGuard: Guard;
  /**
   * Why storage cannot serve right now, when this process knows without asking it (the
   * embedded database is restarting after a stuck statement), in words fit for /ready.
   */
  readonly problem?: () => string | undefined;
  close(): Promise<void>;
}

/** host:port of a database URL, for logs (never its credentials). */
function addressOf(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname || u.searchParams.get('host') || 'localhost'}:${u.port || 5432}`;
  } catch {
    return 'DATABASE_URL';
  }
}

/** An embedded node's stop gives statements this long to finish before the database is stopped under them. */
const EMBEDDED_CLOSE_GRACE_MS = 5_000;

export async function openStorage(config: Config, logger: Logger): Promise<Storage> {
  const started = performance.now();
  // PGlite runs in a worker thread, watched: it must open within a bound, and a statement
  // stuck in it is ended by restarting it (see embedded.ts). Failures there are one line.
  const embeddedDir = join(config.storage.dataDir, 'pg');
  const embedded = config.storage.databaseUrl === undefined
    ? await startEmbeddedPostgres({
      dataDir: embeddedDir, logger, statementTimeoutMs: config.storage.statementTimeoutMs,
      openTimeoutMs: config.storage.embeddedOpenTimeoutMs,
    })
    : undefined;
  const url = embedded?.url ?? config.storage.databaseUrl!;
  let orm: Orm;
  try {
    orm = await openOrm({
      url, poolMax: embedded ? 1 : 10, statementTimeoutMs: config.storage.statementTimeoutMs,
      // The node's own connection needs no loopback socket: it is relayed in-process (in-process-socket.ts).
      ...(embedded ? { stream: () => embedded.connect() } : {}),
    });
  } catch (error) {
    // The database was restarted under the migrations: a statement was stuck in it.
    const stuck = embedded && embedded.restarts() > 0;
    await embedded?.stop();
    if (error instanceof EmbeddedDatabaseError) throw error;
    // A server that cannot be reached is worth waiting for; one that answers with a refusal is not.
    if (!embedded && countsAsOutage(error)) throw new DependencyUnreachableError('PostgreSQL', addressOf(url), error);
    if (stuck) {
      throw new EmbeddedDatabaseError(
        `embedded database in ${embeddedDir} did not answer while its schema was brought up to date (a statement was stuck): ` +
        'it may be damaged; move it aside or restore a backup',
        { cause: error },
      );
    }
    throw new Error(`cannot open PostgreSQL${embedded ? ' (embedded)' : ''}: ${(error as Error).message}`, { cause: error });
  }
  logger.info({ embedded: Boolean(embedded), ms: Math.round(performance.now() - started) }, 'storage ready');
  const fences = new ShardFences(new PostgresShardEpochs(orm));
  // The embedded database parses and plans in WebAssembly: its batch statements are prepared once (prepared.ts);
  // a server's take their values as bound parameters, not inlined by MikroORM (boundOn).
  const batchStatements = { prepared: embedded ? preparedOn(orm) : boundOn(orm) };
  const journal = new PostgresJournal(orm, { shards: config.cluster.shards, placementRes: config.cluster.placementRes }, fences, batchStatements);
  let backfill: { stop(): void } | undefined;
  return {
    orm, journal, reminders: new PostgresReminderStore(orm, fences, batchStatements), deadLetters: new PostgresDeadLetterStore(orm, fences), fences,
    operatorDeadLetters: new PostgresDeadLetterStore(orm),
    embedded: Boolean(embedded),
    // Shared by every user: only errors saying the server is down or unreachable move it, never one request's bad input.
    sqlGuard: guard({ name: 'PostgreSQL', countsAsOutage }),
    problem: () => embedded?.problem(),
    startBackfill() {
      backfill ??= backfillInBackground(journal, logger);
    },
    async close() {
      // Not awaited: a statement of it stuck in the database ends when the database does.
      backfill?.stop();
      const closing = journal.close();
      if (embedded) {
        // The pool's close waits for the statement in flight; one stuck in the embedded
        // database would hold it until its timeout: after a grace, stopping the database ends it.
        await Promise.race([closing.catch(() => undefined), sleep(EMBEDDED_CLOSE_GRACE_MS, undefined, { ref: false })]);
        await embedded.stop();
      }
      await closing;
    },
  };
}

/**
 * Journal rows from before per-shard projections get their shard (journal.ts
 * backfillShards) while the node serves: a journal locked by a stuck transaction, or a
 * long history, must not keep the node from starting (nor, embedded, hold its one
 * connection before it has started). Until then those rows wait to be
 * projected; a failed attempt is logged and tried again.
 */
function backfillInBackground(journal: PostgresJournal, logger: Logger, retryMs = 10_000): { stop(): void } {
  let stopped = false;
  const wake = new AbortController();
  void (async () => {
    while (!stopped) {
      try {
        const entities = await journal.backfillShards();
        if (entities > 0) logger.info({ entities }, 'journal rows from before per-shard projections now carry their shard');
        return;
      } catch (error) {
        if (stopped) return;
        logger.warn({ err: error }, 'giving journal rows their shard failed; trying again');
        await sleep(retryMs, undefined, { signal: wake.signal }).catch(() => undefined);
      }
    }
  })();
  return {
    stop() {
      stopped = true;
      wake.abort();
    },
  };
}
