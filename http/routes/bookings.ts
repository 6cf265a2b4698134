// Quotes and bookings. A booking is created through its actor (the only writer),
// read from its actor (authoritative) or listed from the read model.

import { createHash, randomUUID } from 'node:crypto';
import { randomId } from '../../runtime/random-id.ts';
import { latLngToCell } from 'h3-js';
import { z } from 'zod';
import { quote as priceQuote } from '../../actors/pricing.ts';
import { Api } from '../api.ts';
import { principalOf } from '../authenticate.ts';
import { mayRead } from '../booking-access.ts';
import type { Edge } from '../edge.ts';
import { pricingPolicy } from '../edge.ts';
import { HttpError } from '../errors.ts';
import { BookingId } from '../ids.ts';
import { fieldsSet } from '../audit.ts';
import {
  Booking, BookingCreate, BookingList, BookingListQuery, CancelRequest, IdempotencyKey, PROJECTION_LAG, Quote, QuoteRequest, RatingRequest,
  encodeBookingCursor,
} from '../schemas.ts';
import { outcome } from '../rejections.ts';
import { surgeAt } from '../surge.ts';
import { requireVehicleType } from '../vehicle-types.ts';
import type { CommandResult } from '../../runtime/ports.ts';

async function makeQuote(
  edge: Edge, riderId: string, input: { pickup: { lat: number; lng: number }; dropoff: { lat: number; lng: number }; vehicleType: string },
) {
  await requireVehicleType(edge, 'body.vehicleType', input.vehicleType);
  const policy = await pricingPolicy(edge);
  const { surge } = await surgeAt(edge, input.pickup);
  const q = priceQuote({ ...input, surge, now: Date.now() }, policy);
  const pickupCell = latLngToCell(input.pickup.lat, input.pickup.lng, edge.domain.dispatch.cellRes);
  return { q, pickupCell, quoteId: edge.quotes.sign({ ...q, riderId, pickupCell }) };
}

/**
 * Someone else's booking is one this caller cannot see: the booking's refusal of a stranger
 * (`forbidden`) is answered as an unknown booking is, word for word, so no answer confirms an id.
 */
function unseen(id: string, result: CommandResult): CommandResult {
  const code = result.status === 'rejected' ? result.rejection?.code : undefined;
  if (code === 'forbidden' || code === 'not_found') throw new HttpError(404, 'not_found', `no booking ${id}`);
  return result;
}

const digest = (text: string) => createHash('sha256').update(text).digest('base64url').slice(0, 22);

