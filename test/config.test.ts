import test from 'ava';
import { readFileSync } from 'node:fs';
import { ConfigError, VARIABLES, loadConfig } from '../config/index.ts';

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return [...error.problems];
    throw error;
  }
  return [];
}

test('the defaults select one embedded node', (t) => {
  const config = loadConfig({});
  t.is(config.mode, 'embedded');
  t.is(config.http.port, 8000);
  t.is(config.cluster.shards, 32);
  t.is(config.dispatch.cellRes, 7);
  t.is(config.storage.databaseUrl, undefined);
  t.is(config.storage.redisUrl, undefined);
  t.deepEqual(config.cluster.kafkaBrokers, []);
});

test('Kafka brokers select cluster mode, which needs PostgreSQL and Redis too', (t) => {
  const key = 'JWT_SECRET, JWT_PUBLIC_KEY or JWKS_URL is required in cluster mode';
  t.deepEqual(problems({ KAFKA_BROKERS: 'k1:9092,k2:9092' }), ['DATABASE_URL is required in cluster mode', 'REDIS_URL is required in cluster mode', key]);
  const config = loadConfig({
    KAFKA_BROKERS: 'k1:9092,k2:9092', DATABASE_URL: 'postgres://u:p@db:5432/x', REDIS_URL: 'redis://r:6379', JWT_SECRET: 'a-secret-of-24-characters',
  });
  t.is(config.mode, 'cluster');
  t.deepEqual(config.cluster.kafkaBrokers, ['k1:9092', 'k2:9092']);
  t.deepEqual(problems({ MODE: 'cluster' }), [
    'KAFKA_BROKERS is required in cluster mode', 'DATABASE_URL is required in cluster mode', 'REDIS_URL is required in cluster mode', key,
  ]);
});

const bad: [Record<string, string>, RegExp][] = [
  [{ MODE: 'galactic' }, /^MODE must be one of embedded, cluster, got "galactic"$/],
  [{ PORT: 'eighty' }, /^PORT must be an integer from 0 to 65535, got "eighty"$/],
  [{ PORT: '70000' }, /^PORT must be an integer/],
  [{ DATABASE_URL: 'not a url' }, /^DATABASE_URL must be a URL/],
  [{ DATABASE_URL: 'mysql://db/x' }, /^DATABASE_URL must be a postgres: or postgresql: URL/],
  [{ REDIS_URL: 'http://r' }, /^REDIS_URL must be a redis: or rediss: URL/],
  [{ MODE: 'embedded', KAFKA_BROKERS: 'kafka' }, /^KAFKA_BROKERS must be a comma-separated list of host:port/],
  [{ CELL_RES: '16' }, /^CELL_RES must be an integer from 0 to 15/],
  [{ PLACEMENT_RES: '7' }, /^PLACEMENT_RES must be coarser/],
  [{ SHARDS: '0' }, /^SHARDS must be an integer from 1/],
  [{ AUTH_DEV_TOKENS: 'maybe' }, /^AUTH_DEV_TOKENS must be true or false/],
  [{ LOG_LEVEL: 'loud' }, /^LOG_LEVEL must be one of/],
  [{ SURGE_CAP: 'NaN' }, /^SURGE_CAP must be a number/],
  [{ JWT_SECRET: 'short' }, /^JWT_SECRET must be at least 16 characters/],
];

for (const [env, message] of bad) {
  test(`refuses ${JSON.stringify(env)} naming the variable`, (t) => {
    const found = problems(env);
    t.is(found.length, 1, found.join('; '));
    t.regex(found[0]!, message);
  });
}

test('every problem is reported at once, and a password in a URL is not echoed', (t) => {
  const found = problems({ PORT: 'x', SHARDS: 'y', DATABASE_URL: 'postgres//user:secret@' });
  t.is(found.length, 3);
  t.false(found.join('\n').includes('secret'));
});

test('.env.example documents every variable the configuration reads', (t) => {
  const example = readFileSync(new URL('../.env.example', import.meta.url), 'utf8');
  for (const name of Object.keys(VARIABLES)) t.regex(example, new RegExp(`^#? ?${name}=`, 'm'), name);
});
