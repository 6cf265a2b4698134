// The runtime in one process: in-process command log, in-memory journal.

import test from 'ava';
import type { Service } from '../actors/behavior.ts';
import { setTimeout as sleep } from 'node:timers/promises';
import { MemoryJournal } from '../adapters/memory/journal.ts';
import { MemoryReminderStore } from '../adapters/memory/reminders.ts';
import { startRig, type Rig } from './helpers/rig.ts';
import { NOT_NOW } from '../runtime/shard-host.ts';
import { counter, type CounterState } from './fixtures/counter.ts';
import { eventually } from './helpers/node-process.ts';

function rig(options: { journal?: MemoryJournal; reminders?: MemoryReminderStore; passivateAfterMs?: number; snapshotEvery?: number } = {}): Promise<Rig> {
  return startRig({ behaviors: [counter], ...options });
}

const ref = (id: string) => ({ kind: 'counter', id });
const get = (r: Rig, id: string) => r.region.ask<CounterState>(ref(id), { type: 'get' });

test('commands reach the entity in order and queries see the result', async (t) => {
  const r = await rig();
  for (let i = 1; i <= 20; i++) await r.region.tell(ref('a'), { type: 'add', n: i });
  const result = await r.region.request(ref('a'), { type: 'add', n: 0 });
  t.is(result.status, 'applied');
  t.is(result.reply, 210);
  t.is((await get(r, 'a')).total, 210);
  t.is(r.journal.count('counter:a'), 21);
  await r.stop();
});

test('asks to entities of shards held here keep no shard for them (they are answered from their activation next)', async (t) => {
  const r = await rig();
  for (let i = 0; i < 20; i++) t.is((await get(r, `ask-${i}`)).total, 0);
  t.is(r.region.askShardsKept, 0);
  await r.stop();
});

test('a command delivered twice is applied once', async (t) => {
  const r = await rig();
  const first = await r.region.request(ref('d'), { type: 'add', n: 5 }, { id: 'cmd-1' });
  const second = await r.region.request(ref('d'), { type: 'add', n: 5 }, { id: 'cmd-1' });
  t.is(first.status, 'applied');
  t.is(second.status, 'duplicate');
  t.is((await get(r, 'd')).total, 5);
  await r.stop();
});

test('tells sent by an entity are delivered once, even when the sender redelivers', async (t) => {
  const r = await rig();
  await r.region.request(ref('src'), { type: 'forward', to: 'dst', n: 7 }, { id: 'fwd-1' });
  await r.region.request(ref('src'), { type: 'forward', to: 'dst', n: 7 }, { id: 'fwd-1' });
  await r.region.request(ref('dst'), { type: 'add', n: 0 });
  t.is((await get(r, 'dst')).total, 7);
  t.is((await get(r, 'dst')).applied, 2);
  await r.stop();
});

test('a timer fires and is not re-armed once fired', async (t) => {
  const r = await rig();
  await r.region.request(ref('t'), { type: 'alarm.set', at: Date.now() + 50 });
  t.is((await get(r, 't')).alarms, 0);
  await sleep(200);
  // A query does not wait for a fire command still being written (it reads the state before it).
  t.true(await eventually(async () => (await get(r, 't')).alarms === 1, 60_000, 20), 'rang');
  await sleep(100);
  t.is((await get(r, 't')).alarms, 1, 'once');
  t.deepEqual(await r.reminders.forShards([...Array(8).keys()]), [], 'the fired timer leaves no reminder');
  await r.stop();
});

test('a timer set before a restart fires after it', async (t) => {
  const journal = new MemoryJournal();
  const reminders = new MemoryReminderStore();
  const first = await rig({ journal, reminders });
  await first.region.request(ref('alarm'), { type: 'alarm.set', at: Date.now() + 300 });
  await first.stop();
  const second = await rig({ journal, reminders });
  await sleep(500);
  t.true(second.host.isActive(ref('alarm')), 'the reminder activated the entity without any message');
  t.is((await get(second, 'alarm')).alarms, 1);
  await second.stop();
});

test('passivation stops idle entities and re-activation restores their state', async (t) => {
  const r = await rig({ passivateAfterMs: 100 });
  await r.region.request(ref('p'), { type: 'add', n: 3 });
  await r.region.request(ref('p'), { type: 'seen', at: 12345 });
  t.true(r.host.isActive(ref('p')));
  await sleep(600);
  t.false(r.host.isActive(ref('p')), 'passivated after idling');
  const state = await get(r, 'p');
  t.is(state.total, 3);
  t.is(state.lastSeen, 12345, 'soft state survives passivation through its snapshot');
  await r.stop();
});

test('recovery from a snapshot plus the journal tail', async (t) => {
  const journal = new MemoryJournal();
  const first = await rig({ journal, snapshotEvery: 10 });
  for (let i = 0; i < 25; i++) await first.region.request(ref('s'), { type: 'add', n: 1 });
  const snap = await journal.latestSnapshot('counter:s');
  t.truthy(snap, 'nact took a snapshot every 10 entries');
  t.is(snap!.sequenceNr, 20);
  // Crash: no graceful stop, so no final snapshot; a new node recovers from snapshot 20 + 5 entries.
  const second = await rig({ journal, snapshotEvery: 10 });
  t.is((await get(second, 's')).total, 25);
  await second.stop();
  await first.stop();
});

