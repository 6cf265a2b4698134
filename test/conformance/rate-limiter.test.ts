// The RateLimiter conformance suite (rate-limiter.ts) against the in-process counters and Redis.

import { randomUUID } from 'node:crypto';
import { InProcessRateLimiter } from '../../adapters/memory/rate-limiter.ts';
import { RedisRateLimiter } from '../../adapters/redis/rate-limiter.ts';
import { redisUrl } from '../helpers/services.ts';
import { eventually } from '../helpers/node-process.ts';
import { rateLimiterConformance } from './rate-limiter.ts';

rateLimiterConformance('in-process', async () => ({ limiter: new InProcessRateLimiter(), close: async () => undefined }));

rateLimiterConformance('Redis', async () => {
  const errors: unknown[] = [];
  const limiter = new RedisRateLimiter({ url: await redisUrl(), prefix: `conf-${randomUUID().slice(0, 8)}`, onError: (e) => errors.push(e) });
  // The limiter queues nothing while it connects (it fails open instead): wait until it answers.
  const connected = await eventually(async () => {
    const before = errors.length;
    await limiter.blockedFor('conf:probe');
    return errors.length === before;
  }, 30_000);
  if (!connected) { limiter.close(); throw new Error(`the Redis limiter did not connect: ${errors.map(String).at(-1)}`); }
  errors.length = 0;
  return {
    limiter,
    async close() {
      limiter.close();
      // Redis fails open (every hit allowed): an error here would make the cases prove nothing.
      if (errors.length > 0) throw new Error(`the Redis limiter reported errors: ${errors.map(String).join('; ')}`);
    },
  };
});
