// The fault-injecting TCP proxy (test/helpers/fault-proxy.ts) in front of the real
// PostgreSQL that .ci/with-services.sh provides: what each fault does to a client, and a
// node behind it that goes unready when its database is cut off and ready again after.

import test from 'ava';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { dispatchBehaviors, dispatchServices } from '../actors/index.ts';
import { countsAsOutage } from '../adapters/resilience.ts';
import { loadConfig } from '../config/index.ts';
import { startNode } from '../node.ts';
import { faultProxy, type FaultProxy } from './helpers/fault-proxy.ts';
import { eventually } from './helpers/node-process.ts';
import { databaseUrl, freshDatabase, kafkaBrokers } from './helpers/services.ts';

async function proxyToPostgres(t: { teardown(fn: () => unknown): void }): Promise<{ proxy: FaultProxy; url: string }> {
  const direct = new URL(await databaseUrl());
  const proxy = await faultProxy({ target: { host: direct.hostname, port: Number(direct.port || 5432) } });
  t.teardown(() => proxy.close());
  return { proxy, url: proxy.rewrite(direct.toString()) };
}

async function client(t: { teardown(fn: () => unknown): void }, url: string): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: url });
  c.on('error', () => undefined); // a cut connection is also reported as an event
  await c.connect();
  t.teardown(() => c.end().catch(() => undefined));
  return c;
}

/** Until PostgreSQL shows this client's statement running (so it is in flight through the proxy). */
async function running(t: { teardown(fn: () => unknown): void }, text: string): Promise<boolean> {
  const admin = await client(t, await databaseUrl());
  return eventually(async () => (await admin.query('select 1 from pg_stat_activity where query = $1 and state = $2', [text, 'active'])).rowCount === 1, 30_000);
}

test('queries pass through the proxy, and rewrite() points a URL at it', async (t) => {
  const { proxy, url } = await proxyToPostgres(t);
  t.is(new URL(url).port, String(proxy.port));
  const c = await client(t, url);
  t.deepEqual((await c.query('select 40 + 2 as answer')).rows, [{ answer: 42 }]);
  t.is(proxy.connections(), 1);
  t.is(proxy.accepted(), 1);
});

test('cut() closes live connections: a query in flight fails with a connection error (an outage)', async (t) => {
  const { proxy, url } = await proxyToPostgres(t);
  const c = await client(t, url);
  const sleepText = 'select pg_sleep(20) /* cut */';
  const inFlight = c.query(sleepText).then(() => undefined, (e: unknown) => e as Error);
  t.true(await running(t, sleepText));
  proxy.cut();
  const error = await inFlight;
  t.regex(error?.message ?? '', /Connection terminated unexpectedly/);
  t.true(countsAsOutage(error), 'the circuit breaker counts it');
  t.is(proxy.connections(), 0);
  // The proxy still accepts: a new connection works.
  t.deepEqual((await (await client(t, url)).query('select 1 as ok')).rows, [{ ok: 1 }]);
});

test('reset() resets live connections: the client sees ECONNRESET', async (t) => {
  const { proxy, url } = await proxyToPostgres(t);
  const c = await client(t, url);
  const sleepText = 'select pg_sleep(20) /* reset */';
  const inFlight = c.query(sleepText).then(() => undefined, (e: unknown) => e as NodeJS.ErrnoException);
  t.true(await running(t, sleepText));
  proxy.reset();
  const error = await inFlight;
  t.is(error?.code, 'ECONNRESET');
  t.true(countsAsOutage(error));
});

test('refuse(true) makes new connections fail with ECONNREFUSED; live ones go on; heal() accepts again', async (t) => {
  const { proxy, url } = await proxyToPostgres(t);
  const live = await client(t, url);
  await proxy.refuse(true);
  const refused = new pg.Client({ connectionString: url });
  refused.on('error', () => undefined);
  const error = await refused.connect().then(() => undefined, (e: unknown) => e as NodeJS.ErrnoException);
  t.is(error?.code, 'ECONNREFUSED');
  t.true(countsAsOutage(error));
  t.deepEqual((await live.query('select 1 as still')).rows, [{ still: 1 }], 'a connection made before goes on');

  await proxy.heal();
  t.deepEqual((await (await client(t, url)).query('select 2 as back')).rows, [{ back: 2 }]);
  t.is(proxy.port, Number(new URL(url).port), 'the same port');
});

