// The Journal port's conformance suite (runtime/ports.ts): the same cases run against every
// implementation (journal.test.ts registers them per implementation), so the in-memory
// journal the runtime's tests use cannot drift from the PostgreSQL one nodes run on.
// Each case uses persistence keys of its own, so implementations may share one database.

import test from 'ava';
import { randomUUID } from 'node:crypto';
import { DuplicateCommandError, JournalConflictError, ShardFencedError } from '../../runtime/errors.ts';
import { shardOf, type Placement } from '../../runtime/entity.ts';
import type { Epoch, Journal, JournalEntry, ShardEpochs, ShardId, WriteFence } from '../../runtime/ports.ts';

export interface JournalUnderTest {
  readonly journal: Journal;
  /** Releases what the journal holds (called by the suite, also when a case fails). */
  close(): Promise<void>;
}

export interface FencedJournalUnderTest extends JournalUnderTest {
  /** Where epochs are taken, shared with the journal's storage. */
  readonly epochs: ShardEpochs;
}

export interface JournalImplementation {
  /** A journal with no fence. */
  make(): Promise<JournalUnderTest>;
  /**
   * A journal whose writes are conditional on `fence` (entity shards by `placement`); absent
   * when the implementation does not fence writes, and the fencing cases are not registered.
   */
  makeFenced?(placement: Placement, fence: WriteFence): Promise<FencedJournalUnderTest>;
}

const PLACEMENT: Placement = { shards: 4, placementRes: 4 };

/** Keys of one case: unique per run, of the `counter` kind so they have a shard. */
function keys() {
  const run = randomUUID().slice(0, 8);
  return (id: string) => `counter:${run}-${id}`;
}

const entry = (persistenceKey: string, sequenceNr: number, cmd = `c${sequenceNr}`, extra: Record<string, unknown> = {}): JournalEntry => ({
  persistenceKey, sequenceNr, createdAt: Date.UTC(2026, 0, 2, 3, 4, 5, 678) + sequenceNr, tags: ['t', `n${sequenceNr}`],
  data: { v: 1, cmd, events: [{ type: 'added', n: sequenceNr }], ...extra },
});

const cmds = (entries: readonly JournalEntry[]) => entries.map((e) => (e.data as { cmd: string }).cmd);

