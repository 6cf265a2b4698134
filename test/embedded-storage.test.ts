// The embedded database never takes the node with it: PGlite runs in a worker thread,
// a statement that runs too long is cancelled, a directory that will not open fails
// within a bound with one line. Damaged and stuck directories are made here, on the
// spot (test/fixtures/wedged-pglite.ts); nothing is read from outside the repository.

import test from 'ava';
import { spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { dispatchBehaviors, dispatchServices } from '../actors/index.ts';
import { EmbeddedDatabaseError, startEmbeddedPostgres } from '../adapters/postgres/embedded.ts';
import { openOrm } from '../adapters/postgres/orm.ts';
import { loadConfig } from '../config/index.ts';
import { startNode } from '../node.ts';
import { wedgedPgliteDir } from './fixtures/wedged-pglite.ts';
import { eventually, repoRoot } from './helpers/node-process.ts';
import { freshDatabase } from './helpers/services.ts';

function tempDir(t: { teardown(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'dispatch-embedded-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A promise's state, without waiting for it. */
function track<T>(promise: Promise<T>): { readonly settled: boolean; readonly promise: Promise<T> } {
  const state = { settled: false, promise };
  promise.then(() => { state.settled = true; }, () => { state.settled = true; });
  return state;
}

function captureLogger() {
  const lines: { level: string; msg: string }[] = [];
  return {
    lines,
    info: (_o: object, msg: string) => { lines.push({ level: 'info', msg }); },
    error: (_o: object, msg: string) => { lines.push({ level: 'error', msg }); },
  };
}

test('PGlite runs off the main thread: a started node answers /health while a statement keeps the database busy', async (t) => {
  const dir = tempDir(t);
  const config = loadConfig({
    MODE: 'embedded', DATABASE_URL: '', KAFKA_BROKERS: '', REDIS_URL: '', DATA_DIR: dir, PORT: '0', HOST: '127.0.0.1',
    LOG_LEVEL: 'silent', SHARDS: '4', JWT_SECRET: 'embedded-test-secret-long-enough',
  });
  const node = await startNode({ config, behaviors: dispatchBehaviors(config), services: dispatchServices(config) });
  t.teardown(() => node.stop());
  t.true(node.storage.embedded);

  // pg_sleep inside PGlite is a busy wait in WebAssembly: it holds the thread it runs on.
  const busy = track(node.storage.orm.em.getConnection().execute('select pg_sleep(8)'));
  await sleep(1_000);
  for (let i = 0; i < 5; i++) {
    const res = await fetch(`${node.url}/health`);
    t.is(res.status, 200);
    t.deepEqual(await res.json(), { status: 'ok' });
    t.false(busy.settled, '/health answered while the statement was still running');
  }
  await t.notThrowsAsync(busy.promise, 'a statement under the timeout runs to its end');
});

// The node's own pool connects in-process (db.connect()); psql and other tools over TCP (db.url). Both are relayed alike.
for (const via of ['TCP', 'in-process'] as const) {
test(`${via}: a statement running longer than the timeout fails with PostgreSQL's 57014, and the database serves again with its data`, async (t) => {
  const dir = tempDir(t);
  const logger = captureLogger();
  const db = await startEmbeddedPostgres({ dataDir: join(dir, 'pg'), statementTimeoutMs: 3_000, logger });
  t.teardown(() => db.stop());
  const orm = await openOrm({ url: db.url, poolMax: 1, statementTimeoutMs: 3_000, ...(via === 'in-process' ? { stream: () => db.connect() } : {}) });
  t.teardown(() => orm.close(true));
  const sql = (query: string) => orm.em.getConnection().execute(query);
  await sql('create table kept (x int)');
  await sql('insert into kept values (42)');

  // Without the watchdog this returns after 50 s and the assertion below fails.
  const error = await sql('select pg_sleep(50)').then(() => undefined, (e: unknown) => e as { code?: string; message: string });
  t.is(error?.code, '57014');
  t.regex(error?.message ?? '', /canceling statement due to statement timeout/);
  t.is(db.restarts(), 1);

  t.true(await eventually(async () => db.problem() === undefined, 60_000), 'the database reopened');
  t.deepEqual(await sql('select x from kept'), [{ x: 42 }], 'the pool connects again and the data is there');
  const errors = logger.lines.filter((l) => l.level === 'error');
  t.is(errors.length, 1);
  t.regex(errors[0]!.msg, /a statement ran longer than 3 s; restarting it/);
  t.true(logger.lines.some((l) => l.msg === 'embedded database restarted'));
});
}

test('PostgreSQL: every pooled connection carries statement_timeout, and a longer statement fails with 57014', async (t) => {
  const database = await freshDatabase();
  t.teardown(() => database.drop());
  const orm = await openOrm({ url: database.url, poolMax: 2, statementTimeoutMs: 1_000 });
  t.teardown(() => orm.close(true));
  const sql = (query: string) => orm.em.getConnection().execute(query);
  // The migrations ran (in their one transaction without the timeout).
  t.true(Number((await sql('select count(*) as n from mikro_orm_migrations'))[0]?.n) > 0);
  t.deepEqual(await sql('show statement_timeout'), [{ statement_timeout: '1s' }]);
  const error = await sql('select pg_sleep(30)').then(() => undefined, (e: unknown) => e as { code?: string });
  t.is(error?.code, '57014');
  t.deepEqual(await sql('select 1 as one'), [{ one: 1 }]);
});

test('a directory on which the database never opens fails within the bound with one line, the main thread running meanwhile', async (t) => {
  const dir = tempDir(t);
  const pgDir = join(dir, 'pg');
  await wedgedPgliteDir(pgDir, 'pg_catalog.pg_database');
  let ticks = 0;
  const ticking = setInterval(() => ticks++, 100);
  t.teardown(() => clearInterval(ticking));
  const error = await startEmbeddedPostgres({ dataDir: pgDir, openTimeoutMs: 3_000 }).then(
    async (db) => { await db.stop(); return undefined; },
    (e: unknown) => e,
  );
  t.true(error instanceof EmbeddedDatabaseError);
  const message = (error as Error).message;
  t.is(message, `embedded database in ${pgDir} did not open within 3 s: it may be damaged; move it aside or restore a backup`);
  t.is((error as Error).stack, message, 'printed as one line');
  t.true(ticks > 0, 'timers ran on the main thread while the database was stuck opening');
});

test('damaged directories (truncated pg_control, a stranger\'s files) fail at once with one line', async (t) => {
  const dir = tempDir(t);
  const good = join(dir, 'good');
  await (await startEmbeddedPostgres({ dataDir: good })).stop();
  const damages: Record<string, (pgDir: string) => void> = {
    'truncated pg_control': (d) => truncateSync(join(d, 'global', 'pg_control'), 10),
    'not a database': (d) => { rmSync(d, { recursive: true }); mkdirSync(d); writeFileSync(join(d, 'PG_VERSION'), 'not postgres\n'); },
  };
  for (const [name, damage] of Object.entries(damages)) {
    const pgDir = join(dir, name.replaceAll(' ', '-'));
    cpSync(good, pgDir, { recursive: true });
    damage(pgDir);
    const error = await startEmbeddedPostgres({ dataDir: pgDir }).then(async (db) => { await db.stop(); return undefined; }, (e: unknown) => e as Error);
    t.true(error instanceof EmbeddedDatabaseError, name);
    t.regex(error?.message ?? '', new RegExp(`^embedded database in ${pgDir} could not be opened \\(.+\\): it may be damaged; move it aside or restore a backup$`), name);
    t.false((error?.stack ?? '').includes('\n'), `${name}: one line`);
  }
});

// ---- nodes as real processes (npm start), on stuck directories ----

interface Child {
  readonly lines: string[];
  readonly exited: Promise<number | null>;
  readonly pid: number;
  running(): boolean;
}

function startMain(t: { teardown(fn: () => unknown): void }, env: Record<string, string>): Child {
  const child = spawn(process.execPath, ['main.ts'], {
    cwd: repoRoot,
    env: { ...process.env, MODE: 'embedded', DATABASE_URL: '', KAFKA_BROKERS: '', REDIS_URL: '', HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (l) => lines.push(l));
  createInterface({ input: child.stderr! }).on('line', (l) => lines.push(l));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const running = () => child.exitCode === null && child.signalCode === null;
  t.teardown(async () => { if (running()) { child.kill('SIGKILL'); await exited; } });
  return { lines, exited, pid: child.pid!, running };
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

const within = <T>(promise: Promise<T>, ms: number) => Promise.race([promise, sleep(ms, 'timed out' as const, { ref: false })]);

test.serial('a node on a directory where the database never opens answers /health meanwhile, then exits with one line within 60 s', async (t) => {
  const dir = tempDir(t);
  await wedgedPgliteDir(join(dir, 'pg'), 'pg_catalog.pg_database');
  const port = await freePort();
  const node = startMain(t, { DATA_DIR: dir, PORT: String(port), EMBEDDED_OPEN_TIMEOUT_MS: '60000' });

  // The port is bound before storage opens: the process says it is alive, and not ready, it does not hang.
  t.true(await eventually(async () => (await fetch(`http://127.0.0.1:${port}/health`)).status === 200, 30_000));
  const ready = await fetch(`http://127.0.0.1:${port}/ready`);
  t.is(ready.status, 503);
  t.is((await ready.json() as { error: { code: string } }).error.code, 'not_ready');

  t.is(await within(node.exited, 110_000), 1);
  const failures = node.lines.filter((l) => l.startsWith('failed to start'));
  t.deepEqual(failures, [
    `failed to start: embedded database in ${join(dir, 'pg')} did not open within 60 s: it may be damaged; move it aside or restore a backup`,
  ], node.lines.slice(-10).join('\n'));
});

test.serial('a node on a directory where a statement never ends (like one two nodes wrote at once) serves /health, cancels it after 30 s, and stops on SIGTERM', async (t) => {
  const dir = tempDir(t);
  await wedgedPgliteDir(join(dir, 'pg'), 'journal');
  const port = await freePort();
  const node = startMain(t, { DATA_DIR: dir, PORT: String(port), AUTH_DEV_TOKENS: 'true', JWT_SECRET: 'embedded-test-secret-long-enough', STATEMENT_TIMEOUT_MS: '30000' });
  const url = `http://127.0.0.1:${port}`;
  t.true(await eventually(async () => node.lines.some((l) => l.includes('"node started"')), 60_000), node.lines.slice(-10).join('\n'));

  // A booking writes to the journal, which the stuck transaction holds: that statement never ends.
  const { token } = await fetch(`${url}/v1/auth/token`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sub: 'r1', role: 'rider' }),
  }).then((r) => r.json() as Promise<{ token: string }>);
  const booking = track(fetch(`${url}/v1/bookings`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ pickup: { lat: 52.52, lng: 13.405 }, dropoff: { lat: 52.5, lng: 13.42 }, vehicleType: 'economy' }),
  }).then((r) => r.text()));
  const cancelled = () => node.lines.some((l) => l.includes('a statement ran longer than 30 s; restarting it'));

  // While the statement is stuck in the database (it is cancelled 30 s after it began), the node answers.
  await sleep(2_000);
  for (let i = 0; i < 5; i++) {
    t.is((await fetch(`${url}/health`)).status, 200);
    t.false(cancelled(), 'the statement was still stuck when /health answered');
    await sleep(500);
  }
  t.true(await eventually(async () => cancelled(), 90_000),
    'the stuck statement is cancelled by restarting the database');
  t.true(await eventually(async () => node.lines.some((l) => l.includes('"embedded database restarted"')), 60_000));
  t.is((await fetch(`${url}/health`)).status, 200);
  await booking.promise.catch(() => undefined);

  process.kill(node.pid, 'SIGTERM');
  t.not(await within(node.exited, 60_000), 'timed out', 'SIGTERM ends the node although its database is stuck');
  t.true(node.lines.some((l) => l.includes('"node stopping"')));
});

test('a new directory\'s database is created by a process of its own (its memory goes with it), whole, and serves with 16 MB of shared buffers', async (t) => {
  const dir = join(tempDir(t), 'pg');
  const db = await startEmbeddedPostgres({ dataDir: dir });
  t.teardown(() => db.stop());
  const orm = await openOrm({ url: db.url, poolMax: 1 });
  t.teardown(() => orm.close(true));
  const [row] = await orm.em.getConnection().execute(`select setting from pg_settings where name = 'shared_buffers'`) as { setting: string }[];
  t.is(Number(row!.setting) * 8, 16 * 1024, 'shared_buffers of 16 MB');
  // Created beside the target and moved in whole: nothing is left of the staging directory.
  t.deepEqual(readdirSync(join(dir, '..')), ['pg']);
  t.true(readdirSync(dir).includes('PG_VERSION'));
});

test('a database that cannot be created fails with one line and leaves nothing behind', async (t) => {
  const base = tempDir(t);
  writeFileSync(join(base, 'file'), 'not a directory');
  const dir = join(base, 'file', 'pg');
  const error = await t.throwsAsync(startEmbeddedPostgres({ dataDir: dir, openTimeoutMs: 120_000 }));
  t.true(error instanceof EmbeddedDatabaseError, String(error));
  t.regex(String(error?.message), /could not be created/);
  t.notRegex(String(error?.message), /\n/);
  t.deepEqual(readdirSync(base), ['file']);
});
