// The simulator's city, seeded: its map (a box of central Berlin, straight-line driving), where
// each driver starts and what it drives, and each booking of the stream. The simulator runs it;
// the compare (scripts/simulate-compare.ts) reads the same fleet and stream to size its loads.

import { streamOf, type Random } from './rng.ts';

export interface Point { lat: number; lng: number }

// A bundled city: central Berlin, about 9.5 x 8.9 km. No map data is fetched.
export const CITY = { south: 52.48, north: 52.56, west: 13.33, east: 13.47 };
export const TRIP_KM: [number, number] = [1, 3.5]; // rider trips are city rides, not across town
export const DRIVE_KMH = 36; // in town, pickups and trips
/** Vehicle types: drivers drive economy this often, riders book it this often (the rest comfort); dispatch matches types exactly. */
export const ECONOMY_SHARE = { drivers: 0.8, bookings: 0.85 };
// One stream per purpose (scripts/rng.ts): a draw for one never shifts another's.
export const STREAM = { start: 1, cruise: 2, booking: 3, answer: 4 } as const;

export const KM_PER_DEG_LAT = 111.2;
export const kmPerDegLng = (lat: number) => KM_PER_DEG_LAT * Math.cos((lat * Math.PI) / 180);
export const distanceKm = (a: Point, b: Point) => Math.hypot((b.lat - a.lat) * KM_PER_DEG_LAT, (b.lng - a.lng) * kmPerDegLng(a.lat));
/** The city's area, km². */
export const CITY_KM2 = (CITY.north - CITY.south) * KM_PER_DEG_LAT * (CITY.east - CITY.west) * kmPerDegLng((CITY.north + CITY.south) / 2);

const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));

export const randomPoint = (random: Random): Point => ({
  lat: CITY.south + random() * (CITY.north - CITY.south),
  lng: CITY.west + random() * (CITY.east - CITY.west),
});

/** A point `km` away from `from` in a random direction, kept inside the city. */
export function pointNear(from: Point, km: number, random: Random): Point {
  const angle = random() * 2 * Math.PI;
  return {
    lat: clamp(from.lat + (km * Math.cos(angle)) / KM_PER_DEG_LAT, CITY.south, CITY.north),
    lng: clamp(from.lng + (km * Math.sin(angle)) / kmPerDegLng(from.lat), CITY.west, CITY.east),
  };
}

export type VehicleType = 'economy' | 'comfort';

/** Driver number `index`: where it starts and what it drives. */
export function driverStart(seed: number, index: number): { at: Point; vehicleType: VehicleType } {
  const start = streamOf(seed, STREAM.start, index);
  const at = randomPoint(start);
  return { at, vehicleType: start() < ECONOMY_SHARE.drivers ? 'economy' : 'comfort' };
}

/** Booking number `seq` of the stream: all of it from the seed and the number, so the stream is the same whatever else happens. */
export interface Planned {
  readonly seq: number; readonly pickup: Point; readonly dropoff: Point; readonly vehicleType: VehicleType; readonly scheduled: boolean;
  /** Real ms to the next booking (between half and one and a half of the mean gap). */
  readonly gapMs: number;
}

export function planned(seed: number, seq: number, bookingsPerMin: number, scheduledShare: number): Planned {
  const random = streamOf(seed, STREAM.booking, seq);
  const pickup = randomPoint(random);
  const dropoff = pointNear(pickup, TRIP_KM[0] + random() * (TRIP_KM[1] - TRIP_KM[0]), random);
  return {
    seq, pickup, dropoff, vehicleType: random() < ECONOMY_SHARE.bookings ? 'economy' : 'comfort', scheduled: random() < scheduledShare,
    gapMs: (60_000 / Math.max(bookingsPerMin, 0.001)) * (0.5 + random()),
  };
}
