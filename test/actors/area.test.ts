import test from 'ava';
import { latLngToCell } from 'h3-js';
import { areaOf, DEFAULT_AREA, initialArea, makeAreaBehavior, type AreaMessage, type AreaState, type Join } from '../../actors/area.ts';
import type { Effect } from '../../actors/behavior.ts';
import { matchBatch } from '../../actors/batch.ts';
import type { Candidate } from '../../actors/cell.ts';
import { DEFAULT_WEIGHTS } from '../../actors/dispatch-policy.ts';

const area = makeAreaBehavior(DEFAULT_AREA);
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
  let effects: Effect[] = [];
  for (const [m, now] of msgs) {
    const out = area.handle(s, m, ctx(now));
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
