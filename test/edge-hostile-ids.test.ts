// The edge refuses what storage would (issue 11, item 2). A path id with a NUL once
// activated the entity `booking:\0`, whose key PostgreSQL refuses (22021): the command
// failed, its region retried it for ever and that shard never committed again; a NUL
// in a body string did the same at the journal insert (jsonb, 22P05). Every path id is
// now checked against its format and answered 404 naming `path.<name>` before any
// actor is asked; every free string of a body, query or WebSocket message refuses
// control characters (but tab and newline) and unpaired surrogates with a 400 (or
// `invalid_message`) naming the field. Nothing here may answer 5xx, and the node goes
// on booking on every shard afterwards.

import test from 'ava';
import { request } from 'node:http';
import { randomUUID } from 'node:crypto';
import type { EntityRef } from '../actors/behavior.ts';
import { startEdge, type EdgeNode } from './helpers/edge-client.ts';

const P = { lat: 52.37, lng: 4.89 };
const D = { lat: 52.38, lng: 4.9 };
/** What every id an actor may be asked about looks like (http/ids.ts); cells are H3 hex. */
const SAFE_ID = /^(?!\.\.?$)[A-Za-z0-9_.:@|+-]{1,128}$/;
const CONTROL = /[\u0000-\u001f\u007f]/;

let edge: EdgeNode;
let rider: string;
let admin: string;
let driverTok: string;
let run: string;
let booking: string;
let vehicle: string;
let driver: string;
/** Every entity the edge asked the region about while the hostile requests ran. */
const asked: EntityRef[] = [];
/** Every status answered to raw(), for the final check that none was a 5xx. */
const answered: { request: string; status: number }[] = [];

test.before(async () => {
  // The hostile tables are long: the limits are not what is tested here.
  edge = await startEdge({
    RATE_LIMIT_API_PER_MIN: '100000', RATE_LIMIT_BOOKINGS_PER_MIN: '1000', RATE_LIMIT_REGISTER_PER_MIN: '1000',
    RATE_LIMIT_LOGIN_PER_MIN: '1000', WS_MESSAGES_PER_SECOND: '1000',
  });
  run = randomUUID().slice(0, 6);
  rider = await edge.token(`hid-rider-${run}`, 'rider');
  admin = await edge.token(`hid-admin-${run}`, 'admin');
  driver = `hid-driver-${run}`;
  driverTok = await edge.token(driver, 'driver');
  const made = await edge.http('POST', '/v1/bookings', {
    token: rider, body: { pickup: P, dropoff: D, vehicleType: 'economy', scheduledAt: new Date(Date.now() + 3_600_000).toISOString() },
  });
  if (made.status !== 201) throw new Error(`booking: ${made.status} ${JSON.stringify(made.body)}`);
  booking = made.body.id;
  const car = await edge.http('POST', '/v1/admin/vehicles', { token: admin, body: { plate: `H-${run}`, type: 'economy', capacity: 4 } });
  if (car.status !== 201) throw new Error(`vehicle: ${car.status} ${JSON.stringify(car.body)}`);
  vehicle = car.body.id;
  const hired = await edge.http('POST', '/v1/admin/drivers', { token: admin, body: { id: driver, name: 'Hostile Test Driver' } });
  if (hired.status !== 201) throw new Error(`driver: ${hired.status} ${JSON.stringify(hired.body)}`);

  // Every ask, request and tell the edge makes from here on is recorded.
  const region = edge.node.edge.region as unknown as Record<'ask' | 'request' | 'tell', (to: EntityRef, ...rest: unknown[]) => Promise<unknown>>;
  for (const method of ['ask', 'request', 'tell'] as const) {
    const original = region[method].bind(region);
    region[method] = (to: EntityRef, ...rest: unknown[]) => { asked.push(to); return original(to, ...rest); };
  }
});
test.after.always(async () => { await edge?.stop(); });

interface Raw { status: number; body: any }

