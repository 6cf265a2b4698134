// Projections follow the journal exactly once, on real PostgreSQL: a row that commits
// late is not skipped, a batch that commits and then times out is not applied twice,
// an open breaker only delays them, and a rebuild gives the same figures.

import test, { type ExecutionContext } from 'ava';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { dispatchBehaviors, dispatchServices } from '../actors/index.ts';
import { loadConfig } from '../config/index.ts';
import { startNode, type NodeOptions, type RunningNode } from '../node.ts';
import { openOrm, type Orm } from '../adapters/postgres/orm.ts';
import { analyticsProjection, bookingsProjection, insertColumns, insertMany, Projector, quietPollMs, shardGroups, sqlLiteral, type JournalRow, type Projection, type ProjectorOptions } from '../adapters/postgres/projections.ts';
import { ShardFencedError } from '../runtime/errors.ts';
import type { WriteFence } from '../runtime/ports.ts';
import { inTransaction } from '../adapters/postgres/transaction.ts';
import { createBooking } from './fixtures/booking-request.ts';
import { freshDatabase } from './helpers/services.ts';
import { eventually, repoRoot } from './helpers/node-process.ts';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { journalTruthDiff } from './helpers/journal-truth.ts';
import { bookingHistory, FATES } from './helpers/booking-histories.ts';

const CENTER = { lat: 48.8566, lng: 2.3522 };
const databases: { drop(): Promise<void> }[] = [];
test.after.always(async () => { await Promise.all(databases.map((d) => d.drop())); });

async function node(extra: NodeOptions['projector'] = {}): Promise<{ n: RunningNode; url: string }> {
  const db = await freshDatabase();
  databases.push(db);
  const config = loadConfig({
    MODE: 'embedded', DATABASE_URL: db.url, DATA_DIR: mkdtempSync(join(tmpdir(), 'proj-')), PORT: '0', HOST: '127.0.0.1',
    LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent', SHARDS: '8', AUTH_DEV_TOKENS: 'true', JWT_SECRET: 'projection-test-secret-of-good-length',
  });
  const n = await startNode({ config, behaviors: dispatchBehaviors(config), services: dispatchServices(config), projector: { pollMs: 200, ...extra } });
  return { n, url: db.url };
}

/** Scheduled bookings made, then all cancelled at once. */
async function burst(n: RunningNode, count: number): Promise<string[]> {
  const run = randomUUID().slice(0, 8);
  const ids = Array.from({ length: count }, (_, i) => `${run}-${i}`);
  await Promise.all(ids.map((id, i) => n.region.request({ kind: 'booking', id }, createBooking({ riderId: `r-${run}-${i % 5}`, pickup: CENTER, scheduledAt: Date.now() + 3_600_000 }))));
  const results = await Promise.all(ids.map((id) => n.region.request({ kind: 'booking', id }, { type: 'cancel', by: { role: 'admin', userId: 'a' } })));
  for (const r of results) if (r.status !== 'applied') throw new Error(`cancel: ${JSON.stringify(r)}`);
  return ids;
}

const agrees = (url: string) => async () => (await journalTruthDiff(url)).length === 0;
const cancelledCount = async (n: RunningNode) => (await n.readModels.analytics(Date.now() - 86_400_000, Date.now() + 3_600_000, 'hour')).items.reduce((a, i) => a + i.cancelled, 0);

/** A fresh database, a projector over `projection` started and caught up, and a client that journals rows as an entity would. */
/** A fresh database with the schema, the ORM on it and a plain client, closed after the test. */
async function databaseRig(t: ExecutionContext): Promise<{ db: Awaited<ReturnType<typeof freshDatabase>>; orm: Orm; client: pg.Client }> {
  const db = await freshDatabase();
  databases.push(db);
  const orm = await openOrm({ url: db.url, poolMax: 4 });
  t.teardown(() => orm.close(true));
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  t.teardown(() => client.end());
  return { db, orm, client };
}

async function projectorRig(t: ExecutionContext, projection: Projection, options: Omit<ProjectorOptions, 'orm' | 'projections'>) {
  const { orm, client } = await databaseRig(t);
  const projector = new Projector({ orm, projections: [projection], ...options });
  const record = JSON.stringify({ v: 1, cmd: 'c', at: 0, events: [], tells: [], timersSet: [], timersCancelled: [] });
  projector.start();
  t.teardown(() => projector.stop());
  await eventually(async () => projector.lagMs() === 0);
  const journal = (key: string, shard: number) =>
    client.query(`insert into journal (persistence_key, sequence_nr, data, tags, shard) values ($1, 1, $2, '[]', $3)`, [key, record, shard]);
  return { projector, journal };
}

