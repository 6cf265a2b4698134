// /openapi.json as a node serves it passes `redocly lint` (recommended rules) with no
// errors, and documents every operation's errors with the contract's Error schema.

import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Api } from '../http/api.ts';
import { startEdge, type EdgeNode } from './helpers/edge-client.ts';

const run = promisify(execFile);
const redocly = fileURLToPath(new URL('../node_modules/.bin/redocly', import.meta.url));
const METHODS = ['get', 'post', 'put', 'patch', 'delete'];

interface LintReport {
  totals: { errors: number; warnings: number };
  problems: { ruleId: string; severity: string; message: string; location?: { pointer?: string }[] }[];
}

let edge: EdgeNode;
let doc: any;
test.before(async () => {
  edge = await startEdge();
  const res = await edge.http('GET', '/openapi.json');
  if (res.status !== 200) throw new Error(`/openapi.json: ${res.status}`);
  doc = res.body;
});
test.after.always(async () => { await edge?.stop(); });

const operations = () => Object.entries(doc.paths as Record<string, Record<string, any>>)
  .flatMap(([path, ops]) => Object.entries(ops).filter(([m]) => METHODS.includes(m)).map(([method, op]) => ({ method, path, op })));

test('redocly lint (recommended) finds no errors in /openapi.json', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'openapi-lint-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'openapi.json');
  writeFileSync(file, JSON.stringify(doc, null, 2));
  // redocly exits non-zero when it finds errors; the JSON report on stdout is what counts.
  const { stdout } = await run(redocly, ['lint', '--format=json', '--extends=recommended', file], {
    cwd: dir, env: { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true', NO_COLOR: '1' }, maxBuffer: 16 * 1024 * 1024,
  }).catch((error: { stdout?: string; stderr?: string }) => {
    if (!error.stdout) throw error;
    return { stdout: error.stdout };
  });
  const report = JSON.parse(stdout) as LintReport;
  const errors = report.problems.filter((p) => p.severity === 'error');
  t.is(report.totals.errors, 0, errors.map((p) => `${p.ruleId} at ${p.location?.[0]?.pointer}: ${p.message}`).join('\n'));
  t.log(`warnings: ${report.problems.filter((p) => p.severity === 'warn').map((p) => p.ruleId).join(', ') || 'none'}`);
});

test('every operation documents a 4xx response with the Error schema', (t) => {
  const ops = operations();
  t.true(ops.length > 20);
  for (const { method, path, op } of ops) {
    const errors = Object.entries(op.responses as Record<string, any>)
      .filter(([status, r]) => /^4\d\d$/.test(status) && r.content?.['application/json']?.schema?.$ref === '#/components/schemas/Error');
    t.true(errors.length > 0, `${method.toUpperCase()} ${path} has a 4xx response with the Error schema`);
    // Every status is named, so a validating proxy can refuse any other; a bug's 500 is one of them.
    t.false('default' in op.responses, `${method.toUpperCase()} ${path} has no default response`);
    t.is(op.responses['500']?.content?.['application/json']?.schema?.$ref, '#/components/schemas/Error', `${method.toUpperCase()} ${path} 500`);
    for (const [status, response] of Object.entries(op.responses as Record<string, any>)) {
      t.is(response.headers?.['X-Request-Id']?.$ref, '#/components/headers/X-Request-Id', `${method.toUpperCase()} ${path} ${status} documents X-Request-Id`);
    }
  }
  t.truthy(doc.components.schemas.Error);
});

