import test from 'ava';
import { latLngToCell } from 'h3-js';
import {
  areaOf, DEFAULT_AREA, EVERY_WINDOW_WAITS, initialArea, makeAreaBehavior, type AreaMessage, type AreaState, type Join,
} from '../../actors/area.ts';
import type { Effect } from '../../actors/behavior.ts';
import { closeBatch, matchBatch, type BatchSearch } from '../../actors/batch.ts';
import type { Candidate } from '../../actors/cell.ts';
import { DEFAULT_WEIGHTS } from '../../actors/dispatch-policy.ts';
import { dispatchBehaviors } from '../../actors/index.ts';

// The window mechanics, with every window waiting (DISPATCH_BATCH_CONTENTION=0); the default adapts (below).
const area = makeAreaBehavior({ ...DEFAULT_AREA, contention: EVERY_WINDOW_WAITS });
const adaptive = makeAreaBehavior(DEFAULT_AREA);
const T0 = 1_000_000;
const ctx = (now = T0) => ({ self: { kind: 'area', id: 'a1' }, now, commandId: 'c' });
const join = (bookingId: string, search = 1, extra: Partial<Join> = {}): Join => ({
  type: 'join', bookingId, search, point: { lat: 52.52, lng: 13.4 }, radiusKm: 3, k: 10, vehicleType: 'economy', tried: [], ...extra,
});
const cand = (driverId: string, distanceKm: number, extra: Partial<Candidate> = {}): Candidate => ({
  driverId, distanceKm, lat: 52.52, lng: 13.4, status: 'available', vehicleType: 'economy', rating: 5, acceptanceRate: 1,
  lastTripEndedAt: 0, maintenance: [], seenAt: 0, ...extra,
});
const requests = (effects: readonly Effect[]) => effects.filter((e) => e.type === 'request');
const tells = (effects: readonly Effect[]) => effects.filter((e): e is Extract<Effect, { type: 'tell' }> => e.type === 'tell');
function run(s: AreaState, ...msgs: [AreaMessage, number?][]) {
  return runOn(area, s, ...msgs);
}
function runOn(behavior: typeof area, s: AreaState, ...msgs: [AreaMessage, number?][]) {
  let effects: Effect[] = [];
  for (const [m, now] of msgs) {
    const out = behavior.handle(s, m, ctx(now));
    s = out.state;
    effects = [...effects, ...out.effects];
  }
  return { state: s, effects };
}

test('an area is the pickup cell\'s parent two resolutions up, shared by nearby pickups', (t) => {
  const cell = latLngToCell(52.52, 13.405, 7);
  const near = latLngToCell(52.521, 13.406, 7);
  t.is(areaOf(cell).length, 15);
  t.is(areaOf(cell), areaOf(near));
  t.is(areaOf(latLngToCell(52.52, 13.405, 1)), latLngToCell(52.52, 13.405, 0), 'never coarser than resolution 0');
});

test('the first join opens a window and asks the batch service to close it after the window; later joins wait in it', (t) => {
  const { state, effects } = run(initialArea(), [join('b1')], [join('b2'), T0 + 500]);
  const asked = requests(effects);
  t.is(asked.length, 1, 'one window, one request');
  const payload = asked[0]!.type === 'request' ? asked[0]!.payload as { window: string; closeAt: number } : undefined;
  t.is(asked[0]!.type === 'request' && asked[0]!.service, 'batch');
  t.is(payload!.closeAt, T0 + DEFAULT_AREA.batchMs);
  t.is(asked[0]!.type === 'request' && asked[0]!.at, T0 + DEFAULT_AREA.batchMs, 'deferred to the end of the window');
  t.is(state.window?.id, payload!.window);
  t.deepEqual(Object.keys(state.pending).sort(), ['b1', 'b2']);
  t.deepEqual(area.query!(state, { type: 'pending', window: payload!.window }, ctx()), { joins: [join('b1'), join('b2')] });
  t.is(area.query!(state, { type: 'pending', window: 'another' }, ctx()), null, 'a window it does not have reads as nothing');
});

