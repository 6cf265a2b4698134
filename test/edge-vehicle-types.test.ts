// Vehicle types named by requests (second outside review, finding 1). Tariffs were looked
// up as `tariffs[type]` on a plain object, so `constructor` found a built-in: a quote and a
// whole ride with `price.amount: null`, and any driver could go online as any type. Every
// field that names a vehicle type (or another key: message types, groupings, statuses)
// answers a name every object has with a 4xx naming the field; a type pricing does not
// define is `unknown_vehicle_type`; and a driver goes online only as its vehicle's type, or
// without one as a type an admin allowed it. Real HTTP and ws clients, real PostgreSQL.

import test from 'ava';
import { randomUUID } from 'node:crypto';
import { createAuthenticator } from '../http/auth.ts';
import { SECRET, startEdge, type EdgeNode, type WsClient } from './helpers/edge-client.ts';

const PROTOTYPE_NAMES = ['constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf'];
const P = { lat: 45.4642, lng: 9.19 }; // Milan: no other suite dispatches here
const D = { lat: 45.48, lng: 9.2 };
const TARIFF = { base: 100, perKm: 100, perMin: 10, minimum: 500, maximum: 9_000, currency: 'EUR' };

let edge: EdgeNode;
let admin: string;
let rider: string;
let vehicleId: string;
test.before(async () => {
  edge = await startEdge();
  const run = randomUUID().slice(0, 6);
  admin = await edge.token(`vt-admin-${run}`, 'admin');
  rider = await edge.token(`vt-rider-${run}`, 'rider');
  const made = await edge.http('POST', '/v1/admin/vehicles', { token: admin, body: { plate: `VT-${run}`, type: 'comfort', capacity: 4 } });
  if (made.status !== 201) throw new Error(JSON.stringify(made.body));
  vehicleId = made.body.id;
});
test.after.always(async () => { await edge?.stop(); });

type Answer = { status: number; body: any };
/** A 4xx (never 2xx or 5xx) whose message or details name the field. */
function namesField(t: import('ava').ExecutionContext, res: Answer, field: string, label: string): void {
  t.true(res.status >= 400 && res.status < 500, `${label} -> ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`);
  const text = JSON.stringify(res.body?.error ?? {});
  t.true(text.includes(field), `${label}: the error names ${field}: ${text.slice(0, 300)}`);
}

test('a name every object has is a 4xx naming the field wherever a request names a vehicle type or another key', async (t) => {
  const driverId = `vt-named-${randomUUID().slice(0, 6)}`;
  t.is((await edge.http('POST', '/v1/admin/drivers', { token: admin, body: { id: driverId, name: 'Named' } })).status, 201);
  for (const name of PROTOTYPE_NAMES) {
    const q = encodeURIComponent(name);
    const cases: [string, string, string, unknown, string][] = [
      ['POST', '/v1/quotes', rider, { pickup: P, dropoff: D, vehicleType: name }, 'vehicleType'],
      ['POST', '/v1/bookings', rider, { pickup: P, dropoff: D, vehicleType: name }, 'vehicleType'],
      ['GET', `/v1/drivers/nearby?lat=${P.lat}&lng=${P.lng}&vehicleType=${q}`, rider, undefined, 'query.vehicleType'],
      ['POST', '/v1/admin/vehicles', admin, { plate: 'X-1', type: name, capacity: 4 }, 'body.type'],
      ['PATCH', `/v1/admin/vehicles/${vehicleId}`, admin, { type: name }, 'body.type'],
      ['POST', '/v1/admin/drivers', admin, { name: 'Someone', vehicleTypes: [name] }, 'body.vehicleTypes.0'],
      ['PATCH', `/v1/admin/drivers/${driverId}`, admin, { vehicleTypes: ['economy', name] }, 'body.vehicleTypes.1'],
      ['PUT', '/v1/admin/pricing', admin, { tariffs: { economy: TARIFF, [name]: TARIFF }, surgeCap: 2 }, `body.tariffs.${name}`],
      ['GET', `/v1/admin/analytics?from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z&groupBy=${q}`, admin, undefined, 'query.groupBy'],
      ['GET', `/v1/bookings?status=${q}`, rider, undefined, 'query.status'],
      ['GET', `/v1/admin/drivers?status=${q}`, admin, undefined, 'query.status'],
      ['POST', `/v1/admin/projections/${q}/rebuild`, admin, undefined, 'path.name'],
      ['GET', `/v1/bookings?${q}=1`, rider, undefined, `query.${name}`],
      ['POST', '/v1/quotes', rider, { pickup: P, dropoff: D, vehicleType: 'economy', [name]: 1 }, name],
    ];
    for (const [method, path, token, body, field] of cases) {
      const res = await edge.http(method, path, { token, body });
      const label = `${method} ${path} ${JSON.stringify(body ?? '')}`;
      // The body parser refuses a `__proto__` key anywhere in a JSON body, before any schema.
      if (name === '__proto__' && body !== undefined && JSON.stringify(body).includes('"__proto__":')) {
        t.like(res, { status: 400, body: { error: { code: 'malformed_json' } } }, label);
        t.regex(res.body.error.message, /prototype property/, label);
      } else {
        namesField(t, res, field, label);
      }
    }
  }
  // Nothing was changed by any of them.
  t.is((await edge.http('GET', `/v1/admin/vehicles/${vehicleId}`, { token: admin })).body.type, 'comfort');
  t.deepEqual(Object.keys((await edge.http('GET', '/v1/admin/pricing', { token: admin })).body.tariffs), ['economy', 'comfort', 'xl']);
});