test('errors follow from the declaration: roles give 401/403, path parameters 404, bodies 400, /v1/ 429', (t) => {
  for (const { method, path, op } of operations()) {
    const name = `${method.toUpperCase()} ${path}`;
    const statuses = Object.keys(op.responses);
    if (op.security.length > 0) for (const s of ['401', '403']) t.true(statuses.includes(s), `${name} ${s}`);
    if (path.includes('{')) t.true(statuses.includes('404'), `${name} 404`);
    if (op.requestBody || op.parameters.length > 0) t.true(statuses.includes('400'), `${name} 400`);
    if (path.startsWith('/v1/')) t.true(statuses.includes('429'), `${name} 429`);
  }
  const responses = (method: string, path: string) => Object.keys(doc.paths[path][method].responses);
  t.true(responses('post', '/v1/bookings/{id}/cancel').includes('409'), 'cancel can be refused in the booking\'s state');
  t.true(responses('post', '/v1/auth/login').includes('401'), 'login answers wrong credentials with 401');
  t.true(responses('patch', '/v1/admin/drivers/{id}').includes('415'), 'a body that is not JSON is 415');
  t.true(responses('get', '/v1/bookings').includes('431'), 'a URL too long is 431');
  t.is(doc.paths['/v1/bookings'].post.responses['201'].headers.Location.required, true, 'a booking created says where it is');
  t.is(doc.paths['/v1/bookings'].post.responses['429'].headers['Retry-After'].$ref, '#/components/headers/Retry-After');
  t.is(doc.paths['/v1/bookings'].post.parameters.find((p: { name: string }) => p.name === 'Idempotency-Key').schema.pattern, '^[A-Za-z0-9.:_-]{1,128}$');
  for (const path of ['/health', '/ready', '/metrics']) t.truthy(doc.paths[path]?.get, `${path} is documented`);
  t.truthy(doc.paths['/metrics'].get.responses['200'].content['text/plain'], '/metrics is text');
  for (const field of ['distanceKm', 'durationMin', 'rating']) t.truthy(doc.components.schemas.Booking.properties[field], `Booking.${field}`);
});

test('public operations say security: [], the rest need the bearer scheme; ids are unique; servers are relative', (t) => {
  t.deepEqual(doc.security, [{ bearer: [] }]);
  t.deepEqual(doc.components.securitySchemes.bearer, { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' });
  t.deepEqual(doc.servers, [{ url: '/' }]);
  const ops = operations();
  for (const path of ['/v1/auth/login', '/v1/auth/register', '/v1/auth/token']) t.deepEqual(doc.paths[path].post.security, [], path);
  t.deepEqual(doc.paths['/v1/bookings'].post.security, [{ bearer: [] }]);
  const ids = ops.map(({ op }) => op.operationId as string);
  t.is(new Set(ids).size, ids.length, 'operationIds are unique');
  t.truthy(doc.info.description);
});

test('an operation must say who may call it: roles, or public', (t) => {
  const api = new Api();
  const handler = async () => undefined;
  t.throws(() => api.add({ method: 'get', path: '/v1/nobody', tag: 't', summary: 's', handler }), { message: /GET \/v1\/nobody: declare either roles .* or public: true, not neither/ });
  t.throws(() => api.add({ method: 'get', path: '/v1/both', tag: 't', summary: 's', roles: ['admin'], public: true, handler }), { message: /not both/ });
  t.notThrows(() => api.add({ method: 'get', path: '/v1/open', tag: 't', summary: 's', public: true, handler }));
});

test('an operation that writes and admins may call must say what it changes, for the audit log', (t) => {
  const handler = async () => undefined;
  const audit = { record: async () => undefined, list: async () => [] };
  t.throws(() => new Api({ audit }).add({ method: 'post', path: '/v1/admin/things', tag: 't', summary: 's', roles: ['rider', 'admin'], handler }),
    { message: /POST \/v1\/admin\/things: admins may call it and it writes: declare audit/ });
  t.throws(() => new Api().add({ method: 'delete', path: '/v1/x', tag: 't', summary: 's', roles: ['admin'], audit: () => ({ summary: 'x' }), handler }),
    { message: /without an audit log/ });
  t.notThrows(() => new Api().add({ method: 'post', path: '/v1/mine', tag: 't', summary: 's', roles: ['rider'], handler }));
  t.notThrows(() => new Api().add({ method: 'get', path: '/v1/admin/read', tag: 't', summary: 's', roles: ['admin'], handler }));
});
