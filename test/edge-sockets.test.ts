// WebSocket limits against one user (or one address) opening many sockets: caps
// per user and per address, an auth deadline for bare sockets, message and
// location budgets per user across their sockets, sessions that end with their token.

import test from 'ava';
import { randomBytes } from 'node:crypto';
import { request, type IncomingMessage } from 'node:http';
import { SignJWT } from 'jose';
import { SECRET, startEdge, WsClient, type EdgeNode } from './helpers/edge-client.ts';
import { eventually } from './helpers/node-process.ts';

const sign = (sub: string, role: string, expSeconds: number) => new SignJWT({ role })
  .setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setIssuer('dispatch').setIssuedAt()
  .setExpirationTime(Math.floor(Date.now() / 1000) + expSeconds).sign(new TextEncoder().encode(SECRET));

const wsUrl = (edge: EdgeNode, token?: string) => `${edge.url.replace('http', 'ws')}/v1/ws${token ? `?token=${token}` : ''}`;

async function refused(edge: EdgeNode, token?: string): Promise<string> {
  return WsClient.connect(wsUrl(edge, token)).then((s) => { s.close(); return 'opened'; }, (e: Error) => e.message);
}

test('sockets per user are capped, by ?token= and by the auth message alike', async (t) => {
  const edge = await startEdge({ WS_MAX_SOCKETS_PER_USER: '3' });
  t.teardown(() => edge.stop());
  const token = await edge.token('many-sockets', 'driver');
  const open = await Promise.all([1, 2, 3].map(() => edge.socket(token)));
  t.is(await refused(edge, token), 'upgrade refused: 429');
  const bare = await edge.socket();
  const answer = await bare.call({ type: 'auth', token }, 'a');
  t.is(answer.code, 'too_many_sockets');
  t.true(await eventually(async () => bare.closed?.code === 4429));
  open[0]!.close();
  t.true(await eventually(async () => (await refused(edge, token)) === 'opened'), 'a closed socket frees its place');
  for (const s of open) s.close();
});

test('sockets per address are capped, and unauthenticated ones count', async (t) => {
  const edge = await startEdge({ WS_MAX_SOCKETS_PER_IP: '4' });
  t.teardown(() => edge.stop());
  const bare = await Promise.all([1, 2, 3, 4].map(() => edge.socket()));
  t.is(await refused(edge), 'upgrade refused: 429');
  t.is(await refused(edge, await edge.token('late', 'rider')), 'upgrade refused: 429', 'a valid token does not pass the address cap');
  // The refusal is an answer like any other: the JSON error body and an X-Request-Id.
  const answer = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = request(`${edge.url}/v1/ws`, { headers: {
      Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': randomBytes(16).toString('base64'),
    } });
    req.on('response', resolve);
    req.on('upgrade', () => reject(new Error('upgraded past the cap')));
    req.on('error', reject);
    req.end();
  });
  t.is(answer.statusCode, 429);
  t.truthy(answer.headers['x-request-id']);
  const chunks: Buffer[] = [];
  for await (const chunk of answer) chunks.push(chunk as Buffer);
  t.is(JSON.parse(Buffer.concat(chunks).toString()).error.code, 'too_many_sockets');
  for (const s of bare) s.close();
});

test('a socket that does not authenticate in time is closed with 4401', async (t) => {
  const edge = await startEdge({ WS_AUTH_TIMEOUT_MS: '300' });
  t.teardown(() => edge.stop());
  const bare = await edge.socket();
  t.true(await eventually(async () => bare.closed !== undefined));
  t.deepEqual(bare.closed, { code: 4401, reason: 'authenticate first' });
});

test('the message budget is per user: more sockets do not buy more messages', async (t) => {
  const edge = await startEdge({ WS_MESSAGES_PER_SECOND: '5' });
  t.teardown(() => edge.stop());
  const token = await edge.token('chatty', 'driver');
  const sockets = await Promise.all([1, 2, 3, 4].map(() => edge.socket(token)));
  // Each socket stays under a budget of its own (25), together they are far over.
  for (const s of sockets) for (let i = 0; i < 20; i++) s.send({ type: 'offline', ref: `m${i}` });
  t.true(await eventually(async () => sockets.some((s) => s.messages.some((m) => m.code === 'rate_limited'))));
  for (const s of sockets) s.close();
});

test('location fixes are metered per driver: a batch after a dead zone passes, a flood does not', async (t) => {
  const edge = await startEdge({ LOCATION_FIXES_PER_MINUTE: '60' });
  t.teardown(() => edge.stop());
  const socket = await edge.socket(await edge.token('fixes', 'driver'));
  await socket.call({ type: 'online', vehicleType: 'economy' }, 'on');
  const batch = (n: number) => Array.from({ length: n }, (_, i) => ({ lat: 52.52, lng: 13.405 + i * 1e-5, at: new Date(Date.now() - (n - i) * 1000).toISOString() }));
  t.is((await socket.call({ type: 'location.batch', fixes: batch(500) }, 'b1')).type, 'ack', 'ten minutes of fixes at once');
  const flood = await socket.call({ type: 'location.batch', fixes: batch(500) }, 'b2');
  t.is(flood.code, 'rate_limited');
  socket.close();
});

test('a session ends with its token, with close code 4401, unless a fresh auth message extends it', async (t) => {
  const edge = await startEdge();
  t.teardown(() => edge.stop());
  // Long enough for both sockets to connect and one to refresh on a loaded machine (3 s was
  // not: the token expired before the refresh arrived), short enough to wait out.
  const short = await sign('expiring', 'driver', 15);
  const ending = await WsClient.connect(wsUrl(edge, short));
  const extended = await WsClient.connect(wsUrl(edge, short));
  t.is((await extended.call({ type: 'auth', token: await sign('expiring', 'driver', 3600) }, 'refresh')).type, 'ack');
  t.is((await extended.call({ type: 'auth', token: await sign('someone-else', 'driver', 3600) }, 'swap')).code, 'already_authenticated');
  t.true(await eventually(async () => ending.closed !== undefined));
  t.deepEqual(ending.closed, { code: 4401, reason: 'token expired' });
  t.is(extended.closed, undefined, 'the refreshed session is open after the first token expired');
  t.is((await extended.call({ type: 'online', vehicleType: 'economy' }, 'on')).type, 'ack');
  extended.close();
});
