// A driver: offline -> available -> offered -> assigned -> on_trip -> available.
// One actor decides every offer, so a driver never holds two bookings. Status
// changes are journaled; GPS fixes only update memory (and the cell's copy) and
// reach the journal through periodic snapshots.
//
// A driver exists once an admin adds it, it registers, or it first goes online
// (development tokens). Self-registered drivers wait for an admin's approval
// before they can go online. Deactivating a driver takes it offline and hands
// back any offer or booking it holds that has not started; an inactive driver
// refuses offers, so dispatch moves on to the next candidate.
//
// Cells are soft state: a restarted or moved cell starts empty. An online driver
// therefore keeps a durable `presence` timer (every `presenceMs`) whose firing
// re-sends its last position and status to its cell. The timer is a reminder, so
// after a restart or a shard move the runtime brings the driver back and the timer
// fires (at once if it fell due meanwhile): drivers re-announce themselves without
// a new fix. It also keeps a stationary driver in its cell (cells drop drivers
// unheard of for 2 minutes). A driver whose app has sent nothing for `silentAfterMs`
// is no longer re-announced (its timer lapses until its next fix), so a phone that
// died while online does not stay dispatchable forever.

import { latLngToCell } from 'h3-js';
import { NOTHING, rejected, unchanged, type Behavior, type Effect, type EntityRef, type HandleContext, type Outcome } from './behavior.ts';
import type { DriverCopy } from './cell.ts';
import type { Point } from './geo.ts';
import { surelyIn } from './nearest.ts';
import type { Money } from './pricing.ts';
import type { DriverRejection } from './rejections.ts';
import { inMaintenance, type MaintenanceWindow } from './vehicle.ts';

export type { DriverRejection } from './rejections.ts';

export type DriverStatus = 'offline' | 'available' | 'offered' | 'assigned' | 'on_trip';

export interface Fix extends Point {
  readonly heading?: number;
  readonly speed?: number;
  readonly at: number;
}

export interface DriverState {
  readonly status: DriverStatus;
  readonly vehicleType: string;
  readonly vehicleId?: string;
  readonly fix?: Fix;
  readonly cell?: string;
  readonly bookingId?: string;
  /** The rider of the booking in hand, who sees this driver's location. */
  readonly riderId?: string;
  readonly offerExpiresAt?: number;
  readonly ratingSum: number;
  readonly ratingCount: number;
  /**
   * Bookings whose rating counted, newest last, so a booking counts once whatever the
   * command that carries it (absent in state from before ratings were keyed by booking).
   */
  readonly ratedBookings?: readonly string[];
  readonly offers: number;
  readonly accepts: number;
  readonly lastTripEndedAt: number;
  readonly maintenance: readonly MaintenanceWindow[];
  readonly profile: DriverProfile;
  /** Set by the first journaled event that makes the driver real (not a vehicle's maintenance push). */
  readonly known?: boolean;
  /** Soft: this incarnation knows its presence timer runs (absent after a replay without snapshot). */
  readonly presence?: boolean;
  /** Soft: server time of the driver's last fix or going online. */
  readonly heardAt?: number;
}

export interface DriverProfile {
  readonly name?: string;
  readonly phone?: string;
  readonly vehicleId?: string;
  /** The vehicle types an admin allowed a driver without a vehicle to go online with. */
  readonly vehicleTypes?: readonly string[];
  /** An inactive driver cannot go online (suspended, offboarded). */
  readonly active: boolean;
  /** Self-registered drivers start pending; absent means approved (admin-created, older drivers). */
  readonly approval?: DriverApproval;
}

export type DriverApproval = 'pending' | 'approved';

export interface OfferDetails {
  readonly bookingId: string;
  readonly riderId?: string;
  readonly pickup: Point;
  readonly dropoff: Point;
  readonly price: Money;
  readonly expiresAt: number;
}

