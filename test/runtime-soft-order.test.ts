// Soft messages around the mailbox: an idle entity handles a soft message at once (no
// mailbox turn); a busy one gathers the soft messages that come meanwhile into one batch
// behind what it is handling. Either way an entity sees its messages in the order they
// came: a soft message never overtakes a command in hand or one queued before it.

import test from 'ava';
import type { Behavior } from '../actors/behavior.ts';
import type { CommandResult } from '../runtime/ports.ts';
import type { SoftOutcome } from '../runtime/entity-actor.ts';
import { GatedJournal, recorder, until, type Log } from './helpers/recorder.ts';
import { startRig } from './helpers/rig.ts';

async function rig(t: import('ava').ExecutionContext) {
  const journal = new GatedJournal();
  const r = await startRig({ behaviors: [recorder], journal });
  t.teardown(() => r.stop());
  const ref = { kind: 'recorder', id: 'r1' };
  const shard = r.region.shardOf(ref);
  /** A command straight to the host, as the log's consumer hands one over. */
  const command = (v: string) => r.host.command(ref, shard, (done) => ({
    t: 'command', command: { id: `cmd-${v}`, to: ref, message: { type: 'mark', v }, at: Date.now() }, done: done as never,
  }));
  const seen = async () => (await r.region.ask<Log>(ref, { type: 'get' })).seen;
  return { ...r, journal, ref, command, seen };
}

test('an idle entity takes a soft message at once: applied before tellSoft returns to the event loop', async (t) => {
  const r = await rig(t);
  t.is(await r.region.tellSoft(r.ref, { type: 'note', v: 'first' }), 'applied'); // activates it (through the mailbox)
  const told = r.region.tellSoft(r.ref, { type: 'note', v: 'a' });
  // Nothing has run since: no mailbox turn, no microtask.
  t.deepEqual(r.host.queryNow(r.ref, r.region.shardOf(r.ref), { type: 'get' }), { seen: ['first', 'a'] });
  t.is(await told, 'applied');
});

test('soft messages that come while a command is in hand wait behind it and are applied after it, in the order they came', async (t) => {
  const r = await rig(t);
  t.is(await r.region.tellSoft(r.ref, { type: 'note', v: 'a' }), 'applied');
  r.journal.hold();
  const marked = r.command('M');
  t.true(await until(() => r.journal.waiting === 1), 'the command awaits its journal write');
  const notes = ['b', 'c', 'd'].map((v) => r.region.tellSoft(r.ref, { type: 'note', v }));
  await new Promise((resolve) => setTimeout(resolve, 50));
  t.deepEqual(await r.seen(), ['a'], 'nothing overtook the command');
  r.journal.release();
  t.is((await marked as CommandResult).status, 'applied');
  t.deepEqual(await Promise.all(notes), ['applied', 'applied', 'applied'] satisfies SoftOutcome[]);
  t.deepEqual(await r.seen(), ['a', 'M', 'b', 'c', 'd']);
  // Idle again: the next one is taken at once.
  t.is(await r.region.tellSoft(r.ref, { type: 'note', v: 'e' }), 'applied');
  t.deepEqual(await r.seen(), ['a', 'M', 'b', 'c', 'd', 'e']);
});

test('a command queued behind a soft batch closes it: later soft messages come after that command, not with the batch', async (t) => {
  const r = await rig(t);
  t.is(await r.region.tellSoft(r.ref, { type: 'note', v: 'a' }), 'applied');
  r.journal.hold();
  const first = r.command('M1');
  t.true(await until(() => r.journal.waiting === 1));
  const b = r.region.tellSoft(r.ref, { type: 'note', v: 'b' });
  const second = r.command('M2');
  const c = r.region.tellSoft(r.ref, { type: 'note', v: 'c' });
  r.journal.release();
  await Promise.all([first, second, b, c]);
  t.deepEqual(await r.seen(), ['a', 'M1', 'b', 'M2', 'c']);
});

