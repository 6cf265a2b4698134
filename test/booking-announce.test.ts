// A booking's transition is announced with one view of it: the domain event and every
// notification carry the same object (built once per transition, not once per recipient),
// equal to bookingView of the new state.

import test from 'ava';
import { bookingView, DEFAULT_BOOKING, makeBookingBehavior } from '../actors/booking.ts';

test('the event and the notifications of a transition share one view of the booking', (t) => {
  const booking = makeBookingBehavior(DEFAULT_BOOKING);
  const self = { kind: 'booking', id: 'bk_1' };
  const out = booking.handle(booking.initial('bk_1'), {
    type: 'create', riderId: 'rider-1', vehicleType: 'economy', pickup: { lat: 52.52, lng: 13.4 }, dropoff: { lat: 52.53, lng: 13.41 },
    pickupCell: '871f1d489ffffff', price: { amount: 1200, currency: 'EUR' } as never, surge: 1, distanceKm: 1.5, durationMin: 6,
  }, { self, now: Date.now(), commandId: 'c1' });
  const published = out.effects.find((e) => e.type === 'publish') as { event: { booking: unknown } } | undefined;
  const notified = out.effects.filter((e) => e.type === 'notify') as { message: { booking: unknown } }[];
  t.truthy(published, 'the transition is published');
  t.true(notified.length >= 1, 'the rider is notified');
  t.deepEqual(published!.event.booking, bookingView(out.state));
  for (const n of notified) t.is(n.message.booking, published!.event.booking, 'a view built again for a notification');
});
