// The edge against an attacker who reaches a node directly: forged proxy headers,
// leaky errors, framing, forged quotes. Each case is provoked the way it was found.

import test from 'ava';
import { createHmac } from 'node:crypto';
import { startEdge, type EdgeNode } from './helpers/edge-client.ts';

const P = { lat: 52.52, lng: 13.405 };
const D = { lat: 52.5, lng: 13.42 };

/**
 * `n` wrong logins sent at once, their statuses in ascending order. At once: each login runs
 * scrypt, and one after another on a loaded machine they outlasted the limit's one-minute
 * window, which then let the later ones through.
 */
async function wrongLogins(edge: EdgeNode, n: number, header: (i: number) => Record<string, string>): Promise<number[]> {
  const statuses = await Promise.all(Array.from({ length: n }, async (_, i) => {
    // A different account each time: this is about the per-address limit.
    const body = { email: `victim-${i}@example.com`, password: `guess-${i}-Abcdef` };
    return (await edge.http('POST', '/v1/auth/login', { body, headers: header(i) })).status;
  }));
  return statuses.sort((a, b) => a - b);
}

test('X-Forwarded-For from a client that is not a trusted proxy does not dodge the login limit', async (t) => {
  const edge = await startEdge({ RATE_LIMIT_LOGIN_PER_MIN: '5' });
  t.teardown(() => edge.stop());
  const statuses = await wrongLogins(edge, 8, (i) => ({ 'x-forwarded-for': `203.0.113.${i + 1}` }));
  t.deepEqual(statuses.slice(0, 5), [401, 401, 401, 401, 401]);
  t.true(statuses.slice(5).every((s) => s === 429), `after 5: ${statuses.slice(5).join(',')}`);
});

test('behind TRUST_PROXY=1 each client address has its own login budget', async (t) => {
  const edge = await startEdge({ RATE_LIMIT_LOGIN_PER_MIN: '2', TRUST_PROXY: '1' });
  t.teardown(() => edge.stop());
  const one = await wrongLogins(edge, 3, () => ({ 'x-forwarded-for': '198.51.100.7' }));
  t.deepEqual(one, [401, 401, 429], 'one client, through the proxy, is limited');
  const other = await wrongLogins(edge, 1, () => ({ 'x-forwarded-for': '198.51.100.8' }));
  t.deepEqual(other, [401], 'another client behind the same proxy is not');
  const spoofed = await wrongLogins(edge, 1, () => ({ 'x-forwarded-for': '198.51.100.8, 198.51.100.7' }));
  t.deepEqual(spoofed, [429], 'only the hop the proxy appended counts: a forged left part is ignored');
});

test('every answer carries the security headers; HSTS only over TLS', async (t) => {
  const edge = await startEdge({ TRUST_PROXY: '127.0.0.1' });
  t.teardown(() => edge.stop());
  for (const path of ['/health', '/v1/bookings', '/openapi.json', '/docs', '/ops', '/nowhere']) {
    const res = await edge.http('GET', path);
    t.is(res.headers.get('x-content-type-options'), 'nosniff', path);
    t.is(res.headers.get('referrer-policy'), 'no-referrer', path);
    t.regex(res.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/, path);
    t.notRegex(res.headers.get('content-security-policy') ?? '', /script-src[^;]*'unsafe-inline'/, path);
    t.is(res.headers.get('strict-transport-security'), null, `${path} over plain HTTP`);
  }
  const tls = await edge.http('GET', '/health', { headers: { 'x-forwarded-proto': 'https' } });
  t.regex(tls.headers.get('strict-transport-security') ?? '', /max-age=\d+/, 'through a trusted TLS proxy');
});

test('401 answers do not say which check a token failed', async (t) => {
  const edge = await startEdge();
  t.teardown(() => edge.stop());
  const rider = await edge.token('sec-rider', 'rider');
  const [head, body] = rider.split('.');
  const claims = JSON.parse(Buffer.from(body!, 'base64url').toString());
  const forged = [head, Buffer.from(JSON.stringify({ ...claims, role: 'admin' })).toString('base64url'), 'AAAA'].join('.');
  const expired = [head, Buffer.from(JSON.stringify({ ...claims, exp: 1 })).toString('base64url'), rider.split('.')[2]].join('.');
  const answers = new Set<string>();
  for (const token of [forged, expired, 'a.b.c']) {
    const res = await edge.http('GET', '/v1/bookings', { token });
    t.is(res.status, 401);
    answers.add(JSON.stringify(res.body));
  }
  t.is(answers.size, 1, `one answer for every failure: ${[...answers].join(' | ')}`);
});

