import test from 'ava';
import { createServer as createTcpServer, type Server } from 'node:net';
import { TaskCancelledError } from 'cockatiel';
import { DependencyUnavailableError, countsAsOutage, guard, isRetriableConflict } from '../adapters/resilience.ts';

const refused = () => Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
const sql = (code: string, message = `sqlstate ${code}`) => Object.assign(new Error(message), { name: 'error', code, severity: 'ERROR' });

test('an outage answers fast once the circuit opens, and recovers by itself', async (t) => {
  const g = guard({ name: 'PostgreSQL', timeoutMs: 100, attempts: 1, breakAfter: 3, halfOpenAfterMs: 300 });
  let down = true;
  let calls = 0;
  const query = () => g.run(async () => {
    calls++;
    if (down) throw refused();
    return 'rows';
  });
  for (let i = 0; i < 3; i++) await t.throwsAsync(query(), { instanceOf: DependencyUnavailableError });
  t.is(g.state(), 'open');
  const before = calls;
  await t.throwsAsync(query(), { instanceOf: DependencyUnavailableError, message: /PostgreSQL is unavailable/ });
  t.is(calls, before, 'an open circuit refuses without touching the dependency');
  down = false;
  await new Promise((r) => setTimeout(r, 350));
  t.is(await query(), 'rows', 'after the pause a trial call goes through and closes the circuit');
  t.is(await query(), 'rows');
  t.is(g.state(), 'closed');
});

test('a hung call times out instead of piling up', async (t) => {
  const g = guard({ name: 'Redis', timeoutMs: 50, attempts: 1 });
  let calls = 0;
  await t.throwsAsync(g.run(() => { calls++; return new Promise(() => undefined); }), { instanceOf: DependencyUnavailableError });
  t.is(calls, 2, 'each attempt was given up on (the first and its one retry), so the call returned');
});

test('transient faults are retried; errors about the statement are not', async (t) => {
  const g = guard({ name: 'PostgreSQL', attempts: 3 });
  let n = 0;
  t.is(await g.run(async () => { if (++n < 3) throw Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }); return n; }), 3);
  let m = 0;
  const unique = sql('23505', 'duplicate key value violates unique constraint');
  await t.throwsAsync(g.run(async () => { m++; throw unique; }), { is: unique });
  t.is(m, 1, 'a unique violation is not retried');
});

// What counts toward opening the shared circuit. The SQL rows carry the SQLSTATE the way
// node-postgres puts it on its DatabaseError (`code`); the real objects are checked below.
const TABLE: [string, unknown, boolean][] = [
  // connection level: the dependency is down or cannot be reached
  ['ECONNREFUSED', refused(), true],
  ['ECONNRESET', Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }), true],
  ['ETIMEDOUT', Object.assign(new Error('connect ETIMEDOUT 10.0.0.1:5432'), { code: 'ETIMEDOUT' }), true],
  ['EPIPE', Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }), true],
  ['EHOSTUNREACH', Object.assign(new Error('connect EHOSTUNREACH'), { code: 'EHOSTUNREACH' }), true],
  ['ENOTFOUND (DNS)', Object.assign(new Error('getaddrinfo ENOTFOUND db'), { code: 'ENOTFOUND' }), true],
  ['AggregateError of refusals (IPv4 and IPv6)', Object.assign(new AggregateError([refused(), refused()], ''), { code: 'ECONNREFUSED' }), true],
  ['Connection terminated unexpectedly', new Error('Connection terminated unexpectedly'), true],
  ['Connection terminated due to connection timeout', new Error('Connection terminated due to connection timeout', { cause: new Error('timeout expired') }), true],
  ['pool: timeout exceeded when trying to connect', new Error('timeout exceeded when trying to connect'), true],
  ['Client has encountered a connection error', new Error('Client has encountered a connection error and is not queryable'), true],
  ['the guard\'s own timeout', new TaskCancelledError('Operation timed out after 3000ms'), true],
  ['wrapped: an error caused by ECONNREFUSED', new Error('cannot run the query', { cause: refused() }), true],
  ['MikroORM ConnectionException', Object.assign(new Error('connection lost'), { name: 'ConnectionException' }), true],
  ['08006 connection failure', sql('08006'), true],
  ['08001 unable to establish connection', sql('08001'), true],
  ['08003 connection does not exist', sql('08003'), true],
  ['53300 too many connections', sql('53300', 'sorry, too many clients already'), true],
  ['53100 disk full', sql('53100'), true],
  ['53200 out of memory', sql('53200'), true],
  ['57P01 admin shutdown', sql('57P01', 'terminating connection due to administrator command'), true],
  ['57P02 crash shutdown', sql('57P02'), true],
  ['57P03 cannot connect now', sql('57P03', 'the database system is starting up'), true],
  ['58030 I/O error', sql('58030'), true],
  ['XX000 internal error', sql('XX000'), true],
  ['XX001 data corrupted', sql('XX001'), true],
  // caused by the request, or by us: the server answered, or was never asked
  ['RangeError: Invalid time value', new RangeError('Invalid time value'), false],
  ['TypeError', new TypeError('Cannot read properties of undefined'), false],
  ['SyntaxError from JSON.parse', new SyntaxError('Unexpected token'), false],
  ['a plain Error', new Error('something else went wrong'), false],
  ['an HTTP error of ours', Object.assign(new Error('bad cursor'), { name: 'HttpError', status: 400, code: 'invalid_request' }), false],
  ['a thrown string', 'boom', false],
  ['undefined', undefined, false],
  ['null', null, false],
  ['08P01 protocol violation (a NUL byte in a text parameter)', sql('08P01', 'invalid message format'), false],
  ['22007 invalid datetime format', sql('22007'), false],
  ['22008 datetime field overflow', sql('22008'), false],
  ['22P02 invalid text representation', sql('22P02'), false],
  ['22021 invalid byte sequence', sql('22021'), false],
  ['23505 unique violation', sql('23505'), false],
  ['23503 foreign key violation', sql('23503'), false],
  ['42601 syntax error', sql('42601'), false],
  ['42703 undefined column', sql('42703'), false],
  ['42P01 undefined table', sql('42P01'), false],
  ['40001 serialization failure (retried, not an outage)', sql('40001'), false],
  ['40P01 deadlock (retried, not an outage)', sql('40P01'), false],
  ['0A000 feature not supported', sql('0A000'), false],
  ['25P02 in failed transaction', sql('25P02'), false],
  ['57014 query cancelled', sql('57014'), false],
  ['Node\'s own ERR_ code', Object.assign(new Error('invalid arg'), { code: 'ERR_INVALID_ARG_TYPE' }), false],
];

