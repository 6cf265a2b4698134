// Faults inside the runtime, provoked one at a time on the in-process node: a second
// writer, a command log that refuses a write, storage failing as a timer comes due.
// After each, the invariants: every command applied once, nothing a failed command
// did not journal is ever saved, a timer fires without anyone poking its entity.

import test from 'ava';
import { MemoryJournal } from '../adapters/memory/journal.ts';
import { DEFAULT_CELL, makeCellBehavior } from '../actors/cell.ts';
import { makeDriverBehavior } from '../actors/driver.ts';
import { makeBookingBehavior, DEFAULT_BOOKING, type DispatchMode } from '../actors/booking.ts';
import { DEFAULT_AREA, EVERY_WINDOW_WAITS, makeAreaBehavior } from '../actors/area.ts';
import { makeVehicleBehavior } from '../actors/vehicle.ts';
import { batchService, nearestService } from '../actors/index.ts';
import type { CommandLog } from '../runtime/ports.ts';
import { counter, type CounterState } from './fixtures/counter.ts';
import { createBooking } from './fixtures/booking-request.ts';
import { startRig, type Rig } from './helpers/rig.ts';
import { eventually } from './helpers/node-process.ts';

const ref = (id: string) => ({ kind: 'counter', id });
const get = (r: Rig, id: string) => r.region.ask<CounterState>(ref(id), { type: 'get' });

test('a command that lost a race with a second writer ends on top of it: 1 + 100 + 10 = 111, also after a restart', async (t) => {
  const journal = new MemoryJournal();
  const r = await startRig({ behaviors: [counter], journal, snapshotEvery: 2 });
  await r.region.request(ref('race'), { type: 'add', n: 1 });
  // Another owner (a paused node waking up, say) writes the entity's next entry first.
  await journal.append({
    persistenceKey: 'counter:race', sequenceNr: 2, createdAt: Date.now(), tags: [],
    data: { v: 2, cmd: 'other-writer', at: Date.now(), events: [{ type: 'added', n: 100, by: 'v2' }], tells: [], timersSet: [], timersCancelled: [] },
  });
  const result = await r.region.request(ref('race'), { type: 'add', n: 10 });
  t.is(result.status, 'applied');
  t.is((await get(r, 'race')).total, 111);
  t.is(journal.count('counter:race'), 3);
  await r.stop();
  const again = await startRig({ behaviors: [counter], journal, snapshotEvery: 2 });
  t.is((await get(again, 'race')).total, 111, 'recovered from snapshot and journal, the same');
  await again.stop();
});

/** A log whose next appendMany (the tells of a handled command) fails once. */
function flakyTells(log: CommandLog, armed: { failNext: boolean }): CommandLog {
  return {
    shards: log.shards,
    append: (shard, command) => log.append(shard, command),
    appendMany: async (entries) => {
      if (armed.failNext) { armed.failNext = false; throw new Error('broker not available'); }
      return log.appendMany(entries);
    },
    start: (handlers) => log.start(handlers),
    commit: (shard, offset) => log.commit(shard, offset),
    ...(log.drain ? { drain: () => log.drain!() } : {}),
    stop: () => log.stop(),
  };
}

test('tells that the log refuses after the journal took the command: the command is in the journal once and its tells arrive once, also after a restart', async (t) => {
  const journal = new MemoryJournal();
  const armed = { failNext: false };
  const r = await startRig({ behaviors: [counter], journal, snapshotEvery: 2, wrapLog: (log) => flakyTells(log, armed) });
  await r.region.request(ref('src'), { type: 'add', n: 1 });
  armed.failNext = true;
  const result = await r.region.request(ref('src'), { type: 'forward', to: 'dst', n: 7 }, { id: 'fwd-once' });
  t.false(armed.failNext, 'the fault happened');
  t.true(['applied', 'duplicate'].includes(result.status), result.status);
  t.true(await eventually(async () => (await get(r, 'dst')).total === 7));
  t.is(journal.count('counter:src'), 2, 'add + forward, the forward once');
  await r.stop();
  const again = await startRig({ behaviors: [counter], journal });
  t.is((await get(again, 'dst')).total, 7);
  t.is(journal.count('counter:src'), 2);
  await again.stop();
});

test('a timer whose fire meets a storage outage rings once storage is back, with nobody poking the entity', async (t) => {
  const journal = new MemoryJournal();
  const r = await startRig({ behaviors: [counter], journal });
  await r.region.request(ref('alarm'), { type: 'alarm.set', at: Date.now() + 300 });
  journal.failing = new Error('connection refused');
  const retried = r.region.stats().commandsRetried;
  t.true(await eventually(async () => r.region.stats().commandsRetried > retried), 'the fire command met the outage');
  journal.failing = undefined;
  // Counted in the journal: asking the entity would activate it, which is the poke this must not need.
  t.true(await eventually(async () => journal.count('counter:alarm') === 2), 'alarm.set and the ring');
  t.is((await get(r, 'alarm')).alarms, 1);
  await r.stop();
});

