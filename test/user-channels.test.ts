// The channels a node's notification subscriber holds (adapters/redis/user-channels.ts),
// without Redis: the sessions of one tick share one command, a channel is held while any
// session of its user is, and a refused command is sent again without holding sessions up.

import test from 'ava';
import { UserChannels } from '../adapters/redis/user-channels.ts';
import { eventually } from './helpers/node-process.ts';

function fake(refusals = 0) {
  const calls: { op: 'subscribe' | 'unsubscribe'; users: string[] }[] = [];
  const held = new Set<string>();
  const errors: unknown[] = [];
  let refuse = refusals;
  const channels = new UserChannels({
    subscribe: async (users) => {
      calls.push({ op: 'subscribe', users: [...users] });
      if (refuse-- > 0) throw new Error('refused');
      for (const u of users) held.add(u);
    },
    unsubscribe: async (users) => { calls.push({ op: 'unsubscribe', users: [...users] }); for (const u of users) held.delete(u); },
    onError: (e) => errors.push(e),
    retryMs: 20,
  });
  return { channels, calls, held, errors };
}

test('sessions that open in one tick share one subscribe, settled once it is done', async (t) => {
  const { channels, calls, held } = fake();
  const users = Array.from({ length: 500 }, (_, i) => `driver-${i}`);
  await Promise.all(users.map((u) => channels.watch(u)));
  t.deepEqual(calls.map((c) => c.op), ['subscribe']);
  t.is(calls[0]!.users.length, 500);
  t.is(held.size, 500);
  t.true(channels.watched('driver-7'));
});

test('a channel is held while any session of its user is, and given up with the last', async (t) => {
  const { channels, calls, held } = fake();
  await channels.watch('rider-1');
  await channels.watch('rider-1'); // a second phone: already held, nothing sent
  t.is(calls.length, 1);
  channels.unwatch('rider-1');
  await new Promise((r) => setTimeout(r, 30));
  t.true(held.has('rider-1'));
  t.true(channels.watched('rider-1'));
  channels.unwatch('rider-1');
  t.false(channels.watched('rider-1'));
  t.true(await eventually(async () => !held.has('rider-1'), 5_000, 5));
  t.deepEqual(calls.map((c) => c.op), ['subscribe', 'unsubscribe']);
});

test('a user who comes and goes within a tick costs no command', async (t) => {
  const { channels, calls } = fake();
  void channels.watch('driver-1');
  channels.unwatch('driver-1');
  await new Promise((r) => setTimeout(r, 30));
  t.deepEqual(calls, []);
});

test('a refused subscribe settles the session at once and is sent again until it is held', async (t) => {
  const { channels, calls, held, errors } = fake(2);
  await channels.watch('driver-1'); // settles although Redis refused
  t.false(held.has('driver-1'));
  t.true(await eventually(async () => held.has('driver-1'), 5_000, 5));
  t.is(calls.filter((c) => c.op === 'subscribe').length, 3);
  t.is(errors.length, 2);
  channels.close();
});

test('a session that comes while its user\'s unsubscribe is in flight waits for it and gets the channel back', async (t) => {
  const held = new Set<string>();
  const ops: string[] = [];
  let open!: () => void;
  const gate = new Promise<void>((r) => { open = r; });
  const channels = new UserChannels({
    subscribe: async (users) => { ops.push('subscribe'); for (const u of users) held.add(u); },
    unsubscribe: async (users) => { ops.push('unsubscribe'); await gate; for (const u of users) held.delete(u); },
    onError: () => undefined,
  });
  await channels.watch('driver-1');
  channels.unwatch('driver-1');
  t.true(await eventually(async () => ops.includes('unsubscribe'), 5_000, 5));
  let settled = false;
  const again = channels.watch('driver-1').then(() => { settled = true; });
  await new Promise((r) => setTimeout(r, 30));
  t.false(settled, 'not settled while the channel is being given up');
  open();
  await again;
  t.true(held.has('driver-1'), 'held again once the session is told so');
  t.deepEqual(ops, ['subscribe', 'unsubscribe', 'subscribe']);
});

test('a session that comes while an unsubscribe Redis refuses is in flight settles: the channel stays held', async (t) => {
  let open!: () => void;
  const gate = new Promise<void>((r) => { open = r; });
  let unsubscribes = 0;
  const channels = new UserChannels({
    subscribe: async () => undefined,
    unsubscribe: async () => { unsubscribes++; await gate; throw new Error('refused'); },
    onError: () => undefined,
    retryMs: 20,
  });
  t.teardown(() => channels.close());
  await channels.watch('driver-1');
  channels.unwatch('driver-1');
  t.true(await eventually(async () => unsubscribes === 1, 5_000, 5));
  const again = channels.watch('driver-1');
  open();
  await again;
  t.true(channels.watched('driver-1'));
});