test('delay(ms) holds every chunk at least that long, both ways; delay(0) and heal() end it', async (t) => {
  const { proxy, url } = await proxyToPostgres(t);
  const c = await client(t, url);
  proxy.delay(400);
  const started = performance.now();
  t.deepEqual((await c.query('select 1 as slow')).rows, [{ slow: 1 }]);
  // A lower bound only: the proxy cannot deliver earlier than the delay, a slow machine only later.
  t.true(performance.now() - started >= 2 * 400 - 5, 'the query and its answer were each held');
  proxy.delay(0);
  t.deepEqual((await c.query('select 2 as quick')).rows, [{ quick: 2 }]);
  proxy.delay(400);
  await proxy.heal();
  t.deepEqual((await c.query('select 3 as healed')).rows, [{ healed: 3 }]);
});

test('delayed chunks keep their order, even when the delay is lifted while they are held', async (t) => {
  // A byte stream shows the order directly (a PostgreSQL client sends one query at a time).
  const echo = createServer((socket) => socket.pipe(socket));
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => echo.close(() => resolve())));
  const proxy = await faultProxy({ target: { host: '127.0.0.1', port: (echo.address() as { port: number }).port } });
  t.teardown(() => proxy.close());
  const socket = connect({ host: proxy.host, port: proxy.port });
  t.teardown(() => socket.destroy());
  await new Promise((resolve) => socket.once('connect', resolve));
  let received = '';
  socket.on('data', (chunk) => { received += chunk.toString(); });
  proxy.delay(300);
  socket.write('first,');
  await new Promise((resolve) => setTimeout(resolve, 50));
  proxy.delay(0);
  socket.write('second,');
  socket.write('third');
  t.true(await eventually(async () => received.length === 'first,second,third'.length, 30_000, 20));
  t.is(received, 'first,second,third');
});

test('a node behind the proxy: cut off from PostgreSQL it is not ready, healed it is ready again', async (t) => {
  const database = await freshDatabase();
  t.teardown(() => database.drop());
  const direct = new URL(database.url);
  const proxy = await faultProxy({ target: { host: direct.hostname, port: Number(direct.port || 5432) } });
  t.teardown(() => proxy.close());
  const dir = mkdtempSync(join(tmpdir(), 'dispatch-fault-proxy-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const config = loadConfig({
    MODE: 'embedded', DATABASE_URL: proxy.rewrite(database.url), DATA_DIR: dir, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'silent',
    SHARDS: '4', JWT_SECRET: 'fault-proxy-test-secret-long-enough', KAFKA_BROKERS: '', REDIS_URL: '',
  });
  const node = await startNode({ config, behaviors: dispatchBehaviors(config), services: dispatchServices(config) });
  t.teardown(() => node.stop());
  const ready = async () => (await fetch(`${node.url}/ready`)).status;
  t.true(await eventually(async () => await ready() === 200));
  t.true(proxy.connections() > 0, 'the node reaches PostgreSQL through the proxy');

  await proxy.refuse(true);
  proxy.cut();
  t.true(await eventually(async () => await ready() === 503), 'not ready while PostgreSQL cannot be reached');
  const body = await (await fetch(`${node.url}/ready`)).json() as { error: { code: string; message: string } };
  t.is(body.error.code, 'not_ready');
  t.is((await fetch(`${node.url}/health`)).status, 200, 'alive all the same');

  await proxy.heal();
  t.true(await eventually(async () => await ready() === 200), 'ready again once PostgreSQL answers');
});

// Kafka: brokers advertise their own address (127.0.0.1:9092), so a client given the
// proxy as bootstrap would reach the broker directly after the first metadata request.
// With kafkajs's socketFactory every connection goes through the proxy (see the helper).
test('Kafka through the proxy (every connection, by socketFactory): refused and cut, requests fail; healed, they pass', async (t) => {
  const [first] = (await kafkaBrokers()).split(',');
  const [host, port] = first!.trim().split(':');
  const proxy = await faultProxy({ target: { host: host!, port: Number(port) } });
  t.teardown(() => proxy.close());
  const kafka = new Kafka({
    clientId: 'fault-proxy-test', brokers: [proxy.address], socketFactory: proxy.kafkaSocketFactory(),
    connectionTimeout: 1_000, requestTimeout: 3_000, retry: { retries: 0 }, logLevel: logLevel.NOTHING,
  });
  const admin = kafka.admin();
  await admin.connect();
  t.teardown(() => admin.disconnect());
  t.true(Array.isArray(await admin.listTopics()));
  t.true(proxy.accepted() > 0);

  await proxy.refuse(true);
  proxy.cut();
  await t.throwsAsync(admin.listTopics());

  await proxy.heal();
  t.true(await eventually(async () => Array.isArray(await admin.listTopics()), 30_000, 200));
});
