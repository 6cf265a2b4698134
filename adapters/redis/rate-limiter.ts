// Fixed-window counters in Redis, shared by every node: INCR and PEXPIRE in one
// round trip. If Redis is down the request is let through (fail open) rather
// than turning a cache outage into an API outage; the error is reported.

import { Redis } from 'ioredis';
import type { RateLimiter } from '../../http/ports.ts';

export class RedisRateLimiter implements RateLimiter {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #onError: (error: unknown) => void;

  constructor(options: { url: string; prefix?: string; onError?: (error: unknown) => void }) {
    this.#redis = new Redis(options.url, { maxRetriesPerRequest: 1, enableOfflineQueue: false, commandTimeout: 200 });
    this.#redis.on('error', () => undefined);
    this.#prefix = `${options.prefix ?? 'dispatch'}:rl:`;
    this.#onError = options.onError ?? (() => undefined);
  }

  async hit(key: string, limit: number, windowMs: number) {
    const slot = Math.floor(Date.now() / windowMs);
    const redisKey = `${this.#prefix}${key}:${slot}`;
    try {
      const result = await this.#redis.multi().incr(redisKey).pexpire(redisKey, windowMs).exec();
      const count = Number(result?.[0]?.[1] ?? 0);
      return { allowed: count <= limit, retryAfterMs: (slot + 1) * windowMs - Date.now(), count };
    } catch (error) {
      this.#onError(error);
      return { allowed: true, retryAfterMs: 0, count: 0 };
    }
  }

  async block(key: string, ms: number) {
    await this.#redis.set(`${this.#prefix}block:${key}`, '1', 'PX', Math.max(1, Math.round(ms))).catch(this.#onError);
  }

  async blockedFor(key: string) {
    try {
      return Math.max(0, await this.#redis.pttl(`${this.#prefix}block:${key}`));
    } catch (error) {
      this.#onError(error);
      return 0;
    }
  }

  close(): void {
    this.#redis.disconnect();
  }
}
