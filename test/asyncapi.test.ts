// The WebSocket protocol's AsyncAPI document against the protocol itself: every
// message of the zod unions is in it, and the frames of real sessions (drivers,
// a rider and an admin over real sockets) validate against its payload schemas.
// Also: /docs/ws is served with the renderer from node_modules, no inline script.

import test from 'ava';
import { randomUUID } from 'node:crypto';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { ClientMessage, ServerMessage, messageTypes } from '../http/ws-messages.ts';
import { startEdge, type EdgeNode, type WsClient } from './helpers/edge-client.ts';

const PICKUP = { lat: 48.8566, lng: 2.3522 };
const DROPOFF = { lat: 48.8666, lng: 2.3622 };

type Json = Record<string, any>;
let edge: EdgeNode;
let doc: Json;

test.before(async () => {
  edge = await startEdge();
  const res = await fetch(`${edge.url}/asyncapi.json`);
  if (res.status !== 200) throw new Error(`/asyncapi.json: ${res.status}`);
  doc = await res.json() as Json;
});
test.after.always(async () => { await edge?.stop(); });

/** The operations of one action (send: the server sends; receive: the server receives), by message name. */
function messagesOf(action: 'send' | 'receive'): Map<string, Json> {
  const found = new Map<string, Json>();
  for (const op of Object.values(doc.operations as Record<string, Json>)) {
    if (op.action !== action) continue;
    if (op.channel.$ref !== '#/channels/ws') throw new Error(`operation on ${op.channel.$ref}`);
    for (const r of op.messages as { $ref: string }[]) {
      const key = r.$ref.replace('#/channels/ws/messages/', '');
      const message = doc.components.messages[doc.channels.ws.messages[key].$ref.replace('#/components/messages/', '')];
      found.set(message.name, message);
    }
  }
  return found;
}

function validators() {
  const ajv = new Ajv2020({ strict: false, validateFormats: false, allErrors: true });
  ajv.addSchema({ $id: 'doc', components: doc.components });
  const compile = (message: Json) => ajv.compile(JSON.parse(JSON.stringify(message.payload).replaceAll('"#/components', '"doc#/components')));
  const byType = (action: 'send' | 'receive') => new Map([...messagesOf(action)].map(([type, m]) => [type, compile(m)]));
  return { ajv, sent: byType('send'), received: byType('receive') };
}

/** Keys present in a value but described nowhere in its schema (the schemas are open, so ajv lets them pass). */
function undocumented(value: unknown, schema: Json | undefined, path = '$'): string[] {
  if (!schema || value === null || typeof value !== 'object') return [];
  if (schema.$ref) return undocumented(value, doc.components.schemas[String(schema.$ref).replace('#/components/schemas/', '')], path);
  for (const alt of [...(schema.anyOf ?? []), ...(schema.oneOf ?? [])] as Json[]) {
    if (alt.type === 'object' || alt.$ref || alt.properties) return undocumented(value, alt, path);
  }
  if (Array.isArray(value)) return value.flatMap((v, i) => undocumented(v, schema.items, `${path}[${i}]`));
  if (!schema.properties) return [];
  return Object.entries(value).flatMap(([k, v]) => (k in schema.properties ? undocumented(v, schema.properties[k], `${path}.${k}`) : [`${path}.${k}`]));
}

test('the document is AsyncAPI 3.0 with the /v1/ws channel, this node as server, and both auth schemes', (t) => {
  t.is(doc.asyncapi, '3.0.0');
  t.is(doc.channels.ws.address, '/v1/ws');
  const server = Object.values(doc.servers as Record<string, Json>)[0]!;
  t.is(server.host, new URL(edge.url).host, 'the server is the host the document was asked from');
  t.is(server.protocol, 'ws');
  const schemes = Object.values(doc.components.securitySchemes as Record<string, Json>);
  t.true(schemes.some((s) => s.type === 'http' && s.scheme === 'bearer'), 'first-message bearer token');
  t.true(schemes.some((s) => s.type === 'httpApiKey' && s.in === 'query' && s.name === 'token'), '?token=');
  t.is(server.security.length, 2);
});

