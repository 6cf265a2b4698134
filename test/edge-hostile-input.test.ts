// One caller's malformed input must not take the database away from everyone. Bad
// query parameters and cursors are a 400 naming the parameter, answered at the edge;
// and what still reaches PostgreSQL by mistake (a bug of ours, a statement the data
// refuses) reaches its caller without counting toward the circuit breaker that every
// request shares, which only a real outage opens.

import test from 'ava';
import { randomUUID } from 'node:crypto';
import { startEdge, type EdgeNode } from './helpers/edge-client.ts';

const P = { lat: 52.37, lng: 4.89 };
const D = { lat: 52.38, lng: 4.9 };
const b64 = (text: string) => Buffer.from(text).toString('base64url');

let edge: EdgeNode;
let attacker: string;
let victim: string;
let admin: string;
test.before(async () => {
  edge = await startEdge();
  const run = randomUUID().slice(0, 6);
  attacker = await edge.token(`h-attacker-${run}`, 'rider');
  victim = await edge.token(`h-victim-${run}`, 'rider');
  admin = await edge.token(`h-admin-${run}`, 'admin');
});
test.after.always(async () => { await edge?.stop(); });

async function eventually<T>(probe: () => Promise<T | undefined>, what: string, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** A 400 `invalid_request` whose details name `query.<field>`. */
function assertNamesField(t: import('ava').ExecutionContext, res: { status: number; body: any }, field: string, label: string) {
  t.is(res.status, 400, `${label} -> ${res.status} ${JSON.stringify(res.body).slice(0, 300)}`);
  t.is(res.body?.error?.code, 'invalid_request', `${label}: code`);
  const paths = ((res.body?.error?.details ?? []) as { path: string }[]).map((d) => d.path);
  t.true(paths.includes(`query.${field}`), `${label}: details name query.${field} (got ${JSON.stringify(paths)})`);
}

// [query string for GET /v1/bookings, the parameter the 400 must name]
const MALFORMED_LIST_QUERIES: [string, string][] = [
  ['cursor=WyJ4IiwieSJd', 'cursor'], // ["x","y"]: the cursor of the report
  ['cursor=not*base64!', 'cursor'],
  ['cursor=%E0%A4%A', 'cursor'], // broken percent-encoding
  [`cursor=${b64('hello, not JSON')}`, 'cursor'],
  [`cursor=${'A'.repeat(4_000)}`, 'cursor'], // too long
  [`cursor=${b64('{"at":"2026-01-01T00:00:00.000Z","id":"bk_x"}')}`, 'cursor'], // an object, not the tuple
  [`cursor=${b64('["2026-01-01T00:00:00.000Z","bk_x","extra"]')}`, 'cursor'],
  [`cursor=${b64('["2026-01-01T00:00:00.000Z"]')}`, 'cursor'],
  [`cursor=${b64('[1767225600000,"bk_x"]')}`, 'cursor'],
  [`cursor=${b64('["2026-02-30T00:00:00.000Z","bk_x"]')}`, 'cursor'], // no such day
  [`cursor=${b64('["0000-01-01T00:00:00.000Z","bk_x"]')}`, 'cursor'], // out of PostgreSQL's range
  [`cursor=${b64('["2026-01-01T00:00:00.000Z","bk\\u0000x"]')}`, 'cursor'], // NUL in the id
  [`cursor=${b64('["2026-01-01T00:00:00.000Z",""]')}`, 'cursor'],
  [`cursor=${b64('["2026-01-01T00:00:00.000Z","bk_x"]')}=`, 'cursor'], // padded: not the token as given
  ['cursor=', 'cursor'],
  ['cursor=a&cursor=b', 'cursor'],
  [`cursor=${b64('null')}`, 'cursor'],
  ['limit=0', 'limit'],
  ['limit=101', 'limit'],
  ['limit=abc', 'limit'],
  ['limit=', 'limit'],
  ['limit=0x10', 'limit'],
  ['limit=1e999', 'limit'],
  ['limit=2.5', 'limit'],
  ['limit=1&limit=2', 'limit'],
  ['status=flying', 'status'],
  ['status=completed&status=cancelled', 'status'],
  ['from=yesterday', 'from'],
  ['from=0000-01-01T00:00:00Z', 'from'],
  ['to=9999-12-31T23:59:59-14:00', 'to'], // year 10000 in UTC
  ['to=2026-13-01T00:00:00Z', 'to'],
  ['riderId=a%00b', 'riderId'], // checked before the role is: a 400, not a 403
  [`driverId=${'d'.repeat(200)}`, 'driverId'],
  ['foo=bar', 'foo'],
  ['limit[]=5', 'limit[]'],
];

test.serial('50 malformed list requests from one rider are each a 400 naming the parameter, and no one else notices', async (t) => {
  // The victim has bookings on two pages before the attack.
  for (let i = 0; i < 3; i++) {
    const made = await edge.http('POST', '/v1/bookings', { token: victim, body: { pickup: P, dropoff: D, vehicleType: 'economy' } });
    t.is(made.status, 201, JSON.stringify(made.body));
  }
  await eventually(async () => {
    const res = await edge.http('GET', '/v1/bookings?limit=100', { token: victim });
    return res.status === 200 && res.body.items.length === 3 ? true : undefined;
  }, 'the read model lists the victim\'s three bookings');

  t.true(MALFORMED_LIST_QUERIES.length >= 30);
  for (let i = 0; i < 50; i++) {
    const [query, field] = MALFORMED_LIST_QUERIES[i % MALFORMED_LIST_QUERIES.length]!;
    const res = await edge.http('GET', `/v1/bookings?${query}`, { token: attacker });
    assertNamesField(t, res, field, `#${i + 1} GET /v1/bookings?${query.slice(0, 80)}`);
  }

  t.is(edge.node.storage.sqlGuard.state(), 'closed', 'the shared PostgreSQL circuit is still closed');

  // The victim pages through their bookings with the cursors the API hands out.
  const first = await edge.http('GET', '/v1/bookings?limit=2', { token: victim });
  t.is(first.status, 200, JSON.stringify(first.body));
  t.is(first.body.items.length, 2);
  t.is(typeof first.body.nextCursor, 'string');
  const second = await edge.http('GET', `/v1/bookings?limit=2&cursor=${encodeURIComponent(first.body.nextCursor)}`, { token: victim });
  t.is(second.status, 200, JSON.stringify(second.body));
  t.is(second.body.items.length, 1);
  t.is(second.body.nextCursor, undefined);
  const ids = [...first.body.items, ...second.body.items].map((b: { id: string }) => b.id);
  t.is(new Set(ids).size, 3, 'three different bookings over the two pages');

  const quote = await edge.http('POST', '/v1/quotes', { token: victim, body: { pickup: P, dropoff: D, vehicleType: 'economy' } });
  t.is(quote.status, 201, JSON.stringify(quote.body));

  const email = `hostile-${randomUUID().slice(0, 8)}@example.org`;
  const password = `violet-anchor-${randomUUID().slice(0, 8)}-drifts-north`;
  const registered = await edge.http('POST', '/v1/auth/register', { body: { email, password, name: 'Nell Newcomer', role: 'rider' } });
  t.is(registered.status, 202, JSON.stringify(registered.body));
  const login = await edge.http('POST', '/v1/auth/login', { body: { email, password } });
  t.is(login.status, 200, JSON.stringify(login.body));
  const newcomerList = await edge.http('GET', '/v1/bookings', { token: login.body.token });
  t.is(newcomerList.status, 200, JSON.stringify(newcomerList.body));
  t.deepEqual(newcomerList.body.items, []);

  const to = new Date(Date.now() + 3_600_000).toISOString();
  const from = new Date(Date.now() - 86_400_000).toISOString();
  const analytics = await edge.http('GET', `/v1/admin/analytics?from=${from}&to=${to}&groupBy=cell`, { token: admin });
  t.is(analytics.status, 200, JSON.stringify(analytics.body));

  const ready = await edge.http('GET', '/ready');
  t.is(ready.status, 200, JSON.stringify(ready.body));
  t.is(edge.node.storage.sqlGuard.state(), 'closed');
});

test.serial('every other list-like query is a 400 naming the parameter too', async (t) => {
  const now = Date.now();
  const iso = (at: number) => new Date(at).toISOString();
  const cases: [string, string, string][] = [
    ['admin', `/v1/admin/analytics?from=nope&to=${iso(now)}`, 'from'],
    ['admin', `/v1/admin/analytics?from=${iso(now)}`, 'to'],
    ['admin', `/v1/admin/analytics?from=${iso(now)}&to=${iso(now - 1)}`, 'to'], // not after from
    ['admin', `/v1/admin/analytics?from=${iso(now - 100 * 86_400_000)}&to=${iso(now)}`, 'to'], // more than 93 days
    ['admin', '/v1/admin/analytics?from=0000-01-01T00:00:00Z&to=0000-02-01T00:00:00Z', 'from'],
    ['admin', `/v1/admin/analytics?from=${iso(now - 1000)}&to=${iso(now)}&groupBy=week`, 'groupBy'],
    ['admin', `/v1/admin/analytics?from=${iso(now - 1000)}&to=${iso(now)}&extra=1`, 'extra'],
    ['admin', '/v1/bookings?riderId=r%00', 'riderId'],
    ['admin', '/v1/bookings?driverId=', 'driverId'],
    ['rider', '/v1/surge?lat=&lng=4', 'lat'],
    ['rider', '/v1/surge?lat=52&lng=0x10', 'lng'],
    ['rider', '/v1/surge?lat=52&lng=4&zoom=3', 'zoom'],
    ['rider', '/v1/drivers/nearby?lat=Infinity&lng=4', 'lat'],
    ['rider', '/v1/drivers/nearby?lat=52&lng=4&limit=0', 'limit'],
  ];
  for (const [who, path, field] of cases) {
    assertNamesField(t, await edge.http('GET', path, { token: who === 'admin' ? admin : attacker }), field, `${who} GET ${path}`);
  }
  // The admin drivers list takes a status from a fixed set; anything else names it (with the message, for an unknown key).
  const drivers = await edge.http('GET', '/v1/admin/drivers?status=%00', { token: admin });
  assertNamesField(t, drivers, 'status', 'GET /v1/admin/drivers?status=%00');
  t.is(edge.node.storage.sqlGuard.state(), 'closed');
});

test.serial('errors PostgreSQL answers for one bad statement, and bugs before it, leave the shared breaker closed', async (t) => {
  const { sqlGuard, orm } = edge.node.storage;
  const execute = (sql: string, params: unknown[] = []) => sqlGuard.run(() => orm.em.getConnection().execute(sql, params));
  // A programming error inside a guarded call: an Invalid Date handed to the read model as a cursor.
  for (let i = 0; i < 20; i++) {
    const error = await t.throwsAsync(edge.node.readModels.listBookings({ limit: 5, cursor: { createdAt: new Date('x'), id: 'y' } }));
    t.true(error instanceof RangeError, `a RangeError, as thrown (got ${error?.name}: ${error?.message})`);
  }
  t.is(sqlGuard.state(), 'closed', 'twenty RangeErrors did not open it');
  // What the real server answers for statements one request could cause.
  const statements: [string, string, unknown[]][] = [
    ['22012', 'select 1/0', []],
    ['22008', 'select ?::timestamptz', ['0000-01-01T00:00:00Z']],
    ['22P02', 'select ?::int', ['not a number']],
    ['42703', 'select no_such_column from booking_view', []],
    ['42P01', 'select * from no_such_table', []],
    ['08P01', 'select count(*) from booking_view where rider_id = ?', ['a\u0000b']],
  ];
  for (const [code, sql, params] of statements) {
    for (let i = 0; i < 8; i++) {
      const error = await t.throwsAsync(execute(sql, params));
      t.is((error as { code?: string })?.code, code, `${sql}: the server's own error reaches the caller (${error?.message})`);
    }
  }
  t.is(sqlGuard.state(), 'closed', 'forty-eight statement errors did not open it');
  const list = await edge.http('GET', '/v1/bookings', { token: victim });
  t.is(list.status, 200, JSON.stringify(list.body));
  t.is((await edge.http('GET', '/ready')).status, 200);
});
