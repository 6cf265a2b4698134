// Input and output shapes of the API contract (../shared/API.md), in zod: they
// validate at the edge and generate the OpenAPI document.

import { z } from 'zod';
import { TARIFF_LIMIT } from '../actors/pricing.ts';
import { DriverId, isStorableText, text, VehicleId } from './ids.ts';

// Every free string of a request is text() (http/ids.ts): no control characters but tab and
// newline and no unpaired surrogates, which PostgreSQL refuses in text or jsonb; ids have
// their own formats there.

export const Point = z.object({
  lat: z.number().min(-90).max(90),
  lng: z.number().min(-180).max(180),
}).strict().meta({ id: 'Point' });

/** A price is within its tariff's bounds, so at most TARIFF_LIMIT minor units. */
export const Money = z.object({ amount: z.number().int().min(0).max(TARIFF_LIMIT), currency: z.string() }).meta({ id: 'Money' });

/**
 * Vehicle types are what pricing defines; checked against the live policy in handlers. A name
 * every JavaScript object already has (`constructor`, `toString`, `valueOf` ...) is refused
 * here too: it can never be a tariff's name, so no lookup by it can find a built-in instead.
 */
export const VehicleType = z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/, 'a vehicle type is a short lowercase name')
  .refine((name) => !(name in Object.prototype), 'is a name every JavaScript object has, not a vehicle type');

const isoTime = z.iso.datetime({ offset: true });

export const QuoteRequest = z.object({ pickup: Point, dropoff: Point, vehicleType: VehicleType }).strict();

export const Quote = z.object({
  quoteId: z.string(), price: Money, surge: z.number(), distanceKm: z.number(), durationMin: z.number(),
  vehicleType: z.string(), expiresAt: z.string(),
}).meta({ id: 'Quote' });

export const BookingCreate = z.union([
  z.object({ quoteId: text().min(1).max(2048), scheduledAt: isoTime.optional() }).strict(),
  z.object({ pickup: Point, dropoff: Point, vehicleType: VehicleType, scheduledAt: isoTime.optional() }).strict(),
]);

export const BookingStatus = z.enum([
  'scheduled', 'searching', 'offered', 'accepted', 'arriving', 'in_progress', 'completed', 'cancelled', 'no_driver',
]);

export const Booking = z.object({
  id: z.string(), riderId: z.string(), status: BookingStatus, vehicleType: z.string(), pickup: Point, dropoff: Point,
  scheduledAt: z.string().optional(), price: Money, surge: z.number(), distanceKm: z.number(), durationMin: z.number(),
  driverId: z.string().optional(), createdAt: z.string(),
  timeline: z.array(z.object({ status: BookingStatus, at: z.string() })),
  rating: z.object({ stars: z.number().int().min(1).max(5), comment: z.string().optional() }).optional(),
}).meta({ id: 'Booking' });

/** How far behind the journal a list read from a projection may be (X-Projection-Lag-Ms on lists and analytics). */
export const PROJECTION_LAG = {
  name: 'X-Projection-Lag-Ms', required: true, schema: z.string().regex(/^\d+$/),
  description: 'how far behind the journal the answer may be, in ms: the lag of the projections it reads, on this node\'s shards',
} as const;

/** The header that makes a booking request idempotent: what the handler accepts, and what the document says. */
export const IdempotencyKey = z.string().regex(/^[A-Za-z0-9.:_-]{1,128}$/, 'Idempotency-Key must be 1-128 characters of letters, digits, . : _ -');

export const BookingList = z.object({ items: z.array(Booking), nextCursor: z.string().optional() });

// Query parameters. Whatever a query string holds reaches these schemas as text (or, for a
// repeated name, an array of texts, which no schema here accepts); each value that gets past
// them is one the database can take as it is, so bad input is a 400 naming the parameter,
// never a database error (which, on the request path, would be one caller's fault counted
// against everyone's database: see countsAsOutage in adapters/resilience.ts).

/** Every parameter is named in a 400: an unknown one is reported under its own name, not as a nameless "unrecognized key". */
function strictQuery<S extends z.ZodRawShape>(schema: z.ZodObject<S>) {
  const known = new Set(Object.keys(schema.shape));
  return z.preprocess((value, ctx) => {
    if (typeof value !== 'object' || value === null) return value;
    const kept: Record<string, unknown> = {};
    for (const [key, v] of Object.entries(value)) {
      if (known.has(key)) kept[key] = v;
      else ctx.addIssue({ code: 'custom', path: [key], message: 'is not a parameter of this operation', input: v });
    }
    return kept;
  }, schema.strict());
}

