// Token buckets by key in one array (runtime/token-buckets.ts), under the in-process rate
// limiter: the rate limiter conformance suite checks what a caller sees; this checks what only
// the array could get wrong. A bucket is forgotten exactly when it is full again, a slot given
// up and taken by another key carries nothing over, and buckets keep their tokens as the array
// grows.

import test from 'ava';
import { TokenBuckets } from '../runtime/token-buckets.ts';

const budget = { perSecond: 1, burst: 10 };

test('a bucket is forgotten once it is full again, not before', (t) => {
  const b = new TokenBuckets();
  t.true(b.take('a', 4, budget, 0));
  t.true(b.take('b', 1, budget, 0));
  b.forgetFull(999);
  t.is(b.size, 2, 'both still owe tokens');
  b.forgetFull(1_000);
  t.is(b.size, 1, 'b is full after a second, a is not');
  t.false(b.take('a', 8, budget, 1_000), 'a kept what it owes: 7 tokens, not 10');
  b.forgetFull(4_000);
  t.is(b.size, 0);
  t.true(b.take('a', 10, budget, 4_000), 'forgotten full, it is new and full');
});

test('a slot given up and taken by another key starts full, and others keep their tokens', (t) => {
  const b = new TokenBuckets();
  t.true(b.take('spent', 10, budget, 0));
  t.true(b.take('kept', 9, budget, 0));
  b.forgetFull(8_999); // neither: spent is full at 10 s, kept at 9 s
  t.is(b.size, 2);
  b.forgetFull(9_000);
  t.is(b.size, 1, 'kept is full and forgotten; its slot is free');
  t.true(b.take('newcomer', 10, budget, 9_000), 'the freed slot holds a full bucket for the new key');
  t.false(b.take('spent', 9.5, budget, 9_000), 'spent has its 9 tokens, not more');
  t.true(b.take('spent', 9, budget, 9_000));
  t.false(b.take('newcomer', 0.5, budget, 9_000), 'and the newcomer none left');
});

test('buckets keep their tokens while the array grows', (t) => {
  const b = new TokenBuckets();
  for (let i = 0; i < 1_000; i++) t.true(b.take(`k${i}`, i % 10, budget, 0));
  t.is(b.size, 1_000);
  const left = Array.from({ length: 1_000 }, (_, i) => b.take(`k${i}`, 10 - (i % 10), budget, 0));
  t.true(left.every(Boolean), 'each holds exactly what it had left');
  t.true(Array.from({ length: 1_000 }, (_, i) => b.take(`k${i}`, 0.001, budget, 0)).every((ok) => !ok), 'and nothing more');
});
