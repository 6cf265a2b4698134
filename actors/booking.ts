// A booking: scheduled | searching -> offered -> accepted -> arriving ->
// in_progress -> completed, or cancelled / no_driver. Dispatch lives here: ask
// the node's nearest search for candidates, rank them, offer to one driver at a
// time with a timeout, move on after a refusal, decline or timeout, widen the
// radius when the candidates run out, and give up only at the deadline: a search
// that finds nobody to offer (cells still empty after a restart, nobody free yet)
// is made again after a backoff (1, 2, 4, 8 s by default, capped) until then. The
// driver's actor has the last word on an offer (it is the only one that knows
// whether the driver is free), so an acceptance is a message from the driver, and
// a booking that has moved on withdraws it. A driver who lets go of an accepted
// booking before the trip starts (deactivated) sends it back to dispatch with a
// fresh deadline.
//
// In batched mode (DISPATCH_MODE=batched) a search is a join of the pickup's area
// (area.ts) instead of a request to `nearest`: the area answers, after its window,
// `candidates` holding the one driver the batch's assignment gave this booking, or
// none. The booking offers as in greedy. With nobody to offer (none given, or the
// driver declined, let the offer run out or was refused) it joins the next batch at
// once, at the same radius: a batch that found nobody free for it is the common case in
// a busy city, and widening then would trade a short wait for a long pickup. After a
// batch that gave it nobody, the radius widens once the booking has spent, at its current
// radius, the greedy backoff (searchBackoff) plus one window; after a failed offer it
// keeps its radius (there were drivers near). Each join also carries the wider radii a
// greedy search would have reached by each time (`wider`), so a batch that leaves it with
// nobody at its radius searches it wider in the same window, no later than greedy would
// have (a quiet street costs one window, not three). A search that got no answer (an area owner
// that moved or died mid-window) sends the same join again; the area takes it once.
//
// A scheduled booking activates itself: it sets a durable timer for
// scheduledAt - scheduleLeadMs when it is created, so its dispatch does not depend
// on the read model. The node's cron sweep of the read model may tell it to
// activate too; activation is idempotent, and a booking that is no longer
// scheduled answers a sweep by publishing its current view (`booking.synced`) so
// a read model row that missed a transition is corrected instead of swept forever.

//
// An offer ends without an acceptance in one of three ways, each a message to the
// booking (wire names kept: they are commands in the log and journal):
// - `offer.refused`: the driver's actor turned the offer down without the driver
//   seeing it (not available, in maintenance, inactive, already expired), or the
//   driver was deactivated while holding it;
// - `offer.declined`: the driver let go of an offer it held: declined it, went
//   offline, or (`expired: true`) the driver's own offer timer ran out;
// - `offer.timeout`: the booking's own offer timer ran out first; the driver may
//   still hold the offer, so the booking withdraws it.
// All three become one `offer.failed` event with the reason, and dispatch moves on.

import { rejected, unchanged, type Behavior, type Effect, type EntityRef, type HandleContext, type Outcome } from './behavior.ts';
import type { Candidate } from './cell.ts';
import { DEFAULT_WEIGHTS, rankCandidates, rankSecondChances, type DispatchWeights } from './dispatch-policy.ts';
import { areaOf, type WiderRadius } from './area.ts';
import type { Point } from './geo.ts';
import type { Money } from './pricing.ts';
import type { BookingRejection } from './rejections.ts';

export type { BookingRejection } from './rejections.ts';

export type DispatchMode = 'greedy' | 'batched';

export type BookingStatus =
  | 'none' | 'scheduled' | 'searching' | 'offered' | 'accepted' | 'arriving' | 'in_progress' | 'completed' | 'cancelled' | 'no_driver';

/** Who sends a cancel or a rating: the authenticated caller. */
export interface Caller {
  readonly role: 'rider' | 'driver' | 'admin' | 'system';
  readonly userId: string;
}

