// The API contract at the edge: bad input, auth, accounts, idempotency, rate
// limits, and every response against the generated OpenAPI document.

import test from 'ava';
import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { SECRET, startEdge, type EdgeNode } from './helpers/edge-client.ts';

const P = { lat: 52.37, lng: 4.89 };
const D = { lat: 52.38, lng: 4.9 };

let edge: EdgeNode;
let rider: string;
let otherRider: string;
let driverTok: string;
let admin: string;
test.before(async () => {
  edge = await startEdge();
  const run = randomUUID().slice(0, 6);
  rider = await edge.token(`c-rider-${run}`, 'rider');
  otherRider = await edge.token(`c-other-${run}`, 'rider');
  driverTok = await edge.token(`c-driver-${run}`, 'driver');
  admin = await edge.token(`c-admin-${run}`, 'admin');
});
test.after.always(async () => { await edge?.stop(); });

const sign = (claims: Record<string, unknown>, opts: { secret?: string; exp?: string | number; iss?: string } = {}) =>
  new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setSubject(String(claims.sub ?? 'x')).setIssuer(opts.iss ?? 'dispatch')
    .setIssuedAt().setExpirationTime(opts.exp ?? '1h').sign(new TextEncoder().encode(opts.secret ?? SECRET));

test.serial('bad input table: each gets the right status and code, and the node keeps serving', async (t) => {
  const big = JSON.stringify({ pickup: P, dropoff: D, vehicleType: 'economy', pad: 'x'.repeat(5 * 1024 * 1024) });
  const cases: [string, string, { body?: unknown; raw?: string; token?: string; headers?: Record<string, string> }, number, string][] = [
    ['POST', '/v1/quotes', { raw: '{"pickup": ' }, 400, 'malformed_json'],
    ['POST', '/v1/quotes', { raw: 'not json at all' }, 400, 'malformed_json'],
    ['POST', '/v1/quotes', { body: { pickup: P, dropoff: D } }, 400, 'invalid_request'],
    ['POST', '/v1/quotes', { body: { pickup: 'here', dropoff: D, vehicleType: 'economy' } }, 400, 'invalid_request'],
    ['POST', '/v1/quotes', { body: { pickup: { lat: 91, lng: 4 }, dropoff: D, vehicleType: 'economy' } }, 400, 'invalid_request'],
    ['POST', '/v1/quotes', { body: { pickup: { lat: -91, lng: 4 }, dropoff: D, vehicleType: 'economy' } }, 400, 'invalid_request'],
    ['POST', '/v1/quotes', { body: { pickup: { lat: 52, lng: 181 }, dropoff: D, vehicleType: 'economy' } }, 400, 'invalid_request'],
    ['POST', '/v1/quotes', { raw: '{"pickup":{"lat":NaN,"lng":4},"dropoff":{"lat":1,"lng":1},"vehicleType":"economy"}' }, 400, 'malformed_json'],
    ['POST', '/v1/quotes', { body: { pickup: { lat: '52', lng: 4 }, dropoff: D, vehicleType: 'economy' } }, 400, 'invalid_request'],
    ['POST', '/v1/quotes', { body: { pickup: P, dropoff: D, vehicleType: 'spaceship' } }, 400, 'unknown_vehicle_type'],
    ['POST', '/v1/quotes', { body: { pickup: P, dropoff: D, vehicleType: 'economy', extra: 1 } }, 400, 'invalid_request'],
    ['POST', '/v1/quotes', { raw: big }, 413, 'payload_too_large'],
    ['POST', '/v1/quotes', { body: [] }, 400, 'invalid_request'],
    ['POST', '/v1/bookings', { body: {} }, 400, 'invalid_request'],
    ['POST', '/v1/bookings', { body: { quoteId: 'forged.quote' } }, 400, 'invalid_quote'],
    ['POST', '/v1/bookings', { body: { pickup: P, dropoff: D, vehicleType: 'economy', scheduledAt: 'tomorrow' } }, 400, 'invalid_request'],
    ['POST', '/v1/bookings', { body: { pickup: P, dropoff: D, vehicleType: 'economy', scheduledAt: '2001-01-01T00:00:00Z' } }, 400, 'invalid_request'],
    ['POST', '/v1/bookings', { body: { pickup: P, dropoff: D, vehicleType: 'economy' }, headers: { 'idempotency-key': 'bad key with spaces' } }, 400, 'invalid_request'],
    ['GET', '/v1/bookings/no-such-booking', {}, 404, 'not_found'],
    ['POST', '/v1/bookings/no-such-booking/cancel', { body: {} }, 404, 'not_found'],
    ['POST', '/v1/bookings/no-such-booking/rating', { body: { stars: 9 } }, 400, 'invalid_request'],
    ['GET', '/v1/bookings?limit=0', {}, 400, 'invalid_request'],
    ['GET', '/v1/bookings?status=flying', {}, 400, 'invalid_request'],
    ['GET', '/v1/drivers/nearby?lat=91&lng=4', {}, 400, 'invalid_request'],
    ['GET', '/v1/drivers/nearby?lat=abc&lng=4', {}, 400, 'invalid_request'],
    ['GET', '/v1/drivers/nearby?lat=NaN&lng=4', {}, 400, 'invalid_request'],
    ['GET', '/v1/drivers/nearby?lat=52&lng=4&radiusKm=-1', {}, 400, 'invalid_request'],
    ['GET', '/v1/surge?lat=52', {}, 400, 'invalid_request'],
    ['GET', '/v1/nowhere', {}, 404, 'not_found'],
    ['GET', '/v1/admin/analytics?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z', { token: 'admin' }, 400, 'invalid_request'],
    ['POST', '/v1/admin/vehicles', { token: 'admin', body: { plate: 'X', type: 'economy', capacity: 0 } }, 400, 'invalid_request'],
    ['POST', '/v1/admin/vehicles', { token: 'admin', body: { plate: 'X', type: 'hovercraft', capacity: 4 } }, 400, 'unknown_vehicle_type'],
    ['PUT', '/v1/admin/pricing', { token: 'admin', body: { tariffs: {}, surgeCap: 2 } }, 400, 'invalid_request'],
    ['POST', '/v1/admin/vehicles/no-such/maintenance', { token: 'admin', body: { from: '2026-01-02T00:00:00Z', to: '2026-01-01T00:00:00Z', reason: 'x' } }, 400, 'invalid_request'],
    ['POST', '/v1/auth/register', { token: 'none', body: { email: 'not-an-email', password: 'Passw0rd-long', name: 'N', role: 'rider' } }, 400, 'invalid_request'],
    // What storage would refuse is refused here (test/edge-hostile-ids.test.ts has the full tables).
    ['GET', '/v1/bookings/%00%01', {}, 404, 'not_found'],
    ['POST', '/v1/bookings/%00/cancel', { body: {} }, 404, 'not_found'],
    ['POST', `/v1/bookings/bk_${randomUUID()}/cancel`, { body: { reason: 'a\u0000b' } }, 400, 'invalid_request'],
    ['GET', `/v1/admin/drivers/${'d'.repeat(129)}`, { token: 'admin' }, 404, 'not_found'],
    ['POST', '/v1/auth/register', { token: 'none', body: { email: 'nul@example.org', password: 'Passw0rd-long', name: 'N\u0000', role: 'rider' } }, 400, 'invalid_request'],
    ['POST', '/v1/auth/token', { token: 'none', body: { sub: 'r\u0000', role: 'rider' } }, 400, 'invalid_request'],
  ];
  t.true(cases.length >= 30);
  for (const [method, path, o, status, code] of cases) {
    const token = o.token === 'admin' ? admin : o.token === 'none' ? undefined : rider;
    const res = await edge.http(method, path, { ...o, token });
    t.is(res.status, status, `${method} ${path} -> ${res.status} ${JSON.stringify(res.body).slice(0, 200)}`);
    t.is(res.body?.error?.code, code, `${method} ${path} code`);
    t.is(typeof res.body?.error?.message, 'string');
  }
  const health = await edge.http('GET', '/health');
  t.is(health.status, 200, 'the node keeps serving');
  const list = await edge.http('GET', '/v1/bookings', { token: rider });
  t.is(list.status, 200, 'no bad request left anything half-applied or broken');
});

