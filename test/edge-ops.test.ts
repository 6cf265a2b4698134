// Operations surface: health, readiness, metrics, and a graceful stop that closes sockets with a reason.

import test from 'ava';
import { networkInterfaces } from 'node:os';
import { startEdge } from './helpers/edge-client.ts';
import { eventually } from './helpers/node-process.ts';

test('health, readiness and Prometheus metrics; shutdown closes sockets with a reason', async (t) => {
  const edge = await startEdge();
  t.deepEqual((await edge.http('GET', '/health')).body, { status: 'ok' });
  t.deepEqual((await edge.http('GET', '/ready')).body, { status: 'ready' });
  const socket = await edge.socket(await edge.token('ops-driver', 'driver'));
  await socket.call({ type: 'online', vehicleType: 'economy' }, 'on');
  await edge.http('GET', '/v1/bookings/none', { token: await edge.token('ops-rider', 'rider') });
  t.is((await fetch(`${edge.url}/metrics`)).status, 401, 'on the public port, metrics need an admin token');
  const admin = await edge.token('ops-admin', 'admin');
  const metrics = await fetch(`${edge.url}/metrics`, { headers: { authorization: `Bearer ${admin}` } }).then((r) => r.text());
  for (const name of ['http_request_duration_seconds_bucket', 'websocket_open{role="driver"} 1', 'actors_active{kind="driver"}', 'actors_holding_mailbox', 'commands_handled_total', 'command_log_lag', 'shards_owned 8']) {
    t.true(metrics.includes(name), `metrics include ${name}`);
  }
  t.regex(metrics, /http_request_duration_seconds_count\{method="GET",route="\/v1\/bookings\/:id",status="404"\} 1/, 'latency is labelled by route pattern');
  await edge.stop();
  t.true(await eventually(async () => socket.closed !== undefined, 60_000));
  t.is(socket.closed!.code, 1001);
  t.is(socket.closed!.reason, 'shutdown');
});

test('METRICS_PORT serves /metrics on a listener of its own, and the API port does not', async (t) => {
  const edge = await startEdge({ METRICS_PORT: '0' });
  t.teardown(() => edge.stop());
  t.not(edge.node.metricsUrl, `${edge.url}/metrics`);
  const scraped = await fetch(edge.node.metricsUrl);
  t.is(scraped.status, 200);
  t.regex(await scraped.text(), /shards_owned 8/);
  const admin = await edge.token('ops-admin', 'admin');
  t.is((await fetch(`${edge.url}/metrics`, { headers: { authorization: `Bearer ${admin}` } })).status, 404);
  // Its other answers are the contract's too: the JSON error body and an X-Request-Id.
  t.truthy(scraped.headers.get('x-request-id'));
  const elsewhere = await fetch(new URL('/elsewhere', edge.node.metricsUrl));
  t.is(elsewhere.status, 404);
  t.truthy(elsewhere.headers.get('x-request-id'));
  t.is(((await elsewhere.json()) as { error: { code: string } }).error.code, 'not_found');
});

/** This machine's first address that is not loopback (where a client on the network would connect), if any. */
const external = Object.values(networkInterfaces()).flat().find((a) => a && !a.internal && a.family === 'IPv4')?.address;
const answers = (url: string) => fetch(url, { signal: AbortSignal.timeout(10_000) })
  .then((r) => r.status, (e: Error) => (e.cause as { code?: string })?.code ?? e.message);

test('a node serving its API on every interface keeps /metrics (no token) on loopback unless METRICS_HOST says otherwise', async (t) => {
  const edge = await startEdge({ HOST: '0.0.0.0', METRICS_PORT: '0' });
  t.teardown(() => edge.stop());
  const metrics = new URL(edge.node.metricsUrl);
  t.is(metrics.hostname, '127.0.0.1', 'bound on METRICS_HOST, not HOST');
  t.is(await answers(edge.node.metricsUrl), 200);
  const api = new URL(edge.url);
  if (external) {
    t.is(await answers(`http://${external}:${api.port}/health`), 200, `the API answers on ${external}`);
    t.is(await answers(`http://${external}:${metrics.port}/metrics`), 'ECONNREFUSED', `/metrics does not answer on ${external}`);
  } else {
    t.log('no address besides loopback on this machine: checked the bound address only');
  }

  const open = await startEdge({ HOST: '127.0.0.1', METRICS_PORT: '0', METRICS_HOST: '0.0.0.0' });
  t.teardown(() => open.stop());
  t.is(new URL(open.node.metricsUrl).hostname, '0.0.0.0', 'bound where the operator said');
  if (external) t.is(await answers(`http://${external}:${new URL(open.node.metricsUrl).port}/metrics`), 200);
});
