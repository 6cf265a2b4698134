// Group commit of the PostgreSQL journal (adapters/postgres/journal.ts), on real PostgreSQL
// and on PGlite (the embedded node's database, same adapter): appends of many entities made
// within one tick are written by one statement, and each caller still gets its own outcome.
// A taken position, a fenced shard, a command journaled already fail only their own callers;
// a connection lost mid-batch fails the batch retriably and leaves none of it behind.

import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { openOrm, type Orm } from '../adapters/postgres/orm.ts';
import { PostgresJournal, type JournalOptions } from '../adapters/postgres/journal.ts';
import { boundOn, preparedOn } from '../adapters/postgres/prepared.ts';
import { openStorage } from '../adapters/storage.ts';
import { loadConfig } from '../config/index.ts';
import { createLogger } from '../runtime/logger.ts';
import { PostgresShardEpochs } from '../adapters/postgres/shard-epochs.ts';
import { PostgresReminderStore } from '../adapters/postgres/reminders.ts';
import { JournalPersistenceEngine } from '../runtime/persistence-engine.ts';
import { startEmbeddedPostgres } from '../adapters/postgres/embedded.ts';
import { DuplicateCommandError, JournalConflictError, ShardFencedError, StorageUnavailableError, classify } from '../runtime/errors.ts';
import { shardOf, type Placement } from '../runtime/entity.ts';
import type { Epoch, JournalEntry, ShardId, WriteFence } from '../runtime/ports.ts';
import { faultProxy } from './helpers/fault-proxy.ts';
import { freshDatabase } from './helpers/services.ts';

const PLACEMENT: Placement = { shards: 4, placementRes: 4 };
const key = (id: string) => `counter:${id}`;
const shardOfId = (id: string) => shardOf({ kind: 'counter', id }, PLACEMENT);

const entry = (id: string, seq: number, cmd = `c-${id}-${seq}`): JournalEntry => ({
  persistenceKey: key(id), sequenceNr: seq, createdAt: Date.now(), tags: ['t'],
  data: { v: 1, cmd, at: 0, events: [{ type: 'added', n: seq }], tells: [], timersSet: [], timersCancelled: [] },
});

/** Why an append failed (undefined if it did not). */
const reason = (r: PromiseSettledResult<void> | undefined): unknown => (r?.status === 'rejected' ? r.reason : undefined);

/** A fence holding the given epoch of each shard. */
function fence(epochs: Map<ShardId, Epoch>): WriteFence & { refusals: number } {
  return {
    refusals: 0,
    epochOf: (shard) => epochs.get(shard),
    refused(shard, e, what) { this.refusals++; return new ShardFencedError(shard, e, what); },
  };
}

/** The journal's options as the backend's node sets them (the embedded node prepares its batch statements). */
type Backend = { name: string; open(t: ExecutionContext): Promise<{ orm: Orm; url: string; options: JournalOptions }> };

const postgres: Backend = {
  name: 'PostgreSQL',
  async open(t) {
    const db = await freshDatabase();
    const orm = await openOrm({ url: db.url, poolMax: 4 });
    t.teardown(async () => { await orm.close(true); await db.drop(); });
    return { orm, url: db.url, options: { prepared: boundOn(orm) } };
  },
};

const pglite: Backend = {
  name: 'PGlite',
  async open(t) {
    const dir = mkdtempSync(join(tmpdir(), 'dispatch-group-commit-'));
    const db = await startEmbeddedPostgres({ dataDir: join(dir, 'pg'), openTimeoutMs: 300_000 });
    const orm = await openOrm({ url: db.url, poolMax: 1 });
    t.teardown(async () => { await orm.close(true); await db.stop(); rmSync(dir, { recursive: true, force: true }); });
    return { orm, url: db.url, options: { prepared: preparedOn(orm) } };
  },
};

async function settle(appends: Promise<void>[]): Promise<PromiseSettledResult<void>[]> {
  return Promise.allSettled(appends);
}