export interface BookingState {
  readonly status: BookingStatus;
  readonly id: string;
  readonly riderId: string;
  readonly vehicleType: string;
  readonly pickup: Point;
  readonly dropoff: Point;
  readonly pickupCell: string;
  readonly scheduledAt?: number;
  readonly price: Money;
  readonly surge: number;
  readonly distanceKm: number;
  readonly durationMin: number;
  readonly driverId?: string;
  readonly createdAt: number;
  readonly timeline: readonly { readonly status: BookingStatus; readonly at: number }[];
  readonly radiusKm: number;
  /** When the current radius was first searched (batched mode widens by it); absent before the first search. */
  readonly radiusSince?: number;
  readonly searches: number;
  /** Searches made before the booking was last sent back to dispatch; the backoff counts from here. */
  readonly searchesBefore?: number;
  readonly tried: readonly string[];
  /** Drivers whose offer of this booking ran out unanswered (expired or timed out), once each; absent when none. */
  readonly lapsed?: readonly string[];
  readonly queue: readonly Candidate[];
  readonly offer?: { readonly driverId: string; readonly expiresAt: number };
  readonly deadlineAt: number;
  readonly rating?: { readonly stars: number; readonly comment?: string };
  readonly cancelledBy?: string;
  readonly requestKey?: string;
}

export interface CreateBooking {
  readonly type: 'create';
  readonly riderId: string;
  readonly vehicleType: string;
  readonly pickup: Point;
  readonly dropoff: Point;
  readonly pickupCell: string;
  readonly price: Money;
  readonly surge: number;
  readonly distanceKm: number;
  readonly durationMin: number;
  readonly scheduledAt?: number;
  /**
   * The request that creates the booking (its Idempotency-Key, or a fresh id).
   * A booking made from a quote has the quote's id, so a second request with
   * another key is refused: a quote books once.
   */
  readonly requestKey?: string;
}

export type BookingMessage =
  | CreateBooking
  | { readonly type: 'activate' }
  | { readonly type: 'candidates'; readonly search: number; readonly drivers: readonly Candidate[] }
  /** A search got no answer in time: ask again at the same radius. */
  | { readonly type: 'search.retry'; readonly search: number }
  /** The backoff after a search that found nobody to offer is over: search again, wider. */
  | { readonly type: 'search.next'; readonly search: number }
  /** The booking's own offer timer ran out (the driver may still hold the offer). */
  | { readonly type: 'offer.timeout'; readonly driverId: string }
  /** The driver's actor turned the offer down unseen, or the driver was deactivated holding it. */
  | { readonly type: 'offer.refused'; readonly driverId: string; readonly reason: string }
  /** The driver let go: declined, went offline, or (`expired`) the driver's offer timer ran out. */
  | { readonly type: 'offer.declined'; readonly driverId: string; readonly expired?: boolean }
  | { readonly type: 'offer.accepted'; readonly driverId: string }
  /** The assigned driver let go before the trip started: dispatch again. */
  | { readonly type: 'driver.released'; readonly driverId: string; readonly reason: string }
  | { readonly type: 'deadline' }
  | { readonly type: 'trip.arrived'; readonly driverId: string }
  | { readonly type: 'trip.started'; readonly driverId: string }
  | { readonly type: 'trip.completed'; readonly driverId: string }
  | { readonly type: 'cancel'; readonly by: Caller; readonly reason?: string }
  | { readonly type: 'rate'; readonly by: Caller; readonly stars: number; readonly comment?: string };

export type BookingEvent =
  | ({ readonly type: 'created'; readonly at: number; readonly id: string; readonly deadlineAt: number; readonly radiusKm: number }
    & Omit<CreateBooking, 'type'>)
  | { readonly type: 'search.started'; readonly at: number; readonly search: number; readonly radiusKm: number; readonly deadlineAt: number }
  | { readonly type: 'candidates.received'; readonly queue: readonly Candidate[] }
  | { readonly type: 'offered'; readonly at: number; readonly driverId: string; readonly expiresAt: number }
  | { readonly type: 'offer.failed'; readonly at: number; readonly driverId: string; readonly reason: string }
  | { readonly type: 'accepted'; readonly at: number; readonly driverId: string }
  | { readonly type: 'released'; readonly at: number; readonly driverId: string; readonly reason: string }
  | { readonly type: 'arriving'; readonly at: number }
  | { readonly type: 'started'; readonly at: number }
  | { readonly type: 'completed'; readonly at: number }
  | { readonly type: 'cancelled'; readonly at: number; readonly by: string; readonly reason?: string }
  | { readonly type: 'no_driver'; readonly at: number }
  | { readonly type: 'rated'; readonly stars: number; readonly comment?: string };