test.serial('invalid WebSocket frames and unknown messages get an error and the socket stays open', async (t) => {
  const socket = await edge.socket(driverTok);
  const frames: [unknown, string][] = [
    ['{not json', 'malformed_json'],
    [{ type: 'teleport' }, 'unknown_type'],
    [{ no: 'type' }, 'unknown_type'],
    [{ type: 'location', lat: 91, lng: 0, at: new Date().toISOString() }, 'invalid_message'],
    [{ type: 'location', lat: 1, lng: 1 }, 'invalid_message'],
    [{ type: 'online', vehicleType: 'Economy Plus!' }, 'invalid_message'],
    [{ type: 'offer.accept' }, 'invalid_message'],
    [{ type: 'offer.accept', bookingId: 'nope' }, 'no_such_offer'],
    [{ type: 'subscribe', bookingId: 'nope' }, 'not_found'],
    [{ type: 'subscribe', bookingId: 'no\u0000pe' }, 'invalid_message'],
    [{ type: 'offer.accept', bookingId: '\u0000' }, 'invalid_message'],
  ];
  for (const [frame, code] of frames) {
    const from = socket.messages.length;
    socket.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
    const answer = await socket.next((m) => m.type === 'error', 5_000, from);
    t.is(answer.code, code, JSON.stringify(frame));
  }
  t.is((await socket.call({ type: 'online', vehicleType: 'economy' }, 'still')).type, 'ack', 'the socket still works');
  t.is(socket.closed, undefined);
  socket.close();
});

