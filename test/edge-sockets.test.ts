// WebSocket limits against one user (or one address) opening many sockets: caps
// per user and per address, an auth deadline and a small first message for bare sockets,
// message and location budgets per user across their sockets (and across nodes sharing
// one Redis), sessions that end with their token.

import test from 'ava';
import { randomBytes, randomUUID } from 'node:crypto';
import { request, type IncomingMessage } from 'node:http';
import { SignJWT } from 'jose';
import { SECRET, startEdge, WsClient, type EdgeNode } from './helpers/edge-client.ts';
import { eventually } from './helpers/node-process.ts';
import { redisUrl } from './helpers/services.ts';

const sign = (sub: string, role: string, expSeconds: number) => new SignJWT({ role })
  .setProtectedHeader({ alg: 'HS256' }).setSubject(sub).setIssuer('dispatch').setIssuedAt()
  .setExpirationTime(Math.floor(Date.now() / 1000) + expSeconds).sign(new TextEncoder().encode(SECRET));

const wsUrl = (edge: EdgeNode, token?: string) => `${edge.url.replace('http', 'ws')}/v1/ws${token ? `?token=${token}` : ''}`;

async function refused(edge: EdgeNode, token?: string): Promise<string> {
  return WsClient.connect(wsUrl(edge, token)).then((s) => { s.close(); return 'opened'; }, (e: Error) => e.message);
}

test('a token in the socket URL is refused with a close reason naming the way, unless WS_QUERY_TOKEN=true', async (t) => {
  const edge = await startEdge();
  t.teardown(() => edge.stop());
  const token = await edge.token('url-token', 'driver');
  const inUrl = await WsClient.connect(wsUrl(edge, token));
  t.true(await eventually(async () => inUrl.closed !== undefined));
  t.deepEqual(inUrl.closed, { code: 4401, reason: 'token in the URL refused: send {"type":"auth","token":"..."} as the first message' });
  t.deepEqual(inUrl.messages, [], 'nothing was served to it');
  // The documented way works on the same node.
  const first = await WsClient.connect(wsUrl(edge));
  t.is((await first.call({ type: 'auth', token }, 'a')).type, 'ack');
  t.is((await first.call({ type: 'offline' }, 'off')).type, 'ack');
  first.close();

  const allowed = await startEdge({ WS_QUERY_TOKEN: 'true' });
  t.teardown(() => allowed.stop());
  const legacy = await WsClient.connect(wsUrl(allowed, await allowed.token('url-token', 'driver')));
  t.is((await legacy.call({ type: 'offline' }, 'off')).type, 'ack', 'signed in by the URL when the operator allows it');
  legacy.close();
});

test('sockets per user are capped, by ?token= and by the auth message alike', async (t) => {
  const edge = await startEdge({ WS_MAX_SOCKETS_PER_USER: '3', WS_QUERY_TOKEN: 'true' });
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
  // Closed sockets give their address's places back: four open again, and the fifth is refused.
  t.true(await eventually(async () => {
    const again = await Promise.all([1, 2, 3, 4].map(() => edge.socket().catch(() => undefined)));
    const all = again.every(Boolean);
    for (const s of again) s?.close();
    return all;
  }, 10_000, 50), 'the address has its four places back');
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
  const refused = sockets.flatMap((s) => s.messages.filter((m) => m.code === 'rate_limited'));
  t.true(refused.every((m) => typeof m.ref === 'string' && /^m\d+$/.test(m.ref)), 'each refusal names the message it refuses');
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
  const ending = await WsClient.signIn(wsUrl(edge), short);
  const extended = await WsClient.signIn(wsUrl(edge), short);
  t.is((await extended.call({ type: 'auth', token: await sign('expiring', 'driver', 3600) }, 'refresh')).type, 'ack');
  t.is((await extended.call({ type: 'auth', token: await sign('someone-else', 'driver', 3600) }, 'swap')).code, 'already_authenticated');
  t.true(await eventually(async () => ending.closed !== undefined));
  t.deepEqual(ending.closed, { code: 4401, reason: 'token expired' });
  t.is(extended.closed, undefined, 'the refreshed session is open after the first token expired');
  t.is((await extended.call({ type: 'online', vehicleType: 'economy' }, 'on')).type, 'ack');
  extended.close();
});

test('sessions share one deadline timer: each is closed at its own, in order, whichever others closed or moved theirs', async (t) => {
  const edge = await startEdge({ WS_AUTH_TIMEOUT_MS: '2000' });
  t.teardown(() => edge.stop());
  // Deadlines set in an order unlike their own: tokens to 12 and 8 s, then ones to 9 s (its
  // client closes it) and 10 s (refreshed to an hour), which leave the middle of the heap,
  // and last a bare socket whose auth is due in 2 s. Whole seconds apart on a loaded machine.
  const late = await WsClient.signIn(wsUrl(edge), await sign('deadline-late', 'driver', 12));
  const soon = await WsClient.signIn(wsUrl(edge), await sign('deadline-soon', 'driver', 8));
  const gone = await WsClient.signIn(wsUrl(edge), await sign('deadline-gone', 'driver', 9));
  const moved = await WsClient.signIn(wsUrl(edge), await sign('deadline-moved', 'driver', 10));
  const bare = await edge.socket();
  gone.close();
  t.is((await moved.call({ type: 'auth', token: await sign('deadline-moved', 'driver', 3600) }, 'refresh')).type, 'ack');
  t.true(await eventually(async () => bare.closed !== undefined, 30_000, 20));
  t.deepEqual(bare.closed, { code: 4401, reason: 'authenticate first' });
  t.is(soon.closed, undefined, 'the auth deadline came first');
  t.true(await eventually(async () => soon.closed !== undefined, 30_000, 20));
  t.deepEqual(soon.closed, { code: 4401, reason: 'token expired' });
  t.is(late.closed, undefined, 'the later token is still good');
  t.true(await eventually(async () => late.closed !== undefined, 30_000, 20));
  t.deepEqual(late.closed, { code: 4401, reason: 'token expired' });
  t.is(moved.closed, undefined, 'the session whose deadline moved is open');
  t.is((await moved.call({ type: 'offline' }, 'off')).type, 'ack');
  moved.close();
});