test('every message of the zod unions is in the document, with a payload schema and an example that fits it', (t) => {
  const { sent, received } = validators();
  const clientTypes = messageTypes(ClientMessage);
  const serverTypes = messageTypes(ServerMessage);
  t.true(clientTypes.length >= 12 && serverTypes.length >= 8, `${clientTypes.length} client and ${serverTypes.length} server messages`);
  t.deepEqual([...received.keys()].sort(), [...clientTypes].sort(), 'one receive operation per client message, nothing else');
  t.deepEqual([...sent.keys()].sort(), [...serverTypes].sort(), 'one send operation per server message, nothing else');
  for (const [action, types] of [['receive', clientTypes], ['send', serverTypes]] as const) {
    const messages = messagesOf(action);
    for (const type of types) {
      const message = messages.get(type)!;
      t.truthy(message.payload?.$ref, `${type} has a payload schema`);
      t.true(typeof message.description === 'string' && message.description.length > 20, `${type} is described`);
      t.true(message.examples?.length > 0, `${type} has an example`);
      const validate = (action === 'send' ? sent : received).get(type)!;
      for (const ex of message.examples) t.true(validate(ex.payload), `${type} example: ${JSON.stringify(validate.errors)}`);
    }
  }
  // The checks bite: a missing field fails, an undocumented one is found.
  t.false(sent.get('driver.location')!({ type: 'driver.location', bookingId: 'b', lat: 1, lng: 2, heading: null }));
  t.false(sent.get('booking.updated')!({ type: 'booking.updated', booking: { id: 'b' } }));
  t.deepEqual(undocumented({ type: 'ack', ref: null, extra: 1 }, messagesOf('send').get('ack')!.payload), ['$.extra']);
  const example = messagesOf('send').get('booking.updated')!.examples[0].payload;
  t.deepEqual(undocumented({ ...example, booking: { ...example.booking, secret: 1 } }, messagesOf('send').get('booking.updated')!.payload), ['$.booking.secret']);
  // The client payloads are closed, as the gateway is: an extra field is refused by both.
  t.false(received.get('online')!({ type: 'online', vehicleType: 'economy', driverId: 'someone-else' }));
  t.false(ClientMessage.safeParse({ type: 'online', vehicleType: 'economy', driverId: 'someone-else' }).success);
});

