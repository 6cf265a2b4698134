// Journal records of bookings as their actor writes them, for the projection tests: the real
// reducer handles the messages a booking would receive and each outcome that journals becomes
// a record (as runtime/entity-actor.ts writes it). The fates cover what analytics counts:
// requests (scheduled ones too), cancellations before and after a driver accepted, no driver,
// offers declined and given to the next driver, a driver released and the booking re-dispatched,
// completed trips with their fares, and ratings.

import { DEFAULT_BOOKING, makeBookingBehavior, type BookingMessage, type BookingState } from '../../actors/booking.ts';
import type { Candidate } from '../../actors/cell.ts';
import { planEffects, type JournalRecord } from '../../runtime/entity-actor.ts';

export const FATES = ['completed', 'completed-rated', 'cancelled-searching', 'cancelled-accepted', 'no-driver', 'declined-then-completed', 'released-then-completed', 'scheduled-completed', 'scheduled-cancelled'] as const;
export type Fate = typeof FATES[number];

const candidate = (driverId: string, lat: number, lng: number): Candidate => ({
  driverId, lat, lng, status: 'available', vehicleType: 'economy', rating: 4.8, acceptanceRate: 0.9, lastTripEndedAt: 0, maintenance: [], seenAt: 0, distanceKm: 0.8,
});

/** The records of booking `id` living out `fate` from `t0` (milliseconds), `n` varying its rider, cell, fare and drivers. */
export function bookingHistory(id: string, fate: Fate, t0: number, n: number): JournalRecord[] {
  const behavior = makeBookingBehavior(DEFAULT_BOOKING);
  const records: JournalRecord[] = [];
  let state: BookingState = behavior.initial(id);
  let now = t0;
  const step = (afterMs: number, message: BookingMessage) => {
    now += afterMs;
    const commandId = `${id}/${records.length}`;
    const out = behavior.handle(state, message, { self: { kind: 'booking', id }, now, commandId });
    if (out.rejection) throw new Error(`${id} (${fate}): ${message.type} refused: ${out.rejection.message}`);
    state = out.state;
    const plan = planEffects(commandId, out.effects);
    if (out.events.length + plan.tells.length + plan.timersSet.length + plan.timersCancelled.length === 0) return;
    records.push({ v: behavior.eventVersion, cmd: commandId, at: now, events: out.events, tells: plan.tells, timersSet: plan.timersSet, timersCancelled: plan.timersCancelled });
  };
  const riderId = `rider-${n % 7}`;
  const pickup = { lat: 48.85 + (n % 5) * 0.01, lng: 2.35 + (n % 3) * 0.01 };
  const first = `driver-${n % 11}`, second = `driver-${(n + 5) % 11}`;
  const scheduled = fate.startsWith('scheduled');
  step(0, {
    type: 'create', riderId, vehicleType: 'economy', pickup, dropoff: { lat: pickup.lat + 0.03, lng: pickup.lng + 0.02 },
    pickupCell: `cell-${n % 4}`, price: { amount: 900 + 37 * n, currency: 'EUR' }, surge: n % 3 === 0 ? 1.5 : 1, distanceKm: 4.2, durationMin: 14,
    ...(scheduled ? { scheduledAt: now + 7_200_000 } : {}),
  });
  if (fate === 'scheduled-cancelled') { step(60_000, { type: 'cancel', by: { role: 'rider', userId: riderId } }); return records; }
  if (scheduled) step(7_200_000 - DEFAULT_BOOKING.scheduleLeadMs, { type: 'activate' });
  const search = () => state.searches;
  if (fate === 'no-driver') {
    step(300, { type: 'candidates', search: search(), drivers: [] });
    step(1_000, { type: 'search.next', search: search() });
    step(300, { type: 'candidates', search: search(), drivers: [] });
    step(DEFAULT_BOOKING.deadlineMs, { type: 'deadline' });
    return records;
  }
  if (fate === 'cancelled-searching') { step(5_000, { type: 'cancel', by: { role: 'rider', userId: riderId } }); return records; }
  step(300, { type: 'candidates', search: search(), drivers: [candidate(first, pickup.lat, pickup.lng), candidate(second, pickup.lat, pickup.lng)] });
  const offered = () => {
    if (!state.offer) throw new Error(`${id} (${fate}): nobody was offered the booking (${state.status})`);
    return state.offer.driverId;
  };
  if (fate === 'declined-then-completed') {
    const declined = offered();
    step(3_000, { type: 'offer.declined', driverId: declined });
    // The next in the queue, or a search's next answer when the queue had none left to offer.
    if (!state.offer) step(1_000, { type: 'candidates', search: search(), drivers: [candidate(declined === first ? second : first, pickup.lat, pickup.lng)] });
  }
  let driver = offered();
  step(4_000, { type: 'offer.accepted', driverId: driver });
  if (fate === 'cancelled-accepted') { step(30_000, { type: 'cancel', by: { role: 'rider', userId: riderId } }); return records; }
  if (fate === 'released-then-completed') {
    step(60_000, { type: 'driver.released', driverId: driver, reason: 'vehicle' });
    step(300, { type: 'candidates', search: search(), drivers: [candidate(driver === first ? second : first, pickup.lat, pickup.lng)] });
    driver = offered();
    step(4_000, { type: 'offer.accepted', driverId: driver });
  }
  // Trips cross the hour now and then: a booking's transitions count in the hours they happen in.
  step(240_000, { type: 'trip.arrived', driverId: driver });
  step(60_000, { type: 'trip.started', driverId: driver });
  step(900_000 + (n % 4) * 600_000, { type: 'trip.completed', driverId: driver });
  if (fate === 'completed-rated') step(120_000, { type: 'rate', by: { role: 'rider', userId: riderId }, stars: 1 + (n % 5) });
  return records;
}
