// Every answer the node writes has the contract's shape, including those no route
// gives: a method a path does not take, a body that is not JSON, a URL too long for
// the HTTP parser, a malformed Authorization header. The booking limit counts
// bookings created. Real HTTP against a node in this process.

import test from 'ava';
import { request } from 'node:http';
import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { SECRET, startEdge, type EdgeNode } from './helpers/edge-client.ts';

const P = { lat: 48.85, lng: 2.35 };
const D = { lat: 48.87, lng: 2.36 };
const BOOKINGS_PER_MIN = 3;

let edge: EdgeNode;
let rider: string;
let admin: string;
test.before(async () => {
  edge = await startEdge({ RATE_LIMIT_BOOKINGS_PER_MIN: String(BOOKINGS_PER_MIN) });
  rider = await edge.token(`ans-rider-${randomUUID().slice(0, 6)}`, 'rider');
  admin = await edge.token('ans-admin', 'admin');
});
test.after.always(async () => { await edge?.stop(); });

/** The contract's error shape with a request id, whatever produced the answer. */
function assertError(t: any, res: { status: number; body: any; headers: Headers }, status: number, code: string, what: string) {
  t.is(res.status, status, `${what}: ${JSON.stringify(res.body)}`);
  t.is(res.body?.error?.code, code, what);
  t.is(typeof res.body?.error?.message, 'string', what);
  t.regex(res.headers.get('x-request-id') ?? '', /^[\w.-]{1,128}$/, `${what}: X-Request-Id`);
  t.regex(res.headers.get('content-type') ?? '', /^application\/json/, `${what}: JSON`);
}

test('a method the path does not take is 405 method_not_allowed with Allow; an unknown method 501', async (t) => {
  const res = await edge.http('DELETE', '/v1/quotes', { token: rider });
  assertError(t, res, 405, 'method_not_allowed', 'DELETE /v1/quotes');
  t.regex(res.headers.get('allow') ?? '', /POST/);
  assertError(t, await edge.http('PUT', '/health'), 405, 'method_not_allowed', 'PUT /health');
  assertError(t, await edge.http('PROPFIND', '/v1/quotes', { token: rider }), 501, 'not_implemented', 'PROPFIND /v1/quotes');
  assertError(t, await edge.http('GET', '/v1/nowhere'), 404, 'not_found', 'GET /v1/nowhere');
  assertError(t, await edge.http('GET', '/docs/assets/nothing.js'), 404, 'not_found', 'an asset that is not there');
});

test('a body that is not sent as JSON is 415, and changes nothing', async (t) => {
  const id = `ct-${randomUUID().slice(0, 8)}`;
  t.is((await edge.http('POST', '/v1/admin/drivers', { token: admin, body: { id, name: 'Before' } })).status, 201);
  const json = JSON.stringify({ name: 'After' });
  for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/xml', '']) {
    const headers: Record<string, string> = type ? { 'content-type': type } : {};
    const res = await fetch(`${edge.url}/v1/admin/drivers/${id}`, {
      method: 'PATCH', body: new Blob([json], type ? { type } : {}), headers: { ...headers, authorization: `Bearer ${admin}` },
    });
    const body = await res.json();
    assertError(t, { status: res.status, body, headers: res.headers }, 415, 'unsupported_media_type', `PATCH as ${type || 'no type'}`);
    const quote = await edge.http('POST', '/v1/quotes', {
      token: rider, raw: JSON.stringify({ pickup: P, dropoff: D, vehicleType: 'economy' }), headers: { 'content-type': type || 'application/octet-stream' },
    });
    assertError(t, quote, 415, 'unsupported_media_type', `POST /v1/quotes as ${type || 'octet-stream'}`);
  }
  t.is((await edge.http('GET', `/v1/admin/drivers/${id}`, { token: admin })).body.name, 'Before', 'nothing changed');
  const ok = await edge.http('PATCH', `/v1/admin/drivers/${id}`, { token: admin, raw: json, headers: { 'content-type': 'application/json; charset=utf-8' } });
  t.is(ok.status, 200, 'application/json with a charset is JSON');
  t.is((await edge.http('POST', `/v1/bookings/bk_${randomUUID()}/cancel`, { token: rider })).status, 404, 'no body at all is no body, not a 415');
});