test('a journal row that commits after a later one is projected, not skipped', async (t) => {
  const db = await freshDatabase();
  databases.push(db);
  const orm = await openOrm({ url: db.url, poolMax: 4 });
  const seen: string[] = [];
  const recording: Projection = { name: 'rec', kind: 'test', tables: [], async apply(_sql, rows: readonly JournalRow[]) { seen.push(...rows.map((r) => r.key)); } };
  const projector = new Projector({ orm, projections: [recording], owned: () => [0], totalShards: 1 });
  const record = JSON.stringify({ v: 1, cmd: 'c', at: 0, events: [], tells: [], timersSet: [], timersCancelled: [] });
  const insert = `insert into journal (persistence_key, sequence_nr, data, tags, shard) values ($1, 1, $2, '[]', 0)`;
  const early = new pg.Client({ connectionString: db.url });
  const late = new pg.Client({ connectionString: db.url });
  await early.connect();
  await late.connect();
  try {
    await early.query('begin');
    await early.query(insert, ['test:early', record]); // takes its transaction id first, commits last
    await late.query(insert, ['test:late', record]); // a later transaction, committed at once
    // (Transactions of other tests on the same server can hold the bound back too: lag, never loss.)
    for (let i = 0; i < 5; i++) await projector.catchUp('rec', 0);
    t.deepEqual(seen, [], 'nothing is read while an older transaction may still commit rows before it');
    await early.query('commit');
    t.true(await eventually(async () => { await projector.catchUp('rec', 0); return seen.length >= 2; }));
    t.deepEqual(seen, ['test:early', 'test:late'], 'both, in transaction order');
    t.is(await projector.catchUp('rec', 0), 0, 'and never again');
  } finally {
    await early.end();
    await late.end();
    await orm.close(true);
  }
});

test('a projection batch that commits and then times out is retried without counting twice', async (t) => {
  let delayed = 0;
  // The guard gives a call 3 s: each projection's first batch is held 3.5 s after its commit.
  const slow = new Set<string>();
  const { n, url } = await node({
    afterCommit: async (projection) => {
      if (slow.has(projection)) return;
      slow.add(projection);
      delayed++;
      await new Promise((r) => setTimeout(r, 3_500));
    },
  });
  try {
    const ids = await burst(n, 20);
    t.true(await eventually(agrees(url), 60_000), `views equal the journal: ${(await journalTruthDiff(url)).slice(0, 5).join('; ')}`);
    t.true(delayed >= 1, 'a batch was held past the timeout');
    t.is(await cancelledCount(n), ids.length, 'each cancellation counted once');
  } finally {
    await n.stop();
  }
});

test('with the PostgreSQL breaker held open for 10 s projections wait, then catch up exactly', async (t) => {
  const { n, url } = await node();
  try {
    await burst(n, 5);
    t.true(await eventually(agrees(url)));
    const held = n.storage.sqlGuard.hold();
    const ids = await burst(n, 20); // the journal does not go through the breaker
    await new Promise((r) => setTimeout(r, 10_000));
    const lag = n.projector.lagMs('bookings', 'analytics');
    t.true(lag > 0, `lag shows (${lag} ms)`);
    t.notDeepEqual(await journalTruthDiff(url), [], 'the views are behind while the breaker is open');
    held.release();
    t.true(await eventually(agrees(url), 60_000), `views equal the journal: ${(await journalTruthDiff(url)).slice(0, 5).join('; ')}`);
    t.is(await cancelledCount(n), ids.length + 5);
    t.true(await eventually(async () => n.projector.lagMs() === 0), 'lag back to 0');
  } finally {
    await n.stop();
  }
});

