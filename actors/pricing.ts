// Fares: per vehicle type base + per km + per minute, times the pickup cell's surge,
// times a time-of-day multiplier, clamped to the tariff's minimum and maximum: the
// bounds hold whatever the multipliers, so a tariff's maximum is the most a rider pays.
// Distance is great-circle times a detour factor (streets are not straight);
// duration is that distance at an average city speed. Money is in minor units.

import { distanceKm, type Point } from './geo.ts';

/**
 * The largest value of any tariff field (minor units): a price is at most the tariff's
 * maximum, so every price, and a sum of millions of them, stays a safe integer.
 */
export const TARIFF_LIMIT = 1_000_000_000;

export interface Tariff {
  readonly base: number;
  readonly perKm: number;
  readonly perMin: number;
  readonly minimum: number;
  readonly maximum: number;
  readonly currency: string;
}

export interface PricingPolicy {
  readonly tariffs: Readonly<Record<string, Tariff>>;
  readonly surgeCap: number;
  readonly detourFactor: number;
  readonly citySpeedKmh: number;
  /** Hours (UTC, 0-23) whose fares are multiplied by peakMultiplier. */
  readonly peakHours: readonly number[];
  readonly peakMultiplier: number;
  readonly quoteTtlMs: number;
}

export const DEFAULT_PRICING: PricingPolicy = {
  tariffs: {
    economy: { base: 250, perKm: 120, perMin: 25, minimum: 600, maximum: 20_000, currency: 'USD' },
    comfort: { base: 400, perKm: 170, perMin: 35, minimum: 900, maximum: 30_000, currency: 'USD' },
    xl: { base: 500, perKm: 220, perMin: 40, minimum: 1_200, maximum: 40_000, currency: 'USD' },
  },
  surgeCap: 3,
  detourFactor: 1.3,
  citySpeedKmh: 25,
  peakHours: [7, 8, 17, 18],
  peakMultiplier: 1.2,
  quoteTtlMs: 5 * 60_000,
};

export interface Money {
  readonly amount: number;
  readonly currency: string;
}

export interface Estimate {
  readonly distanceKm: number;
  readonly durationMin: number;
}

export interface Quote extends Estimate {
  readonly price: Money;
  readonly surge: number;
  readonly vehicleType: string;
  readonly pickup: Point;
  readonly dropoff: Point;
  readonly expiresAt: number;
}

export function estimate(pickup: Point, dropoff: Point, policy: PricingPolicy): Estimate {
  const km = distanceKm(pickup, dropoff) * policy.detourFactor;
  return { distanceKm: round2(km), durationMin: round2((km / policy.citySpeedKmh) * 60) };
}

/**
 * The tariff of a vehicle type, or undefined when pricing defines none. Vehicle types come
 * from requests, and the tariffs are a plain object (JSON from the settings): only its own
 * properties count, so `constructor` or `toString` is an unknown type, not a tariff.
 */
export function tariffOf(policy: Pick<PricingPolicy, 'tariffs'>, vehicleType: string): Tariff | undefined {
  return Object.hasOwn(policy.tariffs, vehicleType) ? policy.tariffs[vehicleType] : undefined;
}

/** The vehicle types pricing defines. */
export function vehicleTypes(policy: Pick<PricingPolicy, 'tariffs'>): string[] {
  return Object.keys(policy.tariffs);
}

export function fare(vehicleType: string, trip: Estimate, surge: number, at: number, policy: PricingPolicy): Money {
  const tariff = tariffOf(policy, vehicleType);
  if (!tariff) throw new RangeError(`unknown vehicle type "${vehicleType}"`);
  const metered = tariff.base + tariff.perKm * trip.distanceKm + tariff.perMin * trip.durationMin;
  const cappedSurge = Math.min(policy.surgeCap, Math.max(1, surge));
  const peak = policy.peakHours.includes(new Date(at).getUTCHours()) ? policy.peakMultiplier : 1;
  // Clamped last: a maximum applied before surge would let a fare reach surgeCap times it.
  const amount = Math.round(Math.min(tariff.maximum, Math.max(tariff.minimum, metered * cappedSurge * peak)));
  // A tariff that is not numbers (a hand-edited setting) prices nothing rather than a ride with no price.
  if (!Number.isSafeInteger(amount) || amount < 0) throw new RangeError(`the tariff of "${vehicleType}" gives no price (${amount})`);
  return { amount, currency: tariff.currency };
}

export function quote(
  input: { pickup: Point; dropoff: Point; vehicleType: string; surge: number; now: number }, policy: PricingPolicy,
): Quote {
  const trip = estimate(input.pickup, input.dropoff, policy);
  const surge = round2(Math.min(policy.surgeCap, Math.max(1, input.surge)));
  return {
    ...trip, surge, vehicleType: input.vehicleType, pickup: input.pickup, dropoff: input.dropoff,
    price: fare(input.vehicleType, trip, surge, input.now, policy), expiresAt: input.now + policy.quoteTtlMs,
  };
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