export type BookingQuery = { readonly type: 'get' };

export interface BookingSettings {
  readonly offerTimeoutMs: number;
  readonly deadlineMs: number;
  readonly initialRadiusKm: number;
  readonly maxRadiusKm: number;
  readonly candidatesPerSearch: number;
  /** A search that gets no answer in this long is asked again. */
  readonly searchRetryMs: number;
  /**
   * After a search that found nobody to offer, the next one waits this long, doubled
   * with each search of the same dispatch round up to `searchBackoffMaxMs`; searching
   * goes on until the deadline.
   */
  readonly searchBackoffMs: number;
  readonly searchBackoffMaxMs: number;
  /** A scheduled booking activates (by its own durable timer) this long before its time. */
  readonly scheduleLeadMs: number;
  readonly weights: DispatchWeights;
  /** greedy: ask `nearest` and offer the best; batched: join the area's next batch (area.ts). */
  readonly dispatchMode: DispatchMode;
  /** Batched mode's window: how long a join waits at most before its batch is matched. */
  readonly batchMs: number;
}

export const DEFAULT_BOOKING: BookingSettings = {
  offerTimeoutMs: 15_000, deadlineMs: 120_000, initialRadiusKm: 3, maxRadiusKm: 12,
  candidatesPerSearch: 10, searchRetryMs: 5_000, searchBackoffMs: 1_000, searchBackoffMaxMs: 8_000,
  scheduleLeadMs: 600_000, weights: DEFAULT_WEIGHTS, dispatchMode: 'greedy', batchMs: 2_000,
};

/** How long the booking waits after its `n`th search of a dispatch round found nobody (n from 1). */
export function searchBackoff(
  settings: Pick<BookingSettings, 'searchBackoffMs' | 'searchBackoffMaxMs'>, n: number,
): number {
  return Math.min(settings.searchBackoffMaxMs, settings.searchBackoffMs * 2 ** Math.min(Math.max(0, n - 1), 30));
}

export const FINAL: readonly BookingStatus[] = ['completed', 'cancelled', 'no_driver'];
/** Statuses from which a rider or admin may still cancel (the contract: 409 once in progress or finished). */
const CANCELLABLE: readonly BookingStatus[] = ['scheduled', 'searching', 'offered', 'accepted', 'arriving'];

/** Reasons an offer ends without an answer from the driver: it may be offered again once (dispatch-policy.ts). */
const LAPSED: readonly string[] = ['expired', 'timeout'];

/** The timers of a dispatch round, all cancelled when it ends (accepted, cancelled, no driver). */
const DISPATCH_TIMERS = ['offer', 'search', 'deadline'] as const;

const driverRef = (id: string): EntityRef => ({ kind: 'driver', id });
const cancelTimers = (names: readonly string[]): Effect[] => names.map((name) => ({ type: 'timer.cancel', name }));

export function initialBooking(id: string): BookingState {
  return {
    status: 'none', id, riderId: '', vehicleType: '', pickup: { lat: 0, lng: 0 }, dropoff: { lat: 0, lng: 0 },
    pickupCell: '',
    price: { amount: 0, currency: 'USD' }, surge: 1, distanceKm: 0, durationMin: 0, createdAt: 0, timeline: [],
    radiusKm: 0, searches: 0, tried: [], queue: [], deadlineAt: 0,
  };
}

/** The booking moved to `status` at `time` (recorded in its timeline). */
function withStatus(s: BookingState, status: BookingStatus, time: number): BookingState {
  return { ...s, status, timeline: [...s.timeline, { status, at: time }] };
}

