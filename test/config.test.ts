import test from 'ava';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, VARIABLES, loadConfig, trustedProxies } from '../config/index.ts';
import { startEdge } from './helpers/edge-client.ts';

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return [...error.problems];
    throw error;
  }
  return [];
}

/** A valid cluster configuration, for changing one variable at a time. */
const CLUSTER = {
  KAFKA_BROKERS: 'k1:9092,k2:9092', DATABASE_URL: 'postgres://u:p@db:5432/x', REDIS_URL: 'redis://r:6379',
  JWT_SECRET: randomBytes(32).toString('base64'), QUOTE_SECRET: randomBytes(32).toString('base64'),
  DATA_KEYS: `k1:${randomBytes(32).toString('base64')}`, DATA_INDEX_KEY: randomBytes(32).toString('base64'),
  CLUSTER_KEY: randomBytes(32).toString('base64'),
} as const;

test('the defaults select one embedded node', (t) => {
  const config = loadConfig({});
  t.is(config.mode, 'embedded');
  t.is(config.http.port, 8000);
  t.is(config.cluster.shards, 32);
  t.is(config.dispatch.cellRes, 7);
  t.is(config.dispatch.mode, 'greedy', 'greedy dispatch unless DISPATCH_MODE says batched');
  t.is(config.dispatch.batchMs, 2_000);
  t.is(config.dispatch.batchContention, 3, 'batched windows wait after 3 contentions unless DISPATCH_BATCH_CONTENTION says otherwise');
  t.is(loadConfig({ DISPATCH_MODE: 'batched' }).dispatch.mode, 'batched');
  t.is(config.storage.databaseUrl, undefined);
  t.is(config.storage.redisUrl, undefined);
  t.deepEqual(config.cluster.kafkaBrokers, []);
  t.true(config.development, 'embedded mode is development mode');
  t.deepEqual(config.http.trustProxy, { kind: 'off' });
  t.deepEqual(config.rateLimits, { apiPerMin: 600, bookingsPerMin: 30, loginPerMin: 10, registerPerMin: 20 });
  t.is(config.auth.audience, undefined);
  // One broker in development; compose and k8s set 3 replicas, 2 in sync.
  t.like(config.cluster, { replicationFactor: 1, minInsyncReplicas: 1, sendQueueMax: 10_000, maxRequestBytes: 900_000, wireForms: 'current' });
  t.like(config.dispatch, { peakHours: [7, 8, 17, 18], peakMultiplier: 1.2 });
});

test('peak hours: a list of UTC hours, or none', (t) => {
  t.deepEqual(loadConfig({ PEAK_HOURS: '18, 7,7' }).dispatch.peakHours, [7, 18]);
  t.deepEqual(loadConfig({ PEAK_HOURS: 'none' }).dispatch.peakHours, []);
});