test('a repeated join is idempotent; a newer search of the same booking replaces the older, an older one is ignored', (t) => {
  const first = run(initialArea(), [join('b1', 2)]).state;
  const again = area.handle(first, join('b1', 2), ctx(T0 + 100));
  t.is(again.state, first, 'the same join again changes nothing');
  t.deepEqual(again.effects, []);
  const older = area.handle(first, join('b1', 1), ctx(T0 + 100));
  t.is(older.state, first);
  const newer = area.handle(first, join('b1', 3, { radiusKm: 6 }), ctx(T0 + 100));
  t.is(newer.state.pending.b1!.search, 3);
  t.is(newer.state.pending.b1!.radiusKm, 6);
  t.deepEqual(requests(newer.effects), [], 'still the same window');
});

test('a closed window answers each booking softly with its candidates and empties; joins it did not read open the next', (t) => {
  const open = run(initialArea(), [join('b1')], [join('b2')]).state;
  const window = open.window!.id;
  // b3 came after the service read the window: it is not answered and gets the next window.
  const withLate = area.handle(open, join('b3'), ctx(T0 + 2_100)).state;
  const out = area.handle(withLate, { type: 'batch.closed', window, answers: [
    { bookingId: 'b1', search: 1, drivers: [cand('d1', 0.5)] }, { bookingId: 'b2', search: 1, drivers: [] },
  ] }, ctx(T0 + 2_200));
  const told = tells(out.effects);
  t.deepEqual(told.map((e) => [e.to, e.message, e.durable]), [
    [{ kind: 'booking', id: 'b1' }, { type: 'candidates', search: 1, drivers: [cand('d1', 0.5)] }, false],
    [{ kind: 'booking', id: 'b2' }, { type: 'candidates', search: 1, drivers: [] }, false],
  ]);
  t.deepEqual(Object.keys(out.state.pending), ['b3']);
  t.is(requests(out.effects).length, 1, 'the late join opens the next window');
  t.not(out.state.window?.id, window);
  t.deepEqual(out.events, [], 'nothing journaled: an area is soft state');
  t.true(area.ephemeral === true);
});

test('a newer join that came while its old search was being matched stays for the next window', (t) => {
  const open = run(initialArea(), [join('b1', 1)]).state;
  const moved = area.handle(open, join('b1', 2), ctx(T0 + 2_100)).state;
  const out = area.handle(moved, { type: 'batch.closed', window: open.window!.id, answers: [{ bookingId: 'b1', search: 1, drivers: [] }] },
    ctx(T0 + 2_200));
  t.is(out.state.pending.b1?.search, 2);
  t.is(requests(out.effects).length, 1);
});

test('an answer for a window it does not have (it moved or restarted) changes nothing', (t) => {
  const open = run(initialArea(), [join('b1')]).state;
  const out = area.handle(open, { type: 'batch.closed', window: 'stale', answers: [{ bookingId: 'b1', search: 1, drivers: [] }] }, ctx());
  t.is(out.state, open);
  t.deepEqual(out.effects, []);
});

test('a window whose answer never came is given up: the next join (a booking\'s retry) opens a fresh one', (t) => {
  const open = run(initialArea(), [join('b1')]).state;
  const before = area.handle(open, join('b1'), ctx(T0 + DEFAULT_AREA.batchMs + DEFAULT_AREA.overdueMs - 1));
  t.deepEqual(before.effects, [], 'not overdue yet');
  const after = area.handle(open, join('b1'), ctx(T0 + DEFAULT_AREA.batchMs + DEFAULT_AREA.overdueMs));
  t.is(requests(after.effects).length, 1);
  t.not(after.state.window!.id, open.window!.id);
});

