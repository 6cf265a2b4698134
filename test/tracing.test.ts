// Traces across nodes (runtime/tracing.ts): the trace context travels in the command
// envelope, so one booking's spans, from the HTTP request on one node to the offer handled
// on another and pushed to the driver's socket, are one trace with the right parents.

import test from 'ava';
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { SignJWT } from 'jose';
import { shardOf } from '../runtime/entity.ts';
import type { CommandEnvelope } from '../runtime/ports.ts';
import { setTracingEnabled, startRootSpan, SpanKind, withSpan, endSpan } from '../runtime/tracing.ts';
import { counter } from './fixtures/counter.ts';
import { startEdge, WsClient, type EdgeNode } from './helpers/edge-client.ts';
import { samplerFor } from '../adapters/otel/tracing.ts';
import { eventually, startNodeProcess, type NodeProcess } from './helpers/node-process.ts';
import { startRig } from './helpers/rig.ts';
import { freshDatabase, kafkaBrokers, redisUrl, TEST_CLUSTER_KEY, TEST_DATA_KEYS } from './helpers/services.ts';

const ref = (id: string) => ({ kind: 'counter', id });

/** A rig whose log keeps every envelope appended, as it would be written. */
async function recordingRig() {
  const appended: CommandEnvelope[] = [];
  const rig = await startRig({
    behaviors: [counter],
    wrapLog: (inner) => ({
      shards: inner.shards,
      append: async (shard, command) => { appended.push(JSON.parse(JSON.stringify(command))); await inner.append(shard, command); },
      appendMany: async (entries) => { appended.push(...entries.map((e) => JSON.parse(JSON.stringify(e.command)))); await inner.appendMany(entries); },
      start: (h) => inner.start(h), commit: (s, o) => inner.commit(s, o), stop: () => inner.stop(),
    }),
  });
  return { rig, appended };
}

test.serial('with tracing off, envelopes carry no trace field', async (t) => {
  const { rig, appended } = await recordingRig();
  t.teardown(() => rig.stop());
  await rig.region.request(ref('off-src'), { type: 'forward', to: 'off-dst', n: 2 });
  await rig.region.tell(ref('off-dst'), { type: 'add', n: 1 });
  t.true(await eventually(async () => appended.some((c) => c.to.id === 'off-dst' && c.origin !== undefined), 30_000));
  t.true(appended.length >= 3);
  for (const command of appended) t.false('trace' in command, `${command.id} has no trace field`);
});

