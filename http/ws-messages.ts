// The WebSocket protocol at /v1/ws, in zod: every message a client may send (the
// gateway validates against these) and every message the server sends (pushed by
// http/ws.ts, http/ops-feed.ts and the actors' notify effects in actors/driver.ts
// and actors/booking.ts). http/asyncapi.ts turns both unions into the AsyncAPI
// document, so the published protocol is the one the code checks.

import { z } from 'zod';
import type { Role } from './auth.ts';
import { BookingRef, text } from './ids.ts';
import { Booking, BookingStatus, Money, Point, VehicleType } from './schemas.ts';

const isoTime = z.iso.datetime({ offset: true });
/** Times the server writes come from Date#toISOString: UTC with a Z. */
const serverTime = z.iso.datetime();
// Every string a client sends has a format or is text() (http/ids.ts): a control character or an unpaired
// surrogate is `invalid_message` naming the field, never a command storage would refuse.
const bookingId = BookingRef.describe('The booking this message is about.');

// ---- client -> server -------------------------------------------------------

export const Fix = z.object({
  lat: z.number().min(-90).max(90), lng: z.number().min(-180).max(180),
  heading: z.number().min(0).max(360).optional(), speed: z.number().min(0).max(120).optional(), at: isoTime,
}).strict().meta({
  id: 'Fix',
  description: 'A GPS fix: position, optional heading (degrees from north) and speed (m/s), and when it was taken. A fix older than the ' +
    'driver\'s newest is ignored; a time more than 10 s ahead of the server\'s clock counts as 10 s ahead.',
});

const ref = {
  ref: z.union([text().max(64), z.number()]).optional()
    .describe('Chosen by the client; echoed in the `ack` or `error` that answers this message.'),
};
const booking = { bookingId };

const EXAMPLE_BOOKING = 'bk_Qm9va2luZy1FeGFtcGxlMQ';
const EXAMPLE_AT = '2026-03-01T08:15:30.000Z';

/**
 * Messages about one booking and nothing else: type, AsyncAPI id, example ref and text.
 * The schema and the shape of the example are the same for each.
 */
const ABOUT_ONE_BOOKING = ([
  ['offer.accept', 'OfferAcceptMessage', 'acc-1',
    'Driver only. Accept the open offer for this booking. Refused with `no_such_offer` when the driver holds no open offer ' +
      'for it (expired, withdrawn, or another booking).'],
  ['offer.decline', 'OfferDeclineMessage', 'dec-1',
    'Driver only. Decline the open offer; the booking moves on to the next candidate. Refused with `no_such_offer` as for ' +
      '`offer.accept`.'],
  ['trip.arrived', 'TripArrivedMessage', 'arr-1',
    'Driver only. Arrived at the pickup (booking becomes `arriving`). Refused with `not_assigned` unless the driver is ' +
      'assigned to this booking.'],
  ['trip.start', 'TripStartMessage', 'start-1',
    'Driver only. The rider is on board (booking becomes `in_progress`). Refused with `not_assigned` unless the driver is ' +
      'assigned to this booking.'],
  ['trip.complete', 'TripCompleteMessage', 'done-1',
    'Driver only. The trip is over (booking becomes `completed`, driver available). Refused with `not_on_trip` unless the ' +
      'driver is on this booking\'s trip.'],
  ['subscribe', 'SubscribeMessage', 'sub-1',
    'Any role that may read the booking (its rider, its assigned driver, an admin): answered with `ack` and then a ' +
      '`booking.updated` carrying the current booking. A rider then receives every `booking.updated` and `driver.location` of that ' +
      'booking (pushes to riders are filtered by subscription; drivers receive what is addressed to them regardless, and nothing is ' +
      'addressed to admins). `not_found` when the booking does not exist or is not the caller\'s.'],
] as const).map(([type, id, exampleRef, description]) => z.object({ type: z.literal(type), ...booking, ...ref }).strict().meta({
  id,
  description,
  examples: [{ type, bookingId: EXAMPLE_BOOKING, ref: exampleRef }],
}));

