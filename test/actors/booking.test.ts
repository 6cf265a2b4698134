import test from 'ava';
import type { HandleContext } from '../../actors/behavior.ts';
import { DEFAULT_BOOKING, initialBooking, makeBookingBehavior, type BookingMessage, type BookingState } from '../../actors/booking.ts';
import type { Candidate } from '../../actors/cell.ts';

const behavior = makeBookingBehavior(DEFAULT_BOOKING);
const ctx = (now = 1_000_000): HandleContext => ({ self: { kind: 'booking', id: 'b1' }, now, commandId: 'c' });
const rider = { role: 'rider' as const, userId: 'r1' };
const create: BookingMessage = {
  type: 'create', riderId: 'r1', vehicleType: 'economy', pickup: { lat: 52.52, lng: 13.4 }, dropoff: { lat: 52.55, lng: 13.42 },
  pickupCell: '871f1d489ffffff', price: { amount: 1200, currency: 'USD' }, surge: 1, distanceKm: 4.1, durationMin: 9.8,
};
const cand = (driverId: string, distanceKm: number, extra: Partial<Candidate> = {}): Candidate => ({
  driverId, distanceKm, lat: 52.52, lng: 13.4, status: 'available', vehicleType: 'economy', rating: 5, acceptanceRate: 1,
  lastTripEndedAt: 0, maintenance: [], seenAt: 0, ...extra,
});
function run(s: BookingState, ...msgs: BookingMessage[]): BookingState {
  return msgs.reduce((st, m) => behavior.handle(st, m, ctx()).state, s);
}

test('creating a booking starts a search with a retry timer and a deadline', (t) => {
  const out = behavior.handle(initialBooking('b1'), create, ctx());
  t.is(out.state.status, 'searching');
  t.deepEqual(out.effects.filter((e) => e.type === 'request').map((e) => e.type === 'request' && e.service), ['nearest']);
  t.deepEqual(out.effects.filter((e) => e.type === 'timer.set').map((e) => e.type === 'timer.set' && e.name), ['search', 'deadline']);
  t.is((out.reply as { status: string }).status, 'searching');
  t.true(out.effects.some((e) => e.type === 'tell' && e.to.kind === 'cell'), 'demand is counted in the pickup cell');
  const again = behavior.handle(out.state, create, ctx());
  t.deepEqual(again.events, [], 'creating twice changes nothing');
});

test('candidates are offered one at a time, best first; a refusal moves to the next', (t) => {
  const searching = run(initialBooking('b1'), create);
  const offered = behavior.handle(searching, { type: 'candidates', search: 1, drivers: [cand('far', 2), cand('near', 0.5)] }, ctx());
  t.is(offered.state.status, 'offered');
  t.is(offered.state.offer?.driverId, 'near');
  const tells = offered.effects.filter((e) => e.type === 'tell' && e.to.kind === 'driver');
  t.is(tells.length, 1, 'one offer at a time');
  const next = behavior.handle(offered.state, { type: 'offer.refused', driverId: 'near', reason: 'busy' }, ctx());
  t.is(next.state.offer?.driverId, 'far');
  const stale = behavior.handle(next.state, { type: 'offer.declined', driverId: 'near' }, ctx());
  t.deepEqual(stale.events, [], 'an answer from a driver no longer offered is ignored');
});

test('out of candidates, the search widens, then gives up as no_driver', (t) => {
  let s = run(initialBooking('b1'), create);
  const radii = [s.radiusKm];
  for (let i = 0; i < DEFAULT_BOOKING.maxSearches + 2 && s.status === 'searching'; i++) {
    s = behavior.handle(s, { type: 'candidates', search: s.searches, drivers: [] }, ctx()).state;
    radii.push(s.radiusKm);
  }
  t.is(s.status, 'no_driver');
  t.true(radii[1]! > radii[0]!, `radius widened: ${radii.join(' -> ')}`);
  t.true(radii.every((r) => r <= DEFAULT_BOOKING.maxRadiusKm));
});