export function applyBooking(s: BookingState, e: BookingEvent): BookingState {
  switch (e.type) {
    case 'created': {
      const { type: _t, at: time, deadlineAt, radiusKm, ...rest } = e;
      return withStatus(
        { ...s, ...rest, createdAt: time, deadlineAt, radiusKm }, e.scheduledAt !== undefined ? 'scheduled' : 'searching', time,
      );
    }
    case 'search.started':
      return {
        ...(s.status === 'scheduled' ? withStatus(s, 'searching', e.at) : s),
        searches: e.search, radiusKm: e.radiusKm, deadlineAt: e.deadlineAt, queue: [],
        radiusSince: s.radiusSince === undefined || e.radiusKm !== s.radiusKm ? e.at : s.radiusSince,
      };
    case 'candidates.received': return { ...s, queue: e.queue };
    case 'offered': return {
      ...withStatus(s, 'offered', e.at), offer: { driverId: e.driverId, expiresAt: e.expiresAt },
      tried: [...s.tried, e.driverId], queue: s.queue.filter((c) => c.driverId !== e.driverId),
    };
    case 'offer.failed': {
      const next = s.status === 'offered' ? { ...withStatus(s, 'searching', e.at), offer: undefined } : { ...s, offer: undefined };
      return LAPSED.includes(e.reason) && !s.lapsed?.includes(e.driverId) ? { ...next, lapsed: [...(s.lapsed ?? []), e.driverId] } : next;
    }
    case 'accepted': return { ...withStatus(s, 'accepted', e.at), driverId: e.driverId, offer: undefined, queue: [] };
    // Back to searching: the released driver stays in `tried`; the next search gets a fresh deadline.
    case 'released':
      return {
        ...withStatus(s, 'searching', e.at), driverId: undefined, offer: undefined, queue: [], deadlineAt: 0, searchesBefore: s.searches,
        radiusSince: undefined,
      };
    case 'arriving': return withStatus(s, 'arriving', e.at);
    case 'started': return withStatus(s, 'in_progress', e.at);
    case 'completed': return withStatus(s, 'completed', e.at);
    case 'cancelled': return { ...withStatus(s, 'cancelled', e.at), cancelledBy: e.by, offer: undefined, queue: [] };
    case 'no_driver': return { ...withStatus(s, 'no_driver', e.at), offer: undefined, queue: [] };
    case 'rated': return { ...s, rating: { stars: e.stars, comment: e.comment } };
  }
}

/** The booking as the API shows it. */
export function bookingView(s: BookingState) {
  return {
    id: s.id, riderId: s.riderId, status: s.status, vehicleType: s.vehicleType, pickup: s.pickup, dropoff: s.dropoff,
    ...(s.scheduledAt !== undefined ? { scheduledAt: new Date(s.scheduledAt).toISOString() } : {}),
    price: s.price, surge: s.surge, distanceKm: s.distanceKm, durationMin: s.durationMin,
    ...(s.driverId ? { driverId: s.driverId } : {}),
    createdAt: new Date(s.createdAt).toISOString(),
    timeline: s.timeline.map((t) => ({ status: t.status, at: new Date(t.at).toISOString() })),
    ...(s.rating ? { rating: s.rating } : {}),
  };
}

/** What handling one message of a booking comes to. */
type BookingOutcome = Outcome<BookingState, BookingEvent, BookingRejection>;

/** Part of an outcome: events to journal and effects to run, before the announcements. */
interface Step {
  readonly events: readonly BookingEvent[];
  readonly effects: readonly Effect[];
}

