// Notifications across nodes on real Redis (adapters/redis/notifier.ts): a notification
// reaches the nodes that watch its user and no other, none when nobody watches, and stops
// once the user's last session here is gone.

import test from 'ava';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { RedisNotifier } from '../adapters/redis/notifier.ts';
import { eventually } from './helpers/node-process.ts';
import { redisUrl } from './helpers/services.ts';

type Heard = { node: string; userId: string; message: unknown }[];

async function nodes(t: { teardown(fn: () => unknown): void }, count: number) {
  const url = await redisUrl();
  const prefix = `test-notify-${randomUUID().slice(0, 8)}`;
  const heard: Heard = [];
  const list = Array.from({ length: count }, (_, i) => {
    const notifier = new RedisNotifier({ url, prefix });
    notifier.subscribe((userId, message) => heard.push({ node: `n${i}`, userId, message }));
    t.teardown(() => notifier.close());
    return notifier;
  });
  const admin = new Redis(url);
  t.teardown(() => admin.disconnect());
  const subscribers = async (userId: string) => {
    const [, n] = await admin.pubsub('NUMSUB', `${prefix}:notify:${userId}`) as [string, number];
    return Number(n);
  };
  return { list, heard, subscribers };
}

const settle = () => new Promise((r) => setTimeout(r, 300));

test('a notification reaches only the node that holds its user, and nobody when no node does', async (t) => {
  const { list: [a, b, c], heard, subscribers } = await nodes(t, 3);
  await b!.watch('driver-1');
  await a!.publish('driver-1', { type: 'offer', n: 1 });
  await c!.publish('rider-without-socket', { type: 'booking.updated' });
  t.true(await eventually(async () => heard.length >= 1, 10_000));
  await settle();
  t.deepEqual(heard, [{ node: 'n1', userId: 'driver-1', message: { type: 'offer', n: 1 } }]);
  t.is(await subscribers('driver-1'), 1);
  t.is(await subscribers('rider-without-socket'), 0);
});

test('a user with sessions on two nodes hears on both; the last session gone, the node stops hearing', async (t) => {
  const { list: [a, b], heard, subscribers } = await nodes(t, 2);
  await a!.watch('rider-1');
  await a!.watch('rider-1');
  await b!.watch('rider-1');
  await a!.publish('rider-1', { type: 'booking.updated', n: 1 });
  t.true(await eventually(async () => heard.length >= 2, 10_000));
  t.deepEqual(heard.map((h) => h.node).sort(), ['n0', 'n1']);
  a!.unwatch('rider-1'); // one of its two sessions: still held
  b!.unwatch('rider-1');
  t.true(await eventually(async () => (await subscribers('rider-1')) === 1, 10_000));
  heard.length = 0;
  await b!.publish('rider-1', { type: 'booking.updated', n: 2 });
  t.true(await eventually(async () => heard.length >= 1, 10_000));
  await settle();
  t.deepEqual(heard.map((h) => h.node), ['n0']);
  a!.unwatch('rider-1');
  t.true(await eventually(async () => (await subscribers('rider-1')) === 0, 10_000));
  heard.length = 0;
  await b!.publish('rider-1', { type: 'booking.updated', n: 3 });
  await settle();
  t.deepEqual(heard, []);
});

test('traces ride along with the notification they belong to', async (t) => {
  const { list: [a, b] } = await nodes(t, 2);
  const traces: (string | undefined)[] = [];
  a!.subscribe((_u, _m, trace) => traces.push(trace));
  await a!.watch('driver-2');
  await b!.publish('driver-2', { type: 'offer' }, '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
  await b!.publish('driver-2', { type: 'offer' });
  t.true(await eventually(async () => traces.length >= 2, 10_000));
  t.deepEqual(traces, ['00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', undefined]);
});
