// Driver administration through the public API: deactivation takes a driver out of
// dispatch and hands back what it holds, self-registered drivers wait for approval,
// unknown drivers are 404 (and not created by asking), and registration answers the
// same for new and existing emails. Real HTTP and ws clients, real PostgreSQL.

import test from 'ava';
import { randomBytes, randomUUID, scryptSync } from 'node:crypto';
import { needsRehash } from '../http/passwords.ts';
import { startEdge, type EdgeNode, type WsClient } from './helpers/edge-client.ts';
import { eventually } from './helpers/node-process.ts';

let edge: EdgeNode;
let admin: string;
test.before(async () => {
  edge = await startEdge();
  admin = await edge.token('ops-drivers', 'admin');
});
test.after.always(async () => { await edge?.stop(); });

type Point = { lat: number; lng: number };
// Each test dispatches in a city of its own, so drivers left online by one are far from the next.
const MADRID = { lat: 40.4168, lng: -3.7038 };
const LISBON = { lat: 38.7223, lng: -9.1393 };
const ROME = { lat: 41.9028, lng: 12.4964 };
const VIENNA = { lat: 48.2082, lng: 16.3738 };
const near = (p: Point, dLat: number) => ({ lat: p.lat + dLat, lng: p.lng });

async function goOnline(socket: WsClient, at: Point): Promise<void> {
  const ok = await socket.call({ type: 'online', vehicleType: 'economy' }, `on-${randomUUID().slice(0, 4)}`);
  if (ok.type !== 'ack') throw new Error(JSON.stringify(ok));
  await socket.call({ type: 'location', lat: at.lat, lng: at.lng, heading: 0, speed: 5, at: new Date().toISOString() }, `fix-${randomUUID().slice(0, 4)}`);
}

/** An admin-created driver, online over WebSocket at a place. */
async function onlineDriver(id: string, at: Point): Promise<WsClient> {
  const created = await edge.http('POST', '/v1/admin/drivers', { token: admin, body: { id, name: `Driver ${id}` } });
  if (created.status !== 201) throw new Error(JSON.stringify(created.body));
  const socket = await edge.socket(await edge.token(id, 'driver'));
  await goOnline(socket, at);
  return socket;
}

async function book(riderToken: string, pickup: Point): Promise<string> {
  const booked = await edge.http('POST', '/v1/bookings', { token: riderToken, body: { pickup, dropoff: near(pickup, 0.02), vehicleType: 'economy' } });
  if (booked.status !== 201) throw new Error(JSON.stringify(booked.body));
  return booked.body.id as string;
}

const bookingOf = async (id: string) => (await edge.http('GET', `/v1/bookings/${id}`, { token: admin })).body;
const subOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).sub as string;

test.serial('a deactivated driver goes offline, is never offered, and the booking ends no_driver', async (t) => {
  const id = `deact-${randomUUID().slice(0, 6)}`;
  const driver = await onlineDriver(id, near(MADRID, 0.002));
  t.is((await edge.http('GET', `/v1/admin/drivers/${id}`, { token: admin })).body.status, 'available');
  const riderToken = await edge.token(`rider-${id}`, 'rider');
  // Admins see drivers' ids in the nearby list (riders get a fresh ref per answer).
  const listed = async () => {
    const nearby = await edge.http('GET', `/v1/drivers/nearby?lat=${MADRID.lat}&lng=${MADRID.lng}`, { token: admin });
    if (nearby.status !== 200) throw new Error(JSON.stringify(nearby.body));
    return nearby.body.drivers.some((d: { driverId: string }) => d.driverId === id) as boolean;
  };
  t.true(await eventually(listed), 'online, the driver is listed near the pickup');

  const patched = await edge.http('PATCH', `/v1/admin/drivers/${id}`, { token: admin, body: { active: false } });
  t.is(patched.status, 200, JSON.stringify(patched.body));
  t.is(patched.body.active, false);
  t.is(patched.body.status, 'offline', 'deactivation takes the driver offline');
  await driver.next((m) => m.type === 'driver.deactivated');
  t.is((await driver.call({ type: 'online', vehicleType: 'economy' }, 'again')).code, 'inactive', 'and it cannot come back');
  t.true(await eventually(async () => !(await listed())), 'no longer listed near the pickup');

  const bookingId = await book(riderToken, MADRID);
  t.true(await eventually(async () => (await bookingOf(bookingId)).status === 'no_driver', 40_000), 'the booking found no driver');
  t.false(driver.messages.some((m) => m.type === 'offer'), 'the inactive driver was never offered');
  driver.close();
});

