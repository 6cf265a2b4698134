// The simulator's seeded city and the compare's sizing of loads, checked without a node: one
// seed gives one booking stream and one fleet (another seed another), and the fleet's capacity
// is computed from them, also for a small fleet that happens to have no driver of a type.

import test from 'ava';
import { capacity } from '../scripts/compare-capacity.ts';
import { driverStart, planned } from '../scripts/sim-city.ts';

test('one seed gives one booking stream and one fleet; another seed another', (t) => {
  const stream = (seed: number) => Array.from({ length: 50 }, (_, n) => planned(seed, n, 60, 0.1));
  t.deepEqual(stream(1), stream(1));
  t.notDeepEqual(stream(1), stream(2));
  t.deepEqual(driverStart(7, 3), driverStart(7, 3));
  t.notDeepEqual(driverStart(7, 3), driverStart(7, 4));
  const share = stream(1).filter((b) => b.scheduled).length / 50;
  t.true(share > 0 && share < 0.3, `about 10 % for later (${share})`);
  const gaps = stream(1).map((b) => b.gapMs);
  t.true(gaps.every((g) => g >= 500 && g <= 1500), 'gaps of half to one and a half the mean (1 s at 60 a minute)');
});

test('capacity grows with the fleet, is bound by the scarcer type, and says how it was reached', (t) => {
  const small = capacity(1, 20, 20), large = capacity(1, 60, 20);
  t.true(large.perMin > small.perMin * 2, `${large.perMin} for 60 drivers against ${small.perMin} for 20`);
  t.true(large.tripKm > 1 && large.tripKm < 3.5, `mean trip ${large.tripKm} km, within the stream's 1-3.5 km`);
  t.regex(large.how, /60 drivers \(\d+ economy, \d+ comfort/);
  t.regex(large.how, /= \d+\.\d bookings\/min$/);
  // Seed 1's first 10 drivers all drive economy: comfort bookings cannot be served, the rest still can.
  const noComfort = capacity(1, 10, 20);
  t.true(noComfort.perMin > 0, 'sized from the economy drivers');
  t.regex(noComfort.how, /no comfort driver: those bookings end no_driver/);
  t.true(capacity(1, 60, 40).perMin > large.perMin, 'faster driving serves more');
});