test('the deadline ends a search and withdraws an open offer', (t) => {
  const offered = run(initialBooking('b1'), create, { type: 'candidates', search: 1, drivers: [cand('d1', 1)] });
  const out = behavior.handle(offered, { type: 'deadline' }, ctx());
  t.is(out.state.status, 'no_driver');
  t.true(out.effects.some((e) => e.type === 'tell' && (e.message as { type: string }).type === 'offer.withdrawn'));
});

test('a late acceptance is refused and releases the driver', (t) => {
  const timedOut = run(initialBooking('b1'), create, { type: 'candidates', search: 1, drivers: [cand('d1', 1), cand('d2', 2)] }, { type: 'offer.timeout', driverId: 'd1' });
  t.is(timedOut.offer?.driverId, 'd2');
  const late = behavior.handle(timedOut, { type: 'offer.accepted', driverId: 'd1' }, ctx());
  t.is(late.rejection?.code, 'offer_closed');
  t.deepEqual(late.effects, [{ type: 'tell', to: { kind: 'driver', id: 'd1' }, message: { type: 'offer.withdrawn', bookingId: 'b1' } }]);
  const accepted = behavior.handle(timedOut, { type: 'offer.accepted', driverId: 'd2' }, ctx());
  t.is(accepted.state.status, 'accepted');
  t.is(accepted.state.driverId, 'd2');
});

test('cancellation rules per status and per caller', (t) => {
  const searching = run(initialBooking('b1'), create);
  t.is(behavior.handle(searching, { type: 'cancel', by: { role: 'rider', userId: 'someone-else' } }, ctx()).rejection?.code, 'forbidden');
  t.is(behavior.handle(searching, { type: 'cancel', by: { role: 'driver', userId: 'd1' } }, ctx()).rejection?.code, 'forbidden');
  t.is(behavior.handle(searching, { type: 'cancel', by: rider }, ctx()).state.status, 'cancelled');
  t.is(behavior.handle(searching, { type: 'cancel', by: { role: 'admin', userId: 'ops' } }, ctx()).state.status, 'cancelled');
  const accepted = run(searching, { type: 'candidates', search: 1, drivers: [cand('d1', 1)] }, { type: 'offer.accepted', driverId: 'd1' });
  const cancelled = behavior.handle(accepted, { type: 'cancel', by: rider }, ctx());
  t.is(cancelled.state.status, 'cancelled');
  t.true(cancelled.effects.some((e) => e.type === 'tell' && (e.message as { type: string }).type === 'booking.cancelled'), 'the driver is told');
  const inProgress = run(accepted, { type: 'trip.arrived', driverId: 'd1' }, { type: 'trip.started', driverId: 'd1' });
  t.is(inProgress.status, 'in_progress');
  t.is(behavior.handle(inProgress, { type: 'cancel', by: rider }, ctx()).rejection?.code, 'conflict');
  const done = run(inProgress, { type: 'trip.completed', driverId: 'd1' });
  t.is(behavior.handle(done, { type: 'cancel', by: { role: 'admin', userId: 'ops' } }, ctx()).rejection?.code, 'conflict', 'cancel after completion is refused');
});

test('trip steps come only from the assigned driver and in order', (t) => {
  const accepted = run(initialBooking('b1'), create, { type: 'candidates', search: 1, drivers: [cand('d1', 1)] }, { type: 'offer.accepted', driverId: 'd1' });
  t.is(behavior.handle(accepted, { type: 'trip.arrived', driverId: 'intruder' }, ctx()).rejection?.code, 'invalid_transition');
  t.is(behavior.handle(accepted, { type: 'trip.completed', driverId: 'd1' }, ctx()).rejection?.code, 'invalid_transition');
});

test('a scheduled booking waits and activates once', (t) => {
  const scheduled = behavior.handle(initialBooking('b1'), { ...create, scheduledAt: 2_000_000 } as BookingMessage, ctx());
  t.is(scheduled.state.status, 'scheduled');
  t.false(scheduled.effects.some((e) => e.type === 'request'), 'no search before activation');
  const active = behavior.handle(scheduled.state, { type: 'activate' }, ctx());
  t.is(active.state.status, 'searching');
  t.deepEqual(behavior.handle(active.state, { type: 'activate' }, ctx()).events, [], 'activation is idempotent');
});