test('analytics rebuilt from the journal while the node runs give the same figures', async (t) => {
  const { n, url } = await node();
  try {
    await burst(n, 30);
    t.true(await eventually(agrees(url)));
    const figures = async () => [
      await n.readModels.analytics(Date.now() - 86_400_000, Date.now() + 3_600_000, 'hour'),
      await n.readModels.analytics(Date.now() - 86_400_000, Date.now() + 3_600_000, 'cell'),
    ].map((f) => ({ ...f, from: undefined, to: undefined }));
    const before = await figures();
    t.true(before[0]!.items.length > 0);
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    await client.query('truncate analytics_hour_cell, analytics_driver_hour, analytics_driver_hour_cell, analytics_rider');
    await client.end();
    t.notDeepEqual(await figures(), before, 'cleared');
    const rebuilt = await n.projector.rebuild('analytics');
    t.log(`analytics rebuilt from ${rebuilt.rows} journal rows in ${rebuilt.ms} ms`);
    t.deepEqual(await figures(), before);
    t.deepEqual(await journalTruthDiff(url), []);
    // Over HTTP: the admin endpoint rebuilds too, lists say how far behind they may be, lag is in /metrics and the cluster view.
    const { token } = await (await fetch(`${n.url}/v1/auth/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sub: 'adm', role: 'admin' }) })).json() as { token: string };
    const auth = { authorization: `Bearer ${token}` };
    const res = await fetch(`${n.url}/v1/admin/projections/analytics/rebuild`, { method: 'POST', headers: auth });
    t.is(res.status, 200);
    t.like(await res.json(), { projection: 'analytics' });
    t.deepEqual(await figures(), before);
    const list = await fetch(`${n.url}/v1/bookings?limit=5`, { headers: auth });
    t.is(list.status, 200);
    t.regex(list.headers.get('x-projection-lag-ms') ?? '', /^\d+$/);
    const cluster = await (await fetch(`${n.url}/v1/admin/cluster`, { headers: auth })).json() as { projections: { name: string; lagMs: number }[] };
    t.deepEqual(cluster.projections.map((p) => p.name), ['bookings', 'analytics', 'drivers', 'vehicles']);
    t.regex(await (await fetch(`${n.url}/metrics`, { headers: auth })).text(), /projection_lag_seconds\{projection="analytics"\} \d/);
    t.is((await fetch(`${n.url}/v1/admin/projections/nope/rebuild`, { method: 'POST', headers: auth })).status, 404);
    // And the script, from another process, while this node runs.
    const { stdout } = await promisify(execFile)(process.execPath, ['scripts/projections.ts', 'rebuild', 'analytics'], {
      cwd: repoRoot, env: { ...process.env, DATABASE_URL: url, SHARDS: '8', LOG_LEVEL: 'silent' }, timeout: 60_000,
    });
    t.like(JSON.parse(stdout), { projection: 'analytics' });
    t.deepEqual(await figures(), before);
    t.deepEqual(await journalTruthDiff(url), []);
  } finally {
    await n.stop();
  }
});

test('a rebuild in batches smaller than a booking\'s history (states carried between batches) gives the same views and figures', async (t) => {
  // Batches of 3 rows cut most bookings' rows apart: the rebuild folds a booking's later rows on the state it kept
  // from the batch before (or reads its history when it kept none), and must land where the live projection did.
  const { n, url } = await node({ rebuildBatchSize: 3 });
  try {
    await burst(n, 24);
    t.true(await eventually(agrees(url)));
    const figures = async () => (await n.readModels.analytics(Date.now() - 86_400_000, Date.now() + 3_600_000, 'cell')).items;
    const before = await figures();
    t.is(before.reduce((a, i) => a + i.cancelled, 0), 24);
    for (const name of ['bookings', 'analytics']) {
      // (How many rows the rebuild itself projects varies: the shards' owners project alongside it.)
      await n.projector.rebuild(name);
      t.deepEqual(await journalTruthDiff(url), [], name);
    }
    t.deepEqual(await figures(), before);
  } finally {
    await n.stop();
  }
});

/**
 * `perFate` bookings of every fate (helpers/booking-histories.ts) journaled on `shards` shards as
 * live bookings are, their rows interleaved: each transaction writes the next record of every
 * booking, so a booking's rows lie far apart in a shard's (tx, key, sequence) order.
 */
async function journalFates(client: pg.Client, shards: number, perFate: number, t0 = Date.UTC(2026, 4, 4, 9, 40)): Promise<{ bookings: number; rows: number }> {
  const histories = FATES.flatMap((fate, f) => Array.from({ length: perFate }, (_, i) => {
    const n = f * perFate + i;
    return { key: `booking:fate-${n}`, shard: n % shards, records: bookingHistory(`fate-${n}`, fate, t0 + n * 97_000, n) };
  }));
  let rows = 0;
  for (let seq = 1; histories.some((h) => h.records.length >= seq); seq++) rows += await journalNext(client, histories, seq);
  return { bookings: histories.length, rows };
}

type History = { key: string; shard: number; records: readonly unknown[] };

/** Record `seq` of every history that has one, in one transaction; how many rows that was. */
async function journalNext(client: pg.Client, histories: readonly History[], seq: number): Promise<number> {
  const now = histories.filter((h) => h.records.length >= seq);
  await client.query(
    `insert into journal (persistence_key, sequence_nr, data, tags, shard)
     select k, $2, d, '[]', s from unnest($1::text[], $3::jsonb[], $4::int[]) as t(k, d, s)`,
    [now.map((h) => h.key), seq, now.map((h) => JSON.stringify(h.records[seq - 1])), now.map((h) => h.shard)]);
  return now.length;
}

/**
 * Until a projection can read every one of the journal's `rows`: it reads below the oldest transaction
 * running anywhere on the server, and the other tests' databases share it.
 */
const readable = (client: pg.Client, rows: number) => eventually(async () =>
  Number((await client.query('select count(*) as n from journal where tx < pg_snapshot_xmin(pg_current_snapshot())')).rows[0].n) === rows);

/** Every row of the views of bookings and analytics, in key order. */
async function bookingViews(client: pg.Client): Promise<Record<string, unknown[]>> {
  const out: Record<string, unknown[]> = {};
  for (const [table, key] of [['booking_view', 'id'], ['analytics_hour_cell', 'hour, cell'], ['analytics_driver_hour', 'hour, driver_id'],
    ['analytics_driver_hour_cell', 'hour, cell, driver_id'], ['analytics_rider', 'rider_id']] as const) {
    // (booking_view's updated_at says when a row was written, not what it holds.)
    out[table] = (await client.query(`select * from ${table} order by ${key}`)).rows.map(({ updated_at: _u, ...r }) => r);
  }
  return out;
}

test('a rebuild lands where the live projection did, over bookings of every fate, whether its pages cut through bookings or not', async (t) => {
  const { db, orm, client } = await databaseRig(t);
  const perFate = 6;
  const { bookings, rows } = await journalFates(client, 4, perFate);
  t.true(await readable(client, rows));
  const options = { orm, projections: [bookingsProjection, analyticsProjection], owned: () => [0, 1, 2, 3], totalShards: 4 };
  // The live projection, in batches of 7 rows: what a rebuild must give again.
  const live = new Projector({ ...options, batchSize: 7 });
  for (let shard = 0; shard < 4; shard++) for (const name of ['bookings', 'analytics']) await live.catchUp(name, shard);
  t.deepEqual(await journalTruthDiff(db.url), []);
  const before = await bookingViews(client);
  // Not empty views agreeing: every fate counted as the fold counts it.
  const [totals] = (await client.query(`select sum(requests)::int as requests, sum(completed)::int as completed, sum(cancelled)::int as cancelled,
    sum(no_driver)::int as no_driver, sum(revenue)::int as revenue from analytics_hour_cell`)).rows;
  t.like(totals, { requests: bookings, completed: 5 * perFate, cancelled: 3 * perFate, no_driver: perFate });
  t.true(totals.revenue > 0);
  t.true(before.analytics_driver_hour_cell!.length > 0 && before.analytics_rider!.length === 7);
  for (const pageSize of [3, 20_000]) {
    const rebuilding = new Projector({ ...options, rebuildBatchSize: pageSize });
    for (const name of ['analytics', 'bookings']) t.is((await rebuilding.rebuild(name)).rows, rows, `${name}, pages of ${pageSize}`);
    t.deepEqual(await bookingViews(client), before, `pages of ${pageSize}`);
    t.deepEqual(await journalTruthDiff(db.url), [], `pages of ${pageSize}`);
  }
});

test('live batches fold each booking on the state they left it in: no history read again while its rows follow, and the views a rebuild gives', async (t) => {
  const { db, orm, client } = await databaseRig(t);
  // Every statement any pg client of this process sends: the history reads among them are counted.
  let historyReads = 0;
  const query = pg.Client.prototype.query;
  pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    const text = typeof args[0] === 'string' ? args[0] : (args[0] as { text?: string } | undefined)?.text;
    if (text?.includes('from journal where persistence_key in')) historyReads++;
    return (query as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof query;
  t.teardown(() => { pg.Client.prototype.query = query; });
  const histories = FATES.flatMap((fate, f) => Array.from({ length: 3 }, (_, i) => {
    const n = f * 3 + i;
    return { key: `booking:live-${n}`, shard: n % 2, records: bookingHistory(`live-${n}`, fate, Date.UTC(2026, 4, 4, 9, 40) + n * 97_000, n) };
  }));
  const live = new Projector({ orm, projections: [bookingsProjection, analyticsProjection], owned: () => [0, 1], totalShards: 2 });
  let rows = 0;
  const readsAfterFirst: number[] = [];
  for (let seq = 1; histories.some((h) => h.records.length >= seq); seq++) {
    // The next record of every booking, then the live projection's batches: as rows come on a node.
    rows += await journalNext(client, histories, seq);
    t.true(await readable(client, rows));
    const before = historyReads;
    for (const shard of [0, 1]) for (const name of ['bookings', 'analytics']) await live.catchUp(name, shard);
    if (seq > 1) readsAfterFirst.push(historyReads - before);
  }
  t.true(readsAfterFirst.length > 3);
  t.deepEqual(readsAfterFirst, readsAfterFirst.map(() => 0), 'every batch after the first folded on remembered states');
  const views = await bookingViews(client);
  t.deepEqual(await journalTruthDiff(db.url), []);
  // A fresh projector (nothing remembered) rebuilding from the journal gives the same views.
  const rebuilding = new Projector({ orm, projections: [bookingsProjection, analyticsProjection], owned: () => [0, 1], totalShards: 2 });
  for (const name of ['analytics', 'bookings']) await rebuilding.rebuild(name);
  t.deepEqual(await bookingViews(client), views);
});

test('rows of a transaction still open while a rebuild reads are left to the projection after it, and projected once', async (t) => {
  // A rebuild writes each shard's offset once, at its end: past the last row it read, never past
  // a row it could not see yet (one an older transaction is still writing), or that row is lost.
  const { db, orm, client } = await databaseRig(t);
  const { bookings, rows } = await journalFates(client, 2, 2);
  t.true(await readable(client, rows));
  const record = (id: string) => JSON.stringify(bookingHistory(id, 'cancelled-searching', Date.UTC(2026, 4, 4, 12), 3)[0]);
  const insert = (c: pg.Client, id: string) => c.query(`insert into journal (persistence_key, sequence_nr, data, tags, shard) values ($1, 1, $2, '[]', 0)`, [`booking:${id}`, record(id)]);
  const open = new pg.Client({ connectionString: db.url });
  await open.connect();
  t.teardown(() => open.end());
  await open.query('begin');
  await insert(open, 'late'); // an older transaction, still open
  await insert(client, 'early'); // a younger one, committed
  const projector = new Projector({ orm, projections: [bookingsProjection, analyticsProjection], owned: () => [0, 1], totalShards: 2 });
  for (const name of ['bookings', 'analytics']) await projector.rebuild(name);
  const requests = async () => Number((await client.query('select sum(requests) as n from analytics_hour_cell')).rows[0].n);
  t.is(await requests(), bookings, 'neither row: the younger one waits behind the older');
  await open.query('commit');
  t.true(await readable(client, rows + 2));
  for (let shard = 0; shard < 2; shard++) for (const name of ['bookings', 'analytics']) await projector.catchUp(name, shard);
  t.is(await requests(), bookings + 2);
  t.deepEqual(await journalTruthDiff(db.url), []);
});

test('two batches adding to the same analytics rows, listed in opposite orders, both commit: rows are written in key order, never deadlocked', async (t) => {
  // Two shards' batches run at once (catch-up and rebuild) and both add to the rows of the
  // hours and cells they share. Each statement locks its rows until commit: taken in the
  // order each batch happened to list them, two such statements lock from both ends and
  // PostgreSQL aborts one ("deadlock detected"). Written in key order, the second waits.
  const db = await freshDatabase();
  databases.push(db);
  const orm = await openOrm({ url: db.url, poolMax: 4 });
  t.teardown(() => orm.close(true));
  const hour = new Date(Date.UTC(2026, 0, 1));
  const rows = Array.from({ length: 5_000 }, (_, i) => ({ hour, cell: `cell-${String(i).padStart(5, '0')}`, requests: 1 }));
  const add = (list: typeof rows) => inTransaction(orm, (sql) => insertMany(sql, 'analytics_hour_cell', ['hour', 'cell'],
    { hour: 'timestamptz', cell: 'text', requests: 'integer' }, list,
    'on conflict (hour, cell) do update set requests = analytics_hour_cell.requests + excluded.requests'));
  for (let round = 0; round < 3; round++) await Promise.all([add(rows), add([...rows].reverse())]);
  const [sums] = await inTransaction(orm, (sql) =>
    sql<{ n: string; total: string }>('select count(*) as n, sum(requests) as total from analytics_hour_cell'));
  t.deepEqual({ n: Number(sums!.n), total: Number(sums!.total) }, { n: 5_000, total: 30_000 });
});

test('a wake for a shard this node no longer owns is dropped: the projector goes back to waiting, it does not loop', async (t) => {
  const db = await freshDatabase();
  databases.push(db);
  const orm = await openOrm({ url: db.url, poolMax: 2 });
  t.teardown(() => orm.close(true));
  let owned = [0, 1];
  let asked = 0;
  const recording: Projection = { name: 'rec', kind: 'test', tables: [], async apply() {} };
  const projector = new Projector({
    orm, projections: [recording], owned: () => { asked++; return owned; }, totalShards: 2, pollMs: 60_000,
  });
  projector.start();
  t.teardown(() => projector.stop());
  await eventually(async () => asked > 0);
  owned = [0]; // shard 1 moved away (or the node is stopping)
  const before = asked;
  projector.wake('test', 1);
  // A wake left behind would end every wait at once (or after the wake delay): the loop would go round for ever.
  await new Promise((r) => setTimeout(r, 1_000));
  t.true(asked - before <= 3, `the loop went round ${asked - before} times after one wake`);
  t.deepEqual(projector.status().map((s) => s.failures), [0]);
});

test('an idle projector costs the database next to nothing: one statement per sweep finds the shards with rows, quiet sweeps back off, rows are found',
  async (t) => {
  const db = await freshDatabase();
  databases.push(db);
  const orm = await openOrm({ url: db.url, poolMax: 4 });
  t.teardown(() => orm.close(true));
  // Counts what the projector asks: statements outside a transaction (the probe) and transactions (batches).
  const asked = { statements: 0, transactions: 0 };
  const connection = orm.em.getConnection();
  const counted = new Proxy(orm, {
    get: (target, name) => name !== 'em' ? Reflect.get(target, name) : new Proxy(target.em, {
      get: (em, key) => key !== 'getConnection' ? Reflect.get(em, key) : () => new Proxy(connection, {
        get: (c, k) => {
          if (k === 'execute') return (...args: unknown[]) => { asked.statements++; return (c.execute as (...a: unknown[]) => unknown)(...args); };
          if (k === 'getNativeClient') {
            return async () => {
              const pool = await c.getNativeClient() as unknown as pg.Pool;
              return new Proxy(pool, { get: (p, m) => (m === 'connect' ? () => { asked.transactions++; return p.connect(); } : Reflect.get(p, m)) });
            };
          }
          return Reflect.get(c, k);
        },
      }),
    }),
  });
  const seen: string[] = [];
  const recording: Projection = {
    name: 'rec', kind: 'test', tables: [], async apply(_sql, rows: readonly JournalRow[]) { seen.push(...rows.map((r) => r.key)); },
  };
  const shards = Array.from({ length: 32 }, (_, i) => i);
  const projector = new Projector({ orm: counted, projections: [recording], owned: () => shards, totalShards: 32, pollMs: 50, idlePollMs: 400 });
  projector.start();
  t.teardown(() => projector.stop());
  await new Promise((r) => setTimeout(r, 2_000));
  // At pollMs, 2 s would be 40 sweeps of 32 transactions each.
  t.is(asked.transactions, 0, 'no shard had rows: no batch was run');
  t.true(asked.statements <= 20, `${asked.statements} probes in 2 s (40 sweeps at pollMs)`);
  t.is(projector.lagMs(), 0);

  // A row no wake-up announced is found by a later sweep, however quiet the node was.
  const record = JSON.stringify({ v: 1, cmd: 'c', at: 0, events: [], tells: [], timersSet: [], timersCancelled: [] });
  const insert = async (key: string, shard: number) => {
    const client = new pg.Client({ connectionString: db.url });
    await client.connect();
    try {
      await client.query(`insert into journal (persistence_key, sequence_nr, data, tags, shard) values ($1, 1, $2, '[]', $3)`, [key, record, shard]);
    } finally {
      await client.end();
    }
  };
  await insert('test:unannounced', 7);
  t.true(await eventually(async () => seen.includes('test:unannounced'), 60_000));
  t.is(asked.transactions, 1, 'only the shard with the row was caught up');
  // A wake-up is followed at once.
  await insert('test:woken', 9);
  projector.wake('test', 9);
  t.true(await eventually(async () => seen.includes('test:woken'), 60_000));
});

test('quiet sweeps back off from pollMs, doubling up to idlePollMs', (t) => {
  t.deepEqual([0, 1, 2, 3, 4, 5, 6, 40].map((q) => quietPollMs(1_000, 30_000, q)), [1_000, 1_000, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000]);
  t.is(quietPollMs(1_000, 500, 10), 500, 'the caller keeps idlePollMs at least pollMs');
});

test('wake-ups that come close together are projected together: one batch for the rows of the while, not one per row', async (t) => {
  const batches: number[] = [];
  const recording: Projection = { name: 'rec', kind: 'test', tables: [], async apply(_sql, rows: readonly JournalRow[]) { batches.push(rows.length); } };
  const { projector, journal } = await projectorRig(t, recording, { owned: () => [3], totalShards: 4, pollMs: 60_000, wakeDelayMs: 1_000 });
  // Ten rows, each announced by its own wake-up as an entity's event would, well within the delay.
  for (let i = 0; i < 10; i++) {
    await journal(`test:w${i}`, 3);
    projector.wake('test', 3);
  }
  // On a shared server another test's open transaction can keep rows invisible when the
  // catch-up reads them; the next event's wake-up finds them, as it would on a node (the
  // sweep is a minute away here). Every row is projected once, whatever the batches.
  const projected = () => batches.reduce((a, b) => a + b, 0);
  t.true(await eventually(async () => {
    if (projected() < 10) projector.wake('test', 3);
    return projected() === 10;
  }, 60_000, 2_000));
  // One batch when nothing was held back, two when some rows were; catching up at every
  // wake-up makes three or more (measured: [4,5,1] with no delay), a row per wake-up ten.
  t.true(batches.length <= 2 && batches[0]! >= 2, `batches of ${JSON.stringify(batches)}: the close wake-ups were projected together`);
  t.log(`batches: ${JSON.stringify(batches)}`);
});

test('woken shards are caught up two at a time: their batches overlap, never more than two, and every row is projected once', async (t) => {
  let live = 0;
  let most = 0;
  const seen: string[] = [];
  // A slow apply, so batches of different shards would overlap if they can.
  const slow: Projection = {
    name: 'slow', kind: 'test', tables: [], async apply(_sql, rows: readonly JournalRow[]) {
      live++;
      most = Math.max(most, live);
      await new Promise((r) => setTimeout(r, 150));
      seen.push(...rows.map((r) => r.key));
      live--;
    },
  };
  const shards = [0, 1, 2, 3, 4, 5, 6, 7];
  // Sweeps every 200 ms too: on a shared server another database's open transaction can keep
  // rows invisible when their wake-up comes, and a later sweep finds them (as a node's would).
  const { projector, journal } = await projectorRig(t, slow, { owned: () => shards, totalShards: 8, pollMs: 200, wakeDelayMs: 0 });
  for (const shard of shards) await journal(`test:s${shard}`, shard);
  for (const shard of shards) projector.wake('test', shard);
  t.true(await eventually(async () => seen.length >= shards.length, 60_000));
  t.deepEqual([...seen].sort(), shards.map((s) => `test:s${s}`).sort(), 'each row once');
  t.is(most, 2, 'two shards at a time');
});

test('the woken shards of a group are caught up in one transaction: one apply for the rows of all of them, each row once', async (t) => {
  // At 200 bookings/s a batch per shard was ten statements of about 4 ms each for 7 rows: the
  // lag was the time to go round 32 shards. A batch per group of shards costs the same few statements.
  const calls: number[][] = [];
  const seen: string[] = [];
  const recording: Projection = {
    name: 'groups', kind: 'test', tables: [], async apply(_sql, rows: readonly JournalRow[]) {
      calls.push([...new Set(rows.map((r) => r.shard))]);
      seen.push(...rows.map((r) => r.key));
    },
  };
  const shards = [0, 1, 2, 3, 4, 5, 6, 7];
  const { projector, journal } = await projectorRig(t, recording, { owned: () => shards, totalShards: 8, pollMs: 60_000, wakeDelayMs: 200 });
  for (const shard of shards) await journal(`test:g${shard}`, shard);
  for (const shard of shards) projector.wake('test', shard);
  // (On a shared server another test's open transaction can hold rows back: the next wake-up finds them.)
  t.true(await eventually(async () => {
    if (seen.length < shards.length) for (const shard of shards) projector.wake('test', shard);
    return seen.length >= shards.length;
  }, 60_000, 1_000));
  t.deepEqual([...seen].sort(), shards.map((s) => `test:g${s}`).sort(), 'each row once');
  t.true(calls.length <= 4, `${calls.length} transactions for 8 shards: ${JSON.stringify(calls)}`);
  t.true(Math.max(...calls.map((c) => c.length)) >= 2, `the rows of several shards in one apply: ${JSON.stringify(calls)}`);
  t.true(calls.every((c) => c.every((s) => s % 2 === c[0]! % 2)), `each transaction takes one group's shards (even or odd): ${JSON.stringify(calls)}`);
});

test('shardGroups: at most `count` groups, disjoint, each in shard order, together the shards given', (t) => {
  t.deepEqual(shardGroups([5, 0, 3, 1, 2, 4], 2), [[0, 2, 4], [1, 3, 5]]);
  t.deepEqual(shardGroups([7], 2), [[7]]);
  t.deepEqual(shardGroups([], 2), []);
  t.deepEqual(shardGroups([2, 1], 0), [[1, 2]]);
});

test('a shard whose offset the fence refuses is left out of its group\'s batch: the other shards of the group are still projected', async (t) => {
  // A batch of a group is one transaction, rolled back whole when one shard's offset is refused
  // (another node holds its epoch). The others go on without it, as a batch per shard did.
  const { orm, client } = await databaseRig(t);
  // This node writes with epoch 1; shard 2's current epoch is 2 (another node took it).
  await client.query('insert into shard_epoch (shard, epoch, owner) values (0, 1, $1), (1, 1, $1), (2, 2, $2), (3, 1, $1)', ['us', 'them']);
  let refusals = 0;
  const fence: WriteFence = { epochOf: () => 1, refused(shard, e, what) { refusals++; return new ShardFencedError(shard, e, what); } };
  const seen: string[] = [];
  const recording: Projection = { name: 'fenced-group', kind: 'test', tables: [], async apply(_sql, rows: readonly JournalRow[]) { seen.push(...rows.map((r) => r.key)); } };
  const record = JSON.stringify({ v: 1, cmd: 'c', at: 0, events: [], tells: [], timersSet: [], timersCancelled: [] });
  for (const shard of [0, 1, 2, 3]) {
    await client.query(`insert into journal (persistence_key, sequence_nr, data, tags, shard) values ($1, 1, $2, '[]', $3)`, [`test:f${shard}`, record, shard]);
  }
  const projector = new Projector({ orm, projections: [recording], owned: () => [0, 1, 2, 3], totalShards: 4, fence, pollMs: 100, shardsAtOnce: 1 });
  projector.start();
  t.teardown(() => projector.stop());
  t.true(await eventually(async () => {
    const { rows } = await client.query<{ shard: number }>('select shard from projection_offset order by shard');
    return rows.map((r) => r.shard).join() === '0,1,3';
  }, 60_000), 'the offsets of shards 0, 1 and 3 moved');
  t.true(refusals > 0);
  t.regex(projector.status()[0]!.lastError ?? '', /refused/);
  const { rows } = await client.query<{ shard: number }>('select shard from projection_offset order by shard');
  t.deepEqual(rows.map((r) => r.shard), [0, 1, 3], 'never shard 2');
});

test('insertColumns quotes its arrays itself: text that array syntax or SQL would read otherwise, nulls and numbers come back as written', async (t) => {
  // Each column travels as an array literal (arrayLiteral) inside an SQL literal (sqlLiteral): both must quote.
  const texts = ["it's", 'back\\slash \\\\ two', '{a,b}', 'comma, and "quotes"', 'NULL', ' spaced ', 'a ? b $1 $$', 'quote "inside" and \n newline', 'émoji 🚕', ''];
  const db = await freshDatabase();
  databases.push(db);
  const orm = await openOrm({ url: db.url, poolMax: 2 });
  t.teardown(() => orm.close(true));
  const rows = texts.map((text, i) => ({ id: `r${i}`, text, n: i % 3 === 0 ? null : i * 1.5 - 2, at: new Date(Date.UTC(2026, 0, 1, i)).toISOString() }));
  const back = await inTransaction(orm, async (sql) => {
    await sql('create temporary table quoted (id text primary key, text text, n double precision, at timestamptz)');
    await insertColumns(sql, 'quoted', ['id'], { id: 'text', text: 'text', n: 'double precision', at: 'timestamptz' }, {
      id: rows.map((r) => r.id), text: rows.map((r) => r.text), n: rows.map((r) => r.n), at: rows.map((r) => r.at),
    }, 'on conflict do nothing');
    return sql<{ id: string; text: string; n: number | null; at: Date }>('select id, text, n, at from quoted order by id');
  });
  t.deepEqual(back.map((r) => ({ ...r, at: new Date(r.at).toISOString() })), [...rows].sort((a, b) => a.id.localeCompare(b.id)));
});

test('insertMany quotes its rows itself: quotes, backslashes, question marks and dollar signs in text come back as written', async (t) => {
  // The rows travel as one SQL literal that insertMany writes (sqlLiteral, as pg's escapeLiteral), not as a parameter of `sql`.
  const texts = ["it's", 'back\\slash \\\\ two', 'a ? b ?? c \\?', '$1 $$ $tag$', 'quote "inside" and \n newline', 'émoji 🚕', ''];
  for (const text of texts) t.is(sqlLiteral(text), pg.Client.prototype.escapeLiteral(text), text);
  const db = await freshDatabase();
  databases.push(db);
  const orm = await openOrm({ url: db.url, poolMax: 2 });
  t.teardown(() => orm.close(true));
  const rows = texts.map((text, i) => ({ id: `r${i}`, text }));
  const back = await inTransaction(orm, async (sql) => {
    await sql('create temporary table quoted (id text primary key, text text)');
    await insertMany(sql, 'quoted', ['id'], { id: 'text', text: 'text' }, rows, 'on conflict do nothing');
    return sql<{ id: string; text: string }>('select id, text from quoted order by id');
  });
  t.deepEqual(back, [...rows].sort((a, b) => a.id.localeCompare(b.id)));
});