// Both dispatch modes: in batched mode the next driver comes from the next batch.
for (const mode of ['greedy', 'batched'] as const satisfies readonly DispatchMode[]) {
  test(`${mode}: storage failing as an offer times out: the booking still moves to the next driver, with no outside poke`, async (t) => {
    const journal = new MemoryJournal();
    const r = await startRig({
      journal,
      behaviors: [
        makeDriverBehavior({ cellRes: 7, offerTimeoutMs: 60_000 }),
        makeCellBehavior(DEFAULT_CELL),
        makeBookingBehavior({ ...DEFAULT_BOOKING, offerTimeoutMs: 1_000, deadlineMs: 120_000, dispatchMode: mode, batchMs: 300 }),
        makeVehicleBehavior(),
        makeAreaBehavior({ ...DEFAULT_AREA, batchMs: 300, contention: EVERY_WINDOW_WAITS }),
      ],
      services: { nearest: nearestService(7), batch: batchService(7) },
    });
    const pickup = { lat: 52.52, lng: 13.405 };
    for (const [id, dLat] of [['near', 0.001], ['far', 0.01]] as const) {
      await r.region.request({ kind: 'driver', id }, { type: 'online', vehicleType: 'economy' });
      await r.region.request({ kind: 'driver', id }, { type: 'location', fix: { lat: pickup.lat + dLat, lng: pickup.lng, at: Date.now() } });
    }
    const offers: string[] = [];
    r.notifier.subscribe((userId, m) => { if ((m as { type: string }).type === 'offer') offers.push(userId); });
    await r.region.request({ kind: 'booking', id: 'b1' }, createBooking({ riderId: 'rider', pickup, cellRes: 7 }));
    t.true(await eventually(async () => offers.includes('near')));
    // The near driver never answers; storage goes away before the offer's timer is due.
    journal.failing = new Error('connection refused');
    const retried = r.region.stats().commandsRetried;
    t.true(await eventually(async () => r.region.stats().commandsRetried > retried), 'the timeout met the outage');
    journal.failing = undefined;
    t.true(await eventually(async () => offers.includes('far')), `offers: ${offers.join(', ')}`);
    await r.stop();
  });
}

test('an entity stopped with messages still queued: every caller hears so, no promise is left pending', async (t) => {
  const journal = new MemoryJournal();
  const r = await startRig({ behaviors: [counter], journal });
  await r.region.request(ref('hung'), { type: 'add', n: 1 });
  // The next write never returns (a statement stuck in the database).
  const append = journal.append.bind(journal);
  journal.append = () => new Promise(() => undefined);
  const shard = r.region.shardOf(ref('hung'));
  const stuck = r.host.command(ref('hung'), shard, (done) => ({ t: 'command', command: { id: 'stuck-1', to: ref('hung'), message: { type: 'add', n: 1 }, at: Date.now() }, done: done as never }));
  const queued = r.host.command(ref('hung'), shard, (done) => ({ t: 'command', command: { id: 'queued-1', to: ref('hung'), message: { type: 'add', n: 1 }, at: Date.now() }, done: done as never }));
  // A query does not queue: it is answered from the state before the stuck write.
  t.is(((await r.host.query(ref('hung'), shard, { type: 'get' })) as CounterState).total, 1);
  await r.host.stopAll();
  const outcome = await Promise.race([
    Promise.allSettled([stuck, queued]),
    new Promise((resolve) => setTimeout(() => resolve('pending'), 60_000)),
  ]);
  t.not(outcome, 'pending');
  const [first, second] = outcome as PromiseSettledResult<unknown>[];
  t.is(first?.status, 'rejected');
  t.is(second?.status, 'rejected');
  t.regex(String((second as PromiseRejectedResult).reason), /stopped before it handled/);
  journal.append = append;
  await r.stop();
});

test('an idle entity whose timer is far off is passivated, and its reminder brings it back in time to fire', async (t) => {
  const journal = new MemoryJournal();
  const r = await startRig({ behaviors: [counter], journal, passivateAfterMs: 100, keepTimersWithinMs: 600, reminderScanMs: 200 });
  await r.region.request(ref('sleeper'), { type: 'alarm.set', at: Date.now() + 2_000 });
  t.true(await eventually(async () => !r.host.isActive(ref('sleeper'))), 'passivated while its timer is far off');
  t.true(await eventually(async () => journal.count('counter:sleeper') === 2), 'back in time, and the alarm rang');
  await r.stop();
});

test('a request whose append outlasts its timeout fails with AskTimeoutError and leaves no unhandled rejection to end the process', async (t) => {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.on('unhandledRejection', onUnhandled);
  t.teardown(() => { process.off('unhandledRejection', onUnhandled); });
  const slow = { appendMs: 0 };
  const r = await startRig({
    behaviors: [counter], askTimeoutMs: 50,
    wrapLog: (log) => ({
      ...flakyTells(log, { failNext: false }),
      // A broker that takes its time (a rebalance, a restart): longer than the ask timeout.
      append: async (shard, command) => { await new Promise((w) => setTimeout(w, slow.appendMs)); return log.append(shard, command); },
    }),
  });
  slow.appendMs = 300;
  await t.throwsAsync(r.region.request(ref('slow'), { type: 'add', n: 1 }), { name: 'AskTimeoutError' });
  // Unhandled rejections are reported after the microtask queue drains: give them a moment.
  await new Promise((w) => setTimeout(w, 200));
  t.deepEqual(unhandled, [], 'no unhandled rejection');
  await r.stop();
});