test('events replay to the same booking', (t) => {
  const msgs: BookingMessage[] = [create, { type: 'candidates', search: 1, drivers: [cand('d1', 1)] }, { type: 'offer.accepted', driverId: 'd1' }, { type: 'trip.arrived', driverId: 'd1' }];
  let live = initialBooking('b1');
  const events = [];
  for (const m of msgs) { const out = behavior.handle(live, m, ctx()); live = out.state; events.push(...out.events); }
  t.deepEqual(events.reduce(behavior.apply, initialBooking('b1')), live);
});

test('a driver released before the trip starts sends the booking back to dispatch, to someone else', (t) => {
  const accepted = run(initialBooking('b1'), create, { type: 'candidates', search: 1, drivers: [cand('d1', 1)] }, { type: 'offer.accepted', driverId: 'd1' });
  t.is(accepted.status, 'accepted');
  const later = 1_000_000 + DEFAULT_BOOKING.deadlineMs + 5_000; // the first deadline has passed
  const out = behavior.handle(accepted, { type: 'driver.released', driverId: 'd1', reason: 'driver deactivated' }, ctx(later));
  t.is(out.state.status, 'searching');
  t.is(out.state.driverId, undefined);
  t.deepEqual(out.events.map((e) => e.type), ['released', 'search.started']);
  t.true(out.effects.some((e) => e.type === 'request' && e.service === 'nearest'), 'a new search');
  t.is(out.state.deadlineAt, later + DEFAULT_BOOKING.deadlineMs, 'with a fresh deadline');
  t.true(out.effects.some((e) => e.type === 'timer.set' && e.name === 'deadline' && e.at === later + DEFAULT_BOOKING.deadlineMs));
  t.true(out.effects.some((e) => e.type === 'notify' && e.userId === 'r1'), 'the rider sees the booking searching again');
  const next = behavior.handle(out.state, { type: 'candidates', search: out.state.searches, drivers: [cand('d1', 0.1), cand('d2', 2)] }, ctx(later));
  t.is(next.state.offer?.driverId, 'd2', 'the released driver is not offered again');
  t.deepEqual(out.events.reduce(behavior.apply, accepted), out.state, 'the events replay to the same booking');
});

test('a released booking gets a fresh search budget; stray or late releases change nothing', (t) => {
  let s = run(initialBooking('b1'), create);
  for (let i = 0; i < DEFAULT_BOOKING.maxSearches - 1; i++) s = behavior.handle(s, { type: 'candidates', search: s.searches, drivers: [] }, ctx()).state;
  s = run(s, { type: 'candidates', search: s.searches, drivers: [cand('d1', 1)] }, { type: 'offer.accepted', driverId: 'd1' });
  t.is(s.status, 'accepted');
  t.is(s.searches, DEFAULT_BOOKING.maxSearches);
  const released = behavior.handle(s, { type: 'driver.released', driverId: 'd1', reason: 'driver deactivated' }, ctx()).state;
  const widened = behavior.handle(released, { type: 'candidates', search: released.searches, drivers: [] }, ctx()).state;
  t.is(widened.status, 'searching', 'an empty answer widens the search instead of giving up at once');
  t.deepEqual(behavior.handle(s, { type: 'driver.released', driverId: 'other', reason: 'x' }, ctx()).events, [], 'only the assigned driver releases');
  const arriving = run(s, { type: 'trip.arrived', driverId: 'd1' });
  t.is(behavior.handle(arriving, { type: 'driver.released', driverId: 'd1', reason: 'x' }, ctx()).state.status, 'searching', 'arriving counts as not started');
  const started = run(arriving, { type: 'trip.started', driverId: 'd1' });
  t.deepEqual(behavior.handle(started, { type: 'driver.released', driverId: 'd1', reason: 'x' }, ctx()).events, [], 'a started trip is not released');
});