export function makeBookingBehavior(
  settings: BookingSettings = DEFAULT_BOOKING,
): Behavior<BookingState, BookingMessage, BookingEvent, BookingQuery, unknown, BookingRejection> {
  function result(s: BookingState, events: readonly BookingEvent[], effects: readonly Effect[] = [], reply?: unknown): BookingOutcome {
    const next = events.reduce(applyBooking, s);
    if (next.status === s.status) return { state: next, events, effects, ...(reply !== undefined ? { reply } : {}) };
    // One view for every announcement: it is plain data, serialized by each receiver, and
    // building it (a date string per step of the timeline) three times was a twentieth of a
    // booking's CPU on an embedded node.
    const booking = bookingView(next);
    const announce: Effect[] = [
      { type: 'publish', topic: 'booking', event: {
        type: `booking.${next.status}`, at: next.timeline.at(-1)?.at, booking,
        pickupCell: next.pickupCell, driverId: next.driverId ?? next.offer?.driverId,
      } },
      // Rider and assigned driver both see every transition of the booking.
      ...[next.riderId, next.driverId].filter((u): u is string => u !== undefined)
        .map((userId): Effect => ({ type: 'notify', userId, message: { type: 'booking.updated', booking } })),
    ];
    return { state: next, events, effects: [...effects, ...announce], ...(reply !== undefined ? { reply } : {}) };
  }

  /** The outcome of one step, with `before` effects run ahead of it. */
  const stepped = (s: BookingState, step: Step, before: readonly Effect[] = []): BookingOutcome =>
    result(s, step.events, [...before, ...step.effects]);

  const batched = settings.dispatchMode === 'batched';

  /** The search itself: a request to `nearest` (greedy), or a join of the pickup's area (batched). */
  function ask(s: BookingState, searchNo: number, radiusKm: number, now: number): Effect {
    const q = { bookingId: s.id, search: searchNo, point: s.pickup, radiusKm, k: settings.candidatesPerSearch, vehicleType: s.vehicleType };
    if (!batched) return { type: 'request', service: 'nearest', payload: q };
    const since = radiusKm === s.radiusKm && s.radiusSince !== undefined ? s.radiusSince : now;
    // Soft: a join lost on the way (an owner that moved) is sent again by the retry timer.
    return { type: 'tell', durable: false, to: { kind: 'area', id: areaOf(s.pickupCell) }, message: {
      type: 'join', ...q, tried: s.tried, wider: widerRadii(radiusKm, since),
    } };
  }

  /** Widenings that took a search from the first radius to `radiusKm`. */
  const widenings = (radiusKm: number) =>
    Math.round(Math.log2(Math.max(radiusKm, settings.initialRadiusKm) / settings.initialRadiusKm));

  /**
   * The radii past `radiusKm` a batch may search for this booking, each from when a greedy
   * search first at `radiusKm` at `since` would have reached it (its backoffs in between).
   */
  function widerRadii(radiusKm: number, since: number): WiderRadius[] {
    const out: WiderRadius[] = [];
    let n = widenings(radiusKm);
    let from = since;
    for (let r = radiusKm; r < settings.maxRadiusKm;) {
      n += 1;
      from += searchBackoff(settings, n);
      r = widerThan(r);
      out.push({ radiusKm: r, from });
    }
    return out;
  }

  const retryTimer = (now: number, searchNo: number): Effect =>
    ({ type: 'timer.set', name: 'search', at: now + settings.searchRetryMs, message: { type: 'search.retry', search: searchNo } });

  function search(s: BookingState, now: number, radiusKm: number): Step {
    const searchNo = s.searches + 1;
    const deadlineAt = s.deadlineAt > 0 && s.status !== 'scheduled' ? s.deadlineAt : now + settings.deadlineMs;
    return {
      events: [{ type: 'search.started', at: now, search: searchNo, radiusKm, deadlineAt }],
      effects: [
        ask(s, searchNo, radiusKm, now),
        retryTimer(now, searchNo),
        { type: 'timer.set', name: 'deadline', at: deadlineAt, message: { type: 'deadline' } },
      ],
    };
  }

  /**
   * Batched mode, nobody to offer: the next batch, at once. After an offer that failed, at
   * the same radius (there were drivers near). After a batch that gave it nobody (`empty`),
   * wider only once the greedy backoff for this radius and one window have passed since
   * it was first searched.
   */
  function rejoin(s: BookingState, now: number, empty: boolean): Step {
    const due = (s.radiusSince ?? now) + settings.batchMs + searchBackoff(settings, widenings(s.radiusKm) + 1);
    return search(s, now, empty && now >= due ? wider(s) : s.radiusKm);
  }

  /**
   * Offer to the best untried candidate; when a search found none, to a driver who let its
   * offer run out, once more. With nobody to offer: give up at the deadline only; right after
   * a search (`searched`) wait out a backoff before the next one, else (the candidates of a
   * search ran out) search again at once, wider.
   */
  function offerOrWidenOrGiveUp(s: BookingState, now: number, searched = false): Step {
    const o = { bookingId: s.id, radiusKm: s.radiusKm, now, tried: s.tried, weights: settings.weights };
    const best = rankCandidates(s.queue, o)[0] ?? (searched ? rankSecondChances(s.queue, { ...o, lapsed: s.lapsed ?? [] })[0] : undefined);
    if (best) {
      const expiresAt = now + settings.offerTimeoutMs;
      return {
        events: [{ type: 'offered', at: now, driverId: best.driverId, expiresAt }],
        effects: [
          { type: 'timer.cancel', name: 'search' },
          { type: 'tell', to: driverRef(best.driverId), message: {
            type: 'offer', bookingId: s.id, riderId: s.riderId, pickup: s.pickup, dropoff: s.dropoff, price: s.price, expiresAt,
          } },
          { type: 'timer.set', name: 'offer', at: expiresAt, message: { type: 'offer.timeout', driverId: best.driverId } },
        ],
      };
    }
    if (now >= s.deadlineAt) return giveUp(now);
    if (batched) return rejoin(s, now, searched);
    if (searched) {
      const wait = searchBackoff(settings, s.searches - (s.searchesBefore ?? 0));
      // Never past the deadline, whose own timer ends the booking.
      return { events: [], effects: [
        { type: 'timer.set', name: 'search', at: Math.min(now + wait, s.deadlineAt), message: { type: 'search.next', search: s.searches } },
      ] };
    }
    return search(s, now, wider(s));
  }

  /** The next radius after `radiusKm`: twice it, up to the widest. */
  function widerThan(radiusKm: number): number {
    return Math.min(settings.maxRadiusKm, Math.max(radiusKm, settings.initialRadiusKm) * 2);
  }

  function wider(s: BookingState): number {
    return widerThan(s.radiusKm);
  }

  /** The booking as it is now, for a read model row that missed a transition (no analytics count it). */
  function synced(s: BookingState, now: number): BookingOutcome {
    return { state: s, events: [], effects: [{ type: 'publish', topic: 'booking', event: {
      type: 'booking.synced', at: now, booking: bookingView(s), pickupCell: s.pickupCell, driverId: s.driverId ?? s.offer?.driverId,
    } }] };
  }

  /** The deadline passed with nobody accepted: the booking ends `no_driver` and its dispatch timers stop. */
  function giveUp(now: number): Step {
    return { events: [{ type: 'no_driver', at: now }], effects: cancelTimers(DISPATCH_TIMERS) };
  }

  /** The current offer ended without an acceptance (refused, declined, timed out): move on. */
  function offerFailed(s: BookingState, driverId: string, reason: string, now: number): BookingOutcome {
    if (s.status !== 'offered' || s.offer?.driverId !== driverId) return unchanged(s);
    const failed: BookingEvent = { type: 'offer.failed', at: now, driverId, reason };
    const step = offerOrWidenOrGiveUp(applyBooking(s, failed), now);
    return result(s, [failed, ...step.events], [{ type: 'timer.cancel', name: 'offer' }, ...step.effects]);
  }

  const withdraw = (bookingId: string, driverId: string): Effect =>
    ({ type: 'tell', to: driverRef(driverId), message: { type: 'offer.withdrawn', bookingId } });

  const handle = (s: BookingState, m: BookingMessage, ctx: HandleContext): BookingOutcome => {
    const now = ctx.now;
    if (s.status === 'none' && m.type !== 'create') {
      if (m.type === 'offer.accepted') return { ...unchanged(s), effects: [withdraw(s.id, m.driverId)] };
      return rejected(s, 'not_found', `booking ${s.id} does not exist`);
    }
    switch (m.type) {
      case 'create': {
        if (s.status !== 'none') {
          return m.requestKey !== undefined && s.requestKey !== undefined && m.requestKey !== s.requestKey
            ? rejected(s, 'already_created', 'this booking was created by another request')
            : unchanged(s, bookingView(s));
        }
        // Never a ride with no price: whatever priced it (a tariff lookup gone wrong, an old quote), the amount is whole minor units.
        if (!Number.isSafeInteger(m.price?.amount) || m.price.amount < 0) {
          return rejected(s, 'invalid_price', `price.amount must be a whole, non-negative number of minor units, not ${m.price?.amount}`);
        }
        const { type: _t, ...fields } = m;
        const created: BookingEvent = { type: 'created', at: now, id: s.id, deadlineAt: 0, radiusKm: settings.initialRadiusKm, ...fields };
        const base = applyBooking(s, created);
        const demand: Effect = { type: 'tell', durable: false, to: { kind: 'cell', id: m.pickupCell }, message: { type: 'demand', at: now } };
        if (m.scheduledAt !== undefined && m.scheduledAt > now) {
          // Its own durable timer activates it (at once when already inside the lead window).
          const activate: Effect = {
            type: 'timer.set', name: 'activate', at: Math.max(now, m.scheduledAt - settings.scheduleLeadMs), message: { type: 'activate' },
          };
          return result(s, [created], [demand, activate], bookingView(base));
        }
        const first = search(base, now, settings.initialRadiusKm);
        const all = [created, ...first.events];
        return result(s, all, [demand, ...first.effects], bookingView(all.reduce(applyBooking, s)));
      }
      case 'activate': {
        // Idempotent: the timer and the sweep may both ask, and only one activates. A booking
        // that has moved on (a sweep that read a stale row, or came second) changes nothing
        // and publishes its current view, which corrects the row.
        if (s.status !== 'scheduled') return synced(s, now);
        return stepped(s, search(s, now, settings.initialRadiusKm), [{ type: 'timer.cancel', name: 'activate' }]);
      }
      case 'candidates': {
        if (s.status !== 'searching' || m.search !== s.searches) return unchanged(s);
        const received: BookingEvent = { type: 'candidates.received', queue: m.drivers };
        const step = offerOrWidenOrGiveUp(applyBooking(s, received), now, true);
        return result(s, [received, ...step.events], step.effects);
      }
      case 'search.next':
      case 'search.retry': {
        if (s.status !== 'searching' || m.search !== s.searches) return unchanged(s);
        if (now >= s.deadlineAt) return stepped(s, giveUp(now));
        // Batched: the same join again (its area may have lost it); the area takes a repeat once.
        if (batched && m.type === 'search.retry') return result(s, [], [ask(s, s.searches, s.radiusKm, now), retryTimer(now, s.searches)]);
        // After a backoff, wider; after a search that got no answer, the same radius again.
        return stepped(s, search(s, now, m.type === 'search.next' ? wider(s) : s.radiusKm));
      }
      // The three ways an offer ends unaccepted (see the top of this file).
      case 'offer.timeout':
        return withWithdraw(offerFailed(s, m.driverId, 'timeout', now), s, m.driverId);
      case 'offer.refused':
        return offerFailed(s, m.driverId, m.reason, now);
      case 'offer.declined':
        return offerFailed(s, m.driverId, m.expired ? 'expired' : 'declined', now);
      case 'offer.accepted': {
        if (s.status === 'offered' && s.offer?.driverId === m.driverId) {
          return result(s, [{ type: 'accepted', at: now, driverId: m.driverId }], cancelTimers(DISPATCH_TIMERS));
        }
        // Too late (timed out, cancelled, or already given to someone else): release the driver.
        return rejected(s, 'offer_closed', 'the offer is no longer open', [withdraw(s.id, m.driverId)]);
      }
      case 'driver.released': {
        if ((s.status !== 'accepted' && s.status !== 'arriving') || s.driverId !== m.driverId) return unchanged(s);
        const released: BookingEvent = { type: 'released', at: now, driverId: m.driverId, reason: m.reason };
        const step = search(applyBooking(s, released), now, settings.initialRadiusKm);
        return result(s, [released, ...step.events], step.effects);
      }
      case 'deadline':
        if (s.status !== 'searching' && s.status !== 'offered') return unchanged(s);
        return withWithdraw(stepped(s, giveUp(now)), s, s.offer?.driverId);
      case 'trip.arrived':
        if (s.status !== 'accepted' || s.driverId !== m.driverId) {
          return rejected(s, 'invalid_transition', `cannot arrive while ${s.status}`);
        }
        return result(s, [{ type: 'arriving', at: now }]);
      case 'trip.started':
        if ((s.status !== 'arriving' && s.status !== 'accepted') || s.driverId !== m.driverId) {
          return rejected(s, 'invalid_transition', `cannot start while ${s.status}`);
        }
        return result(s, [{ type: 'started', at: now }]);
      case 'trip.completed':
        if (s.status !== 'in_progress' || s.driverId !== m.driverId) {
          return rejected(s, 'invalid_transition', `cannot complete while ${s.status}`);
        }
        return result(s, [{ type: 'completed', at: now }]);
      case 'cancel': {
        if (m.by.role === 'rider' && m.by.userId !== s.riderId) return rejected(s, 'forbidden', 'only the rider who booked may cancel');
        if (m.by.role === 'driver') return rejected(s, 'forbidden', 'drivers decline offers instead of cancelling');
        if (!CANCELLABLE.includes(s.status)) return rejected(s, 'conflict', `a booking that is ${s.status} cannot be cancelled`);
        const holder = s.driverId ?? s.offer?.driverId;
        const effects = cancelTimers(s.status === 'scheduled' ? ['activate'] : DISPATCH_TIMERS);
        if (holder) {
          effects.push({
            type: 'tell', to: driverRef(holder), message: { type: s.driverId ? 'booking.cancelled' : 'offer.withdrawn', bookingId: s.id },
          });
        }
        return result(s, [{ type: 'cancelled', at: now, by: m.by.role, reason: m.reason }], effects);
      }
      case 'rate': {
        if (m.by.role !== 'rider' || m.by.userId !== s.riderId) {
          return rejected(s, 'forbidden', 'only the rider of the booking may rate it');
        }
        if (s.status !== 'completed') return rejected(s, 'conflict', 'only a completed booking can be rated');
        if (s.rating) return rejected(s, 'conflict', 'this booking is already rated');
        if (!Number.isInteger(m.stars) || m.stars < 1 || m.stars > 5) {
          return rejected(s, 'invalid_rating', 'stars must be an integer from 1 to 5');
        }
        const rated: BookingEvent = { type: 'rated', stars: m.stars, comment: m.comment };
        const next = applyBooking(s, rated);
        return {
          state: next,
          events: [rated],
          effects: [
            { type: 'tell', to: driverRef(s.driverId!), message: { type: 'rated', bookingId: s.id, stars: m.stars } },
            { type: 'publish', topic: 'booking', event: {
              type: 'booking.rated', at: now, booking: bookingView(next), pickupCell: s.pickupCell, stars: m.stars,
            } },
          ],
        };
      }
    }
  };

  /** After a timeout or deadline the driver may still hold the offer: tell it to let go. */
  function withWithdraw(out: BookingOutcome, before: BookingState, driverId: string | undefined): BookingOutcome {
    if (!driverId || before.offer?.driverId !== driverId || out.events.length === 0) return out;
    return { ...out, effects: [withdraw(before.id, driverId), ...out.effects] };
  }

  return {
    kind: 'booking',
    eventVersion: 1,
    initial: initialBooking,
    handle,
    apply: applyBooking,
    query: (s) => (s.status === 'none' ? null : bookingView(s)),
  };
}