test.serial('frames of real sessions validate against the document', async (t) => {
  const { sent, received } = validators();
  const run = randomUUID().slice(0, 6);
  const driverId = `aa-driver-${run}`;
  const outgoing: { from: string; message: Json }[] = [];
  const sockets: WsClient[] = [];
  const open = async (who: string, token?: string) => {
    const s = await edge.socket(token);
    sockets.push(s);
    const send = s.send.bind(s);
    s.send = (m: unknown) => { if (typeof m !== 'string') outgoing.push({ from: who, message: m as Json }); send(m); };
    return s;
  };
  const ok = async (s: WsClient, message: Json, ref: string) => {
    const answer = await s.call(message, ref);
    if (answer.type !== 'ack') throw new Error(`${JSON.stringify(message)}: ${JSON.stringify(answer)}`);
    return answer;
  };

  try {
    // The driver authenticates by first message (the recommended way).
    const driver = await open('driver');
    await ok(driver, { type: 'auth', token: await edge.token(driverId, 'driver') }, 'auth');
    await ok(driver, { type: 'online', vehicleType: 'economy' }, 'on');
    await ok(driver, { type: 'location.batch', fixes: [{ lat: PICKUP.lat + 0.001, lng: PICKUP.lng, at: new Date(Date.now() - 1000).toISOString() }] }, 'batch');
    await ok(driver, { type: 'location', lat: PICKUP.lat + 0.002, lng: PICKUP.lng, heading: 90, speed: 7, at: new Date().toISOString() }, 'fix');
    // Bad messages: each answered with an error, the socket stays open.
    for (const [frame, code] of [
      ['not json', 'malformed_json'],
      [{ type: 'teleport', ref: 'invalid-1' }, 'unknown_type'],
      [{ type: 'online', vehicleType: 'Space Ship', ref: 'invalid-2' }, 'invalid_message'],
      [{ type: 'offer.accept', bookingId: 'no-such-booking', ref: 'refused-1' }, 'no_such_offer'],
      [{ type: 'ops.subscribe', ref: 'refused-2' }, 'forbidden'],
    ] as const) {
      const from = driver.messages.length;
      driver.send(frame);
      const answer = await driver.next((m) => m.type === 'error', 10_000, from);
      t.is(answer.code, code, JSON.stringify(answer));
    }

    const riderToken = await edge.token(`aa-rider-${run}`, 'rider');
    const rider = await open('rider', riderToken);
    const book = async () => {
      const res = await edge.http('POST', '/v1/bookings', { token: riderToken, body: { pickup: PICKUP, dropoff: DROPOFF, vehicleType: 'economy' } });
      if (res.status !== 201) throw new Error(JSON.stringify(res.body));
      const id = res.body.id as string;
      await ok(rider, { type: 'subscribe', bookingId: id }, `sub-${id}`);
      await driver.next((m) => m.type === 'offer' && m.bookingId === id, 20_000);
      return id;
    };

    // A whole ride.
    const ride = await book();
    await ok(driver, { type: 'offer.accept', bookingId: ride }, 'accept');
    await driver.next((m) => m.type === 'booking.updated' && m.booking.id === ride);
    await rider.next((m) => m.type === 'booking.updated' && m.booking.status === 'accepted');
    await ok(driver, { type: 'location', lat: PICKUP.lat + 0.0005, lng: PICKUP.lng, at: new Date(Date.now() + 10).toISOString() }, 'move');
    await rider.next((m) => m.type === 'driver.location' && m.bookingId === ride);
    for (const step of ['trip.arrived', 'trip.start', 'trip.complete']) await ok(driver, { type: step, bookingId: ride }, step);
    await rider.next((m) => m.type === 'booking.updated' && m.booking.id === ride && m.booking.status === 'completed');
    t.is((await edge.http('POST', `/v1/bookings/${ride}/rating`, { token: riderToken, body: { stars: 5, comment: 'smooth' } })).status, 200);

    // An offer declined, one withdrawn by a cancellation (offer.expired), an accepted booking cancelled (booking.cancelled).
    const declined = await book();
    await ok(driver, { type: 'offer.decline', bookingId: declined }, 'decline');
    const withdrawn = await book();
    t.is((await edge.http('POST', `/v1/bookings/${withdrawn}/cancel`, { token: riderToken, body: {} })).status, 200);
    await driver.next((m) => m.type === 'offer.expired' && m.bookingId === withdrawn);
    const cancelled = await book();
    await ok(driver, { type: 'offer.accept', bookingId: cancelled }, 'accept2');
    t.is((await edge.http('POST', `/v1/bookings/${cancelled}/cancel`, { token: riderToken, body: { reason: 'plans changed' } })).status, 200);
    await driver.next((m) => m.type === 'booking.cancelled' && m.bookingId === cancelled);

    // The operations feed.
    const adminToken = await edge.token(`aa-admin-${run}`, 'admin');
    const admin = await open('admin', adminToken);
    await ok(admin, { type: 'ops.subscribe' }, 'ops');
    await admin.next((m) => m.type === 'ops.snapshot');

    // An admin deactivates the driver while assigned: the booking is released.
    await ok(driver, { type: 'offline' }, 'off');
    await ok(driver, { type: 'online', vehicleType: 'economy' }, 'on-again');
    const released = await book();
    await ok(driver, { type: 'offer.accept', bookingId: released }, 'accept3');
    const patched = await edge.http('PATCH', `/v1/admin/drivers/${driverId}`, { token: adminToken, body: { active: false } });
    t.is(patched.status, 200, JSON.stringify(patched.body));
    await driver.next((m) => m.type === 'booking.released' && m.bookingId === released);
    await driver.next((m) => m.type === 'driver.deactivated');

    // A self-registered driver is approved by an admin.
    const email = `aa-${run}@example.com`;
    const password = `Quartz-${randomUUID()}-Lantern`;
    const registered = await edge.http('POST', '/v1/auth/register', { body: { email, password, name: 'Ada Driver', role: 'driver' } });
    t.true(registered.status === 201 || registered.status === 202, JSON.stringify(registered.body));
    const login = await edge.http('POST', '/v1/auth/login', { body: { email, password } });
    t.is(login.status, 200, JSON.stringify(login.body));
    const newcomerId = JSON.parse(Buffer.from(String(login.body.token).split('.')[1]!, 'base64url').toString()).sub as string;
    const newcomer = await open('newcomer');
    await ok(newcomer, { type: 'auth', token: login.body.token }, 'auth-new');
    t.is((await edge.http('POST', `/v1/admin/drivers/${newcomerId}/approve`, { token: adminToken })).status, 200);
    await newcomer.next((m) => m.type === 'driver.approved');

    // Everything the server sent validates and says nothing undocumented.
    const seen = new Set<string>();
    for (const [who, s] of [['driver', driver], ['rider', rider], ['admin', admin], ['newcomer', newcomer]] as const) {
      for (const m of s.messages) {
        const validate = sent.get(m.type);
        if (!t.truthy(validate, `${who} got an undocumented message type ${m.type}`)) continue;
        t.true(validate!(m), `${who} <- ${m.type}: ${JSON.stringify(validate!.errors)} in ${JSON.stringify(m).slice(0, 300)}`);
        const payload = messagesOf('send').get(m.type)!.payload;
        t.deepEqual(undocumented(m, payload), [], `${who} <- ${m.type} has only documented fields`);
        seen.add(m.type);
      }
    }
    t.deepEqual([...seen].sort(), messageTypes(ServerMessage).sort(), 'every server message type was seen and validated');
    // What the clients sent fits the receive payloads, but for the frames the gateway found invalid.
    t.true(outgoing.length > 20);
    for (const { from, message } of outgoing) {
      const validate = received.get(message.type);
      if (String(message.ref).startsWith('invalid-')) t.false(validate?.(message) ?? false, `${from} -> ${message.type} is invalid by the document too`);
      else t.true(validate?.(message), `${from} -> ${message.type}: ${JSON.stringify(validate?.errors)}`);
    }
  } finally {
    for (const s of sockets) s.close();
  }
});