for (const [name, error, counts] of TABLE) {
  test(`countsAsOutage: ${name} -> ${counts ? 'counts' : 'does not count'}`, (t) => {
    t.is(countsAsOutage(error), counts);
  });
}

test('only serialization failures and deadlocks are retriable conflicts', (t) => {
  t.true(isRetriableConflict(sql('40001')));
  t.true(isRetriableConflict(sql('40P01')));
  for (const e of [sql('23505'), sql('08006'), refused(), new RangeError('x'), undefined]) t.false(isRetriableConflict(e));
});

test('a RangeError thrown inside a guarded call reaches the caller as it is and leaves the breaker as it was', async (t) => {
  const g = guard({ name: 'PostgreSQL', attempts: 2, breakAfter: 3, halfOpenAfterMs: 60_000 });
  let calls = 0;
  const bug = () => g.run(async () => { calls++; throw new RangeError('Invalid time value'); });
  for (let i = 0; i < 50; i++) {
    const error = await t.throwsAsync(bug());
    t.true(error instanceof RangeError, 'not turned into "unavailable"');
  }
  t.is(calls, 50, 'never retried');
  t.is(g.state(), 'closed');
  t.is(await g.run(async () => 'rows'), 'rows', 'and the next call goes through');

  // Nor does it reset or add to a run of real failures: 2 outages, 50 bugs, 1 outage opens a breakAfter=3 circuit.
  const outage = () => g.run(async () => { throw refused(); });
  for (let i = 0; i < 2; i++) await t.throwsAsync(outage(), { instanceOf: DependencyUnavailableError });
  for (let i = 0; i < 50; i++) await t.throwsAsync(bug(), { instanceOf: RangeError });
  t.is(g.state(), 'closed');
  await t.throwsAsync(outage(), { instanceOf: DependencyUnavailableError });
  t.is(g.state(), 'open', 'the third outage in a row opens it: the bugs between were neither counted nor a reset');
});

test('SQL errors the request caused propagate unchanged, are not retried, and never open the breaker', async (t) => {
  const g = guard({ name: 'PostgreSQL', attempts: 3, breakAfter: 2, halfOpenAfterMs: 60_000 });
  for (const code of ['22007', '22008', '22P02', '23505', '42601', '42703', '08P01', '57014']) {
    let calls = 0;
    const error = sql(code);
    for (let i = 0; i < 5; i++) await t.throwsAsync(g.run(async () => { calls++; throw error; }), { is: error });
    t.is(calls, 5, `${code} is not retried`);
  }
  t.is(g.state(), 'closed');
});