test.serial('deactivating a driver with an open offer moves the booking to the next active driver', async (t) => {
  const run = randomUUID().slice(0, 6);
  const first = await onlineDriver(`first-${run}`, near(LISBON, 0.001));
  const second = await onlineDriver(`second-${run}`, near(LISBON, 0.01));
  const bookingId = await book(await edge.token(`rider-o-${run}`, 'rider'), LISBON);
  await first.next((m) => m.type === 'offer' && m.bookingId === bookingId);

  t.is((await edge.http('PATCH', `/v1/admin/drivers/first-${run}`, { token: admin, body: { active: false } })).status, 200);
  await first.next((m) => m.type === 'offer.expired' && m.bookingId === bookingId);
  const accept = await first.call({ type: 'offer.accept', bookingId }, 'late');
  t.is(accept.code, 'inactive', 'an inactive driver cannot accept');
  await second.next((m) => m.type === 'offer' && m.bookingId === bookingId, 8_000);
  t.is((await second.call({ type: 'offer.accept', bookingId }, 'acc')).type, 'ack');
  t.true(await eventually(async () => (await bookingOf(bookingId)).driverId === `second-${run}`));
  first.close();
  second.close();
});

test.serial('deactivating a driver holding an accepted booking not yet started releases it to another driver', async (t) => {
  const run = randomUUID().slice(0, 6);
  const holder = await onlineDriver(`holder-${run}`, near(ROME, 0.001));
  const riderToken = await edge.token(`rider-a-${run}`, 'rider');
  const rider = await edge.socket(riderToken);
  const bookingId = await book(riderToken, ROME);
  t.is((await rider.call({ type: 'subscribe', bookingId }, 'sub')).type, 'ack');
  await holder.next((m) => m.type === 'offer' && m.bookingId === bookingId);
  t.is((await holder.call({ type: 'offer.accept', bookingId }, 'acc')).type, 'ack');
  t.true(await eventually(async () => (await bookingOf(bookingId)).status === 'accepted'));
  // A second driver comes online only now, so the first offer could not have gone to it.
  const spare = await onlineDriver(`spare-${run}`, near(ROME, 0.01));

  t.is((await edge.http('PATCH', `/v1/admin/drivers/holder-${run}`, { token: admin, body: { active: false } })).status, 200);
  await holder.next((m) => m.type === 'booking.released' && m.bookingId === bookingId);
  t.is((await holder.call({ type: 'trip.start', bookingId }, 'start')).type, 'error', 'the released driver cannot start the trip');
  await rider.next((m) => m.type === 'booking.updated' && m.booking.status === 'searching' && m.booking.timeline.some((e: { status: string }) => e.status === 'accepted'));
  await spare.next((m) => m.type === 'offer' && m.bookingId === bookingId, 10_000);
  t.is((await spare.call({ type: 'offer.accept', bookingId }, 'acc2')).type, 'ack');
  t.true(await eventually(async () => (await bookingOf(bookingId)).driverId === `spare-${run}`));
  const view = await bookingOf(bookingId);
  t.deepEqual(view.timeline.map((e: { status: string }) => e.status), ['searching', 'offered', 'accepted', 'searching', 'offered', 'accepted']);
  const holderView = await edge.http('GET', `/v1/admin/drivers/holder-${run}`, { token: admin });
  t.is(holderView.body.status, 'offline');
  t.is(holderView.body.bookingId, undefined);
  for (const s of [holder, spare, rider]) s.close();
});

test.serial('a self-registered driver is pending until an admin approves it; admin-created drivers are approved', async (t) => {
  const email = `drv-${randomUUID().slice(0, 8)}@example.com`;
  const password = 'violet-Kettle-41-sunder';
  const reg = await edge.http('POST', '/v1/auth/register', { body: { email, password, name: 'Pat Driver', role: 'driver' } });
  t.is(reg.status, 202);
  const login = await edge.http('POST', '/v1/auth/login', { body: { email, password } });
  t.is(login.status, 200, 'the account is usable by logging in');
  const id = subOf(login.body.token);

  const socket = await edge.socket(login.body.token);
  const refused = await socket.call({ type: 'online', vehicleType: 'economy' }, 'on1');
  t.is(refused.type, 'error');
  t.is(refused.code, 'driver_pending_approval');

  const view = await edge.http('GET', `/v1/admin/drivers/${id}`, { token: admin });
  t.is(view.status, 200);
  t.is(view.body.approval, 'pending');
  t.is(view.body.name, 'Pat Driver');
  t.true(await eventually(async () => (await edge.http('GET', '/v1/admin/drivers', { token: admin })).body.items
    .some((d: { id: string; approval: string }) => d.id === id && d.approval === 'pending')), 'the list shows the approval state');

  const riderToken = await edge.token('some-rider', 'rider');
  t.is((await edge.http('POST', `/v1/admin/drivers/${id}/approve`, { token: riderToken })).status, 403, 'only admins approve');
  t.is((await edge.http('POST', `/v1/admin/drivers/${id}/approve`, { token: await edge.token(id, 'driver') })).status, 403, 'not even the driver itself');
  t.is((await edge.http('POST', `/v1/admin/drivers/nobody-${randomUUID()}/approve`, { token: admin })).status, 404);
  const approved = await edge.http('POST', `/v1/admin/drivers/${id}/approve`, { token: admin });
  t.is(approved.status, 200);
  t.is(approved.body.approval, 'approved');
  const again = await edge.http('POST', `/v1/admin/drivers/${id}/approve`, { token: admin });
  t.is(again.status, 200, 'approval is idempotent');
  t.is(again.body.approval, 'approved');
  await socket.next((m) => m.type === 'driver.approved');
  t.is((await socket.call({ type: 'online', vehicleType: 'economy' }, 'on2')).type, 'ack', 'approved, the driver goes online');

  const created = await edge.http('POST', '/v1/admin/drivers', { token: admin, body: { name: 'Hired' } });
  t.is(created.status, 201);
  t.is(created.body.approval, 'approved');
  socket.close();
});