export type DriverMessage =
  /** `vehicleId`: the driver's vehicle, whose type the sender checked is `vehicleType` (http/online.ts). */
  | { readonly type: 'online'; readonly vehicleType: string; readonly vehicleId?: string }
  | { readonly type: 'offline' }
  | { readonly type: 'location'; readonly fix: Fix }
  | { readonly type: 'location.batch'; readonly fixes: readonly Fix[] }
  | ({ readonly type: 'offer' } & OfferDetails)
  | { readonly type: 'offer.accept'; readonly bookingId: string }
  | { readonly type: 'offer.decline'; readonly bookingId: string }
  | { readonly type: 'offer.expire'; readonly bookingId: string }
  | { readonly type: 'offer.withdrawn'; readonly bookingId: string }
  | { readonly type: 'trip.arrived'; readonly bookingId: string }
  | { readonly type: 'trip.start'; readonly bookingId: string }
  | { readonly type: 'trip.complete'; readonly bookingId: string }
  | { readonly type: 'booking.cancelled'; readonly bookingId: string }
  | { readonly type: 'rated'; readonly bookingId: string; readonly stars: number }
  | { readonly type: 'maintenance.set'; readonly windows: readonly MaintenanceWindow[] }
  /** Creates or changes the profile (registration, under a fresh id). */
  | { readonly type: 'profile.set'; readonly profile: Partial<DriverProfile> }
  /** An admin adds a driver: refused with `conflict` when the id is anyone's already (added, registered, or online). */
  | { readonly type: 'create'; readonly profile: Partial<DriverProfile> }
  /** Changes the profile of an existing driver; `not_found` for an id nobody created. */
  | { readonly type: 'profile.update'; readonly profile: Partial<Omit<DriverProfile, 'approval'>> }
  /** An admin approves a self-registered driver (idempotent). */
  | { readonly type: 'approve' }
  /** The presence timer: re-announce to the cell, and set it again. */
  | { readonly type: 'presence' };

export type DriverEvent =
  | { readonly type: 'went.online'; readonly vehicleType: string; readonly vehicleId?: string }
  | { readonly type: 'went.offline' }
  | { readonly type: 'offered'; readonly bookingId: string; readonly expiresAt: number; readonly riderId?: string }
  | { readonly type: 'offer.accepted'; readonly bookingId: string }
  | { readonly type: 'offer.ended'; readonly bookingId: string; readonly reason: 'declined' | 'expired' | 'withdrawn' }
  | { readonly type: 'trip.started'; readonly bookingId: string }
  | { readonly type: 'trip.ended'; readonly bookingId: string; readonly at: number; readonly completed: boolean }
  /** `bookingId` is absent from events written before ratings were keyed by booking. */
  | { readonly type: 'rated'; readonly bookingId?: string; readonly stars: number }
  | { readonly type: 'maintenance.set'; readonly windows: readonly MaintenanceWindow[] }
  | { readonly type: 'profile.set'; readonly profile: Partial<DriverProfile> }
  | { readonly type: 'approved' }
  /** The driver let go of the booking in hand before its trip started (deactivated). */
  | { readonly type: 'booking.released'; readonly bookingId: string; readonly reason: 'deactivated' };

export type DriverQuery = { readonly type: 'get' };

export interface DriverSettings {
  readonly cellRes: number;
  readonly offerTimeoutMs: number;
  /** Period of an online driver's presence timer (default DEFAULT_PRESENCE.presenceMs). */
  readonly presenceMs?: number;
  /** An online driver silent this long is no longer re-announced (default DEFAULT_PRESENCE.silentAfterMs). */
  readonly silentAfterMs?: number;
}

export const DEFAULT_PRESENCE = { presenceMs: 30_000, silentAfterMs: 600_000 } as const;

/** How far ahead of our clock a fix's time is believed (phones keep time to about a second). */
export const MAX_FIX_AHEAD_MS = 10_000;

