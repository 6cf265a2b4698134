// The whole ride through the public API: drivers on WebSockets, a rider on REST
// and a WebSocket, an admin reading analytics. Real HTTP and ws clients, real PostgreSQL.

import test from 'ava';
import { randomUUID } from 'node:crypto';
import { startEdge, type EdgeNode } from './helpers/edge-client.ts';
import { eventually } from './helpers/node-process.ts';

const PICKUP = { lat: 41.3874, lng: 2.1686 };
const DROPOFF = { lat: 41.4036, lng: 2.1744 };

let edge: EdgeNode;
test.before(async () => { edge = await startEdge(); });
test.after.always(async () => { await edge?.stop(); });

async function driverOnline(id: string, at: { lat: number; lng: number }) {
  const socket = await edge.socket(await edge.token(id, 'driver'));
  const ok = await socket.call({ type: 'online', vehicleType: 'economy' }, 'on');
  if (ok.type !== 'ack') throw new Error(JSON.stringify(ok));
  for (let i = 0; i < 3; i++) {
    await socket.call({ type: 'location', lat: at.lat + i * 0.0001, lng: at.lng, heading: 90, speed: 8, at: new Date(Date.now() + i).toISOString() }, `fix${i}`);
  }
  return socket;
}

test.serial('a whole ride: quote, book, offer to the nearer driver, accept, arrive, start, complete, analytics', async (t) => {
  const run = randomUUID().slice(0, 6);
  const nearId = `near-${run}`;
  const farId = `far-${run}`;
  const near = await driverOnline(nearId, { lat: PICKUP.lat + 0.002, lng: PICKUP.lng });
  const far = await driverOnline(farId, { lat: PICKUP.lat + 0.02, lng: PICKUP.lng });
  const riderToken = await edge.token(`rider-${run}`, 'rider');

  const quote = await edge.http('POST', '/v1/quotes', { token: riderToken, body: { pickup: PICKUP, dropoff: DROPOFF, vehicleType: 'economy' } });
  t.is(quote.status, 201);
  t.true(quote.body.price.amount > 0);
  const booked = await edge.http('POST', '/v1/bookings', { token: riderToken, body: { quoteId: quote.body.quoteId } });
  t.is(booked.status, 201, JSON.stringify(booked.body));
  t.deepEqual(booked.body.price, quote.body.price, 'the booking pays the quoted price');
  const id = booked.body.id as string;

  const rider = await edge.socket(riderToken);
  t.is((await rider.call({ type: 'subscribe', bookingId: id }, 'sub')).type, 'ack');

  const offer = await near.next((m) => m.type === 'offer' && m.bookingId === id);
  t.deepEqual(offer.price, quote.body.price);
  t.false(far.messages.some((m) => m.type === 'offer' && m.bookingId === id), 'the farther driver was not offered');
  t.is((await near.call({ type: 'offer.accept', bookingId: id }, 'acc')).type, 'ack');
  await rider.next((m) => m.type === 'booking.updated' && m.booking.status === 'accepted');

  await near.call({ type: 'location', lat: PICKUP.lat + 0.001, lng: PICKUP.lng, heading: 180, at: new Date(Date.now() + 10).toISOString() }, 'move');
  const seen = await rider.next((m) => m.type === 'driver.location' && m.bookingId === id);
  t.is(seen.lat, PICKUP.lat + 0.001, 'the rider sees the assigned driver move');

  for (const step of ['trip.arrived', 'trip.start', 'trip.complete']) {
    const answer = await near.call({ type: step, bookingId: id }, step);
    t.is(answer.type, 'ack', `${step}: ${JSON.stringify(answer)}`);
  }
  await rider.next((m) => m.type === 'booking.updated' && m.booking.status === 'completed');
  const statuses = rider.messages.filter((m) => m.type === 'booking.updated').map((m) => m.booking.status);
  for (const s of ['accepted', 'arriving', 'in_progress', 'completed']) t.true(statuses.includes(s), `rider saw ${s} (${statuses.join(',')})`);
  await near.next((m) => m.type === 'booking.updated' && m.booking.id === id && m.booking.status === 'completed');
  const driverSaw = near.messages.filter((m) => m.type === 'booking.updated' && m.booking.id === id).map((m) => m.booking.status);
  t.deepEqual(driverSaw, ['accepted', 'arriving', 'in_progress', 'completed'], 'the driver\'s socket is told of every transition');

  const view = await edge.http('GET', `/v1/bookings/${id}`, { token: riderToken });
  t.is(view.status, 200);
  t.deepEqual(view.body.timeline.map((e: { status: string }) => e.status), ['searching', 'offered', 'accepted', 'arriving', 'in_progress', 'completed']);
  t.is(view.body.driverId, nearId);

  const rated = await edge.http('POST', `/v1/bookings/${id}/rating`, { token: riderToken, body: { stars: 5 } });
  t.is(rated.status, 200);

  const admin = await edge.token('ops', 'admin');
  const from = new Date(Date.now() - 3_600_000).toISOString();
  const to = new Date(Date.now() + 3_600_000).toISOString();
  t.true(await eventually(async () => {
    const a = await edge.http('GET', `/v1/admin/analytics?from=${from}&to=${to}&groupBy=hour`, { token: admin });
    return a.status === 200 && a.body.items.reduce((n: number, i: { completed: number }) => n + i.completed, 0) >= 1;
  }), 'analytics counted the ride');
  for (const s of [near, far, rider]) s.close();
});

test.serial('a scheduled booking made by REST inside the lead window is activated by its own timer and dispatched', async (t) => {
  const run = randomUUID().slice(0, 6);
  const driver = await driverOnline(`sched-${run}`, { lat: PICKUP.lat - 0.001, lng: PICKUP.lng });
  const riderToken = await edge.token(`rider-s-${run}`, 'rider');
  const scheduledAt = new Date(Date.now() + 5 * 60_000).toISOString();
  const booked = await edge.http('POST', '/v1/bookings', { token: riderToken, body: { pickup: PICKUP, dropoff: DROPOFF, vehicleType: 'economy', scheduledAt } });
  t.is(booked.status, 201);
  t.is(booked.body.status, 'scheduled');
  // 5 minutes ahead with a 10-minute lead: due at once, with no cron pass.
  const offer = await driver.next((m) => m.type === 'offer' && m.bookingId === booked.body.id);
  t.truthy(offer);
  driver.close();
});
