import test from 'ava';
import { latLngToCell } from 'h3-js';
import type { Effect, HandleContext } from '../../actors/behavior.ts';
import { DEFAULT_CELL, makeCellBehavior, type CellMessage, type DriverCopy } from '../../actors/cell.ts';
import {
  DEFAULT_PRESENCE, MAX_FIX_AHEAD_MS, driverExists, driverView, initialDriver, makeDriverBehavior, onlineRefusal, type DriverMessage, type DriverState,
} from '../../actors/driver.ts';

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

test('a driver moving in small steps is always in the cell latLngToCell gives, and its copy follows', (t) => {
  let s = available;
  let lat = 52.52, lng = 13.4;
  for (let i = 1; i <= 2_000; i++) {
    lat += Math.sin(i / 50) * 0.0007; lng += Math.cos(i / 70) * 0.0009;
    const out = behavior.handle(s, { type: 'location', fix: { lat, lng, at: 10 + i } }, ctx());
    const cell = latLngToCell(lat, lng, 7);
    if (out.state.cell !== cell) { t.fail(`fix ${i}: ${out.state.cell} for a point in ${cell}`); return; }
    const to = out.effects.map((e) => (e.type === 'tell' ? `${(e.message as { type: string }).type}@${e.to.id}` : e.type));
    t.deepEqual(to, s.cell === cell ? [`driver.upsert@${cell}`] : [`driver.remove@${s.cell}`, `driver.upsert@${cell}`]);
    s = out.state;
  }
});

test('fixes in one cell tell it by one shared ref, and a fix changes only what a fix changes', (t) => {
  const first = behavior.handle(available, { type: 'location', fix: { lat: 52.5201, lng: 13.4001, at: 30 } }, ctx());
  const second = behavior.handle(first.state, { type: 'location', fix: { lat: 52.5202, lng: 13.4002, at: 40 } }, ctx(1_000_100));
  const to = (e: Effect | undefined) => (e?.type === 'tell' ? e.to : undefined);
  t.deepEqual(to(second.effects[0]), { kind: 'cell', id: available.cell });
  t.is(to(second.effects[0]), to(first.effects[0]), 'the same ref object: no new ref per fix');
  t.true(Object.isFrozen(to(first.effects[0])), 'shared, so nobody may change it');
  // The new state is the old one with the fix, its cell and when it was heard: nothing else moves.
  t.deepEqual(second.state, { ...first.state, fix: { lat: 52.5202, lng: 13.4002, at: 40 }, heardAt: 1_000_100 });
  t.deepEqual(Object.keys(second.state), Object.keys(first.state), 'the same fields in the same order');
});

test('a device clock ahead of ours: the copy still leaves the cell the driver left, and going offline still removes it', (t) => {
  const cellBehavior = makeCellBehavior(DEFAULT_CELL);
  const now = 1_000_000;
  // Fixes stamped 5 s ahead of the server, as a phone with a fast clock sends them.
  const first = behavior.handle(available, { type: 'location', fix: { lat: 48.85, lng: 2.35, at: now + 5_000 } }, ctx(now));
  const second = behavior.handle(first.state, { type: 'location', fix: { lat: 48.95, lng: 2.35, at: now + 5_001 } }, ctx(now + 1));
  t.not(first.state.cell, second.state.cell);
  const left = cellOf(first.state.cell!, [...first.effects, ...second.effects], now + 1);
  t.deepEqual(left.map((d) => d.driverId), [], 'the cell the driver left holds no copy');
  const off = behavior.handle(second.state, { type: 'offline' }, ctx(now + 2));
  t.deepEqual(cellOf(second.state.cell!, [...second.effects, ...off.effects], now + 2), [], 'offline: the copy is gone');

  /** The copies one cell holds after the tells among these effects reach it, in order. */
  function cellOf(id: string, effects: readonly Effect[], at: number) {
    const cellCtx = (): HandleContext => ({ self: { kind: 'cell', id }, now: at, commandId: 'c' });
    const state = effects.reduce((s, e) => e.type === 'tell' && e.to.kind === 'cell' && e.to.id === id
      ? cellBehavior.handle(s, e.message as CellMessage, cellCtx()).state : s, cellBehavior.initial(id));
    return cellBehavior.query!(state, { type: 'drivers' }, cellCtx()) as DriverCopy[];
  }
});