/**
 * Rated bookings a driver remembers. Bounded so the state stays small; a booking rated
 * again after this many later ratings would count again, but the booking itself refuses
 * a second rating and the runtime delivers its one `rated` tell once, so that needs both to fail.
 */
export const RATED_BOOKINGS_REMEMBERED = 1_000;

const booking = (id: string): EntityRef => ({ kind: 'booking', id });

/**
 * A cell's ref, one per cell: every fix tells the driver's cell, and a ref made per fix was
 * garbage (refs are immutable, so sharing one changes nothing a reducer returns). Bounded:
 * past CELL_REFS_KEPT cells the table starts over (a node's drivers span far fewer).
 */
const cellRefs = new Map<string, EntityRef>();
const CELL_REFS_KEPT = 50_000;
function cell(id: string): EntityRef {
  let ref = cellRefs.get(id);
  if (ref === undefined) {
    if (cellRefs.size >= CELL_REFS_KEPT) cellRefs.clear();
    ref = Object.freeze({ kind: 'cell', id });
    cellRefs.set(id, ref);
  }
  return ref;
}

// Shared by every driver that has no windows, the default profile, and every presence
// timer: a node holds a state and a timer per online driver, so a fresh copy of each
// (immutable, like all state) was heap per driver for nothing.
const NO_WINDOWS: readonly MaintenanceWindow[] = Object.freeze([]);
const DEFAULT_PROFILE: DriverProfile = Object.freeze({ active: true });
const PRESENCE: DriverMessage = Object.freeze({ type: 'presence' });

export function initialDriver(): DriverState {
  return {
    status: 'offline', vehicleType: 'economy', ratingSum: 0, ratingCount: 0, offers: 0, accepts: 0, lastTripEndedAt: 0,
    maintenance: NO_WINDOWS, profile: DEFAULT_PROFILE,
  };
}

export function applyDriver(s: DriverState, e: DriverEvent): DriverState {
  const next = step(s, e);
  return e.type === 'maintenance.set' || next.known ? next : { ...next, known: true };
}

function step(s: DriverState, e: DriverEvent): DriverState {
  switch (e.type) {
    case 'went.online': return { ...s, status: 'available', vehicleType: e.vehicleType, vehicleId: e.vehicleId ?? s.vehicleId };
    case 'went.offline':
      return { ...s, status: 'offline', bookingId: undefined, riderId: undefined, offerExpiresAt: undefined, presence: undefined };
    case 'offered':
      return { ...s, status: 'offered', bookingId: e.bookingId, riderId: e.riderId, offerExpiresAt: e.expiresAt, offers: s.offers + 1 };
    case 'offer.accepted': return { ...s, status: 'assigned', offerExpiresAt: undefined, accepts: s.accepts + 1 };
    case 'offer.ended': return { ...s, status: 'available', bookingId: undefined, riderId: undefined, offerExpiresAt: undefined };
    case 'trip.started': return { ...s, status: 'on_trip' };
    case 'trip.ended':
      return { ...s, status: 'available', bookingId: undefined, riderId: undefined, lastTripEndedAt: e.completed ? e.at : s.lastTripEndedAt };
    case 'rated':
      return {
        ...s, ratingSum: s.ratingSum + e.stars, ratingCount: s.ratingCount + 1, ratedBookings: withRated(s.ratedBookings, e.bookingId),
      };
    case 'maintenance.set': return { ...s, maintenance: e.windows };
    case 'profile.set': return { ...s, profile: { ...s.profile, ...e.profile } };
    case 'approved': return { ...s, profile: { ...s.profile, approval: 'approved' } };
    case 'booking.released': return { ...s, status: 'available', bookingId: undefined, riderId: undefined, offerExpiresAt: undefined };
  }
}

function withRated(rated: readonly string[] = [], bookingId: string | undefined): readonly string[] {
  if (bookingId === undefined) return rated;
  return [...rated.slice(Math.max(0, rated.length - RATED_BOOKINGS_REMEMBERED + 1)), bookingId];
}

