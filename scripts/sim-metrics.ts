// What a simulation run measured, as riders and operators see it (issue 25): from the raw
// samples the simulator keeps to the figures its summary prints and RESULT_FILE holds. Kept
// apart from the simulator so the compare (scripts/simulate-compare.ts) reads the same shape.

import { percentile } from '../bench/stats.ts';

/** Raw samples of one run; times are real milliseconds unless named otherwise. */
export interface RawSamples {
  /** Booking acknowledged (201) -> first offer frame for it at any driver, immediate bookings that got one. */
  readonly firstOfferMs: number[];
  /** Straight line from the driver's position when its accept was acknowledged to the pickup, km. */
  readonly pickupKm: number[];
  /** Accept acknowledged -> arrived at the pickup, simulated seconds (real time x SPEEDUP). */
  readonly pickupSimS: number[];
  /** Driver time online inside the measured window, real ms, summed over drivers. */
  onlineMs: number;
  /** Of that, time holding an offer (until answered) or a trip (until it ended), real ms. */
  engagedMs: number;
}

export interface Counts {
  readonly booked: number; readonly scheduled: number; readonly completed: number; readonly noDriver: number; readonly cancelled: number;
  readonly leftOpen: number; readonly offers: number; readonly accepted: number; readonly declined: number;
  /** Trips completed inside the measured window (the ones driven straight to their end at the stop are not). */
  readonly tripsInWindow: number;
  /** Bookings made inside the measured window (past the warm-up), and of them those that ended no_driver. */
  readonly measuredBookings: number;
  readonly measuredNoDriver: number;
  readonly errors: number;
}

export interface RunSettings {
  readonly seed: number; readonly warmupS: number; readonly drivers: number; readonly bookingsPerMin: number; readonly durationS: number;
  readonly speedup: number;
  readonly scheduledShare: number; readonly url: string;
}

export interface Spread { readonly n: number; readonly mean: number; readonly p50: number; readonly p90: number; readonly p99: number }

export interface SimResult {
  readonly settings: RunSettings;
  readonly counts: Counts;
  readonly firstOfferMs: Spread;
  readonly pickupKm: Spread;
  readonly pickupSimS: Spread;
  /** Of the bookings made in the measured window, the share that ended no_driver. */
  readonly noDriverShare: number;
  readonly tripsPerDriverHour: number;
  readonly idleShare: number;
  /** Simulated driver-hours online in the measured window. */
  readonly driverHours: number;
  readonly raw: { readonly firstOfferMs: number[]; readonly pickupKm: number[]; readonly pickupSimS: number[] };
}

export function spread(values: readonly number[]): Spread {
  const mean = values.length ? values.reduce((a, b) => a + b, 0) / values.length : Number.NaN;
  // (bench/stats.ts's nearest-rank percentile: NaN for no samples, so a figure with none says so rather than 0.)
  return { n: values.length, mean, p50: percentile(values, 50), p90: percentile(values, 90), p99: percentile(values, 99) };
}

export function summarise(settings: RunSettings, counts: Counts, raw: RawSamples): SimResult {
  const driverHours = (raw.onlineMs * settings.speedup) / 3_600_000;
  return {
    settings,
    counts,
    firstOfferMs: spread(raw.firstOfferMs),
    pickupKm: spread(raw.pickupKm),
    pickupSimS: spread(raw.pickupSimS),
    noDriverShare: counts.measuredBookings ? counts.measuredNoDriver / counts.measuredBookings : 0,
    tripsPerDriverHour: driverHours > 0 ? counts.tripsInWindow / driverHours : 0,
    idleShare: raw.onlineMs > 0 ? Math.max(0, raw.onlineMs - raw.engagedMs) / raw.onlineMs : 0,
    driverHours,
    raw: { firstOfferMs: raw.firstOfferMs, pickupKm: raw.pickupKm, pickupSimS: raw.pickupSimS },
  };
}

const fixed = (x: number, d: number) => (Number.isFinite(x) ? x.toFixed(d) : '-');

/** The summary's metric lines. */
export function metricLines(r: SimResult): string[] {
  return [
    `  offer     time to first offer p50 ${fixed(r.firstOfferMs.p50 / 1000, 2)} s, p99 ${fixed(r.firstOfferMs.p99 / 1000, 2)} s` +
      ` (${r.firstOfferMs.n} immediate bookings offered)`,
    `  pickup    distance mean ${fixed(r.pickupKm.mean, 2)} km, p90 ${fixed(r.pickupKm.p90, 2)} km (${r.pickupKm.n} accepted);` +
      ` time mean ${fixed(r.pickupSimS.mean, 0)} s, p90 ${fixed(r.pickupSimS.p90, 0)} s simulated (${r.pickupSimS.n} arrived)`,
    `  fleet     no_driver ${fixed(r.noDriverShare * 100, 1)} % of ${r.counts.measuredBookings} bookings measured;` +
      ` ${fixed(r.tripsPerDriverHour, 2)} trips per driver-hour;` +
      ` idle ${fixed(r.idleShare * 100, 1)} % of ${fixed(r.driverHours, 1)} simulated driver-hours`,
  ];
}