const DECIMAL = /^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/;
/** A number written in decimal ('', ' ', '0x10', 'NaN' and 'Infinity' are not, as they would be to Number()). */
function queryNumber<T extends z.ZodType<number>>(schema: T) {
  return z.preprocess((value, ctx) => {
    if (typeof value !== 'string') return value;
    if (!DECIMAL.test(value)) { ctx.addIssue({ code: 'custom', message: 'must be a decimal number', input: value }); return z.NEVER; }
    return Number(value);
  }, schema);
}

/** The instants PostgreSQL's timestamptz and JavaScript's Date agree on: years 1 to 9999 in UTC. */
const EARLIEST = Date.parse('0001-01-01T00:00:00Z');
const LATEST = Date.parse('9999-12-31T23:59:59.999Z');
const inRange = (text: string) => { const at = Date.parse(text); return at >= EARLIEST && at <= LATEST; };
const queryTime = isoTime.pipe(z.string().refine(inRange, 'must be between 0001-01-01 and 9999-12-31 (UTC)'));

/** An id as a filter: text without control characters (PostgreSQL refuses a NUL in text outright). */
const QueryId = z.string().min(1).max(128)
  .refine((s) => !/[\t\n]/.test(s) && isStorableText(s), 'must be printable text');

/** Where a page of the booking list ends, as the read model takes it. */
export interface BookingCursorValue { readonly createdAt: Date; readonly id: string }

/** The wire form of a booking cursor: base64url of the JSON tuple [createdAt as toISOString() gives it, id]. */
export function encodeBookingCursor(c: BookingCursorValue): string {
  return Buffer.from(JSON.stringify([c.createdAt.toISOString(), c.id])).toString('base64url');
}

const CURSOR_MAX = 600; // what a 128-character id (of up to 3 bytes each) can make it
const CursorTuple = z.tuple([z.iso.datetime({ precision: 3 }).refine(inRange), QueryId]);
/** An opaque token from `nextCursor`, decoded and checked here: anything else is a 400 on `cursor`. */
export const BookingCursor = z.string().max(CURSOR_MAX, `a cursor is at most ${CURSOR_MAX} characters`)
  .transform((token, ctx): BookingCursorValue => {
    const refuse = (why: string) => {
      ctx.addIssue({ code: 'custom', message: `not a cursor from this API (${why}); pass nextCursor as it was given`, input: token });
      return z.NEVER;
    };
    const bytes = Buffer.from(token, 'base64url');
    if (token === '' || bytes.toString('base64url') !== token) return refuse('not base64url');
    let tuple: unknown;
    try { tuple = JSON.parse(bytes.toString('utf8')); } catch { return refuse('not JSON'); }
    const parsed = CursorTuple.safeParse(tuple);
    if (!parsed.success) return refuse('not a [time, id] pair');
    return { createdAt: new Date(parsed.data[0]), id: parsed.data[1] };
  });

export const BookingListQuery = strictQuery(z.object({
  status: BookingStatus.optional(),
  riderId: QueryId.optional(),
  driverId: QueryId.optional(),
  from: queryTime.optional(),
  to: queryTime.optional(),
  limit: queryNumber(z.number().int().min(1).max(100).default(20)),
  cursor: BookingCursor.optional(),
}));

export const CancelRequest = z.object({ reason: text().max(500).optional() }).strict();
export const RatingRequest = z.object({ stars: z.number().int().min(1).max(5), comment: text().max(1000).optional() }).strict();

const coordinate = (min: number, max: number) => queryNumber(z.number().min(min).max(max));

/** The nearby query with radiusKm capped at `maxRadiusKm` (SEARCH_MAX_RADIUS_KM): a search covers a city, not a region. */
export function nearbyQuery(maxRadiusKm: number) {
  return strictQuery(z.object({
    lat: coordinate(-90, 90), lng: coordinate(-180, 180),
    radiusKm: queryNumber(z.number().gt(0)
      .max(maxRadiusKm, { message: `radiusKm may be at most ${maxRadiusKm} km (the search radius cap, SEARCH_MAX_RADIUS_KM)` })
      .default(Math.min(3, maxRadiusKm)))
      .describe(`search radius in km, at most ${maxRadiusKm} (SEARCH_MAX_RADIUS_KM)`),
    vehicleType: VehicleType.optional(),
    limit: queryNumber(z.number().int().min(1).max(50).default(10)),
  }));
}
/** With the default cap (SEARCH_MAX_RADIUS_KM=10); the route builds its own from the configuration. */
export const NearbyQuery = nearbyQuery(10);

