// A node on real PostgreSQL behind a fault-injecting proxy: the database goes away for
// five seconds (connections cut, new ones refused) while riders keep booking. After it
// comes back: every booking acknowledged with 201 is readable and valid, each exactly
// once; no shard stays stuck; nothing was dead-lettered; the node is ready again.

import test from 'ava';
import { randomUUID } from 'node:crypto';
import { startEdge } from './helpers/edge-client.ts';
import { faultProxy } from './helpers/fault-proxy.ts';
import { eventually } from './helpers/node-process.ts';
import { freshDatabase } from './helpers/services.ts';

const P = { lat: 52.52, lng: 13.405 };
const D = { lat: 52.5, lng: 13.42 };

test('a 5 s PostgreSQL outage under load: every acknowledged booking readable once, no shard left stuck', async (t) => {
  const db = await freshDatabase();
  const target = new URL(db.url);
  const proxy = await faultProxy({ target: { host: target.hostname, port: Number(target.port || 5432) } });
  t.teardown(async () => { await proxy.close(); await db.drop(); });
  const edge = await startEdge({ DATABASE_URL: proxy.rewrite(db.url), RATE_LIMIT_BOOKINGS_PER_MIN: '100000', RATE_LIMIT_API_PER_MIN: '100000', ASK_TIMEOUT_MS: '2000', LOG_LEVEL: process.env.TEST_LOG_LEVEL ?? 'silent' });
  t.teardown(() => edge.stop());
  const admin = await edge.token('outage-ops', 'admin');
  const riders = await Promise.all(Array.from({ length: 8 }, (_, i) => edge.token(`outage-r${i}-${randomUUID().slice(0, 4)}`, 'rider')));
  const acknowledged: { id: string; rider: string }[] = [];
  let running = true;
  const load = Promise.all(riders.map(async (rider, i) => {
    for (let n = 0; running; n++) {
      const key = `o-${i}-${n}`;
      const res = await edge.http('POST', '/v1/bookings', {
        token: rider, headers: { 'idempotency-key': key },
        body: { pickup: P, dropoff: D, vehicleType: 'economy', scheduledAt: new Date(Date.now() + 3_600_000).toISOString() },
      }).catch(() => undefined);
      if (res?.status === 201) acknowledged.push({ id: res.body.id, rider });
      else await new Promise((r) => setTimeout(r, 100));
    }
  }));
  await eventually(async () => acknowledged.length >= 8);
  const before = acknowledged.length;
  // Measured, not asserted: how long shards were held (for the operator's docs).
  let longestHold = 0;
  const sampler = setInterval(() => { for (const s of edge.node.region.stuckShards()) longestHold = Math.max(longestHold, s.seconds); }, 100);
  proxy.cut();
  await proxy.refuse(true);
  await new Promise((r) => setTimeout(r, 5_000));
  await proxy.heal();
  t.true(await eventually(async () => acknowledged.length > before + 8, 120_000), 'bookings succeed again after the outage');
  running = false;
  await load;
  clearInterval(sampler);
  t.log(`longest a shard was held by the 5 s outage: ${longestHold.toFixed(1)} s`);

  for (const { id, rider } of acknowledged) {
    const res = await edge.http('GET', `/v1/bookings/${id}`, { token: rider });
    t.is(res.status, 200, id);
    t.is(res.body.status, 'scheduled', id);
  }
  t.is(new Set(acknowledged.map((a) => a.id)).size, acknowledged.length, 'each acknowledged booking once');
  t.true(await eventually(async () => edge.node.region.stuckShards().length === 0), 'no shard left stuck');
  t.is((await edge.http('GET', '/v1/admin/dead-letters', { token: admin })).body.items.length, 0, 'an outage dead-letters nothing');
  t.true(await eventually(async () => (await edge.http('GET', '/ready')).status === 200));
});
