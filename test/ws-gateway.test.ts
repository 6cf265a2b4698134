// The socket gateway (http/ws.ts) on its own, over a bare HTTP server: what a node's
// heartbeat is too slow to show in a suite (a socket that stops answering pings is
// terminated; one that answers stays), and pushes reaching every open session of a user as
// sessions open and close (a user's one session is held alone, two or more in a Set), and a
// client's pings answered by the gateway, unless the client does not read its answers, and
// a socket's place among its user's held for as long as it is open, and only so long.

import test from 'ava';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { WebSocket } from 'ws';
import { InProcessRateLimiter } from '../adapters/memory/rate-limiter.ts';
import type { Authenticator } from '../http/auth.ts';
import type { Edge } from '../http/edge.ts';
import { placeHolderId, WsGateway } from '../http/ws.ts';
import { createLogger } from '../runtime/logger.ts';
import { eventually } from './helpers/node-process.ts';

async function gateway(heartbeatMs: number, maxBufferedBytes?: number, maxSocketsPerUser = 10) {
  let push: (userId: string, message: unknown) => void = () => undefined;
  const ws = new WsGateway({
    edge: { limiter: new InProcessRateLimiter() } as unknown as Edge,
    // The token is the user's name.
    auth: { verify: async (token: string) => ({ sub: token, role: 'driver' }) } as unknown as Authenticator,
    notifier: { publish: async () => undefined, subscribe: (listener) => { push = listener; return () => undefined; } },
    logger: createLogger({ level: 'silent', nodeId: 'ws-test' as never }),
    heartbeatMs,
    maxBufferedBytes,
    limits: { maxSocketsPerUser, maxSocketsPerIp: 100, authTimeoutMs: 10_000, messagesPerSecond: 100, fixesPerMinute: 600 },
    addressOf: (req) => ({ ip: req.socket.remoteAddress ?? '' }),
  });
  const server = createServer();
  ws.attach(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `ws://127.0.0.1:${(server.address() as AddressInfo).port}/v1/ws`;
  const stop = () => { ws.close(); server.closeAllConnections(); server.close(); };
  return { ws, url, stop, server, push: (userId: string, message: unknown) => push(userId, message) };
}

interface Client { readonly socket: WebSocket; readonly received: { type: string; n?: number; code?: string }[]; closed: boolean }

async function signIn(url: string, user: string, options: { autoPong?: boolean } = {}): Promise<Client> {
  const client = await open(url, user, options);
  if (!await eventually(async () => client.received.some((m) => m.type === 'ack'), 10_000, 5)) throw new Error('no ack for auth');
  return client;
}

async function open(url: string, user: string, options: { autoPong?: boolean } = {}): Promise<Client> {
  const socket = new WebSocket(url, options);
  const client: Client = { socket, received: [], closed: false };
  socket.on('message', (data) => client.received.push(JSON.parse(String(data))));
  socket.on('close', () => { client.closed = true; });
  await new Promise((resolve, reject) => { socket.once('open', resolve); socket.once('error', reject); });
  socket.send(JSON.stringify({ type: 'auth', token: user, ref: 'a' }));
  return client;
}

test('a socket that stops answering pings is terminated by the heartbeat; one that answers stays', async (t) => {
  const g = await gateway(100);
  t.teardown(g.stop);
  const answering = await signIn(g.url, 'answers');
  const silent = await signIn(g.url, 'silent', { autoPong: false });
  t.is(g.ws.open, 2);
  t.true(await eventually(async () => silent.closed, 10_000, 10), 'terminated after a heartbeat without its pong');
  await new Promise((r) => setTimeout(r, 500)); // five more heartbeats
  t.false(answering.closed, 'its pongs keep it open');
  t.is(g.ws.open, 1);
  answering.socket.close();
  t.true(await eventually(async () => g.ws.open === 0, 10_000, 10));
});

test('a session keeps its address, not the socket\'s cached peer address', async (t) => {
  const g = await gateway(60_000);
  const sockets: import('node:net').Socket[] = [];
  g.server.on('connection', (s) => sockets.push(s));
  const a = await signIn(g.url, 'peer-user');
  t.is(sockets.length, 1);
  t.is((sockets[0] as unknown as { _peername?: unknown })._peername, undefined, 'no cached peer address');
  t.is(sockets[0]!.remoteAddress, '127.0.0.1', 'read again from the handle when asked');
  a.socket.close();
  g.stop();
});

test('place holders are short and do not repeat', (t) => {
  const ids = new Set(Array.from({ length: 10_000 }, placeHolderId));
  t.is(ids.size, 10_000);
  for (const id of ids) t.regex(id, /^[A-Za-z0-9_-]{16}$/);
});

test('a push reaches every open session of its user, as sessions open and close', async (t) => {
  const g = await gateway(60_000);
  t.teardown(g.stop);
  const pushes = (c: Client) => c.received.filter((m) => m.type === 'test').map((m) => m.n);
  const first = await signIn(g.url, 'u');
  const other = await signIn(g.url, 'someone-else');
  g.push('u', { type: 'test', n: 1 });
  const second = await signIn(g.url, 'u');
  const third = await signIn(g.url, 'u');
  g.push('u', { type: 'test', n: 2 });
  second.socket.close();
  third.socket.close();
  t.true(await eventually(async () => g.ws.open === 2, 10_000, 5));
  g.push('u', { type: 'test', n: 3 }); // back to one session
  first.socket.close();
  t.true(await eventually(async () => g.ws.open === 1, 10_000, 5));
  g.push('u', { type: 'test', n: 4 }); // none: nothing to send to
  const fourth = await signIn(g.url, 'u');
  g.push('u', { type: 'test', n: 5 });
  t.true(await eventually(async () => pushes(fourth).length === 1, 10_000, 5));
  t.deepEqual(pushes(first), [1, 2, 3]);
  t.deepEqual(pushes(second), [2]);
  t.deepEqual(pushes(third), [2]);
  t.deepEqual(pushes(fourth), [5]);
  t.deepEqual(pushes(other), []);
  fourth.socket.close();
  other.socket.close();
});

test('a client\'s ping is answered with its data; a client that pings without reading is cut off', async (t) => {
  const g = await gateway(60_000, 1024);
  t.teardown(g.stop);
  const client = await signIn(g.url, 'pinger');
  const pong = new Promise<string>((resolve) => client.socket.once('pong', (data) => resolve(data.toString())));
  client.socket.ping('are you there');
  t.is(await pong, 'are you there');

  const flooder = await signIn(g.url, 'flooder');
  (flooder.socket as unknown as { _socket: { pause(): void } })._socket.pause(); // reads nothing more
  const payload = 'x'.repeat(125);
  for (let i = 0; i < 200_000 && g.ws.open === 2; i++) {
    flooder.socket.ping(payload);
    if (i % 500 === 0) await new Promise((r) => setImmediate(r));
  }
  t.true(await eventually(async () => g.ws.open === 1, 5_000, 10), 'the flooder\'s session ended at once');
  t.false(client.closed, 'the other one is open');
  client.socket.close();
});

test('an open socket keeps its place among its user\'s past many leases; a closed one gives it back', async (t) => {
  // Places are leased for three heartbeats (300 ms here) and renewed at each.
  const g = await gateway(100, undefined, 1);
  t.teardown(g.stop);
  const first = await signIn(g.url, 'one-socket');
  await new Promise((r) => setTimeout(r, 1_000));
  const second = await open(g.url, 'one-socket');
  t.true(await eventually(async () => second.received.some((m) => m.code === 'too_many_sockets'), 10_000, 5), 'the place is still held');
  first.socket.close();
  t.true(await eventually(async () => g.ws.open === 0, 10_000, 5));
  const third = await signIn(g.url, 'one-socket');
  t.false(third.closed, 'the place was given back');
  third.socket.close();
});
