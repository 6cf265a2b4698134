// A real node process on real PostgreSQL killed with SIGKILL in the middle of a burst of
// bookings and cancellations: after the restart every view equals the fold over the journal.

import test from 'ava';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { freshDatabase } from './helpers/services.ts';
import { eventually, startNodeProcess, type NodeProcess } from './helpers/node-process.ts';
import { journalTruthDiff } from './helpers/journal-truth.ts';

const SECRET = 'crash-test-secret-of-good-length';
const started: NodeProcess[] = [];
test.after.always(async () => { await Promise.all(started.map((p) => p.kill('SIGKILL'))); });

async function token(url: string): Promise<string> {
  const res = await fetch(`${url}/v1/auth/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sub: 'adm', role: 'admin' }) });
  return ((await res.json()) as { token: string }).token;
}

test('SIGKILL during a burst of creations and cancellations: after the restart the views equal the journal', async (t) => {
  const db = await freshDatabase();
  t.teardown(() => db.drop());
  const env = {
    MODE: 'embedded', DATABASE_URL: db.url, DATA_DIR: mkdtempSync(join(tmpdir(), 'proj-crash-')), SHARDS: '8',
    AUTH_DEV_TOKENS: 'true', JWT_SECRET: SECRET,
  };
  const first = await startNodeProcess('main.ts', env);
  started.push(first);
  const run = randomUUID().slice(0, 8);
  const riderAuth = async (i: number) => {
    const res = await fetch(`${first.url}/v1/auth/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sub: `r-${run}-${i}`, role: 'rider' }) });
    return { authorization: `Bearer ${((await res.json()) as { token: string }).token}`, 'content-type': 'application/json' };
  };
  // 40 scheduled bookings, then their cancellations fired together; the kill lands among them.
  const riders = await Promise.all(Array.from({ length: 40 }, (_, i) => riderAuth(i)));
  const ids: string[] = [];
  for (const [i, h] of riders.entries()) {
    const res = await fetch(`${first.url}/v1/bookings`, { method: 'POST', headers: h, body: JSON.stringify({ scheduledAt: new Date(Date.now() + 3_600_000).toISOString(), pickup: { lat: 48.8566, lng: 2.3522 }, dropoff: { lat: 48.87, lng: 2.36 }, vehicleType: 'economy' }) });
    if (res.status === 201 || res.status === 200) ids.push(((await res.json()) as { id: string }).id);
    else t.fail(`create ${i}: ${res.status} ${await res.text()}`);
  }
  const cancels = ids.map((id, i) => fetch(`${first.url}/v1/bookings/${id}/cancel`, { method: 'POST', headers: riders[i]!, body: '{}' }).catch(() => undefined));
  await new Promise((r) => setTimeout(r, 30));
  await first.kill('SIGKILL');
  await Promise.all(cancels);

  const second = await startNodeProcess('main.ts', env);
  started.push(second);
  const admin = { authorization: `Bearer ${await token(second.url)}` };
  // A cancel the log took before the kill is handled after the restart, maybe after the
  // views first equal the journal: wait until the list and each booking agree as well.
  const disagreements = async () => {
    const list = await fetch(`${second.url}/v1/bookings?limit=100`, { headers: admin });
    const listed = ((await list.json()) as { items: { id: string; status: string }[] }).items;
    const out: string[] = [];
    for (const id of ids) {
      const b = await (await fetch(`${second.url}/v1/bookings/${id}`, { headers: admin })).json() as { status: string };
      const shown = listed.find((x) => x.id === id)?.status;
      if (shown !== b.status) out.push(`the list shows ${id} as ${shown}, the booking is ${b.status}`);
    }
    return { listed, out };
  };
  t.true(await eventually(async () => (await journalTruthDiff(db.url)).length === 0 && (await disagreements()).out.length === 0, 60_000));
  t.deepEqual((await journalTruthDiff(db.url)).slice(0, 5), [], 'views equal the journal after the restart');
  const { listed, out } = await disagreements();
  t.deepEqual(out, [], 'the list shows each booking as it is');
  t.log(`cancelled before the kill: ${listed.filter((b) => b.status === 'cancelled').length} of ${ids.length}`);
  await second.kill('SIGTERM');
});
