// Dispatch flows through the real runtime (in-process log, in-memory journal):
// drivers, cells and bookings as actors, the nearest search as a node service. Each
// flow runs in both dispatch modes: greedy (a booking offers its own best candidate)
// and batched (bookings join their area's window and are matched at once).

import test from 'ava';
import type { Service } from '../actors/behavior.ts';
import { makeAreaBehavior, DEFAULT_AREA, EVERY_WINDOW_WAITS, type AreaSettings } from '../actors/area.ts';
import { makeBookingBehavior, DEFAULT_BOOKING, type BookingSettings, type BookingState, type DispatchMode } from '../actors/booking.ts';
import { DEFAULT_CELL, makeCellBehavior } from '../actors/cell.ts';
import { makeDriverBehavior } from '../actors/driver.ts';
import { makeVehicleBehavior } from '../actors/vehicle.ts';
import { batchService, nearestService } from '../actors/index.ts';
import { distanceKm } from '../actors/geo.ts';
import { createBooking } from './fixtures/booking-request.ts';
import { startRig, type Rig } from './helpers/rig.ts';
import { eventually } from './helpers/node-process.ts';

const CELL_RES = 7;
const CENTER = { lat: 52.52, lng: 13.405 };

function seeded(seed: number) {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

const MODES: readonly DispatchMode[] = ['greedy', 'batched'];
/** Short windows keep the batched runs quick; the retry must outlast a window and its matching. */
const BATCH_MS = 300;

/** The booking and area behaviours and the services of a dispatch mode (as actors/index.ts wires them). */
// Batched tests wait every window (DISPATCH_BATCH_CONTENTION=0) unless they pass the default's contention.
function dispatchParts(
  mode: DispatchMode, booking: Partial<BookingSettings>, wrap: (name: string, s: Service) => Service = (_n, s) => s,
  contention: AreaSettings['contention'] = EVERY_WINDOW_WAITS,
) {
  const batchMs = booking.batchMs ?? BATCH_MS;
  const settings: BookingSettings = { ...DEFAULT_BOOKING, ...booking, dispatchMode: mode, batchMs };
  const retry = mode === 'batched' ? { searchRetryMs: Math.max(settings.searchRetryMs, batchMs + 1_500) } : {};
  return {
    behaviors: [makeBookingBehavior({ ...settings, ...retry }), makeAreaBehavior({ ...DEFAULT_AREA, batchMs, contention })],
    services: { nearest: wrap('nearest', nearestService(CELL_RES)), batch: wrap('batch', batchService(CELL_RES)) },
  };
}

async function dispatchRig(
  mode: DispatchMode, overrides: Partial<BookingSettings> = {}, contention?: AreaSettings['contention'],
): Promise<Rig> {
  const parts = dispatchParts(mode, {
    offerTimeoutMs: 1_500, deadlineMs: 5_000, searchRetryMs: 500, searchBackoffMs: 200, searchBackoffMaxMs: 1_000, ...overrides,
  }, undefined, contention);
  return startRig({
    behaviors: [makeDriverBehavior({ cellRes: CELL_RES, offerTimeoutMs: 2_000 }), makeCellBehavior(DEFAULT_CELL), ...parts.behaviors, makeVehicleBehavior()],
    services: parts.services,
    // 500 requests at once on a loaded 2-core machine outlasted the 5 s default: how long a
    // caller waits is not what these tests are about.
    askTimeoutMs: 60_000,
  });
}

const driver = (id: string) => ({ kind: 'driver', id });
const booking = (id: string) => ({ kind: 'booking', id });

async function online(r: Rig, id: string, at: { lat: number; lng: number }, vehicleType = 'economy') {
  await r.region.request(driver(id), { type: 'online', vehicleType });
  await r.region.request(driver(id), { type: 'location', fix: { ...at, at: Date.now() } });
}

function createMessage(riderId: string, pickup = CENTER, scheduledAt?: number) {
  return createBooking({ riderId, pickup, scheduledAt, cellRes: CELL_RES });
}

/** Driver apps: accept every offer after a short random think time. */
function acceptingApps(r: Rig, rand: () => number, skip: (driverId: string) => boolean = () => false) {
  return r.notifier.subscribe((userId, message) => {
    const m = message as { type: string; bookingId?: string };
    if (m.type !== 'offer' || skip(userId)) return;
    setTimeout(() => r.region.tell(driver(userId), { type: 'offer.accept', bookingId: m.bookingId }).catch(() => undefined), Math.floor(rand() * 20));
  });
}

for (const mode of MODES) {
  test(`${mode}: no double assignment: 500 bookings race for 50 drivers`, async (t) => {
    // Deadlines far beyond the machine's speed: the test is about who gets which
    // booking, and a slow machine must not turn every search into no_driver. Bookings
    // search until their deadline now, so the 450 without a driver end only then.
    const r = await dispatchRig(mode, { offerTimeoutMs: 30_000, deadlineMs: 30_000 });
    const rand = seeded(7);
    const drivers = Array.from({ length: 50 }, (_, i) => `race-d${i}`);
    await Promise.all(drivers.map((id) => online(r, id, { lat: CENTER.lat + (rand() - 0.5) * 0.02, lng: CENTER.lng + (rand() - 0.5) * 0.03 })));
    const acceptedBy = new Map<string, string[]>();
    r.region.onDomainEvent((_topic, event) => {
      const e = event as { type: string; booking: { id: string; driverId?: string } };
      if (e.type === 'booking.accepted') acceptedBy.set(e.booking.driverId!, [...(acceptedBy.get(e.booking.driverId!) ?? []), e.booking.id]);
    });
    const stop = acceptingApps(r, rand);
    const bookings = Array.from({ length: 500 }, (_, i) => `race-b${i}`);
    await Promise.all(bookings.map((id, i) => r.region.request(booking(id), createMessage(`rider-${i}`, {
      lat: CENTER.lat + (rand() - 0.5) * 0.01, lng: CENTER.lng + (rand() - 0.5) * 0.01,
    }))));
    const final = async () => Promise.all(bookings.map((id) =>
      r.region.ask<BookingState & { status: string; driverId?: string }>(booking(id), { type: 'get' })));
    t.true(await eventually(async () => (await final()).every((b) => b.status === 'accepted' || b.status === 'no_driver'), 150_000, 250),
      'every booking ends accepted or no_driver');
    stop();
    const views = await final();
    const accepted = views.filter((b) => b.status === 'accepted');
    const noDriver = views.filter((b) => b.status === 'no_driver');
    t.is(accepted.length + noDriver.length, 500, 'counts add up');
    t.is(new Set(accepted.map((b) => b.driverId)).size, accepted.length, 'no driver holds two accepted bookings');
    t.true(accepted.length > 0 && accepted.length <= 50, `${accepted.length} accepted`);
    for (const [driverId, list] of acceptedBy) t.is(list.length, 1, `${driverId} was accepted once, not ${list.join(', ')}`);
    for (const b of accepted) {
      const d = await r.region.ask<{ status: string; bookingId?: string }>(driver(b.driverId!), { type: 'get' });
      t.is(d.status, 'assigned');
      t.is(d.bookingId, b.id, `${b.driverId} holds the booking that names it`);
    }
    // How many drivers win a booking depends on how fast the machine is (a booking gives
    // up at its deadline); that none is left holding an offer nobody answers does not.
    const holders = new Set(accepted.map((b) => b.driverId));
    for (const id of drivers.filter((d) => !holders.has(d))) {
      const d = await r.region.ask<{ status: string }>(driver(id), { type: 'get' });
      t.is(d.status, 'available', `${id} without a booking is available again`);
    }
    await r.stop();
  });

  test(`${mode}: a whole ride: offer, accept, arrive, start, complete, rate`, async (t) => {
    const r = await dispatchRig(mode);
    await online(r, 'ride-near', { lat: CENTER.lat + 0.002, lng: CENTER.lng });
    await online(r, 'ride-far', { lat: CENTER.lat + 0.015, lng: CENTER.lng });
    const offers: string[] = [];
    const riderSaw: string[] = [];
    const driverSaw: string[] = [];
    r.notifier.subscribe((userId, message) => {
      const m = message as { type: string; booking?: { status: string } };
      if (m.type === 'offer') offers.push(userId);
      if (userId === 'rider-ride' && m.type === 'booking.updated') riderSaw.push(m.booking!.status);
      if (userId === 'ride-near' && m.type === 'booking.updated') driverSaw.push(m.booking!.status);
    });
    const created = await r.region.request(booking('ride-1'), createMessage('rider-ride'));
    t.is((created.reply as { status: string }).status, 'searching');
    t.true(await eventually(async () => offers.length > 0));
    t.is(offers[0], 'ride-near', 'the nearer driver is offered first');
    t.is((await r.region.request(driver('ride-near'), { type: 'offer.accept', bookingId: 'ride-1' })).status, 'applied');
    t.true(await eventually(async () => (await r.region.ask<{ status: string }>(booking('ride-1'), { type: 'get' })).status === 'accepted'));
    for (const step of ['trip.arrived', 'trip.start', 'trip.complete']) {
      const out = await r.region.request(driver('ride-near'), { type: step, bookingId: 'ride-1' });
      t.is(out.status, 'applied', step);
      await new Promise((res) => setTimeout(res, 30));
    }
    t.true(await eventually(async () => (await r.region.ask<{ status: string }>(booking('ride-1'), { type: 'get' })).status === 'completed'));
    const view = await r.region.ask<{ timeline: { status: string }[]; driverId: string }>(booking('ride-1'), { type: 'get' });
    t.deepEqual(view.timeline.map((s) => s.status), ['searching', 'offered', 'accepted', 'arriving', 'in_progress', 'completed']);
    t.deepEqual(riderSaw, ['searching', 'offered', 'accepted', 'arriving', 'in_progress', 'completed']);
    t.deepEqual(driverSaw, ['accepted', 'arriving', 'in_progress', 'completed'], 'the driver is told of every transition of its booking');
    const rate = await r.region.request(booking('ride-1'), { type: 'rate', by: { role: 'rider', userId: 'rider-ride' }, stars: 4 });
    t.is(rate.status, 'applied');
    const again = await r.region.request(booking('ride-1'), { type: 'rate', by: { role: 'rider', userId: 'rider-ride' }, stars: 5 });
    t.is(again.rejection?.code, 'conflict', 'a booking is rated once');
    t.true(await eventually(async () => (await r.region.ask<{ rating: number }>(driver('ride-near'), { type: 'get' })).rating === 4));
    const d = await r.region.ask<{ status: string; lastTripEndedAt: number }>(driver('ride-near'), { type: 'get' });
    t.is(d.status, 'available');
    t.true(d.lastTripEndedAt > 0);
    const cancel = await r.region.request(booking('ride-1'), { type: 'cancel', by: { role: 'rider', userId: 'rider-ride' } });
    t.is(cancel.rejection?.code, 'conflict', 'a completed booking cannot be cancelled');
    await r.stop();
  });

  test(`${mode}: an offer that times out goes to the next candidate, and the first driver is released`, async (t) => {
    const r = await dispatchRig(mode, { offerTimeoutMs: 300 });
    await online(r, 'slow', { lat: CENTER.lat + 0.001, lng: CENTER.lng });
    await online(r, 'quick', { lat: CENTER.lat + 0.01, lng: CENTER.lng });
    const offers: string[] = [];
    r.notifier.subscribe((userId, message) => {
      const m = message as { type: string; bookingId?: string };
      if (m.type !== 'offer') return;
      offers.push(userId);
      if (userId === 'quick') r.region.tell(driver('quick'), { type: 'offer.accept', bookingId: m.bookingId }).catch(() => undefined);
    });
    await r.region.request(booking('to-1'), createMessage('rider-to'));
    t.true(await eventually(async () => (await r.region.ask<{ status: string }>(booking('to-1'), { type: 'get' })).status === 'accepted'));
    t.deepEqual(offers, ['slow', 'quick']);
    const view = await r.region.ask<{ driverId: string }>(booking('to-1'), { type: 'get' });
    t.is(view.driverId, 'quick');
    t.true(await eventually(async () => (await r.region.ask<{ status: string }>(driver('slow'), { type: 'get' })).status === 'available'),
      'the slow driver is free again');
    const late = await r.region.request(driver('slow'), { type: 'offer.accept', bookingId: 'to-1' });
    t.is(late.rejection?.code, 'no_such_offer', 'a late acceptance is refused');
    await r.stop();
  });

  test(`${mode}: a node restart in the middle of an offer still ends in a valid state`, async (t) => {
    const first = await dispatchRig(mode, { offerTimeoutMs: 400 });
    await online(first, 'mid-1', { lat: CENTER.lat + 0.001, lng: CENTER.lng });
    let offered = false;
    first.notifier.subscribe((_u, m) => { if ((m as { type: string }).type === 'offer') offered = true; });
    await first.region.request(booking('mid-b'), createMessage('rider-mid'));
    t.true(await eventually(async () => offered));
    await first.stop(); // the offer is open; its timers are journaled with the booking and the driver
    const parts = dispatchParts(mode, { offerTimeoutMs: 400, deadlineMs: 1_500, searchRetryMs: 300, searchBackoffMs: 200, searchBackoffMaxMs: 400 });
    const second = await startRig({
      journal: first.journal, reminders: first.reminders,
      behaviors: [makeDriverBehavior({ cellRes: CELL_RES, offerTimeoutMs: 400 }), makeCellBehavior(DEFAULT_CELL), ...parts.behaviors],
      services: parts.services,
    });
    const settled = async () => ['no_driver', 'accepted'].includes((await second.region.ask<{ status: string }>(booking('mid-b'), { type: 'get' })).status);
    t.true(await eventually(settled, 60_000),
      'the timers fired after the restart and the booking reached a final state');
    const d = await second.region.ask<{ status: string }>(driver('mid-1'), { type: 'get' });
    t.is(d.status, 'available', 'the driver is not left holding an offer');
    await second.stop();
  });

  test(`${mode}: a scheduled booking waits, activates once, and dispatches`, async (t) => {
    const r = await dispatchRig(mode);
    await online(r, 'sch-d', { lat: CENTER.lat + 0.001, lng: CENTER.lng });
    const stop = acceptingApps(r, seeded(1));
    const created = await r.region.request(booking('sch-1'), createMessage('rider-sch', CENTER, Date.now() + 5 * 60_000));
    t.is((created.reply as { status: string }).status, 'scheduled');
    await r.region.request(booking('sch-1'), { type: 'activate' });
    await r.region.request(booking('sch-1'), { type: 'activate' });
    t.true(await eventually(async () => (await r.region.ask<{ status: string }>(booking('sch-1'), { type: 'get' })).status === 'accepted'));
    const view = await r.region.ask<{ timeline: { status: string }[] }>(booking('sch-1'), { type: 'get' });
    t.deepEqual(view.timeline.map((s) => s.status), ['scheduled', 'searching', 'offered', 'accepted'], 'activation twice dispatched once');
    stop();
    await r.stop();
  });

  test(`${mode}: a driver whose vehicle is in a maintenance window is never offered; an inactive driver cannot go online`, async (t) => {
    const r = await dispatchRig(mode, { deadlineMs: 1_200 });
    const vehicle = { kind: 'vehicle', id: 'v-shop' };
    t.is((await r.region.request(vehicle, { type: 'create', plate: 'B-XY 1', vehicleType: 'economy', capacity: 4, driverId: 'shop-d' })).status, 'applied');
    const added = await r.region.request(vehicle, {
      type: 'maintenance.add', id: 'm1', from: Date.now() - 1_000, to: Date.now() + 3_600_000, reason: 'brakes',
    });
    t.is(added.status, 'applied');
    await online(r, 'shop-d', { lat: CENTER.lat + 0.001, lng: CENTER.lng });
    const offers: string[] = [];
    r.notifier.subscribe((userId, m) => { if ((m as { type: string }).type === 'offer') offers.push(userId); });
    await r.region.request(booking('shop-b1'), createMessage('rider-shop'));
    t.true(await eventually(async () => (await r.region.ask<{ status: string }>(booking('shop-b1'), { type: 'get' })).status === 'no_driver', 60_000));
    t.deepEqual(offers, [], 'the driver in maintenance was never offered');
    const bad = await r.region.request(vehicle, { type: 'maintenance.add', id: 'm2', from: 10, to: 5, reason: 'x' });
    t.is(bad.rejection?.code, 'invalid_window');
    await r.region.request(vehicle, { type: 'maintenance.remove', id: 'm1' });
    // The vehicle tells its driver through the log: the fix that refreshes the cell's copy
    // must come after the driver heard (on a loaded machine, later than the booking's 1.2 s search).
    t.true(await eventually(async () => (await r.region.ask<{ maintenance: unknown[] }>(driver('shop-d'), { type: 'get' })).maintenance.length === 0));
    await r.region.request(driver('shop-d'), { type: 'location', fix: { lat: CENTER.lat + 0.001, lng: CENTER.lng, at: Date.now() } });
    await r.region.request(booking('shop-b2'), createMessage('rider-shop'));
    t.true(await eventually(async () => offers.includes('shop-d')), 'out of maintenance, the driver is offered again');

    await r.region.request(driver('gone-d'), { type: 'profile.set', profile: { name: 'Gone', active: false } });
    const refused = await r.region.request(driver('gone-d'), { type: 'online', vehicleType: 'economy' });
    t.is(refused.rejection?.code, 'inactive');
    await r.stop();
  });

  test(`${mode}: a booking made before any driver is free keeps searching and is offered to one who comes online before the deadline`, async (t) => {
    let searched = 0;
    // Greedy counts its searches, batched its windows: each is a search that found nobody.
    const counted = (name: string, service: Service): Service => (payload, ports) => {
      if (name === (mode === 'greedy' ? 'nearest' : 'batch')) searched++;
      return service(payload, ports);
    };
    const parts = dispatchParts(mode, { deadlineMs: 60_000, searchBackoffMs: 200, searchBackoffMaxMs: 800 }, counted);
    const r = await startRig({
      behaviors: [makeDriverBehavior({ cellRes: CELL_RES, offerTimeoutMs: 2_000 }), makeCellBehavior(DEFAULT_CELL), ...parts.behaviors],
      services: parts.services,
    });
    const offers: string[] = [];
    r.notifier.subscribe((userId, m) => { if ((m as { type: string }).type === 'offer') offers.push(userId); });
    await r.region.request(booking('late-b'), createMessage('rider-late'));
    t.true(await eventually(async () => searched >= 4, 30_000), 'empty searches are made again, with backoff');
    t.is((await r.region.ask<{ status: string }>(booking('late-b'), { type: 'get' })).status, 'searching', 'not no_driver before the deadline');
    await online(r, 'late-d', { lat: CENTER.lat + 0.002, lng: CENTER.lng });
    t.true(await eventually(async () => offers.includes('late-d'), 30_000), 'the driver who came online is offered');
    await r.stop();
  });
}

/** A point `km` east of CENTER (a block is about 0.1 km). */
const east = (km: number) => ({ lat: CENTER.lat, lng: CENTER.lng + km / (111.32 * Math.cos(CENTER.lat * Math.PI / 180)) });

test('batched beats greedy on the classic case: two riders a block apart, two drivers, two short pickups instead of one long', async (t) => {
  // Rider A at 0, rider B 150 m east; driver X between them (70 m east of A), driver Y 100 m west of A.
  // Greedy: A takes its nearest, X; B is left with Y, 250 m away: 320 m of pickups. Batched: A-Y and B-X, 180 m.
  const riders = { A: east(0), B: east(0.15) };
  const drivers = { X: east(0.07), Y: east(-0.1) };
  const pickups: Record<string, number> = {};
  for (const mode of MODES) {
    // A window long enough that B, booked right after A, meets A in it however slow the machine.
    const r = await dispatchRig(mode, { batchMs: 1_500, deadlineMs: 20_000, offerTimeoutMs: 10_000 });
    for (const [id, at] of Object.entries(drivers)) await online(r, `${mode}-${id}`, at);
    const stop = acceptingApps(r, seeded(2));
    const offered: string[] = [];
    r.notifier.subscribe((userId, m) => { if ((m as { type: string }).type === 'offer') offered.push(userId); });
    await r.region.request(booking(`${mode}-A`), createMessage('rider-A', riders.A));
    // A searches first: greedy's search is over once A is offered (else both would race for X and either could win it).
    if (mode === 'greedy') t.true(await eventually(async () => offered.length > 0, 30_000));
    await r.region.request(booking(`${mode}-B`), createMessage('rider-B', riders.B));
    const view = (id: string) => r.region.ask<{ status: string; driverId?: string }>(booking(`${mode}-${id}`), { type: 'get' });
    t.true(await eventually(async () => (await view('A')).status === 'accepted' && (await view('B')).status === 'accepted', 60_000), mode);
    const got = { A: (await view('A')).driverId, B: (await view('B')).driverId };
    t.deepEqual(got, mode === 'greedy' ? { A: `${mode}-X`, B: `${mode}-Y` } : { A: `${mode}-Y`, B: `${mode}-X` }, mode);
    pickups[mode] = (['A', 'B'] as const).reduce((sum, id) => sum + distanceKm(riders[id], drivers[got[id]!.slice(mode.length + 1) as 'X' | 'Y']), 0);
    stop();
    await r.stop();
  }
  t.log(`total pickup distance: greedy ${pickups.greedy!.toFixed(3)} km, batched ${pickups.batched!.toFixed(3)} km`);
  t.true(pickups.batched! < pickups.greedy! * 0.7, 'batched pickups are well under greedy\'s');
});

test('batched with the default contention: a quiet area offers a lone booking at once, not after its window', async (t) => {
  // A window of a minute: an offer before it could close shows the area did not wait it.
  const windowMs = 60_000;
  const r = await dispatchRig('batched', { batchMs: windowMs, deadlineMs: 240_000, offerTimeoutMs: 30_000 }, DEFAULT_AREA.contention);
  await online(r, 'quiet-d1', east(0.05));
  const offered: string[] = [];
  r.notifier.subscribe((userId, m) => { if ((m as { type: string }).type === 'offer') offered.push(userId); });
  const booked = Date.now();
  await r.region.request(booking('quiet-b1'), createMessage('rider-q1', east(0)));
  t.true(await eventually(async () => offered.length > 0, windowMs / 2), 'offered long before the window would have closed');
  t.deepEqual(offered, ['quiet-d1']);
  t.log(`first offer ${Date.now() - booked} ms after the booking`);
  await r.stop();
});

test('batched: the area\'s owner dies mid-window; after the restart each booking joins again by its retry timer and is matched', async (t) => {
  const booked = { offerTimeoutMs: 5_000, deadlineMs: 60_000, batchMs: 2_000 };
  const first = await dispatchRig('batched', booked);
  await online(first, 'win-d1', east(0.05));
  await online(first, 'win-d2', east(-0.05));
  await first.region.request(booking('win-b1'), createMessage('rider-w1', east(0)));
  await first.region.request(booking('win-b2'), createMessage('rider-w2', east(0.02)));
  await first.stop(); // the window is open (2 s): its joins die with the area's soft state
  const parts = dispatchParts('batched', { ...DEFAULT_BOOKING, ...booked, searchRetryMs: 3_500 });
  const second = await startRig({
    journal: first.journal, reminders: first.reminders,
    behaviors: [makeDriverBehavior({ cellRes: CELL_RES, offerTimeoutMs: 5_000 }), makeCellBehavior(DEFAULT_CELL), ...parts.behaviors],
    services: parts.services,
  });
  // Cells are soft too: the drivers' next fixes fill them again.
  for (const [id, at] of [['win-d1', east(0.05)], ['win-d2', east(-0.05)]] as const) {
    await second.region.request(driver(id), { type: 'location', fix: { ...at, at: Date.now() } });
  }
  const stop = acceptingApps(second, seeded(3));
  const view = (id: string) => second.region.ask<{ status: string; driverId?: string }>(booking(id), { type: 'get' });
  t.true(await eventually(async () => (await view('win-b1')).status === 'accepted' && (await view('win-b2')).status === 'accepted', 60_000),
    'both bookings were matched after the restart');
  t.not((await view('win-b1')).driverId, (await view('win-b2')).driverId, 'to two drivers');
  stop();
  await second.stop();
});
