import test from 'ava';
import type { HandleContext } from '../../actors/behavior.ts';
import type { Effect } from '../../actors/behavior.ts';
import { DEFAULT_BOOKING, initialBooking, makeBookingBehavior, searchBackoff, type BookingMessage, type BookingState } from '../../actors/booking.ts';
import type { Candidate } from '../../actors/cell.ts';
import { areaOf } from '../../actors/area.ts';

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

test('a booking is never created without a whole, non-negative price', (t) => {
  for (const amount of [null, undefined, Number.NaN, 12.5, -1, Number.POSITIVE_INFINITY, '1200']) {
    const out = behavior.handle(initialBooking('b1'), { ...create, price: { amount: amount as number, currency: 'USD' } }, ctx());
    t.is(out.rejection?.code, 'invalid_price', String(amount));
    t.deepEqual(out.events, [], `nothing journaled for ${String(amount)}`);
    t.is(out.state.status, 'none');
  }
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

const timersSet = (effects: readonly Effect[]) => effects.flatMap((e) => (e.type === 'timer.set' ? [e] : []));
const timersCancelled = (effects: readonly Effect[]) => effects.flatMap((e) => (e.type === 'timer.cancel' ? [e.name] : []));

test('an empty search is made again after a capped backoff, wider, and no_driver comes only at the deadline', (t) => {
  const t0 = 1_000_000;
  let s = behavior.handle(initialBooking('b1'), create, ctx(t0)).state;
  const deadlineAt = s.deadlineAt;
  t.is(deadlineAt, t0 + DEFAULT_BOOKING.deadlineMs);
  let now = t0;
  const waits: number[] = [];
  const radii = [s.radiusKm];
  for (;;) {
    const empty = behavior.handle(s, { type: 'candidates', search: s.searches, drivers: [] }, ctx(now));
    t.is(empty.state.status, 'searching', `still searching after search ${s.searches}`);
    t.false(empty.effects.some((e) => e.type === 'request'), 'no search back to back');
    const [wait] = timersSet(empty.effects);
    t.is(wait?.name, 'search');
    t.deepEqual(wait?.message, { type: 'search.next', search: s.searches });
    waits.push(wait!.at - now);
    s = empty.state;
    now = wait!.at;
    const again = behavior.handle(s, { type: 'search.next', search: s.searches }, ctx(now));
    if (now >= deadlineAt) {
      t.is(again.state.status, 'no_driver', 'at the deadline the booking gives up');
      break;
    }
    t.deepEqual(again.events.map((e) => e.type), ['search.started']);
    t.true(again.effects.some((e) => e.type === 'request' && e.service === 'nearest'), 'the next search');
    t.is(again.state.deadlineAt, deadlineAt, 'the deadline does not move');
    s = again.state;
    radii.push(s.radiusKm);
  }
  t.deepEqual(waits.slice(0, 6), [1_000, 2_000, 4_000, 8_000, 8_000, 8_000], 'backoff 1, 2, 4, 8 s, capped');
  t.is(now, deadlineAt, 'the last wait is cut at the deadline');
  t.true(waits.length > 10, `${waits.length} searches within the deadline, not six back to back`);
  t.deepEqual(radii.slice(0, 4), [3, 6, 12, 12], 'the radius widens up to its cap');
  t.deepEqual([1, 2, 3, 4, 5, 9].map((n) => searchBackoff(DEFAULT_BOOKING, n)), [1_000, 2_000, 4_000, 8_000, 8_000, 8_000]);
});

test('an empty search before the deadline never ends the booking; the deadline timer does', (t) => {
  let s = run(initialBooking('b1'), create);
  for (let i = 0; i < 20; i++) {
    s = behavior.handle(s, { type: 'candidates', search: s.searches, drivers: [] }, ctx()).state;
    s = behavior.handle(s, { type: 'search.next', search: s.searches }, ctx()).state;
  }
  t.is(s.status, 'searching', 'twenty empty searches in a row, still searching');
  t.deepEqual(behavior.handle(s, { type: 'search.next', search: s.searches - 1 }, ctx()).events, [], 'a stale wake-up is ignored');
  const late = behavior.handle(s, { type: 'candidates', search: s.searches, drivers: [] }, ctx(s.deadlineAt));
  t.is(late.state.status, 'no_driver', 'an empty answer at the deadline gives up');
  t.deepEqual(timersCancelled(late.effects).sort(), ['deadline', 'offer', 'search']);
  t.is(behavior.handle(s, { type: 'deadline' }, ctx(s.deadlineAt)).state.status, 'no_driver');
  const found = behavior.handle(s, { type: 'candidates', search: s.searches, drivers: [cand('d1', 1)] }, ctx());
  t.is(found.state.offer?.driverId, 'd1', 'a driver found on a later search is offered');
});

test('candidates that run out after refusals are searched again at once, wider', (t) => {
  const offered = run(initialBooking('b1'), create, { type: 'candidates', search: 1, drivers: [cand('d1', 1)] });
  const out = behavior.handle(offered, { type: 'offer.refused', driverId: 'd1', reason: 'busy' }, ctx());
  t.is(out.state.status, 'searching');
  t.is(out.state.searches, 2);
  t.is(out.state.radiusKm, 6);
  t.true(out.effects.some((e) => e.type === 'request'));
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

test('a scheduled booking sets its own activation timer and activates once', (t) => {
  const scheduledAt = 1_000_000 + 3_600_000;
  const scheduled = behavior.handle(initialBooking('b1'), { ...create, scheduledAt } as BookingMessage, ctx());
  t.is(scheduled.state.status, 'scheduled');
  t.false(scheduled.effects.some((e) => e.type === 'request'), 'no search before activation');
  t.deepEqual(timersSet(scheduled.effects), [{ type: 'timer.set', name: 'activate', at: scheduledAt - DEFAULT_BOOKING.scheduleLeadMs, message: { type: 'activate' } }],
    'a durable timer for scheduledAt - SCHEDULE_LEAD_MS, set when the booking is created');
  const soon = behavior.handle(initialBooking('b1'), { ...create, scheduledAt: 1_000_000 + 60_000 } as BookingMessage, ctx());
  t.is(soon.state.status, 'scheduled');
  t.is(timersSet(soon.effects)[0]?.at, 1_000_000, 'inside the lead window the timer is due at once');

  // The timer fires, and the sweep (read model) asks too: one activation.
  const fired = behavior.handle(scheduled.state, { type: 'activate' }, ctx(scheduledAt - DEFAULT_BOOKING.scheduleLeadMs));
  t.is(fired.state.status, 'searching');
  t.deepEqual(fired.events.map((e) => e.type), ['search.started']);
  t.true(timersCancelled(fired.effects).includes('activate'), 'an activation by the sweep cancels the timer');
  const swept = behavior.handle(fired.state, { type: 'activate' }, ctx(scheduledAt - DEFAULT_BOOKING.scheduleLeadMs + 1));
  t.deepEqual(swept.events, [], 'activation is idempotent');
  t.is(swept.state, fired.state);
  t.false(swept.effects.some((e) => e.type === 'request' || e.type === 'timer.set' || e.type === 'notify'), 'no second search');
});

test('cancelling a scheduled booking cancels its timer; an activation afterwards is a no-op that corrects the read model', (t) => {
  const scheduled = run(initialBooking('b1'), { ...create, scheduledAt: 1_000_000 + 3_600_000 } as BookingMessage);
  const cancelled = behavior.handle(scheduled, { type: 'cancel', by: rider }, ctx());
  t.is(cancelled.state.status, 'cancelled');
  t.deepEqual(timersCancelled(cancelled.effects), ['activate'], 'the activation timer is cancelled with the booking');
  const swept = behavior.handle(cancelled.state, { type: 'activate' }, ctx());
  t.is(swept.state, cancelled.state, 'a cancelled booking is never activated');
  t.deepEqual(swept.events, []);
  t.is(swept.rejection, undefined);
  const published = swept.effects.flatMap((e) => (e.type === 'publish' ? [e.event as { type: string; booking: { status: string } }] : []));
  t.deepEqual(published.map((e) => [e.type, e.booking.status]), [['booking.synced', 'cancelled']],
    'it answers with its current view, so a read model row that missed the cancellation is corrected');
  t.is(swept.effects.length, 1, 'and does nothing else');
  t.is(behavior.handle(initialBooking('b9'), { type: 'activate' }, ctx()).rejection?.code, 'not_found');
});

test('events replay to the same booking', (t) => {
  const msgs: BookingMessage[] = [{ ...create, scheduledAt: 2_000_000 } as BookingMessage, { type: 'activate' }, { type: 'candidates', search: 1, drivers: [] }, { type: 'search.next', search: 1 },
    { type: 'candidates', search: 2, drivers: [cand('d1', 1)] }, { type: 'offer.accepted', driverId: 'd1' }, { type: 'trip.arrived', driverId: 'd1' }];
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

test('a released booking starts its backoff over; stray or late releases change nothing', (t) => {
  let s = run(initialBooking('b1'), create);
  for (let i = 0; i < 5; i++) s = run(s, { type: 'candidates', search: s.searches, drivers: [] }, { type: 'search.next', search: s.searches });
  s = run(s, { type: 'candidates', search: s.searches, drivers: [cand('d1', 1)] }, { type: 'offer.accepted', driverId: 'd1' });
  t.is(s.status, 'accepted');
  t.is(s.searches, 6);
  const released = behavior.handle(s, { type: 'driver.released', driverId: 'd1', reason: 'driver deactivated' }, ctx()).state;
  const empty = behavior.handle(released, { type: 'candidates', search: released.searches, drivers: [] }, ctx());
  t.is(empty.state.status, 'searching', 'an empty answer waits instead of giving up');
  t.is(timersSet(empty.effects)[0]!.at - 1_000_000, DEFAULT_BOOKING.searchBackoffMs, 'from the first step of the backoff');
  t.deepEqual(behavior.handle(s, { type: 'driver.released', driverId: 'other', reason: 'x' }, ctx()).events, [], 'only the assigned driver releases');
  const arriving = run(s, { type: 'trip.arrived', driverId: 'd1' });
  t.is(behavior.handle(arriving, { type: 'driver.released', driverId: 'd1', reason: 'x' }, ctx()).state.status, 'searching', 'arriving counts as not started');
  const started = run(arriving, { type: 'trip.started', driverId: 'd1' });
  t.deepEqual(behavior.handle(started, { type: 'driver.released', driverId: 'd1', reason: 'x' }, ctx()).events, [], 'a started trip is not released');
});

test('a driver who let the offer run out is offered it once more when a search finds nobody else; a decline is final', (t) => {
  for (const lapse of [
    { type: 'offer.declined', driverId: 'only', expired: true },
    { type: 'offer.timeout', driverId: 'only' },
  ] as const) {
    let s = run(initialBooking('b1'), create, { type: 'candidates', search: 1, drivers: [cand('only', 0.3)] });
    t.is(s.offer?.driverId, 'only');
    s = run(s, lapse);
    t.is(s.status, 'searching', `${lapse.type}: back to searching`);
    // The candidates of the first search ran out: the next search is made at once, and finds the same driver alone.
    const found = behavior.handle(s, { type: 'candidates', search: s.searches, drivers: [cand('only', 0.3)] }, ctx());
    t.is(found.state.status, 'offered', `${lapse.type}: offered again`);
    t.is(found.state.offer?.driverId, 'only');
    t.true(found.effects.some((e) => e.type === 'tell' && e.to.kind === 'driver' && e.to.id === 'only'));
    // Once: after a second lapse the driver is not offered a third time.
    s = run(found.state, { ...lapse });
    const third = behavior.handle(s, { type: 'candidates', search: s.searches, drivers: [cand('only', 0.3)] }, ctx());
    t.is(third.state.status, 'searching', `${lapse.type}: not a third time`);
    t.is(third.state.tried.filter((id) => id === 'only').length, 2);
  }
  // A driver who declined is not asked again.
  let s = run(initialBooking('b1'), create, { type: 'candidates', search: 1, drivers: [cand('no', 0.3)] },
    { type: 'offer.declined', driverId: 'no' });
  const after = behavior.handle(s, { type: 'candidates', search: s.searches, drivers: [cand('no', 0.3)] }, ctx());
  t.is(after.state.status, 'searching', 'a decline is final');
  // Someone new comes first: the second chance is only for when nobody else is left.
  s = run(initialBooking('b1'), create, { type: 'candidates', search: 1, drivers: [cand('slow', 0.1)] }, { type: 'offer.timeout', driverId: 'slow' });
  const fresh = behavior.handle(s, { type: 'candidates', search: s.searches, drivers: [cand('slow', 0.1), cand('new', 2)] }, ctx());
  t.is(fresh.state.offer?.driverId, 'new', 'an untried driver before a second chance, even farther away');
});

test('the drivers who let an offer lapse are rebuilt from the journal', (t) => {
  const out = behavior.handle(initialBooking('b1'), create, ctx());
  let s = out.state;
  const events = [...out.events];
  for (const m of [
    { type: 'candidates', search: 1, drivers: [cand('a', 0.2), cand('b', 0.4)] },
    { type: 'offer.timeout', driverId: 'a' },
    { type: 'offer.declined', driverId: 'b' },
  ] as BookingMessage[]) {
    const step = behavior.handle(s, m, ctx());
    events.push(...step.events);
    s = step.state;
  }
  t.deepEqual(s.lapsed, ['a']);
  t.deepEqual(events.reduce(behavior.apply, initialBooking('b1')).lapsed, ['a']);
});

// Batched mode (DISPATCH_MODE=batched): a search is a join of the pickup's area.
const batchedBehavior = makeBookingBehavior({ ...DEFAULT_BOOKING, dispatchMode: 'batched', batchMs: 2_000, searchRetryMs: 5_000 });
const joins = (effects: readonly Effect[]) => effects.flatMap((e) => (e.type === 'tell' && e.to.kind === 'area' ? [e] : []));

test('batched: a search is a soft join of the pickup\'s area, with what the booking tried, and no request to nearest', (t) => {
  const out = batchedBehavior.handle(initialBooking('b1'), create, ctx());
  const [j] = joins(out.effects);
  t.deepEqual(j?.to, { kind: 'area', id: areaOf(create.type === 'create' ? create.pickupCell : '') });
  t.is(j?.durable, false);
  t.deepEqual(j?.message, {
    type: 'join', bookingId: 'b1', search: 1, point: { lat: 52.52, lng: 13.4 }, radiusKm: 3, k: 10, vehicleType: 'economy', tried: [],
    // A batch may search it wider no sooner than a greedy search would have widened: 1 s, then 2 s more.
    wider: [{ radiusKm: 6, from: 1_001_000 }, { radiusKm: 12, from: 1_003_000 }],
  });
  t.deepEqual(out.effects.filter((e) => e.type === 'request'), []);
  t.deepEqual(timersSet(out.effects).map((e) => [e.name, e.at - 1_000_000]), [['search', 5_000], ['deadline', DEFAULT_BOOKING.deadlineMs]]);
});

test('batched: the retry re-sends the same join (same search, same radius), journals nothing, and arms itself again', (t) => {
  const s = batchedBehavior.handle(initialBooking('b1'), create, ctx()).state;
  const first = joins(batchedBehavior.handle(initialBooking('b1'), create, ctx()).effects)[0]!;
  const retry = batchedBehavior.handle(s, { type: 'search.retry', search: 1 }, ctx(1_005_000));
  t.deepEqual(retry.events, []);
  t.deepEqual(joins(retry.effects).map((e) => e.message), [first.message]);
  t.deepEqual(timersSet(retry.effects).map((e) => [e.name, e.at, e.message]), [['search', 1_010_000, { type: 'search.retry', search: 1 }]]);
  t.deepEqual(batchedBehavior.handle(s, { type: 'search.retry', search: 0 }, ctx()).effects, [], 'a stale retry is ignored');
});

test('batched: the one driver of its batch is offered; a decline, timeout or refusal, however late, joins the next batch at the same radius', (t) => {
  const s = batchedBehavior.handle(initialBooking('b1'), create, ctx()).state;
  const offered = batchedBehavior.handle(s, { type: 'candidates', search: 1, drivers: [cand('d1', 0.4)] }, ctx(1_002_000));
  t.is(offered.state.offer?.driverId, 'd1');
  for (const failed of [
    { type: 'offer.declined', driverId: 'd1' }, { type: 'offer.timeout', driverId: 'd1' }, { type: 'offer.refused', driverId: 'd1', reason: 'busy' },
  ] as const) {
    const out = batchedBehavior.handle(offered.state, failed, ctx(1_030_000));
    t.is(out.state.status, 'searching', failed.type);
    t.is(out.state.searches, 2);
    const [j] = joins(out.effects);
    t.like(j?.message, { type: 'join', search: 2, radiusKm: 3, tried: ['d1'] }, `${failed.type}: the next batch, same radius`);
  }
});

test('batched: a batch with nobody for it joins the next at once; the radius widens only after backoff and a window at it', (t) => {
  let s = batchedBehavior.handle(initialBooking('b1'), create, ctx()).state;
  let now = 1_000_000;
  const radii: [number, number][] = [];
  while (now < 1_000_000 + 20_000) {
    now += 2_100; // an empty answer every window
    const out = batchedBehavior.handle(s, { type: 'candidates', search: s.searches, drivers: [] }, ctx(now));
    t.is(joins(out.effects).length, 1, 'the next batch at once, no backoff timer');
    t.false(timersSet(out.effects).some((e) => (e.message as { type: string }).type === 'search.next'));
    s = out.state;
    radii.push([now - 1_000_000, s.radiusKm]);
  }
  // At 3 km: widened once 2 s (window) + 1 s (first backoff) passed; at 6 km after 2 s + 2 s more.
  t.deepEqual(radii.slice(0, 5), [[2_100, 3], [4_200, 6], [6_300, 6], [8_400, 12], [10_500, 12]]);
  const late = batchedBehavior.handle(s, { type: 'candidates', search: s.searches, drivers: [] }, ctx(s.deadlineAt));
  t.is(late.state.status, 'no_driver', 'the deadline still ends it');
});

test('batched: a join at a wider radius counts its wider radii from when it first searched that one; the widest has none', (t) => {
  let s = batchedBehavior.handle(initialBooking('b1'), create, ctx()).state;
  // Empty answers until it widens to 6 km (at 4.2 s, see above), then one more at 6 km.
  for (const now of [1_002_100, 1_004_200]) s = batchedBehavior.handle(s, { type: 'candidates', search: s.searches, drivers: [] }, ctx(now)).state;
  t.is(s.radiusKm, 6);
  const again = batchedBehavior.handle(s, { type: 'candidates', search: s.searches, drivers: [] }, ctx(1_006_300));
  t.like(joins(again.effects)[0]?.message, { radiusKm: 6, wider: [{ radiusKm: 12, from: 1_004_200 + 2_000 }] });
  let widest = again.state;
  for (const now of [1_008_400, 1_010_500]) widest = batchedBehavior.handle(widest, { type: 'candidates', search: widest.searches, drivers: [] }, ctx(now)).state;
  t.is(widest.radiusKm, 12);
  const last = batchedBehavior.handle(widest, { type: 'candidates', search: widest.searches, drivers: [] }, ctx(1_012_600));
  t.like(joins(last.effects)[0]?.message, { radiusKm: 12, wider: [] });
});

test('batched: a scheduled booking activates into a batch like any other', (t) => {
  const scheduled = batchedBehavior.handle(initialBooking('b1'), { ...create, scheduledAt: 1_000_000 + 3_600_000 } as BookingMessage, ctx()).state;
  t.is(scheduled.status, 'scheduled');
  const active = batchedBehavior.handle(scheduled, { type: 'activate' }, ctx(1_000_000 + 3_000_000));
  t.is(active.state.status, 'searching');
  t.like(joins(active.effects)[0]?.message, { type: 'join', bookingId: 'b1', search: 1, radiusKm: 3 });
});
