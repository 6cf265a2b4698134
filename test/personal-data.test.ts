// Contact details at rest, on real PostgreSQL: riders' and drivers' email, name and phone
// appear in no table, journal entry, snapshot, view or command-log file, yet log-in by email
// works and admins read them back; then `npm run keys -- rotate`, run while a node serves,
// moves every sealed value to a new key, and a node that no longer has the old key reads it all.

import test from 'ava';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { hashPassword } from '../http/passwords.ts';
import { newKeyLine } from '../runtime/personal-data.ts';
import { main as keysCli } from '../scripts/keys.ts';
import { startEdge, type EdgeNode } from './helpers/edge-client.ts';
import { freshDatabase } from './helpers/services.ts';
import { eventually } from './helpers/node-process.ts';

const tag = randomUUID().replaceAll('-', '').slice(0, 10);
const rider = { email: `Rosalind.${tag}@Example.org`, name: `Rosalind Quimby${tag}`, phone: `+44 7700 ${tag.slice(0, 6)}1`, password: 'violet-Kettle-41-sunder' };
const selfDriver = { email: `Thaddeus.${tag}@example.org`, name: `Thaddeus Vornholt${tag}`, phone: `+44 7700 ${tag.slice(0, 6)}2`, password: 'amber-Lantern-73-quiver' };
const adminDriver = { id: `drv-pd-${tag}`, name: `Wilhelmina Ostrava${tag}`, phone: `+44 7700 ${tag.slice(0, 6)}3`, newPhone: `+44 7700 ${tag.slice(0, 6)}4` };
const legacy = { email: `legacy.${tag}@example.org`, name: `Legacy Person${tag}`, password: 'copper-Thistle-58-murmur' };
/** Every plaintext that must not be at rest (compared lower-cased). */
const PLAIN = [rider.email, rider.name, rider.phone, selfDriver.email, selfDriver.name, selfDriver.phone, adminDriver.name, adminDriver.phone, adminDriver.newPhone]
  .flatMap((s) => [s, s.split('@')[0]!]).map((s) => s.toLowerCase());

const k1 = newKeyLine('k1');
const k2 = newKeyLine('k2');
const INDEX = randomBytes(48).toString('base64url');
let db: { url: string; drop(): Promise<void> };
let client: pg.Client;
const dataDir = mkdtempSync(join(tmpdir(), 'pd-'));
let edge: EdgeNode | undefined;

const start = (keys: Record<string, string>) => startEdge({ DATABASE_URL: db.url, DATA_DIR: dataDir, DATA_INDEX_KEY: INDEX, SNAPSHOT_EVERY: '1', ...keys });

test.before(async () => {
  db = await freshDatabase();
  client = new pg.Client({ connectionString: db.url });
  await client.connect();
});
test.after.always(async () => {
  await edge?.stop();
  await client?.end();
  await db?.drop();
});

/** Every row of the tables that could hold contact details, as text. */
async function rawRows(): Promise<string[]> {
  const rows: string[] = [];
  for (const table of ['account', 'journal', 'snapshot', 'driver_view', 'booking_view', 'dead_letter']) {
    const { rows: found } = await client.query<{ t: string }>(`select t::text as t from ${table} t`);
    rows.push(...found.map((r) => `${table}: ${r.t}`));
  }
  return rows;
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

const login = (e: EdgeNode, email: string, password: string) => e.http('POST', '/v1/auth/login', { body: { email, password } });
const subOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()).sub as string;

async function adminReads(e: EdgeNode, t: import('ava').ExecutionContext, selfId: string) {
  const admin = await e.token('ops-pd', 'admin');
  const one = await e.http('GET', `/v1/admin/drivers/${adminDriver.id}`, { token: admin });
  t.like(one.body, { name: adminDriver.name, phone: adminDriver.newPhone });
  const self = await e.http('GET', `/v1/admin/drivers/${selfId}`, { token: admin });
  t.like(self.body, { name: selfDriver.name, phone: selfDriver.phone, approval: 'pending' });
  // The list comes from driver_view: it shows the plaintext once the projection has the latest profile.
  const listed = await eventually(async () => {
    const items = (await e.http('GET', '/v1/admin/drivers', { token: admin })).body.items as { id: string; name?: string; phone?: string }[];
    return items.some((d) => d.id === adminDriver.id && d.name === adminDriver.name && d.phone === adminDriver.newPhone)
      && items.some((d) => d.id === selfId && d.name === selfDriver.name);
  });
  t.true(listed, 'the admin driver list shows names and phones in plaintext');
}

