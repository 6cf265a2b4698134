// Cross-node asks over Redis survive a Redis restart: during the outage an ask fails
// with a timeout (never a wrong answer), and afterwards both sides carry on by themselves.
// The suite runs its own redis-server on a spare port so it can kill it.

import test from 'ava';
import { RedisRemoteChannel } from '../adapters/redis/remote-channel.ts';
import { AskTimeoutError } from '../runtime/region.ts';
import { eventually } from './helpers/node-process.ts';
import { startOwnRedis } from './helpers/own-redis.ts';

const PORT = 6390 + (process.pid % 50);

test('asks fail fast during a Redis outage and work again after it', async (t) => {
  let redis = await startOwnRedis(PORT);
  const url = `redis://127.0.0.1:${PORT}`;
  const owner = new RedisRemoteChannel({ url, nodeId: 'owner', prefix: `rr${process.pid}` });
  const asker = new RedisRemoteChannel({ url, nodeId: 'asker', prefix: `rr${process.pid}` });
  t.teardown(async () => { await owner.close(); await asker.close(); redis.kill('SIGKILL'); });
  let answered = 0;
  await owner.serve({ ask: async (to, query) => ({ entity: to.id, echo: query, n: ++answered }), reply: () => undefined });
  await asker.serve({ ask: async () => undefined, reply: () => undefined });

  const first = await asker.ask('owner', { kind: 'cell', id: 'c1' }, { q: 1 }, 2_000) as { entity: string; echo: unknown };
  t.deepEqual(first, { entity: 'c1', echo: { q: 1 }, n: 1 });

  redis.kill('SIGKILL');
  await new Promise((r) => redis.once('exit', r));
  await t.throwsAsync(asker.ask('owner', { kind: 'cell', id: 'c2' }, { q: 2 }, 500), { instanceOf: AskTimeoutError });

  redis = await startOwnRedis(PORT);
  // ioredis reconnects and re-subscribes on its own; nothing here re-creates the channels.
  t.true(await eventually(async () => {
    const answer = await asker.ask('owner', { kind: 'cell', id: 'c3' }, { q: 3 }, 500) as { entity: string };
    return answer.entity === 'c3';
  }, 15_000, 200), 'asks work again after Redis came back');
});