test('a quote re-signed with the node id is refused: the quote key is QUOTE_SECRET, derived from nothing', async (t) => {
  const edge = await startEdge({ NODE_ID: 'dispatch-0', QUOTE_SECRET: 'q'.repeat(12) + 'uote-secret-of-enough-length-0123' });
  t.teardown(() => edge.stop());
  const rider = await edge.token('sec-quote', 'rider');
  const quote = await edge.http('POST', '/v1/quotes', { token: rider, body: { pickup: P, dropoff: D, vehicleType: 'economy' } });
  t.is(quote.status, 201);
  const terms = JSON.parse(Buffer.from(quote.body.quoteId.split('.')[0], 'base64url').toString());
  const cheap = Buffer.from(JSON.stringify({ ...terms, price: { ...terms.price, amount: 1 }, expiresAt: Date.now() + 365 * 86_400_000 })).toString('base64url');
  for (const guess of ['dispatch-0', 'edge-test-secret-of-good-length']) {
    const key = createHmac('sha256', 'dispatch-quote').update(guess).digest();
    const forged = `${cheap}.${createHmac('sha256', key).update(cheap).digest('base64url')}`;
    const res = await edge.http('POST', '/v1/bookings', { token: rider, body: { quoteId: forged } });
    t.is(res.status, 400, `re-signed with ${guess}`);
    t.is(res.body.error.code, 'invalid_quote');
  }
});

test('/ready does not show the storage error', async (t) => {
  const edge = await startEdge();
  t.teardown(() => edge.stop());
  // The database refusing as it would when down; its message names a host and a user.
  (edge.node.storage.journal as { ping(): Promise<void> }).ping = () =>
    Promise.reject(new Error('connect ECONNREFUSED 10.0.0.5:5432 (user dispatch_admin)'));
  const res = await edge.http('GET', '/ready');
  t.is(res.status, 503);
  t.deepEqual(res.body, { error: { code: 'not_ready', message: 'storage does not answer' } });
});

test('failed logins on one account from many addresses slow that account down, and its owner still gets in', async (t) => {
  const edge = await startEdge({ TRUST_PROXY: '1', RATE_LIMIT_LOGIN_PER_MIN: '1000' });
  t.teardown(() => edge.stop());
  const email = 'owner@example.com';
  const password = 'violet-harbour-kettle-93';
  t.is((await edge.http('POST', '/v1/auth/register', { body: { email, password, name: 'Owner', role: 'rider' } })).status, 202);
  // Five wrong passwords from five addresses, each waiting out the delay it is given.
  let failed = 0;
  let throttled = 0;
  for (let i = 0; failed < 5; i++) {
    const res = await edge.http('POST', '/v1/auth/login', { body: { email, password: `wrong-${i}-Xyzzy` }, headers: { 'x-forwarded-for': `192.0.2.${i + 10}` } });
    if (res.status === 401) failed++;
    else if (res.status === 429 && res.body.error.code === 'login_throttled') {
      throttled++;
      await new Promise((r) => setTimeout(r, Number(res.headers.get('retry-after')) * 1000));
    } else t.fail(`unexpected ${res.status}`);
  }
  t.true(throttled > 0 || failed === 5, 'five failures recorded');
  const held = await edge.http('POST', '/v1/auth/login', { body: { email, password }, headers: { 'x-forwarded-for': '192.0.2.200' } });
  t.is(held.status, 429);
  t.is(held.body.error.code, 'login_throttled');
  const retryAfter = Number(held.headers.get('retry-after'));
  t.true(retryAfter >= 1 && retryAfter <= 60, `a delay of at most a minute, not a lockout (${retryAfter} s)`);
  await new Promise((r) => setTimeout(r, retryAfter * 1000 + 100));
  const owner = await edge.http('POST', '/v1/auth/login', { body: { email, password }, headers: { 'x-forwarded-for': '192.0.2.201' } });
  t.is(owner.status, 200, 'after the delay the right password works');
});
