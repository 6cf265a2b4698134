// Text that looks sealed is not sealed (second outside review, finding 2). Values shaped
// like `pd1.<id>.<iv>.<body>` were stored as they came ("already sealed"): a driver
// registered with such a name made every admin driver list a 500, and the same text in a
// rating comment or a cancel reason made `npm run keys -- rotate` abort on every run, so a
// key could never be retired. Values from requests are now always sealed, for their record
// and field (pd2: a ciphertext copied into another row opens nowhere); a value that does not
// open is a null field named in `unreadable`, never a failed list; rotation reports such
// values and carries on, and leaves comments and reasons alone. Real PostgreSQL.

import test from 'ava';
import { createCipheriv, randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { newKeyLine } from '../runtime/personal-data.ts';
import { main as keysCli } from '../scripts/keys.ts';
import { startEdge, type EdgeNode, type WsClient } from './helpers/edge-client.ts';
import { eventually } from './helpers/node-process.ts';
import { freshDatabase } from './helpers/services.ts';

/** Shaped like a sealed value under the node's own key id: what the review planted. */
const LOOKALIKE = `pd1.k1.${'A'.repeat(16)}.${'B'.repeat(24)}`;
const tag = randomUUID().slice(0, 6);
const PICKUP = { lat: 50.0755, lng: 14.4378 }; // Prague: no other suite dispatches here
const DROPOFF = { lat: 50.09, lng: 14.45 };

const k1 = newKeyLine('k1');
const k2 = newKeyLine('k2');
const INDEX = randomBytes(48).toString('base64url');
/** A value as earlier versions sealed it (pd1: only `pd1.<key id>` authenticated), under k1. */
function sealPd1(plain: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', Buffer.from(k1.slice('k1:'.length), 'base64url'), iv, { authTagLength: 16 });
  cipher.setAAD(Buffer.from('pd1.k1'));
  const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final(), cipher.getAuthTag()]);
  return `pd1.k1.${iv.toString('base64url')}.${body.toString('base64url')}`;
}
let db: { url: string; drop(): Promise<void> };
let client: pg.Client;
let edge: EdgeNode | undefined;
const dataDir = mkdtempSync(join(tmpdir(), 'pd-planted-'));
const start = (keys: Record<string, string>) => startEdge({ DATABASE_URL: db.url, DATA_DIR: dataDir, DATA_INDEX_KEY: INDEX, ...keys });

test.before(async () => {
  db = await freshDatabase();
  client = new pg.Client({ connectionString: db.url });
  await client.connect();
  edge = await start({ DATA_KEYS: k1 });
});
test.after.always(async () => {
  await edge?.stop();
  await client?.end();
  await db?.drop();
});

type Listed = { id: string; name?: string | null; phone?: string | null; unreadable?: string[] };
async function listed(e: EdgeNode, admin: string): Promise<Listed[]> {
  const res = await e.http('GET', '/v1/admin/drivers', { token: admin });
  if (res.status !== 200) throw new Error(`GET /v1/admin/drivers -> ${res.status} ${JSON.stringify(res.body)}`);
  return res.body.items as Listed[];
}

let registeredId = '';
test.serial('a driver registered with a name shaped like a sealed value is listed, and read, with the name as typed', async (t) => {
  const e = edge!;
  // A phone is at most 30 characters, too short to look sealed; a name is not.
  const body = { email: `planted.${tag}@example.org`, password: 'walnut-Harbour-62-lilac', name: LOOKALIKE, phone: '+420 222', role: 'driver' };
  t.is((await e.http('POST', '/v1/auth/register', { body })).status, 202);
  const login = await e.http('POST', '/v1/auth/login', { body: { email: body.email, password: body.password } });
  t.is(login.status, 200, 'the account\'s sealed email opens for its own row');
  registeredId = JSON.parse(Buffer.from(login.body.token.split('.')[1], 'base64url').toString()).sub;
  const admin = await e.token('pd-planted-admin', 'admin');
  t.true(await eventually(async () => (await listed(e, admin)).some((d) => d.id === registeredId && d.name === LOOKALIKE && d.phone === '+420 222')));
  const one = await e.http('GET', `/v1/admin/drivers/${registeredId}`, { token: admin });
  t.like(one, { status: 200, body: { name: LOOKALIKE, phone: '+420 222', approval: 'pending' } });
  t.is(one.body.unreadable, undefined);
  const { rows } = await client.query('select data::text as t from driver_view where id = $1', [registeredId]);
  t.false(rows[0].t.includes(LOOKALIKE), 'stored sealed, not as it came');
});

test.serial('a sealed value copied into another driver\'s row does not open there: that field is null and named, the list answers', async (t) => {
  const e = edge!;
  const admin = await e.token('pd-planted-admin', 'admin');
  const [a, b, c] = [`pd-a-${tag}`, `pd-b-${tag}`, `pd-c-${tag}`];
  for (const [id, name] of [[a, 'Agnes Original'], [b, 'Bruno Other'], [c, 'Cecilia Now']]) {
    t.is((await e.http('POST', '/v1/admin/drivers', { token: admin, body: { id, name, phone: '+420 111' } })).status, 201);
  }
  t.true(await eventually(async () => (await listed(e, admin)).filter((d) => [a, b, c].includes(d.id)).length === 3));
  // C's name as an earlier version wrote it (pd1): still readable.
  await client.query(`update driver_view set data = jsonb_set(data, '{name}', to_jsonb($1::text)) where id = $2`, [sealPd1('Cecilia Earlier'), c]);
  // Someone with write access to the database copies A's sealed name over B's.
  await client.query(`update driver_view set data = jsonb_set(data, '{name}', (select data->'name' from driver_view where id = $1))
    where id = $2`, [a, b]);
  const items = await listed(e, admin);
  t.like(items.find((d) => d.id === a), { name: 'Agnes Original', phone: '+420 111' });
  const copied = items.find((d) => d.id === b)!;
  t.is(copied.name, null, 'A\'s name does not open as B\'s');
  t.deepEqual(copied.unreadable, ['name']);
  t.is(copied.phone, '+420 111', 'the rest of the row still reads');
  t.true(items.some((d) => d.id === registeredId && d.name === LOOKALIKE), 'and the rest of the list');
  t.like(items.find((d) => d.id === c), { name: 'Cecilia Earlier' }, 'a value sealed by an earlier version reads as before');
});

