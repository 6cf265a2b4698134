// Fixed-window counters, token buckets and capped places in Redis, shared by every node.
// A window is INCR and PEXPIRE in one script (one command; as MULTI, INCR, PEXPIRE, EXEC it
// was four, for every HTTP request); a bucket and a place are one Lua script
// each, atomic and timed by Redis's own clock, so nodes whose clocks differ still agree.
// If Redis is down, a request is let through (fail open) rather than turning a cache
// outage into an API outage, and sockets fall back to this node's own counts (a user then
// gets a node's allowance on each node until Redis is back); the error is reported.

import { Redis } from 'ioredis';
import type { Budget, Place, RateLimiter } from '../../http/ports.ts';
import { InProcessRateLimiter } from '../memory/rate-limiter.ts';

/** Redis's clock in milliseconds, inside a script. */
const NOW = `local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/** KEYS[1] the window's counter; ARGV[1] the window, ms. The count after this hit. */
const HIT = `local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return n`;

/** KEYS[1] the bucket; ARGV n, tokens per ms, burst, idle ms after which the bucket is full again (and forgotten). */
const TAKE = `${NOW}
local n, rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(b[1]) or burst, tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local ok = 0
if tokens >= n then tokens = tokens - n ok = 1 end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return ok`;

/** KEYS[1] the places (a sorted set, holder -> lease end); ARGV holder, cap, lease ms. */
const ACQUIRE = `${NOW}
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1`;

/** KEYS[1] the places; ARGV holder, lease ms. Adds the place back if Redis lost it (a restart): the socket is open. */
const RENEW = `${NOW}
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`;

export class RedisRateLimiter implements RateLimiter {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #onError: (error: unknown) => void;
  /** This node's own counts, used while Redis does not answer. */
  readonly #local = new InProcessRateLimiter();

  constructor(options: { url: string; prefix?: string; onError?: (error: unknown) => void }) {
    this.#redis = new Redis(options.url, {
      maxRetriesPerRequest: 1, enableOfflineQueue: false, commandTimeout: 200,
      // The takes of one tick (a batch of socket messages) leave in one write.
      enableAutoPipelining: true,
    });
    this.#redis.on('error', () => undefined);
    this.#prefix = `${options.prefix ?? 'dispatch'}:rl:`;
    this.#onError = options.onError ?? (() => undefined);
    this.#redis.defineCommand('dispatchHit', { numberOfKeys: 1, lua: HIT });
    this.#redis.defineCommand('dispatchTake', { numberOfKeys: 1, lua: TAKE });
    this.#redis.defineCommand('dispatchAcquire', { numberOfKeys: 1, lua: ACQUIRE });
    this.#redis.defineCommand('dispatchRenew', { numberOfKeys: 1, lua: RENEW });
  }

  async hit(key: string, limit: number, windowMs: number) {
    const slot = Math.floor(Date.now() / windowMs);
    const redisKey = `${this.#prefix}${key}:${slot}`;
    try {
      const count = Number(await this.#scripts().dispatchHit(redisKey, windowMs));
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

  async take(scope: string, id: string, n: number, budget: Budget): Promise<boolean> {
    // Idle this long, a bucket is full again: Redis forgets it, which reads the same.
    const idleMs = Math.ceil((budget.burst / budget.perSecond) * 1000) + 1000;
    try {
      const ok = await this.#scripts().dispatchTake(`${this.#prefix}bucket:${scope}:${id}`, n, budget.perSecond / 1000, budget.burst, idleMs);
      return Number(ok) === 1;
    } catch (error) {
      this.#onError(error);
      return this.#local.takeNow(scope, id, n, budget);
    }
  }

  async acquire(place: Place, cap: number, leaseMs: number): Promise<boolean> {
    try {
      const ok = await this.#scripts().dispatchAcquire(this.#placesKey(place), place.holder, cap, leaseMs);
      // Counted here too, so a Redis outage later falls back to this node's true count.
      if (Number(ok) === 1) await this.#local.renew([place], leaseMs);
      return Number(ok) === 1;
    } catch (error) {
      this.#onError(error);
      return this.#local.acquire(place, cap, leaseMs);
    }
  }

  async renew(places: readonly Place[], leaseMs: number): Promise<void> {
    await this.#local.renew(places, leaseMs);
    if (places.length === 0) return;
    const pipeline = this.#redis.pipeline();
    for (const p of places) (pipeline as unknown as Scripts).dispatchRenew(this.#placesKey(p), p.holder, leaseMs);
    try {
      const results = await pipeline.exec();
      const failed = results?.find(([e]) => e)?.[0];
      if (failed) this.#onError(failed);
    } catch (error) {
      this.#onError(error);
    }
  }

  async release(place: Place): Promise<void> {
    await this.#local.release(place);
    await this.#redis.zrem(this.#placesKey(place), place.holder).catch(this.#onError);
  }

  close(): void {
    this.#redis.disconnect();
  }

  #placesKey(place: Place): string {
    return `${this.#prefix}places:${place.scope}:${place.id}`;
  }

  #scripts(): Scripts {
    return this.#redis as unknown as Scripts;
  }
}

/** The scripts defined on the client (ioredis adds them as methods). */
interface Scripts {
  dispatchHit(key: string, windowMs: number): Promise<unknown>;
  dispatchTake(key: string, n: number, perMs: number, burst: number, idleMs: number): Promise<unknown>;
  dispatchAcquire(key: string, holder: string, cap: number, leaseMs: number): Promise<unknown>;
  dispatchRenew(key: string, holder: string, leaseMs: number): Promise<unknown>;
}
