// Conformance suites of the small shard-keyed stores of runtime/ports.ts: ReminderStore,
// DeadLetterStore, ShardEpochs and ShardOffsets. The same cases run against the in-memory stores (the
// runtime's tests) and PostgreSQL (shard-stores.test.ts). Each case gets a store of its own,
// over storage of its own (these stores answer for everything they hold: list, forShards).
// Fencing of these stores' writes is PostgreSQL-only (the memory stores take no WriteFence);
// test/fencing.test.ts covers it.

import test from 'ava';
import type { DeadLetter, DeadLetterStore, ReminderStore, ShardEpochs, ShardOffsets } from '../../runtime/ports.ts';
import { ShardFencedError } from '../../runtime/errors.ts';
import type { ShardFences } from '../../runtime/fencing.ts';

export interface StoreUnderTest<S> {
  readonly store: S;
  close(): Promise<void>;
}

type Make<S> = () => Promise<StoreUnderTest<S>>;

function using<S>(make: Make<S>) {
  return async (t: { teardown(f: () => Promise<void>): void }) => {
    const opened = await make();
    t.teardown(() => opened.close());
    return opened.store;
  };
}

const byKey = <T extends { entityKey: string; name: string }>(list: readonly T[]) =>
  [...list].sort((a, b) => `${a.entityKey}/${a.name}`.localeCompare(`${b.entityKey}/${b.name}`));

export function reminderStoreConformance(name: string, make: Make<ReminderStore>): void {
  const use = using(make);
  const at = Date.UTC(2026, 5, 1, 12, 0, 0, 250);

  test(`${name} reminders: a reminder set is found by its shard, and only by it`, async (t) => {
    const store = await use(t);
    await store.set({ shard: 1, entityKey: 'booking:b1', name: 'offer-timeout', dueAt: at });
    await store.set({ shard: 2, entityKey: 'booking:b2', name: 'offer-timeout', dueAt: at + 1 });
    t.deepEqual(await store.forShards([1]), [{ shard: 1, entityKey: 'booking:b1', name: 'offer-timeout', dueAt: at }]);
    t.deepEqual(byKey(await store.forShards([1, 2, 3])).map((r) => r.entityKey), ['booking:b1', 'booking:b2']);
    t.deepEqual(await store.forShards([0, 3]), []);
    t.deepEqual(await store.forShards([]), []);
  });

  test(`${name} reminders: setting an entity's reminder again replaces it; its other reminders stay`, async (t) => {
    const store = await use(t);
    await store.set({ shard: 1, entityKey: 'booking:b1', name: 'offer-timeout', dueAt: at });
    await store.set({ shard: 1, entityKey: 'booking:b1', name: 'pickup-timeout', dueAt: at });
    await store.set({ shard: 1, entityKey: 'booking:b1', name: 'offer-timeout', dueAt: at + 60_000 });
    t.deepEqual(byKey(await store.forShards([1])), [
      { shard: 1, entityKey: 'booking:b1', name: 'offer-timeout', dueAt: at + 60_000 },
      { shard: 1, entityKey: 'booking:b1', name: 'pickup-timeout', dueAt: at },
    ]);
  });

  test(`${name} reminders: clear removes that one reminder; clearing one that is not there is no error`, async (t) => {
    const store = await use(t);
    await store.set({ shard: 1, entityKey: 'booking:b1', name: 'offer-timeout', dueAt: at });
    await store.set({ shard: 1, entityKey: 'booking:b1', name: 'pickup-timeout', dueAt: at });
    await store.set({ shard: 1, entityKey: 'booking:b2', name: 'offer-timeout', dueAt: at });
    await store.clear('booking:b1', 'offer-timeout');
    await store.clear('booking:b1', 'offer-timeout');
    await store.clear('booking:nobody', 'offer-timeout');
    t.deepEqual(byKey(await store.forShards([1])).map((r) => `${r.entityKey}/${r.name}`), ['booking:b1/pickup-timeout', 'booking:b2/offer-timeout']);
  });
}