test.serial('a WebSocket flood is rate-limited', async (t) => {
  const socket = await edge.socket(driverTok);
  for (let i = 0; i < 120; i++) socket.send({ type: 'offline', ref: `f${i}` });
  const limited = await socket.next((m) => m.type === 'error' && m.code === 'rate_limited');
  t.truthy(limited);
  socket.close();
});

test.serial('auth table: each is refused with 401 or 403 and nothing changes', async (t) => {
  const expired = await sign({ sub: 'r1', role: 'rider' }, { exp: Math.floor(Date.now() / 1000) - 60 });
  const wrongKey = await sign({ sub: 'r1', role: 'rider' }, { secret: 'another-secret-entirely-here' });
  const wrongIssuer = await sign({ sub: 'r1', role: 'rider' }, { iss: 'someone-else' });
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const algNone = `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'r1', role: 'admin', iss: 'dispatch', exp: Math.floor(Date.now() / 1000) + 600 })}.`;
  const noRole = await sign({ sub: 'r1' });
  const body = { pickup: P, dropoff: D, vehicleType: 'economy' };
  const cases: [string, string, string | undefined, number, unknown?][] = [
    ['POST', '/v1/quotes', undefined, 401, body],
    ['POST', '/v1/quotes', expired, 401, body],
    ['POST', '/v1/quotes', wrongKey, 401, body],
    ['POST', '/v1/quotes', wrongIssuer, 401, body],
    ['POST', '/v1/quotes', algNone, 401, body],
    ['POST', '/v1/quotes', noRole, 401, body],
    ['POST', '/v1/quotes', 'garbage', 401, body],
    ['GET', '/v1/admin/vehicles', rider, 403],
    ['GET', '/v1/admin/cluster', driverTok, 403],
    ['PUT', '/v1/admin/pricing', rider, 403, { tariffs: { economy: { base: 1, perKm: 1, perMin: 1, minimum: 1, maximum: 2, currency: 'USD' } }, surgeCap: 2 }],
    ['POST', '/v1/bookings', driverTok, 403, body],
    ['GET', '/v1/drivers/nearby?lat=52&lng=4', driverTok, 403],
  ];
  for (const [method, path, token, status, payload] of cases) {
    const res = await edge.http(method, path, { token, body: payload });
    t.is(res.status, status, `${method} ${path} with ${token?.slice(0, 12)} -> ${res.status}`);
  }
  const pricing = await edge.http('GET', '/v1/admin/pricing', { token: admin });
  t.not(pricing.body.tariffs.economy.base, 1, 'the refused pricing change was not applied');

  // A rider cannot read another rider's booking; a driver acts only as itself.
  const mine = await edge.http('POST', '/v1/bookings', { token: rider, body: { ...body, scheduledAt: new Date(Date.now() + 3_600_000).toISOString() } });
  t.is(mine.status, 201);
  // Someone else's booking is answered as a booking that does not exist is, on every route, so no answer confirms the id.
  const ghost = `bk_${randomUUID()}`;
  const strangers: [string, string, unknown][] = [['GET', '', undefined], ['POST', '/cancel', {}], ['POST', '/rating', { stars: 1 }]];
  for (const [method, tail, payload] of strangers) {
    const theirs = await edge.http(method, `/v1/bookings/${mine.body.id}${tail}`, { token: otherRider, body: payload });
    const nobodys = await edge.http(method, `/v1/bookings/${ghost}${tail}`, { token: otherRider, body: payload });
    t.is(theirs.status, 404, `${method} ${tail || '/'} of someone else's booking: ${JSON.stringify(theirs.body)}`);
    t.deepEqual(theirs.body, JSON.parse(JSON.stringify(nobodys.body).replaceAll(ghost, mine.body.id)), `${method} ${tail || '/'}: the same answer as for no booking`);
  }
  t.is((await edge.http('GET', `/v1/bookings/${mine.body.id}`, { token: rider })).body.status, 'scheduled', 'nothing changed');
  const others = await edge.http('GET', '/v1/bookings', { token: otherRider });
  t.false(others.body.items.some((b: { id: string }) => b.id === mine.body.id));
  // There is no way to name another driver on the socket: the session is bound to the token's subject.
  const socket = await edge.socket(driverTok);
  const impersonation = await socket.call({ type: 'location', driverId: 'someone-else', lat: 1, lng: 1, at: new Date().toISOString() }, 'imp');
  t.is(impersonation.type, 'error');
  const riderSocket = await edge.socket(rider);
  t.is((await riderSocket.call({ type: 'online', vehicleType: 'economy' }, 'r')).code, 'forbidden');
  await t.throwsAsync(edge.socket(wrongKey), { message: /auth refused: unauthenticated/ });
  socket.close();
  riderSocket.close();
});