test('an event written by an older version still decodes', async (t) => {
  const journal = new MemoryJournal();
  await journal.append({
    persistenceKey: 'counter:old', sequenceNr: 1, createdAt: Date.now(), tags: [],
    data: { v: 1, cmd: 'legacy-1', at: 0, events: [{ type: 'added', amount: 40 }], tells: [], timersSet: [], timersCancelled: [] },
  });
  const r = await rig({ journal });
  await r.region.request(ref('old'), { type: 'add', n: 2 });
  const state = await get(r, 'old');
  t.is(state.total, 42);
  t.is(state.applied, 2);
  await r.stop();
});

test('a reducer that throws: the command is dead-lettered at once, the caller told, and the entity keeps working', async (t) => {
  const r = await rig();
  await r.region.request(ref('b'), { type: 'add', n: 1 });
  const result = await r.region.request(ref('b'), { type: 'boom' });
  t.is(result.status, 'failed');
  t.like(result.failure, { kind: 'reducer_failed', retriable: false });
  t.is(result.deadLetter, (await r.deadLetters.list(10))[0]?.id);
  t.like((await r.deadLetters.list(10))[0], { attempts: 1, command: { message: { type: 'boom' } }, failure: { kind: 'reducer_failed' } });
  await r.region.request(ref('b'), { type: 'add', n: 1 });
  t.is((await get(r, 'b')).total, 2);
  await r.stop();
});

test('a storage outage delays commands without losing or doubling them', async (t) => {
  const r = await rig();
  await r.region.request(ref('o'), { type: 'add', n: 1 });
  r.journal.failing = new Error('connection refused');
  const pending = r.region.request(ref('o'), { type: 'add', n: 10 }, { timeoutMs: 5_000 });
  await sleep(100);
  t.true(r.region.stats().commandsRetried > 0, 'the command is being retried');
  r.journal.failing = undefined;
  t.is((await pending).status, 'applied');
  t.is((await get(r, 'o')).total, 11);
  t.is(r.journal.count('counter:o'), 2);
  await r.stop();
});

test('unknown entity kinds are dead-lettered, not crashed on', async (t) => {
  const r = await rig();
  const result = await r.region.request({ kind: 'nope', id: '1' }, { type: 'x' });
  t.is(result.status, 'failed');
  t.like(result.failure, { kind: 'undecodable', retriable: false });
  t.is((await r.deadLetters.list(10)).length, 1, 'set aside, and the shard goes on');
  t.is((await r.region.request(ref('after-unknown'), { type: 'add', n: 1 })).status, 'applied');
  await r.stop();
});

test('many entities in parallel each see all their commands', async (t) => {
  const r = await rig();
  const ids = Array.from({ length: 200 }, (_, i) => `m${i}`);
  await Promise.all(ids.flatMap((id) => [1, 2, 3].map((n) => r.region.tell(ref(id), { type: 'add', n }))));
  await Promise.all(ids.map((id) => r.region.request(ref(id), { type: 'add', n: 0 })));
  const totals = await Promise.all(ids.map((id) => get(r, id)));
  t.true(totals.every((s) => s.total === 6 && s.applied === 4));
  await r.stop();
});

test('soft state is snapshotted every few changes, so a crash loses little of it', async (t) => {
  const journal = new MemoryJournal();
  const first = await rig({ journal });
  for (let i = 1; i <= 12; i++) await first.region.request(ref('soft'), { type: 'seen', at: i });
  t.is(journal.count('counter:soft'), 0, 'soft changes are not journaled');
  t.is((await journal.latestSnapshot('counter:soft'))?.data && ((await journal.latestSnapshot('counter:soft'))!.data as { state: CounterState }).state.lastSeen, 10);
  // A crash: the first node is abandoned without stopping.
  const second = await rig({ journal });
  t.is((await get(second, 'soft')).lastSeen, 10, 'recovered up to the last soft snapshot');
  await second.stop();
  await first.stop();
});

/** An entity that requests a service deferred to `at`, and keeps what the answers say. */
const deferring = {
  kind: 'deferring',
  eventVersion: 1,
  ephemeral: true,
  initial: () => ({ answers: [] as number[] }),
  handle: (s: { answers: number[] }, m: { type: 'go'; at: number } | { type: 'answer'; ranAt: number }) => (m.type === 'go'
    ? { state: s, events: [], effects: [{ type: 'request' as const, service: 'stamp', payload: {}, at: m.at }] }
    : { state: { answers: [...s.answers, m.ranAt] }, events: [], effects: [] }),
  apply: (s: { answers: number[] }) => s,
  query: (s: { answers: number[] }) => s,
};