async function driverOnline(id: string): Promise<WsClient> {
  const socket = await edge!.socket(await edge!.token(id, 'driver'));
  if ((await socket.call({ type: 'online', vehicleType: 'economy' }, 'on')).type !== 'ack') throw new Error('not online');
  await socket.call({ type: 'location', lat: PICKUP.lat + 0.001, lng: PICKUP.lng, at: new Date().toISOString() }, 'fix');
  return socket;
}

test.serial('rotate completes with planted values, reports personal fields that do not open, leaves comments and reasons as written', async (t) => {
  const e = edge!;
  const riderToken = await e.token(`pd-rider-${tag}`, 'rider');
  const book = async () => {
    const res = await e.http('POST', '/v1/bookings', { token: riderToken, body: { pickup: PICKUP, dropoff: DROPOFF, vehicleType: 'economy' } });
    if (res.status !== 201) throw new Error(JSON.stringify(res.body));
    return res.body.id as string;
  };
  // A cancel reason, journaled as written.
  const cancelled = await book();
  t.is((await e.http('POST', `/v1/bookings/${cancelled}/cancel`, { token: riderToken, body: { reason: LOOKALIKE } })).status, 200);
  // A rating comment, after a whole ride.
  const driver = await driverOnline(`pd-driver-${tag}`);
  t.teardown(() => driver.close());
  const rated = await book();
  await driver.next((m) => m.type === 'offer' && m.bookingId === rated);
  for (const step of ['offer.accept', 'trip.arrived', 'trip.start', 'trip.complete']) {
    t.is((await driver.call({ type: step, bookingId: rated }, step)).type, 'ack', step);
  }
  const rating = await e.http('POST', `/v1/bookings/${rated}/rating`, { token: riderToken, body: { stars: 4, comment: LOOKALIKE } });
  t.is(rating.status, 200, JSON.stringify(rating.body));
  t.is(rating.body.rating.comment, LOOKALIKE);

  await e.stop();
  edge = undefined;
  const both = { DATA_KEYS: `${k2},${k1}`, DATA_KEY_ID: 'k2' };
  const lines: string[] = [];
  t.is(await keysCli(['rotate'], { ...both, DATA_INDEX_KEY: INDEX, DATABASE_URL: db.url }, (l) => lines.push(l)), 0, lines.join('\n'));
  const report = JSON.parse(lines[0]!);
  t.deepEqual(report.unreadable, [{ table: 'driver_view', row: `pd-b-${tag}`, at: 'data.name' }], 'only the copied name, where it is');
  t.is(report.driver_view.unreadable, 1);
  t.is(report.journal.unreadable + report.snapshot.unreadable + report.account.unreadable + report.dead_letter.unreadable, 0);
  t.true(report.account.values >= 2 && report.journal.values > 0 && report.driver_view.values > 0, lines[0]);
  t.deepEqual(Object.keys(report.sealedByKey), ['k2'], 'every value that opens is under k2: k1 can go');
  t.regex(lines.join('\n'), /1 personal value\(s\) did not open and were left as they are.*driver_view pd-b-\S+ data\.name/);

  const texts = async (key: string) =>
    (await client.query('select data::text as t from journal where persistence_key = $1', [key])).rows.map((r) => r.t).join('\n');
  t.true((await texts(`booking:${cancelled}`)).includes(LOOKALIKE), 'the cancel reason is as the rider wrote it');
  t.true((await texts(`booking:${rated}`)).includes(LOOKALIKE), 'the rating comment too');
  const { rows } = await client.query('select data::text as t from driver_view where id = $1', [`pd-b-${tag}`]);
  t.regex(rows[0].t, /"name": "pd2\.k1\./, 'the value that did not open is left as it was');

  // Without k1, everything that opened still reads; a second run has nothing to move.
  edge = await start({ DATA_KEYS: k2 });
  const admin = await edge.token('pd-planted-admin', 'admin');
  const items = await listed(edge, admin);
  t.like(items.find((d) => d.id === registeredId), { name: LOOKALIKE, phone: '+420 222' });
  t.like(items.find((d) => d.id === `pd-a-${tag}`), { name: 'Agnes Original' });
  t.like(items.find((d) => d.id === `pd-c-${tag}`), { name: 'Cecilia Earlier' }, 'the earlier (pd1) value was moved to k2 as pd2');
  t.false((await client.query('select data::text as t from driver_view where id = $1', [`pd-c-${tag}`])).rows[0].t.includes('pd1.'));
  t.like(items.find((d) => d.id === `pd-b-${tag}`), { name: null, unreadable: ['name'] });
  const again: string[] = [];
  t.is(await keysCli(['rotate'], { DATA_KEYS: k2, DATA_INDEX_KEY: INDEX, DATABASE_URL: db.url }, (l) => again.push(l)), 0);
  const second = JSON.parse(again[0]!);
  t.is(second.journal.values + second.snapshot.values + second.driver_view.values + second.account.values, 0, again[0]);
});