test('a quote, a booking and a search for a type with no tariff are 400 unknown_vehicle_type naming vehicleType', async (t) => {
  for (const [method, path, body, field] of [
    ['POST', '/v1/quotes', { pickup: P, dropoff: D, vehicleType: 'limo' }, 'body.vehicleType'],
    ['POST', '/v1/bookings', { pickup: P, dropoff: D, vehicleType: 'limo' }, 'body.vehicleType'],
    ['GET', `/v1/drivers/nearby?lat=${P.lat}&lng=${P.lng}&vehicleType=limo`, undefined, 'query.vehicleType'],
  ] as const) {
    const res = await edge.http(method, path, { token: rider, body });
    t.is(res.status, 400, `${path} ${JSON.stringify(res.body)}`);
    t.is(res.body.error.code, 'unknown_vehicle_type');
    t.deepEqual(res.body.error.details.map((d: { path: string }) => d.path), [field]);
    t.regex(res.body.error.message, /economy, comfort, xl/);
  }
  const ok = await edge.http('POST', '/v1/quotes', { token: rider, body: { pickup: P, dropoff: D, vehicleType: 'economy' } });
  t.is(ok.status, 201);
  t.true(Number.isInteger(ok.body.price.amount) && ok.body.price.amount > 0, JSON.stringify(ok.body.price));
});

async function driverSocket(id: string): Promise<WsClient> {
  return edge.socket(await edge.token(id, 'driver'));
}

test('the WebSocket refuses a message type or vehicle type every object has, naming it, and a type with no tariff', async (t) => {
  const socket = await driverSocket(`vt-ws-${randomUUID().slice(0, 6)}`);
  t.teardown(() => socket.close());
  for (const name of PROTOTYPE_NAMES) {
    const typed = await socket.call({ type: name }, `type-${name}`);
    t.like(typed, { type: 'error', code: 'unknown_type' }, name);
    t.true(typed.message.includes(name), typed.message);
    const online = await socket.call({ type: 'online', vehicleType: name }, `online-${name}`);
    t.like(online, { type: 'error', code: 'invalid_message' }, name);
    t.regex(online.message, /^vehicleType: /);
  }
  const limo = await socket.call({ type: 'online', vehicleType: 'limo' }, 'limo');
  t.like(limo, { type: 'error', code: 'unknown_vehicle_type' });
  t.regex(limo.message, /^vehicleType: must be one of economy, comfort, xl/);
  t.is((await edge.http('GET', '/v1/admin/drivers?status=available', { token: admin })).body.items
    .filter((d: { id: string }) => d.id.startsWith('vt-ws-')).length, 0, 'the driver never went online');
});

test('a driver with a vehicle goes online only as its vehicle\'s type, and follows a change of it', async (t) => {
  const id = `vt-car-${randomUUID().slice(0, 6)}`;
  const created = await edge.http('POST', '/v1/admin/drivers', { token: admin, body: { id, name: 'Carla', vehicleId } });
  t.is(created.status, 201, JSON.stringify(created.body));
  const socket = await driverSocket(id);
  t.teardown(() => socket.close());
  const xl = await socket.call({ type: 'online', vehicleType: 'xl' }, 'xl');
  t.like(xl, { type: 'error', code: 'vehicle_type_not_allowed' });
  t.regex(xl.message, new RegExp(`^vehicleType: this driver's vehicle ${vehicleId} is comfort, not xl`));
  t.is((await edge.http('GET', `/v1/admin/drivers/${id}`, { token: admin })).body.status, 'offline');
  t.like(await socket.call({ type: 'online', vehicleType: 'comfort' }, 'comfort'), { type: 'ack' });
  t.like((await edge.http('GET', `/v1/admin/drivers/${id}`, { token: admin })).body, { status: 'available', vehicleType: 'comfort' });
  // The vehicle becomes an xl: so does the driver when it says so, and comfort is no longer its type.
  const other = await edge.http('POST', '/v1/admin/vehicles', { token: admin, body: { plate: `VT-${id}`, type: 'xl', capacity: 6 } });
  t.is((await edge.http('PATCH', `/v1/admin/drivers/${id}`, { token: admin, body: { vehicleId: other.body.id } })).status, 200);
  t.like(await socket.call({ type: 'online', vehicleType: 'xl' }, 'now-xl'), { type: 'ack' });
  t.like(await socket.call({ type: 'online', vehicleType: 'comfort' }, 'back'), { type: 'error', code: 'vehicle_type_not_allowed' });
  // A vehicle that is no longer registered gives no type at all.
  t.is((await edge.http('DELETE', `/v1/admin/vehicles/${other.body.id}`, { token: admin })).status, 204);
  const retired = await socket.call({ type: 'online', vehicleType: 'xl' }, 'retired');
  t.like(retired, { type: 'error', code: 'vehicle_type_not_allowed' });
  t.regex(retired.message, /is not registered/);
});

