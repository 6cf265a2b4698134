// The in-memory side of entity timers (runtime/timers.ts): every armed timer of a node in one
// heap under one Node timeout. Each timer fires once, in due order, unless disarmed or armed
// again; one found early by the node's clock waits; and a thousand armed timers hold one
// timeout, not a thousand (what an online driver's presence timer costs).

import test from 'ava';
import { EntityTimers } from '../runtime/timers.ts';
import { eventually } from './helpers/node-process.ts';

interface Fired { readonly target: string; readonly name: string; readonly at: number }

function timers(now: () => number = Date.now) {
  const fired: Fired[] = [];
  const t = new EntityTimers<string>(now, (target, name, at) => fired.push({ target, name, at }));
  return { t, fired };
}

const timeouts = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

test('timers fire once each, in due order, equal due times in the order they were armed', async (t) => {
  const { t: timers_, fired } = timers();
  const at = Date.now() + 30;
  timers_.arm('e:3', 'late', at + 20, 'c');
  timers_.arm('e:1', 'a', at, 'a');
  timers_.arm('e:2', 'b', at, 'b');
  timers_.arm('e:1', 'early', at - 10, 'a');
  t.deepEqual(timers_.names('e:1'), ['a', 'early']);
  t.is(timers_.nextAt('e:1'), at - 10);
  t.true(await eventually(async () => fired.length === 4, 30_000, 5));
  t.deepEqual(fired.map((f) => `${f.target}/${f.name}@${f.at - at}`), ['a/early@-10', 'a/a@0', 'b/b@0', 'c/late@20']);
  t.is(timers_.size, 0);
  t.deepEqual(timers_.names('e:1'), []);
  t.is(timers_.nextAt('e:1'), undefined);
  await new Promise((r) => setTimeout(r, 60));
  t.is(fired.length, 4, 'nothing fires twice');
});

test('a timer armed again under its name replaces the first; disarmed ones never fire', async (t) => {
  const { t: timers_, fired } = timers();
  const at = Date.now() + 20;
  timers_.arm('e:1', 'offer', at, 'x');
  timers_.arm('e:1', 'offer', at + 10, 'x'); // replaces
  timers_.arm('e:1', 'deadline', at, 'x');
  timers_.arm('e:2', 'presence', at, 'y');
  timers_.arm('e:3', 'presence', at, 'z');
  timers_.disarm('e:1', 'deadline');
  timers_.disarmAll('e:2');
  t.is(timers_.size, 2);
  t.true(await eventually(async () => fired.length === 2, 30_000, 5));
  await new Promise((r) => setTimeout(r, 60));
  t.deepEqual(fired.map((f) => `${f.target}/${f.name}@${f.at - at}`).sort(), ['x/offer@10', 'z/presence@0']);
});

test('a timer the node\'s clock finds early waits until that clock reaches it', async (t) => {
  let clock = 1_000_000;
  const { t: timers_, fired } = timers(() => clock);
  timers_.arm('e:1', 'presence', clock + 20, 'x');
  // Real time passes; the node's clock does not: the wake-up finds it early and waits again.
  await new Promise((r) => setTimeout(r, 120));
  t.is(fired.length, 0);
  clock += 20;
  t.true(await eventually(async () => fired.length === 1, 30_000, 5));
  t.deepEqual(fired, [{ target: 'x', name: 'presence', at: 1_000_020 }]);
});

test('a thousand armed timers hold one Node timeout, and none once they are disarmed', (t) => {
  const { t: timers_ } = timers();
  const before = timeouts();
  const at = Date.now() + 3_600_000;
  for (let i = 0; i < 1_000; i++) timers_.arm(`driver:${i}`, 'presence', at + i, `d${i}`);
  t.is(timers_.size, 1_000);
  t.is(timeouts() - before, 1);
  for (let i = 0; i < 1_000; i++) timers_.disarmAll(`driver:${i}`);
  t.is(timers_.size, 0);
  t.is(timeouts(), before, 'nothing keeps the process up');
});

test('random arms, re-arms and disarms: what fires is what is left armed, in due order', async (t) => {
  let clock = 0;
  const { t: timers_, fired } = timers(() => clock);
  let seed = 7;
  const rand = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
  const left = new Map<string, { at: number; order: number }>();
  for (let i = 0; i < 2_000; i++) {
    const key = `e:${Math.floor(rand() * 200)}`;
    const name = rand() < 0.5 ? 'offer' : 'deadline';
    const op = rand();
    if (op < 0.6) {
      const at = 1_000 + Math.floor(rand() * 50);
      timers_.arm(key, name, at, key);
      left.set(`${key}/${name}`, { at, order: i });
    } else if (op < 0.9) {
      timers_.disarm(key, name);
      left.delete(`${key}/${name}`);
    } else {
      timers_.disarmAll(key);
      for (const n of ['offer', 'deadline']) left.delete(`${key}/${n}`);
    }
  }
  t.is(timers_.size, left.size);
  clock = 2_000;
  timers_.arm('e:last', 'offer', 1_999, 'e:last'); // a wake-up, now that the clock is past them all
  left.set('e:last/offer', { at: 1_999, order: 2_000 });
  t.true(await eventually(async () => fired.length === left.size, 30_000, 5));
  const expected = [...left].sort(([, a], [, b]) => a.at - b.at || a.order - b.order).map(([k, v]) => `${k}@${v.at}`);
  t.deepEqual(fired.map((f) => `${f.target}/${f.name}@${f.at}`), expected);
});