test('a serialization failure is retried; if it persists the caller hears "busy" and the breaker stays closed', async (t) => {
  const g = guard({ name: 'PostgreSQL', attempts: 3, breakAfter: 1, halfOpenAfterMs: 60_000 });
  let n = 0;
  t.is(await g.run(async () => { if (++n < 3) throw sql('40001'); return 'committed'; }), 'committed');
  await t.throwsAsync(g.run(async () => { throw sql('40P01'); }), { instanceOf: DependencyUnavailableError, message: /busy/ });
  t.is(g.state(), 'closed', 'a lost race is not an outage, even with breakAfter: 1');
});

test('each kind of connection-level failure opens the breaker', async (t) => {
  for (const [name, error, counts] of TABLE) {
    if (!counts) continue;
    const g = guard({ name: 'PostgreSQL', attempts: 1, breakAfter: 2, halfOpenAfterMs: 60_000, timeoutMs: 1_000 });
    for (let i = 0; i < 2; i++) await t.throwsAsync(g.run(async () => { throw error; }), { instanceOf: DependencyUnavailableError }, name);
    t.is(g.state(), 'open', name);
  }
});

// The objects node-postgres really throws, not hand-made look-alikes.
test('real connection failures from node-postgres count as outages', async (t) => {
  const { default: pg } = await import('pg');
  const servers: Server[] = [];
  const listen = async (onConnection: (socket: import('node:net').Socket) => void) => {
    const server = createTcpServer(onConnection).listen(0, '127.0.0.1');
    servers.push(server);
    await new Promise((r) => server.once('listening', r));
    return (server.address() as { port: number }).port;
  };
  t.teardown(() => { for (const s of servers) s.close(); });
  const failure = async (config: import('pg').ClientConfig) => {
    const client = new pg.Client({ host: '127.0.0.1', user: 'x', database: 'x', ...config });
    client.on('error', () => undefined);
    try { await client.connect(); } catch (error) { return error; } finally { await client.end().catch(() => undefined); }
    throw new Error('connected to a server that is not there');
  };

  // Nothing listens: a port just closed is refused.
  const closed = await listen(() => undefined);
  await new Promise((r) => servers.pop()!.close(r));
  const refusedError = await failure({ port: closed });
  t.true(countsAsOutage(refusedError), `refused: ${String(refusedError)}`);

  // Accepts, then hangs up: the connection ends under the client.
  const hangsUp = await listen((socket) => socket.destroy());
  const terminated = await failure({ port: hangsUp });
  t.true(countsAsOutage(terminated), `hung up: ${String(terminated)}`);

  // Accepts and never answers: the client's connection timeout.
  const silent = await listen(() => undefined);
  const timedOut = await failure({ port: silent, connectionTimeoutMillis: 100 });
  t.true(countsAsOutage(timedOut), `timed out: ${String(timedOut)}`);

  // A pool that cannot hand out a connection in time.
  const pool = new pg.Pool({ host: '127.0.0.1', port: silent, user: 'x', database: 'x', max: 1, connectionTimeoutMillis: 100 });
  pool.on('error', () => undefined);
  const poolError = await pool.query('select 1').then(() => undefined, (e: unknown) => e);
  await pool.end().catch(() => undefined);
  t.true(countsAsOutage(poolError), `pool: ${String(poolError)}`);
});

test('the edge answers an unavailable dependency with 503 in the contract shape', async (t) => {
  const { createServer } = await import('node:http');
  const Router = (await import('@koa/router')).default;
  const { createApp } = await import('../http/app.ts');
  const { createAuthenticator } = await import('../http/auth.ts');
  const { pino } = await import('pino');
  const router = new Router();
  router.get('/v1/probe', () => { throw new DependencyUnavailableError('PostgreSQL is unavailable right now; try again shortly'); });
  const app = createApp({
    logger: pino({ level: 'silent' }), maxBodyBytes: 1024, routers: [router],
    auth: await createAuthenticator({ secret: 'x'.repeat(32), issuer: 'dispatch', tokenTtlSeconds: 60 }),
    health: { live: () => true, ready: async () => ({ ok: true }) },
  });
  const server = createServer(app.callback()).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const { port } = server.address() as { port: number };
  const res = await fetch(`http://127.0.0.1:${port}/v1/probe`);
  t.is(res.status, 503);
  t.deepEqual(await res.json(), { error: { code: 'unavailable', message: 'PostgreSQL is unavailable right now; try again shortly' } });
  server.close();
});
