// Booking → first offer frame on a driver's socket, on real node processes: riders book
// over HTTP at a paced rate (open loop: each booking sent when due, timed from when it was
// due), drivers on WebSocket sessions answer offers (accept with a realistic probability
// and complete the ride at once, or decline every offer in the all-decline storm), and a
// booking's latency ends when the first offer frame for it reaches any driver's socket.
// A booking never offered within the wait counts as infinitely late, so it shows in p99.

import type { Point } from '../actors/geo.ts';
import { CENTER, offsetKm, seeded } from './city.ts';
import { rider, tokenFor, type BenchDriver, type Tally } from './node-client.ts';
import { percentile, type Goal, type Row } from './stats.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const round = (x: number) => Math.round(x * 10) / 10;

/** Where the bench's drivers and riders are: a downtown, dense in its middle (σ 2 km). */
export function downtown(n: number, seed: number): Point[] {
  const rand = seeded(seed);
  const g = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  return Array.from({ length: n }, () => offsetKm(CENTER, g() * 2, g() * 2));
}

export interface OfferRun {
  readonly rate: number;
  readonly bookings: number;
  /** Probability a driver accepts an offer; 0 is the all-decline storm. */
  readonly accept: number;
  readonly goal?: Goal;
}

export interface OfferResult { readonly rows: Row[]; readonly latencies: number[] }

export async function offerRun(
  urls: readonly string[], drivers: readonly BenchDriver[], run: OfferRun, where: string, seed: number, tally?: Tally,
): Promise<OfferResult> {
  const firstOffer = new Map<string, number>();
  for (const d of drivers) {
    d.policy = { accept: run.accept };
    d.tally = tally;
    d.onOffer = (bookingId, at) => { if (!firstOffer.has(bookingId)) firstOffer.set(bookingId, at); };
  }
  const pickups = downtown(run.bookings, seed);
  const tokens = await Promise.all(pickups.map((_, i) => tokenFor(`bench-rider-${seed}-${i}`, 'rider')));
  const due = new Map<string, number>();
  let refused = 0;
  const reasons = new Map<string, number>();
  const sent: Promise<void>[] = [];
  const start = performance.now() + 20;
  for (let i = 0; i < run.bookings;) {
    const now = performance.now();
    for (; i < run.bookings && start + (i * 1000) / run.rate <= now; i++) {
      const at = start + (i * 1000) / run.rate;
      const pickup = pickups[i]!;
      sent.push(rider.book(urls[i % urls.length]!, tokens[i]!, { pickup, dropoff: offsetKm(pickup, 1.5, 1.5), vehicleType: 'economy' }).then((answer) => {
        if (answer.status === 201 && answer.id) { due.set(answer.id, at); if (tally) tally.set('book', (tally.get('book') ?? 0) + 1); return; }
        refused++;
        reasons.set(answer.error ?? String(answer.status), (reasons.get(answer.error ?? String(answer.status)) ?? 0) + 1);
      }));
    }
    await sleep(1);
  }
  await Promise.all(sent);
  const sentSeconds = (performance.now() - start) / 1000;
  // Every booking made has its first offer, or 60 s have passed.
  const until = performance.now() + 60_000;
  while ([...due.keys()].some((id) => !firstOffer.has(id)) && performance.now() < until) await sleep(20);
  // A refused booking is as late as one never offered.
  const latencies = [...due].map(([id, at]) => (firstOffer.has(id) ? firstOffer.get(id)! - at : Number.POSITIVE_INFINITY))
    .concat(Array.from({ length: refused }, () => Number.POSITIVE_INFINITY));
  for (const d of drivers) d.onOffer = undefined;
  const offered = latencies.filter(Number.isFinite).length;
  const what = run.accept === 0 ? 'every driver declines every offer (the all-decline storm)' : `drivers accept ${Math.round(run.accept * 100)}% of offers and complete the ride at once, decline the rest`;
  const note = `${run.bookings} bookings offered at ${run.rate}/s (all answered after ${round(sentSeconds)} s), ${due.size} made, ${offered} offered within 60 s`
    + `${refused ? `, ${refused} refused (${[...reasons].map(([r, n]) => `${n} ${r}`).join(', ')})` : ''}; ${drivers.length} drivers on WebSocket sessions, ${what}; ${where}; from when each booking was due to its first offer frame on a driver's socket`;
  const storm = run.accept === 0 ? ', all-decline storm' : '';
  const label = `booking → first offer frame at ${run.rate.toLocaleString('en-US')}/s${storm}, ${where.split(';')[0]}`;
  return {
    latencies,
    rows: [
      { bench: 'offers', case: `${label} p50`, value: round(percentile(latencies, 50)), unit: 'ms', note },
      { bench: 'offers', case: `${label} p99`, value: round(percentile(latencies, 99)), unit: 'ms', goal: run.goal, note: 'p99 is ∞ when more than 1% were refused or not offered within 60 s' },
    ],
  };
}
