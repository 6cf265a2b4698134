// `node scripts/k8s-monitoring.ts`: writes k8s/monitoring/prometheus-rule.yaml and
// dashboard.yaml from the rules and the dashboard in monitoring/, the one source of both
// (test/monitoring.test.ts fails when the k8s copies differ from it).

import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';

const root = new URL('../', import.meta.url);
export const RULES = 'monitoring/prometheus/rules/dispatch.rules.yml';
export const DASHBOARD = 'monitoring/grafana/dashboards/dispatch.json';

const header = (from: string) => `# Written by \`node scripts/k8s-monitoring.ts\` from ${from}; edit that, not this.\n`;

export function prometheusRule(): string {
  const rules = parse(readFileSync(new URL(RULES, root), 'utf8')) as { groups: unknown[] };
  const doc = {
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'PrometheusRule',
    metadata: { name: 'dispatch' },
    spec: { groups: rules.groups },
  };
  return header(RULES) + stringify(doc, { lineWidth: 0 });
}

export function dashboardConfigMap(): string {
  const json = readFileSync(new URL(DASHBOARD, root), 'utf8');
  const doc = {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name: 'dispatch-dashboard', labels: { grafana_dashboard: '1' } },
    data: { 'dispatch.json': json },
  };
  return header(DASHBOARD) + stringify(doc, { lineWidth: 0, blockQuote: 'literal' });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(new URL('k8s/monitoring/prometheus-rule.yaml', root), prometheusRule());
  writeFileSync(new URL('k8s/monitoring/dashboard.yaml', root), dashboardConfigMap());
  console.log('wrote k8s/monitoring/prometheus-rule.yaml and k8s/monitoring/dashboard.yaml');
}