/** A raw request, so that a URL of any length reaches the node and the answer (or a reset) is what the client sees. */
function rawGet(url: string, path: string): Promise<{ status: number; body: any; headers: Headers }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { method: 'GET' }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let body: unknown = text;
        try { body = JSON.parse(text); } catch { /* not JSON */ }
        const headers = new Headers();
        for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') headers.set(k, v);
        resolve({ status: res.statusCode ?? 0, body, headers });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

test('a URL too long for the HTTP parser gets the JSON error body and X-Request-Id, not a bare 431 or a reset', async (t) => {
  for (const kb of [17, 64, 1024]) {
    const res = await rawGet(edge.url, `/v1/bookings?riderId=${'x'.repeat(kb * 1024)}`);
    assertError(t, res, 431, 'headers_too_large', `a ${kb} KB URL`);
  }
  t.is((await edge.http('GET', '/health')).status, 200, 'the node serves on');
});

test('the Authorization header counts only where a token is needed: ignored on public operations, 401 on the others', async (t) => {
  const expired = await new SignJWT({ role: 'rider' }).setProtectedHeader({ alg: 'HS256' }).setSubject('late').setIssuer('dispatch')
    .setIssuedAt().setExpirationTime(Math.floor(Date.now() / 1000) - 60).sign(new TextEncoder().encode(SECRET));
  for (const authorization of ['Basic Zm9vOmJhcg==', 'Bearer', 'Bearer a b c', `Bearer ${expired}`]) {
    const headers = { authorization };
    for (const path of ['/health', '/ready', '/openapi.json', '/asyncapi.json', '/docs', '/ops']) {
      t.is((await edge.http('GET', path, { headers })).status, 200, `GET ${path} with "${authorization.slice(0, 12)}"`);
    }
    const token = await edge.http('POST', '/v1/auth/token', { headers, body: { sub: 'someone', role: 'rider' } });
    t.is(token.status, 200, `a public operation ignores "${authorization.slice(0, 12)}"`);
    const email = `nobody-${randomUUID().slice(0, 8)}@example.org`;
    const login = await edge.http('POST', '/v1/auth/login', { headers, body: { email, password: 'not-the-one-9' } });
    t.is(login.body.error.code, 'invalid_credentials', 'login answers for the credentials, not for a stale token');
    assertError(t, await edge.http('GET', '/v1/bookings', { headers }), 401, 'unauthenticated', `GET /v1/bookings with "${authorization.slice(0, 12)}"`);
    assertError(t, await edge.http('GET', '/metrics', { headers }), 401, 'unauthenticated', `GET /metrics with "${authorization.slice(0, 12)}"`);
  }
});

test('the booking limit counts bookings created: refused requests cost nothing', async (t) => {
  const booker = await edge.token(`limit-${randomUUID().slice(0, 6)}`, 'rider');
  const later = new Date(Date.now() + 3_600_000).toISOString();
  for (let i = 0; i < BOOKINGS_PER_MIN * 3; i++) {
    const refused = await edge.http('POST', '/v1/bookings', { token: booker, body: { pickup: P, dropoff: D, vehicleType: 'hovercraft' } });
    t.is(refused.status, 400, `refused request ${i + 1}`);
  }
  const body = { pickup: P, dropoff: D, vehicleType: 'economy', scheduledAt: later };
  for (let i = 0; i < BOOKINGS_PER_MIN; i++) {
    const made = await edge.http('POST', '/v1/bookings', { token: booker, body });
    t.is(made.status, 201, `booking ${i + 1} of ${BOOKINGS_PER_MIN}: ${JSON.stringify(made.body)}`);
  }
  const over = await edge.http('POST', '/v1/bookings', { token: booker, body });
  assertError(t, over, 429, 'rate_limited', `booking ${BOOKINGS_PER_MIN + 1}`);
  t.true(Number(over.headers.get('retry-after')) >= 1);
  // A retry of a booking already made (same Idempotency-Key) is not another booking: it is still answered.
  const other = await edge.token(`limit-key-${randomUUID().slice(0, 6)}`, 'rider');
  const keyed = { ...body };
  const first = await edge.http('POST', '/v1/bookings', { token: other, body: keyed, headers: { 'idempotency-key': 'same' } });
  for (let i = 0; i < BOOKINGS_PER_MIN + 1; i++) {
    const again = await edge.http('POST', '/v1/bookings', { token: other, body: keyed, headers: { 'idempotency-key': 'same' } });
    t.is(again.status, 201, `retry ${i + 1}`);
    t.is(again.body.id, first.body.id);
  }
});