/** Whether anyone created this driver (state from before `known` existed is judged by what it holds). */
export function driverExists(s: DriverState): boolean {
  return s.known === true || s.profile.name !== undefined || s.profile.approval !== undefined || s.status !== 'offline'
    || s.offers > 0 || s.ratingCount > 0 || s.lastTripEndedAt > 0;
}

/**
 * Why this driver may not go online with this vehicle type, as far as its own state tells:
 * a driver with a vehicle only after its sender checked that vehicle's type (the actor does
 * not know it; http/online.ts looks it up), a driver without one only with a type an admin
 * allowed. A driver with neither is left to the sender (a development node allows any type).
 */
export function onlineRefusal(profile: DriverProfile, m: { vehicleType: string; vehicleId?: string }): string | undefined {
  if (profile.vehicleId) {
    return m.vehicleId === profile.vehicleId ? undefined
      : `vehicleType: not checked against this driver's vehicle ${profile.vehicleId}; send online again`;
  }
  const allowed = profile.vehicleTypes ?? [];
  if (allowed.length > 0 && !allowed.includes(m.vehicleType)) {
    return `vehicleType: this driver may go online as ${allowed.join(', ')} (allowed by an admin), not ${m.vehicleType}`;
  }
  return undefined;
}

/** The driver as admin lists show it. */
export function driverView(id: string, s: DriverState) {
  return {
    id, status: s.status, vehicleType: s.vehicleType, ...s.profile, approval: s.profile.approval ?? 'approved',
    rating: Math.round(rating(s) * 100) / 100,
    acceptanceRate: Math.round(acceptanceRate(s) * 1000) / 1000, trips: s.ratingCount,
    ...(s.lastTripEndedAt ? { lastTripEndedAt: new Date(s.lastTripEndedAt).toISOString() } : {}),
  };
}

export function rating(s: DriverState): number {
  return s.ratingCount === 0 ? 5 : s.ratingSum / s.ratingCount;
}

export function acceptanceRate(s: DriverState): number {
  return s.offers === 0 ? 1 : s.accepts / s.offers;
}

/**
 * When a cell copy (and a remove of one) was written, on one clock: a device's clock can
 * run ahead of ours, so the newest fix's time counts when it is later than now. A remove
 * stamped with now alone would lose to the copy it removes, which would stay behind.
 */
const copyStamp = (s: DriverState, now: number): number => Math.max(s.fix?.at ?? 0, now);

export function driverCopy(id: string, s: DriverState, now: number): DriverCopy | undefined {
  if (!s.fix) return undefined;
  return {
    driverId: id, lat: s.fix.lat, lng: s.fix.lng, status: s.status, vehicleType: s.vehicleType, rating: rating(s),
    acceptanceRate: acceptanceRate(s), lastTripEndedAt: s.lastTripEndedAt, maintenance: s.maintenance, seenAt: copyStamp(s, now),
  };
}

const sameOr = (was: string | undefined, found: string) => (found === was ? was : found);

/** What handling one message of a driver comes to. */
type DriverOutcome = Outcome<DriverState, DriverEvent, DriverRejection>;

