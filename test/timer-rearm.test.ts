// A timer re-armed with `durable: false` (actors/behavior.ts): periodic work that costs no
// journal row and no reminder write per period, and that a crash runs at once.

import test from 'ava';
import type { Behavior } from '../actors/behavior.ts';
import { MemoryJournal } from '../adapters/memory/journal.ts';
import { MemoryReminderStore } from '../adapters/memory/reminders.ts';
import type { CommandEnvelope, CommandLog } from '../runtime/ports.ts';
import { isTimerFire } from '../runtime/timers.ts';
import { startRig } from './helpers/rig.ts';
import { eventually } from './helpers/node-process.ts';

interface PulseState { readonly beats: number }
type PulseMessage =
  | { readonly type: 'start'; readonly everyMs: number; readonly firstInMs?: number; readonly until?: number }
  /** Lapses (is not set again) once it has beaten `until` times. */
  | { readonly type: 'beat'; readonly everyMs: number; readonly until?: number }
  | { readonly type: 'stop' }
  /** Starts over and re-arms in the same outcome: cancelled in the journal, so the set must be journaled. */
  | { readonly type: 'restart'; readonly everyMs: number };

/** Beats are soft (never journaled): what a driver's presence is to its cell. */
const pulse: Behavior<PulseState, PulseMessage, { readonly type: 'started' }, { readonly type: 'get' }, PulseState> = {
  kind: 'pulse',
  eventVersion: 1,
  initial: () => ({ beats: 0 }),
  handle(state, msg, ctx) {
    const beat = (everyMs: number, until?: number) => ({ name: 'beat', at: ctx.now + everyMs, message: { type: 'beat', everyMs, until } });
    switch (msg.type) {
      case 'start':
        return { state, events: [{ type: 'started' }], effects: [{ type: 'timer.set', ...beat(msg.everyMs, msg.until), at: ctx.now + (msg.firstInMs ?? msg.everyMs) }] };
      case 'beat': {
        const beats = state.beats + 1;
        if (msg.until !== undefined && beats >= msg.until) return { state: { beats }, events: [], effects: [] };
        return { state: { beats }, events: [], effects: [{ type: 'timer.set', ...beat(msg.everyMs, msg.until), durable: false }] };
      }
      case 'stop':
        return { state, events: [], effects: [{ type: 'timer.cancel', name: 'beat' }] };
      case 'restart':
        return { state, events: [], effects: [{ type: 'timer.cancel', name: 'beat' }, { type: 'timer.set', ...beat(msg.everyMs), durable: false }] };
    }
  },
  apply: (state) => state,
  query: (state) => state,
};

const ref = { kind: 'pulse', id: 'p' };
const key = 'pulse:p';
const ALL_SHARDS = [...Array(8).keys()];

test('a timer re-armed in memory fires every period with no journal row and no reminder write after the first', async (t) => {
  const r = await startRig({ behaviors: [pulse] });
  await r.region.request(ref, { type: 'start', everyMs: 30 });
  const [reminder] = await r.reminders.forShards(ALL_SHARDS);
  t.truthy(reminder, 'the journaled set wrote its reminder');
  t.true(await eventually(async () => (await r.region.ask<PulseState>(ref, { type: 'get' })).beats >= 5, 60_000, 20), 'it keeps firing');
  t.is(r.journal.count(key), 1, 'one journal row: the start; none per beat');
  t.deepEqual(await r.reminders.forShards(ALL_SHARDS), [reminder], 'the reminder keeps the first due time');
  await r.stop();
});

test('after a crash, a timer re-armed in memory fires at once, at the due time the journal holds', async (t) => {
  const journal = new MemoryJournal();
  const reminders = new MemoryReminderStore();
  const first = await startRig({ behaviors: [pulse], journal, reminders });
  // The first beat comes at once, and re-arms ten minutes ahead in memory only.
  await first.region.request(ref, { type: 'start', firstInMs: 0, everyMs: 600_000 });
  t.true(await eventually(async () => (await first.region.ask<PulseState>(ref, { type: 'get' })).beats === 1, 60_000, 20));
  t.is(journal.count(key), 1, 'the start alone');
  // A second node on the same storage, as after a crash (no stop, no snapshot of the first).
  const second = await startRig({ behaviors: [pulse], journal, reminders });
  t.true(await eventually(async () => (await second.region.ask<PulseState>(ref, { type: 'get' })).beats === 1, 60_000, 20),
    'it fired on recovery, ten minutes before the in-memory due time');
  await Promise.all([first.stop(), second.stop()]);
});

test('a cancelled timer stays cancelled; one set again after a cancel in the same outcome is journaled', async (t) => {
  const r = await startRig({ behaviors: [pulse] });
  await r.region.request(ref, { type: 'start', everyMs: 600_000 });
  await r.region.request(ref, { type: 'restart', everyMs: 600_000 });
  t.is(r.journal.count(key), 2, 'the restart has a row: its set is not left to memory');
  t.is((await r.reminders.forShards(ALL_SHARDS)).length, 1, 'and its reminder');
  await r.region.request(ref, { type: 'stop' });
  t.true(await eventually(async () => (await r.reminders.forShards(ALL_SHARDS)).length === 0, 60_000, 20), 'the cancel clears the reminder');
  t.deepEqual(r.host.armedTimers(ref), []);
  await r.stop();
});

/** The log, counting the timer fires appended to it. */
function countingFires(fires: CommandEnvelope[]) {
  return (log: CommandLog): CommandLog => new Proxy(log, {
    get(target, name) {
      if (name === 'append') {
        return (shard: number, command: CommandEnvelope) => {
          if (isTimerFire(command.message)) fires.push(command);
          return target.append(shard, command);
        };
      }
      const value = Reflect.get(target, name) as unknown;
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

test('a fire that only re-arms its timer in memory skips the log; the one that lets it lapse goes through it', async (t) => {
  const fires: CommandEnvelope[] = [];
  const r = await startRig({ behaviors: [pulse], wrapLog: countingFires(fires) });
  await r.region.request(ref, { type: 'start', everyMs: 20, until: 6 });
  t.true(await eventually(async () => (await r.region.ask<PulseState>(ref, { type: 'get' })).beats === 6, 60_000, 20), 'six beats');
  t.true(await eventually(async () => (await r.reminders.forShards(ALL_SHARDS)).length === 0, 60_000, 20), 'the lapse cleared the reminder');
  t.is(fires.length, 1, 'five beats went by no log record; the lapse (a cancel in the journal) did');
  t.is(r.journal.count(key), 2, 'the start and the lapse');
  t.deepEqual(r.host.armedTimers(ref), []);
  await r.stop();
});
