// Reminder writes of one entity land in the order the entity made them: a command that
// cancels a timer and the next that sets it again must leave the reminder in place,
// however the two writes race on storage (they may run on different pooled connections).

import test from 'ava';
import { MemoryReminderStore } from '../adapters/memory/reminders.ts';
import { ShardTimers } from '../runtime/shard-timers.ts';
import { backoff } from '../runtime/backoff.ts';
import type { Reminder, ReminderStore } from '../runtime/ports.ts';

/** A store whose clears take longer than its sets, as a slow connection would make them. */
class SlowClears implements ReminderStore {
  readonly inner = new MemoryReminderStore();
  async set(r: Reminder): Promise<void> { await this.inner.set(r); }
  async clear(key: string, name: string): Promise<void> {
    await new Promise((r) => setTimeout(r, 50));
    await this.inner.clear(key, name);
  }
  forShards(shards: readonly number[]): Promise<Reminder[]> { return this.inner.forShards(shards); }
}

function timers(store: ReminderStore): ShardTimers {
  return new ShardTimers({
    log: { append: async () => undefined }, reminders: store,
    host: { knows: () => true, isActive: () => true, activate: async () => undefined, armedTimers: () => [] },
    shardOf: () => 0, holds: () => true, paused: () => false, stopping: () => false, now: Date.now,
    backoff: () => backoff(5, 10),
  });
}

test('a reminder cleared by one command and set by the next is there afterwards, however slow the clear', async (t) => {
  const store = new SlowClears();
  const self = { kind: 'booking', id: 'b1' };
  const at = Date.now() + 60_000;
  const shardTimers = timers(store);
  await shardTimers.remember(self, 'offer-timeout', at - 1_000);
  shardTimers.forget(self, 'offer-timeout'); // command 1: cancels (not waited for)
  await shardTimers.remember(self, 'offer-timeout', at); // command 2: sets it again
  await new Promise((r) => setTimeout(r, 200));
  t.deepEqual(await store.forShards([0]), [{ shard: 0, entityKey: 'booking:b1', name: 'offer-timeout', dueAt: at }]);
});

test('reminder writes of different entities do not wait for each other', async (t) => {
  const store = new SlowClears();
  const shardTimers = timers(store);
  shardTimers.forget({ kind: 'booking', id: 'slow' }, 'offer-timeout');
  let setDone = false;
  const set = shardTimers.remember({ kind: 'booking', id: 'other' }, 'offer-timeout', Date.now() + 1_000).then(() => { setDone = true; });
  await new Promise((r) => setTimeout(r, 10));
  t.true(setDone, 'the other entity\'s set did not queue behind the slow clear');
  await set;
});