test.serial('contact details are sealed in every table and file, yet log-in and admin reads see them; rotate moves them to a new key', async (t) => {
  edge = await start({ DATA_KEYS: k1 });
  for (const who of [{ ...rider, role: 'rider' }, { ...selfDriver, role: 'driver' }]) {
    const { password, email, name, phone, role } = who;
    t.is((await edge.http('POST', '/v1/auth/register', { body: { email, password, name, phone, role } })).status, 202);
  }
  const admin = await edge.token('ops-pd', 'admin');
  t.is((await edge.http('POST', '/v1/admin/drivers', { token: admin, body: { id: adminDriver.id, name: adminDriver.name, phone: adminDriver.phone } })).status, 201);
  const patched = await edge.http('PATCH', `/v1/admin/drivers/${adminDriver.id}`, { token: admin, body: { phone: adminDriver.newPhone } });
  t.like(patched.body, { name: adminDriver.name, phone: adminDriver.newPhone }, 'a command\'s reply is opened for the admin');

  // An account from before sealing: plaintext and no email hash. It still logs in.
  await client.query('insert into account (id, email, name, role, password_hash) values ($1, $2, $3, $4, $5)',
    [`rdr_legacy_${tag}`, legacy.email, legacy.name, 'rider', await hashPassword(legacy.password)]);
  t.is((await login(edge, legacy.email, legacy.password)).status, 200, 'a plaintext row from before sealing is found by its email');

  const riderLogin = await login(edge, rider.email.toUpperCase(), rider.password);
  t.is(riderLogin.status, 200, 'log-in by email (any case) finds the sealed account through its keyed hash');
  t.is((await login(edge, rider.email, 'wrong-Password-11-xyz')).status, 401);
  const driverLogin = await login(edge, selfDriver.email, selfDriver.password);
  t.is(driverLogin.status, 200);
  const selfId = subOf(driverLogin.body.token);
  await adminReads(edge, t, selfId);

  // Snapshots are written as entities passivate; stop the node so they all are.
  await edge.stop();
  edge = undefined;
  const rows = await rawRows();
  t.true(rows.some((r) => r.startsWith('snapshot: ') && r.includes(adminDriver.id)), 'the driver has a snapshot to search');
  t.true(rows.some((r) => r.startsWith('driver_view: ') && r.includes(adminDriver.id)));
  t.true(rows.filter((r) => r.startsWith('account: ')).length >= 3);
  const leaks = rows.filter((r) => PLAIN.some((p) => r.toLowerCase().includes(p)));
  t.deepEqual(leaks, [], 'no plaintext contact detail in account, journal, snapshot, driver_view, booking_view or dead_letter');
  const files = filesUnder(dataDir).filter((f) => PLAIN.some((p) => readFileSync(f, 'latin1').toLowerCase().includes(p)));
  t.deepEqual(files, [], 'nor in the command log under DATA_DIR');
  t.true(rows.some((r) => r.includes(legacy.email)), 'the legacy row is still plaintext before rotate');

  // A second key becomes active; the first stays so nothing becomes unreadable; rotate runs while a node serves.
  const both = { DATA_KEYS: `${k2},${k1}`, DATA_KEY_ID: 'k2' };
  edge = await start(both);
  const lines: string[] = [];
  t.is(await keysCli(['rotate'], { ...both, DATA_INDEX_KEY: INDEX, DATABASE_URL: db.url }, (l) => lines.push(l)), 0, lines.join('\n'));
  const report = JSON.parse(lines[0]!);
  t.is(report.activeKey, 'k2');
  t.true(report.account.values >= 8, JSON.stringify(report.account));
  t.true(report.journal.values > 0 && report.snapshot.values > 0 && report.driver_view.values > 0, lines[0]);
  t.deepEqual(Object.keys(report.sealedByKey), ['k2'], 'every sealed value is now under k2');
  const after = await rawRows();
  t.deepEqual(after.filter((r) => r.includes('pd1.k1.')), []);
  t.deepEqual(after.filter((r) => r.toLowerCase().includes(legacy.email) || r.includes(legacy.name)), [], 'rotate sealed the legacy row');
  const { rows: hashes } = await client.query('select count(*)::int as n from account where email_hash is null');
  t.is(hashes[0].n, 0, 'every account has its email hash');
  await edge.stop();

  // Without k1 at all, everything still reads: nothing depends on the old key any more.
  edge = await start({ DATA_KEYS: k2 });
  for (const [email, password] of [[rider.email, rider.password], [selfDriver.email, selfDriver.password], [legacy.email, legacy.password]] as const) {
    t.is((await login(edge, email, password)).status, 200, `${email} logs in after rotation`);
  }
  await adminReads(edge, t, selfId);
});