test.serial('PostgreSQL: a node\'s journal binds its batch values as unnamed parameters, not inlined by MikroORM', async (t) => {
  const db = await freshDatabase();
  const dir = mkdtempSync(join(tmpdir(), 'dispatch-bound-'));
  const storage = await openStorage(loadConfig({ DATABASE_URL: db.url, DATA_DIR: dir }), createLogger({ level: 'silent', nodeId: 'n1' }));
  t.teardown(async () => { await storage.close(); await db.drop(); rmSync(dir, { recursive: true, force: true }); });
  const sent: unknown[] = [];
  const query = pg.Client.prototype.query;
  pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    sent.push(args[0]);
    return (query as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof query;
  try {
    // A recovery read: a batch statement the journal runs unfenced (appends need the shard's epoch).
    await storage.journal.recover!(key("it's"), 10);
  } finally {
    pg.Client.prototype.query = query;
  }
  const reads = sent.filter((q) => JSON.stringify(q).includes('jsonb_array_elements_text'));
  t.is(reads.length, 1);
  const q = reads[0] as { text?: string; name?: string; values?: unknown[] };
  t.is(typeof q, 'object', 'a query config with values, not a string with them inlined');
  t.true(q.text?.includes('$1::jsonb'), q.text);
  t.is(q.name, undefined, 'unnamed: nothing outlives the statement on a pooled connection');
  t.true(String(q.values?.[0]).includes("it's"), 'the value as it is, unescaped');
});

for (const backend of [postgres, pglite]) {
  test.serial(`${backend.name}: 300 appends of different entities in one tick are written by one statement`, async (t) => {
    const { orm, options } = await backend.open(t);
    const journal = new PostgresJournal(orm, PLACEMENT, undefined, options);
    const before = journal.groupCommitStats.statements;
    const results = await settle(Array.from({ length: 300 }, (_, i) => journal.append(entry(`e${i}`, 1))));
    t.deepEqual(results.filter((r) => r.status === 'rejected'), []);
    t.is(journal.groupCommitStats.statements - before, 1);
    t.is(journal.groupCommitStats.largestBatch, 300);
    const [one] = await journal.read(key('e7'), 0, 10);
    t.deepEqual(one?.data, entry('e7', 1).data);
    t.deepEqual(one?.tags, ['t']);
    // The shard is recorded for projections.
    const [row] = await orm.em.getConnection().execute('select shard from journal where persistence_key = ?', [key('e7')]);
    t.is(Number(row?.shard), shardOfId('e7'));
  });

  test.serial(`${backend.name}: batches are bounded in rows and bytes, and keep going while earlier ones are written`, async (t) => {
    const { orm, options } = await backend.open(t);
    const journal = new PostgresJournal(orm, PLACEMENT, undefined, { ...options, maxRows: 50, maxBytes: 64 * 1024, maxInFlight: 2 });
    const big = (id: string): JournalEntry => ({ ...entry(id, 1), data: { cmd: id, blob: 'x'.repeat(20_000) } });
    const results = await settle([
      ...Array.from({ length: 120 }, (_, i) => journal.append(entry(`r${i}`, 1))),
      ...Array.from({ length: 6 }, (_, i) => journal.append(big(`b${i}`))),
    ]);
    t.deepEqual(results.filter((r) => r.status === 'rejected'), []);
    const stats = journal.groupCommitStats;
    t.is(stats.largestBatch, 50);
    t.true(stats.statements >= 4 && stats.statements <= 8, `${stats.statements} statements`);
    t.is((await journal.read(key('b5'), 0, 10)).length, 1);
  });

  test.serial(`${backend.name}: a taken position fails only its own append; a command journaled already fails only its own`, async (t) => {
    const { orm, options } = await backend.open(t);
    const journal = new PostgresJournal(orm, PLACEMENT, undefined, options);
    await journal.append(entry('taken', 1));
    await journal.append(entry('seen', 1, 'cmd-once'));
    const statements = journal.groupCommitStats.statements;
    const [conflict, dup, ...rest] = await settle([
      journal.append(entry('taken', 1, 'another')),
      journal.append(entry('seen', 2, 'cmd-once'), { unlessCommand: 'cmd-once' }),
      journal.append(entry('seen-elsewhere', 1, 'cmd-once'), { unlessCommand: 'cmd-once' }), // another entity's id space
      journal.append(entry('seen', 2, 'cmd-new'), { unlessCommand: 'cmd-new' }),
      ...Array.from({ length: 20 }, (_, i) => journal.append(entry(`ok${i}`, 1))),
    ]);
    t.is(journal.groupCommitStats.statements - statements, 2, 'one batch, and one more for the second write of the same position');
    t.true(reason(conflict) instanceof JournalConflictError);
    t.true(reason(dup) instanceof DuplicateCommandError);
    t.deepEqual(rest.filter((r) => r.status === 'rejected'), []);
    t.deepEqual((await journal.read(key('taken'), 0, 10)).map((e) => (e.data as { cmd: string }).cmd), ['c-taken-1']);
    t.deepEqual((await journal.read(key('seen'), 0, 10)).map((e) => (e.data as { cmd: string }).cmd), ['cmd-once', 'cmd-new']);
    t.is((await journal.read(key('ok19'), 0, 10)).length, 1);
    t.is(classify(reason(conflict)).retriable, true);
  });

  test.serial(`${backend.name}: appends of a fenced shard fail alone, with the fencing error; other shards' land in the same statement`, async (t) => {
    const { orm, options } = await backend.open(t);
    const epochs = new PostgresShardEpochs(orm);
    await epochs.acquire([0, 1, 2, 3], 'old');
    const current = await epochs.acquire([0, 1, 2, 3], 'me'); // all at epoch 2
    const held = new Map(current);
    const ids = Array.from({ length: 40 }, (_, i) => `f${i}`);
    const lost = shardOfId(ids[0]!);
    held.set(lost, current.get(lost)! - 1); // this node missed the newer epoch of one shard
    const writes = fence(held);
    const journal = new PostgresJournal(orm, PLACEMENT, writes, options);
    const statements = journal.groupCommitStats.statements;
    const results = await settle(ids.map((id) => journal.append(entry(id, 1))));
    t.is(journal.groupCommitStats.statements - statements, 1);
    ids.forEach((id, i) => {
      const r = results[i]!;
      if (shardOfId(id) === lost) {
        t.true(r.status === 'rejected' && r.reason instanceof ShardFencedError && r.reason.shard === lost, id);
      } else {
        t.is(r.status, 'fulfilled', id);
      }
    });
    const fenced = ids.filter((id) => shardOfId(id) === lost);
    t.true(fenced.length > 0 && fenced.length < ids.length);
    t.is(writes.refusals, fenced.length);
    for (const id of ids) t.is((await journal.read(key(id), 0, 10)).length, shardOfId(id) === lost ? 0 : 1, id);
  });

  test.serial(`${backend.name}: data the database refuses fails only its own append`, async (t) => {
    const { orm, options } = await backend.open(t);
    const journal = new PostgresJournal(orm, PLACEMENT, undefined, options);
    const bad: JournalEntry = { ...entry('bad', 1), data: { cmd: 'bad', text: 'nul \u0000 byte' } };
    const [refused, ...rest] = await settle([journal.append(bad), ...Array.from({ length: 10 }, (_, i) => journal.append(entry(`g${i}`, 1)))]);
    t.true(reason(refused) !== undefined && classify(reason(refused)).retriable === false, 'refused data is a permanent failure');
    t.deepEqual(rest.filter((r) => r.status === 'rejected'), []);
    t.is((await journal.read(key('g9'), 0, 10)).length, 1);
  });

  test.serial(`${backend.name}: snapshots of one tick are written by one statement; a second of one entity waits, and an older never replaces a newer`, async (t) => {
    const { orm, options } = await backend.open(t);
    const journal = new PostgresJournal(orm, PLACEMENT, undefined, options);
    const snap = (id: string, seq: number) => ({ persistenceKey: key(id), sequenceNr: seq, data: { id, seq }, createdAt: Date.UTC(2026, 0, 1, 0, 0, seq) });
    const before = journal.snapshotWriteStats.statements;
    const results = await settle(Array.from({ length: 100 }, (_, i) => journal.saveSnapshot(snap(`s${i}`, 2))));
    t.deepEqual(results.filter((r) => r.status === 'rejected'), []);
    t.is(journal.snapshotWriteStats.statements - before, 1);
    t.deepEqual(await journal.latestSnapshot(key('s42')), snap('s42', 2));
    // In one tick: s1 newer then older (the older waits, then changes nothing); s2 older then newer.
    const mid = journal.snapshotWriteStats.statements;
    const again = await settle([journal.saveSnapshot(snap('s1', 5)), journal.saveSnapshot(snap('s1', 4)), journal.saveSnapshot(snap('s2', 3)), journal.saveSnapshot(snap('s2', 6))]);
    t.deepEqual(again.filter((r) => r.status === 'rejected'), []);
    t.is(journal.snapshotWriteStats.statements - mid, 2, 'the second of each entity in the next statement');
    t.is((await journal.latestSnapshot(key('s1')))?.sequenceNr, 5);
    t.is((await journal.latestSnapshot(key('s2')))?.sequenceNr, 6);
  });

  test.serial(`${backend.name}: snapshots of a fenced shard fail alone, with the fencing error; refused data fails alone`, async (t) => {
    const { orm, options } = await backend.open(t);
    const epochs = new PostgresShardEpochs(orm);
    const current = await epochs.acquire([0, 1, 2, 3], 'me');
    const held = new Map(current);
    const ids = Array.from({ length: 40 }, (_, i) => `sf${i}`);
    const lost = shardOfId(ids[0]!);
    held.set(lost, current.get(lost)! - 1);
    const journal = new PostgresJournal(orm, PLACEMENT, fence(held), options);
    const snap = (id: string, data: unknown = { id }) => ({ persistenceKey: key(id), sequenceNr: 1, data, createdAt: Date.now() });
    const before = journal.snapshotWriteStats.statements;
    const results = await settle(ids.map((id) => journal.saveSnapshot(snap(id))));
    t.is(journal.snapshotWriteStats.statements - before, 1);
    for (const [i, id] of ids.entries()) {
      const r = results[i]!;
      if (shardOfId(id) === lost) t.true(r.status === 'rejected' && r.reason instanceof ShardFencedError && r.reason.shard === lost, id);
      else t.is(r.status, 'fulfilled', id);
      t.is((await journal.latestSnapshot(key(id))) === undefined, shardOfId(id) === lost, id);
    }
    const unfenced = Array.from({ length: 40 }, (_, i) => `sg${i}`).filter((id) => shardOfId(id) !== lost).slice(0, 6);
    const [bad, ...good] = await settle([journal.saveSnapshot(snap(unfenced[0]!, { text: 'nul \u0000 byte' })), ...unfenced.slice(1).map((id) => journal.saveSnapshot(snap(id)))]);
    t.true(reason(bad) !== undefined && classify(reason(bad)).retriable === false, String(reason(bad)));
    t.deepEqual(good.filter((r) => r.status === 'rejected'), []);
  });

  test.serial(`${backend.name}: recovery reads that meet go in one statement, and each gets its own snapshot and tail`, async (t) => {
    const { orm, options } = await backend.open(t);
    const journal = new PostgresJournal(orm, PLACEMENT, undefined, options);
    // Per i % 3: nothing journaled; i entries and no snapshot; 5 entries and a snapshot at 2.
    const ids = Array.from({ length: 30 }, (_, i) => `rec${i}`);
    const limit = 3;
    const expected = ids.map((id, i) => {
      if (i % 3 === 0) return { snapshot: undefined, seqs: [] as number[] };
      if (i % 3 === 1) return { snapshot: undefined, seqs: [1, 2, 3].filter((s) => s <= i) };
      return { snapshot: { persistenceKey: key(id), sequenceNr: 2, data: { at: id }, createdAt: Date.UTC(2026, 0, 1) }, seqs: [3, 4, 5] };
    });
    for (const [i, id] of ids.entries()) {
      const n = i % 3 === 1 ? i : i % 3 === 2 ? 5 : 0;
      for (let seq = 1; seq <= n; seq++) await journal.append(entry(id, seq));
      if (i % 3 === 2) await journal.saveSnapshot(expected[i]!.snapshot!);
    }
    const before = journal.recoveryReadStats.statements;
    // Every read in one tick, one key asked twice.
    const read = await Promise.all([...ids, 'rec4'].map((id) => journal.recover(key(id), limit)));
    t.is(journal.recoveryReadStats.statements - before, 1, 'one statement for every read of the tick');
    const asked = [...ids, 'rec4'];
    for (const [i, r] of read.entries()) {
      const id = asked[i]!;
      const want = expected[ids.indexOf(id)]!;
      t.deepEqual(r.snapshot, want.snapshot, id);
      t.deepEqual(r.entries.map((e) => [e.persistenceKey, e.sequenceNr, e.data, e.tags]), want.seqs.map((seq) => [key(id), seq, entry(id, seq).data, ['t']]), id);
    }
    t.not(read[4], read[30], 'the key asked twice: each caller its own answer');
    // A read alone is one statement too, and the same answer.
    const alone = await journal.recover(key('rec5'), limit);
    t.deepEqual(alone, read[5]);
  });

  test.serial(`${backend.name}: recovery reads with another page size in the same tick get their own statement`, async (t) => {
    const { orm, options } = await backend.open(t);
    const journal = new PostgresJournal(orm, PLACEMENT, undefined, options);
    for (let seq = 1; seq <= 6; seq++) await journal.append(entry('paged', seq));
    const before = journal.recoveryReadStats.statements;
    const [two, five, none] = await Promise.all([journal.recover(key('paged'), 2), journal.recover(key('paged'), 5), journal.recover(key('none'), 2)]);
    t.deepEqual(two.entries.map((e) => e.sequenceNr), [1, 2]);
    t.deepEqual(five.entries.map((e) => e.sequenceNr), [1, 2, 3, 4, 5]);
    t.deepEqual(none, { snapshot: undefined, entries: [] });
    t.is(journal.recoveryReadStats.statements - before, 2);
  });

}

test.serial('PostgreSQL: a connection lost mid-batch fails every append of the batch retriably, and none of it is written', async (t) => {
  const db = await freshDatabase();
  const target = new URL(db.url);
  const proxy = await faultProxy({ target: { host: target.hostname, port: Number(target.port || 5432) } });
  const orm = await openOrm({ url: proxy.rewrite(db.url), poolMax: 2 });
  t.teardown(async () => { await orm.close(true).catch(() => undefined); await proxy.close(); await db.drop(); });
  const epochs = new PostgresShardEpochs(orm);
  const held = new Map(await epochs.acquire([0, 1, 2, 3], 'me'));
  const journal = new PostgresJournal(orm, PLACEMENT, fence(held));
  await journal.append(entry('warm', 1));

  // Another session holds one shard's epoch row, so the batch waits inside its statement.
  const locker = new pg.Client({ connectionString: db.url });
  await locker.connect();
  t.teardown(() => locker.end().catch(() => undefined));
  const ids = Array.from({ length: 30 }, (_, i) => `m${i}`);
  await locker.query('begin');
  await locker.query('select * from shard_epoch where shard = $1 for update', [shardOfId(ids[0]!)]);
  const batch = settle(ids.map((id) => journal.append(entry(id, 1))));
  const waiting = async () => Number((await locker.query("select count(*) as n from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database()")).rows[0].n);
  for (let i = 0; i < 200 && await waiting() === 0; i++) await new Promise((r) => setTimeout(r, 25));
  t.is(await waiting(), 1, 'the batch statement is running, waiting for the lock');
  proxy.cut();
  // The server side of the statement ends too, as a dropped connection's does.
  await locker.query("select pg_terminate_backend(pid) from pg_stat_activity where wait_event_type = 'Lock' and datname = current_database()");
  await locker.query('rollback');
  const results = await batch;
  for (const r of results) {
    t.true(r.status === 'rejected' && r.reason instanceof StorageUnavailableError && classify(r.reason).retriable,
      r.status === 'rejected' ? String(r.reason) : 'written');
  }
  const rows = await locker.query('select count(*) as n from journal where persistence_key = any($1)', [ids.map(key)]);
  t.is(Number(rows.rows[0].n), 0, 'nothing of the batch is visible');
  // The journal serves again, and the same appends (retried) are written.
  t.deepEqual((await settle(ids.map((id) => journal.append(entry(id, 1))))).filter((r) => r.status === 'rejected'), []);
});

test.serial('PostgreSQL: reminders of one tick are written by one statement each, a fenced shard\'s refused alone, one entity\'s writes in order',
  async (t) => {
  const { orm } = await postgres.open(t);
  // Counts the statements the store runs.
  let statements = 0;
  const connection = orm.em.getConnection();
  const counted = new Proxy(orm, {
    get: (target, name) => name !== 'em' ? Reflect.get(target, name) : new Proxy(target.em, {
      get: (em, k) => k !== 'getConnection' ? Reflect.get(em, k) : () => new Proxy(connection, {
        get: (c, m) => (m === 'execute'
          ? (...args: unknown[]) => { statements++; return (c.execute as (...a: unknown[]) => unknown)(...args); }
          : Reflect.get(c, m)),
      }),
    }),
  });
  const epochs = new PostgresShardEpochs(orm);
  await epochs.acquire([0, 1, 2, 3], 'old');
  const current = await epochs.acquire([0, 1, 2, 3], 'me');
  const held = new Map(current);
  const ids = Array.from({ length: 40 }, (_, i) => `r${i}`);
  const lost = shardOfId(ids[0]!);
  held.set(lost, current.get(lost)! - 1);
  const writes = fence(held);
  const reminders = new PostgresReminderStore(counted, writes);
  const due = Date.now() + 60_000;
  const results = await settle(ids.map((id) => reminders.set({ entityKey: key(id), name: 'alarm', shard: shardOfId(id), dueAt: due })));
  t.is(statements, 1, 'one statement for 40 reminders');
  ids.forEach((id, i) => {
    const r = results[i]!;
    if (shardOfId(id) === lost) t.true(r.status === 'rejected' && r.reason instanceof ShardFencedError, id);
    else t.is(r.status, 'fulfilled', id);
  });
  const stored = await reminders.forShards([0, 1, 2, 3]);
  t.deepEqual(stored.map((r) => r.entityKey).sort(), ids.filter((id) => shardOfId(id) !== lost).map(key).sort());
  // Set, moved, cleared and set again within one tick: applied in that order (the later writes of a key wait for the next batch).
  statements = 0;
  const id = ids.find((x) => shardOfId(x) !== lost)!;
  const ref = { entityKey: key(id), name: 'later', shard: shardOfId(id) };
  await Promise.all([reminders.set({ ...ref, dueAt: due }), reminders.set({ ...ref, dueAt: due + 1 }), reminders.clear(ref.entityKey, 'later', ref.shard),
    reminders.set({ ...ref, dueAt: due + 2 }), reminders.clear(key(ids[5]!), 'alarm', shardOfId(ids[5]!)).catch(() => undefined)]);
  t.is(statements, 5, 'four batches for the four writes of one key (the first also holds the other key\'s clear, a statement of its own)');
  t.deepEqual((await reminders.forShards([ref.shard])).filter((r) => r.name === 'later').map((r) => r.dueAt), [due + 2]);
});

test.serial('PostgreSQL: recovery reads the latest snapshot and the entries after it in one statement, and replays the same entries', async (t) => {
  const { orm } = await postgres.open(t);
  const journal = new PostgresJournal(orm, PLACEMENT);
  for (let seq = 1; seq <= 5; seq++) await journal.append(entry('rec', seq));
  for (let seq = 1; seq <= 2; seq++) await journal.append(entry('plain', seq));
  await journal.saveSnapshot({ persistenceKey: key('rec'), sequenceNr: 3, data: { at: 3 }, createdAt: Date.now() });
  const withSnapshot = await journal.recover(key('rec'), 500);
  t.like(withSnapshot.snapshot, { persistenceKey: key('rec'), sequenceNr: 3, data: { at: 3 } });
  t.deepEqual(withSnapshot.entries.map((e) => e.sequenceNr), [4, 5]);
  t.deepEqual(withSnapshot.entries, await journal.read(key('rec'), 3, 500), 'the entries read would give');
  t.deepEqual((await journal.recover(key('plain'), 1)).entries.map((e) => e.sequenceNr), [1], 'at most `limit`');
  t.deepEqual(await journal.recover(key('nobody'), 500), { snapshot: undefined, entries: [] });

  // The engine nact recovers through: one recover, no read, for an entity whose tail fits a page.
  const calls = { recover: 0, read: 0 };
  const counting = new Proxy(journal, {
    get: (target, name) => {
      const value = Reflect.get(target, name) as unknown;
      if (name !== 'recover' && name !== 'read') return typeof value === 'function' ? value.bind(target) : value;
      return (...args: unknown[]) => { calls[name]++; return (value as (...a: unknown[]) => unknown).apply(target, args); };
    },
  });
  const engine = new JournalPersistenceEngine(counting);
  const snapshot = await engine.latestSnapshot(key('rec'));
  const replayed = await engine.events(key('rec'), snapshot!.sequenceNumber).reduce((seqs: number[], e) => [...seqs, e.sequenceNumber], []);
  t.deepEqual(replayed, [4, 5]);
  t.deepEqual(calls, { recover: 1, read: 0 });
});