test.serial('unknown drivers and vehicles are 404 and asking creates nothing', async (t) => {
  const ghost = `ghost-${randomUUID().slice(0, 8)}`;
  const get = await edge.http('GET', `/v1/admin/drivers/${ghost}`, { token: admin });
  t.is(get.status, 404);
  t.is(get.body.error.code, 'not_found');
  const patch = await edge.http('PATCH', `/v1/admin/drivers/${ghost}`, { token: admin, body: { name: 'Phantom', active: false } });
  t.is(patch.status, 404);
  t.is(patch.body.error.code, 'not_found');
  t.is((await edge.http('GET', `/v1/admin/drivers/${ghost}`, { token: admin })).status, 404, 'the PATCH created no driver');
  const list = await edge.http('GET', '/v1/admin/drivers', { token: admin });
  t.false(list.body.items.some((d: { id: string }) => d.id === ghost), 'and none appears in the list');
  const vehicle = await edge.http('PATCH', `/v1/admin/vehicles/ghost-${randomUUID().slice(0, 8)}`, { token: admin, body: { plate: 'X-1' } });
  t.is(vehicle.status, 404);
  t.is(vehicle.body.error.code, 'not_found');

  const real = `real-${randomUUID().slice(0, 8)}`;
  t.is((await edge.http('POST', '/v1/admin/drivers', { token: admin, body: { id: real, name: 'Real' } })).status, 201);
  const renamed = await edge.http('PATCH', `/v1/admin/drivers/${real}`, { token: admin, body: { name: 'Renamed' } });
  t.is(renamed.status, 200);
  t.is(renamed.body.name, 'Renamed');
  t.is((await edge.http('GET', `/v1/admin/drivers/${real}`, { token: admin })).body.name, 'Renamed');
  // A driver known only from going online (development tokens) is a driver too.
  const devId = `dev-${randomUUID().slice(0, 8)}`;
  const dev = await edge.socket(await edge.token(devId, 'driver'));
  await goOnline(dev, near(VIENNA, 0.001));
  t.is((await edge.http('PATCH', `/v1/admin/drivers/${devId}`, { token: admin, body: { phone: '+43 1' } })).status, 200);
  dev.close();
});

