// Poison commands on a real node and real PostgreSQL: commands that storage refuses
// (a NUL in a key or in a jsonb field) reach the runtime directly, past the edge's
// checks, as a bug or another client of the log could send them. They are set aside
// in the dead-letter table at once and their shard goes on; an operator lists,
// retries and discards them. A storage outage instead holds the shard, visibly.

import test from 'ava';
import { randomUUID } from 'node:crypto';
import { StorageUnavailableError } from '../runtime/errors.ts';
import { startEdge, type EdgeNode } from './helpers/edge-client.ts';
import { eventually } from './helpers/node-process.ts';

const P = { lat: 52.52, lng: 13.405 };
const D = { lat: 52.5, lng: 13.42 };

async function book(edge: EdgeNode, rider: string) {
  return edge.http('POST', '/v1/bookings', { token: rider, body: { pickup: P, dropoff: D, vehicleType: 'economy', scheduledAt: new Date(Date.now() + 3_600_000).toISOString() } });
}

test('commands storage refuses are dead-lettered at once, every shard goes on, and an operator can list, retry and discard them', async (t) => {
  const edge = await startEdge({ RATE_LIMIT_BOOKINGS_PER_MIN: '1000' });
  t.teardown(() => edge.stop());
  const rider = await edge.token('poison-rider', 'rider');
  const admin = await edge.token('poison-admin', 'admin');
  const region = edge.node.region;
  const booked = await book(edge, rider);
  t.is(booked.status, 201);

  // One poison per shard and more: a NUL in the entity key (refused on read: 22021)
  // and a NUL in a journaled field (refused by jsonb: 22P05).
  const started = performance.now();
  const poisons = await Promise.all([
    ...Array.from({ length: 16 }, (_, i) => region.request({ kind: 'booking', id: `bad\u0000${i}` }, { type: 'cancel', by: { role: 'rider', userId: 'poison-rider' } })),
    region.request({ kind: 'booking', id: booked.body.id }, { type: 'cancel', by: { role: 'rider', userId: 'poison-rider' }, reason: 'nul \u0000 here' }),
  ]);
  t.log(`17 poison commands dead-lettered within ${Math.round(performance.now() - started)} ms (measured, not asserted)`);
  for (const p of poisons) {
    t.is(p.status, 'failed');
    t.like(p.failure, { kind: 'storage_rejected', retriable: false });
    t.truthy(p.deadLetter);
  }

  const after = await Promise.all(Array.from({ length: 48 }, () => book(edge, rider)));
  t.deepEqual(after.map((r) => r.status), Array(48).fill(201), '48 of 48 bookings made after the poison succeed');
  t.is((await edge.http('GET', `/v1/bookings/${booked.body.id}`, { token: rider })).body.status, 'scheduled', 'the refused cancel changed nothing');

  const listed = await edge.http('GET', '/v1/admin/dead-letters', { token: admin });
  t.is(listed.status, 200);
  t.is(listed.body.items.length, 17);
  const letter = listed.body.items.find((l: { command: { to: { id: string } } }) => l.command.to.id === booked.body.id);
  t.like(letter, { failure: { kind: 'storage_rejected' }, attempts: 1 });
  t.is(letter.command.message.reason, 'nul \u0000 here', 'the payload is kept as it was');

  const retried = await edge.http('POST', `/v1/admin/dead-letters/${encodeURIComponent(letter.id)}/retry`, { token: admin });
  t.is(retried.status, 202);
  t.true(await eventually(async () => {
    const again = (await edge.http('GET', '/v1/admin/dead-letters', { token: admin })).body.items.find((l: { id: string }) => l.id === letter.id);
    return again !== undefined && Date.parse(again.at) > Date.parse(letter.at);
  }), 'retried, refused again, and back in the list');
  t.is((await edge.http('DELETE', `/v1/admin/dead-letters/${encodeURIComponent(letter.id)}`, { token: admin })).status, 204);
  t.is((await edge.http('DELETE', `/v1/admin/dead-letters/${encodeURIComponent(letter.id)}`, { token: admin })).status, 404);
  t.is((await edge.http('GET', '/v1/admin/dead-letters', { token: rider })).status, 403);
});

test('a storage outage holds the shard instead: visible in /metrics and /ready, and the command is applied once storage is back', async (t) => {
  const edge = await startEdge();
  t.teardown(() => edge.stop());
  const rider = await edge.token(`outage-${randomUUID().slice(0, 6)}`, 'rider');
  const admin = await edge.token('outage-admin', 'admin');
  const journal = edge.node.storage.journal as { append: (...a: unknown[]) => Promise<void> };
  const append = journal.append.bind(journal);
  let down = true;
  journal.append = (...a: unknown[]) => (down ? Promise.reject(new StorageUnavailableError('connection refused')) : append(...a));

  const pending = book(edge, rider);
  const metrics = () => edge.http('GET', '/metrics', { token: admin }).then((r) => r.body as string);
  t.true(await eventually(async () => /shard_stuck_seconds\{shard="\d+"\} [1-9]/.test(await metrics())), 'a stuck shard shows in /metrics');
  const ready = await edge.http('GET', '/ready');
  t.is(ready.status, 200);
  t.true(ready.body.stuckShards?.length > 0, JSON.stringify(ready.body));
  down = false;
  const res = await pending.catch(() => undefined);
  t.true(await eventually(async () => (await edge.http('GET', '/v1/bookings', { token: rider })).body.items?.length === 1), 'the booking was applied once');
  t.true(res === undefined || res.status === 201 || res.status === 504, `the caller got ${res?.status}`);
  t.true(await eventually(async () => !/shard_stuck_seconds\{shard="\d+"\} [1-9]/.test(await metrics())), 'no shard stays stuck');
  t.is((await edge.http('GET', '/v1/admin/dead-letters', { token: admin })).body.items.length, 0, 'an outage dead-letters nothing');
});
