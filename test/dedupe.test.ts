// The dedupe decision, pure: what memory settles and what it leaves to the journal.

import test from 'ava';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { emptyDedupe, MAX_SENDERS, RECENT_COMMANDS, recognise, remember, type Origin } from '../runtime/dedupe.ts';

const from = (sender: string, seq: number, i = 0): Origin => ({ from: sender, seq, i });

test('a tell beyond its sender\'s mark is new; at or below it, the journal decides', (t) => {
  let d = remember(emptyDedupe, 'a>0', 1, from('booking:b', 5, 1));
  t.deepEqual(recognise(d, 'a>1', from('booking:b', 5, 2)), { kind: 'new' });
  t.deepEqual(recognise(d, 'c>0', from('booking:b', 6, 0)), { kind: 'new' });
  d = remember(d, 'c>0', 2, from('booking:b', 6, 0));
  t.deepEqual(recognise(d, 'x>0', from('booking:b', 5, 1)), { kind: 'unknown' }, 'below the mark: a re-send or a retried dead letter');
});

test('a tell from a sender never heard of is left to the journal', (t) => {
  t.deepEqual(recognise(emptyDedupe, 'a>0', from('booking:b', 1)), { kind: 'unknown' });
});

test('a command seen recently is a duplicate, with its refusal', (t) => {
  let d = remember(emptyDedupe, 'applied', 1);
  d = remember(d, 'refused', 2, undefined, { code: 'too_little', message: 'no' });
  t.deepEqual(recognise(d, 'applied'), { kind: 'duplicate' });
  t.deepEqual(recognise(d, 'refused'), { kind: 'duplicate', rejection: { code: 'too_little', message: 'no' } });
  t.deepEqual(recognise(d, 'other'), { kind: 'unknown' }, 'a command without origin that memory does not know');
});

test('a mark never moves back (a late re-send does not lower it)', (t) => {
  let d = remember(emptyDedupe, 'b>0', 1, from('driver:d', 9));
  d = remember(d, 'a>0', 2, from('driver:d', 3));
  t.deepEqual(recognise(d, 'z>0', from('driver:d', 9, 1)), { kind: 'new' });
  t.deepEqual(recognise(d, 'y>0', from('driver:d', 8)), { kind: 'unknown' });
});

test('memory stays bounded: recent ids and senders are capped, least recent first out', (t) => {
  let d = emptyDedupe;
  for (let n = 1; n <= MAX_SENDERS + 10; n++) d = remember(d, `c${n}`, n, from(`booking:${n}`, 1));
  t.is(Object.keys(d.marks).length, MAX_SENDERS);
  t.is(d.recent.length, RECENT_COMMANDS);
  t.is(d.marks['booking:1'], undefined, 'the sender heard of longest ago is evicted');
  t.deepEqual(recognise(d, 'late', from('booking:1', 1)), { kind: 'unknown' }, 'its tells are left to the journal, not taken as new');
  t.deepEqual(recognise(d, 'next', from(`booking:${MAX_SENDERS + 10}`, 2)), { kind: 'new' });
  t.deepEqual(recognise(d, 'c1'), { kind: 'unknown' }, 'an id out of the recent window is left to the journal');
});

test('a remembered id costs its entry, not an array kept with room to grow', (t) => {
  // Every active entity keeps its recent ids: a spread's array held 152 bytes for one id.
  setFlagsFromString('--expose_gc');
  const gc = runInNewContext('gc') as () => void;
  const n = 50_000;
  const id = 'one-shared-id';
  gc(); gc();
  const before = process.memoryUsage().heapUsed;
  const kept = Array.from({ length: n }, () => remember(emptyDedupe, id, 1));
  gc(); gc();
  // Measured: 136 bytes each with an exactly sized array, 264 with a spread's.
  const each = (process.memoryUsage().heapUsed - before) / n;
  t.is(kept.length, n);
  t.true(each < 200, `${Math.round(each)} bytes per remembered id`);
});