test('a request deferred to a time already due runs after the step that asked for it is stored: it reads that step\'s state', async (t) => {
  // Run at once, inside the requesting step, a service that asks its requester read the state from before the step:
  // an area's batch found no window and closed none (every later join waited in it).
  const seen: unknown[] = [];
  const services: Record<string, Service> = { stamp: async (_p, ports) => {
    seen.push(await ports.ask(ports.requester, {}));
    return undefined;
  } };
  const marking = {
    ...deferring, kind: 'marking',
    initial: () => ({ answers: [] as number[], marked: false }),
    handle: (s: { answers: number[]; marked: boolean }, m: { type: 'go'; at: number }) =>
      ({ state: { ...s, marked: true }, events: [], effects: [{ type: 'request' as const, service: 'stamp', payload: {}, at: m.at }] }),
  };
  const r = await startRig({ behaviors: [marking], services });
  r.region.tellSoft({ kind: 'marking', id: 'm' }, { type: 'go', at: Date.now() - 1 });
  await r.region.request({ kind: 'marking', id: 'm2' }, { type: 'go', at: Date.now() - 1 });
  t.true(await eventually(async () => seen.length === 2, 60_000, 20));
  t.deepEqual(seen.map((s) => (s as { marked: boolean }).marked), [true, true]);
  await r.stop();
});

test('a deferred request runs its service no earlier than its time; a node stopped before then drops it', async (t) => {
  let runs = 0;
  const services = { stamp: async (_p: unknown, ports: { now: number }) => { runs++; return { type: 'answer', ranAt: ports.now }; } };
  const r = await startRig({ behaviors: [deferring], services });
  const at = Date.now() + 300;
  await r.region.request({ kind: 'deferring', id: 'x' }, { type: 'go', at });
  t.true(await eventually(async () => (await r.region.ask<{ answers: number[] }>({ kind: 'deferring', id: 'x' }, {})).answers.length === 1, 60_000, 20));
  const [ranAt] = (await r.region.ask<{ answers: number[] }>({ kind: 'deferring', id: 'x' }, {})).answers;
  t.true(ranAt! >= at, `ran at ${ranAt! - at} ms from its time`);
  await r.stop();

  const stopped = await startRig({ behaviors: [deferring], services });
  runs = 0;
  await stopped.region.request({ kind: 'deferring', id: 'y' }, { type: 'go', at: Date.now() + 200 });
  await stopped.stop();
  await sleep(500);
  t.is(runs, 0, 'dropped with the node that held it');
});

test('asks of entities of two kinds with the same id each go to their own shard', async (t) => {
  const tally = { ...counter, kind: 'tally' };
  const r = await startRig({ behaviors: [counter, tally], shards: 32 });
  // Ids whose shard differs between the kinds: a cache of shards keyed by id alone would send one kind's ask to the other's shard.
  const ids = Array.from({ length: 200 }, (_, i) => `e${i}`).filter((id) => r.region.shardOf({ kind: 'counter', id }) !== r.region.shardOf({ kind: 'tally', id })).slice(0, 5);
  t.is(ids.length, 5);
  // An ask to an entity not active here finds its shard, and activates it there.
  const activated: { kind: string; shard: number }[] = [];
  const query = r.host.query.bind(r.host);
  r.host.query = (self, shard, q) => { activated.push({ kind: self.kind, shard }); return query(self, shard, q); };
  for (const id of ids) {
    for (const kind of ['counter', 'tally']) {
      activated.length = 0;
      t.is((await r.region.ask<CounterState>({ kind, id }, { type: 'get' })).total, 0);
      t.deepEqual(activated, [{ kind, shard: r.region.shardOf({ kind, id }) }], `${kind} ${id}`);
    }
  }
  // Active now: answered at once, each from its own state.
  for (const id of ids) {
    await r.region.request({ kind: 'tally', id }, { type: 'add', n: 2 });
    t.is(r.region.askNow<CounterState>({ kind: 'counter', id }, { type: 'get' })?.value.total, 0);
    t.is(r.region.askNow<CounterState>({ kind: 'tally', id }, { type: 'get' })?.value.total, 2);
  }
  await r.stop();
});

test('the host answers at once only for an active entity whose shard the caller serves, the shard read from its activation', async (t) => {
  const r = await startRig({ behaviors: [counter], shards: 32 });
  await r.region.request(ref('s'), { type: 'add', n: 3 });
  const asked: number[] = [];
  const serves = (ok: boolean) => (shard: number) => { asked.push(shard); return ok; };
  t.is(r.host.queryServed(ref('s'), serves(false), { type: 'get' }), NOT_NOW);
  t.is((r.host.queryServed(ref('s'), serves(true), { type: 'get' }) as CounterState).total, 3);
  t.deepEqual(asked, [r.region.shardOf(ref('s')), r.region.shardOf(ref('s'))]);
  // Not active here: not answered, and no shard to ask about.
  t.is(r.host.queryServed(ref('never'), serves(true), { type: 'get' }), NOT_NOW);
  t.is(asked.length, 2);
  await r.stop();
});
