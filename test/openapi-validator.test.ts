// /openapi.json is complete enough for a validating proxy: the README's ride and at least
// one call of every documented operation (successes and the errors worth seeing) go
// through the checks such a proxy makes (test/helpers/openapi-validator.ts, which every
// suite on the edge client also runs), and not one answer breaks the document.

import test from 'ava';
import { randomUUID } from 'node:crypto';
import { OpenApiValidator } from './helpers/openapi-validator.ts';
import { startEdge, type EdgeNode } from './helpers/edge-client.ts';
import { eventually } from './helpers/node-process.ts';

const PICKUP = { lat: 52.52, lng: 13.405 };
const DROPOFF = { lat: 52.54, lng: 13.42 };

let edge: EdgeNode;
test.before(async () => { edge = await startEdge({ PEAK_HOURS: 'none' }); });
test.after.always(async () => { await edge?.stop(); });

test.serial('the validator flags what a validating proxy flags', async (t) => {
  const doc = (await edge.http('GET', '/openapi.json')).body;
  const v = new OpenApiValidator(doc);
  const json = (extra: Record<string, string> = {}) => new Headers({ 'content-type': 'application/json; charset=utf-8', 'x-request-id': 'r1', ...extra });
  const error = { error: { code: 'x', message: 'y' } };
  const plain = (type: string) => new Headers({ 'content-type': type });
  const cases: [string, Parameters<OpenApiValidator['check']>[0], RegExp][] = [
    ['a body missing fields', {
      method: 'GET', path: '/v1/bookings/bk_1', status: 200, headers: json(), body: { id: 'bk_1' }, text: '{}',
    }, /required property 'riderId'/],
    ['an undocumented status', { method: 'GET', path: '/v1/bookings/bk_1', status: 418, headers: json(), body: error, text: '{}' }, /418 is not documented/],
    ['no X-Request-Id', {
      method: 'GET', path: '/health', status: 200, headers: plain('application/json'), body: { status: 'ok' }, text: '{}',
    }, /X-Request-Id is missing/],
    ['a 429 without Retry-After', { method: 'POST', path: '/v1/bookings', status: 429, headers: json(), body: error, text: '{}' }, /Retry-After is missing/],
    ['a 201 without Location', { method: 'POST', path: '/v1/admin/drivers', status: 201, headers: json(), body: { id: 'd' }, text: '{}' }, /required property/],
    ['an undocumented path answered', { method: 'GET', path: '/v1/secret', status: 200, headers: json(), body: {}, text: '{}' }, /no documented operation/],
    ['another media type', {
      method: 'GET', path: '/v1/surge', status: 200, headers: json({ 'content-type': 'text/html' }), body: '', text: '<p>',
    }, /Content-Type text\/html/],
    ['a price past the bound', {
      method: 'POST', path: '/v1/quotes', status: 201, headers: json(), text: '{}',
      body: {
        quoteId: 'q', price: { amount: 26751381786580744, currency: 'USD' }, surge: 1, distanceKm: 1, durationMin: 1, vehicleType: 'economy', expiresAt: 'x',
      },
    }, /must be <= 1000000000/],
  ];
  for (const [what, answer, expected] of cases) t.regex(v.check(answer).join('\n'), expected, what);
  const notFound = { method: 'GET', path: '/v1/nowhere', status: 404, headers: json(), body: error, text: '{}' };
  t.deepEqual(v.check(notFound), [], 'an unknown path answered 404 is right');
  const open = Object.entries(doc.paths as Record<string, Record<string, { responses: Record<string, unknown> }>>)
    .flatMap(([path, ops]) => Object.entries(ops).filter(([, op]) => 'default' in op.responses).map(([method]) => `${method} ${path}`));
  t.deepEqual(open, [], 'no operation leaves its statuses open with a default response');
});

