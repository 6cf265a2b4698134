// Nearby drivers do not let a rider follow a driver (second outside review, finding 3): the
// list gave every rider each driver's permanent id and exact position, so a rider who learnt
// an id from a past booking could poll and follow that driver. A rider now gets a ref that
// changes with every answer and a position rounded to 3 decimals; an admin gets the id and
// the exact position. Real HTTP and ws clients, real PostgreSQL.

import test from 'ava';
import { randomUUID } from 'node:crypto';
import { startEdge, type EdgeNode } from './helpers/edge-client.ts';
import { eventually } from './helpers/node-process.ts';

// Stockholm, with more decimals than a rider is shown; no other suite dispatches here.
const AT = { lat: 59.329321, lng: 18.068581 };
const ASK = { lat: 59.3301, lng: 18.0702 };

let edge: EdgeNode;
test.before(async () => { edge = await startEdge(); });
test.after.always(async () => { await edge?.stop(); });

type Listed = { ref: string; driverId?: string; lat: number; lng: number; distanceKm: number; vehicleType: string };
const decimals = (x: number) => (String(x).split('.')[1] ?? '').length;

test('a rider gets a new ref for the same driver in every answer and a rounded position; an admin the id and the exact one', async (t) => {
  const id = `near-${randomUUID().slice(0, 6)}`;
  const socket = await edge.socket(await edge.token(id, 'driver'));
  t.teardown(() => socket.close());
  t.like(await socket.call({ type: 'online', vehicleType: 'economy' }, 'on'), { type: 'ack' });
  t.like(await socket.call({ type: 'location', ...AT, at: new Date().toISOString() }, 'fix'), { type: 'ack' });
  const admin = await edge.token(`near-admin-${id}`, 'admin');
  const rider = await edge.token(`near-rider-${id}`, 'rider');
  const ask = async (token: string) => {
    const res = await edge.http('GET', `/v1/drivers/nearby?lat=${ASK.lat}&lng=${ASK.lng}&radiusKm=2`, { token });
    if (res.status !== 200) throw new Error(JSON.stringify(res.body));
    return res.body.drivers as Listed[];
  };

  let exact: Listed | undefined;
  t.true(await eventually(async () => { exact = (await ask(admin)).find((d) => d.driverId === id); return exact !== undefined; }));
  t.deepEqual({ lat: exact!.lat, lng: exact!.lng }, AT, 'an admin sees the exact position');
  t.truthy(exact!.ref);

  const first = await ask(rider);
  const second = await ask(rider);
  t.is(first.length, 1, JSON.stringify(first));
  t.is(second.length, 1);
  for (const answer of [first, second]) {
    t.false(JSON.stringify(answer).includes(id), 'a rider never sees the driver\'s id');
    t.is(answer[0]!.driverId, undefined);
    t.deepEqual({ lat: answer[0]!.lat, lng: answer[0]!.lng }, { lat: 59.329, lng: 18.069 }, 'rounded to 3 decimals');
    t.true(decimals(answer[0]!.distanceKm) <= 1, `distance to 100 m: ${answer[0]!.distanceKm}`);
    t.is(answer[0]!.vehicleType, 'economy');
  }
  t.not(first[0]!.ref, second[0]!.ref, 'the same driver under another ref in the next answer');
  t.not(first[0]!.ref, exact!.ref);
});

test('the contract says riders get a ref, and driverId only for admins', async (t) => {
  const doc = await edge.http('GET', '/openapi.json');
  const schema = doc.body.paths['/v1/drivers/nearby'].get.responses['200'].content['application/json'].schema;
  const item = schema.properties.drivers.items;
  t.truthy(item.properties.ref);
  t.regex(item.properties.driverId.description, /Admins only/);
  t.false((item.required ?? []).includes('driverId'));
  t.true(item.required.includes('ref'));
});
