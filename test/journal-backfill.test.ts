// Journal rows written before rows carried their shard are given it at start-up, so the
// projections (which read the journal by shard) see the whole history, not only what
// came after the upgrade.

import test from 'ava';
import pg from 'pg';
import { PostgresJournal } from '../adapters/postgres/journal.ts';
import { startEdge } from './helpers/edge-client.ts';
import { eventually } from './helpers/node-process.ts';
import { freshDatabase } from './helpers/services.ts';

test('rows without a shard get their entity\'s shard, the one the runtime computes', async (t) => {
  const edge = await startEdge({ RATE_LIMIT_BOOKINGS_PER_MIN: '1000' });
  t.teardown(() => edge.stop());
  const rider = await edge.token('backfill-rider', 'rider');
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    const res = await edge.http('POST', '/v1/bookings', { token: rider, body: { pickup: { lat: 52.52, lng: 13.405 }, dropoff: { lat: 52.5, lng: 13.42 }, vehicleType: 'economy', scheduledAt: new Date(Date.now() + 3_600_000).toISOString() } });
    ids.push(res.body.id);
  }
  const sql = (q: string, p: unknown[] = []) => edge.node.storage.orm.em.getConnection().execute(q, p) as Promise<{ persistence_key: string; shard: number | null }[]>;
  // As an older version wrote them.
  await sql(`update journal set shard = null where persistence_key in (${ids.map(() => '?').join(',')})`, ids.map((id) => `booking:${id}`));
  const journal = edge.node.storage.journal as PostgresJournal;
  t.is(await journal.backfillShards(), 3);
  for (const id of ids) {
    const rows = await sql('select persistence_key, shard from journal where persistence_key = ?', [`booking:${id}`]);
    t.true(rows.length > 0);
    for (const r of rows) t.is(Number(r.shard), edge.node.region.shardOf({ kind: 'booking', id }));
  }
  t.is(await journal.backfillShards(), 0, 'nothing left to fill');
});

test('a node started over rows an older version wrote projects them once it has given them their shard', async (t) => {
  const db = await freshDatabase();
  t.teardown(() => db.drop());
  const first = await startEdge({ DATABASE_URL: db.url, RATE_LIMIT_BOOKINGS_PER_MIN: '1000' });
  const rider = await first.token('backfill-rider-2', 'rider');
  const ids: string[] = [];
  for (let i = 0; i < 3; i++) {
    const res = await first.http('POST', '/v1/bookings', { token: rider, body: { pickup: { lat: 52.52, lng: 13.405 }, dropoff: { lat: 52.5, lng: 13.42 }, vehicleType: 'economy', scheduledAt: new Date(Date.now() + 3_600_000).toISOString() } });
    ids.push(res.body.id);
  }
  await first.stop();
  // As if an older version had written them (no shard) and never projected them.
  const client = new pg.Client({ connectionString: db.url });
  await client.connect();
  t.teardown(() => client.end());
  const keys = ids.map((id) => `booking:${id}`);
  await client.query('update journal set shard = null where persistence_key = any($1)', [keys]);
  await client.query('delete from booking_view where id = any($1)', [ids]);

  const next = await startEdge({ DATABASE_URL: db.url });
  t.teardown(() => next.stop());
  const visible = async () => (await client.query('select id from booking_view where id = any($1)', [ids])).rowCount === ids.length;
  t.true(await eventually(visible, 60_000), 'the bookings are in the view again');
  t.is((await client.query('select count(*)::int as n from journal where shard is null')).rows[0].n, 0);
});