test('matching a batch: exact, not greedy, one driver per booking, tried, busy and maintenance drivers left out', (t) => {
  // Rider A's nearest driver X is also the only near one for B: greedy (A first) gives B the far Y.
  const joins = [join('A'), join('B')];
  const found = [[cand('X', 0.3), cand('Y', 0.5)], [cand('X', 0.35), cand('Y', 2.5)]];
  const answers = matchBatch(joins, found, T0, DEFAULT_WEIGHTS);
  t.deepEqual(answers.map((a) => [a.bookingId, a.drivers.map((d) => d.driverId)]), [['A', ['Y']], ['B', ['X']]]);

  const limited = matchBatch(
    [join('A', 1, { tried: ['X'] }), join('B'), join('C')],
    [[cand('X', 0.1)], [cand('Z', 0.1, { status: 'offered' }), cand('M', 0.1, { maintenance: [{ from: 0, to: T0 * 2 }] })], undefined],
    T0, DEFAULT_WEIGHTS,
  );
  t.deepEqual(limited, [{ bookingId: 'A', search: 1, drivers: [] }, { bookingId: 'B', search: 1, drivers: [] }],
    'nobody for A (tried) or B (busy, in maintenance); C, whose search failed, waits for the next window');

  const scarce = matchBatch([join('A'), join('B'), join('C')], [[cand('X', 1)], [cand('X', 2)], [cand('X', 0.5)]], T0, DEFAULT_WEIGHTS);
  t.deepEqual(scarce.map((a) => a.drivers.map((d) => d.driverId)), [[], [], ['X']], 'a driver goes to one booking only');
});

const at = (effects: readonly Effect[]) => effects.flatMap((e) => (e.type === 'request' ? [e.at] : []));
const windowOf = (s: AreaState) => s.window!.id;
/** One join answered in its own batch, as the batch service answers it. */
function served(s: AreaState, bookingId: string, now: number, drivers: Candidate[], contended = false) {
  const opened = adaptive.handle(s, join(bookingId), ctx(now));
  const answer = { bookingId, search: 1, drivers, ...(contended ? { contended } : {}) };
  return { opened, closed: adaptive.handle(opened.state, { type: 'batch.closed', window: windowOf(opened.state), answers: [answer] }, ctx(now + 10)) };
}

test('adaptive: a quiet area matches each join at once; contentions make its windows wait; once they are old, at once again', (t) => {
  const { events, holdMs } = DEFAULT_AREA.contention;
  let s = initialArea();
  let now = T0;
  // A quiet area: each booking got its own best driver (never contended): no window waits.
  for (let i = 0; i < 5; i += 1) {
    const { opened, closed } = served(s, `q${i}`, now, [cand(`d${i}`, 0.5, { lat: 52.6 + i, lng: 13.4 })]);
    t.deepEqual(at(opened.effects), [now], 'closes at once');
    s = closed.state;
    now += 5_000;
  }
  // Contended batches (each a booking that did not get its best candidate).
  for (let i = 0; i < events; i += 1) {
    const { opened, closed } = served(s, `c${i}`, now, [cand(`e${i}`, 1, { lat: 53 + i, lng: 13.4 })], true);
    t.deepEqual(at(opened.effects), [now], `contention ${i + 1} of ${events}: still at once`);
    s = closed.state;
    now += 1_000;
  }
  t.deepEqual(at(adaptive.handle(s, join('w'), ctx(now)).effects), [now + DEFAULT_AREA.batchMs], 'then a window waits');
  // The first contention was seen at now - 1 s × events + 10 ms.
  const later = now - 1_000 * events + 10 + holdMs + 1;
  t.deepEqual(at(adaptive.handle(s, join('w'), ctx(later - 2)).effects), [later - 2 + DEFAULT_AREA.batchMs], 'still within the hold');
  t.deepEqual(at(adaptive.handle(s, join('w'), ctx(later)).effects), [later], 'the oldest contention aged out: at once again');
});

test('adaptive: a driver the area gave another booking within the window that was nearer than the one this booking got is a contention', (t) => {
  const here = { lat: 52.52, lng: 13.4 };
  let s = initialArea();
  // b1 got X, right at b2's pickup; a moment later b2 gets Y, 1 km away: a window would have weighed both.
  s = served(s, 'b1', T0, [cand('X', 0.8, here)]).closed.state;
  s = served(s, 'b2', T0 + 500, [cand('Y', 1, { lat: 52.529, lng: 13.4 })]).closed.state;
  t.is(s.contended.length, 1);
  // Given longer than a window ago, or of another vehicle type, X is no contention.
  let apart = served(initialArea(), 'b1', T0, [cand('X', 0.8, here)]).closed.state;
  apart = served(apart, 'b2', T0 + DEFAULT_AREA.batchMs + 500, [cand('Y', 1, { lat: 52.529, lng: 13.4 })]).closed.state;
  t.is(apart.contended.length, 0, 'given too long ago');
  let other = served(initialArea(), 'b1', T0, [cand('X', 0.8, { ...here, vehicleType: 'comfort' })]).closed.state;
  other = served(other, 'b2', T0 + 500, [cand('Y', 1, { lat: 52.529, lng: 13.4 })]).closed.state;
  t.is(other.contended.length, 0, 'a comfort driver is no loss to an economy booking');
});