export const ClientMessage = z.discriminatedUnion('type', [
  z.object({ type: z.literal('auth'), token: text().max(4096).describe('A JWT, as for `Authorization: Bearer`.'), ...ref }).strict().meta({
    id: 'AuthMessage',
    description: 'Authenticates the socket (any role): send it first; the socket is closed with 4401 if no valid token arrives within ' +
      '10 s or if another message comes first, and with 1009 if the first message is over 8 KiB. Answered with `ack`; an invalid token ' +
      'gets `error` `unauthenticated` and close 4401. Sent again later with a fresh token for the same user, it extends the session.',
    examples: [{ type: 'auth', token: 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJkcml2ZXItNDIiLCJyb2xlIjoiZHJpdmVyIn0.c2lnbmF0dXJl', ref: 'auth-1' }],
  }),
  z.object({
    type: z.literal('online'),
    vehicleType: VehicleType.describe(
      'A vehicle type pricing defines (economy, comfort, xl by default): the type of the driver\'s vehicle, or one an admin allowed ' +
      'for a driver without a vehicle.',
    ),
    ...ref,
  }).strict().meta({
    id: 'OnlineMessage',
    description: 'Driver only. Go online (available for offers) with this vehicle type; repeating it while available changes the vehicle ' +
      'type. Refused with `inactive` for a deactivated driver and `driver_pending_approval` for a self-registered one an admin has not ' +
      'approved yet; `unknown_vehicle_type` for a type pricing does not define, and `vehicle_type_not_allowed` for a type that is not ' +
      'the driver\'s vehicle\'s (or, without a vehicle, not one an admin allowed it).',
    examples: [{ type: 'online', vehicleType: 'economy', ref: 1 }],
  }),
  z.object({ type: z.literal('offline'), ...ref }).strict().meta({
    id: 'OfflineMessage',
    description: 'Driver only. Go offline; an open offer is declined. Refused with `on_trip` while a booking is in hand.',
    examples: [{ type: 'offline', ref: 2 }],
  }),
  z.object({ type: z.literal('location'), ...Fix.shape, ...ref }).strict().meta({
    id: 'LocationMessage',
    description: 'Driver only. One GPS fix. Acknowledged once handed to the driver\'s actor (not waited for). The rider of the booking ' +
      'in hand receives it as `driver.location`.',
    examples: [{ type: 'location', lat: 41.3874, lng: 2.1686, heading: 90, speed: 8.5, at: EXAMPLE_AT, ref: 'fix-17' }],
  }),
  z.object({ type: z.literal('location.batch'), fixes: z.array(Fix).min(1).max(500), ...ref }).strict().meta({
    id: 'LocationBatchMessage',
    description: 'Driver only. Up to 500 fixes buffered while the connection was down, in any order: the newest one counts.',
    examples: [{
      type: 'location.batch',
      fixes: [{ lat: 41.3874, lng: 2.1686, at: '2026-03-01T08:15:00.000Z' }, { lat: 41.3879, lng: 2.1690, heading: 45, at: EXAMPLE_AT }],
      ref: 'batch-3',
    }],
  }),
  ...ABOUT_ONE_BOOKING,
  z.object({ type: z.literal('ops.subscribe'), ...ref }).strict().meta({
    id: 'OpsSubscribeMessage',
    description: 'Admin only. Answered with `ack`, then an `ops.snapshot` at once and every 2 s until the socket closes.',
    examples: [{ type: 'ops.subscribe', ref: 'ops' }],
  }),
]);
export type ClientMessage = z.infer<typeof ClientMessage>;

/** Who may send each client message; the rest are refused with `forbidden`. */
export const CLIENT_ROLES = {
  auth: ['rider', 'driver', 'admin'],
  online: ['driver'],
  offline: ['driver'],
  location: ['driver'],
  'location.batch': ['driver'],
  'offer.accept': ['driver'],
  'offer.decline': ['driver'],
  'trip.arrived': ['driver'],
  'trip.start': ['driver'],
  'trip.complete': ['driver'],
  subscribe: ['rider', 'driver', 'admin'],
  'ops.subscribe': ['admin'],
} as const satisfies Record<ClientMessage['type'], readonly Role[]>;

/** The messages the gateway turns into commands to the session's own driver actor. */
export const DRIVER_ONLY: ReadonlySet<string> = new Set(Object.entries(CLIENT_ROLES)
  .filter(([, roles]) => roles.length === 1 && roles[0] === 'driver').map(([type]) => type));

// ---- server -> client -------------------------------------------------------

/** The booking as REST shows it, with the fields the booking actor's view adds. */
export const BookingView = Booking.extend({
  distanceKm: z.number(), durationMin: z.number(),
  rating: z.object({ stars: z.number().int().min(1).max(5), comment: z.string().optional() }).optional(),
}).meta({ id: 'BookingView', description: 'A booking as `GET /v1/bookings/{id}` returns it.' });

const EXAMPLE_VIEW = {
  id: EXAMPLE_BOOKING, riderId: 'rider-7', status: 'accepted', vehicleType: 'economy',
  pickup: { lat: 41.3874, lng: 2.1686 }, dropoff: { lat: 41.4036, lng: 2.1744 }, price: { amount: 845, currency: 'USD' }, surge: 1,
  distanceKm: 2.4, durationMin: 5.8, driverId: 'driver-42', createdAt: '2026-03-01T08:14:02.000Z',
  timeline: [
    { status: 'searching', at: '2026-03-01T08:14:02.000Z' },
    { status: 'offered', at: '2026-03-01T08:14:03.000Z' },
    { status: 'accepted', at: '2026-03-01T08:14:09.000Z' },
  ],
};

export const ServerMessage = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('ack'),
    ref: z.union([z.string(), z.number(), z.null()]).describe('The `ref` of the message acknowledged, or null when it had none.'),
  }).meta({
    id: 'AckMessage',
    description: 'The message with this `ref` was accepted: validated and, for driver commands, applied by the driver\'s actor (for ' +
      '`location` and `location.batch`: handed to it).',
    examples: [{ type: 'ack', ref: 'acc-1' }, { type: 'ack', ref: null }],
  }),
  z.object({
    type: z.literal('error'),
    code: z.string().describe(
      'snake_case: rate_limited, bad_message, malformed_json, unknown_type, invalid_message, unauthenticated, already_authenticated, ' +
      'forbidden, not_found, unavailable, unknown_vehicle_type, or a refusal of the driver\'s actor (inactive, driver_pending_approval, ' +
      'vehicle_type_not_allowed, on_trip, ' +
      'no_such_offer, not_assigned, not_on_trip, internal_error, ...).',
    ),
    message: z.string().describe('For people, not for programs.'),
    ref: z.unknown().optional().describe(
      'The `ref` of the message refused, as the client sent it; absent when that message had none or could not be read.',
    ),
  }).meta({
    id: 'ErrorMessage',
    description: 'The message was refused. The socket stays open (except after a failed `auth`, or a first message that is not a ' +
      'small `auth`, which close it).',
    examples: [
      { type: 'error', code: 'no_such_offer', message: 'no open offer for booking bk_Qm9va2luZy1FeGFtcGxlMQ', ref: 'acc-1' },
      { type: 'error', code: 'unknown_type', message: 'unknown message type "teleport"' },
    ],
  }),
  z.object({
    type: z.literal('offer'), bookingId, pickup: Point, dropoff: Point, price: Money,
    expiresAt: serverTime.describe('Answer with `offer.accept` or `offer.decline` before this; afterwards `offer.expired` follows.'),
  }).meta({
    id: 'OfferMessage',
    description: 'To a driver: a ride offer. A driver holds at most one offer.',
    examples: [{
      type: 'offer',
      bookingId: EXAMPLE_BOOKING,
      pickup: { lat: 41.3874, lng: 2.1686 },
      dropoff: { lat: 41.4036, lng: 2.1744 },
      price: { amount: 845, currency: 'USD' },
      expiresAt: '2026-03-01T08:14:18.000Z',
    }],
  }),
  z.object({ type: z.literal('offer.expired'), bookingId }).meta({
    id: 'OfferExpiredMessage',
    description: 'To a driver: the offer is gone, because it timed out or the booking withdrew it (cancelled, timed out on its side, or ' +
      'given up).',
    examples: [{ type: 'offer.expired', bookingId: EXAMPLE_BOOKING }],
  }),
  z.object({ type: z.literal('booking.cancelled'), bookingId }).meta({
    id: 'BookingCancelledMessage',
    description: 'To a driver: the booking assigned to them was cancelled; the driver is available again.',
    examples: [{ type: 'booking.cancelled', bookingId: EXAMPLE_BOOKING }],
  }),
  z.object({ type: z.literal('booking.released'), bookingId }).meta({
    id: 'BookingReleasedMessage',
    description: 'To a driver: they were deactivated while assigned to this booking (before the trip started), so it went back to ' +
      'dispatch and is no longer theirs.',
    examples: [{ type: 'booking.released', bookingId: EXAMPLE_BOOKING }],
  }),
  z.object({ type: z.literal('driver.approved') }).meta({
    id: 'DriverApprovedMessage',
    description: 'To a self-registered driver: an admin approved them; they may go online now.',
    examples: [{ type: 'driver.approved' }],
  }),
  z.object({ type: z.literal('driver.deactivated') }).meta({
    id: 'DriverDeactivatedMessage',
    description: 'To a driver: an admin deactivated them. They are offline (or go offline when the trip in progress ends) and `online` ' +
      'is refused with `inactive`.',
    examples: [{ type: 'driver.deactivated' }],
  }),
  z.object({ type: z.literal('booking.updated'), booking: BookingView }).meta({
    id: 'BookingUpdatedMessage',
    description: 'The booking changed status. To its rider once subscribed, and to its assigned driver, at every change; to any ' +
      'subscriber right after the `ack` of `subscribe` (the current booking).',
    examples: [{ type: 'booking.updated', booking: EXAMPLE_VIEW }],
  }),
  z.object({
    type: z.literal('driver.location'), bookingId,
    lat: z.number().min(-90).max(90), lng: z.number().min(-180).max(180),
    heading: z.number().nullable().describe('Degrees from north, or null when the fix had none.'), at: serverTime,
  }).meta({
    id: 'DriverLocationMessage',
    description: 'To a subscribed rider: the assigned driver moved (while the booking is accepted, arriving or in progress). The first ' +
      'thing a slow reader loses.',
    examples: [{ type: 'driver.location', bookingId: EXAMPLE_BOOKING, lat: 41.3881, lng: 2.1686, heading: 180, at: EXAMPLE_AT }],
  }),
  z.object({
    type: z.literal('ops.snapshot'),
    at: serverTime,
    node: z.string().describe('The node that took the snapshot: it shows the cells it owns.'),
    drivers: z.array(z.object({
      id: z.string(), lat: z.number(), lng: z.number(), status: z.enum(['offline', 'available', 'offered', 'assigned', 'on_trip']),
    })),
    cells: z.array(z.object({
      cell: z.string().describe('H3 index.'), surge: z.number(), supply: z.number(), demand: z.number(),
      boundary: z.array(z.array(z.number()).length(2)).describe('The cell\'s outline as [lat, lng] pairs.'),
    })),
    bookings: z.array(z.object({ id: z.string(), status: BookingStatus, pickup: Point, driverId: z.string().nullable() }))
      .describe('Bookings in play, newest first, at most 200.'),
    counters: z.object({
      driversOnline: z.number().int(), driversAvailable: z.number().int(), bookingsLastHour: z.number().int(),
      completed: z.number().int(), noDriver: z.number().int(), active: z.number().int(),
    }),
    cluster: z.object({ nodes: z.array(z.string()), shards: z.array(z.object({ shard: z.number().int(), node: z.string() })) }),
  }).meta({
    id: 'OpsSnapshotMessage',
    description: 'To an admin after `ops.subscribe`, every 2 s: the drivers and cells this node hosts, bookings in play, counters and ' +
      'the shard map.',
    examples: [{
      type: 'ops.snapshot', at: EXAMPLE_AT, node: 'node-1',
      drivers: [{ id: 'driver-42', lat: 41.3881, lng: 2.1686, status: 'assigned' }],
      cells: [{ cell: '87394461affffff', surge: 1.2, supply: 1, demand: 2, boundary: [[41.39, 2.16], [41.38, 2.17], [41.37, 2.16]] }],
      bookings: [{ id: EXAMPLE_BOOKING, status: 'accepted', pickup: { lat: 41.3874, lng: 2.1686 }, driverId: 'driver-42' }],
      counters: { driversOnline: 1, driversAvailable: 0, bookingsLastHour: 3, completed: 2, noDriver: 0, active: 1 },
      cluster: { nodes: ['node-1'], shards: [{ shard: 0, node: 'node-1' }, { shard: 1, node: 'node-1' }] },
    }],
  }),
]);
export type ServerMessage = z.infer<typeof ServerMessage>;

/** Who receives each server message, for the docs. */
export const SERVER_AUDIENCE = {
  ack: ['rider', 'driver', 'admin'],
  error: ['rider', 'driver', 'admin'],
  offer: ['driver'],
  'offer.expired': ['driver'],
  'booking.cancelled': ['driver'],
  'booking.released': ['driver'],
  'driver.approved': ['driver'],
  'driver.deactivated': ['driver'],
  'booking.updated': ['rider', 'driver', 'admin'],
  'driver.location': ['rider'],
  'ops.snapshot': ['admin'],
} as const satisfies Record<ServerMessage['type'], readonly Role[]>;

/** The `type` of each option of a message union, in declaration order. */
export function messageTypes(union: typeof ClientMessage | typeof ServerMessage): string[] {
  return union.options.map((o) => o.shape.type.value);
}
