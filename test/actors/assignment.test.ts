import test from 'ava';
import { assign, totalCost } from '../../actors/assignment.ts';

function seeded(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

/** Every assignment by brute force: the most pairs, then the least cost (the solver's objective). */
function bruteForce(cost: number[][]): { pairs: number; cost: number } {
  const rows = cost.length;
  const cols = cost[0]?.length ?? 0;
  let best = { pairs: 0, cost: 0 };
  const taken = new Array<boolean>(cols).fill(false);
  const walk = (i: number, pairs: number, sum: number) => {
    if (i === rows) {
      if (pairs > best.pairs || (pairs === best.pairs && sum < best.cost - 1e-9)) best = { pairs, cost: sum };
      return;
    }
    walk(i + 1, pairs, sum); // row i gets nobody
    for (let j = 0; j < cols; j++) {
      if (taken[j] || !Number.isFinite(cost[i]![j]!)) continue;
      taken[j] = true;
      walk(i + 1, pairs + 1, sum + cost[i]![j]!);
      taken[j] = false;
    }
  };
  walk(0, 0, 0);
  return best;
}

function valid(t: { true(v: boolean, m?: string): void }, cost: number[][], a: number[]) {
  const cols = a.filter((j) => j >= 0);
  t.true(new Set(cols).size === cols.length, 'no column is assigned twice');
  t.true(a.every((j, i) => j < 0 || Number.isFinite(cost[i]![j]!)), 'no forbidden pair is assigned');
}

test('matches brute force on small random matrices, square and rectangular both ways, with forbidden pairs', (t) => {
  const rand = seeded(25);
  for (let n = 0; n < 400; n++) {
    const rows = 1 + Math.floor(rand() * 5);
    const cols = 1 + Math.floor(rand() * 5);
    const cost = Array.from({ length: rows }, () => Array.from({ length: cols }, () =>
      (rand() < 0.25 ? Infinity : Math.round((rand() * 20 - 5) * 100) / 100)));
    const a = assign(cost);
    t.is(a.length, rows);
    valid(t, cost, a);
    const best = bruteForce(cost);
    t.is(a.filter((j) => j >= 0).length, best.pairs, `most pairs for ${JSON.stringify(cost)}`);
    t.true(Math.abs(totalCost(cost, a) - best.cost) < 1e-6, `least cost for ${JSON.stringify(cost)}: ${totalCost(cost, a)} vs ${best.cost}`);
  }
});

test('not greedy: two riders, two drivers, the first rider\'s nearest is the only one near the second', (t) => {
  // Rider A is 1.0 from driver X and 1.2 from Y; rider B is 1.1 from X and 5.0 from Y.
  // Greedy gives A its nearest (X) and B the far Y: 6.0 in all. The optimum is 2.3.
  const cost = [[1.0, 1.2], [1.1, 5.0]];
  const a = assign(cost);
  t.deepEqual(a, [1, 0]);
  t.true(Math.abs(totalCost(cost, a) - 2.3) < 1e-9);
});

test('a row with only forbidden pairs gets nobody, and does not take a driver from another', (t) => {
  t.deepEqual(assign([[Infinity, Infinity], [3, 4]]), [-1, 0]);
  t.deepEqual(assign([[1], [Infinity], [0.5]]), [-1, -1, 0]);
  t.deepEqual(assign([[Infinity]]), [-1]);
  t.deepEqual(assign([]), []);
  t.deepEqual(assign([[]]), [-1]);
});

test('most pairs first: a slightly cheaper single pair never leaves a booking out', (t) => {
  // Taking (0,0) alone costs 0; but then row 1 has nothing. Both rows matched costs 10.
  t.deepEqual(assign([[0, 5], [5, Infinity]]), [1, 0]);
});

test('a larger batch (200 bookings × 1000 drivers, most pairs forbidden) is solved', (t) => {
  const rand = seeded(3);
  const cost = Array.from({ length: 200 }, () => Array.from({ length: 1000 }, () => (rand() < 0.9 ? Infinity : rand())));
  const a = assign(cost);
  valid(t, cost, a);
  t.true(a.filter((j) => j >= 0).length > 150);
});
