// Where the real services for tests are: the environment first (DATABASE_URL,
// REDIS_URL, KAFKA_BROKERS, as .ci/with-services.sh exports them), else a
// container started with testcontainers where a Docker engine answers, else a
// loud failure that says what to start. A suite never skips silently.

import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';

type Service = 'postgres' | 'redis' | 'kafka';

const VARIABLE: Record<Service, string> = { postgres: 'DATABASE_URL', redis: 'REDIS_URL', kafka: 'KAFKA_BROKERS' };
const HOW: Record<Service, string> = {
  postgres: 'start PostgreSQL (pg_ctlcluster ... start) or set DATABASE_URL',
  redis: 'start redis-server or set REDIS_URL',
  kafka: 'run `npm run kafka` (scripts/kafka.sh start) or set KAFKA_BROKERS',
};

/** Pure decision, so it can be tested: the address to use, or the error to raise. */
export function resolveService(service: Service, env: Readonly<Record<string, string | undefined>>, dockerAvailable: boolean):
  { kind: 'env'; value: string } | { kind: 'container' } | { kind: 'missing'; message: string } {
  const value = env[VARIABLE[service]];
  if (value && value.trim() !== '') return { kind: 'env', value: value.trim() };
  if (dockerAvailable) return { kind: 'container' };
  return {
    kind: 'missing',
    message: `${service} is not reachable for the tests: ${VARIABLE[service]} is not set and no Docker engine answers for testcontainers; ${HOW[service]} (npm test does this through .ci/with-services.sh)`,
  };
}

function dockerAvailable(): boolean {
  return Boolean(process.env.DOCKER_HOST) || existsSync('/var/run/docker.sock');
}

const started = new Map<Service, Promise<string>>();

async function viaContainer(service: Service): Promise<string> {
  const { GenericContainer, Wait } = await import('testcontainers');
  switch (service) {
    case 'postgres': {
      const c = await new GenericContainer('postgres:16').withEnvironment({ POSTGRES_HOST_AUTH_METHOD: 'trust' })
        .withExposedPorts(5432).withWaitStrategy(Wait.forLogMessage(/ready to accept connections/, 2)).start();
      return `postgres://postgres@${c.getHost()}:${c.getMappedPort(5432)}/postgres`;
    }
    case 'redis': {
      const c = await new GenericContainer('redis:7').withExposedPorts(6379).start();
      return `redis://${c.getHost()}:${c.getMappedPort(6379)}`;
    }
    case 'kafka': {
      const c = await new GenericContainer('apache/kafka:3.9.1').withExposedPorts({ container: 9092, host: 9092 })
        .withWaitStrategy(Wait.forLogMessage(/Kafka Server started/)).start();
      return `${c.getHost()}:9092`;
    }
  }
}

async function address(service: Service): Promise<string> {
  const decision = resolveService(service, process.env, dockerAvailable());
  if (decision.kind === 'env') return decision.value;
  if (decision.kind === 'missing') throw new Error(decision.message);
  let pending = started.get(service);
  if (!pending) started.set(service, (pending = viaContainer(service)));
  return pending;
}

export const databaseUrl = () => address('postgres');
export const redisUrl = () => address('redis');
export const kafkaBrokers = () => address('kafka');

/**
 * A database of its own for one test node, so nodes that each believe they own every
 * shard (embedded mode) never share entities, read models or scheduled bookings.
 */
export async function freshDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const base = await databaseUrl();
  const { default: pg } = await import('pg');
  const name = `t_${Date.now().toString(36)}_${Math.random().toString(36).slice(2, 8)}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(base);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const c = new pg.Client({ connectionString: base });
      await c.connect();
      await c.query(`drop database if exists ${name} with (force)`).catch(() => undefined);
      await c.end();
    },
  };
}

/**
 * Personal-data keys every node of a test cluster shares (cluster mode requires them): fixed,
 * so nodes started apart agree, and derived from a label rather than written out as a sample.
 */
export const TEST_DATA_KEYS = {
  DATA_KEYS: `test1:${createHash('sha256').update('dispatch test data key').digest('base64')}`,
  DATA_INDEX_KEY: createHash('sha256').update('dispatch test index key').digest('base64'),
} as const;

/** The key signing a test cluster's commands in Kafka (cluster mode requires one), fixed like the data keys. */
export const TEST_CLUSTER_KEY = {
  CLUSTER_KEY: createHash('sha256').update('dispatch test cluster key').digest('base64'),
} as const;
