// A real node process on real PostgreSQL, killed with SIGKILL and started again.

import test from 'ava';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { freshDatabase } from './helpers/services.ts';
import { eventually, startNodeProcess } from './helpers/node-process.ts';

const FIXTURE = 'test/fixtures/counter-node.ts';

interface Counter { total: number; applied: number; alarms: number }

/** A database per test: a shared one would hold other runs' due bookings, whose activation would be this node's first commit. */
const databases: { drop(): Promise<void> }[] = [];
test.after.always(async () => { await Promise.all(databases.map((d) => d.drop())); });

async function env(extra: Record<string, string> = {}): Promise<Record<string, string>> {
  const db = await freshDatabase();
  databases.push(db);
  return {
    // The in-process command log on real PostgreSQL: this suite is about the journal, not Kafka.
    MODE: 'embedded',
    DATABASE_URL: db.url,
    DATA_DIR: mkdtempSync(join(tmpdir(), 'dispatch-node-')),
    SHARDS: '8',
    ...extra,
  };
}

async function read(url: string, id: string): Promise<Counter> {
  const res = await fetch(`${url}/counter/${id}`);
  if (!res.ok) throw new Error(`GET counter ${id}: ${res.status}`);
  return (await res.json()) as Counter;
}

async function add(url: string, id: string, n: number, cmd?: string): Promise<void> {
  const res = await fetch(`${url}/counter/${id}/add?n=${n}${cmd ? `&cmd=${cmd}` : ''}`, { method: 'POST' });
  if (res.status !== 202) throw new Error(`add: ${res.status} ${await res.text()}`);
}

async function roundTrip(t: import('ava').ExecutionContext, extra: Record<string, string>): Promise<void> {
  const settings = await env(extra);
  const prefix = randomUUID().slice(0, 8);
  const ids = Array.from({ length: 10 }, (_, i) => `${prefix}-${i}`);
  const expected = new Map(ids.map((id) => [id, 0]));
  const first = await startNodeProcess(FIXTURE, settings);
  for (let round = 1; round <= 30; round++) {
    for (const id of ids) {
      await add(first.url, id, round);
      expected.set(id, expected.get(id)! + round);
    }
  }
  t.true(await eventually(async () => {
    for (const id of ids) if ((await read(first.url, id)).total !== expected.get(id)) return false;
    return true;
  }), 'every command handled before the crash');
  await first.kill('SIGKILL');

  const started = performance.now();
  const second = await startNodeProcess(FIXTURE, settings);
  for (const id of ids) {
    const state = await read(second.url, id);
    t.is(state.total, expected.get(id)!, `total of ${id} after restart`);
    t.is(state.applied, 30, `each of ${id}'s commands applied once`);
  }
  t.log(`restart and recovery of ${ids.length} entities with 30 events each: ${Math.round(performance.now() - started)} ms`);
  await second.kill('SIGTERM');
}

test('entity state is back exactly after SIGKILL and restart (journal replay)', async (t) => {
  await roundTrip(t, { SNAPSHOT_EVERY: '0' });
});

test('entity state is back exactly after SIGKILL and restart (snapshot plus tail)', async (t) => {
  await roundTrip(t, { SNAPSHOT_EVERY: '7' });
});

test('a command redelivered after a crash before its commit changes state once', async (t) => {
  const settings = await env();
  const id = `redeliver-${randomUUID().slice(0, 8)}`;
  // The node dies at its first commit: the command is handled and journaled, its offset is not.
  const crashing = await startNodeProcess(FIXTURE, { ...settings, CRASH_AT_COMMIT: '1' });
  // The node may die before its 202 leaves (it handles and commits quickly); the command is
  // durable in the log once appended either way, which is what the restart checks.
  await add(crashing.url, id, 5, `cmd-${id}`).catch(() => undefined);
  const code = await crashing.exited;
  t.is(code, null, 'the node was killed by its signal');

  const restarted = await startNodeProcess(FIXTURE, settings);
  t.true(await eventually(async () => (await read(restarted.url, id)).applied >= 1));
  await new Promise((r) => setTimeout(r, 300));
  const state = await read(restarted.url, id);
  t.is(state.total, 5);
  t.is(state.applied, 1, 'the redelivered command was dropped by its id');
  // The same id sent again by a client retry is dropped too.
  await add(restarted.url, id, 5, `cmd-${id}`);
  await add(restarted.url, id, 1);
  t.true(await eventually(async () => (await read(restarted.url, id)).total === 6));
  t.is((await read(restarted.url, id)).applied, 2);
  await restarted.kill('SIGTERM');
});

test('a timer set before a crash fires after the restart', async (t) => {
  const settings = await env();
  const id = `alarm-${randomUUID().slice(0, 8)}`;
  const first = await startNodeProcess(FIXTURE, settings);
  const res = await fetch(`${first.url}/counter/${id}/alarm?at=${Date.now() + 1_500}`, { method: 'POST' });
  t.is(res.status, 202);
  t.true(await eventually(async () => (await read(first.url, id)).alarms === 0));
  await first.kill('SIGKILL');
  const second = await startNodeProcess(FIXTURE, settings);
  t.true(await eventually(async () => (await read(second.url, id)).alarms === 1, 60_000), 'the alarm rang after the restart');
  await second.kill('SIGTERM');
});

test('bad configuration stops start-up with a clear message and a non-zero exit', async (t) => {
  const cases: [Record<string, string>, RegExp][] = [
    [{ MODE: 'galactic' }, /MODE/],
    [{ DATABASE_URL: 'not a url' }, /DATABASE_URL/],
    [{ PORT: 'eighty' }, /PORT/],
  ];
  for (const [bad, message] of cases) {
    const error = await t.throwsAsync(startNodeProcess('main.ts', { ...bad, PORT: bad.PORT ?? '0' }, 120_000));
    t.regex(error!.message, /exited with 2/, `exit code for ${JSON.stringify(bad)}`);
    t.regex(error!.message, message, `message names the variable for ${JSON.stringify(bad)}`);
  }
});