export function bookingRoutes(edge: Edge): Api {
  const api = new Api({ audit: edge.audit });
  const bookingRef = (id: string) => ({ kind: 'booking', id });
  // A malformed id is answered 404 before the handler runs (Api.add), as an unknown one is.
  const params = z.object({ id: BookingId });

  api.add({
    method: 'post', path: '/v1/quotes', tag: 'bookings', summary: 'Price a trip; the quote locks the price until it expires',
    roles: ['rider'], body: QuoteRequest, response: Quote, status: 201,
    handler: async (ctx, { body }) => {
      const { q, quoteId } = await makeQuote(edge, principalOf(ctx.state).sub, body);
      return {
        quoteId, price: q.price, surge: q.surge, distanceKm: q.distanceKm, durationMin: q.durationMin, vehicleType: q.vehicleType,
        expiresAt: new Date(q.expiresAt).toISOString(),
      };
    },
  });

  api.add({
    method: 'post', path: '/v1/bookings', tag: 'bookings', summary: 'Book now or for later, from a quote or from scratch',
    roles: ['rider'], body: BookingCreate, response: Booking, status: 201, errors: [409],
    headers: [{ name: 'Idempotency-Key', description: 'the same key from the same rider creates one booking', schema: IdempotencyKey }],
    responseHeaders: [{
      name: 'Location', required: true, description: 'where the booking is read', schema: z.string().regex(/^\/v1\/bookings\/bk_[\w-]+$/),
    }],
    handler: async (ctx, { body }) => {
      const riderId = principalOf(ctx.state).sub;
      let terms;
      if ('quoteId' in body) {
        const verified = edge.quotes.verify(body.quoteId, Date.now());
        if (typeof verified === 'string') throw new HttpError(400, 'invalid_quote', verified);
        if (verified.riderId !== riderId) throw new HttpError(403, 'forbidden', 'this quote was made for another rider');
        terms = { q: verified, pickupCell: verified.pickupCell };
      } else {
        terms = await makeQuote(edge, riderId, body);
      }
      const scheduledAt = body.scheduledAt ? Date.parse(body.scheduledAt) : undefined;
      if (scheduledAt !== undefined && scheduledAt < Date.now() - 60_000) {
        throw new HttpError(400, 'invalid_request', 'scheduledAt is in the past');
      }
      if (scheduledAt !== undefined && scheduledAt > Date.now() + 30 * 86_400_000) {
        throw new HttpError(400, 'invalid_request', 'scheduledAt is more than 30 days ahead');
      }
      const key = ctx.get('idempotency-key');
      if (key && !IdempotencyKey.safeParse(key).success) {
        throw new HttpError(400, 'invalid_request', 'Idempotency-Key must be 1-128 characters of letters, digits, . : _ -');
      }
      // A booking from a quote is named by the quote, so the quote books once: another
      // request for it (another key, or none) reaches the same booking and is refused.
      const quoteId = 'quoteId' in body ? body.quoteId : undefined;
      const id = quoteId ? `bk_${digest(quoteId)}` : key ? `bk_${digest(`${riderId}\u0000${key}`)}` : randomId('bk_');
      const requestKey = quoteId ? key || randomUUID() : undefined;
      const { q, pickupCell } = terms;
      const result = await edge.region.request(bookingRef(id), {
        type: 'create', riderId, vehicleType: q.vehicleType, pickup: q.pickup, dropoff: q.dropoff, pickupCell,
        price: q.price, surge: q.surge, distanceKm: q.distanceKm, durationMin: q.durationMin,
        ...(scheduledAt !== undefined ? { scheduledAt } : {}),
        ...(requestKey ? { requestKey } : {}),
      }, { id: key ? `create:${id}:${digest(key)}` : undefined });
      if (result.status === 'rejected' && result.rejection?.code === 'already_created') {
        throw new HttpError(409, 'quote_used', 'this quote has already been booked; ask for a new quote');
      }
      // A retried request whose create command was already applied is a duplicate: answer with the booking.
      const view = (result.status === 'duplicate'
        ? await edge.region.ask(bookingRef(id), { type: 'get' })
        : outcome(result)) as { riderId: string };
      if (view.riderId !== riderId) throw new HttpError(409, 'conflict', 'booking id collision');
      ctx.set('Location', `/v1/bookings/${id}`);
      // What the bookings-per-minute limit counts (node.ts): a booking made now, not one answered again.
      ctx.state.created = result.status === 'applied';
      return view;
    },
  });

  api.add({
    method: 'get', path: '/v1/bookings/:id', tag: 'bookings', summary: 'A booking with its status, driver, price and timeline',
    roles: ['rider', 'driver', 'admin'], params, response: Booking,
    handler: async (ctx, { params }) => {
      const view = await edge.region.ask<{ riderId: string; driverId?: string } | null>(bookingRef(params.id), { type: 'get' });
      // Another rider's booking is "not found", not "forbidden": ids are not confirmed to strangers.
      if (!view || !mayRead(principalOf(ctx.state), view)) throw new HttpError(404, 'not_found', `no booking ${params.id}`);
      return view;
    },
  });

  api.add({
    method: 'get', path: '/v1/bookings', tag: 'bookings',
    summary: 'Bookings, newest first: a rider sees their own, an admin all (with filters)',
    roles: ['rider', 'driver', 'admin'], query: BookingListQuery, response: BookingList, responseHeaders: [PROJECTION_LAG],
    handler: async (ctx, { query }) => {
      const p = principalOf(ctx.state);
      if (p.role !== 'admin' && (query.riderId || query.driverId)) {
        throw new HttpError(403, 'forbidden', 'only admins filter by rider or driver');
      }
      // Every value here is checked by BookingListQuery (the cursor arrives decoded), so the read model gets nothing it cannot bind.
      ctx.set('X-Projection-Lag-Ms', String(Math.round(edge.projector.lagMs('bookings'))));
      const page = await edge.readModels.listBookings({
        status: query.status, limit: query.limit, cursor: query.cursor,
        riderId: p.role === 'rider' ? p.sub : query.riderId,
        driverId: p.role === 'driver' ? p.sub : query.driverId,
        from: query.from ? Date.parse(query.from) : undefined, to: query.to ? Date.parse(query.to) : undefined,
      });
      return { items: page.items, ...(page.nextCursor ? { nextCursor: encodeBookingCursor(page.nextCursor) } : {}) };
    },
  });

  api.add({
    method: 'post', path: '/v1/bookings/:id/cancel', tag: 'bookings', summary: 'Cancel (409 once in progress or finished)',
    roles: ['rider', 'admin'], body: CancelRequest.optional().default({}), params, response: Booking, errors: [409],
    // Recorded when an admin cancels (a rider's own cancel is the booking's timeline).
    audit: ({ params, body }) => ({ target: `booking:${params.id}`, summary: `cancel booking: ${fieldsSet(body)}` }),
    handler: async (ctx, { params, body }) => {
      const p = principalOf(ctx.state);
      outcome(unseen(params.id, await edge.region.request(bookingRef(params.id), {
        type: 'cancel', by: { role: p.role, userId: p.sub }, reason: body?.reason,
      })));
      return edge.region.ask(bookingRef(params.id), { type: 'get' });
    },
  });

  api.add({
    method: 'post', path: '/v1/bookings/:id/rating', tag: 'bookings', summary: 'Rate a completed booking once',
    roles: ['rider'], body: RatingRequest, params, response: Booking, errors: [409],
    handler: async (ctx, { params, body }) => {
      const p = principalOf(ctx.state);
      outcome(unseen(params.id, await edge.region.request(bookingRef(params.id), {
        type: 'rate', by: { role: p.role, userId: p.sub }, stars: body.stars, comment: body.comment,
      })));
      return edge.region.ask(bookingRef(params.id), { type: 'get' });
    },
  });
  return api;
}
