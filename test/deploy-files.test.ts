// docker-compose.yml and k8s/ must agree with the node: every variable they set is
// one the configuration reads, every port is the node's, every probe path is a route.

import test from 'ava';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { parse, parseAllDocuments } from 'yaml';
import { isVariable, loadConfig } from '../config/index.ts';
import { COMPOSE_SECRETS, makeSecrets } from '../scripts/secrets.ts';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
    const fileKeys = [
      'JWT_SECRET_FILE', 'QUOTE_SECRET_FILE', 'DATABASE_PASSWORD_FILE', 'DATA_KEYS_FILE', 'DATA_INDEX_KEY_FILE', 'CLUSTER_KEY_FILE',
      'REDIS_PASSWORD_FILE', 'KAFKA_SASL_PASSWORD_FILE',
    ];
    for (const key of fileKeys) t.truthy(files[env[key] ?? ''], `${name} reads ${key} from a mounted secret`);
    const config = loadConfig(mounted);
    t.is(config.mode, 'cluster', `${name}'s environment is a valid cluster configuration`);
    // It authenticates to Kafka and Redis and signs its commands.
    t.is(config.cluster.kafkaSecurity.sasl?.mechanism, 'scram-sha-512', `${name} logs in to Kafka`);
    t.truthy(new URL(config.storage.redisUrl!).password, `${name} gives Redis a password`);
    t.true((config.cluster.signingKeys?.length ?? 0) > 0, `${name} signs its commands`);
    t.false(config.auth.devTokens);
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
  // The Secret's keys are files under its mount; the environment names them (NAME_FILE).
  const mount = container.volumeMounts.find((m: { name: string }) => set.spec.template.spec.volumes.find((v: any) => v.name === m.name)?.secret);
  const withSecret = (values: Env) => {
    const dir = mkdtempSync(join(tmpdir(), 'dispatch-k8s-secrets-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    for (const [key, value] of Object.entries(values)) writeFileSync(join(dir, key), `${value}\n`);
    const files = Object.fromEntries((container.env as { name: string; value?: string }[]).filter((e) => e.value !== undefined)
      .map((e) => [e.name, e.value!.startsWith(`${mount.mountPath}/`) ? join(dir, e.value!.slice(mount.mountPath.length + 1)) : e.value!]));
    return { ...configMap, ...files, NODE_ID: 'dispatch-0' };
  };
  // The committed Secret is a template: its secrets are placeholders the node refuses; real ones load.
  const refused = t.throws(() => loadConfig(withSecret(secret)));
  for (const name of Object.keys(secret)) {
    t.regex(refused?.message ?? '', new RegExp(`${name} is a sample`));
  }
  const filled = {
    ...secret, JWT_SECRET: randomBytes(48).toString('base64'), QUOTE_SECRET: randomBytes(48).toString('base64'),
    DATABASE_PASSWORD: randomBytes(24).toString('base64url'), CLUSTER_KEY: randomBytes(48).toString('base64'),
    DATA_KEYS: `k1:${randomBytes(32).toString('base64')}`, DATA_INDEX_KEY: randomBytes(48).toString('base64'),
    REDIS_PASSWORD: randomBytes(24).toString('base64url'), KAFKA_SASL_PASSWORD: randomBytes(24).toString('base64url'),
  };
  const config = loadConfig(withSecret(filled));
  t.is(config.mode, 'cluster', 'ConfigMap + Secret files load as a cluster configuration');
  t.like(config.cluster.kafkaSecurity, { ssl: true, sasl: { mechanism: 'scram-sha-512', password: filled.KAFKA_SASL_PASSWORD } });
  t.is(decodeURIComponent(new URL(config.storage.redisUrl!).password), filled.REDIS_PASSWORD);
  t.is(new URL(config.storage.redisUrl!).protocol, 'rediss:', 'Redis over TLS');
  t.deepEqual(config.cluster.signingKeys, [Buffer.from(filled.CLUSTER_KEY)]);
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

test('compose: inside, everything authenticates (SASL Kafka, Redis with a password), and only nginx is published beyond loopback', (t) => {
  const compose = parse(readFileSync(new URL('docker-compose.yml', root), 'utf8'), { merge: true }) as ComposeFile;
  const services = compose.services as Record<string, ComposeFile['services'][string] & { secrets?: string[]; environment?: Env }>;
  const nodes = Object.entries(services).filter(([, s]) => s.build !== undefined);
  const brokers = Object.entries(services).filter(([, s]) => s.image?.startsWith('apache/kafka'));
  t.is(brokers.length, 3);
  const script = readFileSync(new URL('docker/kafka-broker.sh', root), 'utf8');
  t.regex(script, /^listener\.security\.protocol\.map=BROKER:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT$/m, 'every listener of the broker is SASL');
  t.regex(script, /^listeners=BROKER:\/\/.*,CONTROLLER:\/\/.*$/m);
  for (const [name, broker] of brokers) {
    t.deepEqual(broker.command, ['bash', '/etc/dispatch/kafka-broker.sh'], `${name} starts through docker/kafka-broker.sh`);
    t.true(broker.volumes?.includes('./docker/kafka-broker.sh:/etc/dispatch/kafka-broker.sh:ro'), `${name} mounts it`);
    t.deepEqual(broker.secrets?.slice().sort(), ['kafka_broker_password', 'kafka_password'], `${name} reads its passwords from secrets`);
    const env = broker.environment ?? {};
    t.false(Object.entries(env).some(([k, v]) => /LISTENER/.test(k) || /PLAINTEXT:\/\//.test(String(v))), `${name} sets no listener of its own`);
    for (const [node, spec] of nodes) t.is(spec.environment?.KAFKA_SASL_USERNAME, env.KAFKA_SASL_USERNAME, `${node} logs in as ${name}'s client user`);
  }
  for (const [node, spec] of nodes) {
    t.true(spec.secrets?.includes('kafka_password') && spec.environment?.KAFKA_SASL_PASSWORD_FILE === '/run/secrets/kafka_password', node);
    t.true(spec.secrets?.includes('redis_password') && spec.environment?.REDIS_PASSWORD_FILE === '/run/secrets/redis_password', node);
    t.is(spec.ports, undefined, `${node} publishes no port`);
  }
  const redis = services.redis!;
  t.true(redis.secrets?.includes('redis_password'));
  t.regex((redis.command ?? []).join(' '), /requirepass %s.*\$\$\(cat \/run\/secrets\/redis_password\)/, 'Redis requires the password from the secret');
  t.regex(JSON.stringify((redis as { healthcheck?: unknown }).healthcheck), /REDISCLI_AUTH/, 'its healthcheck authenticates');

  // Published ports: nginx serves the world; every UI or admin port (Jaeger, Prometheus, Grafana) only the host's loopback.
  for (const [name, service] of Object.entries(services)) {
    for (const mapping of service.ports ?? []) {
      if (name === 'nginx') continue;
      t.true(mapping.startsWith('127.0.0.1:'), `${name} publishes ${mapping} on the host's loopback only`);
    }
  }
  t.true(services.jaeger!.ports!.length > 0);
});

test('nginx writes no query string to its access log (a token in a URL stays out of it)', (t) => {
  const nginx = readFileSync(new URL('docker/nginx.conf', root), 'utf8');
  const format = /log_format\s+(\w+)\s+((?:'[^']*'\s*)+);/.exec(nginx);
  t.truthy(format, 'a log format of its own');
  for (const variable of ['$request ', '$request"', '$request_uri', '$args', '$query_string', '$is_args', '$http_referer', '$arg_']) {
    t.false(format![2]!.includes(variable), `the format leaves out ${variable.trim()}`);
  }
  t.true(format![2]!.includes('$uri'), 'the path without its query');
  const logs = [...nginx.matchAll(/access_log\s+([^;]+);/g)].map((m) => m[1]!.trim().split(/\s+/));
  t.true(logs.length > 0);
  for (const log of logs) t.true(log[0] === 'off' || log[1] === format![1], `access_log ${log.join(' ')} uses ${format![1]}`);
});

test('k8s: pods locked down, secrets as files, and a NetworkPolicy letting only the ingress reach the API and only Prometheus the metrics', (t) => {
  const dir = new URL('k8s/', root);
  const docs = readdirSync(dir).filter((f) => f.endsWith('.yaml'))
    .flatMap((f) => parseAllDocuments(readFileSync(new URL(f, dir), 'utf8')).map((d) => d.toJS() as Record<string, any>));
  const set = docs.find((d) => d.kind === 'StatefulSet')!;
  const pod = set.spec.template.spec;
  const container = pod.containers[0];
  t.false(pod.automountServiceAccountToken, 'no Kubernetes API token in the pod');
  t.like(pod.securityContext, { runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
  t.true(pod.securityContext.runAsUser > 0, 'a numeric non-root user, so runAsNonRoot can be checked');
  t.like(container.securityContext, { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true });
  t.deepEqual(container.securityContext.capabilities.drop, ['ALL']);
  t.falsy(container.securityContext.capabilities.add);
  const volumes = new Map<string, any>(pod.volumes.map((v: { name: string }) => [v.name, v]));
  for (const m of container.volumeMounts) {
    const volume = volumes.get(m.name);
    t.truthy(volume, `${m.mountPath} is a volume of the pod`);
    t.true(volume.emptyDir !== undefined || m.readOnly === true, `${m.mountPath}: writable only as an emptyDir`);
  }
  t.true(container.volumeMounts.some((m: { mountPath: string; name: string }) => m.mountPath === '/tmp' && volumes.get(m.name).emptyDir), '/tmp is writable');

  // Secrets: mounted read-only from the Secret, one NAME_FILE per key; none through the environment.
  const secret = docs.find((d) => d.kind === 'Secret')!;
  t.false((container.envFrom ?? []).some((e: { secretRef?: unknown }) => e.secretRef), 'no envFrom secretRef');
  t.false((container.env ?? []).some((e: { valueFrom?: { secretKeyRef?: unknown } }) => e.valueFrom?.secretKeyRef), 'no secretKeyRef');
  const mount = container.volumeMounts.find((m: { name: string }) => volumes.get(m.name).secret?.secretName === secret.metadata.name);
  t.truthy(mount, 'the Secret is mounted');
  t.true(mount.readOnly);
  t.is(volumes.get(mount.name).secret.defaultMode & 0o007, 0, 'not readable by other users');
  for (const key of Object.keys(secret.stringData)) {
    const path = `${mount.mountPath}/${key}`;
    t.true(container.env.some((e: { name: string; value?: string }) => e.name === `${key}_FILE` && e.value === path), `${key} is read from ${path}`);
  }

  // The NetworkPolicy: the pods' every ingress rule names who, and which port.
  const policy = docs.find((d) => d.kind === 'NetworkPolicy');
  t.truthy(policy, 'a NetworkPolicy');
  const kustomization = parse(readFileSync(new URL('kustomization.yaml', dir), 'utf8')) as { resources: string[] };
  t.true(kustomization.resources.includes('networkpolicy.yaml'), 'applied with the rest');
  t.deepEqual(policy!.spec.podSelector.matchLabels, set.spec.template.metadata.labels, 'it selects the nodes');
  t.deepEqual([...policy!.spec.policyTypes].sort(), ['Egress', 'Ingress']);
  const rules = policy!.spec.ingress as { from?: any[]; ports?: { port: string | number }[] }[];
  for (const rule of rules) {
    t.true((rule.from?.length ?? 0) > 0 && rule.from!.every((f) => f.podSelector || f.ipBlock), 'each rule names its sources (never everyone)');
    t.true((rule.ports?.length ?? 0) > 0, 'each rule names its ports');
  }
  const sources = (port: string) => rules.filter((r) => r.ports!.some((p) => p.port === port)).flatMap((r) => r.from!);
  const portNames = container.ports.map((p: { name: string }) => p.name).sort();
  t.deepEqual([...new Set(rules.flatMap((r) => r.ports!.map((p) => p.port)))].sort(), portNames, 'the API and metrics ports, nothing else');
  t.true(sources('http').length > 0 && sources('http').every((f) => /ingress/.test(JSON.stringify(f))), 'the API from the ingress controller only');
  t.true(sources('metrics').length > 0 && sources('metrics').every((f) => /prometheus/.test(JSON.stringify(f))), 'metrics from Prometheus only');

  // What the policy's openings stand for: TRUST_PROXY believes the ingress, METRICS_HOST is open because only Prometheus gets through.
  const configMap = docs.find((d) => d.kind === 'ConfigMap')!.data as Env;
  t.is(configMap.METRICS_HOST, '0.0.0.0', 'k8s opens the metrics listener beyond loopback, with the policy in place');
  t.is(String(container.ports.find((p: { name: string }) => p.name === 'metrics').containerPort), configMap.METRICS_PORT!);
  // Egress: the dependencies the configuration names, on their ports, and DNS.
  const egress = (policy!.spec.egress as { ports: { port: number; protocol: string }[] }[]).flatMap((r) => r.ports.map((p) => p.port));
  const ports = [
    configMap.KAFKA_BROKERS!.split(',')[0]!.split(':')[1], new URL(configMap.REDIS_URL!).port || '6379', new URL(configMap.DATABASE_URL!).port || '5432', '53',
  ];
  for (const port of ports) t.true(egress.includes(Number(port)), `the nodes may reach port ${port}`);
});
