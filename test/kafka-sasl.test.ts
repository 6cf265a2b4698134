// Kafka that knows who is writing: a broker of its own (scripts/kafka.sh with SASL, that is
// docker/kafka-broker.sh as compose runs it) on its own ports and data directory. A node whose
// configuration carries the credentials (the password from a mounted file) serves commands
// through it; a client without them, or with a wrong password, is refused.

import test from 'ava';
import { spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Kafka, logLevel, type SASLOptions } from 'kafkajs';
import { dispatchBehaviors, dispatchServices } from '../actors/index.ts';
import { loadConfig } from '../config/index.ts';
import { startNode } from '../node.ts';
import { freePort, repoRoot } from './helpers/node-process.ts';
import { TEST_CLUSTER_KEY, TEST_DATA_KEYS, freshDatabase, redisUrl } from './helpers/services.ts';

const PASSWORD = randomBytes(24).toString('base64url');

/** scripts/kafka.sh with SASL on free ports; stopped (and its data removed) by the test's teardown. */
async function saslBroker(t: { teardown(fn: () => Promise<void>): void }): Promise<string> {
  const [port, controllerPort] = [await freePort(), await freePort()];
  const dataDir = mkdtempSync(join(tmpdir(), 'sasl-kafka-'));
  const env = {
    ...process.env, KAFKA_PORT: String(port), KAFKA_CONTROLLER_PORT: String(controllerPort), KAFKA_DATA_DIR: dataDir,
    KAFKA_SASL_USERNAME: 'dispatch', KAFKA_SASL_PASSWORD: PASSWORD,
  };
  const run = (cmd: string) => new Promise<string>((resolve, reject) => {
    const child = spawn('bash', ['scripts/kafka.sh', cmd], { cwd: repoRoot, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { out += d; });
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`kafka.sh ${cmd}: ${code}\n${out}`))));
  });
  t.teardown(async () => { await run('stop').catch(() => undefined); rmSync(dataDir, { recursive: true, force: true }); });
  const said = await run('start');
  if (!said.includes('(SASL)')) throw new Error(`not a SASL broker: ${said}`);
  return `127.0.0.1:${port}`;
}

/** What a bare client gets from the broker: its topics, or why it was refused. */
async function listTopics(broker: string, sasl?: SASLOptions): Promise<string> {
  const kafka = new Kafka({ brokers: [broker], clientId: 'probe', logLevel: logLevel.NOTHING, retry: { retries: 0 }, connectionTimeout: 5_000, sasl });
  const admin = kafka.admin();
  try {
    await admin.connect();
    return `topics: ${(await admin.listTopics()).length}`;
  } catch (error) {
    return (error as Error).name;
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

test('with SASL on the broker, a node with the credentials serves commands; a client without them or with a wrong password is refused', async (t) => {
  const broker = await saslBroker(t);
  t.regex(await listTopics(broker), /^KafkaJS(ConnectionClosed|Connection|NumberOfRetriesExceeded)Error$/, 'no credentials: refused');
  t.is(await listTopics(broker, { mechanism: 'scram-sha-512', username: 'dispatch', password: `${PASSWORD}x` }), 'KafkaJSSASLAuthenticationError');
  t.is(await listTopics(broker, { mechanism: 'plain', username: 'dispatch', password: PASSWORD }), 'KafkaJSSASLAuthenticationError',
    'the nodes\' user has no PLAIN password: only SCRAM, which never sends it');

  const db = await freshDatabase();
  t.teardown(() => db.drop());
  const dir = mkdtempSync(join(tmpdir(), 'sasl-node-'));
  t.teardown(async () => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'kafka_password'), `${PASSWORD}\n`, { mode: 0o600 });
  const config = loadConfig({
    MODE: 'cluster', KAFKA_BROKERS: broker, DATABASE_URL: db.url, REDIS_URL: await redisUrl(), NODE_ID: 'sasl-n1',
    KAFKA_SASL_MECHANISM: 'scram-sha-512', KAFKA_SASL_USERNAME: 'dispatch', KAFKA_SASL_PASSWORD_FILE: join(dir, 'kafka_password'),
    JWT_SECRET: randomBytes(32).toString('base64'), QUOTE_SECRET: randomBytes(32).toString('base64'), ...TEST_DATA_KEYS, ...TEST_CLUSTER_KEY,
    KAFKA_TOPIC_PREFIX: `sasl${randomUUID().slice(0, 8)}`, SHARDS: '4', KAFKA_SESSION_TIMEOUT_MS: '6000',
    PORT: '0', HOST: '127.0.0.1', DATA_DIR: join(dir, 'data'), LOG_LEVEL: 'silent',
  });
  const node = await startNode({ config, behaviors: dispatchBehaviors(config), services: dispatchServices(config) });
  t.teardown(() => node.stop());
  const driver = { kind: 'driver', id: `d-${randomUUID().slice(0, 8)}` };
  t.like(await node.region.request(driver, { type: 'profile.set', profile: { active: true, approval: 'pending' } }, { timeoutMs: 60_000 }),
    { status: 'applied' }, 'a command went through the SASL broker and back');
  t.like(await node.region.request(driver, { type: 'approve' }, { timeoutMs: 60_000 }), { status: 'applied' });
});