test('matching marks a booking contended when it did not get its own best candidate', (t) => {
  const answers = matchBatch([join('A'), join('B')], [[cand('X', 0.3), cand('Y', 0.5)], [cand('X', 0.35), cand('Y', 2.5)]], T0, DEFAULT_WEIGHTS);
  t.deepEqual(answers.map((a) => [a.bookingId, a.contended ?? false]), [['A', true], ['B', false]]);
  const apart = matchBatch([join('A'), join('B')], [[cand('X', 0.3)], [cand('Y', 0.35)]], T0, DEFAULT_WEIGHTS);
  t.deepEqual(apart.map((a) => a.contended ?? false), [false, false]);
  const none = matchBatch([join('A'), join('B')], [[cand('X', 0.3)], [cand('X', 0.5)]], T0, DEFAULT_WEIGHTS);
  t.deepEqual(none.map((a) => [a.drivers.length, a.contended ?? false]), [[1, false], [0, true]], 'left with nobody by another: contended');
});

test('closing a batch: a join left with nobody is searched wider in the same window, as far as its wider radii allow by then', async (t) => {
  // Drivers by distance from every pickup (one point): X at 0.5 km, W at 5 km, F at 10 km.
  const drivers = [cand('X', 0.5), cand('W', 5), cand('F', 10)];
  const searched: [string, number, number][] = [];
  const search: BatchSearch = async (j, radiusKm, k) => {
    searched.push([j.bookingId, radiusKm, k]);
    return drivers.filter((d) => d.distanceKm <= radiusKm).slice(0, k);
  };
  const wider = [{ radiusKm: 6, from: T0 - 1_000 }, { radiusKm: 12, from: T0 + 1_000 }];
  const three = [join('A', 1, { wider }), join('B', 1, { wider }), join('C', 1, { wider, radiusKm: 0.1 })];
  const answers = await closeBatch(three, search, T0, DEFAULT_WEIGHTS);
  const got = answers.flatMap((a) => a.drivers.map((d) => d.driverId)).sort();
  t.deepEqual(got, ['W', 'X'], 'X at 3 km, then W (5 km) found at 6 km in the same window: two drivers, each to one booking');
  t.deepEqual(searched.filter(([, r]) => r === 12), [], 'never past what greedy would have reached by the window\'s end (12 km from T0 + 1 s)');
  t.true(searched.filter(([, r]) => r === 6).every(([, , k]) => k > 10), 'wider searches ask for more than the drivers already given');

  const late = await closeBatch(three, search, T0 + 1_000, DEFAULT_WEIGHTS);
  t.deepEqual(late.map((a) => a.drivers.length), [1, 1, 1], 'at T0 + 1 s 12 km is allowed too: F, and every booking has a driver');
  t.is(new Set(late.map((a) => a.drivers[0]!.driverId)).size, 3, 'never one driver twice');

  const failed = await closeBatch([join('A'), join('Z')], async (j) => (j.bookingId === 'Z' ? undefined : drivers), T0, DEFAULT_WEIGHTS);
  t.deepEqual(failed.map((a) => a.bookingId), ['A'], 'a join whose search failed gets no answer and stays for the next window');
});

test('DISPATCH_BATCH_CONTENTION reaches the areas: 0 makes every window wait, the default matches a quiet area at once', (t) => {
  const areaOf = (batchContention?: number) => dispatchBehaviors({
    dispatch: { cellRes: 7, offerTimeoutMs: 15_000, surgeCap: 3, deadlineMs: 120_000, mode: 'batched', batchMs: 2_000, batchContention },
  }).find((b) => b.kind === 'area')!;
  const closeOf = (behavior: ReturnType<typeof areaOf>) => at(behavior.handle(behavior.initial('a1'), join('b1'), ctx()).effects as Effect[]);
  t.deepEqual(closeOf(areaOf(0)), [T0 + 2_000]);
  t.deepEqual(closeOf(areaOf()), [T0]);
});
