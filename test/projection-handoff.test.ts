// Projections in a cluster: each node projects the shards it owns, and when a shard moves
// to a node that joins, the new owner resumes from the offset stored with the view, so
// nothing is left out and nothing is projected twice. Real Kafka, PostgreSQL and Redis;
// two node processes; bookings made and cancelled through both while the shards move.

import test from 'ava';
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { TEST_CLUSTER_KEY, TEST_DATA_KEYS, freshDatabase, kafkaBrokers, redisUrl } from './helpers/services.ts';
import { eventually, startNodeProcess, type NodeProcess } from './helpers/node-process.ts';
import { journalTruthDiff } from './helpers/journal-truth.ts';

const SECRET = 'projection-handoff-secret-of-some-length';
const sign = (sub: string, role: string) => new SignJWT({ role }).setProtectedHeader({ alg: 'HS256' }).setSubject(sub)
  .setIssuer('dispatch').setIssuedAt().setExpirationTime('1h').sign(new TextEncoder().encode(SECRET));

interface Projection { name: string; lagMs: number; shards: number; rowsProjected: number }
interface ClusterView { nodes: string[]; shards: { shard: number; node: string | null }[]; projections: Projection[] }

test('a shard moved to a joining node: its projections resume where the old owner stopped, views equal the journal', async (t) => {
  t.timeout(420_000);
  const db = await freshDatabase();
  t.teardown(() => db.drop());
  const env = {
    MODE: 'cluster', KAFKA_BROKERS: await kafkaBrokers(), DATABASE_URL: db.url, REDIS_URL: await redisUrl(),
    JWT_SECRET: SECRET, QUOTE_SECRET: `${SECRET}-quotes`, ...TEST_DATA_KEYS, ...TEST_CLUSTER_KEY, KAFKA_TOPIC_PREFIX: `p${randomUUID().slice(0, 8)}`,
    KAFKA_SESSION_TIMEOUT_MS: '6000', SHARDS: '8', ASK_TIMEOUT_MS: '5000', LOG_LEVEL: 'info',
    RATE_LIMIT_BOOKINGS_PER_MIN: '100000', RATE_LIMIT_API_PER_MIN: '100000',
  };
  const start = async (id: string) => {
    const node = await startNodeProcess('main.ts', { ...env, NODE_ID: id, DATA_DIR: mkdtempSync(join(tmpdir(), `${id}-`)) }, 120_000);
    t.teardown(() => node.kill('SIGKILL'));
    return node;
  };
  const admin = await sign('ops', 'admin');
  const cluster = async (node: NodeProcess) =>
    (await fetch(`${node.url}/v1/admin/cluster`, { headers: { authorization: `Bearer ${admin}` } }).then((r) => r.json())) as ClusterView;
  const riders = await Promise.all(Array.from({ length: 4 }, (_, i) => sign(`handoff-rider-${i}`, 'rider')));

  const nodes: NodeProcess[] = [await start('h1')];
  t.true(await eventually(async () => (await fetch(`${nodes[0]!.url}/ready`)).status === 200, 120_000));

  // Scheduled bookings (no driver needed), half of them cancelled, through whichever node is up.
  let running = true;
  let made = 0;
  const load = Promise.all(riders.map(async (rider, r) => {
    for (let n = 0; running; n++) {
      const node = nodes[(r + n) % nodes.length]!;
      const headers = { 'content-type': 'application/json', authorization: `Bearer ${rider}` };
      const res = await fetch(`${node.url}/v1/bookings`, {
        method: 'POST', headers: { ...headers, 'idempotency-key': `h-${r}-${n}` },
        body: JSON.stringify({ pickup: { lat: 52.52, lng: 13.405 }, dropoff: { lat: 52.5, lng: 13.42 }, vehicleType: 'economy', scheduledAt: new Date(Date.now() + 3_600_000).toISOString() }),
      }).then(async (x) => ({ status: x.status, body: await x.json() as { id: string } }), () => undefined);
      if (res?.status !== 201) { await new Promise((w) => setTimeout(w, 200)); continue; }
      made++;
      if (n % 2 === 0) await fetch(`${node.url}/v1/bookings/${res.body.id}/cancel`, { method: 'POST', headers, body: '{}' }).catch(() => undefined);
    }
  }));

  t.true(await eventually(async () => made >= 20, 120_000), 'bookings are made before the join');
  nodes.push(await start('h2'));
  t.true(await eventually(async () => {
    const v = await cluster(nodes[0]!);
    return v.nodes.length === 2 && v.shards.some((s) => s.node === 'h2') && v.shards.every((s) => s.node !== null);
  }, 120_000), 'the second node takes shards');
  const afterJoin = made;
  t.true(await eventually(async () => made >= afterJoin + 20, 120_000), 'bookings go on after the join');
  running = false;
  await load;

  // Both nodes project their own shards, and catch up.
  t.true(await eventually(async () => {
    const views = await Promise.all(nodes.map(cluster));
    return views.every((v) => v.projections.length > 0 && v.projections.every((p) => p.lagMs === 0 && p.shards > 0));
  }, 120_000), 'each node projects the shards it owns and catches up');
  const h2 = await cluster(nodes[1]!);
  t.true(h2.projections.find((p) => p.name === 'bookings')!.rowsProjected > 0, 'the new owner projected rows of the shards it gained');

  // Exactly once across the hand-off: the views equal the fold over the journal (a row
  // projected by both owners would count twice in analytics; one skipped would be missing).
  let diff: string[] = [];
  t.true(await eventually(async () => (diff = await journalTruthDiff(db.url)).length === 0, 120_000, 500), diff.slice(0, 10).join('\n'));
  t.log(`${made} bookings, ${afterJoin} before the join`);
});
