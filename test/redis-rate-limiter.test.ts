// The shared fixed-window counter (RedisRateLimiter.hit) on a Redis of this suite's own: each
// hit is one command (a script doing INCR and PEXPIRE), not MULTI, INCR, PEXPIRE and EXEC; the
// counts, the verdicts and the counter's expiry are as before.

import test from 'ava';
import { Redis } from 'ioredis';
import { RedisRateLimiter } from '../adapters/redis/rate-limiter.ts';
import { eventually } from './helpers/node-process.ts';
import { startOwnRedis } from './helpers/own-redis.ts';

const PORT = 6440 + (process.pid % 50);

/** Calls per command name, from INFO commandstats. */
async function calls(admin: Redis): Promise<Map<string, number>> {
  const info = await admin.info('commandstats');
  return new Map([...info.matchAll(/cmdstat_(\w+):calls=(\d+)/g)].map((m) => [m[1]!, Number(m[2])]));
}

test('a window hit is one command to Redis, counted and expired as before', async (t) => {
  const redis = await startOwnRedis(PORT);
  const url = `redis://127.0.0.1:${PORT}`;
  const admin = new Redis(url);
  const limiter = new RedisRateLimiter({ url, prefix: 'rl-test' });
  t.teardown(() => { limiter.close(); admin.disconnect(); redis.kill('SIGKILL'); });
  t.true(await eventually(async () => (await admin.ping().catch(() => '')) === 'PONG', 10_000, 100));
  await limiter.hit('warm', 10, 60_000); // the script's first run loads it
  await admin.config('RESETSTAT');

  const verdicts = [];
  for (let i = 0; i < 5; i++) verdicts.push(await limiter.hit('api:u:1', 3, 60_000));
  t.deepEqual(verdicts.map((v) => [v.count, v.allowed]), [[1, true], [2, true], [3, true], [4, false], [5, false]]);
  t.true(verdicts.every((v) => v.retryAfterMs > 0 && v.retryAfterMs <= 60_000));
  const stats = await calls(admin);
  t.is(stats.get('multi') ?? 0, 0, 'no transaction per hit');
  t.is((stats.get('evalsha') ?? 0) + (stats.get('eval') ?? 0), 5, 'one command per hit');
  const [key] = await admin.keys('rl-test:rl:api:u:1:*');
  const ttl = await admin.pttl(key!);
  t.true(ttl > 0 && ttl <= 60_000, `the counter expires with its window (${ttl} ms left)`);
});
