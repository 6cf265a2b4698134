// How many bookings a minute the simulated fleet can serve, so the compare's loads are shares of
// it (issue 25: "near capacity" is 80-90 %). Computed, not calibrated, from the seeded fleet and
// booking stream (scripts/sim-city.ts) and the simulator's own timings, and printed with its
// working so a reader can check it. The run's idle share says afterwards how close it came.

import {
  CITY_KM2, distanceKm, DRIVE_KMH, driverStart, planned, type VehicleType,
} from './sim-city.ts';

/** The simulator's fixed real-time steps in one trip (scripts/simulate.ts). */
const READ_S = 0.75; // a driver reads an offer 300-1200 ms
const BOARD_S = 2; // the rider gets in
const STEP_S = 0.5 * 2; // driving moves in one-second fixes: half a fix lost at the end of each of two legs
const ROUND_TRIPS_S = 0.5; // accept, arrived, start, complete acknowledged by the node
/** Share of a type's drivers assumed free near capacity; a pickup comes from the nearest of them. */
const FREE_NEAR_CAPACITY = 0.15;
const STREAM_SAMPLE = 2_000;

export interface Capacity {
  readonly perMin: number;
  readonly cycleS: number;
  readonly tripKm: number;
  readonly pickupKm: number;
  /** What bounds it: the type whose drivers run out first. */
  readonly boundBy: VehicleType;
  readonly how: string;
}

export function capacity(seed: number, drivers: number, speedup: number): Capacity {
  const fleet = { economy: 0, comfort: 0 };
  for (let i = 0; i < drivers; i++) fleet[driverStart(seed, i).vehicleType]++;
  const demand = { economy: 0, comfort: 0 };
  let tripKm = 0;
  for (let n = 0; n < STREAM_SAMPLE; n++) {
    const b = planned(seed, n, 1, 0);
    demand[b.vehicleType]++;
    tripKm += distanceKm(b.pickup, b.dropoff);
  }
  tripKm /= STREAM_SAMPLE;
  // A type no driver drives cannot be served at any load (its bookings end no_driver): the fleet's capacity is the other's.
  const types = (['economy', 'comfort'] as const).filter((t) => demand[t] > 0 && fleet[t] > 0);
  if (types.length === 0) throw new Error(`no driver of ${drivers} drives a type the stream books: no capacity to size loads from`);
  const unserved = (['economy', 'comfort'] as const).filter((t) => demand[t] > 0 && fleet[t] === 0);
  // Nearest of m points spread over an area A is on average half the spacing away: 0.5 * sqrt(A / m).
  const pickupOf = (t: VehicleType) => 0.5 * Math.sqrt(CITY_KM2 / Math.max(1, FREE_NEAR_CAPACITY * fleet[t]));
  const secondsPerKm = 3600 / (DRIVE_KMH * speedup);
  const cycleOf = (t: VehicleType) => READ_S + (pickupOf(t) + tripKm) * secondsPerKm + BOARD_S + STEP_S + ROUND_TRIPS_S;
  // A type's drivers serve its share of the stream: the whole stream can go as fast as the first type to run out allows.
  const perType = types.map((t) => ({ t, perMin: ((fleet[t] * 60) / cycleOf(t)) / (demand[t] / STREAM_SAMPLE) }));
  const bound = perType.reduce((a, b) => (b.perMin < a.perMin ? b : a));
  const t = bound.t;
  const how = `${drivers} drivers (${fleet.economy} economy, ${fleet.comfort} comfort: types match exactly), ` +
    `stream ${Math.round((demand.economy / STREAM_SAMPLE) * 100)} % economy, mean trip ${tripKm.toFixed(2)} km; ` +
    `${t === 'economy' ? 'an' : 'a'} ${t} trip takes ${cycleOf(t).toFixed(1)} s real = offer read ${READ_S} + pickup ${pickupOf(t).toFixed(2)} km ` +
    `(half the spacing of ${Math.round(FREE_NEAR_CAPACITY * 100)} % of ${fleet[t]} drivers free in ${CITY_KM2.toFixed(0)} km²) ` +
    `and trip at ${DRIVE_KMH} km/h x ${speedup} + boarding ${BOARD_S} + fix steps ${STEP_S} + acks ${ROUND_TRIPS_S}; ` +
    `${fleet[t]} x 60 / ${cycleOf(t).toFixed(1)} / ${(demand[t] / STREAM_SAMPLE).toFixed(2)} = ${bound.perMin.toFixed(1)} bookings/min` +
    (unserved.length ? ` (no ${unserved.join(' or ')} driver: those bookings end no_driver at every load)` : '');
  return { perMin: bound.perMin, cycleS: cycleOf(t), tripKm, pickupKm: pickupOf(t), boundBy: t, how };
}