test('before auth a socket may send only a small auth message: 100 KiB, or any other message, closes it unparsed', async (t) => {
  const edge = await startEdge();
  t.teardown(() => edge.stop());
  const big = await edge.socket();
  big.send({ type: 'auth', token: 'x'.repeat(100 * 1024), ref: 'big' });
  t.true(await eventually(async () => big.closed !== undefined));
  t.deepEqual(big.closed, { code: 1009, reason: 'auth message too large' });
  t.like(big.messages.at(-1), { type: 'error', code: 'unauthenticated' });
  t.regex(big.messages.at(-1).message, /at most 8 KiB/);

  const early = await edge.socket();
  early.send({ type: 'offline', ref: 'early' });
  t.true(await eventually(async () => early.closed !== undefined));
  t.deepEqual(early.closed, { code: 4401, reason: 'authenticate first' });
  t.like(early.messages.at(-1), { type: 'error', code: 'unauthenticated', ref: 'early' });

  // The auth message itself, and what is sent right behind it, still work.
  const proper = await edge.socket();
  proper.send({ type: 'auth', token: await edge.token('first-message', 'driver'), ref: 'a' });
  proper.send({ type: 'online', vehicleType: 'economy', ref: 'on' });
  t.is((await proper.next((m) => m.ref === 'a')).type, 'ack');
  t.is((await proper.next((m) => m.ref === 'on')).type, 'ack', 'a message sent before the auth was answered waits for it');
  t.is(proper.closed, undefined);
  proper.close();
});

test('two nodes sharing one Redis share a user\'s socket cap, message budget and location budget', async (t) => {
  // Keys of their own on the shared Redis, so other suites running at once count apart.
  const env = {
    REDIS_URL: await redisUrl(), KAFKA_TOPIC_PREFIX: `ws${randomUUID().slice(0, 8)}`,
    WS_MAX_SOCKETS_PER_USER: '2', WS_MESSAGES_PER_SECOND: '1', LOCATION_FIXES_PER_MINUTE: '60',
    // The cap refuses a token in the URL at the upgrade (429), which `refused` reads; first-message auth is refused with 4429.
    WS_QUERY_TOKEN: 'true',
  };
  const [a, b] = await Promise.all([startEdge(env), startEdge(env)]);
  t.teardown(async () => { await a.stop(); await b.stop(); });

  // One socket on each node: the user's two places are taken on either node.
  const capped = await a.token('two-nodes-cap', 'driver');
  const [onA, onB] = [await a.socket(capped), await b.socket(capped)];
  t.is(await refused(a, capped), 'upgrade refused: 429', 'a third socket on the first node');
  t.is(await refused(b, capped), 'upgrade refused: 429', 'and on the second');
  const bare = await b.socket();
  t.is((await bare.call({ type: 'auth', token: capped }, 'a')).code, 'too_many_sockets', 'and by the auth message on the second');
  t.true(await eventually(async () => bare.closed?.code === 4429));
  onA.close();
  t.true(await eventually(async () => (await refused(b, capped)) === 'opened'), 'a socket closed on one node frees a place on the other');
  onB.close();

  // A burst of 5 messages a user: 4 on each node are 8, more than one burst.
  const chatty = await a.token('two-nodes-chatty', 'driver');
  const sockets = [await a.socket(chatty), await b.socket(chatty)];
  for (const s of sockets) for (let i = 0; i < 4; i++) s.send({ type: 'offline', ref: `m${i}` });
  // Answers to the 8 messages (a socket's sign-in is answered too, under ref $auth).
  const answers = () => sockets.flatMap((s) => s.messages.filter((m) => (m.type === 'ack' || m.type === 'error') && m.ref !== '$auth'));
  t.true(await eventually(async () => answers().length === 8), JSON.stringify(answers()));
  t.true(answers().some((m) => m.code === 'rate_limited'), 'the budget is the user\'s across nodes');
  for (const s of sockets) s.close();

  // Ten minutes of fixes (600) at once: 400 through one node, then 400 through the other.
  const driver = await a.token('two-nodes-fixes', 'driver');
  const [fixA, fixB] = [await a.socket(driver), await b.socket(driver)];
  const batch = (n: number) => Array.from({ length: n }, (_, i) => ({
    lat: 52.52, lng: 13.405 + i * 1e-5, at: new Date(Date.now() - (n - i) * 1000).toISOString(),
  }));
  t.not((await fixA.call({ type: 'location.batch', fixes: batch(400) }, 'b1')).code, 'rate_limited');
  t.is((await fixB.call({ type: 'location.batch', fixes: batch(400) }, 'b2')).code, 'rate_limited', 'the same budget on the other node');
  fixA.close();
  fixB.close();
});
