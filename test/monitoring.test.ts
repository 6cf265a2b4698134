// The dashboard and the alert rules in monitoring/ against a running node: every metric
// their queries read is one the node exports, the rules pass promtool (syntax and their
// unit tests), a real Prometheus scrapes the node and answers every query, and the
// Kubernetes copies are the same rules and dashboard.

import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parse, parseAllDocuments } from 'yaml';
import { WsClient } from './helpers/edge-client.ts';
import { eventually, freePort, repoRoot, startNodeProcess, type NodeProcess } from './helpers/node-process.ts';
import { exportedNames, metricNames, sample } from './helpers/promql.ts';
import { dashboardConfigMap, prometheusRule } from '../scripts/k8s-monitoring.ts';
import { driversByStatus, surgeByCell } from '../http/metrics.ts';
import type { ShardHost } from '../runtime/shard-host.ts';

const run = promisify(execFile);
const RULES = join(repoRoot, 'monitoring/prometheus/rules/dispatch.rules.yml');
const RULE_TESTS = join(repoRoot, 'monitoring/prometheus/rules/dispatch.test.yml');
const DASHBOARD = join(repoRoot, 'monitoring/grafana/dashboards/dispatch.json');
const PROMTOOL = process.env.PROMTOOL_PATH ?? '/usr/bin/promtool';
const PROMETHEUS = process.env.PROMETHEUS_PATH ?? '/usr/bin/prometheus';
/** Prometheus' own series, which no node exports. */
const PROMETHEUS_OWN = new Set(['up', 'ALERTS', 'ALERTS_FOR_STATE']);

interface Rule { alert: string; expr: string }
const rules = (parse(readFileSync(RULES, 'utf8')) as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules);
const dashboard = JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: { title: string; targets?: { expr: string }[] }[] };
const panelQueries = dashboard.panels.flatMap((p) => (p.targets ?? []).map((target) => ({ where: `panel "${p.title}"`, expr: target.expr })));
const queries = [...panelQueries, ...rules.map((r) => ({ where: `alert ${r.alert}`, expr: r.expr }))];

const PICKUP = { lat: 52.52, lng: 13.405 };
let node: NodeProcess;
let metricsUrl: string;
let dataDir: string;

test.before(async () => {
  dataDir = mkdtempSync(join(tmpdir(), 'dispatch-monitoring-'));
  const port = await freePort();
  metricsUrl = `http://127.0.0.1:${port}/metrics`;
  // Embedded, on its own PGlite: the node alone, as any deployment's node exports the same names.
  node = await startNodeProcess('main.ts', {
    DATA_DIR: dataDir, MODE: 'embedded', DATABASE_URL: '', REDIS_URL: '', KAFKA_BROKERS: '', AUTH_DEV_TOKENS: 'true',
    SHARDS: '8', METRICS_PORT: String(port),
  }, 120_000);
  await driveTraffic(node.url);
});

test.after.always(async () => {
  await node?.kill('SIGTERM');
  rmSync(dataDir, { recursive: true, force: true });
});

async function token(url: string, sub: string, role: string): Promise<string> {
  const res = await fetch(`${url}/v1/auth/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sub, role }) });
  return ((await res.json()) as { token: string }).token;
}

/** A driver online near the pickup, a booking, its offer accepted: every dispatch metric gets a sample. */
async function driveTraffic(url: string): Promise<void> {
  const driver = await WsClient.signIn(`${url.replace('http', 'ws')}/v1/ws`, await token(url, 'mon-driver', 'driver'));
  await driver.call({ type: 'online', vehicleType: 'economy' }, 'on');
  await driver.call({ type: 'location', lat: PICKUP.lat + 0.001, lng: PICKUP.lng, heading: 0, speed: 5, at: new Date().toISOString() }, 'fix');
  const res = await fetch(`${url}/v1/bookings`, {
    method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${await token(url, 'mon-rider', 'rider')}` },
    body: JSON.stringify({ pickup: PICKUP, dropoff: { lat: 52.5, lng: 13.42 }, vehicleType: 'economy' }),
  });
  if (res.status !== 201) throw new Error(`booking: ${res.status} ${await res.text()}`);
  const { id } = (await res.json()) as { id: string };
  await driver.next((m) => m.type === 'offer' && m.bookingId === id);
  const accepted = await driver.call({ type: 'offer.accept', bookingId: id }, 'acc');
  if (accepted.type !== 'ack') throw new Error(`accept: ${JSON.stringify(accepted)}`);
  driver.close();
}

const scrape = () => fetch(metricsUrl).then((r) => r.text());