test('/docs/ws renders the document with the renderer served from node_modules, no inline script', async (t) => {
  const res = await fetch(`${edge.url}/docs/ws`);
  t.is(res.status, 200);
  t.regex(res.headers.get('content-type') ?? '', /html/);
  const html = await res.text();
  const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)];
  t.true(scripts.length >= 2);
  for (const [, attrs, body] of scripts) {
    t.regex(attrs!, /src="\/[^"]+"/, 'every script is a file of the node');
    t.is(body!.trim(), '', 'no inline script');
  }
  const sources = scripts.map(([, attrs]) => /src="([^"]+)"/.exec(attrs!)![1]!);
  const bundle = sources.find((s) => s.includes('asyncapi'));
  t.truthy(bundle, `the page loads the AsyncAPI bundle (${sources.join(', ')})`);
  t.false(html.includes('cdn') || html.includes('unpkg') || /(src|href)="https?:/.test(html), 'nothing from elsewhere');
  const csp = res.headers.get('content-security-policy') ?? '';
  const scriptSrc = /script-src ([^;]*)/.exec(csp)?.[1] ?? '';
  t.true(scriptSrc.includes("'self'") && !scriptSrc.includes('unsafe-inline'), `script-src ${scriptSrc}`);

  for (const src of sources) {
    const js = await fetch(`${edge.url}${src}`);
    t.is(js.status, 200, src);
    t.regex(js.headers.get('content-type') ?? '', /javascript/, src);
    const text = await js.text();
    if (src === bundle) t.true(text.length > 1_000_000 && text.includes('AsyncApiStandalone'), 'the standalone bundle itself');
  }
  const css = /<link[^>]*href="([^"]+)"/.exec(html)?.[1];
  t.truthy(css);
  const style = await fetch(`${edge.url}${css}`);
  t.is(style.status, 200);
  t.regex(style.headers.get('content-type') ?? '', /css/);
  t.is((await fetch(`${edge.url}/docs/ws/assets/..%2F..%2Fpackage.json`)).status, 404, 'only the listed files are served');
});

test('/docs and /redoc have no inline script either, and a CSP without unsafe-inline scripts', async (t) => {
  for (const path of ['/docs', '/redoc']) {
    const res = await fetch(`${edge.url}${path}`);
    t.is(res.status, 200);
    const html = await res.text();
    for (const [, attrs, body] of html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)) {
      t.regex(attrs!, /src="\/[^"]+"/, `${path}: scripts are files`);
      t.is(body!.trim(), '', `${path}: no inline script`);
      const src = /src="([^"]+)"/.exec(attrs!)![1]!;
      t.is((await fetch(`${edge.url}${src}`)).status, 200, `${path}: ${src}`);
    }
    const scriptSrc = /script-src ([^;]*)/.exec(res.headers.get('content-security-policy') ?? '')?.[1] ?? '';
    t.false(scriptSrc.includes('unsafe-inline'), `${path}: script-src ${scriptSrc}`);
  }
});