export const Nearby = z.object({
  drivers: z.array(z.object({
    ref: z.string().describe('Names the driver in this answer only: drawn anew for every answer, so it cannot follow a driver'),
    driverId: z.string().optional().describe('Admins only: the driver\'s id'),
    lat: z.number().describe('Riders: rounded to 3 decimal places (about 110 m); admins: exact'),
    lng: z.number().describe('Riders: rounded to 3 decimal places (about 110 m north-south, less east-west); admins: exact'),
    distanceKm: z.number().describe('From the point asked about; riders: to 0.1 km, admins: to the metre'),
    vehicleType: z.string(),
  })).describe('Closest first'),
});

export const SurgeQuery = strictQuery(z.object({ lat: coordinate(-90, 90), lng: coordinate(-180, 180) }));
export const Surge = z.object({ cell: z.string(), surge: z.number() });

export const VehicleCreate = z.object({
  plate: text().min(1).max(20), type: VehicleType, capacity: z.number().int().min(1).max(60), driverId: DriverId.optional(),
}).strict();
export const VehiclePatch = z.object({
  plate: text().min(1).max(20).optional(), type: VehicleType.optional(), capacity: z.number().int().min(1).max(60).optional(),
  driverId: DriverId.nullable().optional(),
}).strict();
export const MaintenanceWindow = z.object({ id: z.string(), from: z.string(), to: z.string(), reason: z.string() })
  .meta({ id: 'MaintenanceWindow' });
export const Vehicle = z.object({
  id: z.string(), plate: z.string(), type: z.string(), capacity: z.number(), driverId: z.string().optional(),
  maintenance: z.array(MaintenanceWindow),
}).meta({ id: 'Vehicle' });
export const MaintenanceList = z.object({ items: z.array(MaintenanceWindow) });
export const MaintenanceCreate = z.object({ from: isoTime, to: isoTime, reason: text().min(1).max(200) }).strict()
  .refine((w) => Date.parse(w.to) > Date.parse(w.from), { message: 'to must be after from', path: ['to'] });

/** What a driver without a vehicle may go online as; a driver with one goes online as its vehicle's type. */
const AllowedVehicleTypes = z.array(VehicleType).max(16)
  .describe('Vehicle types a driver without a vehicle may go online with (each one pricing defines); [] allows none.');
export const DriverCreate = z.object({
  id: DriverId.optional(), name: text().min(1).max(100), phone: text().max(30).optional(),
  vehicleId: VehicleId.optional(), vehicleTypes: AllowedVehicleTypes.optional(), active: z.boolean().default(true),
}).strict();
export const DriverStatus = z.enum(['offline', 'available', 'offered', 'assigned', 'on_trip']);

/** A driver as admins see it (actors/driver.ts driverView, with name and phone opened). */
export const Driver = z.object({
  id: z.string(), status: DriverStatus, vehicleType: z.string(),
  // null when the stored value does not open (named in `unreadable`): one bad value spoils its field, not the list.
  name: z.string().nullable().optional(), phone: z.string().nullable().optional(),
  unreadable: z.array(z.enum(['name', 'phone'])).optional()
    .describe('personal fields whose stored value does not open (altered, copied from another record, or under a key no longer held)'),
  vehicleId: z.string().optional(), vehicleTypes: z.array(z.string()).optional(), active: z.boolean(),
  approval: z.enum(['pending', 'approved']),
  rating: z.number(), acceptanceRate: z.number(), trips: z.number().int(), lastTripEndedAt: z.string().optional(),
}).meta({ id: 'Driver' });
/** One driver read from its actor: also the booking in hand and the last position. */
export const DriverDetail = Driver.extend({
  bookingId: z.string().optional(), location: z.object({ lat: z.number(), lng: z.number(), at: z.string() }).optional(),
}).meta({ id: 'DriverDetail' });
export const DriverList = z.object({ items: z.array(Driver) });