test('Kafka brokers select cluster mode, which needs PostgreSQL, Redis and real secrets too', (t) => {
  const key = 'JWT_SECRET, JWT_PUBLIC_KEY or JWKS_URL is required in cluster mode';
  const quote = /^QUOTE_SECRET is required in cluster mode/;
  const dataKeys = /^DATA_KEYS and DATA_INDEX_KEY are required in cluster mode/;
  const clusterKey = /^CLUSTER_KEY is required in cluster mode/;
  const found = problems({ KAFKA_BROKERS: 'k1:9092,k2:9092' });
  for (const expected of [dataKeys, clusterKey]) {
    const [one] = found.splice(found.findIndex((p) => expected.test(p)), 1);
    t.regex(one ?? '', expected);
  }
  t.deepEqual(found.slice(0, 3), ['DATABASE_URL is required in cluster mode', 'REDIS_URL is required in cluster mode', key]);
  t.is(found.length, 4);
  t.regex(found[3]!, quote);
  const config = loadConfig({ ...CLUSTER });
  t.is(config.mode, 'cluster');
  t.false(config.development);
  t.deepEqual(config.cluster.kafkaBrokers, ['k1:9092', 'k2:9092']);
  t.deepEqual(config.quotes, { secret: CLUSTER.QUOTE_SECRET, ephemeral: false });
  const all = problems({ MODE: 'cluster' });
  for (const expected of [dataKeys, clusterKey]) {
    t.true(all.some((p) => expected.test(p)));
    all.splice(all.findIndex((p) => expected.test(p)), 1);
  }
  t.deepEqual(all.slice(0, 4), [
    'KAFKA_BROKERS is required in cluster mode', 'DATABASE_URL is required in cluster mode', 'REDIS_URL is required in cluster mode', key,
  ]);
  t.regex(all[4]!, quote);
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
  [{ DISPATCH_MODE: 'auction' }, /^DISPATCH_MODE must be one of greedy, batched, got "auction"$/],
  [{ DISPATCH_BATCH_MS: '50' }, /^DISPATCH_BATCH_MS must be an integer from 100 to 60000, got "50"$/],
  [{ DISPATCH_BATCH_CONTENTION: '-1' }, /^DISPATCH_BATCH_CONTENTION must be an integer from 0 to 1000, got "-1"$/],
  [{ DISPATCH_MODE: 'batched', DISPATCH_BATCH_MS: '10000', DISPATCH_DEADLINE_MS: '15000' },
    /^DISPATCH_BATCH_MS \(10000\) must be at most half of DISPATCH_DEADLINE_MS \(15000\) in batched mode$/],
  [{ SURGE_CAP: 'NaN' }, /^SURGE_CAP must be a number/],
  [{ PEAK_HOURS: '7,25' }, /^PEAK_HOURS must be hours 0-23 separated by commas, or none, got "7,25"$/],
  [{ PEAK_MULTIPLIER: '0.5' }, /^PEAK_MULTIPLIER must be a number from 1 to 5/],
  [{ JWT_SECRET: 'short' }, /^JWT_SECRET must be at least 16 characters/],
  [{ RATE_LIMIT_API_PER_MIN: '0' }, /^RATE_LIMIT_API_PER_MIN must be an integer from 1 to 1000000, got "0"$/],
  [{ RATE_LIMIT_BOOKINGS_PER_MIN: 'thirty' }, /^RATE_LIMIT_BOOKINGS_PER_MIN must be an integer from 1 to 1000000, got "thirty"$/],
  [{ RATE_LIMIT_LOGIN_PER_MIN: '-1' }, /^RATE_LIMIT_LOGIN_PER_MIN must be an integer from 1 to 1000000, got "-1"$/],
  [{ RATE_LIMIT_REGISTER_PER_MIN: '2.5' }, /^RATE_LIMIT_REGISTER_PER_MIN must be an integer from 1 to 1000000, got "2.5"$/],
  [{ JWKS_URL: 'http://idp.internal/jwks.json', JWT_AUDIENCE: 'dispatch' }, /^JWKS_URL must be an https: URL/],
  [{ JWKS_URL: 'https://idp.internal/jwks.json' }, /^JWT_AUDIENCE is required with JWT_PUBLIC_KEY or JWKS_URL/],
  [{ JWT_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----...' }, /^JWT_AUDIENCE is required with JWT_PUBLIC_KEY or JWKS_URL/],
  [{ JWT_SECRET: 'change-me-in-production-please-32chars' }, /^JWT_SECRET is a sample or placeholder value/],
  [{ JWT_SECRET: 'replace-me-with-a-long-random-secret' }, /^JWT_SECRET is a sample or placeholder value/],
  [{ JWT_SECRET: 'a-long-shared-development-secret' }, /^JWT_SECRET is a sample or placeholder value/],
  [{ JWT_SECRET: 'CHANGEME_CHANGEME_CHANGEME_CHANGEME' }, /^JWT_SECRET is a sample or placeholder value/],
  [{ JWT_SECRET: 'x'.repeat(40) }, /^JWT_SECRET is a sample or placeholder value/],
  [{ QUOTE_SECRET: '${QUOTE_SECRET:?set QUOTE_SECRET to at least 32 random bytes}' }, /^QUOTE_SECRET looks like an unsubstituted variable/],
  [{ JWT_SECRET: '$JWT_SECRET' }, /^JWT_SECRET looks like an unsubstituted variable/],
  [{ QUOTE_SECRET: 'too-short-for-a-quote-key' }, /^QUOTE_SECRET must be at least 32 bytes, got 25$/],
  [{ QUOTE_SECRET: 'replace-me-with-another-openssl-rand-base64-48' }, /^QUOTE_SECRET is a sample or placeholder value/],
  [{ JWT_SECRET: 'the-same-key-for-two-purposes-is-bad', QUOTE_SECRET: 'the-same-key-for-two-purposes-is-bad' }, /^QUOTE_SECRET must differ from JWT_SECRET/],
  [{ TRUST_PROXY: 'true' }, /^TRUST_PROXY=true would believe any client's X-Forwarded-For/],
  [{ TRUST_PROXY: '17' }, /^TRUST_PROXY must be false, a number of proxies from 1 to 16, or a comma-separated list/],
  [{ TRUST_PROXY: '10.0.0.1,nginx' }, /^TRUST_PROXY must be .* \(not an address or CIDR: nginx\)$/],
  [{ TRUST_PROXY: '10.0.0.0/33' }, /^TRUST_PROXY must be .* \(not an address or CIDR: 10\.0\.0\.0\/33\)$/],
  [{ KAFKA_REPLICATION_FACTOR: '3', KAFKA_MIN_INSYNC_REPLICAS: '4' }, /^KAFKA_MIN_INSYNC_REPLICAS \(4\) must not exceed KAFKA_REPLICATION_FACTOR \(3\)$/],
  [{ KAFKA_SEND_QUEUE_MAX: '0' }, /^KAFKA_SEND_QUEUE_MAX must be an integer from 1/],
  [{ KAFKA_SASL_PASSWORD: 'k7#pQ2!x-a-real-looking-one' }, /^KAFKA_SASL_USERNAME or KAFKA_SASL_PASSWORD is set but KAFKA_SASL_MECHANISM is not$/],
  [{ KAFKA_MAX_REQUEST_BYTES: '1000' }, /^KAFKA_MAX_REQUEST_BYTES must be an integer from 65536/],
  [{ WIRE_FORMS: 'binary' }, /^WIRE_FORMS must be one of current, previous, got "binary"$/],
];

for (const [env, message] of bad) {
  test(`refuses ${JSON.stringify(env)} naming the variable`, (t) => {
    const found = problems(env);
    t.is(found.length, 1, found.join('; '));
    t.regex(found[0]!, message);
  });
}

// Outside development mode (cluster), secrets must be long and QUOTE_SECRET must be given.
const badCluster: [Record<string, string | undefined>, RegExp][] = [
  [{ JWT_SECRET: 'a-secret-of-31-bytes-is-too-sho' }, /^JWT_SECRET must be at least 32 bytes in cluster mode, got 31$/],
  [{ JWT_SECRET: 'change-me-in-production-please-32chars' }, /^JWT_SECRET is a sample or placeholder value/],
  [{ QUOTE_SECRET: undefined }, /^QUOTE_SECRET is required in cluster mode/],
  [{ QUOTE_SECRET: 'short' }, /^QUOTE_SECRET must be at least 32 bytes, got 5$/],
  [{ JWT_SECRET: undefined, JWKS_URL: 'https://idp.example.org/.well-known/jwks.json' }, /^JWT_AUDIENCE is required with JWT_PUBLIC_KEY or JWKS_URL/],
  [{ JWT_SECRET: undefined, JWKS_URL: 'http://idp.internal/jwks.json', JWT_AUDIENCE: 'dispatch' }, /^JWKS_URL must be an https: URL/],
];

for (const [change, message] of badCluster) {
  test(`cluster mode refuses ${JSON.stringify(change, (_, v: unknown) => v ?? '(unset)')} naming the variable`, (t) => {
    const env = Object.fromEntries(Object.entries({ ...CLUSTER, ...change }).filter(([, v]) => v !== undefined)) as Record<string, string>;
    const found = problems(env);
    t.is(found.length, 1, found.join('; '));
    t.regex(found[0]!, message);
  });
}

test('refused secrets are not echoed in the messages', (t) => {
  const secrets = ['a-secret-of-31-bytes-is-too-sho', 'change-me-in-production-please-32chars'];
  const found = [
    ...problems({ ...CLUSTER, JWT_SECRET: secrets[0]! }),
    ...problems({ ...CLUSTER, QUOTE_SECRET: secrets[1]! }),
  ];
  t.is(found.length, 2);
  for (const secret of secrets) t.false(found.join('\n').includes(secret));
});

test('secrets: a JWKS over https with an audience loads; development mode may leave QUOTE_SECRET unset', (t) => {
  const jwks = loadConfig({ ...CLUSTER, JWT_SECRET: '', JWKS_URL: 'https://idp.example.org/.well-known/jwks.json', JWT_AUDIENCE: 'dispatch-api' });
  t.is(jwks.auth.jwksUrl, 'https://idp.example.org/.well-known/jwks.json');
  t.is(jwks.auth.audience, 'dispatch-api');
  // Embedded (development) mode: a random quote key per process, never derived from the node id.
  const a = loadConfig({ NODE_ID: 'n1' });
  const b = loadConfig({ NODE_ID: 'n1' });
  t.true(a.quotes.ephemeral);
  t.true(Buffer.byteLength(a.quotes.secret) >= 32);
  // Two processes of the same node id get different keys: nothing derives them from the id.
  // (Not "the key does not contain 'n1'": random base64 contains it about once in a hundred.)
  t.not(a.quotes.secret, b.quotes.secret);
  const given = loadConfig({ QUOTE_SECRET: CLUSTER.QUOTE_SECRET });
  t.deepEqual(given.quotes, { secret: CLUSTER.QUOTE_SECRET, ephemeral: false });
  // 16 characters are enough for a development JWT_SECRET, not for a cluster's.
  t.is(loadConfig({ JWT_SECRET: 'sixteen-chars-ok' }).auth.secret, 'sixteen-chars-ok');
  // A generated secret may hold "$": only a whole "${VAR}" or "$VAR" reads as unsubstituted.
  t.is(loadConfig({ ...CLUSTER, JWT_SECRET: 'a$b-c$d-e$f-g$h-i$j-k$l-m$n-o$p-q$r' }).auth.secret, 'a$b-c$d-e$f-g$h-i$j-k$l-m$n-o$p-q$r');
});

test('TRUST_PROXY: off by default, a hop count, or proxy addresses and CIDRs', (t) => {
  for (const off of ['', 'false', 'off', '0', 'no']) t.deepEqual(loadConfig({ TRUST_PROXY: off }).http.trustProxy, { kind: 'off' }, off);
  t.deepEqual(loadConfig({ TRUST_PROXY: '1' }).http.trustProxy, { kind: 'hops', hops: 1 });
  t.deepEqual(loadConfig({ TRUST_PROXY: '2' }).http.trustProxy, { kind: 'hops', hops: 2 });
  const list = loadConfig({ TRUST_PROXY: '10.0.0.7, 172.16.0.0/12,::1,fd00::/8' }).http.trustProxy;
  t.deepEqual(list, { kind: 'addresses', addresses: ['10.0.0.7', '172.16.0.0/12', '::1', 'fd00::/8'] });
  const proxies = trustedProxies(list.kind === 'addresses' ? list.addresses : []);
  t.true(proxies.check('10.0.0.7', 'ipv4'));
  t.true(proxies.check('172.20.1.2', 'ipv4'));
  t.false(proxies.check('10.0.0.8', 'ipv4'));
  t.true(proxies.check('fd12::1', 'ipv6'));
  t.false(proxies.check('2001:db8::1', 'ipv6'));
});

test('rate limits come from the configuration', (t) => {
  const config = loadConfig({ RATE_LIMIT_API_PER_MIN: '1200', RATE_LIMIT_BOOKINGS_PER_MIN: '5', RATE_LIMIT_LOGIN_PER_MIN: '3', RATE_LIMIT_REGISTER_PER_MIN: '4' });
  t.deepEqual(config.rateLimits, { apiPerMin: 1200, bookingsPerMin: 5, loginPerMin: 3, registerPerMin: 4 });
});

test('a development node\'s caps per address fit its own simulator unless they are set; elsewhere they are the defaults', (t) => {
  const dev = loadConfig({ AUTH_DEV_TOKENS: 'true' });
  t.is(dev.ws.maxSocketsPerIp, 100_000, 'thousands of simulated drivers hold sockets from one address');
  t.is(dev.rateLimits.apiPerMin, 100_000, 'and ask for their tokens from it');
  const set = loadConfig({ AUTH_DEV_TOKENS: 'true', WS_MAX_SOCKETS_PER_IP: '50', RATE_LIMIT_API_PER_MIN: '70' });
  t.is(set.ws.maxSocketsPerIp, 50, 'a value set is the value');
  t.is(set.rateLimits.apiPerMin, 70);
  const production = loadConfig({});
  t.is(production.ws.maxSocketsPerIp, 200);
  t.is(production.rateLimits.apiPerMin, 600);
  const refused = t.throws<ConfigError>(() => loadConfig({ AUTH_DEV_TOKENS: 'maybe' }));
  t.deepEqual(refused?.problems, ['AUTH_DEV_TOKENS must be true or false, got "maybe"'], 'said once');
});

test('a node answers 429 at the configured limits (login, register, the API)', async (t) => {
  const edge = await startEdge({ RATE_LIMIT_LOGIN_PER_MIN: '3', RATE_LIMIT_REGISTER_PER_MIN: '2', RATE_LIMIT_API_PER_MIN: '12' });
  t.teardown(() => edge.stop());
  const login = () => edge.http('POST', '/v1/auth/login', { body: { email: 'nobody@example.org', password: 'wrong-password' } });
  for (let i = 0; i < 3; i++) t.is((await login()).status, 401, `login ${i + 1} is within the limit`);
  const limited = await login();
  t.is(limited.status, 429, 'the 4th login in a minute is refused');
  t.is(limited.body.error.code, 'rate_limited');
  t.true(Number(limited.headers.get('retry-after')) >= 1);
  // Register: the limit is counted before the body is read, so even invalid requests count.
  for (let i = 0; i < 2; i++) t.is((await edge.http('POST', '/v1/auth/register', { body: {} })).status, 400);
  t.is((await edge.http('POST', '/v1/auth/register', { body: {} })).status, 429, 'the 3rd registration in a minute is refused');
  // The general API limit counts per signed-in user: 12 requests pass, the 13th is refused.
  const token = await edge.token('limited-rider', 'rider');
  for (let i = 0; i < 12; i++) t.is((await edge.http('GET', '/v1/bookings', { token })).status, 200, `request ${i + 1}`);
  const over = await edge.http('GET', '/v1/bookings', { token });
  t.is(over.status, 429);
  t.regex(over.body.error.message, /\(api\)/);
});

test('every problem is reported at once, and a password in a URL is not echoed', (t) => {
  const found = problems({ PORT: 'x', SHARDS: 'y', DATABASE_URL: 'postgres//user:secret@' });
  t.is(found.length, 3);
  t.false(found.join('\n').includes('secret'));
});

/** A directory of secret files, as Docker mounts them at /run/secrets (a trailing newline included). */
function secretFiles(t: { teardown(fn: () => void): void }, files: Record<string, string>): Record<string, string> {
  const dir = mkdtempSync(join(tmpdir(), 'dispatch-secrets-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return Object.fromEntries(Object.entries(files).map(([name, text]) => {
    writeFileSync(join(dir, name), `${text}\n`);
    return [name, join(dir, name)];
  }));
}

test('secrets are read from NAME_FILE (mounted secrets): the same configuration as from the environment', (t) => {
  const jwt = randomBytes(48).toString('base64');
  const quote = randomBytes(48).toString('base64');
  const password = randomBytes(24).toString('base64');
  const dataKeys = `k1:${randomBytes(32).toString('base64')}`;
  const index = randomBytes(48).toString('base64');
  const clusterKey = randomBytes(48).toString('base64');
  const redisPassword = randomBytes(24).toString('base64');
  const kafkaPassword = randomBytes(24).toString('base64url');
  const files = secretFiles(t, { jwt, quote, password, dataKeys, index, clusterKey, redisPassword, kafkaPassword });
  const plain = { KAFKA_BROKERS: 'k:9092', REDIS_URL: 'redis://r:6379', NODE_ID: 'n1', KAFKA_SASL_MECHANISM: 'scram-sha-512', KAFKA_SASL_USERNAME: 'dispatch' };
  const config = loadConfig({
    ...plain, DATABASE_URL: 'postgres://dispatch@db:5432/dispatch',
    JWT_SECRET_FILE: files.jwt!, QUOTE_SECRET_FILE: files.quote!, DATABASE_PASSWORD_FILE: files.password!,
    DATA_KEYS_FILE: files.dataKeys!, DATA_INDEX_KEY_FILE: files.index!, CLUSTER_KEY_FILE: files.clusterKey!,
    REDIS_PASSWORD_FILE: files.redisPassword!, KAFKA_SASL_PASSWORD_FILE: files.kafkaPassword!,
  });
  t.deepEqual(config.cluster.signingKeys, [Buffer.from(clusterKey)]);
  t.is(decodeURIComponent(new URL(config.storage.redisUrl!).password), redisPassword);
  t.is(config.cluster.kafkaSecurity.sasl?.password, kafkaPassword);
  t.deepEqual(config.personalData?.keys.get('k1'), Buffer.from(dataKeys.slice(3), 'base64'));
  t.deepEqual(config.personalData?.indexKey, Buffer.from(index));
  t.is(config.auth.secret, jwt, 'the file\'s newline is not part of the secret');
  t.is(config.quotes.secret, quote);
  t.is(new URL(config.storage.databaseUrl!).password, encodeURIComponent(password));
  t.is(decodeURIComponent(new URL(config.storage.databaseUrl!).password), password);
});

test('a secret file that cannot be read, or a secret set twice, is a configuration error naming the variable', (t) => {
  const files = secretFiles(t, { jwt: randomBytes(48).toString('base64') });
  const base = { KAFKA_BROKERS: 'k:9092', REDIS_URL: 'redis://r:6379', DATABASE_URL: 'postgres://u@db/d', QUOTE_SECRET: randomBytes(48).toString('base64') };
  const missing = problems({ ...base, JWT_SECRET_FILE: '/nonexistent/jwt' });
  t.true(missing.some((p) => p.startsWith('JWT_SECRET_FILE: cannot read /nonexistent/jwt (ENOENT)')), missing.join('\n'));
  const twice = problems({ ...base, JWT_SECRET: randomBytes(48).toString('base64'), JWT_SECRET_FILE: files.jwt! });
  t.true(twice.includes('JWT_SECRET and JWT_SECRET_FILE are both set; keep one'), twice.join('\n'));
  // Only secrets have a file variant: PORT_FILE means nothing and is not read.
  t.is(loadConfig({ PORT_FILE: '/nonexistent' }).http.port, loadConfig({}).http.port);
});

test('DATABASE_PASSWORD goes into DATABASE_URL; a URL with its own password, or a sample password, is refused', (t) => {
  const base = { KAFKA_BROKERS: 'k:9092', REDIS_URL: 'redis://r:6379', JWT_SECRET: randomBytes(48).toString('base64'), QUOTE_SECRET: randomBytes(48).toString('base64') };
  t.true(problems({ ...base, DATABASE_URL: 'postgres://u:p@db/d', DATABASE_PASSWORD: 'x8#Kq!v' }).includes('DATABASE_URL already has a password and DATABASE_PASSWORD is set; keep one'));
  t.true(problems({ ...base, DATABASE_URL: 'postgres://dispatch@db/d', DATABASE_PASSWORD: 'dispatch' }).some((p) => p.startsWith('DATABASE_PASSWORD is a sample or placeholder')));
  t.true(problems({ ...base, DATABASE_PASSWORD: 'x8#Kq!v' }).some((p) => p.startsWith('DATABASE_PASSWORD is set but DATABASE_URL is not')));
});

test('.env.example documents every variable the configuration reads', (t) => {
  const example = readFileSync(new URL('../.env.example', import.meta.url), 'utf8');
  for (const name of Object.keys(VARIABLES)) t.regex(example, new RegExp(`^#? ?${name}=`, 'm'), name);
});

test('a node prices quotes with the configured peak hours and multiplier', async (t) => {
  const quote = async (extra: Record<string, string>) => {
    const edge = await startEdge(extra);
    t.teardown(() => edge.stop());
    const token = await edge.token('peak-rider', 'rider');
    const res = await edge.http('POST', '/v1/quotes', {
      token, body: { pickup: { lat: 52.52, lng: 13.405 }, dropoff: { lat: 52.5, lng: 13.42 }, vehicleType: 'economy' },
    });
    t.is(res.status, 201);
    return res.body.price.amount as number;
  };
  const allDay = Array.from({ length: 24 }, (_, h) => h).join(',');
  const offPeak = await quote({ PEAK_HOURS: 'none' });
  const peak = await quote({ PEAK_HOURS: allDay, PEAK_MULTIPLIER: '1.5' });
  // Both are rounded from the same unrounded fare: within one cent of 1.5 times.
  t.true(Math.abs(peak - offPeak * 1.5) <= 1, `${peak} is 1.5 × ${offPeak}`);
});

test('traces: off by default; an OTLP endpoint, or OTEL_TRACES_EXPORTER=otlp, turns them on', (t) => {
  t.is(loadConfig({}).tracing, undefined);
  t.deepEqual(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://jaeger:4318/' }).tracing,
    { url: 'http://jaeger:4318/v1/traces', headers: {}, serviceName: 'dispatch', ratio: 1 });
  t.is(loadConfig({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://c.example/t', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://jaeger:4318' }).tracing?.url, 'https://c.example/t');
  t.is(loadConfig({ OTEL_TRACES_EXPORTER: 'otlp' }).tracing?.url, 'http://localhost:4318/v1/traces');
  t.is(loadConfig({ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://jaeger:4318' }).tracing, undefined);
  t.deepEqual(loadConfig({ OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_HEADERS: 'api-key=a%3Db, x=y', OTEL_TRACES_SAMPLER_ARG: '0.25' }).tracing,
    { url: 'http://localhost:4318/v1/traces', headers: { 'api-key': 'a=b', x: 'y' }, serviceName: 'dispatch', ratio: 0.25 });
  t.deepEqual(problems({ OTEL_TRACES_EXPORTER: 'zipkin', OTEL_EXPORTER_OTLP_ENDPOINT: 'jaeger:4318', OTEL_TRACES_SAMPLER_ARG: '2' }).length, 3);
});

test('AUTH_DEV_TOKENS=true is refused outside embedded mode, naming the variable', (t) => {
  const found = problems({ ...CLUSTER, AUTH_DEV_TOKENS: 'true' });
  t.deepEqual(found, ['AUTH_DEV_TOKENS=true is refused in cluster mode: it lets anyone mint tokens of any role (embedded mode only)']);
  t.deepEqual(problems({ ...CLUSTER, AUTH_DEV_TOKENS: 'false' }), []);
  t.true(loadConfig({ AUTH_DEV_TOKENS: 'true' }).auth.devTokens, 'the embedded (development) mode keeps them');
});

test('CLUSTER_KEY: required in cluster mode unless COMMAND_SIGNING=false; short, sample or reused keys refused without echo', (t) => {
  const { CLUSTER_KEY: _, ...unsigned } = CLUSTER;
  t.regex(problems(unsigned).join('\n'), /^CLUSTER_KEY is required in cluster mode .*COMMAND_SIGNING=false/m);
  t.is(loadConfig({ ...unsigned, COMMAND_SIGNING: 'false' }).cluster.signingKeys, undefined, 'signing explicitly off');
  t.is(loadConfig({}).cluster.signingKeys, undefined, 'embedded mode has no Kafka to sign for');
  const [older, newer] = [randomBytes(32).toString('base64'), randomBytes(32).toString('base64')];
  t.deepEqual(loadConfig({ ...CLUSTER, CLUSTER_KEY: `${newer}, ${older}` }).cluster.signingKeys, [Buffer.from(newer), Buffer.from(older)],
    'rotation: the first key signs, every key verifies');
  const short = 'a-cluster-key-of-31-bytes-short';
  t.deepEqual(problems({ ...CLUSTER, CLUSTER_KEY: short }), ['CLUSTER_KEY must be at least 32 bytes, got 31']);
  t.deepEqual(problems({ ...CLUSTER, CLUSTER_KEY: `${newer},${short}` }), ['CLUSTER_KEY key 2 must be at least 32 bytes, got 31']);
  t.regex(problems({ ...CLUSTER, CLUSTER_KEY: 'replace-me-with-openssl-rand-base64-48' })[0] ?? '', /^CLUSTER_KEY is a sample or placeholder value/);
  t.deepEqual(problems({ ...CLUSTER, CLUSTER_KEY: CLUSTER.JWT_SECRET }), ['CLUSTER_KEY must differ from the other secrets (one key, one purpose)']);
  const all = [short, CLUSTER.JWT_SECRET].flatMap((k) => problems({ ...CLUSTER, CLUSTER_KEY: k })).join('\n');
  t.false(all.includes(short) || all.includes(CLUSTER.JWT_SECRET), 'no key in the messages');
});

test('REDIS_PASSWORD goes into REDIS_URL (so it can be a secret file); one in both, or a sample, is refused without echo', (t) => {
  const password = 'r3d!s/pa ss#word-7Kq';
  const url = loadConfig({ ...CLUSTER, REDIS_URL: 'rediss://redis:6380', REDIS_PASSWORD: password }).storage.redisUrl!;
  t.is(new URL(url).protocol, 'rediss:', 'TLS kept');
  t.is(decodeURIComponent(new URL(url).password), password);
  t.deepEqual(problems({ ...CLUSTER, REDIS_URL: 'redis://:in-url@r:6379', REDIS_PASSWORD: password }),
    ['REDIS_URL already has a password and REDIS_PASSWORD is set; keep one']);
  t.regex(problems({ ...CLUSTER, REDIS_PASSWORD: 'changeme' })[0] ?? '', /^REDIS_PASSWORD is a sample or placeholder value/);
  const found = problems({ REDIS_URL: 'redis//:hunter2-x@r', REDIS_PASSWORD: password });
  t.false(found.join('\n').includes('hunter2-x') || found.join('\n').includes(password));
});

test('METRICS_HOST: the metrics listener binds loopback unless told, whatever HOST is; ?token= sockets are off by default', (t) => {
  const config = loadConfig({ HOST: '0.0.0.0', METRICS_PORT: '9100' });
  t.deepEqual(config.metrics, { port: 9100, host: '127.0.0.1' });
  t.is(config.http.host, '0.0.0.0');
  t.is(loadConfig({ METRICS_PORT: '9100', METRICS_HOST: '0.0.0.0' }).metrics.host, '0.0.0.0');
  t.false(config.ws.queryToken);
  t.true(loadConfig({ WS_QUERY_TOKEN: 'true' }).ws.queryToken);
});
