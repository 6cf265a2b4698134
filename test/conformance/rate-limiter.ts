// The RateLimiter port's conformance suite (http/ports.ts): the same cases against
// the in-process counters (embedded node) and Redis (cluster), registered per implementation
// by rate-limiter.test.ts. Keys are unique per case, so implementations may share a server.
// Windows are long (an hour) where a case must not see one end, so no case depends on timing;
// the cases that need a window to end poll until it has.

import test from 'ava';
import { randomUUID } from 'node:crypto';
import type { RateLimiter } from '../../http/ports.ts';
import { eventually } from '../helpers/node-process.ts';

export interface RateLimiterUnderTest {
  readonly limiter: RateLimiter;
  close(): Promise<void>;
}

const HOUR = 3_600_000;

export function rateLimiterConformance(name: string, make: () => Promise<RateLimiterUnderTest>): void {
  const use = async (t: { teardown(f: () => Promise<void>): void }) => {
    const opened = await make();
    t.teardown(() => opened.close());
    return opened.limiter;
  };
  const key = (what: string) => `conf:${randomUUID().slice(0, 8)}:${what}`;

  test(`${name}: up to the limit in a window is allowed and counted; beyond it is refused with a retry-after within the window`, async (t) => {
    const limiter = await use(t);
    const k = key('burst');
    const verdicts = [];
    for (let i = 0; i < 5; i++) verdicts.push(await limiter.hit(k, 3, HOUR));
    t.deepEqual(verdicts.map((v) => v.allowed), [true, true, true, false, false]);
    t.deepEqual(verdicts.map((v) => v.count), [1, 2, 3, 4, 5]);
    for (const v of verdicts.slice(3)) t.true(v.retryAfterMs > 0 && v.retryAfterMs <= HOUR, `retry after ${v.retryAfterMs} ms`);
  });

  test(`${name}: keys are counted apart`, async (t) => {
    const limiter = await use(t);
    const [a, b] = [key('a'), key('b')];
    t.true((await limiter.hit(a, 1, HOUR)).allowed);
    t.false((await limiter.hit(a, 1, HOUR)).allowed);
    const other = await limiter.hit(b, 1, HOUR);
    t.true(other.allowed, 'another key is not held back by the first one');
    t.is(other.count, 1);
  });

  test(`${name}: hits at once are all counted (none lost to a race)`, async (t) => {
    const limiter = await use(t);
    const k = key('concurrent');
    const verdicts = await Promise.all(Array.from({ length: 20 }, () => limiter.hit(k, 5, HOUR)));
    t.is(verdicts.filter((v) => v.allowed).length, 5);
    t.deepEqual(verdicts.map((v) => v.count).sort((x, y) => x - y), Array.from({ length: 20 }, (_, i) => i + 1));
  });

  test(`${name}: once the window ends, the key is allowed again from a fresh count`, async (t) => {
    const limiter = await use(t);
    const k = key('reset');
    const windowMs = 300;
    // Exhaust a window (retried if a window happened to end in the middle of the burst).
    t.true(await eventually(async () => {
      const first = await limiter.hit(k, 2, windowMs);
      await limiter.hit(k, 2, windowMs);
      const third = await limiter.hit(k, 2, windowMs);
      return first.allowed && !third.allowed;
    }, 30_000, 0), 'a window was exhausted');
    t.true(await eventually(async () => {
      const v = await limiter.hit(k, 2, windowMs);
      return v.allowed && v.count === 1;
    }, 30_000, 20), 'a later hit starts a new window');
  });

  test(`${name}: a blocked key is held back for about the time given, other keys not at all, and is released after it`, async (t) => {
    const limiter = await use(t);
    const [held, free, brief] = [key('held'), key('free'), key('brief')];
    t.is(await limiter.blockedFor(held), 0, 'nothing is blocked to begin with');
    await limiter.block(held, HOUR);
    const left = await limiter.blockedFor(held);
    t.true(left > 0 && left <= HOUR, `blocked for ${left} ms`);
    t.is(await limiter.blockedFor(free), 0);
    t.true((await limiter.hit(held, 1, HOUR)).allowed, 'a block and the counters are apart');
    await limiter.block(brief, 200);
    t.true(await eventually(async () => (await limiter.blockedFor(brief)) === 0, 30_000, 20), 'a block ends');
  });

  // A budget slow enough (one token an hour) that no case sees it refill, unless it waits to.
  const SLOW = { perSecond: 1 / 3600, burst: 5 };

  test(`${name}: a bucket gives its burst, refuses more, and refuses a take larger than what is left without taking anything`, async (t) => {
    const limiter = await use(t);
    const k = key('bucket');
    t.true(await limiter.take('bucket', k, 3, SLOW));
    t.false(await limiter.take('bucket', k, 3, SLOW), '2 left: 3 is refused');
    t.true(await limiter.take('bucket', k, 2, SLOW), 'and took nothing: 2 are still there');
    t.false(await limiter.take('bucket', k, 1, SLOW));
    t.true(await limiter.take('bucket', key('other'), 5, SLOW), 'another key has its own bucket');
    t.true(await limiter.take('other-scope', k, 5, SLOW), 'the same id has a bucket of its own in another scope');
  });

  test(`${name}: takes at once from one bucket get exactly its burst`, async (t) => {
    const limiter = await use(t);
    const k = key('bucket-race');
    const taken = await Promise.all(Array.from({ length: 20 }, () => limiter.take('bucket', k, 1, SLOW)));
    t.is(taken.filter(Boolean).length, 5);
  });

  test(`${name}: an empty bucket fills again at its rate`, async (t) => {
    const limiter = await use(t);
    const k = key('refill');
    const budget = { perSecond: 20, burst: 2 };
    t.true(await eventually(async () => !(await limiter.take('bucket', k, 1, budget)), 30_000, 0), 'emptied');
    t.true(await eventually(async () => limiter.take('bucket', k, 1, budget), 30_000, 20), 'a token came back');
  });

  test(`${name}: at most cap places are held; a holder holds one however often it asks; a release frees one`, async (t) => {
    const limiter = await use(t);
    const k = key('places');
    const place = (holder: string) => ({ scope: 'places', id: k, holder });
    t.true(await limiter.acquire(place('a'), 2, HOUR));
    t.true(await limiter.acquire(place('a'), 2, HOUR), 'the same holder again');
    t.true(await limiter.acquire(place('b'), 2, HOUR));
    t.false(await limiter.acquire(place('c'), 2, HOUR), 'both places are held');
    t.true(await limiter.acquire({ scope: 'places', id: key('elsewhere'), holder: 'c' }, 2, HOUR), 'another key has its own places');
    t.true(await limiter.acquire({ scope: 'other-places', id: k, holder: 'c' }, 2, HOUR), 'the same id has places of its own in another scope');
    await limiter.release(place('a'));
    t.true(await limiter.acquire(place('c'), 2, HOUR), 'a released place is free');
  });

  test(`${name}: a place whose lease runs out is free; a renewal holds a place (also one the limiter lost)`, async (t) => {
    const limiter = await use(t);
    const k = key('leases');
    t.true(await limiter.acquire({ scope: 'places', id: k, holder: 'dead-node' }, 1, 200));
    t.true(await eventually(async () => limiter.acquire({ scope: 'places', id: k, holder: 'next' }, 1, HOUR), 30_000, 20), 'the lease ran out');
    const lost = key('lost');
    await limiter.renew([{ scope: 'places', id: lost, holder: 'open-socket' }], HOUR);
    t.false(await limiter.acquire({ scope: 'places', id: lost, holder: 'newcomer' }, 1, HOUR), 'the renewed place counts');
  });
}