test.serial('in one process, a traced request\'s tell carries the handling span as its parent', async (t) => {
  const exporter = new InMemorySpanExporter();
  const provider = new TracerProvider({ spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(provider);
  setTracingEnabled(true);
  const { rig, appended } = await recordingRig();
  t.teardown(async () => {
    await rig.stop();
    setTracingEnabled(false);
    await provider.shutdown();
    trace.disable();
    context.disable();
  });
  const root = startRootSpan('test request', SpanKind.SERVER, {});
  await withSpan(root, () => rig.region.request(ref('on-src'), { type: 'forward', to: 'on-dst', n: 2 }));
  endSpan(root);
  t.true(await eventually(async () => exporter.getFinishedSpans().some((s) => s.name === 'command.handle' && s.attributes['dispatch.entity'] === 'counter:on-dst'), 30_000));
  const spans = exporter.getFinishedSpans();
  const byId = new Map(spans.map((s) => [s.spanContext().spanId, s]));
  const parentOf = (s: (typeof spans)[number]) => byId.get(s.parentSpanContext?.spanId ?? '');
  const handledDst = spans.find((s) => s.name === 'command.handle' && s.attributes['dispatch.entity'] === 'counter:on-dst')!;
  const chain: string[] = [];
  for (let s: (typeof spans)[number] | undefined = handledDst; s; s = parentOf(s)) chain.push(`${s.name} ${s.attributes['dispatch.entity'] ?? ''}`.trim());
  t.deepEqual(chain, ['command.handle counter:on-dst', 'command.append counter:on-dst', 'command.handle counter:on-src', 'command.append counter:on-src', 'test request']);
  t.true(spans.every((s) => s.spanContext().traceId === root!.spanContext().traceId), 'one trace');
  // The envelopes name their producer spans, as W3C traceparents.
  const tell = appended.find((c) => c.to.id === 'on-dst')!;
  t.regex(tell.trace ?? '', /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  t.is(tell.trace!.split('-')[2], parentOf(handledDst)!.spanContext().spanId);
});

/** The SDK as a node starts it (the same sampler), exporting into memory; undone in teardown. */
function inMemoryTracing(t: { teardown(f: () => Promise<void>): void }, ratio: number): InMemorySpanExporter {
  const exporter = new InMemorySpanExporter();
  const provider = new TracerProvider({ sampler: samplerFor(ratio), spanProcessors: [new SimpleSpanProcessor({ exporter })] });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(provider);
  setTracingEnabled(true);
  t.teardown(async () => {
    setTracingEnabled(false);
    await provider.shutdown();
    trace.disable();
    context.disable();
  });
  return exporter;
}

const randomHex = (bytes: number) => Buffer.from(Array.from({ length: bytes }, () => Math.floor(Math.random() * 256))).toString('hex');

/** A rider's booking request carrying a sampled traceparent of the client's choosing; its trace id. */
async function bookWithClientTrace(edge: EdgeNode): Promise<{ clientTraceId: string; clientSpanId: string; bookingId: string }> {
  const [clientTraceId, clientSpanId] = [randomHex(16), randomHex(8)];
  const rider = await edge.token(`trace-rider-${randomHex(3)}`, 'rider');
  const res = await edge.http('POST', '/v1/bookings', {
    token: rider, headers: { traceparent: `00-${clientTraceId}-${clientSpanId}-01` },
    body: { pickup: PICKUP, dropoff: DROPOFF, vehicleType: 'economy' },
  });
  if (res.status !== 201) throw new Error(`booking: ${res.status} ${JSON.stringify(res.body)}`);
  // Read back: the booking's creation and the first steps it caused have been handled.
  await edge.http('GET', `/v1/bookings/${res.body.id}`, { token: rider });
  return { clientTraceId, clientSpanId, bookingId: res.body.id };
}

test.serial('a client\'s sampled traceparent does not steer tracing: at ratio 0 nothing is recorded under its trace id', async (t) => {
  const exporter = inMemoryTracing(t, 0);
  const edge = await startEdge();
  t.teardown(() => edge.stop());
  const { clientTraceId } = await bookWithClientTrace(edge);
  const spans = exporter.getFinishedSpans();
  t.deepEqual(spans.filter((s) => s.spanContext().traceId === clientTraceId).map((s) => s.name), [], 'no span under the client\'s trace id');
  t.deepEqual(spans.map((s) => s.name), [], 'nothing recorded at ratio 0');
});

test.serial('at ratio 1 a request starts a trace of its own, the client\'s traceparent only a link on its root', async (t) => {
  const exporter = inMemoryTracing(t, 1);
  const edge = await startEdge();
  t.teardown(() => edge.stop());
  const { clientTraceId, clientSpanId } = await bookWithClientTrace(edge);
  const root = exporter.getFinishedSpans().find((s) => s.name === 'POST /v1/bookings');
  t.truthy(root, 'the request was traced');
  t.not(root!.spanContext().traceId, clientTraceId, 'a trace id of our own');
  t.is(root!.parentSpanContext, undefined, 'the request starts the trace');
  t.deepEqual(root!.links.map((l) => [l.context.traceId, l.context.spanId]), [[clientTraceId, clientSpanId]], 'linked to the client\'s span');
  t.true(await eventually(async () => exporter.getFinishedSpans().some((s) => s.name === 'command.handle'
    && s.spanContext().traceId === root!.spanContext().traceId), 60_000), 'the commands it caused continue the new trace');
  t.false(exporter.getFinishedSpans().some((s) => s.spanContext().traceId === clientTraceId));
});

// --- Two nodes, real Kafka, PostgreSQL and Redis, spans exported over OTLP/HTTP ---

interface OtlpSpan {
  traceId: string; spanId: string; parentSpanId: string; name: string; kind: number;
  attributes: Record<string, unknown>; node: string;
}

/** OTLP JSON ids are hex; a receiver that gets base64 (protobuf JSON mapping) turns it into hex too. */
function hexId(id: string | undefined): string {
  if (!id) return '';
  return /^[0-9a-f]+$/.test(id) ? id : Buffer.from(id, 'base64').toString('hex');
}

function valueOf(v: Record<string, unknown>): unknown {
  return v.stringValue ?? v.intValue ?? v.doubleValue ?? v.boolValue;
}

function attributesOf(list: { key: string; value: Record<string, unknown> }[] | undefined): Record<string, unknown> {
  return Object.fromEntries((list ?? []).map((a) => [a.key, valueOf(a.value)]));
}

/** A tiny OTLP/HTTP receiver: keeps every span posted to /v1/traces. */
async function otlpReceiver(): Promise<{ url: string; spans: OtlpSpan[]; server: Server }> {
  const spans: OtlpSpan[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { resourceSpans?: any[] };
        for (const rs of body.resourceSpans ?? []) {
          const node = String(attributesOf(rs.resource?.attributes)['service.instance.id'] ?? '');
          for (const ss of rs.scopeSpans ?? []) {
            for (const s of ss.spans ?? []) {
              spans.push({
                traceId: hexId(s.traceId), spanId: hexId(s.spanId), parentSpanId: hexId(s.parentSpanId),
                name: s.name, kind: s.kind, attributes: attributesOf(s.attributes), node,
              });
            }
          }
        }
      } catch { /* not JSON: counted as nothing */ }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, spans, server };
}

const SECRET = 'tracing-test-secret-of-some-length-32';
const SHARDS = 4;
const PICKUP = { lat: 41.3874, lng: 2.1686 };
const DROPOFF = { lat: 41.4036, lng: 2.1744 };

function token(sub: string, role: string): Promise<string> {
  return new SignJWT({ role }).setProtectedHeader({ alg: 'HS256' }).setSubject(sub)
    .setIssuer('dispatch').setIssuedAt().setExpirationTime('1h').sign(new TextEncoder().encode(SECRET));
}

async function shardMap(node: NodeProcess): Promise<Map<number, string | null>> {
  const res = await fetch(`${node.url}/v1/admin/cluster`, { headers: { authorization: `Bearer ${await token('ops', 'admin')}` } });
  if (!res.ok) throw new Error(`cluster view: ${res.status}`);
  const view = await res.json() as { shards: { shard: number; node: string | null }[] };
  return new Map(view.shards.map((s) => [s.shard, s.node]));
}

test.serial('one booking is one trace, from the POST on one node to the offer handled on another and pushed to the driver', async (t) => {
  t.timeout(300_000);
  const receiver = await otlpReceiver();
  t.teardown(() => new Promise<void>((resolve) => { receiver.server.closeAllConnections(); receiver.server.close(() => resolve()); }));
  const db = await freshDatabase();
  t.teardown(() => db.drop());
  const env = {
    MODE: 'cluster', KAFKA_BROKERS: await kafkaBrokers(), DATABASE_URL: db.url, REDIS_URL: await redisUrl(),
    JWT_SECRET: SECRET, QUOTE_SECRET: 'tracing-test-quote-key-shared-by-all-nodes', KAFKA_TOPIC_PREFIX: `tr${randomUUID().slice(0, 8)}`,
    KAFKA_SESSION_TIMEOUT_MS: '6000', SHARDS: String(SHARDS), LOG_LEVEL: 'warn', OFFER_TIMEOUT_MS: '60000',
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url, ...TEST_DATA_KEYS, ...TEST_CLUSTER_KEY,
  };
  const start = async (id: string) => {
    const node = await startNodeProcess('main.ts', { ...env, LOG_LEVEL: 'info', NODE_ID: id, DATA_DIR: mkdtempSync(join(tmpdir(), `${id}-`)) }, 120_000);
    t.teardown(() => node.kill('SIGKILL'));
    return node;
  };
  // One after the other: two members joining an empty group at once rebalance twice.
  const n1 = await start('t1');
  const n2 = await start('t2');
  let map = new Map<number, string | null>();
  t.true(await eventually(async () => {
    if ((await fetch(`${n1.url}/ready`)).status !== 200 || (await fetch(`${n2.url}/ready`)).status !== 200) return false;
    map = await shardMap(n1);
    return new Set(map.values()).size === 2 && [...map.values()].every((n) => n === 't1' || n === 't2');
  }, 120_000), 'both nodes own shards');

  // The driver lives on t2; the rider books on t1 and the driver's socket is on t1, so the
  // offer is handled on the other node and its notification comes back across Redis.
  const run = randomUUID().slice(0, 6);
  const placement = { shards: SHARDS, placementRes: 4 };
  const driverId = Array.from({ length: 200 }, (_, i) => `drv-${run}-${i}`).find((id) => map.get(shardOf({ kind: 'driver', id }, placement)) === 't2')!;
  t.truthy(driverId);
  // Without development tokens a driver goes online only as its vehicle's type or one an admin allowed it.
  const allowed = await fetch(`${n1.url}/v1/admin/drivers`, {
    method: 'POST', body: JSON.stringify({ id: driverId, name: 'Traced Driver', vehicleTypes: ['economy'] }),
    headers: { 'content-type': 'application/json', authorization: `Bearer ${await token(`ops-${run}`, 'admin')}` },
  });
  t.is(allowed.status, 201, await allowed.text());
  const driver = await WsClient.signIn(`${n1.url.replace('http', 'ws')}/v1/ws`, await token(driverId, 'driver'));
  t.teardown(() => driver.close());
  t.is((await driver.call({ type: 'online', vehicleType: 'economy' }, 'on')).type, 'ack');
  await driver.call({ type: 'location', lat: PICKUP.lat + 0.002, lng: PICKUP.lng, heading: 90, speed: 8, at: new Date().toISOString() }, 'fix');

  const rider = await token(`rider-${run}`, 'rider');
  const post = (path: string, body: unknown) => fetch(`${n1.url}${path}`, {
    method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json', authorization: `Bearer ${rider}` },
  }).then(async (r) => ({ status: r.status, body: await r.json() as any }));
  const quote = await post('/v1/quotes', { pickup: PICKUP, dropoff: DROPOFF, vehicleType: 'economy' });
  t.is(quote.status, 201, JSON.stringify(quote.body));
  // The fix reaches its cell softly (forwarded to the owner): book once both nodes' searches
  // see the driver, so the booking's first search (traced) finds it, not a later one on a timer.
  // Admins see drivers' ids in the nearby list (riders get a fresh ref per answer).
  const ops = await token(`ops-${run}`, 'admin');
  const seen = async (node: NodeProcess) => {
    const res = await fetch(`${node.url}/v1/drivers/nearby?lat=${PICKUP.lat}&lng=${PICKUP.lng}&radiusKm=2`, { headers: { authorization: `Bearer ${ops}` } });
    return res.ok && ((await res.json()) as { drivers: { driverId: string }[] }).drivers.some((d) => d.driverId === driverId);
  };
  t.true(await eventually(async () => (await seen(n1)) && (await seen(n2)), 60_000, 200), 'the driver is in its cell');
  const booked = await post('/v1/bookings', { quoteId: quote.body.quoteId });
  t.is(booked.status, 201, JSON.stringify(booked.body));
  const bookingId = booked.body.id as string;
  t.truthy(await driver.next((m) => m.type === 'offer' && m.bookingId === bookingId, 60_000), 'the driver was offered the booking');

  // Walks from the push to the driver's socket up through the parents it names.
  const posted = () => receiver.spans.find((s) => s.name === 'POST /v1/bookings' && s.node === 't1');
  const chainOf = (root: OtlpSpan) => {
    const byId = new Map(receiver.spans.filter((s) => s.traceId === root.traceId).map((s) => [s.spanId, s]));
    const chain: OtlpSpan[] = [];
    let s = receiver.spans.find((x) => x.traceId === root.traceId && x.name === 'notify' && x.attributes['dispatch.notification.type'] === 'offer');
    for (; s; s = byId.get(s.parentSpanId)) chain.push(s);
    return chain;
  };
  // The spans come in batches from both nodes: wait until the chain reaches the POST.
  t.true(await eventually(async () => { const p = posted(); return p !== undefined && chainOf(p).at(-1) === p; }, 60_000, 200),
    `chain: ${posted() ? chainOf(posted()!).map((s) => s.name).join(' <- ') : 'no POST span'}; spans seen: ${[...new Set(receiver.spans.map((s) => s.name))].join(', ')}`);
  const root = posted()!;
  const spans = receiver.spans.filter((s) => s.traceId === root.traceId);
  const chain = chainOf(root);
  t.is(root.parentSpanId, '', 'the POST starts the trace');
  const names = chain.map((s) => `${s.name}${s.attributes['dispatch.message.type'] ? ` ${s.attributes['dispatch.message.type']}` : ''}`).reverse();
  const expected = ['POST /v1/bookings', 'command.append', 'command.handle', 'service nearest', 'command.append', 'command.handle', 'command.append', 'command.handle', 'notify'];
  t.deepEqual(chain.map((s) => s.name).reverse(), expected, names.join(' -> '));
  const offer = chain[1]!;
  t.is(offer.attributes['dispatch.entity'], `driver:${driverId}`);
  t.is(offer.attributes['dispatch.message.type'], 'offer');
  t.is(offer.node, 't2', 'the offer was handled on the driver\'s node');
  t.is(chain[0]!.node, 't1', 'and pushed on the node holding the driver\'s socket');
  t.is(root.node, 't1');
  t.is(chain.at(-3)!.attributes['dispatch.entity'], `booking:${bookingId}`, 'the booking handled its creation');
  t.deepEqual(new Set(spans.map((s) => s.node)), new Set(['t1', 't2']), 'the trace spans both nodes');
});
