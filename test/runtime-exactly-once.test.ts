// Exactly-once without a window, on real PostgreSQL: a command redelivered however
// late gets the answer it got the first time, across restarts (runtime/dedupe.ts).

import test from 'ava';
import { makeDriverBehavior } from '../actors/driver.ts';
import { PostgresJournal } from '../adapters/postgres/journal.ts';
import { openOrm } from '../adapters/postgres/orm.ts';
import type { CommandEnvelope, CommandLog } from '../runtime/ports.ts';
import { counter, type CounterState } from './fixtures/counter.ts';
import { startRig, type Rig } from './helpers/rig.ts';
import { freshDatabase } from './helpers/services.ts';

const ref = (id: string) => ({ kind: 'counter', id });
const driver = makeDriverBehavior({ cellRes: 7, offerTimeoutMs: 15_000 });

/** A PostgreSQL journal on a database of the test's own; rigs started on it share it, as restarts do. */
async function postgres(t: { teardown(f: () => Promise<void>): void }) {
  const db = await freshDatabase();
  const orm = await openOrm({ url: db.url, poolMax: 4 });
  t.teardown(async () => { await orm.close(true); await db.drop(); });
  return new PostgresJournal(orm);
}

/** A rig whose log remembers every envelope appended, so a test can append one again (a late redelivery). */
async function rigOn(storage: PostgresJournal, options: { snapshotEvery?: number } = {}) {
  const appended: CommandEnvelope[] = [];
  let log: CommandLog | undefined;
  const rig = await startRig({
    behaviors: [counter, driver], storage, snapshotEvery: options.snapshotEvery,
    wrapLog: (inner) => (log = {
      shards: inner.shards,
      append: async (shard, command) => { appended.push(command); await inner.append(shard, command); },
      appendMany: async (entries) => { appended.push(...entries.map((e) => e.command)); await inner.appendMany(entries); },
      start: (h) => inner.start(h), commit: (s, o) => inner.commit(s, o), stop: () => inner.stop(),
    }),
  });
  const redeliver = (command: CommandEnvelope) => log!.append(rig.region.shardOf(command.to), command);
  return { rig, appended, redeliver };
}

async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const get = (r: Rig, id: string) => r.region.ask<CounterState>(ref(id), { type: 'get' });

test('a tell redelivered after more than 128 other commands, and after a restart, is applied once', async (t) => {
  const journal = await postgres(t);
  const first = await rigOn(journal, { snapshotEvery: 50 });
  await first.rig.region.request(ref('src'), { type: 'forward', to: 'dst', n: 7 }, { id: 'fwd-1' });
  const tell = first.appended.find((c) => c.to.id === 'dst')!;
  t.truthy(tell.origin, 'a durable tell carries its origin');
  for (let i = 0; i < 150; i++) await first.rig.region.tell(ref('dst'), { type: 'add', n: 1 });
  await eventually('the 150 adds', async () => (await get(first.rig, 'dst')).applied === 151);
  await first.redeliver(tell);
  await first.rig.region.request(ref('dst'), { type: 'add', n: 0 }); // behind the redelivery in the same partition
  t.is((await get(first.rig, 'dst')).total, 157, 'the late tell was dropped');
  await first.rig.stop();

  // Recovered from its snapshot and journal tail, the receiver still knows the sender's mark.
  const second = await rigOn(journal, { snapshotEvery: 50 });
  t.teardown(() => second.rig.stop());
  await second.redeliver(tell);
  const marker = await second.rig.region.request(ref('dst'), { type: 'add', n: 0 });
  t.is(marker.status, 'applied');
  const state = await get(second.rig, 'dst');
  t.is(state.total, 157);
  t.is(state.applied, 153, 'the forwarded add, 150 adds and two markers');
  t.is(second.rig.region.stats().commandsDuplicate, 1);
});

test('a command re-sent by a client under its id long after is recognised by the journal', async (t) => {
  const journal = await postgres(t);
  const { rig } = await rigOn(journal);
  t.teardown(() => rig.stop());
  t.is((await rig.region.request(ref('k'), { type: 'add', n: 5 }, { id: 'client-key-1' })).status, 'applied');
  for (let i = 0; i < 140; i++) await rig.region.request(ref('k'), { type: 'add', n: 1 });
  t.is((await rig.region.request(ref('k'), { type: 'add', n: 5 }, { id: 'client-key-1' })).status, 'duplicate');
  t.is((await get(rig, 'k')).total, 145);
});

test('a refused command redelivered after the state changed, and a restart, gets the same refusal', async (t) => {
  const journal = await postgres(t);
  const first = await rigOn(journal);
  const refused = await first.rig.region.request(ref('r'), { type: 'take', n: 5 }, { id: 'take-1' });
  t.is(refused.status, 'rejected');
  t.is(refused.rejection?.code, 'too_little');
  await first.rig.region.request(ref('r'), { type: 'add', n: 10 });
  t.is((await first.rig.region.request(ref('r'), { type: 'take', n: 5 }, { id: 'take-1' })).rejection?.code, 'too_little', 'answered from memory');
  await first.rig.stop();

  const second = await rigOn(journal);
  t.teardown(() => second.rig.stop());
  const again = await second.rig.region.request(ref('r'), { type: 'take', n: 5 }, { id: 'take-1' });
  t.is(again.status, 'rejected', 'not re-decided against the newer state');
  t.is(again.rejection?.code, 'too_little');
  t.is((await get(second.rig, 'r')).total, 10);
  t.is((await second.rig.region.request(ref('r'), { type: 'take', n: 5 }, { id: 'take-2' })).status, 'applied', 'a new command is decided');
});

test('rating a booking twice counts once, through different command ids and a late redelivery', async (t) => {
  const journal = await postgres(t);
  const { rig } = await rigOn(journal);
  t.teardown(() => rig.stop());
  const d = { kind: 'driver', id: 'd-rated' };
  t.is((await rig.region.request(d, { type: 'rated', bookingId: 'bk_1', stars: 4 }, { id: 'rate-a' })).status, 'applied');
  const twice = await rig.region.request(d, { type: 'rated', bookingId: 'bk_1', stars: 1 }, { id: 'rate-b' });
  t.is(twice.status, 'rejected');
  t.is(twice.rejection?.code, 'already_rated');
  t.is((await rig.region.request(d, { type: 'rated', bookingId: 'bk_2', stars: 2 }, { id: 'rate-c' })).status, 'applied');
  t.is((await rig.region.request(d, { type: 'rated', bookingId: 'bk_1', stars: 4 }, { id: 'rate-a' })).status, 'duplicate');
  const view = await rig.region.ask<{ ratingCount: number; rating: number }>(d, { type: 'get' });
  t.is(view.ratingCount, 2);
  t.is(view.rating, 3);
});