test('the name extractor sees metric names through functions, label lists, matchers and ranges', (t) => {
  t.deepEqual(
    metricNames('histogram_quantile(0.99, sum by (route, le) (rate(http_request_duration_seconds_bucket{job="dispatch", status=~"5.."}[5m])))'),
    ['http_request_duration_seconds_bucket'],
  );
  t.deepEqual(metricNames('max(shards_total{job="a"}) - sum without (instance) (shards_owned) > 0 and on (x) up == 1e3'), ['shards_total', 'shards_owned', 'up']);
  t.deepEqual(metricNames('topk(10, max by (cell) (dispatch_cell_surge_multiplier{job="dispatch"})) offset 5m'), ['dispatch_cell_surge_multiplier']);
});

test('every metric the dashboard and the alert rules read is exported by a running node', async (t) => {
  t.true(queries.length > 20, 'the dashboard and the rules have their queries');
  const exposition = await scrape();
  const exported = exportedNames(exposition);
  for (const { where, expr } of queries) {
    const names = metricNames(expr);
    t.true(names.length > 0, `${where} reads a metric: ${expr}`);
    for (const name of names.filter((n) => !PROMETHEUS_OWN.has(n))) t.true(exported.has(name), `${where} reads ${name}, which the node does not export`);
  }
});

test('the traffic shows in the new dispatch metrics', async (t) => {
  // Collected at scrape time or observed as the events arrive: polled, not timed.
  let exposition = '';
  t.true(await eventually(async () => {
    exposition = await scrape();
    return (sample(exposition, 'dispatch_outcomes_total{outcome="accepted"}') ?? 0) >= 1;
  }, 60_000, 200), 'the accepted booking is counted');
  t.is(sample(exposition, 'dispatch_first_offer_seconds_count'), 1, 'one first offer timed');
  t.is(sample(exposition, 'dispatch_offers_total'), 1);
  t.is(sample(exposition, 'dispatch_bookings_requested_total'), 1);
  t.true((sample(exposition, 'dispatch_service_duration_seconds_count{service="nearest"}') ?? 0) >= 1, 'the nearest search is timed');
  t.is(sample(exposition, 'dispatch_cell_drivers{status="available"}'), 0, 'the one driver is no longer free');
  t.is((['offered', 'assigned', 'on_trip'] as const).reduce((n, s) => n + (sample(exposition, `dispatch_cell_drivers{status="${s}"}`) ?? 0), 0), 1, 'and is still online');
  t.is(sample(exposition, 'dependency_circuit_state{dependency="postgres"}'), 0, 'the breaker is closed');
  t.is(sample(exposition, 'shards_total'), 8);
  t.is(sample(exposition, 'command_log_lag_records{shard="0"}'), 0, 'a lag for each shard');
  t.true((sample(exposition, 'soft_messages_total{outcome="applied"}') ?? 0) >= 1, 'the location fix was applied here');
});

test('the alert rules pass promtool check rules and their unit tests, with a firing and a quiet case per alert', async (t) => {
  t.true(existsSync(PROMTOOL), `promtool at ${PROMTOOL} (Debian's prometheus package; .ci/test.sh installs it)`);
  const checked = await run(PROMTOOL, ['check', 'rules', RULES]);
  t.regex(checked.stdout, new RegExp(`SUCCESS: ${rules.length} rules found`));
  const tested = await run(PROMTOOL, ['test', 'rules', RULE_TESTS]);
  t.regex(tested.stdout, /SUCCESS/);
  const cases = (parse(readFileSync(RULE_TESTS, 'utf8')) as { tests: { alert_rule_test?: { alertname: string; exp_alerts?: unknown[] }[] }[] })
    .tests.flatMap((g) => g.alert_rule_test ?? []);
  for (const { alert } of rules) {
    t.true(cases.some((c) => c.alertname === alert && (c.exp_alerts ?? []).length > 0), `${alert} has a firing case`);
    t.true(cases.some((c) => c.alertname === alert && (c.exp_alerts ?? []).length === 0), `${alert} has a quiet case`);
  }
});

