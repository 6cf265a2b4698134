// Deadlines of many items under one timer (runtime/deadlines.ts), which WebSocket sessions use
// for their auth deadline and their token's expiry: each item is due once, in due order, at
// its latest deadline; a cleared one never is; one found early by the clock waits; and a
// thousand items hold one Node timeout, not a thousand.

import test from 'ava';
import { Deadlines } from '../runtime/deadlines.ts';
import { eventually } from './helpers/node-process.ts';

class Item {
  deadlineSlot = -1;
  readonly name: string;
  constructor(name: string) { this.name = name; }
}

const timeouts = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

test('items come due once each, in due order, at the deadline they were last given; cleared ones never', async (t) => {
  const due: string[] = [];
  const d = new Deadlines<Item>((item) => due.push(item.name));
  const at = Date.now() + 40;
  const [a, b, c, e, f] = ['a', 'b', 'c', 'e', 'f'].map((n) => new Item(n)) as [Item, Item, Item, Item, Item];
  d.set(c, at + 30);
  d.set(a, at);
  d.set(b, at + 10);
  d.set(e, at + 5);
  d.set(f, at + 1);
  d.set(c, at - 10); // moved earlier
  d.set(a, at + 20); // moved later
  d.clear(e);
  d.clear(e); // twice is harmless
  t.is(d.dueAt(c), at - 10);
  t.is(d.dueAt(e), undefined);
  t.is(d.size, 4);
  t.true(await eventually(async () => due.length === 4, 30_000, 5));
  t.deepEqual(due, ['c', 'f', 'b', 'a']);
  t.is(d.size, 0);
  t.true([a, b, c, e, f].every((i) => i.deadlineSlot === -1), 'each item says it has no deadline');
  await new Promise((r) => setTimeout(r, 80));
  t.deepEqual(due, ['c', 'f', 'b', 'a'], 'nothing is due twice');
});

test('an item is never due before its time by the given clock', async (t) => {
  let clock = 1_000;
  const due: number[] = [];
  const d = new Deadlines<Item>(() => due.push(clock), () => clock);
  d.set(new Item('x'), 1_020);
  await new Promise((r) => setTimeout(r, 80));
  t.deepEqual(due, [], 'woken when the timer said, but the clock it was given says not yet: still waiting');
  clock = 1_020;
  t.true(await eventually(async () => due.length === 1, 30_000, 5));
  t.deepEqual(due, [1_020]);
});

test('a thousand deadlines hold one timeout, and none once they are cleared', (t) => {
  const before = timeouts();
  const d = new Deadlines<Item>(() => t.fail('nothing is due'));
  const items = Array.from({ length: 1_000 }, (_, i) => new Item(String(i)));
  for (const [i, item] of items.entries()) d.set(item, Date.now() + 60_000 + (i * 7919) % 1_000);
  t.is(timeouts() - before, 1);
  for (const item of items) d.clear(item);
  t.is(d.size, 0);
  t.is(timeouts() - before, 0);
});

test('items cleared from anywhere in the heap leave the rest due in order', async (t) => {
  const due: Item[] = [];
  const d = new Deadlines<Item>((item) => due.push(item));
  const base = Date.now() + 30;
  const items = Array.from({ length: 300 }, (_, i) => new Item(String(i)));
  const at = new Map(items.map((item, i) => [item, base + (i * 7919) % 200]));
  for (const item of items) d.set(item, at.get(item)!);
  const kept = items.filter((_, i) => i % 3 === 0);
  for (const item of items.filter((_, i) => i % 3 !== 0)) d.clear(item);
  t.true(await eventually(async () => due.length === kept.length, 30_000, 5));
  const names = (list: Item[]) => list.map((item) => item.name).sort();
  t.deepEqual(names(due), names(kept), 'the kept ones, each once');
  const times = due.map((item) => at.get(item)!);
  t.deepEqual(times, [...times].sort((x, y) => x - y), 'in due order');
});