test.serial('the README ride and a call of every operation: 0 violations', async (t) => {
  const run = randomUUID().slice(0, 6);
  const driverTok = await edge.token(`d-${run}`, 'driver');
  const riderTok = await edge.token(`ana-${run}`, 'rider');
  const otherTok = await edge.token(`bo-${run}`, 'rider');
  const admin = await edge.token(`ops-${run}`, 'admin');
  const call = async (method: string, path: string, o: Parameters<EdgeNode['http']>[2] = {}, expect?: number) => {
    const res = await edge.http(method, path, o);
    if (expect !== undefined) t.is(res.status, expect, `${method} ${path}: ${String(JSON.stringify(res.body)).slice(0, 300)}`);
    return res;
  };

  // The README's ride.
  const driver = await edge.socket();
  t.is((await driver.call({ type: 'auth', token: driverTok }, 'a')).type, 'ack');
  t.is((await driver.call({ type: 'online', vehicleType: 'economy' }, '1')).type, 'ack');
  t.is((await driver.call({ type: 'location', lat: 52.521, lng: 13.405, at: new Date().toISOString() }, '2')).type, 'ack');
  const quote = await call('POST', '/v1/quotes', { token: riderTok, body: { pickup: PICKUP, dropoff: DROPOFF, vehicleType: 'economy' } }, 201);
  const booked = await call('POST', '/v1/bookings', {
    token: riderTok, body: { quoteId: quote.body.quoteId }, headers: { 'idempotency-key': `ride-${run}` },
  }, 201);
  const id = booked.body.id as string;
  await driver.next((m) => m.type === 'offer' && m.bookingId === id);
  t.is((await driver.call({ type: 'offer.accept', bookingId: id }, 'acc')).type, 'ack');
  for (const step of ['trip.arrived', 'trip.start', 'trip.complete']) t.is((await driver.call({ type: step, bookingId: id }, step)).type, 'ack');
  await call('GET', `/v1/bookings/${id}`, { token: riderTok }, 200);
  await call('POST', `/v1/bookings/${id}/rating`, { token: riderTok, body: { stars: 5 } }, 200);
  const from = new Date(Date.now() - 3_600_000).toISOString();
  const to = new Date(Date.now() + 60_000).toISOString();
  t.true(await eventually(async () => (await call('GET', `/v1/admin/analytics?from=${from}&to=${to}&groupBy=cell`, { token: admin })).body.items?.length > 0));
  await call('GET', `/v1/admin/analytics?from=${from}&to=${to}`, { token: admin }, 200);
  driver.close();

  // Every other operation, and the answers worth seeing.
  await call('GET', '/health', {}, 200);
  await call('GET', '/ready', {}, 200);
  await call('GET', '/metrics', { token: admin }, 200);
  await call('GET', '/metrics', { token: riderTok }, 403);
  const email = `val-${run}@example.org`;
  await call('POST', '/v1/auth/register', { body: { email, password: 'quartz-Meadow-73-plinth', name: 'Val', role: 'driver' } }, 202);
  const login = await call('POST', '/v1/auth/login', { body: { email, password: 'quartz-Meadow-73-plinth' } }, 200);
  await call('POST', '/v1/auth/login', { body: { email, password: 'wrong-Password-00' } }, 401);
  await call('GET', '/v1/bookings?limit=1', { token: riderTok }, 200);
  await call('GET', `/v1/bookings/${id}`, { token: otherTok }, 404);
  await call('POST', `/v1/bookings/${id}/cancel`, { token: riderTok, body: {} }, 409);
  const later = await call('POST', '/v1/bookings', {
    token: riderTok, body: { pickup: PICKUP, dropoff: DROPOFF, vehicleType: 'economy', scheduledAt: new Date(Date.now() + 3_600_000).toISOString() },
  }, 201);
  await call('POST', `/v1/bookings/${later.body.id}/cancel`, { token: riderTok, body: { reason: 'plans changed' } }, 200);
  await call('POST', '/v1/bookings', { token: riderTok, body: { quoteId: quote.body.quoteId } }, 409);
  await call('GET', `/v1/drivers/nearby?lat=${PICKUP.lat}&lng=${PICKUP.lng}`, { token: riderTok }, 200);
  await call('GET', `/v1/surge?lat=${PICKUP.lat}&lng=${PICKUP.lng}`, { token: driverTok }, 200);
  const car = await call('POST', '/v1/admin/vehicles', { token: admin, body: { plate: `V-${run}`, type: 'economy', capacity: 4 } }, 201);
  const vid = car.body.id as string;
  await call('GET', '/v1/admin/vehicles', { token: admin }, 200);
  await call('GET', `/v1/admin/vehicles/${vid}`, { token: admin }, 200);
  await call('PATCH', `/v1/admin/vehicles/${vid}`, { token: admin, body: { capacity: 5 } }, 200);
  const window = await call('POST', `/v1/admin/vehicles/${vid}/maintenance`, {
    token: admin, body: { from: new Date(Date.now() + 86_400_000).toISOString(), to: new Date(Date.now() + 90_000_000).toISOString(), reason: 'tyres' },
  }, 201);
  await call('GET', `/v1/admin/vehicles/${vid}/maintenance`, { token: admin }, 200);
  await call('DELETE', `/v1/admin/vehicles/${vid}/maintenance/${window.body.maintenance[0].id}`, { token: admin }, 204);
  const did = `val-${run}`;
  await call('POST', '/v1/admin/drivers', { token: admin, body: { id: did, name: 'Val Driver', phone: '+49 30 1', vehicleId: vid } }, 201);
  await call('POST', '/v1/admin/drivers', { token: admin, body: { id: did, name: 'Again' } }, 409);
  await call('GET', '/v1/admin/drivers', { token: admin }, 200);
  await call('GET', `/v1/admin/drivers/${did}`, { token: admin }, 200);
  await call('GET', `/v1/admin/drivers/d-${run}`, { token: admin }, 200);
  await call('PATCH', `/v1/admin/drivers/${did}`, { token: admin, body: { name: 'Val D.' } }, 200);
  const pending = JSON.parse(Buffer.from(login.body.token.split('.')[1], 'base64url').toString()).sub as string;
  await call('POST', `/v1/admin/drivers/${pending}/approve`, { token: admin }, 200);
  const pricing = await call('GET', '/v1/admin/pricing', { token: admin }, 200);
  await call('PUT', '/v1/admin/pricing', { token: admin, body: { tariffs: pricing.body.tariffs, surgeCap: pricing.body.surgeCap } }, 200);
  const unsafe = { economy: { ...pricing.body.tariffs.economy, maximum: 2 ** 53 - 1 } };
  await call('PUT', '/v1/admin/pricing', { token: admin, body: { tariffs: unsafe, surgeCap: 3 } }, 400);
  await call('POST', '/v1/admin/projections/drivers/rebuild', { token: admin }, 200);
  await call('GET', '/v1/admin/dead-letters', { token: admin }, 200);
  await call('POST', `/v1/admin/dead-letters/${randomUUID()}/retry`, { token: admin }, 404);
  await call('DELETE', `/v1/admin/dead-letters/${randomUUID()}`, { token: admin }, 404);
  const audit = await call('GET', '/v1/admin/audit?limit=5', { token: admin }, 200);
  t.true(audit.body.items.length > 0, 'the admin writes above are in the audit log');
  await call('GET', '/v1/admin/audit?limit=0', { token: admin }, 400);
  await call('GET', '/v1/admin/cluster', { token: admin }, 200);
  await call('DELETE', `/v1/admin/vehicles/${vid}`, { token: admin }, 204);
  // Answers no handler writes: no token, a body that is not JSON, a URL too long, a method the path does not take.
  await call('GET', '/v1/bookings', {}, 401);
  await call('PATCH', `/v1/admin/drivers/${did}`, { token: admin, raw: '{"name":"x"}', headers: { 'content-type': 'text/plain' } }, 415);
  await call('GET', `/v1/bookings?riderId=${'x'.repeat(17 * 1024)}`, { token: admin }, 431);
  await call('DELETE', '/v1/quotes', { token: riderTok }, 405);

  const validator = await edge.validator();
  const missed = [...validator.operations()].filter(([, operationId]) => !validator.seen.has(operationId)).map(([name]) => name);
  t.deepEqual(missed, [], 'every documented operation was called');
  t.deepEqual(edge.violations, [], edge.violations.join('\n'));
  t.log(`${[...validator.seen.values()].reduce((n, s) => n + s.size, 0)} operation and status pairs, ${validator.operations().size} operations, 0 violations`);
});