const letter = (id: string, at: number, extra: Partial<DeadLetter> = {}): DeadLetter => ({
  id, shard: 2, offset: 41, at, attempts: 1,
  command: { id, to: { kind: 'booking', id: `b-${id}` }, message: { type: 'accept', note: 'é ✓' }, at: at - 5 },
  failure: { kind: 'reducer_threw', message: 'boom' },
  ...extra,
});

export function deadLetterStoreConformance(name: string, make: Make<DeadLetterStore>): void {
  const use = using(make);
  const at = Date.UTC(2026, 5, 1, 12, 0, 0, 250);

  test(`${name} dead letters: a letter added is read back as added, by id and in the list`, async (t) => {
    const store = await use(t);
    const l = letter('d1', at);
    await store.add(l);
    t.deepEqual(await store.get('d1'), l);
    t.deepEqual(await store.list(10), [l]);
    t.is(await store.get('nope'), undefined);
  });

  test(`${name} dead letters: a command PostgreSQL would refuse (a NUL) is kept as it came`, async (t) => {
    const store = await use(t);
    const l = letter('nul', at, { command: { id: 'nul', to: { kind: 'booking', id: 'b' }, message: { text: 'a\u0000b' }, at } });
    await store.add(l);
    t.deepEqual((await store.get('nul'))?.command, l.command);
  });

  test(`${name} dead letters: the same command dead-lettered again is one letter, its attempts added up and its last failure kept`, async (t) => {
    const store = await use(t);
    await store.add(letter('d1', at, { attempts: 3 }));
    const again = { attempts: 2, offset: 97, failure: { kind: 'storage_rejected', message: 'again' } } as const;
    await store.add(letter('d1', at + 1000, again));
    const got = await store.get('d1');
    t.is(got?.attempts, 5);
    t.is(got?.offset, 97, 'the letter points at where it failed last (a retry put it back at a new offset)');
    t.deepEqual(got?.failure, { kind: 'storage_rejected', message: 'again' });
    t.is(got?.at, at + 1000);
    t.is((await store.list(10)).length, 1);
  });

  test(`${name} dead letters: list is newest first, at most the limit`, async (t) => {
    const store = await use(t);
    for (const [id, when] of [['old', at], ['newest', at + 2000], ['mid', at + 1000]] as const) await store.add(letter(id, when));
    t.deepEqual((await store.list(10)).map((l) => l.id), ['newest', 'mid', 'old']);
    t.deepEqual((await store.list(2)).map((l) => l.id), ['newest', 'mid']);
  });

  test(`${name} dead letters: remove takes a letter away once, and says whether it was there`, async (t) => {
    const store = await use(t);
    await store.add(letter('d1', at));
    await store.add(letter('d2', at));
    t.true(await store.remove('d1'));
    t.false(await store.remove('d1'));
    t.is(await store.get('d1'), undefined);
    t.deepEqual((await store.list(10)).map((l) => l.id), ['d2']);
  });
}