export const DriverPatch = z.object({
  name: text().min(1).max(100).optional(), phone: text().max(30).optional(), vehicleId: VehicleId.optional(),
  vehicleTypes: AllowedVehicleTypes.optional(), active: z.boolean().optional(),
}).strict();

/** A tariff value in minor units: bounded so that every price (at most the maximum) is a safe integer. */
const tariffAmount = (min: number) => z.number().int().min(min)
  .max(TARIFF_LIMIT, `must be at most ${TARIFF_LIMIT} (minor units), so every price stays a safe integer`);
export const Tariff = z.object({
  base: tariffAmount(0), perKm: tariffAmount(0), perMin: tariffAmount(0),
  minimum: tariffAmount(0), maximum: tariffAmount(1), currency: z.string().regex(/^[A-Z]{3}$/),
}).strict().refine((t) => t.maximum >= t.minimum, { message: 'maximum must be at least minimum', path: ['maximum'] });
export const PricingPolicy = z.object({
  tariffs: z.record(VehicleType, Tariff).refine((t) => Object.keys(t).length > 0, 'at least one vehicle type'),
  surgeCap: z.number().min(1).max(20),
}).strict().meta({ id: 'Pricing' });

/** Figures of one hour or one pickup cell (actors/analytics.ts summarize); a mean over nothing is null. */
const AnalyticsItem = z.object({
  key: z.string(), requests: z.number().int(), completed: z.number().int(), cancelled: z.number().int(), noDriver: z.number().int(),
  revenue: z.number(), meanFare: z.number().nullable(), meanWaitToPickupSec: z.number().nullable(), meanSurge: z.number().nullable(),
  activeDrivers: z.number().int(), driverUtilisation: z.number().nullable(), newRiders: z.number().int(),
});
export const Analytics = z.object({
  groupBy: z.enum(['hour', 'cell']), from: z.string(), to: z.string(), items: z.array(AnalyticsItem),
  totals: z.object({ activeDrivers: z.number().int(), newRiders: z.number().int() }),
  topPickupCells: z.array(z.object({ cell: z.string(), requests: z.number().int() })).optional().describe('with groupBy=cell'),
}).meta({ id: 'Analytics' });

const ANALYTICS_MAX_DAYS = 93;
export const AnalyticsQuery = strictQuery(z.object({ from: queryTime, to: queryTime, groupBy: z.enum(['hour', 'cell']).default('hour') })
  .refine((q) => Date.parse(q.to) > Date.parse(q.from), { message: 'to must be after from', path: ['to'] })
  .refine(
    (q) => Date.parse(q.to) - Date.parse(q.from) <= ANALYTICS_MAX_DAYS * 86_400_000,
    { message: `at most ${ANALYTICS_MAX_DAYS} days at a time`, path: ['to'] },
  ));

export const Register = z.object({
  email: z.email().max(200),
  password: text().min(1).max(200)
    .describe('10 to 200 characters that are hard to guess (zxcvbn score 3 or more; common passwords are refused with 400 weak_password)'),
  name: text().min(1).max(100),
  phone: text().max(30).optional(), role: z.enum(['rider', 'driver']).describe('a driver starts pending until an admin approves it'),
}).strict();
export const Login = z.object({ email: z.email().max(200), password: text().min(1).max(200) }).strict();
/** The same answer whether or not the email was already registered, so registration does not reveal who has an account. */
export const RegistrationAccepted = z.object({ status: z.literal('accepted') }).meta({
  id: 'RegistrationAccepted',
  description: 'The registration was received. The answer is the same whether or not the email already had an account; '
    + 'a new account is usable at once by logging in (POST /v1/auth/login) with this email and password. An existing account '
    + 'is left unchanged, and logging in still takes its own password. A self-registered driver starts pending and cannot '
    + 'go online until an admin approves it.',
});
export const Token = z.object({ token: z.string(), expiresAt: z.string().optional() });

/** GET /health: the process is up. */
export const Health = z.object({ status: z.enum(['ok', 'down']) });
/** GET /ready: the node serves; `stuckShards` when a shard waits on a failing command. */
export const Ready = z.object({
  status: z.literal('ready'),
  stuckShards: z.array(z.object({ shard: z.number().int(), seconds: z.number(), failure: z.string().optional() })).optional(),
});
