// Several node processes on real Kafka, PostgreSQL and Redis: scale out under load,
// a node killed under load, and asks answered across nodes.

import test, { type ExecutionContext } from 'ava';
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT } from 'jose';
import { TEST_CLUSTER_KEY, TEST_DATA_KEYS, freshDatabase, kafkaBrokers, redisUrl } from './helpers/services.ts';
import { eventually, startNodeProcess, type NodeProcess } from './helpers/node-process.ts';

const FIXTURE = 'test/fixtures/counter-node.ts';
const SHARDS = 12;
const SECRET = 'cluster-test-secret-of-some-length';
const QUOTE_SECRET = 'cluster-test-quote-key-shared-by-all-nodes';

interface Counter { total: number; applied: number }
interface ClusterView { nodeId: string; nodes: string[]; shards: { shard: number; node: string | null; actors: number | null }[] }

/** Each test gets its own topic, consumer group and entity ids: PostgreSQL outlives test runs. */
const databases: { drop(): Promise<void> }[] = [];

async function clusterEnv(): Promise<Record<string, string>> {
  const db = await freshDatabase();
  databases.push(db);
  return {
    MODE: 'cluster',
    KAFKA_BROKERS: await kafkaBrokers(),
    DATABASE_URL: db.url,
    REDIS_URL: await redisUrl(),
    JWT_SECRET: SECRET,
    QUOTE_SECRET: QUOTE_SECRET,
    ...TEST_DATA_KEYS,
    ...TEST_CLUSTER_KEY,
    KAFKA_TOPIC_PREFIX: `t${randomUUID().slice(0, 8)}`,
    KAFKA_SESSION_TIMEOUT_MS: '6000',
    SHARDS: String(SHARDS),
    ASK_TIMEOUT_MS: '3000',
    LOG_LEVEL: 'warn',
  };
}

async function startMember(t: ExecutionContext, env: Record<string, string>, nodeId: string): Promise<NodeProcess> {
  const node = await startNodeProcess(FIXTURE, { ...env, NODE_ID: nodeId, DATA_DIR: mkdtempSync(join(tmpdir(), `${nodeId}-`)) }, 60_000);
  t.teardown(() => node.kill('SIGKILL'));
  return node;
}

const adminToken = await new SignJWT({ role: 'admin' }).setProtectedHeader({ alg: 'HS256' }).setSubject('ops')
  .setIssuer('dispatch').setIssuedAt().setExpirationTime('1h').sign(new TextEncoder().encode(SECRET));

async function view(node: NodeProcess): Promise<ClusterView> {
  const res = await fetch(`${node.url}/v1/admin/cluster`, { headers: { authorization: `Bearer ${adminToken}` } });
  if (!res.ok) throw new Error(`cluster view: ${res.status}`);
  return (await res.json()) as ClusterView;
}

async function membersAre(node: NodeProcess, ids: string[]): Promise<boolean> {
  const v = await view(node);
  return JSON.stringify([...v.nodes].sort()) === JSON.stringify([...ids].sort()) && v.shards.every((s) => s.node !== null);
}

async function read(node: NodeProcess, id: string): Promise<Counter> {
  const res = await fetch(`${node.url}/counter/${id}`, { signal: AbortSignal.timeout(5_000) });
  if (!res.ok) throw new Error(`read ${id}: ${res.status}`);
  return (await res.json()) as Counter;
}

/**
 * Sends +1 commands to entities round-robin across the live nodes. A command is
 * retried with the same id (on another node if need be) until one node accepts it,
 * so every command counted here was accepted exactly once as far as the client knows.
 */