test.serial('tariff values past their documented bound are a 400 naming the field, and pricing is unchanged', async (t) => {
  const huge = Number.MAX_SAFE_INTEGER;
  const tariff = { base: 250, perKm: 120, perMin: 25, minimum: 600, maximum: 20_000, currency: 'USD' };
  for (const field of ['base', 'perKm', 'perMin', 'minimum', 'maximum'] as const) {
    const body = { tariffs: { economy: { ...tariff, [field]: huge, ...(field === 'minimum' ? { maximum: huge } : {}) } }, surgeCap: 3 };
    const res = await edge.http('PUT', '/v1/admin/pricing', { token: admin, body });
    t.is(res.status, 400, `${field}: ${JSON.stringify(res.body)}`);
    t.is(res.body.error.code, 'invalid_request');
    t.true(res.body.error.details.some((d: { path: string }) => d.path === `body.tariffs.economy.${field}`), JSON.stringify(res.body.error.details));
  }
  t.is((await edge.http('GET', '/v1/admin/pricing', { token: admin })).body.tariffs.economy.maximum, 20_000, 'nothing was stored');
});

test.serial('accounts: register, login, wrong password, duplicate email, weak password; the login token works', async (t) => {
  const email = `ana-${randomUUID().slice(0, 8)}@example.com`;
  const reg = await edge.http('POST', '/v1/auth/register', { body: { email, password: 'correct-Horse-9', name: 'Ana', role: 'rider' } });
  t.is(reg.status, 202);
  t.deepEqual(reg.body, { status: 'accepted' }, 'nothing about the account in the answer');
  const dup = await edge.http('POST', '/v1/auth/register', { body: { email, password: 'correct-Horse-9', name: 'Ana', role: 'rider' } });
  t.is(dup.status, 202, 'a taken email gets the same answer');
  t.deepEqual(dup.body, reg.body);
  t.is((await edge.http('POST', '/v1/auth/register', { body: { email: `x${email}`, password: 'short', name: 'A', role: 'rider' } })).body.error.code, 'weak_password');
  t.is((await edge.http('POST', '/v1/auth/register', { body: { email: `z${email}`, password: 'password12', name: 'A', role: 'rider' } })).body.error.code, 'weak_password', 'common passwords are refused');
  t.is((await edge.http('POST', '/v1/auth/register', { body: { email: `y${email}`, password: 'x', name: 'A', role: 'admin' } })).status, 400, 'admins are not self-registered');
  const wrong = await edge.http('POST', '/v1/auth/login', { body: { email, password: 'correct-Horse-8' } });
  t.is(wrong.status, 401);
  const login = await edge.http('POST', '/v1/auth/login', { body: { email, password: 'correct-Horse-9' } });
  t.is(login.status, 200);
  t.true(Date.parse(login.body.expiresAt) > Date.now());
  const quote = await edge.http('POST', '/v1/quotes', { token: login.body.token, body: { pickup: P, dropoff: D, vehicleType: 'economy' } });
  t.is(quote.status, 201, 'the token from login works on the API');
});