export function makeDriverBehavior(
  settings: DriverSettings,
): Behavior<DriverState, DriverMessage, DriverEvent, DriverQuery, unknown, DriverRejection> {
  const presenceMs = settings.presenceMs ?? DEFAULT_PRESENCE.presenceMs;
  const silentAfterMs = settings.silentAfterMs ?? DEFAULT_PRESENCE.silentAfterMs;
  const presenceTimer = (now: number): Extract<Effect, { type: 'timer.set' }> => ({
    type: 'timer.set', name: 'presence', at: now + presenceMs, message: PRESENCE,
  });

  /** The cell's copy follows the driver: upsert where it is, remove where it was. */
  function cellEffects(id: string, before: DriverState, after: DriverState, now: number): Effect[] {
    const removes = before.cell !== undefined && (before.cell !== after.cell || after.status === 'offline');
    const copy = after.cell && after.status !== 'offline' ? driverCopy(id, after, now) : undefined;
    const upsert: Effect | undefined = copy && { type: 'tell', durable: false, to: cell(after.cell!), message: { type: 'driver.upsert', driver: copy } };
    // Most fixes stay in their cell: one array of one tell, not an empty one grown by push.
    if (!removes) return upsert ? [upsert] : [];
    const remove: Effect = { type: 'tell', durable: false, to: cell(before.cell!), message: { type: 'driver.remove', driverId: id, at: copyStamp(after, now) } };
    return upsert ? [remove, upsert] : [remove];
  }

  function transition(s: DriverState, given: DriverEvent[], ctx: HandleContext, extra: Effect[] = []): DriverOutcome {
    let events = given;
    let next = events.reduce(applyDriver, s);
    // An inactive driver that comes free (trip over, booking released) goes offline rather than back to dispatch.
    if (!next.profile.active && next.status === 'available') {
      const off: DriverEvent = { type: 'went.offline' };
      events = [...events, off];
      next = applyDriver(next, off);
    }
    // Online, the presence timer runs; offline, it stops.
    const presence: Effect[] = [];
    if (s.status === 'offline' && next.status !== 'offline') {
      presence.push(presenceTimer(ctx.now));
      next = { ...next, presence: true, heardAt: ctx.now };
    } else if (s.status !== 'offline' && next.status === 'offline') {
      presence.push({ type: 'timer.cancel', name: 'presence' });
    }
    const publish: Effect[] = events.length > 0
      ? [{ type: 'publish', topic: 'driver', event: { type: `driver.${events.at(-1)!.type}`, driver: driverView(ctx.self.id, next) } }]
      : [];
    return { state: next, events, effects: [...extra, ...presence, ...cellEffects(ctx.self.id, s, next, ctx.now), ...publish] };
  }

  /** The presence timer fired: re-announce to the cell and set it again, or let it lapse. */
  function presenceTick(s: DriverState, ctx: HandleContext): DriverOutcome {
    const lapse = unchanged<DriverState, DriverEvent>(s.presence ? { ...s, presence: undefined } : s);
    if (s.status === 'offline' || !s.fix || !s.cell) return lapse; // nothing to announce; the next fix sets it again
    if (ctx.now - (s.heardAt ?? s.fix.at) > silentAfterMs) return lapse;
    // Re-armed in memory: a journal row per online driver per period was what an idle
    // fleet cost; after a crash the journaled, earlier due time fires it at once.
    const effects = cellEffects(ctx.self.id, s, s, ctx.now); // a new array: one more in place
    effects.push({ ...presenceTimer(ctx.now), durable: false });
    return { state: s.presence ? s : { ...s, presence: true }, events: [], effects };
  }

  /** Fixes arrive late and out of order (batches sent after a tunnel): the newest counts (see moveOne). */
  function move(s: DriverState, fixes: readonly Fix[], ctx: HandleContext): DriverOutcome {
    let newest: Fix | undefined;
    for (const f of fixes) if (!newest || f.at > newest.at) newest = f;
    return newest ? moveOne(s, newest, ctx) : unchanged(s);
  }

  function moveOne(s: DriverState, newest: Fix, ctx: HandleContext): DriverOutcome {
    // A device's clock may run ahead of ours, but a fix is never believed newer than a little
    // ahead: one fix stamped years ahead would otherwise make every later fix look stale and
    // freeze the driver where it was (and keep its cell copy fresh for years).
    const latest = ctx.now + MAX_FIX_AHEAD_MS;
    const believed = newest.at > latest ? { ...newest, at: latest } : newest;
    // A fix kept from before this rule, stamped beyond belief, says nothing of order: any fix replaces it.
    if (s.fix && s.fix.at <= latest && believed.at <= s.fix.at) return unchanged(s);
    return moveTo(s, believed, ctx);
  }

  function moveTo(s: DriverState, newest: Fix, ctx: HandleContext): DriverOutcome {
    const online = s.status !== 'offline';
    // The cell's string from before when the driver stayed in it: a new one would be garbage
    // only once the next fix replaced it, so it outlived a collection or two (as every state does).
    const cellNow = s.cell !== undefined && surelyIn(newest, s.cell, settings.cellRes) ? s.cell : sameOr(s.cell, latLngToCell(newest.lat, newest.lng, settings.cellRes));
    // Online without a presence timer this incarnation knows of (lapsed while silent, online
    // since before presence existed, or replayed without a snapshot): set it. One new state either way.
    const setsPresence = online && !s.presence;
    const next: DriverState = setsPresence
      ? { ...s, fix: newest, cell: cellNow, heardAt: ctx.now, presence: true }
      : { ...s, fix: newest, cell: cellNow, heardAt: ctx.now };
    const effects = online ? cellEffects(ctx.self.id, s, next, ctx.now) : [];
    if (setsPresence) effects.push(presenceTimer(ctx.now));
    // The rider of the booking in hand follows the car.
    if ((s.status === 'assigned' || s.status === 'on_trip') && s.riderId && s.bookingId) {
      effects.push({ type: 'notify', userId: s.riderId, message: {
        type: 'driver.location', bookingId: s.bookingId, lat: newest.lat, lng: newest.lng, heading: newest.heading ?? null,
        at: new Date(newest.at).toISOString(),
      } });
    }
    return { state: next, events: NOTHING, effects };
  }

  const handle = (s: DriverState, m: DriverMessage, ctx: HandleContext): DriverOutcome => {
    const notify = (message: unknown): Effect => ({ type: 'notify', userId: ctx.self.id, message });
    switch (m.type) {
      case 'online': {
        if (!s.profile.active) return rejected(s, 'inactive', 'this driver is not active');
        if (s.profile.approval === 'pending') {
          return rejected(s, 'driver_pending_approval', 'this driver is waiting for an admin to approve it');
        }
        const refusal = onlineRefusal(s.profile, m);
        if (refusal) return rejected(s, 'vehicle_type_not_allowed', refusal);
        if (s.status !== 'offline') {
          if (s.status === 'available' && s.vehicleType !== m.vehicleType) {
            return transition(s, [{ type: 'went.online', vehicleType: m.vehicleType, vehicleId: m.vehicleId }], ctx);
          }
          return unchanged(s);
        }
        return transition(s, [{ type: 'went.online', vehicleType: m.vehicleType, vehicleId: m.vehicleId }], ctx);
      }
      case 'offline':
        if (s.status === 'offline') return unchanged(s);
        if (s.status === 'assigned' || s.status === 'on_trip') return rejected(s, 'on_trip', 'cannot go offline with a booking in hand');
        return transition(s, [{ type: 'went.offline' }], ctx,
          s.status === 'offered' && s.bookingId
            ? [{ type: 'tell', to: booking(s.bookingId), message: { type: 'offer.declined', driverId: ctx.self.id } }]
            : []);
      case 'presence': return presenceTick(s, ctx);
      case 'location': return moveOne(s, m.fix, ctx);
      case 'location.batch': return move(s, m.fixes, ctx);
      case 'offer': {
        const reason = !s.profile.active ? 'driver is inactive'
          : s.profile.approval === 'pending' ? 'driver is pending approval'
          : s.status !== 'available' ? `driver is ${s.status}`
          : inMaintenance(s.maintenance, ctx.now) ? 'vehicle in maintenance'
          : m.expiresAt <= ctx.now ? 'offer already expired' : undefined;
        if (reason) {
          // Refused offers are answered so the booking moves on at once.
          return rejected(s, !s.profile.active ? 'inactive' : 'busy', reason,
            [{ type: 'tell', to: booking(m.bookingId), message: { type: 'offer.refused', driverId: ctx.self.id, reason } }]);
        }
        return transition(s, [{ type: 'offered', bookingId: m.bookingId, expiresAt: m.expiresAt, riderId: m.riderId }], ctx, [
          { type: 'timer.set', name: 'offer', at: m.expiresAt, message: { type: 'offer.expire', bookingId: m.bookingId } },
          notify({
            type: 'offer', bookingId: m.bookingId, pickup: m.pickup, dropoff: m.dropoff, price: m.price,
            expiresAt: new Date(m.expiresAt).toISOString(),
          }),
        ]);
      }
      case 'offer.accept':
        if (!s.profile.active) return rejected(s, 'inactive', 'this driver is not active');
        if (s.status !== 'offered' || s.bookingId !== m.bookingId) {
          return rejected(s, 'no_such_offer', `no open offer for booking ${m.bookingId}`);
        }
        return transition(s, [{ type: 'offer.accepted', bookingId: m.bookingId }], ctx, [
          { type: 'timer.cancel', name: 'offer' },
          { type: 'tell', to: booking(m.bookingId), message: { type: 'offer.accepted', driverId: ctx.self.id } },
        ]);
      case 'offer.decline':
        if (s.status !== 'offered' || s.bookingId !== m.bookingId) {
          return rejected(s, 'no_such_offer', `no open offer for booking ${m.bookingId}`);
        }
        return transition(s, [{ type: 'offer.ended', bookingId: m.bookingId, reason: 'declined' }], ctx, [
          { type: 'timer.cancel', name: 'offer' },
          { type: 'tell', to: booking(m.bookingId), message: { type: 'offer.declined', driverId: ctx.self.id } },
        ]);
      case 'offer.expire':
        if (s.status !== 'offered' || s.bookingId !== m.bookingId) return unchanged(s);
        return transition(s, [{ type: 'offer.ended', bookingId: m.bookingId, reason: 'expired' }], ctx, [
          notify({ type: 'offer.expired', bookingId: m.bookingId }),
          { type: 'tell', to: booking(m.bookingId), message: { type: 'offer.declined', driverId: ctx.self.id, expired: true } },
        ]);
      case 'offer.withdrawn':
        // The booking moved on (its own timeout, cancelled, or another driver was faster).
        if (s.bookingId !== m.bookingId || (s.status !== 'offered' && s.status !== 'assigned')) return unchanged(s);
        return transition(s, [{ type: 'offer.ended', bookingId: m.bookingId, reason: 'withdrawn' }], ctx, [
          { type: 'timer.cancel', name: 'offer' }, notify({ type: 'offer.expired', bookingId: m.bookingId }),
        ]);
      case 'trip.arrived':
        if (s.status !== 'assigned' || s.bookingId !== m.bookingId) {
          return rejected(s, 'not_assigned', `not assigned to booking ${m.bookingId}`);
        }
        return {
          state: s,
          events: [],
          effects: [{ type: 'tell', to: booking(m.bookingId), message: { type: 'trip.arrived', driverId: ctx.self.id } }],
        };
      case 'trip.start':
        if (s.status !== 'assigned' || s.bookingId !== m.bookingId) {
          return rejected(s, 'not_assigned', `not assigned to booking ${m.bookingId}`);
        }
        return transition(s, [{ type: 'trip.started', bookingId: m.bookingId }], ctx,
          [{ type: 'tell', to: booking(m.bookingId), message: { type: 'trip.started', driverId: ctx.self.id } }]);
      case 'trip.complete':
        if (s.status !== 'on_trip' || s.bookingId !== m.bookingId) {
          return rejected(s, 'not_on_trip', `not on the trip of booking ${m.bookingId}`);
        }
        return transition(s, [{ type: 'trip.ended', bookingId: m.bookingId, at: ctx.now, completed: true }], ctx,
          [{ type: 'tell', to: booking(m.bookingId), message: { type: 'trip.completed', driverId: ctx.self.id } }]);
      case 'booking.cancelled':
        if (s.bookingId !== m.bookingId) return unchanged(s);
        return transition(s, [{ type: 'trip.ended', bookingId: m.bookingId, at: ctx.now, completed: false }], ctx, [
          { type: 'timer.cancel', name: 'offer' }, notify({ type: 'booking.cancelled', bookingId: m.bookingId }),
        ]);
      case 'rated':
        if (!Number.isInteger(m.stars) || m.stars < 1 || m.stars > 5) return rejected(s, 'invalid_rating', 'stars must be 1 to 5');
        if (s.ratedBookings?.includes(m.bookingId)) return rejected(s, 'already_rated', `booking ${m.bookingId} is already rated`);
        return transition(s, [{ type: 'rated', bookingId: m.bookingId, stars: m.stars }], ctx);
      case 'maintenance.set':
        return transition(s, [{ type: 'maintenance.set', windows: m.windows }], ctx);
      case 'profile.set':
        return changeProfile(s, m.profile, ctx);
      case 'create':
        // A create is not an upsert: it would overwrite a driver's profile, or approve a pending one.
        if (driverExists(s)) return rejected(s, 'conflict', `driver ${ctx.self.id} exists; change it with PATCH`);
        return changeProfile(s, m.profile, ctx);
      case 'profile.update': {
        if (!driverExists(s)) return rejected(s, 'not_found', `no driver ${ctx.self.id}`);
        const { approval: _ignored, ...profile } = m.profile as Partial<DriverProfile>;
        return changeProfile(s, profile, ctx);
      }
      case 'approve': {
        if (!driverExists(s)) return rejected(s, 'not_found', `no driver ${ctx.self.id}`);
        if (s.profile.approval !== 'pending') return unchanged(s, driverView(ctx.self.id, s));
        const out = transition(s, [{ type: 'approved' }], ctx, [notify({ type: 'driver.approved' })]);
        return { ...out, reply: driverView(ctx.self.id, out.state) };
      }
    }
  };

  /** A profile change; deactivation also lets go of the booking in hand unless its trip has started. */
  function changeProfile(s: DriverState, profile: Partial<DriverProfile>, ctx: HandleContext): DriverOutcome {
    const events: DriverEvent[] = [{ type: 'profile.set', profile }];
    const extra: Effect[] = [];
    const notify = (message: unknown): Effect => ({ type: 'notify', userId: ctx.self.id, message });
    if (s.profile.active && profile.active === false) {
      const held = s.bookingId;
      if (held && (s.status === 'offered' || s.status === 'assigned')) {
        events.push({ type: 'booking.released', bookingId: held, reason: 'deactivated' });
        extra.push(
          { type: 'timer.cancel', name: 'offer' },
          // An open offer is refused (the booking offers the next candidate); an accepted booking goes back to dispatch.
          { type: 'tell', to: booking(held), message: s.status === 'offered'
            ? { type: 'offer.refused', driverId: ctx.self.id, reason: 'driver deactivated' }
            : { type: 'driver.released', driverId: ctx.self.id, reason: 'driver deactivated' } },
          notify(s.status === 'offered' ? { type: 'offer.expired', bookingId: held } : { type: 'booking.released', bookingId: held }),
        );
      }
      extra.push(notify({ type: 'driver.deactivated' }));
    }
    const out = transition(s, events, ctx, extra);
    return { ...out, reply: driverView(ctx.self.id, out.state) };
  }

  return {
    kind: 'driver',
    eventVersion: 1,
    initial: initialDriver,
    handle,
    apply: applyDriver,
    query: (s, _q, ctx) => ({ driverId: ctx.self.id, ...s, exists: driverExists(s), rating: rating(s), acceptanceRate: acceptanceRate(s) }),
    snapshotEvery: 50,
    softSnapshotEvery: 100,
  };
}