/** A request with the path sent exactly as written (fetch would resolve `.` and `..` segments). */
function raw(method: string, path: string, options: { token?: string; body?: string } = {}): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const url = new URL(edge.url);
    const headers: Record<string, string> = {};
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    if (options.body !== undefined) { headers['content-type'] = 'application/json'; headers['content-length'] = String(Buffer.byteLength(options.body)); }
    const req = request({ host: url.hostname, port: url.port, method, path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let body: unknown = text;
        try { body = text ? JSON.parse(text) : undefined; } catch { /* not JSON */ }
        answered.push({ request: `${method} ${path.slice(0, 120)}`, status: res.statusCode ?? 0 });
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

const detailPaths = (res: Raw) => ((res.body?.error?.details ?? []) as { path: string }[]).map((d) => d.path);

function assertRefused(t: import('ava').ExecutionContext, res: Raw, status: number, code: string, field: string, label: string) {
  const shown = `${label} -> ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`;
  t.is(res.status, status, shown);
  t.is(res.body?.error?.code, code, shown);
  t.true(detailPaths(res).includes(field), `${shown}: details name ${field}`);
}

// Path segments as they go on the wire; none is in any id format.
const HOSTILE_SEGMENTS = [
  '%00', '%00%01', 'bk_%00', '%01', '%7F', 'a%00b', '%0A', '%09', '%0D', `bk_${'A'.repeat(21)}%0A`, `bk_${'A'.repeat(21)}%00`,
  'x'.repeat(1000), `bk_${'x'.repeat(1000)}`, `veh_${'0'.repeat(1000)}`, '.', '..', '%2E%2E', '..%2F..%2Fetc', '%2F', '%5C',
  '%C3%A9', '%F0%9F%98%80', '%ED%A0%80', '%E0%A4%A', '%20', 'bk_%20x', "bk_'%3B--", '%EF%BF%BF', '%E2%80%AE', '%C2%85',
];

test.serial('hostile ids in every path are 404 naming the parameter, and no actor is asked about them', async (t) => {
  const window = { from: new Date(Date.now() + 86_400_000).toISOString(), to: new Date(Date.now() + 90_000_000).toISOString(), reason: 'brakes' };
  // [method, path with {id}, token, body, the parameter the 404 names]
  const routes: [string, string, string, unknown, string][] = [
    ['GET', '/v1/bookings/{id}', rider, undefined, 'path.id'],
    ['GET', '/v1/bookings/{id}', admin, undefined, 'path.id'],
    ['GET', '/v1/bookings/{id}', driverTok, undefined, 'path.id'],
    ['POST', '/v1/bookings/{id}/cancel', rider, {}, 'path.id'],
    ['POST', '/v1/bookings/{id}/cancel', rider, undefined, 'path.id'],
    ['POST', '/v1/bookings/{id}/cancel', admin, { reason: 'test' }, 'path.id'],
    ['POST', '/v1/bookings/{id}/rating', rider, { stars: 5, comment: 'fine' }, 'path.id'],
    ['GET', '/v1/admin/vehicles/{id}', admin, undefined, 'path.id'],
    ['PATCH', '/v1/admin/vehicles/{id}', admin, { plate: 'X-1' }, 'path.id'],
    ['DELETE', '/v1/admin/vehicles/{id}', admin, undefined, 'path.id'],
    ['POST', '/v1/admin/vehicles/{id}/maintenance', admin, window, 'path.id'],
    ['GET', '/v1/admin/vehicles/{id}/maintenance', admin, undefined, 'path.id'],
    ['DELETE', '/v1/admin/vehicles/{id}/maintenance/mw_0123abcd-012', admin, undefined, 'path.id'],
    ['DELETE', `/v1/admin/vehicles/${vehicle}/maintenance/{id}`, admin, undefined, 'path.mid'],
    ['GET', '/v1/admin/drivers/{id}', admin, undefined, 'path.id'],
    ['PATCH', '/v1/admin/drivers/{id}', admin, { name: 'Renamed' }, 'path.id'],
    ['POST', '/v1/admin/drivers/{id}/approve', admin, undefined, 'path.id'],
  ];
  asked.length = 0;
  let count = 0;
  for (const [method, template, token, body, field] of routes) {
    for (const segment of HOSTILE_SEGMENTS) {
      const path = template.replace('{id}', segment);
      const res = await raw(method, path, { token, body: body === undefined ? undefined : JSON.stringify(body) });
      assertRefused(t, res, 404, 'not_found', field, `${method} ${path.slice(0, 120)}`);
      count++;
    }
  }
  t.true(count >= 500, `${count} hostile requests`);
  t.deepEqual(asked, [], 'none of them reached the region');

  // What the issue reported, exactly.
  assertRefused(t, await raw('POST', '/v1/bookings/%00/cancel', { token: rider, body: '{}' }), 404, 'not_found', 'path.id', 'cancel %00');
  assertRefused(t, await raw('GET', '/v1/bookings/%00%01', { token: rider }), 404, 'not_found', 'path.id', 'GET %00%01');

  // Ids in their formats still reach the handler: an unknown one is the handler's 404, a known one works.
  const unknown = await raw('GET', `/v1/bookings/bk_${randomUUID()}`, { token: admin });
  t.is(unknown.status, 404);
  t.deepEqual(detailPaths(unknown), [], 'an unknown, well-formed id is not a format error');
  t.is((await raw('GET', `/v1/bookings/${booking}`, { token: rider })).status, 200);
  t.is((await raw('GET', `/v1/admin/vehicles/${vehicle}`, { token: admin })).status, 200);
  t.is((await raw('GET', `/v1/admin/drivers/${driver}`, { token: admin })).status, 200);
  t.true(asked.length > 0 && asked.every((r) => SAFE_ID.test(r.id)), JSON.stringify(asked));
});

test.serial('control characters in every body string are a 400 naming the field', async (t) => {
  const BAD = ['\u0000', 'a\u0000b', '\u0001', 'x\u0007', '\u001b[31m', '\u007f', 'line\rfeed', '\ud800', 'ok\udc00'];
  const email = () => `hid-${randomUUID().slice(0, 8)}@example.org`;
  const password = `violet-anchor-${run}-drifts-north`;
  // [method, path, token, body with {bad} where the string goes, the field]
  const cases: [string, string, string | undefined, (bad: string) => unknown, string][] = [
    ['POST', '/v1/auth/register', undefined, (bad) => ({ email: email(), password, name: `Nell${bad}`, role: 'rider' }), 'body.name'],
    ['POST', '/v1/auth/register', undefined, (bad) => ({ email: email(), password, name: 'Nell', phone: `+31${bad}`, role: 'driver' }), 'body.phone'],
    ['POST', '/v1/auth/register', undefined, (bad) => ({ email: email(), password: `${password}${bad}`, name: 'Nell', role: 'rider' }), 'body.password'],
    ['POST', '/v1/auth/register', undefined, (bad) => ({ email: `n${bad}@example.org`, password, name: 'Nell', role: 'rider' }), 'body.email'],
    ['POST', '/v1/auth/login', undefined, (bad) => ({ email: email(), password: `${password}${bad}` }), 'body.password'],
    ['POST', '/v1/auth/token', undefined, (bad) => ({ sub: `sub${bad}`, role: 'rider' }), 'body.sub'],
    ['POST', '/v1/bookings', rider, (bad) => ({ quoteId: `q${bad}.x` }), 'body.quoteId'],
    ['POST', '/v1/quotes', rider, (bad) => ({ pickup: P, dropoff: D, vehicleType: `economy${bad}` }), 'body.vehicleType'],
    ['POST', `/v1/bookings/${booking}/cancel`, rider, (bad) => ({ reason: `plans changed${bad}` }), 'body.reason'],
    ['POST', `/v1/bookings/${booking}/rating`, rider, (bad) => ({ stars: 4, comment: `smooth${bad}` }), 'body.comment'],
    ['POST', '/v1/admin/vehicles', admin, (bad) => ({ plate: `P${bad}`, type: 'economy', capacity: 4 }), 'body.plate'],
    ['POST', '/v1/admin/vehicles', admin, (bad) => ({ plate: 'P-1', type: 'economy', capacity: 4, driverId: `d${bad}` }), 'body.driverId'],
    ['PATCH', `/v1/admin/vehicles/${vehicle}`, admin, (bad) => ({ plate: `P${bad}` }), 'body.plate'],
    ['PATCH', `/v1/admin/vehicles/${vehicle}`, admin, (bad) => ({ driverId: `d${bad}` }), 'body.driverId'],
    ['POST', `/v1/admin/vehicles/${vehicle}/maintenance`, admin, (bad) => ({
      from: new Date(Date.now() + 86_400_000).toISOString(), to: new Date(Date.now() + 90_000_000).toISOString(), reason: `brakes${bad}`,
    }), 'body.reason'],
    ['POST', '/v1/admin/drivers', admin, (bad) => ({ name: `Dora${bad}` }), 'body.name'],
    ['POST', '/v1/admin/drivers', admin, (bad) => ({ name: 'Dora', phone: `+31${bad}` }), 'body.phone'],
    ['POST', '/v1/admin/drivers', admin, (bad) => ({ id: `dora${bad}`, name: 'Dora' }), 'body.id'],
    ['POST', '/v1/admin/drivers', admin, (bad) => ({ name: 'Dora', vehicleId: `${vehicle}${bad}` }), 'body.vehicleId'],
    ['PATCH', `/v1/admin/drivers/${driver}`, admin, (bad) => ({ name: `Dora${bad}` }), 'body.name'],
    ['PATCH', `/v1/admin/drivers/${driver}`, admin, (bad) => ({ phone: `+31${bad}` }), 'body.phone'],
  ];
  asked.length = 0;
  for (const [method, path, token, body, field] of cases) {
    for (const bad of BAD) {
      // JSON.stringify writes an unpaired surrogate as an escape (\ud800), as a client would send it.
      const res = await raw(method, path, { token, body: JSON.stringify(body(bad)) });
      assertRefused(t, res, 400, 'invalid_request', field, `${method} ${path} ${field}=${JSON.stringify(bad)}`);
    }
  }
  t.deepEqual(asked, [], 'none of them reached the region');

  // Tab and newline are text; so is anything printable.
  const cancelled = await raw('POST', `/v1/bookings/${booking}/cancel`, { token: rider, body: JSON.stringify({ reason: 'plans\tchanged\nsorry 😀 é' }) });
  t.is(cancelled.status, 200, JSON.stringify(cancelled.body));
  t.is(cancelled.body.status, 'cancelled');
  const renamed = await raw('PATCH', `/v1/admin/drivers/${driver}`, { token: admin, body: JSON.stringify({ name: 'Zoë Ødegård', phone: '+31 6 1234' }) });
  t.is(renamed.status, 200, JSON.stringify(renamed.body));

  // Bad subjects for development tokens, beyond control characters.
  for (const sub of ['', '.', '..', 'a b', 'a/b', 'x'.repeat(129), 'é']) {
    assertRefused(t, await raw('POST', '/v1/auth/token', { body: JSON.stringify({ sub, role: 'driver' }) }), 400, 'invalid_request', 'body.sub', `token sub ${JSON.stringify(sub)}`);
  }
  for (const sub of ['drv_0b7c2f8e-3f7a-4c39-9a51-6f3c1a2b4d5e', 'auth0|5f7c8ec7c33c6c004bbafe82', 'ana@example.org', 'sim-d-1a2b3c4d', 'r1', '_legacy-driver.7']) {
    t.is((await raw('POST', '/v1/auth/token', { body: JSON.stringify({ sub, role: 'rider' }) })).status, 200, `token sub ${sub}`);
  }
});

test.serial('control characters in query strings are a 400 naming the parameter', async (t) => {
  const cases: [string, string, string][] = [
    [rider, '/v1/bookings?riderId=%00', 'query.riderId'],
    [admin, '/v1/bookings?driverId=d%01', 'query.driverId'],
    [admin, '/v1/bookings?status=%00', 'query.status'],
    [rider, '/v1/drivers/nearby?lat=52&lng=4&vehicleType=economy%00', 'query.vehicleType'],
    [rider, '/v1/surge?lat=52%00&lng=4', 'query.lat'],
    [admin, '/v1/admin/drivers?status=%7F', 'query.status'],
    [admin, '/v1/admin/analytics?from=%00&to=2026-01-01T00:00:00Z', 'query.from'],
  ];
  for (const [token, path, field] of cases) assertRefused(t, await raw('GET', path, { token }), 400, 'invalid_request', field, `GET ${path}`);
});

test.serial('control characters in WebSocket messages are invalid_message naming the field', async (t) => {
  const socket = await edge.socket(driverTok);
  t.teardown(() => socket.close());
  const call = async (message: Record<string, unknown>, i: number): Promise<any> => {
    const from = socket.messages.length;
    socket.send(message);
    return socket.next((m) => m.type === 'error' || m.type === 'ack', 30_000, from).then((m) => ({ ...m, i }));
  };
  const BAD_IDS = ['\u0000', 'bk_\u0000', '\u0001x', '\u007f', `bk_${'x'.repeat(1000)}`, '\ud800', '..', 'a b', 'é'];
  asked.length = 0;
  let i = 0;
  for (const type of ['offer.accept', 'offer.decline', 'trip.arrived', 'trip.start', 'trip.complete', 'subscribe']) {
    for (const bookingId of BAD_IDS) {
      const answer = await call({ type, bookingId, ref: `r${++i}` }, i);
      t.is(answer.type, 'error', `${type} ${JSON.stringify(bookingId)}`);
      t.is(answer.code, 'invalid_message', `${type} ${JSON.stringify(bookingId)}: ${answer.message}`);
      t.regex(answer.message, /^bookingId: /, 'the message names the field');
      t.is(answer.ref, `r${i}`);
    }
  }
  const others: [Record<string, unknown>, string][] = [
    [{ type: 'online', vehicleType: 'economy\u0000' }, 'vehicleType'],
    [{ type: 'offline', ref: 'r\u0000' }, 'ref'],
    [{ type: 'offline', ref: '\ud800' }, 'ref'],
    [{ type: 'auth', token: 'eyJ\u0000' }, 'token'],
  ];
  for (const [message, field] of others) {
    const answer = await call(message, ++i);
    t.is(answer.code, 'invalid_message', `${JSON.stringify(message)}: ${answer.message}`);
    t.true(String(answer.message).startsWith(`${field}: `), `names ${field}: ${answer.message}`);
  }
  t.deepEqual(asked, [], 'none of them reached the region');
  t.is(socket.closed, undefined, 'the socket stays open');
  t.is((await socket.call({ type: 'online', vehicleType: 'economy' }, 'still')).type, 'ack', 'and still works');
  t.is((await socket.call({ type: 'offline' }, 'off')).type, 'ack');
});

test.serial('afterwards 48 of 48 bookings succeed and read back, no hostile key was activated or journalled, nothing answered 5xx', async (t) => {
  const riders = await Promise.all(Array.from({ length: 6 }, (_, i) => edge.token(`hid-after-${run}-${i}`, 'rider')));
  const made: string[] = [];
  for (let i = 0; i < 48; i++) {
    const res = await edge.http('POST', '/v1/bookings', {
      token: riders[i % riders.length], body: { pickup: { lat: P.lat + i * 0.001, lng: P.lng }, dropoff: D, vehicleType: 'economy' },
    });
    t.is(res.status, 201, `booking #${i + 1}: ${res.status} ${JSON.stringify(res.body)}`);
    if (res.status === 201) made.push(res.body.id);
  }
  t.is(made.length, 48);
  for (const [i, id] of made.entries()) {
    const res = await edge.http('GET', `/v1/bookings/${id}`, { token: riders[i % riders.length] });
    t.is(res.status, 200, `read #${i + 1}: ${res.status}`);
    t.is(res.body.id, id);
  }

  // No live actor, journal row or snapshot has a key outside the formats.
  for (const kind of ['booking', 'vehicle', 'driver', 'cell']) {
    for (const ref of edge.node.host.activeRefs(kind)) t.regex(ref.id, SAFE_ID, `active ${kind} ${JSON.stringify(ref.id)}`);
  }
  const { orm } = edge.node.storage;
  const rows = await orm.em.getConnection().execute<{ persistence_key: string }[]>(
    'select persistence_key from journal union select persistence_key from snapshot',
  );
  t.true(rows.length > 0);
  for (const { persistence_key: key } of rows) {
    t.false(CONTROL.test(key), `journal key ${JSON.stringify(key)}`);
    t.regex(key.slice(key.indexOf(':') + 1), SAFE_ID, `journal key ${JSON.stringify(key)}`);
  }
  t.is(edge.node.storage.sqlGuard.state(), 'closed', 'the shared PostgreSQL circuit is still closed');
  t.is((await edge.http('GET', '/ready')).status, 200);
  t.true(answered.length > 700, `${answered.length} raw requests`);
  const serverErrors = [...answered, ...edge.exchanges].filter((e) => e.status >= 500);
  t.deepEqual(serverErrors, [], 'no 5xx through the whole suite');
});
