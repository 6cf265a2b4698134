// docker-compose.yml and k8s/ must agree with the node: every variable they set is
// one the configuration reads, every port is the node's, every probe path is a route.

import test from 'ava';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { parse, parseAllDocuments } from 'yaml';
import { isVariable, loadConfig } from '../config/index.ts';
import { COMPOSE_SECRETS, makeSecrets } from '../scripts/secrets.ts';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('../', import.meta.url);
const known = { has: isVariable };
const routes = ['/health', '/ready'];
const port = String(loadConfig({}).http.port);

type Env = Record<string, string>;
interface ComposeService { environment?: Env; build?: unknown; healthcheck?: { test?: string[] } }

test('compose: every node variable exists in the configuration and the whole set loads', (t) => {
  const secretsDir = mkdtempSync(join(tmpdir(), 'dispatch-compose-secrets-'));
  t.teardown(() => rmSync(secretsDir, { recursive: true, force: true }));
  makeSecrets(secretsDir);
  const compose = parse(readFileSync(new URL('docker-compose.yml', root), 'utf8'), { merge: true }) as { services: Record<string, ComposeService> };
  const nodes = Object.entries(compose.services).filter(([, s]) => s.build !== undefined);
  t.is(nodes.length, 3, 'three node services');
  for (const [name, service] of nodes) {
    const env = service.environment ?? {};
    for (const key of Object.keys(env)) t.true(known.has(key), `${name} sets ${key}, which the node does not read`);
    t.is(env.PORT, port);
    t.truthy(env.NODE_ID, `${name} has a node id`);
    // Secrets are mounted files, as real ones would be: here the ones `npm run secrets` makes.
    const files = Object.fromEntries(COMPOSE_SECRETS.map((s) => [`/run/secrets/${s}`, join(secretsDir, s)]));
    const mounted = Object.fromEntries(Object.entries(env).map(([k, v]) => [k, files[v] ?? v]));
    for (const key of ['JWT_SECRET_FILE', 'QUOTE_SECRET_FILE', 'DATABASE_PASSWORD_FILE', 'DATA_KEYS_FILE', 'DATA_INDEX_KEY_FILE']) t.truthy(files[env[key] ?? ''], `${name} reads ${key} from a mounted secret`);
    const config = loadConfig(mounted);
    t.is(config.mode, 'cluster', `${name}'s environment is a valid cluster configuration`);
    const probe = service.healthcheck?.test?.join(' ') ?? '';
    t.true(routes.some((r) => probe.includes(`:${port}${r}`)), `${name} probes a real route on the node port`);
  }
  const nginx = readFileSync(new URL('docker/nginx.conf', root), 'utf8');
  for (const [name] of nodes) t.true(nginx.includes(`server ${name}:${port}`), `nginx routes to ${name}`);
  // TLS on 8443 with the certificate `npm run certs` writes to ./certs, mounted where nginx reads it.
  const proxy = (compose.services as Record<string, ComposeService & { ports?: string[]; volumes?: string[] }>).nginx!;
  t.true(proxy.ports?.includes('8443:8443'), 'nginx publishes 8443');
  t.true(proxy.volumes?.includes('./certs:/etc/nginx/certs:ro'), 'nginx mounts ./certs');
  t.regex(nginx, /listen 8443 ssl;/);
  t.regex(nginx, /ssl_certificate \/etc\/nginx\/certs\/server\.pem;/);
  t.regex(nginx, /ssl_certificate_key \/etc\/nginx\/certs\/server-key\.pem;/);
  t.regex(nginx, /return 301 https:\/\//, 'plain HTTP is redirected');
  t.regex(nginx, /Strict-Transport-Security/);
});

test('k8s: variables, ports and probes match the node', (t) => {
  const dir = new URL('k8s/', root);
  const docs = readdirSync(dir).filter((f) => f.endsWith('.yaml'))
    .flatMap((f) => parseAllDocuments(readFileSync(new URL(f, dir), 'utf8')).map((d) => d.toJS() as Record<string, any>));
  const kinds = new Set(docs.map((d) => d.kind));
  for (const kind of ['StatefulSet', 'Service', 'ConfigMap', 'Secret', 'HorizontalPodAutoscaler', 'PodDisruptionBudget', 'Ingress']) t.true(kinds.has(kind), kind);
  // TLS ends at the Ingress, which routes to the Service's named port.
  const ingress = docs.find((d) => d.kind === 'Ingress')!;
  t.truthy(ingress.spec.tls?.[0]?.secretName, 'the Ingress terminates TLS with a certificate Secret');
  const servicePorts = docs.filter((d) => d.kind === 'Service').flatMap((d) => d.spec.ports.map((p: { name: string }) => p.name));
  for (const rule of ingress.spec.rules) {
    for (const path of rule.http.paths) t.true(servicePorts.includes(path.backend.service.port.name), 'the Ingress routes to a Service port');
    t.true(ingress.spec.tls[0].hosts.includes(rule.host), `${rule.host} is covered by the certificate`);
  }

  const configMap = docs.find((d) => d.kind === 'ConfigMap')!.data as Env;
  const secret = docs.find((d) => d.kind === 'Secret')!.stringData as Env;
  for (const key of [...Object.keys(configMap), ...Object.keys(secret)]) t.true(known.has(key), `k8s sets ${key}, which the node does not read`);
  const set = docs.find((d) => d.kind === 'StatefulSet')!;
  const container = set.spec.template.spec.containers[0];
  for (const e of container.env ?? []) t.true(known.has(e.name), `k8s sets ${e.name}`);
  // The committed Secret is a template: its secrets are placeholders the node refuses; real ones load.
  const refused = t.throws(() => loadConfig({ ...configMap, ...secret, NODE_ID: 'dispatch-0' }), { message: /DATABASE_PASSWORD is a sample[\s\S]*JWT_SECRET is a sample[\s\S]*QUOTE_SECRET is a sample/ });
  for (const name of ['DATA_KEYS', 'DATA_INDEX_KEY']) t.regex(refused?.message ?? '', new RegExp(`${name} is a sample`));
  const filled = {
    ...secret, JWT_SECRET: randomBytes(48).toString('base64'), QUOTE_SECRET: randomBytes(48).toString('base64'),
    DATABASE_PASSWORD: randomBytes(24).toString('base64url'),
    DATA_KEYS: `k1:${randomBytes(32).toString('base64')}`, DATA_INDEX_KEY: randomBytes(48).toString('base64'),
  };
  t.is(loadConfig({ ...configMap, ...filled, NODE_ID: 'dispatch-0' }).mode, 'cluster', 'ConfigMap + Secret load as a cluster configuration');
  t.is(String(container.ports[0].containerPort), configMap.PORT!);
  for (const probe of ['readinessProbe', 'livenessProbe', 'startupProbe']) {
    t.true(routes.includes(container[probe].httpGet.path), `${probe} uses a real route`);
    t.is(container[probe].httpGet.port, container.ports[0].name);
  }
  t.true(container.env.some((e: { name: string; valueFrom?: unknown }) => e.name === 'NODE_ID' && e.valueFrom), 'NODE_ID comes from the pod name');
});

interface ComposeFile {
  services: Record<string, ComposeService & { image?: string; ports?: string[]; volumes?: string[]; depends_on?: string[] | Record<string, unknown>; command?: string[] }>;
  volumes?: Record<string, unknown>;
}

test('compose: mounts, ports and dependencies point at real files, services and listeners; Prometheus scrapes every node and Grafana reads Prometheus', (t) => {
  const compose = parse(readFileSync(new URL('docker-compose.yml', root), 'utf8'), { merge: true }) as ComposeFile;
  const services = compose.services;
  // Made by `npm run certs` and `npm run secrets`, never committed: the rest is in the repository.
  const generated = ['./certs', './secrets'];
  const ignored = readFileSync(new URL('.gitignore', root), 'utf8').split('\n');
  const mounts = new Map<string, string>();
  for (const [name, service] of Object.entries(services)) {
    for (const volume of service.volumes ?? []) {
      const [source, target] = volume.split(':') as [string, string];
      if (!source.startsWith('./')) { t.truthy(compose.volumes?.[source] !== undefined, `${name} mounts volume ${source}, which compose declares`); continue; }
      mounts.set(`${name}:${target}`, source);
      if (generated.includes(source)) t.true(ignored.includes(`${source.slice(2)}/`), `${source} is generated and ignored by git`);
      else t.true(existsSync(new URL(source, root)), `${name} mounts ${source}, which is in the repository`);
    }
    const needs = Array.isArray(service.depends_on) ? service.depends_on : Object.keys(service.depends_on ?? {});
    for (const other of needs) t.truthy(services[other], `${name} depends on ${other}, a service of this file`);
  }
  // Each published port is one its service listens on, and no host port is published twice.
  const nginx = readFileSync(new URL('docker/nginx.conf', root), 'utf8');
  const listens: Record<string, string[]> = {
    nginx: [...nginx.matchAll(/listen (\d+)/g)].map((m) => m[1]!),
    prometheus: ['9090'], // its default --web.listen-address
    grafana: ['3000'], // its default http_port
    jaeger: ['16686'], // the all-in-one's UI
  };
  const published = new Set<string>();
  for (const [name, service] of Object.entries(services)) {
    for (const mapping of service.ports ?? []) {
      const parts = mapping.split(':');
      const [host, container] = [parts.at(-2)!, parts.at(-1)!];
      t.true(listens[name]?.includes(container), `${name} publishes ${container}, where it listens`);
      t.false(published.has(host), `host port ${host} is published once`);
      published.add(host);
    }
  }
  t.false(services.prometheus?.command?.some((c) => c.startsWith('--web.listen-address')), 'Prometheus listens on its default port');

  // Prometheus: its config and rules are the mounted directory's; it scrapes each node's METRICS_PORT.
  const promDir = mounts.get('prometheus:/etc/prometheus');
  t.is(promDir, './monitoring/prometheus');
  t.true(services.prometheus!.command!.includes('--config.file=/etc/prometheus/prometheus.yml'));
  const prom = parse(readFileSync(new URL(`${promDir}/prometheus.yml`, root), 'utf8')) as { rule_files: string[]; scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[] };
  for (const file of prom.rule_files) t.true(existsSync(new URL(`${promDir}/${file}`, root)), `rule file ${file} is in ${promDir}`);
  const nodes = Object.entries(services).filter(([, s]) => s.build !== undefined);
  const job = prom.scrape_configs.find((c) => c.job_name === 'dispatch')!;
  t.deepEqual(job.static_configs.flatMap((c) => c.targets).sort(), nodes.map(([name, s]) => `${name}:${s.environment?.METRICS_PORT}`).sort(), 'Prometheus scrapes every node on its METRICS_PORT');

  // Grafana: provisioning and dashboards are mounted where the provisioning files say.
  const provisioning = mounts.get('grafana:/etc/grafana/provisioning')!;
  const datasources = parse(readFileSync(new URL(`${provisioning}/datasources/prometheus.yml`, root), 'utf8')) as { datasources: { url: string }[] };
  t.is(datasources.datasources[0]!.url, `http://prometheus:${listens.prometheus![0]}`, 'Grafana reads the compose Prometheus');
  const providers = parse(readFileSync(new URL(`${provisioning}/dashboards/dispatch.yml`, root), 'utf8')) as { providers: { options: { path: string } }[] };
  const dashboards = mounts.get(`grafana:${providers.providers[0]!.options.path}`);
  t.is(dashboards, './monitoring/grafana/dashboards', 'the dashboards are mounted where the provider reads them');
  t.true(existsSync(new URL(`${dashboards}/dispatch.json`, root)));
  for (const name of ['prometheus', 'grafana']) t.regex(services[name]!.image ?? '', /:v?\d+\.\d+\.\d+$/, `${name}'s image is pinned`);
});
