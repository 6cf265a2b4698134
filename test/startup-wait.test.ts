// A node started while PostgreSQL, Kafka or Redis is not reachable yet waits for it: one
// log line saying so, /health 200 and /ready 503 naming the dependency meanwhile, and
// ready once the dependency answers. Each dependency sits behind a fault proxy that
// refuses connections at first (Kafka: only the bootstrap connection goes through the
// proxy, which is all "not reachable at start" needs).

import test, { type ExecutionContext } from 'ava';
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { faultProxy } from './helpers/fault-proxy.ts';
import { TEST_CLUSTER_KEY, TEST_DATA_KEYS, freshDatabase, kafkaBrokers, redisUrl } from './helpers/services.ts';
import { eventually, freePort, launchNodeProcess } from './helpers/node-process.ts';

const FIXTURE = 'test/fixtures/counter-node.ts';
const databases: { drop(): Promise<void> }[] = [];
test.after.always(async () => { await Promise.all(databases.map((d) => d.drop())); });

type Dependency = 'PostgreSQL' | 'Kafka' | 'Redis';

async function env(): Promise<Record<string, string>> {
  const db = await freshDatabase();
  databases.push(db);
  return {
    MODE: 'cluster', KAFKA_BROKERS: await kafkaBrokers(), DATABASE_URL: db.url, REDIS_URL: await redisUrl(),
    JWT_SECRET: 'startup-test-secret-of-some-length-0123', QUOTE_SECRET: 'startup-test-quote-key-of-some-length-0123', ...TEST_DATA_KEYS, ...TEST_CLUSTER_KEY,
    KAFKA_TOPIC_PREFIX: `s${randomUUID().slice(0, 8)}`, KAFKA_SESSION_TIMEOUT_MS: '6000', SHARDS: '4',
    STARTUP_TIMEOUT_MS: '600000', NODE_ID: 'waiter', DATA_DIR: mkdtempSync(join(tmpdir(), 'waiter-')),
  };
}

/** The dependency's variable pointed at a proxy in front of it, which refuses connections for now. */
async function behindClosedProxy(t: ExecutionContext, dependency: Dependency, base: Record<string, string>) {
  const name = { PostgreSQL: 'DATABASE_URL', Kafka: 'KAFKA_BROKERS', Redis: 'REDIS_URL' }[dependency];
  const target = dependency === 'Kafka' ? new URL(`kafka://${base.KAFKA_BROKERS!.split(',')[0]}`) : new URL(base[name]!);
  const proxy = await faultProxy({ target: { host: target.hostname, port: Number(target.port) } });
  t.teardown(() => proxy.close());
  await proxy.refuse(true);
  return { proxy, env: { ...base, [name]: dependency === 'Kafka' ? proxy.address : proxy.rewrite(base[name]!) } };
}

const waitingLine = (dependency: Dependency, output: string[]) =>
  output.filter((line) => line.includes(`waiting for ${dependency} at 127.0.0.1:`) && line.includes('; retrying'));

for (const dependency of ['PostgreSQL', 'Kafka', 'Redis'] as const) {
  test.serial(`a node started while ${dependency} is not reachable waits for it and becomes ready`, async (t) => {
    t.timeout(300_000);
    const { proxy, env: nodeEnv } = await behindClosedProxy(t, dependency, await env());
    const port = await freePort();
    const node = launchNodeProcess(FIXTURE, { ...nodeEnv, PORT: String(port) });
    t.teardown(() => node.kill('SIGKILL'));
    const base = `http://127.0.0.1:${port}`;

    t.true(await eventually(async () => waitingLine(dependency, node.output).length > 0, 120_000), `says it waits:\n${node.output.slice(-20).join('\n')}`);
    const health = await fetch(`${base}/health`);
    t.is(health.status, 200, '/health answers while it waits');
    const ready = await fetch(`${base}/ready`);
    t.is(ready.status, 503);
    // Answered before the app serves, and still in the contract's shape.
    for (const res of [health, ready, await fetch(`${base}/v1/bookings`)]) t.truthy(res.headers.get('x-request-id'), `${res.url}: X-Request-Id`);
    const body = await ready.json() as { error: { message: string } };
    t.regex(body.error.message, new RegExp(`waiting for ${dependency} at 127\\.0\\.0\\.1:\\d+`), '/ready says what it waits for');
    // A few more attempts pass (backoff from 250 ms), and the node neither exits nor repeats the line.
    await new Promise((r) => setTimeout(r, 4_000));
    t.is(node.child.exitCode, null, 'still running');
    t.is(waitingLine(dependency, node.output).length, 1, 'one line per dependency');

    await proxy.heal();
    const url = await node.started;
    t.true(await eventually(async () => (await fetch(`${url}/ready`)).status === 200, 120_000), 'ready once it is reachable');
    t.true(node.output.some((line) => line.includes(`${dependency} is reachable`)));
  });
}

test.serial('a node that waits longer than STARTUP_TIMEOUT_MS exits with one line saying why', async (t) => {
  t.timeout(180_000);
  const { env: nodeEnv } = await behindClosedProxy(t, 'PostgreSQL', await env());
  const node = launchNodeProcess('main.ts', { ...nodeEnv, STARTUP_TIMEOUT_MS: '3000' });
  t.teardown(() => node.kill('SIGKILL'));
  const code = await node.exited;
  t.is(code, 1);
  const failed = node.output.filter((line) => line.startsWith('failed to start:'));
  t.is(failed.length, 1, node.output.slice(-10).join('\n'));
  t.regex(failed[0]!, /PostgreSQL at 127\.0\.0\.1:\d+ is not reachable: .*gave up after STARTUP_TIMEOUT_MS \(3000 ms\)/);
});

test.serial('a SIGTERM while the node waits for PostgreSQL stops it: a clean exit and a line saying it stopped during start-up', async (t) => {
  t.timeout(180_000);
  // Nothing listens on these ports: PostgreSQL is waited for, and Kafka and Redis come after it.
  const closed = `127.0.0.1:${await freePort()}`;
  const node = launchNodeProcess('main.ts', {
    MODE: 'cluster', DATABASE_URL: `postgres://postgres@${closed}/postgres`, KAFKA_BROKERS: closed, REDIS_URL: `redis://${closed}`,
    JWT_SECRET: 'startup-test-secret-of-some-length-0123', QUOTE_SECRET: 'startup-test-quote-key-of-some-length-0123', ...TEST_DATA_KEYS,
    ...TEST_CLUSTER_KEY, STARTUP_TIMEOUT_MS: '600000', NODE_ID: 'stopped-waiter', DATA_DIR: mkdtempSync(join(tmpdir(), 'waiter-')),
  });
  t.teardown(() => node.kill('SIGKILL'));
  t.true(await eventually(async () => waitingLine('PostgreSQL', node.output).length > 0, 120_000), `says it waits:\n${node.output.slice(-20).join('\n')}`);
  node.child.kill('SIGTERM');
  const code = await Promise.race([node.exited, new Promise((r) => setTimeout(() => r('still running'), 60_000))]);
  t.is(code, 0, `exits by itself, cleanly:\n${node.output.slice(-10).join('\n')}`);
  t.true(node.output.some((l) => l.includes('"msg":"node stopped during start-up"') && l.includes('"reason":"SIGTERM"')));
  t.false(node.output.some((l) => l.startsWith('failed to start:')), 'not reported as a failure');
});
