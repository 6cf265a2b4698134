// Input and output shapes of the API contract (../shared/API.md), in zod: they
// validate at the edge and generate the OpenAPI document.

import { z } from 'zod';

export const Point = z.object({
  lat: z.number().min(-90).max(90),
  lng: z.number().min(-180).max(180),
}).strict().meta({ id: 'Point' });

export const Money = z.object({ amount: z.number().int(), currency: z.string() }).meta({ id: 'Money' });

/** Vehicle types are what pricing defines; checked against the live policy in handlers. */
export const VehicleType = z.string().regex(/^[a-z][a-z0-9_-]{0,31}$/, 'a vehicle type is a short lowercase name');

const isoTime = z.iso.datetime({ offset: true });

export const QuoteRequest = z.object({ pickup: Point, dropoff: Point, vehicleType: VehicleType }).strict();

export const Quote = z.object({
  quoteId: z.string(), price: Money, surge: z.number(), distanceKm: z.number(), durationMin: z.number(),
  vehicleType: z.string(), expiresAt: z.string(),
}).meta({ id: 'Quote' });

export const BookingCreate = z.union([
  z.object({ quoteId: z.string().min(1).max(2048), scheduledAt: isoTime.optional() }).strict(),
  z.object({ pickup: Point, dropoff: Point, vehicleType: VehicleType, scheduledAt: isoTime.optional() }).strict(),
]);

export const BookingStatus = z.enum(['scheduled', 'searching', 'offered', 'accepted', 'arriving', 'in_progress', 'completed', 'cancelled', 'no_driver']);

export const Booking = z.object({
  id: z.string(), riderId: z.string(), status: BookingStatus, vehicleType: z.string(), pickup: Point, dropoff: Point,
  scheduledAt: z.string().optional(), price: Money, surge: z.number(), driverId: z.string().optional(), createdAt: z.string(),
  timeline: z.array(z.object({ status: BookingStatus, at: z.string() })),
}).meta({ id: 'Booking' });

export const BookingList = z.object({ items: z.array(Booking), nextCursor: z.string().optional() });

export const BookingListQuery = z.object({
  status: BookingStatus.optional(),
  riderId: z.string().max(128).optional(),
  driverId: z.string().max(128).optional(),
  from: isoTime.optional(),
  to: isoTime.optional(),
  limit: z.coerce.number().int().min(1).max(100).default(20),
  cursor: z.string().max(512).optional(),
}).strict();

export const CancelRequest = z.object({ reason: z.string().max(500).optional() }).strict();
export const RatingRequest = z.object({ stars: z.number().int().min(1).max(5), comment: z.string().max(1000).optional() }).strict();

const coordinate = (min: number, max: number) => z.coerce.number().refine((n) => Number.isFinite(n), 'must be a number').pipe(z.number().min(min).max(max));

export const NearbyQuery = z.object({
  lat: coordinate(-90, 90), lng: coordinate(-180, 180),
  radiusKm: z.coerce.number().gt(0).max(50).default(3),
  vehicleType: VehicleType.optional(),
  limit: z.coerce.number().int().min(1).max(50).default(10),
}).strict();

export const Nearby = z.object({
  drivers: z.array(z.object({ driverId: z.string(), lat: z.number(), lng: z.number(), distanceKm: z.number(), vehicleType: z.string() })),
});

export const SurgeQuery = z.object({ lat: coordinate(-90, 90), lng: coordinate(-180, 180) }).strict();
export const Surge = z.object({ cell: z.string(), surge: z.number() });

export const VehicleCreate = z.object({
  plate: z.string().min(1).max(20), type: VehicleType, capacity: z.number().int().min(1).max(60), driverId: z.string().min(1).max(128).optional(),
}).strict();
export const VehiclePatch = z.object({
  plate: z.string().min(1).max(20).optional(), type: VehicleType.optional(), capacity: z.number().int().min(1).max(60).optional(),
  driverId: z.string().min(1).max(128).nullable().optional(),
}).strict();
export const Vehicle = z.object({
  id: z.string(), plate: z.string(), type: z.string(), capacity: z.number(), driverId: z.string().optional(),
  maintenance: z.array(z.object({ id: z.string(), from: z.string(), to: z.string(), reason: z.string() })),
}).meta({ id: 'Vehicle' });
export const MaintenanceCreate = z.object({ from: isoTime, to: isoTime, reason: z.string().min(1).max(200) }).strict()
  .refine((w) => Date.parse(w.to) > Date.parse(w.from), { message: 'to must be after from', path: ['to'] });

export const DriverCreate = z.object({
  id: z.string().regex(/^[\w.-]{1,128}$/).optional(), name: z.string().min(1).max(100), phone: z.string().max(30).optional(),
  vehicleId: z.string().max(128).optional(), active: z.boolean().default(true),
}).strict();
export const DriverPatch = z.object({
  name: z.string().min(1).max(100).optional(), phone: z.string().max(30).optional(), vehicleId: z.string().max(128).optional(), active: z.boolean().optional(),
}).strict();

export const Tariff = z.object({
  base: z.number().int().min(0), perKm: z.number().int().min(0), perMin: z.number().int().min(0),
  minimum: z.number().int().min(0), maximum: z.number().int().min(1), currency: z.string().regex(/^[A-Z]{3}$/),
}).strict().refine((t) => t.maximum >= t.minimum, { message: 'maximum must be at least minimum', path: ['maximum'] });
export const PricingPolicy = z.object({
  tariffs: z.record(VehicleType, Tariff).refine((t) => Object.keys(t).length > 0, 'at least one vehicle type'),
  surgeCap: z.number().min(1).max(20),
}).strict().meta({ id: 'Pricing' });

export const AnalyticsQuery = z.object({ from: isoTime, to: isoTime, groupBy: z.enum(['hour', 'cell']).default('hour') }).strict();

export const Register = z.object({
  email: z.email().max(200), password: z.string().min(1).max(200), name: z.string().min(1).max(100),
  phone: z.string().max(30).optional(), role: z.enum(['rider', 'driver']),
}).strict();
export const Login = z.object({ email: z.email().max(200), password: z.string().min(1).max(200) }).strict();
export const Account = z.object({ id: z.string(), email: z.string(), name: z.string(), role: z.string() });
export const Token = z.object({ token: z.string(), expiresAt: z.string().optional() });
