import test from 'ava';
import { DependencyUnavailableError, guard, isPermanentSqlError } from '../adapters/resilience.ts';

test('an outage answers fast once the circuit opens, and recovers by itself', async (t) => {
  const g = guard({ name: 'PostgreSQL', timeoutMs: 100, attempts: 1, breakAfter: 3, halfOpenAfterMs: 300, isPermanent: isPermanentSqlError });
  let down = true;
  let calls = 0;
  const query = () => g.run(async () => {
    calls++;
    if (down) throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' });
    return 'rows';
  });
  for (let i = 0; i < 3; i++) await t.throwsAsync(query(), { instanceOf: DependencyUnavailableError });
  const before = calls;
  const started = performance.now();
  await t.throwsAsync(query(), { instanceOf: DependencyUnavailableError, message: /PostgreSQL is unavailable/ });
  t.true(performance.now() - started < 20, 'an open circuit refuses at once');
  t.is(calls, before, 'and does not touch the dependency');
  down = false;
  await new Promise((r) => setTimeout(r, 350));
  t.is(await query(), 'rows', 'after the pause a trial call goes through and closes the circuit');
  t.is(await query(), 'rows');
});

test('a hung call times out instead of piling up', async (t) => {
  const g = guard({ name: 'Redis', timeoutMs: 50, attempts: 1 });
  const started = performance.now();
  await t.throwsAsync(g.run(() => new Promise(() => undefined)), { instanceOf: DependencyUnavailableError });
  t.true(performance.now() - started < 500);
});

test('transient faults are retried; errors about the statement are not', async (t) => {
  const g = guard({ name: 'PostgreSQL', attempts: 3, isPermanent: isPermanentSqlError });
  let n = 0;
  t.is(await g.run(async () => { if (++n < 3) throw new Error('connection reset'); return n; }), 3);
  let m = 0;
  const unique = Object.assign(new Error('duplicate key'), { code: '23505' });
  await t.throwsAsync(g.run(async () => { m++; throw unique; }), { is: unique });
  t.is(m, 1, 'a unique violation is not retried');
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
