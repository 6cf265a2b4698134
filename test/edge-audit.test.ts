// Who did what: the node's own request ids (a client's kept apart), the actor in the
// request log, the audit log of admin actions, and dead-letter retries that are recorded
// and refused when the command is old.

import test from 'ava';
import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { startEdge, type EdgeNode } from './helpers/edge-client.ts';

const lines: Record<string, any>[] = [];
let edge: EdgeNode;
let admin: string;
const ADMIN = `audit-admin-${randomUUID().slice(0, 6)}`;

test.before(async () => {
  const logger = pino({ level: 'info' }, { write: (line: string) => { lines.push(JSON.parse(line)); } });
  edge = await startEdge({}, { logger });
  admin = await edge.token(ADMIN, 'admin');
});
test.after.always(async () => { await edge?.stop(); });

const audit = async (query = '') => {
  const res = await edge.http('GET', `/v1/admin/audit${query}`, { token: admin });
  if (res.status !== 200) throw new Error(`audit: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body as { items: any[]; nextBefore?: string };
};

test.serial('the response\'s X-Request-Id is the node\'s own; the client\'s is logged apart, sanitized and bounded', async (t) => {
  const rider = await edge.token('audit-rider', 'rider');
  const res = await edge.http('GET', '/v1/bookings', { token: rider, headers: { 'x-request-id': 'client-chosen-id' } });
  t.is(res.status, 200);
  const id = res.headers.get('x-request-id');
  t.not(id, 'client-chosen-id', 'a client\'s id is not echoed as ours');
  t.regex(id ?? '', /^[0-9a-f-]{36}$/);
  const line = lines.find((l) => l.msg === 'request' && l.requestId === id);
  t.like(line, { clientRequestId: 'client-chosen-id', path: '/v1/bookings', status: 200, actor: { sub: 'audit-rider', role: 'rider' } });

  const hostile = `${'<script>'.repeat(3)}${'x'.repeat(500)}`;
  const other = await edge.http('GET', '/v1/bookings', { token: rider, headers: { 'x-request-id': hostile } });
  const logged = lines.find((l) => l.msg === 'request' && l.requestId === other.headers.get('x-request-id'));
  t.regex(logged?.clientRequestId ?? '', /^[\w.:/-]{1,128}$/, 'only safe characters, at most 128');
  const anonymous = await edge.http('GET', '/v1/surge?lat=1&lng=1');
  const unsigned = lines.find((l) => l.msg === 'request' && l.requestId === anonymous.headers.get('x-request-id'));
  t.is(unsigned?.actor, undefined, 'no token, no actor');
});

test.serial('an admin\'s deactivation of a driver is in the audit log: who, what, when, from where, without the driver\'s name', async (t) => {
  const id = `drv-audit-${randomUUID().slice(0, 6)}`;
  t.is((await edge.http('POST', '/v1/admin/drivers', { token: admin, body: { id, name: 'Ada Lovelace', phone: '+34600000000' } })).status, 201);
  const before = Date.now();
  const patched = await edge.http('PATCH', `/v1/admin/drivers/${id}`, { token: admin, body: { active: false, name: 'Ada King' } });
  t.is(patched.status, 200, JSON.stringify(patched.body));

  const entry = (await audit()).items.find((e) => e.target === `driver:${id}` && e.method === 'PATCH');
  t.like(entry, {
    actor: { sub: ADMIN, role: 'admin' }, method: 'PATCH', route: '/v1/admin/drivers/:id', status: 200, ip: '127.0.0.1',
    requestId: patched.headers.get('x-request-id'),
  });
  t.is(entry.summary, 'deactivate driver: name set, active=false');
  t.true(Date.parse(entry.at) >= before - 1000 && Date.parse(entry.at) <= Date.now() + 1000, entry.at);
  const created = (await audit()).items.find((e) => e.target === `driver:${id}` && e.method === 'POST');
  t.is(created?.summary, 'add driver: name set, phone set, active=true');
  const all = JSON.stringify((await audit()).items);
  for (const secret of ['Ada', 'Lovelace', 'King', '+34600000000']) t.false(all.includes(secret), `${secret} is not in the audit log`);

  // Queryable: by actor, in pages; admins only.
  t.deepEqual((await audit(`?actor=someone-else`)).items, []);
  const page = await audit(`?actor=${ADMIN}&limit=1`);
  t.is(page.items.length, 1);
  t.truthy(page.nextBefore);
  const next = await audit(`?actor=${ADMIN}&limit=1&before=${page.nextBefore}`);
  t.true(Number(next.items[0].id) < Number(page.items[0].id), 'the next page is older');
  t.is((await edge.http('GET', '/v1/admin/audit?before=abc', { token: admin })).status, 400);
  t.is((await edge.http('GET', '/v1/admin/audit', { token: await edge.token('nosy', 'rider') })).status, 403);
});

test.serial('an old dead letter\'s retry is refused without force (recorded), and with force is sent and recorded as forced', async (t) => {
  const id = `drv-old-${randomUUID().slice(0, 6)}`;
  t.is((await edge.http('POST', '/v1/admin/drivers', { token: admin, body: { id, name: 'Old Letter' } })).status, 201);
  t.is((await edge.http('PATCH', `/v1/admin/drivers/${id}`, { token: admin, body: { active: false } })).status, 200);
  // A re-activation that failed two days ago and waited in the dead letters since.
  const commandId = randomUUID();
  const twoDaysAgo = Date.now() - 2 * 86_400_000;
  await edge.node.edge.deadLetters.add({
    id: commandId, shard: 0, offset: 0, attempts: 1, at: twoDaysAgo, failure: { kind: 'storage_unavailable', message: 'storage down' },
    command: { id: commandId, to: { kind: 'driver', id }, message: { type: 'profile.update', profile: { active: true } }, at: twoDaysAgo },
  });
  const retry = (query = '') => edge.http('POST', `/v1/admin/dead-letters/${commandId}/retry${query}`, { token: admin });
  const refused = await retry();
  t.is(refused.status, 409, JSON.stringify(refused.body));
  t.is(refused.body.error.code, 'dead_letter_too_old');
  t.regex(refused.body.error.message, /force=true/);
  t.is((await edge.http('GET', `/v1/admin/drivers/${id}`, { token: admin })).body.active, false, 'the driver stays deactivated');
  t.truthy((await edge.http('GET', '/v1/admin/dead-letters', { token: admin })).body.items.find((l: any) => l.id === commandId), 'still listed');

  const forced = await retry('?force=true');
  t.is(forced.status, 202, JSON.stringify(forced.body));
  const entries = (await audit()).items.filter((e) => e.target === `dead-letter:${commandId}`);
  t.is(entries.length, 2);
  t.like(entries[0], { actor: { sub: ADMIN, role: 'admin' }, status: 202, route: '/v1/admin/dead-letters/:id/retry' });
  t.regex(entries[0].summary, new RegExp(`^retry dead letter \\(forced\\); profile\\.update to driver:${id}, issued 2d 0h ago`));
  t.like(entries[1], { status: 409 });
  t.regex(entries[1].summary, /^retry dead letter; profile\.update/);
  t.is((await edge.http('POST', `/v1/admin/dead-letters/${commandId}/retry?force=maybe`, { token: admin })).status, 400);
});
