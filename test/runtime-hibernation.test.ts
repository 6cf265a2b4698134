// Hibernation (runtime/shard-host.ts): an active entity with nothing in flight for a while holds no
// mailbox (no nact actor), only its incarnation. Queries and soft messages need none; a
// command, a soft batch or a passivation's snapshot spawns one that goes on from the
// incarnation without reading storage, numbering journal entries where the last one left.

import test from 'ava';
import { GatedJournal, recorder, until, type Log } from './helpers/recorder.ts';
import { startRig } from './helpers/rig.ts';

async function rig(t: import('ava').ExecutionContext) {
  const journal = new GatedJournal();
  const r = await startRig({ behaviors: [recorder], journal, hibernateAfterMs: 20 });
  t.teardown(() => r.stop());
  const ref = { kind: 'recorder', id: 'r1' };
  const mark = (v: string) => r.region.request(ref, { type: 'mark', v });
  const note = (v: string) => r.region.tellSoft(ref, { type: 'note', v });
  const seen = async () => (await r.region.ask<Log>(ref, { type: 'get' })).seen;
  const mailboxes = () => r.host.stats().mailboxes;
  const numbers = async () => (await journal.read('recorder:r1', 0, 100)).map((e) => e.sequenceNr);
  return { ...r, journal, ref, mark, note, seen, mailboxes, numbers };
}

test('an entity with nothing in flight holds no mailbox; its next commands number their entries on from the last', async (t) => {
  const r = await rig(t);
  t.is((await r.mark('a')).status, 'applied');
  t.true(await until(() => r.mailboxes() === 0), 'the mailbox is given up once the command is answered');
  t.is(r.host.stats().active, 1, 'the entity stays active');
  const reads = r.journal.reads;
  for (const v of ['b', 'c', 'd']) {
    t.is((await r.mark(v)).status, 'applied');
    t.true(await until(() => r.mailboxes() === 0));
  }
  t.is(r.journal.reads, reads, 'a mailbox spawned again reads nothing from storage');
  t.deepEqual(await r.numbers(), [1, 2, 3, 4], 'one entry per command, numbered on without a gap or a repeat');
  t.deepEqual(await r.seen(), ['a', 'b', 'c', 'd']);
});

test('queries and soft messages need no mailbox', async (t) => {
  const r = await rig(t);
  await r.mark('a');
  t.true(await until(() => r.mailboxes() === 0));
  t.is(await r.note('n1'), 'applied');
  t.is(await r.note('n2'), 'applied');
  t.deepEqual(await r.seen(), ['a', 'n1', 'n2']);
  t.is(r.mailboxes(), 0);
  t.is((await r.mark('b')).status, 'applied');
  t.deepEqual(await r.seen(), ['a', 'n1', 'n2', 'b'], 'the command goes on from the soft state, not from the mailbox\'s older copy');
  t.deepEqual(await r.numbers(), [1, 2]);
});

test('soft messages that come while a command is in hand are batched behind it, then the mailbox is given up again', async (t) => {
  const r = await rig(t);
  await r.mark('a');
  t.true(await until(() => r.mailboxes() === 0));
  r.journal.hold();
  const marked = r.mark('M');
  t.true(await until(() => r.mailboxes() === 1), 'the command spawned a mailbox');
  const notes = ['x', 'y', 'z'].map((v) => r.note(v));
  r.journal.release();
  t.is((await marked).status, 'applied');
  t.deepEqual(await Promise.all(notes), ['applied', 'applied', 'applied']);
  t.deepEqual(await r.seen(), ['a', 'M', 'x', 'y', 'z']);
  t.true(await until(() => r.mailboxes() === 0));
});

test('a hibernating entity passivated saves its state, soft changes included, and comes back with it', async (t) => {
  const r = await rig(t);
  await r.mark('a');
  await r.note('n');
  t.true(await until(() => r.mailboxes() === 0));
  await r.host.stopShards([r.region.shardOf(r.ref)], { snapshot: true });
  t.is(r.host.stats().active, 0);
  const snapshot = await r.journal.latestSnapshot('recorder:r1');
  t.is(snapshot?.sequenceNr, 1, 'the snapshot is stamped with the last entry the incarnation applied');
  t.deepEqual(await r.seen(), ['a', 'n'], 'recovered from the snapshot');
  t.is((await r.mark('b')).status, 'applied');
  t.deepEqual(await r.numbers(), [1, 2]);
  t.deepEqual(r.errors, []);
});

test('thousands of entities idle at once all hibernate, a slice of the event loop at a time', async (t) => {
  const r = await rig(t);
  const refs = Array.from({ length: 3_000 }, (_, i) => ({ kind: 'recorder', id: `many-${i}` }));
  for (let i = 0; i < refs.length; i += 500) {
    await Promise.all(refs.slice(i, i + 500).map((ref) => r.region.request(ref, { type: 'mark', v: 'x' })));
  }
  t.true(await until(() => r.mailboxes() === 0), `${r.mailboxes()} of ${refs.length} still hold a mailbox`);
  t.is(r.host.stats().active, refs.length);
  const seen = await Promise.all(refs.slice(0, 50).map((ref) => r.region.ask<Log>(ref, { type: 'get' })));
  t.true(seen.every((s) => s.seen.join() === 'x'));
});

test('mailboxes are named by the host, not by chance: two spawned while Math.random repeats itself both work', async (t) => {
  // nact names an unnamed actor anonymous-<random int32> and refuses a name a live child
  // has: among tens of thousands of live mailboxes two drew the same one now and then, and
  // the second entity's spawn threw (its message dropped or failed).
  const r = await rig(t);
  const random = Math.random;
  Math.random = () => 0.5;
  t.teardown(() => { Math.random = random; });
  const other = { kind: 'recorder', id: 'r2' };
  const [a, b] = await Promise.all([r.mark('a'), r.region.request(other, { type: 'mark', v: 'b' })]);
  Math.random = random;
  t.is(a.status, 'applied');
  t.is(b.status, 'applied');
  t.deepEqual(await r.region.ask<Log>(other, { type: 'get' }), { seen: ['b'] } as never);
});
