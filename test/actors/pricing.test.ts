// A tariff's bounds are what a rider pays at most and at least, whatever surge and peak
// hours multiply the metered fare by, and every price is a safe integer.

import test from 'ava';
import { DEFAULT_PRICING, fare, TARIFF_LIMIT, type PricingPolicy } from '../../actors/pricing.ts';

const NOON = Date.UTC(2026, 0, 1, 12);
const PEAK = Date.UTC(2026, 0, 1, 8);

test('the maximum holds after surge and peak hours: an economy fare never passes 20000', (t) => {
  const max = DEFAULT_PRICING.tariffs.economy!.maximum;
  // Metered just under the maximum: 250 + 120 × 100 + 25 × 240 = 18250.
  const trip = { distanceKm: 100, durationMin: 240 };
  t.is(fare('economy', trip, 1, NOON, DEFAULT_PRICING).amount, 18_250);
  t.is(fare('economy', trip, DEFAULT_PRICING.surgeCap, NOON, DEFAULT_PRICING).amount, max, 'surge cannot lift a fare past the maximum');
  t.is(fare('economy', trip, DEFAULT_PRICING.surgeCap, PEAK, DEFAULT_PRICING).amount, max, 'nor can surge and peak together');
  for (const surge of [1, 1.5, 2, 3, 20]) {
    for (const at of [NOON, PEAK]) {
      for (const km of [0.1, 1, 10, 50, 100, 5_000]) {
        const amount = fare('economy', { distanceKm: km, durationMin: km * 2.4 }, surge, at, DEFAULT_PRICING).amount;
        t.true(amount <= max && amount >= DEFAULT_PRICING.tariffs.economy!.minimum, `${km} km, surge ${surge}: ${amount}`);
      }
    }
  }
});

test('the minimum holds too: a short surged trip pays the minimum, not minimum times surge', (t) => {
  const min = DEFAULT_PRICING.tariffs.economy!.minimum;
  const short = { distanceKm: 0.1, durationMin: 0.24 };
  t.is(fare('economy', short, 1, NOON, DEFAULT_PRICING).amount, min);
  // 250 + 12 + 6 = 268 metered; × 2 = 536, still under the minimum of 600.
  t.is(fare('economy', short, 2, NOON, DEFAULT_PRICING).amount, min);
});

test('tariffs at their documented limit give safe-integer prices at most the maximum', (t) => {
  const policy: PricingPolicy = {
    ...DEFAULT_PRICING,
    surgeCap: 20,
    tariffs: { economy: { base: TARIFF_LIMIT, perKm: TARIFF_LIMIT, perMin: TARIFF_LIMIT, minimum: 0, maximum: TARIFF_LIMIT, currency: 'USD' } },
  };
  for (const km of [0, 1, 20_000]) {
    const { amount } = fare('economy', { distanceKm: km, durationMin: km * 2.4 }, 20, PEAK, policy);
    t.true(Number.isSafeInteger(amount), `${amount} is a safe integer`);
    t.is(amount, TARIFF_LIMIT);
  }
});