test.serial('an admin create is a create: a taken id is 409 and changes nothing, approval stays with /approve, a vehicleId names a vehicle', async (t) => {
  const id = `taken-${randomUUID().slice(0, 8)}`;
  t.is((await edge.http('POST', '/v1/admin/drivers', { token: admin, body: { id, name: 'First' } })).status, 201);
  const again = await edge.http('POST', '/v1/admin/drivers', { token: admin, body: { id, name: 'Second' } });
  t.is(again.status, 409, JSON.stringify(again.body));
  t.is(again.body.error.code, 'conflict');
  t.is((await edge.http('GET', `/v1/admin/drivers/${id}`, { token: admin })).body.name, 'First', 'the name was not overwritten');

  // A self-registered driver waiting for approval: a create under its id does not approve it.
  const email = `pend-${randomUUID().slice(0, 8)}@example.com`;
  const password = 'amber-Lantern-58-quill';
  t.is((await edge.http('POST', '/v1/auth/register', { body: { email, password, name: 'Pending Pat', role: 'driver' } })).status, 202);
  const pending = subOf((await edge.http('POST', '/v1/auth/login', { body: { email, password } })).body.token);
  const bypass = await edge.http('POST', '/v1/admin/drivers', { token: admin, body: { id: pending, name: 'Pending Pat' } });
  t.is(bypass.status, 409);
  t.is((await edge.http('GET', `/v1/admin/drivers/${pending}`, { token: admin })).body.approval, 'pending', 'only /approve approves');

  // A driver known only from going online is taken too.
  const devId = `online-${randomUUID().slice(0, 8)}`;
  const dev = await edge.socket(await edge.token(devId, 'driver'));
  await goOnline(dev, near(VIENNA, 0.003));
  t.is((await edge.http('POST', '/v1/admin/drivers', { token: admin, body: { id: devId, name: 'Over' } })).status, 409);
  dev.close();

  const nowhere = `veh_${randomUUID()}`;
  const orphan = `orphan-${randomUUID().slice(0, 8)}`;
  const noVehicle = await edge.http('POST', '/v1/admin/drivers', { token: admin, body: { id: orphan, name: 'Orphan', vehicleId: nowhere } });
  t.is(noVehicle.status, 400);
  t.is(noVehicle.body.error.code, 'invalid_request');
  t.is(noVehicle.body.error.details[0].path, 'body.vehicleId');
  t.is((await edge.http('GET', `/v1/admin/drivers/${orphan}`, { token: admin })).status, 404, 'no driver was created');
  const patched = await edge.http('PATCH', `/v1/admin/drivers/${id}`, { token: admin, body: { vehicleId: nowhere } });
  t.is(patched.status, 400);
  t.is(patched.body.error.details[0].path, 'body.vehicleId');
  const car = await edge.http('POST', '/v1/admin/vehicles', { token: admin, body: { plate: 'B-CR 1', type: 'economy', capacity: 4 } });
  t.is(car.status, 201);
  const placed = await edge.http('POST', '/v1/admin/drivers', { token: admin, body: { id: orphan, name: 'Orphan', vehicleId: car.body.id } });
  t.is(placed.status, 201);
  t.is(placed.body.vehicleId, car.body.id);
  t.is((await edge.http('PATCH', `/v1/admin/drivers/${id}`, { token: admin, body: { vehicleId: car.body.id } })).status, 200);
});

test.serial('registration answers the same for new and existing emails and changes nothing for an existing one', async (t) => {
  const email = `same-${randomUUID().slice(0, 8)}@example.com`;
  const first = await edge.http('POST', '/v1/auth/register', { body: { email, password: 'correct-Horse-9', name: 'Ana', role: 'rider' } });
  const second = await edge.http('POST', '/v1/auth/register', { body: { email: email.toUpperCase(), password: 'other-Lantern-72', name: 'Mallory', role: 'driver' } });
  t.is(first.status, 202);
  t.is(second.status, 202);
  t.deepEqual(first.body, { status: 'accepted' });
  t.deepEqual(second.body, first.body, 'same body: the answer does not tell whether the email had an account');
  t.is((await edge.http('POST', '/v1/auth/login', { body: { email, password: 'other-Lantern-72' } })).status, 401, 'the second password was not set');
  const login = await edge.http('POST', '/v1/auth/login', { body: { email, password: 'correct-Horse-9' } });
  t.is(login.status, 200);
  const claims = JSON.parse(Buffer.from(login.body.token.split('.')[1]!, 'base64url').toString());
  t.is(claims.role, 'rider', 'the role was not changed');

  const weak = await edge.http('POST', '/v1/auth/register', { body: { email: `w${email}`, password: 'password12', name: 'W', role: 'rider' } });
  t.is(weak.status, 400);
  t.is(weak.body.error.code, 'weak_password');
  t.is(weak.body.error.details[0].path, 'body.password');
  t.is((await edge.http('POST', '/v1/auth/login', { body: { email: `w${email}`, password: 'password12' } })).status, 401, 'no account for a refused registration');
  const doc = (await edge.http('GET', '/openapi.json')).body;
  const op = doc.paths['/v1/auth/register'].post;
  t.truthy(op.responses['202'], 'the contract says 202');
  t.falsy(op.responses['201']);
});

test.serial('a hash from the older scrypt cost still logs in and is upgraded to the current cost', async (t) => {
  const email = `old-${randomUUID().slice(0, 8)}@example.com`;
  const salt = randomBytes(16);
  const key = scryptSync('an-old-Password-7', salt, 32, { N: 2 ** 15, r: 8, p: 1, maxmem: 64 * 1024 * 1024 });
  const oldHash = `scrypt$${2 ** 15}$8$1$${salt.toString('base64')}$${key.toString('base64')}`;
  await edge.node.edge.accounts.create({ id: `rdr_old-${randomUUID().slice(0, 8)}`, email, name: 'Old', role: 'rider', passwordHash: oldHash });
  t.is((await edge.http('POST', '/v1/auth/login', { body: { email, password: 'an-old-Password-7' } })).status, 200);
  const stored = (await edge.node.edge.accounts.byEmail(email))!.passwordHash;
  t.not(stored, oldHash);
  t.is(stored.split('$')[1], String(2 ** 17), 'rehashed at N=2^17');
  t.false(needsRehash(stored));
  t.is((await edge.http('POST', '/v1/auth/login', { body: { email, password: 'an-old-Password-7' } })).status, 200, 'and the new hash logs in');
});