test('a soft batch whose entity stops before handling it: each of its messages is dropped, and none is applied later', async (t) => {
  const r = await rig(t);
  t.is(await r.region.tellSoft(r.ref, { type: 'note', v: 'a' }), 'applied');
  r.journal.hold();
  const marked = r.command('M');
  t.true(await until(() => r.journal.waiting === 1));
  const notes = ['b', 'c'].map((v) => r.region.tellSoft(r.ref, { type: 'note', v }));
  // The shard is taken away (another node has it: no snapshot) while the write is stuck; the drain gives up on it.
  await r.host.stopShards([r.region.shardOf(r.ref)], { snapshot: false });
  t.deepEqual(await Promise.all(notes), ['dropped', 'dropped']);
  t.is((await marked.catch((e: Error) => e)).constructor.name, 'EntityStoppedError');
  r.journal.release();
  await new Promise((resolve) => setTimeout(resolve, 50));
  // Recovered from its journal: the command's row (written once the journal came back), no soft note.
  t.deepEqual(await r.seen(), ['M']);
  t.is(r.region.stats().softDropped, 2);
});

interface Held { readonly blob: readonly number[] }
/** A state worth measuring: 2,500 numbers (20 KB) made from a seed (the journal keeps the seed, not the blob). */
const holder: Behavior<Held, { type: 'fill' | 'touch'; seed: string }, { type: 'filled'; seed: string }, { type: 'get' }, number> = {
  kind: 'holder',
  eventVersion: 1,
  initial: () => ({ blob: [] }),
  handle(s, m) {
    if (m.type === 'touch') return { state: { blob: blobOf(m.seed) }, events: [], effects: [] };
    const event = { type: 'filled' as const, seed: m.seed };
    return { state: holder.apply(s, event), events: [event], effects: [] };
  },
  apply: (_s, e) => ({ blob: blobOf(e.seed) }),
  query: (s) => s.blob.length,
};
const blobOf = (seed: string) => Array.from({ length: 2_500 }, (_, i) => i + seed.length + 0.5);

test('an idle entity holds one version of its state: what the mailbox kept of earlier ones (nact\'s copy, its last turn) is let go', async (t) => {
  const { setFlagsFromString } = await import('node:v8');
  const { runInNewContext } = await import('node:vm');
  setFlagsFromString('--expose_gc');
  const gc = runInNewContext('gc') as () => void;
  const r = await startRig({ behaviors: [holder] });
  t.teardown(() => r.stop());
  const n = 1_000;
  const ref = (i: number) => ({ kind: 'holder', id: `h${i}` });
  const heap = () => { gc(); gc(); return process.memoryUsage().heapUsed; };
  await r.region.request(ref(-1), { type: 'fill', seed: 'warm' });
  const before = heap();
  // Each entity: a command through its mailbox (a 20 KB state), then a soft message at once (another 20 KB state).
  for (let i = 0; i < n; i++) await r.region.request(ref(i), { type: 'fill', seed: `a${i}` });
  for (let i = 0; i < n; i++) t.is(await r.region.tellSoft(ref(i), { type: 'touch', seed: `b${i}` }), 'applied');
  await new Promise((resolve) => setTimeout(resolve, 100));
  const perEntity = (heap() - before) / n;
  // Two versions held would be 40 KB and more per entity.
  t.log(`${Math.round(perEntity)} bytes per entity`);
  t.true(perEntity < 30_000, `${Math.round(perEntity)} bytes per entity`);
  t.is(await r.region.ask<number>(ref(7), { type: 'get' }), 2_500);
});

test('soft messages that come while their entity is being activated are applied once it is, in the order they came, before a command after them',
  async (t) => {
  const r = await rig(t);
  const notes = Array.from({ length: 20 }, (_, i) => r.region.tellSoft(r.ref, { type: 'note', v: `n${i}` }));
  const marked = r.command('M');
  t.deepEqual(await Promise.all(notes), Array.from({ length: 20 }, () => 'applied'));
  t.is((await marked as CommandResult).status, 'applied');
  t.deepEqual(await r.seen(), [...Array.from({ length: 20 }, (_, i) => `n${i}`), 'M']);
});