test('a fix stamped far ahead of our clock is believed only a little ahead: later fixes move the driver again', (t) => {
  const now = 1_000_000;
  const year = 365 * 86_400_000;
  const wild = behavior.handle(available, { type: 'location', fix: { lat: 48.85, lng: 2.35, at: now + year } }, ctx(now));
  t.is(wild.state.fix?.at, now + MAX_FIX_AHEAD_MS, 'taken, at the latest time believed');
  const copy = wild.effects.find((e) => e.type === 'tell' && (e.message as { type: string }).type === 'driver.upsert');
  t.is((copy as { message: { driver: DriverCopy } } | undefined)?.message.driver.seenAt, now + MAX_FIX_AHEAD_MS, 'and so is its cell copy');
  const soon = behavior.handle(wild.state, { type: 'location', fix: { lat: 48.95, lng: 2.35, at: now + 1_000 } }, ctx(now + 1_000));
  t.is(soon.state, wild.state, 'a fix older than the one believed is still stale');
  const later = now + MAX_FIX_AHEAD_MS + 1;
  const moved = behavior.handle(wild.state, { type: 'location', fix: { lat: 48.95, lng: 2.35, at: later } }, ctx(later));
  t.is(moved.state.fix?.lat, 48.95, 'once our clock passes it, the driver moves again');
  // A state kept from before the rule, holding a fix a year ahead, is not stuck either.
  const kept: DriverState = { ...available, fix: { lat: 48.85, lng: 2.35, at: now + year } };
  t.is(behavior.handle(kept, { type: 'location', fix: { lat: 48.95, lng: 2.35, at: now } }, ctx(now)).state.fix?.lat, 48.95);
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

// Deactivation, approval and the existence of a driver (issue 10 items 3 and 9, issue 9 item 8).

const deactivate: DriverMessage = { type: 'profile.update', profile: { active: false } };
const told = (effects: readonly Effect[]) =>
  effects.flatMap((e) => (e.type === 'tell' ? [`${(e.message as { type: string }).type}@${e.to.kind}:${e.to.id}`] : []));
const notified = (effects: readonly Effect[]) =>
  effects.flatMap((e) => (e.type === 'notify' ? [(e.message as { type: string }).type] : []));

test('deactivating an available driver takes it offline and out of its cell', (t) => {
  const out = behavior.handle(available, deactivate, ctx());
  t.is(out.rejection, undefined);
  t.is(out.state.status, 'offline');
  t.false(out.state.profile.active);
  t.deepEqual(out.events.map((e) => e.type), ['profile.set', 'went.offline']);
  t.deepEqual(told(out.effects), [`driver.remove@cell:${available.cell}`], 'the cell forgets the driver');
  t.true(notified(out.effects).includes('driver.deactivated'));
  t.is((out.reply as { active: boolean }).active, false);
  t.is(behavior.handle(out.state, { type: 'online', vehicleType: 'comfort' }, ctx()).rejection?.code, 'inactive', 'and it cannot come back online');
});

test('deactivating a driver with an open offer refuses it, so the booking offers the next candidate', (t) => {
  const offered = run(available, offer('b1'));
  const out = behavior.handle(offered, deactivate, ctx());
  t.is(out.state.status, 'offline');
  t.is(out.state.bookingId, undefined);
  t.deepEqual(out.events.map((e) => e.type), ['profile.set', 'booking.released', 'went.offline']);
  t.true(out.effects.some((e) => e.type === 'timer.cancel' && e.name === 'offer'), 'the offer timer is cancelled');
  t.deepEqual(out.effects.find((e) => e.type === 'tell' && e.to.kind === 'booking'),
    { type: 'tell', to: { kind: 'booking', id: 'b1' }, message: { type: 'offer.refused', driverId: 'd1', reason: 'driver deactivated' } });
  t.deepEqual(notified(out.effects), ['offer.expired', 'driver.deactivated'], 'the driver app drops the offer');
});

test('deactivating a driver holding an accepted booking not yet started releases the booking', (t) => {
  const assigned = run(available, offer('b1'), { type: 'offer.accept', bookingId: 'b1' });
  t.is(assigned.status, 'assigned');
  const out = behavior.handle(assigned, deactivate, ctx());
  t.is(out.state.status, 'offline');
  t.is(out.state.bookingId, undefined);
  t.is(out.state.riderId, undefined);
  t.deepEqual(out.effects.find((e) => e.type === 'tell' && e.to.kind === 'booking'),
    { type: 'tell', to: { kind: 'booking', id: 'b1' }, message: { type: 'driver.released', driverId: 'd1', reason: 'driver deactivated' } });
  t.deepEqual(notified(out.effects), ['booking.released', 'driver.deactivated']);
  t.deepEqual(out.events.reduce(behavior.apply, assigned), out.state, 'the events replay to the same state');
});

test('deactivating a driver on a trip lets the trip finish, then the driver goes offline', (t) => {
  const onTrip = run(available, offer('b1'), { type: 'offer.accept', bookingId: 'b1' }, { type: 'trip.start', bookingId: 'b1' });
  const out = behavior.handle(onTrip, deactivate, ctx());
  t.is(out.state.status, 'on_trip', 'a started trip is not taken from the rider');
  t.false(out.effects.some((e) => e.type === 'tell' && e.to.kind === 'booking'), 'the booking is not released');
  const done = behavior.handle(out.state, { type: 'trip.complete', bookingId: 'b1' }, ctx());
  t.is(done.state.status, 'offline');
  t.deepEqual(done.events.map((e) => e.type), ['trip.ended', 'went.offline']);
  t.true(told(done.effects).includes('trip.completed@booking:b1'), 'the booking still completes');
});

test('an inactive driver refuses offers at once and cannot accept', (t) => {
  const inactive = run(available, deactivate);
  const out = behavior.handle(inactive, offer('b2'), ctx());
  t.is(out.rejection?.code, 'inactive');
  t.deepEqual(out.events, []);
  t.deepEqual(out.effects, [{ type: 'tell', to: { kind: 'booking', id: 'b2' }, message: { type: 'offer.refused', driverId: 'd1', reason: 'driver is inactive' } }]);
  // Even with a stale state that still shows an offer (deactivated by older code), acceptance is refused.
  const stale: DriverState = { ...run(available, offer('b3')), profile: { active: false } };
  t.is(behavior.handle(stale, { type: 'offer.accept', bookingId: 'b3' }, ctx()).rejection?.code, 'inactive');
  t.is(behavior.handle(stale, offer('b4'), ctx()).rejection?.code, 'inactive');
  // Reactivated, the driver goes online again.
  const back = run(inactive, { type: 'profile.update', profile: { active: true } }, { type: 'online', vehicleType: 'comfort' });
  t.is(back.status, 'available');
});

test('a self-registered driver is pending until approved; approval is idempotent', (t) => {
  const pending = run(initialDriver(), { type: 'profile.set', profile: { name: 'Pat', active: true, approval: 'pending' } });
  const refused = behavior.handle(pending, { type: 'online', vehicleType: 'economy' }, ctx());
  t.is(refused.rejection?.code, 'driver_pending_approval');
  t.is(behavior.handle(pending, offer(), ctx()).rejection?.code, 'busy', 'a pending driver is never offered');
  const approved = behavior.handle(pending, { type: 'approve' }, ctx());
  t.deepEqual(approved.events, [{ type: 'approved' }]);
  t.is((approved.reply as { approval: string }).approval, 'approved');
  t.true(notified(approved.effects).includes('driver.approved'));
  const again = behavior.handle(approved.state, { type: 'approve' }, ctx());
  t.deepEqual(again.events, [], 'approving twice changes nothing');
  t.is((again.reply as { approval: string }).approval, 'approved');
  t.is(run(approved.state, { type: 'online', vehicleType: 'economy' }).status, 'available');
  t.is(behavior.handle(initialDriver(), { type: 'approve' }, ctx()).rejection?.code, 'not_found');
});

test('the admin view shows approval; drivers without one (admin-created, older) count as approved', (t) => {
  const pending = run(initialDriver(), { type: 'profile.set', profile: { name: 'Pat', active: true, approval: 'pending' } });
  t.is(driverView('d1', pending).approval, 'pending');
  t.is(driverView('d1', run(initialDriver(), { type: 'profile.set', profile: { name: 'Old', active: true } })).approval, 'approved');
});

test('profile.update refuses a driver nobody created and changes nothing; profile.set creates', (t) => {
  const out = behavior.handle(initialDriver(), { type: 'profile.update', profile: { name: 'Ghost' } }, ctx());
  t.is(out.rejection?.code, 'not_found');
  t.deepEqual(out.events, []);
  t.deepEqual(out.effects, []);
  t.false(driverExists(initialDriver()));
  t.false(driverExists(run(initialDriver(), { type: 'maintenance.set', windows: [] })), "a vehicle's maintenance push does not create a driver");
  const created = run(initialDriver(), { type: 'profile.set', profile: { name: 'Real', active: true } });
  t.true(driverExists(created));
  const renamed = behavior.handle(created, { type: 'profile.update', profile: { name: 'Renamed' } }, ctx());
  t.is(renamed.state.profile.name, 'Renamed');
  t.true(driverExists(available), 'a driver that went online (development token) exists');
  t.is(behavior.handle(available, { type: 'profile.update', profile: { phone: '+1' } }, ctx()).rejection, undefined);
  const view = behavior.query!(initialDriver(), { type: 'get' }, { self: { kind: 'driver', id: 'd1' }, now: 0 }) as { exists: boolean };
  t.false(view.exists);
  // Approval cannot be smuggled through an update.
  const pending = run(initialDriver(), { type: 'profile.set', profile: { name: 'Pat', active: true, approval: 'pending' } });
  const smuggled = behavior.handle(pending, { type: 'profile.update', profile: { approval: 'approved' } as never }, ctx());
  t.is(smuggled.state.profile.approval, 'pending');
});

// Presence: online drivers re-announce themselves to their cells (issue 11 item 6).

const presenceSet = (effects: readonly Effect[]) => effects.flatMap((e) => (e.type === 'timer.set' && e.name === 'presence' ? [e] : []));
const presenceCancelled = (effects: readonly Effect[]) => effects.some((e) => e.type === 'timer.cancel' && e.name === 'presence');
const upserts = (effects: readonly Effect[]) => effects.flatMap((e) =>
  (e.type === 'tell' && (e.message as { type: string }).type === 'driver.upsert' ? [{ cell: e.to.id, durable: e.durable, driver: (e.message as { driver: { driverId: string; lat: number; lng: number; status: string; seenAt: number } }).driver }] : []));

test('going online sets the presence timer; going offline cancels it', (t) => {
  const on = behavior.handle(initialDriver(), { type: 'online', vehicleType: 'economy' }, ctx(1_000_000));
  t.deepEqual(presenceSet(on.effects), [{ type: 'timer.set', name: 'presence', at: 1_000_000 + DEFAULT_PRESENCE.presenceMs, message: { type: 'presence' } }]);
  const again = behavior.handle(on.state, { type: 'online', vehicleType: 'economy' }, ctx());
  t.deepEqual(again.effects, [], 'online twice sets nothing more');
  const off = behavior.handle(available, { type: 'offline' }, ctx());
  t.true(presenceCancelled(off.effects), 'offline stops it');
  t.deepEqual(presenceSet(off.effects), []);
  const deactivated = behavior.handle(available, deactivate, ctx());
  t.true(presenceCancelled(deactivated.effects), 'deactivation (which takes the driver offline) stops it too');
  const onTrip = run(available, offer('b1'), { type: 'offer.accept', bookingId: 'b1' }, { type: 'trip.start', bookingId: 'b1' });
  const busy = [offer('b2'), { type: 'offer.accept', bookingId: 'b1' }, { type: 'trip.complete', bookingId: 'b1' }].map((m) => behavior.handle(onTrip, m as DriverMessage, ctx()));
  t.false(busy.some((o) => presenceCancelled(o.effects) || presenceSet(o.effects).length > 0), 'status changes while online leave it alone');
});

test('the presence timer re-announces the last position and status to the cell, and runs again', (t) => {
  const now = 1_000_000 + 60_000;
  const tick = behavior.handle(available, { type: 'presence' }, ctx(now));
  t.deepEqual(tick.events, [], 'nothing journaled but the timer');
  t.deepEqual(upserts(tick.effects), [{ cell: available.cell!, durable: false, driver: { ...upserts(tick.effects)[0]!.driver, driverId: 'd1', lat: 52.52, lng: 13.4, status: 'available', seenAt: now } }],
    'the cell hears of the driver again, as seen now');
  t.false(tick.effects.some((e) => e.type === 'tell' && (e.message as { type: string }).type === 'driver.remove'));
  t.deepEqual(presenceSet(tick.effects), [{ type: 'timer.set', name: 'presence', at: now + DEFAULT_PRESENCE.presenceMs, message: { type: 'presence' }, durable: false }],
    're-armed in memory: no journal row per period (a crash fires it at once, at its journaled due time)');
  const offered = run(available, offer('b1'));
  t.is(upserts(behavior.handle(offered, { type: 'presence' }, ctx(now)).effects)[0]?.driver.status, 'offered', 'a busy driver is announced as busy');
  const off = run(available, { type: 'offline' });
  const late = behavior.handle(off, { type: 'presence' }, ctx(now));
  t.deepEqual(late.effects, [], 'an offline driver announces nothing and lets the timer lapse');
  t.deepEqual(late.events, []);
});

test('a silent driver is no longer re-announced; its next fix brings presence back', (t) => {
  const silentFor = DEFAULT_PRESENCE.silentAfterMs + 1;
  const heard = available.heardAt!;
  const tick = behavior.handle(available, { type: 'presence' }, ctx(heard + silentFor));
  t.deepEqual(tick.effects, [], 'no announcement and no timer: it lapses');
  t.falsy(tick.state.presence);
  const fix = behavior.handle(tick.state, { type: 'location', fix: { lat: 52.521, lng: 13.401, at: 99 } }, ctx(heard + silentFor + 1_000));
  t.is(presenceSet(fix.effects).length, 1, 'the fix sets the timer again');
  t.true(fix.state.presence);
  t.is(presenceSet(behavior.handle(fix.state, { type: 'location', fix: { lat: 52.522, lng: 13.401, at: 100 } }, ctx()).effects).length, 0, 'once');
  // A driver online from before presence existed (or replayed without a snapshot) gets one at its next fix.
  const replayed = [{ type: 'went.online', vehicleType: 'economy' } as const].reduce(behavior.apply, initialDriver());
  t.is(presenceSet(behavior.handle(replayed, { type: 'location', fix: { lat: 52.52, lng: 13.4, at: 5 } }, ctx()).effects).length, 1);
  t.is(presenceSet(behavior.handle(initialDriver(), { type: 'location', fix: { lat: 52.52, lng: 13.4, at: 5 } }, ctx()).effects).length, 0, 'offline: none');
});

test('a booking\'s rating counts once, whatever command carries it, also after a replay', (t) => {
  const once = behavior.handle(available, { type: 'rated', bookingId: 'b7', stars: 5 }, ctx());
  const again = behavior.handle(once.state, { type: 'rated', bookingId: 'b7', stars: 1 }, ctx());
  t.is(again.rejection?.code, 'already_rated');
  t.is(again.state.ratingCount, 1);
  const replayed = once.events.reduce(behavior.apply, available);
  t.is(behavior.handle(replayed, { type: 'rated', bookingId: 'b7', stars: 5 }, ctx()).rejection?.code, 'already_rated');
  t.is(behavior.apply(available, { type: 'rated', stars: 3 }).ratingCount, 1, 'an event from before ratings were keyed still counts');
});

test('online: a driver with a vehicle only as checked against that vehicle; without one, only as a type an admin allowed', (t) => {
  const withVehicle = run(initialDriver(), { type: 'profile.set', profile: { name: 'V', active: true, vehicleId: 'veh_1' } });
  const unchecked = behavior.handle(withVehicle, { type: 'online', vehicleType: 'xl' }, ctx());
  t.is(unchecked.rejection?.code, 'vehicle_type_not_allowed');
  t.regex(unchecked.rejection!.message, /^vehicleType: /);
  t.is(unchecked.state.status, 'offline');
  t.is(behavior.handle(withVehicle, { type: 'online', vehicleType: 'xl', vehicleId: 'veh_2' }, ctx()).rejection?.code, 'vehicle_type_not_allowed',
    'checked against another vehicle (the driver\'s changed meanwhile)');
  const checked = behavior.handle(withVehicle, { type: 'online', vehicleType: 'comfort', vehicleId: 'veh_1' }, ctx());
  t.is(checked.state.status, 'available');
  t.is(checked.state.vehicleId, 'veh_1');

  const allowed = run(initialDriver(), { type: 'profile.set', profile: { name: 'A', active: true, vehicleTypes: ['economy', 'comfort'] } });
  const refused = behavior.handle(allowed, { type: 'online', vehicleType: 'xl' }, ctx());
  t.is(refused.rejection?.code, 'vehicle_type_not_allowed');
  t.regex(refused.rejection!.message, /^vehicleType: .*economy, comfort/);
  t.is(behavior.handle(allowed, { type: 'online', vehicleType: 'comfort' }, ctx()).state.status, 'available');
  const on = run(allowed, { type: 'online', vehicleType: 'economy' });
  t.is(behavior.handle(on, { type: 'online', vehicleType: 'xl' }, ctx()).rejection?.code, 'vehicle_type_not_allowed', 'nor by changing type online');
  t.is(onlineRefusal({ active: true }, { vehicleType: 'xl' }), undefined, 'with neither, the sender decides (http/online.ts)');
});