export function shardEpochsConformance(name: string, make: Make<ShardEpochs>): void {
  const use = using(make);

  test(`${name} shard epochs: each acquire of a shard takes the next epoch, from 1, shard by shard`, async (t) => {
    const epochs = await use(t);
    t.deepEqual([...await epochs.acquire([0, 2], 'a')].sort(), [[0, 1], [2, 1]]);
    t.deepEqual([...await epochs.acquire([2, 1], 'b')].sort(), [[1, 1], [2, 2]]);
    t.deepEqual([...await epochs.acquire([2], 'a')], [[2, 3]]);
    t.deepEqual([...await epochs.acquire([], 'a')], []);
  });

  test(`${name} shard epochs: two nodes taking one shard at once get different epochs`, async (t) => {
    const epochs = await use(t);
    const [a, b] = await Promise.all([epochs.acquire([3], 'a'), epochs.acquire([3], 'b')]);
    t.deepEqual([a.get(3), b.get(3)].sort(), [1, 2]);
  });

  test(`${name} shard epochs: the current epochs are the last taken, and shards never taken are absent`, async (t) => {
    const epochs = await use(t);
    t.deepEqual([...await epochs.currentEpochs([0, 1])], []);
    await epochs.acquire([0, 1], 'a');
    await epochs.acquire([1], 'b');
    const current = [...await epochs.currentEpochs([0, 1, 2])].sort(([a], [b]) => a - b);
    t.deepEqual(current, [[0, { epoch: 1, owner: 'a', released: false }], [1, { epoch: 2, owner: 'b', released: false }]]);
    t.deepEqual([...await epochs.currentEpochs([])], []);
  });

  test(`${name} shard epochs: a release marks the epoch it names, if still current; the next acquire is not released`, async (t) => {
    const epochs = await use(t);
    await epochs.acquire([0, 1], 'a');
    await epochs.acquire([1], 'b');
    await epochs.release(new Map([[0, 1], [1, 1]])); // shard 1's epoch 1 is no longer current: left as it is
    const released = async () => [...await epochs.currentEpochs([0, 1])].sort(([a], [b]) => a - b).map(([s, r]) => [s, r.released]);
    t.deepEqual(await released(), [[0, true], [1, false]]);
    await epochs.acquire([0], 'b');
    t.deepEqual(await released(), [[0, false], [1, false]]);
  });
}

/** Shard offsets with the epochs that fence them, and a fence holding what this node took. */
export interface FencedOffsets {
  readonly offsets: ShardOffsets;
  readonly epochs: ShardEpochs;
  readonly fences: ShardFences;
}

export function shardOffsetsConformance(name: string, make: Make<FencedOffsets>): void {
  const use = using(make);

  test(`${name} shard offsets: a shard never committed is absent; a commit is read back; an offset never goes back`, async (t) => {
    const { offsets, fences } = await use(t);
    await fences.acquire([0, 1], 'me');
    t.deepEqual([...await offsets.next([0, 1])], []);
    await offsets.commit(0, 5);
    await offsets.commit(0, 3);
    await offsets.commit(1, 1);
    t.deepEqual([...await offsets.next([0, 1, 2])].sort(([a], [b]) => a - b), [[0, 5], [1, 1]]);
    t.deepEqual([...await offsets.next([])], []);
  });

  test(`${name} shard offsets: a commit by a node that no longer holds the shard's epoch is refused and moves nothing`, async (t) => {
    const { offsets, epochs, fences } = await use(t);
    await fences.acquire([3], 'me');
    await offsets.commit(3, 10);
    await epochs.acquire([3], 'another node');
    await t.throwsAsync(offsets.commit(3, 20), { instanceOf: ShardFencedError });
    t.deepEqual([...await offsets.next([3])], [[3, 10]]);
    t.false(fences.holds(3), 'the refused epoch is dropped');
  });

  test(`${name} shard offsets: commits of many shards at once each land; the one whose epoch another node took is refused alone`, async (t) => {
    const { offsets, epochs, fences } = await use(t);
    const shards = Array.from({ length: 12 }, (_, i) => i);
    await fences.acquire(shards, 'me');
    await epochs.acquire([5], 'another node');
    const outcomes = await Promise.allSettled(shards.map((s) => offsets.commit(s, 100 + s)));
    t.deepEqual(outcomes.flatMap((o, s) => (o.status === 'rejected' ? [s] : [])), [5]);
    t.true((outcomes[5] as PromiseRejectedResult).reason instanceof ShardFencedError);
    const stored = [...await offsets.next(shards)].sort(([a], [b]) => a - b);
    t.deepEqual(stored, shards.filter((s) => s !== 5).map((s) => [s, 100 + s]));
    // Two commits of one shard at once: the higher wins, whatever order they are stored in.
    await Promise.all([offsets.commit(0, 300), offsets.commit(0, 200)]);
    t.deepEqual([...await offsets.next([0])], [[0, 300]]);
  });
}