test('a driver without a vehicle goes online only as a type an admin allowed it', async (t) => {
  const id = `vt-walk-${randomUUID().slice(0, 6)}`;
  const created = await edge.http('POST', '/v1/admin/drivers', { token: admin, body: { id, name: 'Wanda', vehicleTypes: ['economy'] } });
  t.is(created.status, 201, JSON.stringify(created.body));
  t.deepEqual(created.body.vehicleTypes, ['economy']);
  const unknown = await edge.http('PATCH', `/v1/admin/drivers/${id}`, { token: admin, body: { vehicleTypes: ['economy', 'limo'] } });
  t.is(unknown.status, 400);
  t.like(unknown.body.error, { code: 'unknown_vehicle_type', details: [{ path: 'body.vehicleTypes.1' }] });
  const socket = await driverSocket(id);
  t.teardown(() => socket.close());
  const xl = await socket.call({ type: 'online', vehicleType: 'xl' }, 'xl');
  t.like(xl, { type: 'error', code: 'vehicle_type_not_allowed' });
  t.regex(xl.message, /^vehicleType: this driver may go online as economy/);
  t.like(await socket.call({ type: 'online', vehicleType: 'economy' }, 'eco'), { type: 'ack' });
  t.like(await socket.call({ type: 'online', vehicleType: 'xl' }, 'xl-again'), { type: 'error', code: 'vehicle_type_not_allowed' });
  t.like((await edge.http('GET', `/v1/admin/drivers/${id}`, { token: admin })).body, { status: 'available', vehicleType: 'economy' });
});

test('without development tokens, a driver with neither a vehicle nor an allowed type cannot go online', async (t) => {
  const prod = await startEdge({ AUTH_DEV_TOKENS: 'false' });
  t.teardown(() => prod.stop());
  const issuer = await createAuthenticator({ secret: SECRET, issuer: 'dispatch', tokenTtlSeconds: 900 });
  const token = async (sub: string, role: 'driver' | 'admin') => (await issuer.issue({ sub, role })).token;
  const id = `vt-none-${randomUUID().slice(0, 6)}`;
  const boss = await token(`vt-boss-${id}`, 'admin');
  t.is((await prod.http('POST', '/v1/admin/drivers', { token: boss, body: { id, name: 'Nadia' } })).status, 201);
  const socket = await prod.socket(await token(id, 'driver'));
  t.teardown(() => socket.close());
  // A deactivated driver hears that first.
  t.is((await prod.http('PATCH', `/v1/admin/drivers/${id}`, { token: boss, body: { active: false } })).status, 200);
  t.like(await socket.call({ type: 'online', vehicleType: 'economy' }, 'inactive'), { type: 'error', code: 'inactive' });
  t.is((await prod.http('PATCH', `/v1/admin/drivers/${id}`, { token: boss, body: { active: true } })).status, 200);
  const refused = await socket.call({ type: 'online', vehicleType: 'economy' }, 'eco');
  t.like(refused, { type: 'error', code: 'vehicle_type_not_allowed' });
  t.regex(refused.message, /^vehicleType: this driver has no vehicle and no vehicle type an admin allowed/);
  // A driver nobody created (a token from another identity provider) is no different.
  const stranger = await prod.socket(await token(`vt-stranger-${id}`, 'driver'));
  t.teardown(() => stranger.close());
  t.like(await stranger.call({ type: 'online', vehicleType: 'xl' }, 'xl'), { type: 'error', code: 'vehicle_type_not_allowed' });
  t.is((await prod.http('PATCH', `/v1/admin/drivers/${id}`, { token: boss, body: { vehicleTypes: ['economy'] } })).status, 200);
  t.like(await socket.call({ type: 'online', vehicleType: 'economy' }, 'eco-now'), { type: 'ack' });
});