export function journalConformance(name: string, impl: JournalImplementation): void {
  const use = async (t: { teardown(f: () => Promise<void>): void }) => {
    const opened = await impl.make();
    t.teardown(() => opened.close());
    return opened.journal;
  };

  test(`${name}: entries read back in sequence order, after a position, at most a limit, as written`, async (t) => {
    const journal = await use(t);
    const key = keys()('order');
    for (const seq of [1, 2, 3, 4, 5]) await journal.append(entry(key, seq));
    t.deepEqual((await journal.read(key, 0, 100)).map((e) => e.sequenceNr), [1, 2, 3, 4, 5]);
    t.deepEqual((await journal.read(key, 2, 100)).map((e) => e.sequenceNr), [3, 4, 5]);
    t.deepEqual((await journal.read(key, 1, 2)).map((e) => e.sequenceNr), [2, 3]);
    t.deepEqual(await journal.read(key, 5, 100), []);
    t.deepEqual(await journal.read(keys()('never-written'), 0, 100), []);
    const [third] = await journal.read(key, 2, 1);
    t.deepEqual(third, entry(key, 3), 'key, position, data, tags and time come back as written');
  });

  test(`${name}: appends of one tick to several entities all land, each read in its own order`, async (t) => {
    const journal = await use(t);
    const key = keys();
    const ids = Array.from({ length: 12 }, (_, i) => `e${i}`);
    for (let seq = 1; seq <= 3; seq++) await Promise.all(ids.map((id) => journal.append(entry(key(id), seq, `${id}-${seq}`))));
    for (const id of ids) t.deepEqual(cmds(await journal.read(key(id), 0, 10)), [`${id}-1`, `${id}-2`, `${id}-3`], id);
  });

  test(`${name}: a second append at a taken position fails with JournalConflictError and changes nothing`, async (t) => {
    const journal = await use(t);
    const key = keys()('conflict');
    await journal.append(entry(key, 1, 'first'));
    await journal.append(entry(key, 2, 'second'));
    const error = await t.throwsAsync(journal.append(entry(key, 2, 'intruder')));
    t.true(error instanceof JournalConflictError, String(error));
    t.deepEqual(cmds(await journal.read(key, 0, 10)), ['first', 'second']);
    await journal.append(entry(key, 3, 'third'));
    t.deepEqual(cmds(await journal.read(key, 0, 10)), ['first', 'second', 'third']);
  });

  test(`${name}: two writers of one position in the same tick: exactly one wins, the other gets JournalConflictError`, async (t) => {
    const journal = await use(t);
    const key = keys()('race');
    const results = await Promise.allSettled([journal.append(entry(key, 1, 'a')), journal.append(entry(key, 1, 'b'))]);
    const won = results.filter((r) => r.status === 'fulfilled');
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    t.is(won.length, 1);
    t.is(lost.length, 1);
    t.true(lost[0]?.reason instanceof JournalConflictError, String(lost[0]?.reason));
    const read = await journal.read(key, 0, 10);
    t.is(read.length, 1);
    t.is(cmds(read)[0], results[0]!.status === 'fulfilled' ? 'a' : 'b', 'the stored entry is the winner\'s');
  });

  test(`${name}: unlessCommand refuses a command the entity journaled already (DuplicateCommandError), and writes nothing`, async (t) => {
    const journal = await use(t);
    const key = keys();
    await journal.append(entry(key('dup'), 1, 'once'), { unlessCommand: 'once' });
    const error = await t.throwsAsync(journal.append(entry(key('dup'), 2, 'once'), { unlessCommand: 'once' }));
    t.true(error instanceof DuplicateCommandError, String(error));
    t.deepEqual(cmds(await journal.read(key('dup'), 0, 10)), ['once'], 'position 2 stays free');
    // Another command id, and the same id for another entity, are written.
    await journal.append(entry(key('dup'), 2, 'other'), { unlessCommand: 'other' });
    await journal.append(entry(key('elsewhere'), 1, 'once'), { unlessCommand: 'once' });
    t.deepEqual(cmds(await journal.read(key('dup'), 0, 10)), ['once', 'other']);
    t.deepEqual(cmds(await journal.read(key('elsewhere'), 0, 10)), ['once']);
  });

  test(`${name}: a duplicate command at a taken position is reported as the duplicate`, async (t) => {
    const journal = await use(t);
    const key = keys()('dup-at-taken');
    await journal.append(entry(key, 1, 'x'));
    const error = await t.throwsAsync(journal.append(entry(key, 1, 'x'), { unlessCommand: 'x' }));
    t.true(error instanceof DuplicateCommandError, String(error));
  });

  test(`${name}: findCommand finds the entry a command id was journaled in, for that entity only`, async (t) => {
    const journal = await use(t);
    const key = keys();
    await journal.append(entry(key('find'), 1, 'a'));
    await journal.append(entry(key('find'), 2, 'b'));
    t.deepEqual(await journal.findCommand(key('find'), 'b'), entry(key('find'), 2, 'b'));
    t.is(await journal.findCommand(key('find'), 'nope'), undefined);
    t.is(await journal.findCommand(key('other'), 'b'), undefined);
  });

  test(`${name}: recovery is the latest snapshot plus the tail after it; an older snapshot never replaces a newer one`, async (t) => {
    const journal = await use(t);
    const key = keys()('snap');
    t.is(await journal.latestSnapshot(key), undefined);
    for (const seq of [1, 2, 3, 4, 5]) await journal.append(entry(key, seq));
    const at = Date.UTC(2026, 0, 2, 3, 4, 5, 678);
    await journal.saveSnapshot({ persistenceKey: key, sequenceNr: 3, data: { total: 3 }, createdAt: at });
    const snapshot = await journal.latestSnapshot(key);
    t.deepEqual(snapshot, { persistenceKey: key, sequenceNr: 3, data: { total: 3 }, createdAt: at });
    t.deepEqual((await journal.read(key, snapshot!.sequenceNr, 100)).map((e) => e.sequenceNr), [4, 5]);
    await journal.saveSnapshot({ persistenceKey: key, sequenceNr: 5, data: { total: 5 }, createdAt: at + 1 });
    await journal.saveSnapshot({ persistenceKey: key, sequenceNr: 4, data: { total: 4 }, createdAt: at + 2 }); // a slow, older write
    t.deepEqual((await journal.latestSnapshot(key))?.data, { total: 5 });
    t.is(await journal.latestSnapshot(keys()('no-snap')), undefined);
  });

  if (impl.makeFenced) {
    const makeFenced = impl.makeFenced;
    test.serial(`${name}: with a fence, writes under the shard's current epoch land and writes under an older one are refused and change nothing`, async (t) => {
      const key = keys();
      // One entity per shard, so each shard is exercised.
      const byShard = new Map<ShardId, string>();
      for (let i = 0; byShard.size < PLACEMENT.shards; i++) {
        const k = key(`f${i}`);
        const shard = shardOf({ kind: 'counter', id: k.slice('counter:'.length) }, PLACEMENT);
        if (!byShard.has(shard)) byShard.set(shard, k);
      }
      const held = new Map<ShardId, Epoch>();
      const refusals: ShardId[] = [];
      const fence: WriteFence = {
        epochOf: (shard) => held.get(shard),
        refused: (shard, epoch, what) => { refusals.push(shard); return new ShardFencedError(shard, epoch, what); },
      };
      const { journal, epochs, close } = await makeFenced(PLACEMENT, fence);
      t.teardown(close);
      const shards = [...byShard.keys()];
      for (const [shard, epoch] of await epochs.acquire(shards, 'me')) held.set(shard, epoch);
      const [lost, ...kept] = shards as [ShardId, ...ShardId[]];
      const lostKey = byShard.get(lost)!;
      await journal.append(entry(lostKey, 1, 'before'));
      await journal.saveSnapshot({ persistenceKey: lostKey, sequenceNr: 1, data: { s: 1 }, createdAt: 1 });
      await epochs.acquire([lost], 'someone-else'); // another node took one shard; this node still holds the old epoch

      const results = await Promise.allSettled(shards.map((s) => journal.append(entry(byShard.get(s)!, 2, 'after'))));
      const refused = results[0]!;
      t.true(refused.status === 'rejected' && refused.reason instanceof ShardFencedError && refused.reason.shard === lost,
        refused.status === 'rejected' ? String(refused.reason) : 'written');
      t.deepEqual(results.slice(1).map((r) => r.status), kept.map(() => 'fulfilled'), 'the other shards are not affected');
      t.deepEqual(cmds(await journal.read(lostKey, 0, 10)), ['before']);
      const snap = await t.throwsAsync(journal.saveSnapshot({ persistenceKey: lostKey, sequenceNr: 2, data: { s: 2 }, createdAt: 2 }));
      t.true(snap instanceof ShardFencedError, String(snap));
      t.deepEqual((await journal.latestSnapshot(lostKey))?.data, { s: 1 });
      t.true(refusals.length >= 2 && refusals.every((s) => s === lost), `refusals: ${refusals.join(',')}`);

      // A shard this node holds no epoch for is refused too.
      held.delete(kept[0]!);
      const none = await t.throwsAsync(journal.append(entry(byShard.get(kept[0]!)!, 3, 'unheld')));
      t.true(none instanceof ShardFencedError && none.epoch === undefined, String(none));
      t.deepEqual(cmds(await journal.read(byShard.get(kept[0]!)!, 0, 10)), ['after']);
    });
  }
}
