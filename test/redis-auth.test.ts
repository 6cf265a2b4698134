// Redis with a password: a node given it as a secret file (REDIS_PASSWORD_FILE) uses the
// server, and no password ever reaches the logs, not even when Redis refuses a wrong one
// (ioredis attaches the refused AUTH command, password included, to its errors).

import test from 'ava';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { eventually, freePort, startNodeProcess, type NodeProcess } from './helpers/node-process.ts';
import { freshDatabase } from './helpers/services.ts';

/** A redis-server of its own with requirepass (its configuration on stdin, not its command line); stopped by pid. */
async function redisWithPassword(t: { teardown(fn: () => unknown): void }, password: string): Promise<number> {
  const port = await freePort();
  const server = spawn('redis-server', ['-'], { stdio: ['pipe', 'ignore', 'inherit'] });
  server.stdin.end(`port ${port}\nbind 127.0.0.1\nsave ""\nappendonly no\nrequirepass ${password}\n`);
  const exited = new Promise((resolve) => server.once('exit', resolve));
  t.teardown(async () => { server.kill('SIGKILL'); await exited; });
  const probe = new Redis({ port, host: '127.0.0.1', password, lazyConnect: true, maxRetriesPerRequest: 0 });
  probe.on('error', () => undefined); // refused until the server listens
  if (!(await eventually(async () => (await probe.ping()) === 'PONG', 30_000))) throw new Error('redis-server did not start');
  probe.disconnect();
  return port;
}

async function node(t: { teardown(fn: () => unknown): void }, env: Record<string, string>): Promise<NodeProcess> {
  const db = await freshDatabase();
  const dir = mkdtempSync(join(tmpdir(), 'redis-auth-'));
  const started = await startNodeProcess('main.ts', {
    MODE: 'embedded', DATABASE_URL: db.url, DATA_DIR: dir, KAFKA_BROKERS: '', AUTH_DEV_TOKENS: 'true',
    JWT_SECRET: randomBytes(24).toString('base64url'), LOG_LEVEL: 'trace', ...env,
  });
  t.teardown(async () => { await started.kill('SIGKILL'); await db.drop(); rmSync(dir, { recursive: true, force: true }); });
  return started;
}

test('a node reaches a Redis with requirepass through REDIS_PASSWORD_FILE; neither a right nor a refused password is logged', async (t) => {
  const password = randomBytes(18).toString('base64url');
  const port = await redisWithPassword(t, password);
  const dir = mkdtempSync(join(tmpdir(), 'redis-secret-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'redis_password'), `${password}\n`, { mode: 0o600 });

  const good = await node(t, { REDIS_URL: `redis://127.0.0.1:${port}`, REDIS_PASSWORD_FILE: join(dir, 'redis_password') });
  const { token } = await (await fetch(`${good.url}/v1/auth/token`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sub: 'redis-rider', role: 'rider' }),
  })).json() as { token: string };
  for (let i = 0; i < 3; i++) t.is((await fetch(`${good.url}/v1/bookings`, { headers: { authorization: `Bearer ${token}` } })).status, 200);
  // The node's rate-limit counters are in that Redis: it authenticated.
  const client = new Redis({ port, host: '127.0.0.1', password, maxRetriesPerRequest: 1 });
  t.teardown(() => client.disconnect());
  t.true((await client.keys('dispatch:rl:*')).length > 0, 'the rate limiter counts in the password-protected Redis');

  // A wrong password (here in the URL): Redis refuses it, the node says so, and the password stays out of the output.
  const wrong = `wrong-${randomBytes(12).toString('base64url')}`;
  const refused = await node(t, { REDIS_URL: `redis://:${wrong}@127.0.0.1:${port}` });
  t.true(await eventually(async () => refused.output.some((l) => /WRONGPASS/.test(l)), 60_000), refused.output.slice(-5).join('\n'));
  for (const [name, n, secret] of [['good', good, password], ['refused', refused, wrong]] as const) {
    t.false(n.output.some((l) => l.includes(secret)), `${name} node's output holds no password`);
  }
});
