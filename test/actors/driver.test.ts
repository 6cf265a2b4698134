import test from 'ava';
import { latLngToCell } from 'h3-js';
import type { HandleContext } from '../../actors/behavior.ts';
import { initialDriver, makeDriverBehavior, type DriverMessage, type DriverState } from '../../actors/driver.ts';

const behavior = makeDriverBehavior({ cellRes: 7, offerTimeoutMs: 15_000 });
const ctx = (now = 1_000_000): HandleContext => ({ self: { kind: 'driver', id: 'd1' }, now, commandId: 'c' });
const run = (s: DriverState, ...msgs: DriverMessage[]) => msgs.reduce((st, m) => behavior.handle(st, m, ctx()).state, s);
const offer = (bookingId = 'b1', expiresAt = 2_000_000): DriverMessage =>
  ({ type: 'offer', bookingId, pickup: { lat: 1, lng: 1 }, dropoff: { lat: 1.1, lng: 1 }, price: { amount: 900, currency: 'USD' }, expiresAt });

const available = run(initialDriver(), { type: 'online', vehicleType: 'comfort' }, { type: 'location', fix: { lat: 52.52, lng: 13.4, at: 10 } });

test('online -> available -> offered -> assigned -> on_trip -> available', (t) => {
  t.is(available.status, 'available');
  t.is(available.vehicleType, 'comfort');
  const offered = behavior.handle(available, offer(), ctx());
  t.is(offered.state.status, 'offered');
  t.true(offered.effects.some((e) => e.type === 'timer.set' && e.name === 'offer'), 'the offer expires by itself');
  t.true(offered.effects.some((e) => e.type === 'notify' && e.userId === 'd1'), 'the driver app hears of the offer');
  const assigned = run(offered.state, { type: 'offer.accept', bookingId: 'b1' });
  t.is(assigned.status, 'assigned');
  const onTrip = run(assigned, { type: 'trip.start', bookingId: 'b1' });
  t.is(onTrip.status, 'on_trip');
  const done = behavior.handle(onTrip, { type: 'trip.complete', bookingId: 'b1' }, ctx(5_000_000));
  t.is(done.state.status, 'available');
  t.is(done.state.lastTripEndedAt, 5_000_000);
  t.true(done.events.length > 0, 'transitions are journaled');
});

test('an offer to a busy driver is refused and the booking is told at once', (t) => {
  const busy = run(available, offer('b1'));
  const out = behavior.handle(busy, offer('b2'), ctx());
  t.is(out.state, busy);
  t.is(out.rejection?.code, 'busy');
  t.deepEqual(out.effects, [{ type: 'tell', to: { kind: 'booking', id: 'b2' }, message: { type: 'offer.refused', driverId: 'd1', reason: 'driver is offered' } }]);
  t.is(behavior.handle(initialDriver(), offer('b3'), ctx()).rejection?.code, 'busy', 'an offline driver gets no offers');
});

test('a driver in a maintenance window gets no offers', (t) => {
  const inShop = run(available, { type: 'maintenance.set', windows: [{ from: 0, to: 9_999_999 }] });
  t.is(behavior.handle(inShop, offer(), ctx()).rejection?.message, 'vehicle in maintenance');
});

test('a stale fix is ignored; a newer one moves the driver between cells', (t) => {
  const stale = behavior.handle(available, { type: 'location', fix: { lat: 48.85, lng: 2.35, at: 5 } }, ctx());
  t.is(stale.state, available);
  t.deepEqual(stale.effects, []);
  const moved = behavior.handle(available, { type: 'location', fix: { lat: 48.85, lng: 2.35, at: 20 } }, ctx());
  t.is(moved.state.cell, latLngToCell(48.85, 2.35, 7));
  t.deepEqual(moved.events, [], 'fixes are not journaled');
  const kinds = moved.effects.map((e) => e.type === 'tell' ? `${(e.message as { type: string }).type}@${e.to.id}` : e.type);
  t.deepEqual(kinds, [`driver.remove@${available.cell}`, `driver.upsert@${moved.state.cell}`]);
  const same = behavior.handle(available, { type: 'location', fix: { lat: 52.5201, lng: 13.4001, at: 30 } }, ctx());
  t.deepEqual(same.effects.map((e) => e.type === 'tell' ? (e.message as { type: string }).type : e.type), ['driver.upsert'], 'same cell: the copy is updated');
  const batch = behavior.handle(available, { type: 'location.batch', fixes: [{ lat: 1, lng: 1, at: 40 }, { lat: 2, lng: 2, at: 50 }, { lat: 3, lng: 3, at: 45 }] }, ctx());
  t.is(batch.state.fix?.at, 50, 'a batch keeps its newest fix');
});