test.serial('the same Idempotency-Key twice creates one booking', async (t) => {
  const key = `key-${randomUUID()}`;
  const body = { pickup: P, dropoff: D, vehicleType: 'economy', scheduledAt: new Date(Date.now() + 3_600_000).toISOString() };
  const first = await edge.http('POST', '/v1/bookings', { token: rider, body, headers: { 'idempotency-key': key } });
  const second = await edge.http('POST', '/v1/bookings', { token: rider, body, headers: { 'idempotency-key': key } });
  t.is(first.status, 201);
  t.is(second.body.id, first.body.id);
  const other = await edge.http('POST', '/v1/bookings', { token: otherRider, body, headers: { 'idempotency-key': key } });
  t.not(other.body.id, first.body.id, 'keys are per rider');
});

test.serial('a quote books once: another Idempotency-Key (or none) gets 409 quote_used, the same key the same booking', async (t) => {
  const quote = await edge.http('POST', '/v1/quotes', { token: rider, body: { pickup: P, dropoff: D, vehicleType: 'economy' } });
  t.is(quote.status, 201);
  const body = { quoteId: quote.body.quoteId, scheduledAt: new Date(Date.now() + 3_600_000).toISOString() };
  const key = `q1-${randomUUID()}`;
  const first = await edge.http('POST', '/v1/bookings', { token: rider, body, headers: { 'idempotency-key': key } });
  t.is(first.status, 201);
  t.deepEqual(first.body.price, quote.body.price);
  const retry = await edge.http('POST', '/v1/bookings', { token: rider, body, headers: { 'idempotency-key': key } });
  t.is(retry.body.id, first.body.id, 'a retry with the same key answers the same booking');
  const again = await edge.http('POST', '/v1/bookings', { token: rider, body, headers: { 'idempotency-key': `q2-${randomUUID()}` } });
  t.is(again.status, 409);
  t.is(again.body.error.code, 'quote_used');
  const bare = await edge.http('POST', '/v1/bookings', { token: rider, body });
  t.is(bare.status, 409);
  t.is(bare.body.error.code, 'quote_used');
});

test.serial('a burst over the booking limit gets 429 with Retry-After; other users are unaffected', async (t) => {
  const burster = await edge.token(`burst-${randomUUID().slice(0, 6)}`, 'rider');
  const body = { pickup: P, dropoff: D, vehicleType: 'economy', scheduledAt: new Date(Date.now() + 3_600_000).toISOString() };
  let limited: Awaited<ReturnType<EdgeNode['http']>> | undefined;
  for (let i = 0; i < 40 && !limited; i++) {
    const res = await edge.http('POST', '/v1/bookings', { token: burster, body });
    if (res.status === 429) limited = res;
  }
  t.truthy(limited, 'the burst was limited');
  t.is(limited!.body.error.code, 'rate_limited');
  t.true(Number(limited!.headers.get('retry-after')) >= 1);
  const calm = await edge.http('POST', '/v1/bookings', { token: otherRider, body });
  t.is(calm.status, 201, 'another rider is unaffected');
});

test.serial('OpenAPI: every route is documented, and every answer of this suite keeps to the document as a validating proxy checks it', async (t) => {
  const doc = (await edge.http('GET', '/openapi.json')).body;
  t.is(doc.openapi, '3.1.0');
  const documented = new Set(Object.entries(doc.paths as Record<string, Record<string, unknown>>).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p}`)));
  const routed = edge.node.routes.filter((r) => r.includes(' /v1/')).map((r) => r.replace(/:(\w+)/g, '{$1}'));
  t.true(routed.length > 20);
  for (const route of routed) t.true(documented.has(route), `${route} is in /openapi.json`);
  // Everything above (bad input, refused tokens, conflicts, rate limits) went through the validator.
  const covered = [...(await edge.validator()).seen.values()].reduce((n, statuses) => n + statuses.size, 0);
  t.true(covered > 30, `${covered} operation and status pairs checked`);
  t.deepEqual(edge.violations, [], edge.violations.join('\n'));
});