test('a real Prometheus scrapes the node, loads the rules and answers every dashboard query', async (t) => {
  t.true(existsSync(PROMETHEUS), `prometheus at ${PROMETHEUS} (Debian's prometheus package; .ci/test.sh installs it)`);
  const dir = mkdtempSync(join(tmpdir(), 'dispatch-prometheus-'));
  const port = await freePort();
  const config = join(dir, 'prometheus.yml');
  writeFileSync(config, [
    'global: { scrape_interval: 1s, evaluation_interval: 1s }',
    `rule_files: [${JSON.stringify(RULES)}]`,
    'scrape_configs:',
    `  - { job_name: dispatch, static_configs: [{ targets: ["${new URL(metricsUrl).host}"] }] }`,
  ].join('\n'));
  const prometheus = spawn(PROMETHEUS, [`--config.file=${config}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'] });
  const log: string[] = [];
  prometheus.stderr!.on('data', (d) => log.push(String(d)));
  t.teardown(() => { prometheus.kill('SIGKILL'); rmSync(dir, { recursive: true, force: true }); });
  const api = async (path: string) => (await fetch(`http://127.0.0.1:${port}/api/v1/${path}`)).json() as Promise<{ status: string; data: any; error?: string }>;
  const query = (q: string) => api(`query?query=${encodeURIComponent(q)}`);

  const up = await eventually(async () => (await query('up{job="dispatch"} == 1')).data.result.length === 1, 90_000, 500);
  t.true(up, `Prometheus scrapes the node:\n${log.join('').slice(-2000)}`);
  t.true(await eventually(async () => (await query('shards_total{job="dispatch"}')).data.result[0]?.value[1] === '8', 60_000, 500), 'a node metric is queryable');
  const loaded = (await api('rules')).data.groups.flatMap((g: { rules: { name: string; health: string }[] }) => g.rules);
  t.deepEqual(loaded.map((r: { name: string }) => r.name).sort(), rules.map((r) => r.alert).sort(), 'Prometheus loaded every rule');
  for (const { where, expr } of queries) {
    const answer = await query(expr);
    t.is(answer.status, 'success', `${where}: ${answer.error ?? ''}`);
  }
  // Evaluated against the live node, no rule is broken, and a healthy node fires none.
  t.true(await eventually(async () => (await api('rules')).data.groups.every((g: { rules: { health: string }[] }) => g.rules.every((r) => r.health === 'ok')), 30_000, 500), 'every rule evaluates');
  t.deepEqual((await api('alerts')).data.alerts.filter((a: { state: string }) => a.state === 'firing'), [], 'nothing fires on a healthy node');
});

test('k8s/monitoring carries the same rules and dashboard, scraped through the metrics port', (t) => {
  const read = (f: string) => readFileSync(join(repoRoot, 'k8s/monitoring', f), 'utf8');
  const hint = 'run `node scripts/k8s-monitoring.ts`';
  t.is(read('prometheus-rule.yaml'), prometheusRule(), `the PrometheusRule is the rules file (${hint})`);
  t.is(read('dashboard.yaml'), dashboardConfigMap(), `the dashboard ConfigMap is the dashboard (${hint})`);
  const rule = parse(read('prometheus-rule.yaml')) as { spec: { groups: unknown } };
  t.deepEqual(rule.spec.groups, (parse(readFileSync(RULES, 'utf8')) as { groups: unknown }).groups);
  const map = parse(read('dashboard.yaml')) as { metadata: { labels: Record<string, string> }; data: Record<string, string> };
  t.is(map.metadata.labels.grafana_dashboard, '1');
  t.deepEqual(JSON.parse(map.data['dispatch.json']!), dashboard);

  const docs = ['service-monitor.yaml', '../statefulset.yaml', '../configmap.yaml'].flatMap((f) => parseAllDocuments(read(f)).map((d) => d.toJS() as Record<string, any>));
  const monitor = docs.find((d) => d.kind === 'ServiceMonitor')!;
  const service = docs.find((d) => d.kind === 'Service' && Object.entries(monitor.spec.selector.matchLabels).every(([k, v]) => d.metadata.labels?.[k] === v))!;
  t.truthy(service, 'the ServiceMonitor selects a Service');
  t.is(service.metadata.labels[monitor.spec.jobLabel], 'dispatch', 'the job label is "dispatch", as the rules and panels select');
  const port = service.spec.ports.find((p: { name: string }) => p.name === monitor.spec.endpoints[0].port);
  t.truthy(port, 'the ServiceMonitor scrapes a port of that Service');
  const container = docs.find((d) => d.kind === 'StatefulSet')!.spec.template.spec.containers[0];
  const metricsPort = container.ports.find((p: { name: string }) => p.name === port.targetPort);
  t.truthy(metricsPort, 'which targets a named container port');
  t.is(String(metricsPort.containerPort), docs.find((d) => d.kind === 'ConfigMap')!.data.METRICS_PORT, 'where the node serves METRICS_PORT');
  t.is(monitor.spec.endpoints[0].path, '/metrics');
});

test('surge is exported for the cells above 1 only, highest first, and drivers are counted by status', (t) => {
  const cells: Record<string, { surge: number; drivers: { status: string }[] }> = {
    a: { surge: 1, drivers: [{ status: 'available' }, { status: 'on_trip' }] },
    b: { surge: 2.5, drivers: [{ status: 'available' }] },
    c: { surge: 1.2, drivers: [] },
  };
  const host = {
    activeRefs: (kind: string) => (kind === 'cell' ? Object.keys(cells).map((id) => ({ kind, id })) : []),
    peek: (ref: { id: string }, q: { type: string }) => (q.type === 'surge' ? { surge: cells[ref.id]!.surge } : cells[ref.id]!.drivers),
  } as unknown as ShardHost;
  t.deepEqual(surgeByCell(host), [{ cell: 'b', surge: 2.5 }, { cell: 'c', surge: 1.2 }]);
  t.deepEqual(driversByStatus(host), { available: 2, on_trip: 1 });
});