test('going offline is refused during a trip and allowed otherwise', (t) => {
  const assigned = run(available, offer(), { type: 'offer.accept', bookingId: 'b1' });
  t.is(behavior.handle(assigned, { type: 'offline' }, ctx()).rejection?.code, 'on_trip');
  const onTrip = run(assigned, { type: 'trip.start', bookingId: 'b1' });
  t.is(behavior.handle(onTrip, { type: 'offline' }, ctx()).rejection?.code, 'on_trip');
  const off = behavior.handle(available, { type: 'offline' }, ctx());
  t.is(off.state.status, 'offline');
  t.true(off.effects.some((e) => e.type === 'tell' && (e.message as { type: string }).type === 'driver.remove'), 'the cell forgets the driver');
});

test('accepting, declining and trip steps need the matching booking', (t) => {
  const offered = run(available, offer('b1'));
  t.is(behavior.handle(offered, { type: 'offer.accept', bookingId: 'other' }, ctx()).rejection?.code, 'no_such_offer');
  t.is(behavior.handle(available, { type: 'trip.start', bookingId: 'b1' }, ctx()).rejection?.code, 'not_assigned');
  t.is(behavior.handle(offered, { type: 'trip.complete', bookingId: 'b1' }, ctx()).rejection?.code, 'not_on_trip');
  const declined = behavior.handle(offered, { type: 'offer.decline', bookingId: 'b1' }, ctx());
  t.is(declined.state.status, 'available');
  t.true(declined.effects.some((e) => e.type === 'tell' && e.to.kind === 'booking'));
  t.is(run(offered, { type: 'offer.expire', bookingId: 'b1' }).status, 'available');
  t.is(run(offered, { type: 'offer.withdrawn', bookingId: 'b1' }).status, 'available');
  t.is(run(offered, { type: 'offer.withdrawn', bookingId: 'b9' }).status, 'offered', 'a withdrawal for another booking changes nothing');
});

test('ratings and acceptance rate feed the dispatch score; bad stars are refused', (t) => {
  let s = run(available, offer('b1'), { type: 'offer.decline', bookingId: 'b1' }, offer('b2'), { type: 'offer.accept', bookingId: 'b2' });
  s = run(s, { type: 'rated', bookingId: 'b2', stars: 3 }, { type: 'rated', bookingId: 'b3', stars: 5 });
  const view = behavior.query!(s, { type: 'get' }, { self: { kind: 'driver', id: 'd1' }, now: 0 }) as { rating: number; acceptanceRate: number };
  t.is(view.rating, 4);
  t.is(view.acceptanceRate, 0.5);
  t.is(behavior.handle(s, { type: 'rated', bookingId: 'b4', stars: 9 }, ctx()).rejection?.code, 'invalid_rating');
});

test('recovery from events rebuilds the same status', (t) => {
  const steps: DriverMessage[] = [{ type: 'online', vehicleType: 'xl' }, offer('b1'), { type: 'offer.accept', bookingId: 'b1' }, { type: 'trip.start', bookingId: 'b1' }];
  let live = initialDriver();
  const events = [];
  for (const m of steps) { const out = behavior.handle(live, m, ctx()); live = out.state; events.push(...out.events); }
  const replayed = events.reduce(behavior.apply, initialDriver());
  t.is(replayed.status, live.status);
  t.is(replayed.bookingId, live.bookingId);
  t.is(replayed.vehicleType, 'xl');
});