function loadGenerator(nodes: () => NodeProcess[], ids: string[]) {
  const sent = new Map(ids.map((id) => [id, 0]));
  let running = true;
  let i = 0;
  const done = (async () => {
    while (running) {
      const id = ids[i % ids.length]!;
      const cmd = `c${i}-${randomUUID().slice(0, 6)}`;
      for (let attempt = 0; ; attempt++) {
        const live = nodes();
        const node = live[(i + attempt) % live.length]!;
        const ok = await fetch(`${node.url}/counter/${id}/add?n=1&cmd=${cmd}`, { method: 'POST', signal: AbortSignal.timeout(5_000) })
          .then((r) => r.status === 202, () => false);
        if (ok) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      sent.set(id, sent.get(id)! + 1);
      i++;
    }
  })();
  return { sent, stop: async () => { running = false; await done; } };
}

async function allApplied(node: NodeProcess, sent: Map<string, number>): Promise<boolean> {
  for (const [id, count] of sent) {
    const state = await read(node, id);
    if (state.total !== count) return false;
  }
  return true;
}

test.after.always(async () => { await Promise.all(databases.map((d) => d.drop())); });

test.serial('a node joining under load takes its share of shards and nothing is lost or doubled', async (t) => {
  const env = await clusterEnv();
  const n1 = await startMember(t, env, 'n1');
  const n2 = await startMember(t, env, 'n2');
  t.true(await eventually(() => membersAre(n1, ['n1', 'n2']), 60_000), 'two members share the shards');
  const before = await view(n1);

  const members = [n1, n2];
  const ids = Array.from({ length: 40 }, (_, i) => `${env.KAFKA_TOPIC_PREFIX}-scale-${i}`);
  const load = loadGenerator(() => members, ids);
  // Readers check that no answer is ever wrong: totals only grow, even while shards move.
  const seen = new Map<string, number>();
  let wrong = 0;
  let reads = 0;
  let reading = true;
  const reader = (async () => {
    for (let k = 0; reading; k++) {
      const id = ids[k % ids.length]!;
      const state = await read(members[k % members.length]!, id).catch(() => undefined);
      if (!state) continue;
      reads++;
      if (state.total < (seen.get(id) ?? 0) || state.total > load.sent.get(id)! + 1) wrong++;
      seen.set(id, Math.max(seen.get(id) ?? 0, state.total));
    }
  })();
  await new Promise((r) => setTimeout(r, 2_000));

  const joinedAt = Date.now();
  const n3 = await startMember(t, env, 'n3');
  members.push(n3);
  t.true(await eventually(() => membersAre(n3, ['n1', 'n2', 'n3']), 60_000), 'the third node joined');
  t.log(`node joined and owns shards ${Date.now() - joinedAt} ms after its process started`);
  await new Promise((r) => setTimeout(r, 3_000));
  await load.stop();
  reading = false;
  await reader;

  t.true(await eventually(() => allApplied(n3, load.sent), 60_000), 'every accepted command applied');
  for (const [id, count] of load.sent) {
    const state = await read(n1, id);
    t.is(state.applied, count, `${id}: each command applied exactly once`);
  }
  const after = await view(n1);
  const moved = after.shards.filter((s) => before.shards[s.shard]!.node !== s.node);
  t.true(moved.every((s) => s.node === 'n3'), 'shards only moved to the new node');
  t.true(moved.length <= Math.ceil(SHARDS / 3) + 1, `moved ${moved.length} of ${SHARDS}`);
  t.true(moved.length >= Math.floor(SHARDS / 3), 'the new node took its share');
  t.is(wrong, 0, `no read returned a wrong total (${reads} reads while shards moved)`);
  const total = [...load.sent.values()].reduce((a, b) => a + b, 0);
  t.log(`${total} commands, ${moved.length}/${SHARDS} shards moved to n3, ${reads} reads during the move`);
});

test.serial('a node killed under load: its shards resume on the survivors with nothing lost or doubled', async (t) => {
  const env = await clusterEnv();
  const n1 = await startMember(t, env, 'n1');
  const n2 = await startMember(t, env, 'n2');
  const n3 = await startMember(t, env, 'n3');
  t.true(await eventually(() => membersAre(n1, ['n1', 'n2', 'n3']), 60_000));
  const members = [n1, n2, n3];
  const ids = Array.from({ length: 30 }, (_, i) => `${env.KAFKA_TOPIC_PREFIX}-crash-${i}`);
  const load = loadGenerator(() => members, ids);
  await new Promise((r) => setTimeout(r, 2_000));
  await n3.kill('SIGKILL');
  members.splice(members.indexOf(n3), 1);
  const killedAt = Date.now();
  t.true(await eventually(() => membersAre(n1, ['n1', 'n2']), 60_000), 'the survivors own every shard');
  t.log(`shards reassigned ${Date.now() - killedAt} ms after SIGKILL (session timeout 6 s)`);
  await new Promise((r) => setTimeout(r, 2_000));
  await load.stop();
  t.true(await eventually(() => allApplied(n2, load.sent), 60_000), 'every accepted command applied');
  for (const [id, count] of load.sent) t.is((await read(n1, id)).applied, count, `${id} applied exactly once`);
});

test.serial('an ask reaches the owner on another node and answers from it', async (t) => {
  const env = await clusterEnv();
  const n1 = await startMember(t, env, 'n1');
  const n2 = await startMember(t, env, 'n2');
  t.true(await eventually(() => membersAre(n1, ['n1', 'n2']), 60_000));
  const map = await view(n1);
  const ids = Array.from({ length: 20 }, (_, i) => `${env.KAFKA_TOPIC_PREFIX}-ask-${i}`);
  for (const [i, id] of ids.entries()) {
    for (let k = 0; k <= i; k++) {
      const res = await fetch(`${n1.url}/counter/${id}/add?n=1`, { method: 'POST' });
      t.is(res.status, 202);
    }
  }
  // Commands to different shards travel different partitions: wait for all of them, not just the last sent.
  t.true(await eventually(async () => {
    for (const [i, id] of ids.entries()) if ((await read(n2, id)).total !== i + 1) return false;
    return true;
  }, 20_000));
  const owners = new Set(map.shards.map((s) => s.node));
  t.deepEqual([...owners].sort(), ['n1', 'n2'], 'both nodes own shards, so some asks cross nodes');
  for (const [i, id] of ids.entries()) {
    t.is((await read(n1, id)).total, i + 1, `${id} via n1`);
    t.is((await read(n2, id)).total, i + 1, `${id} via n2`);
  }
});

test.serial('a quote made on one node books on another, once', async (t) => {
  t.timeout(300_000);
  const env = await clusterEnv();
  const start = async (id: string) => {
    const node = await startNodeProcess('main.ts', { ...env, LOG_LEVEL: 'info', NODE_ID: id, DATA_DIR: mkdtempSync(join(tmpdir(), `${id}-`)) }, 120_000);
    t.teardown(() => node.kill('SIGKILL'));
    return node;
  };
  // One after the other: two members joining an empty group at once rebalance twice.
  const n1 = await start('q1');
  const n2 = await start('q2');
  t.true(await eventually(async () => (await fetch(`${n2.url}/ready`)).status === 200 && (await fetch(`${n1.url}/ready`)).status === 200, 120_000));
  const rider = await new SignJWT({ role: 'rider' }).setProtectedHeader({ alg: 'HS256' }).setSubject('cross-node-rider')
    .setIssuer('dispatch').setIssuedAt().setExpirationTime('1h').sign(new TextEncoder().encode(SECRET));
  const post = (node: NodeProcess, path: string, body: unknown, key?: string) => fetch(`${node.url}${path}`, {
    method: 'POST', body: JSON.stringify(body),
    headers: { 'content-type': 'application/json', authorization: `Bearer ${rider}`, ...(key ? { 'idempotency-key': key } : {}) },
  }).then(async (r) => ({ status: r.status, body: await r.json() as any }));
  const quote = await post(n1, '/v1/quotes', { pickup: { lat: 52.52, lng: 13.405 }, dropoff: { lat: 52.5, lng: 13.42 }, vehicleType: 'economy' });
  t.is(quote.status, 201);
  const scheduledAt = new Date(Date.now() + 3_600_000).toISOString();
  const booked = await post(n2, '/v1/bookings', { quoteId: quote.body.quoteId, scheduledAt }, 'first');
  t.is(booked.status, 201, JSON.stringify(booked.body));
  t.deepEqual(booked.body.price, quote.body.price);
  const again = await post(n1, '/v1/bookings', { quoteId: quote.body.quoteId, scheduledAt }, 'second');
  t.is(again.status, 409);
  t.is(again.body.error.code, 'quote_used');
});

test.serial('every node knows the owner of every shard right after rebalances, also when members join at once', async (t) => {
  t.timeout(300_000);
  const env = await clusterEnv();
  // Joining together makes the group rebalance while it is still settling: the case where
  // the map used to shrink to a node's own shards until the next rebalance.
  const [n1, n2] = await Promise.all([startMember(t, env, 'n1'), startMember(t, env, 'n2')]);
  const whole = async () => {
    const [a, b] = await Promise.all([view(n1), view(n2)]);
    const same = JSON.stringify(a.shards.map((s) => s.node)) === JSON.stringify(b.shards.map((s) => s.node));
    return same && a.shards.every((s) => s.node === 'n1' || s.node === 'n2') && new Set(a.shards.map((s) => s.node)).size === 2;
  };
  t.true(await eventually(whole, 60_000), 'both nodes hold the same whole map');
  const n3 = await startMember(t, env, 'n3');
  t.true(await eventually(async () => {
    const views = await Promise.all([n1, n2, n3].map(view));
    const maps = views.map((v) => JSON.stringify(v.shards.map((s) => s.node)));
    return new Set(maps).size === 1 && views[0]!.shards.every((s) => s.node !== null) && new Set(views[0]!.shards.map((s) => s.node)).size === 3;
  }, 60_000), 'after a third joins, all three hold the same whole map');
  // Every node answers for entities on every shard (asks cross nodes through the map).
  const ids = Array.from({ length: 24 }, (_, i) => `${env.KAFKA_TOPIC_PREFIX}-map-${i}`);
  for (const id of ids) t.is((await fetch(`${n1.url}/counter/${id}/add?n=1&cmd=${id}`, { method: 'POST' })).status, 202);
  t.true(await eventually(async () => {
    for (const node of [n1, n2, n3]) for (const id of ids) if ((await read(node, id)).total !== 1) return false;
    return true;
  }, 60_000), 'every node reads every entity');
});

test.serial('a node paused past its session that gets its old shards back answers with the current state and serves them all', async (t) => {
  t.timeout(300_000);
  const env = await clusterEnv();
  const SESSION_MS = Number(env.KAFKA_SESSION_TIMEOUT_MS);
  const n1 = await startMember(t, env, 'n1');
  const n2 = await startMember(t, env, 'n2');
  const n3 = await startMember(t, env, 'n3');
  t.true(await eventually(() => membersAre(n1, ['n1', 'n2', 'n3']), 60_000));
  const ids = Array.from({ length: 48 }, (_, i) => `${env.KAFKA_TOPIC_PREFIX}-pause-${i}`);
  // Every entity active on its owner, n3's included: +1 each, read back through n3.
  for (const id of ids) t.is((await fetch(`${n3.url}/counter/${id}/add?n=1&cmd=${id}-a`, { method: 'POST' })).status, 202);
  t.true(await eventually(async () => { for (const id of ids) if ((await read(n3, id)).total !== 1) return false; return true; }, 60_000));
  const before = await view(n1);
  const n3Shards = new Set(before.shards.filter((s) => s.node === 'n3').map((s) => s.shard));

  // n3 stops answering (SIGSTOP) past its session: the others take its shards, and every entity gets +10 through n1.
  n3.child.kill('SIGSTOP');
  try {
    t.true(await eventually(() => membersAre(n1, ['n1', 'n2']), 60_000), 'the others took n3\'s shards');
    for (const id of ids) t.is((await fetch(`${n1.url}/counter/${id}/add?n=10&cmd=${id}-b`, { method: 'POST' })).status, 202);
    t.true(await eventually(async () => { for (const id of ids) if ((await read(n1, id)).total !== 11) return false; return true; }, 60_000));
    await new Promise((r) => setTimeout(r, SESSION_MS));
  } finally {
    n3.child.kill('SIGCONT');
  }
  t.true(await eventually(() => membersAre(n1, ['n1', 'n2', 'n3']), 60_000), 'n3 is back in the group');
  const after = await view(n1);
  const back = after.shards.filter((s) => s.node === 'n3' && n3Shards.has(s.shard)).map((s) => s.shard);
  t.log(`n3 got back ${back.length} of its ${n3Shards.size} old shards: ${back.join(', ')}`);
  t.true(back.length > 0, 'the case under test: n3 serves some of its old shards again');
  // Reads through n3 answer the current state, and stay so (a stale copy would answer 1).
  for (let round = 0; round < 3; round++) {
    for (const id of ids) t.is((await read(n3, id)).total, 11, `${id} read through n3, round ${round}`);
    await new Promise((r) => setTimeout(r, 1_000));
  }
  // Commands through n3 are applied, on every shard.
  for (const id of ids) t.is((await fetch(`${n3.url}/counter/${id}/add?n=100&cmd=${id}-c`, { method: 'POST' })).status, 202);
  t.true(await eventually(async () => { for (const id of ids) if ((await read(n2, id)).total !== 111) return false; return true; }, 60_000),
    'every command sent through n3 after its return is applied');
  for (const id of ids) t.is((await read(n3, id)).applied, 3, `${id}: three commands, each applied once`);
  const ready = await fetch(`${n3.url}/ready`);
  t.is(ready.status, 200, await ready.text());
});
