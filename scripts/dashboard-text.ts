// Renders the Dispatch dashboard as text: every panel's queries, asked of a running
// Prometheus, with the series each answers. For where Grafana is not at hand (a terminal,
// a CI log, a note), and to see at a glance that every panel has data.
//
//   node scripts/dashboard-text.ts [http://127.0.0.1:9090]

import { readFileSync } from 'node:fs';

interface Target { readonly expr: string; readonly legendFormat?: string }
interface Panel { readonly title: string; readonly type: string; readonly targets?: readonly Target[] }
interface Sample { readonly metric: Record<string, string>; readonly value: [number, string] }

const DASHBOARD = new URL('../monitoring/grafana/dashboards/dispatch.json', import.meta.url);

/** The legend Grafana would show: `{{label}}` filled from the series' labels. */
function legend(target: Target, metric: Record<string, string>): string {
  const format = target.legendFormat ?? JSON.stringify(metric);
  return format.replace(/\{\{\s*(\w+)\s*\}\}/g, (_, name: string) => metric[name] ?? '');
}

/** A figure short enough for a table: at most 4 significant digits. */
function figure(text: string): string {
  const n = Number(text);
  return Number.isFinite(n) ? String(Number(n.toPrecision(4))) : text;
}

async function query(prometheus: string, expr: string): Promise<Sample[]> {
  const url = `${prometheus}/api/v1/query?query=${encodeURIComponent(expr)}`;
  const body = await (await fetch(url)).json() as { status: string; error?: string; data?: { result: Sample[] } };
  if (body.status !== 'success') throw new Error(`${expr}: ${body.error}`);
  return body.data!.result;
}

async function render(prometheus: string): Promise<string[]> {
  const panels = (JSON.parse(readFileSync(DASHBOARD, 'utf8')) as { panels: Panel[] }).panels;
  const lines: string[] = [];
  for (const panel of panels.filter((p) => p.type !== 'row')) {
    const shown: string[] = [];
    for (const target of panel.targets ?? []) {
      const samples = await query(prometheus, target.expr);
      for (const s of samples.slice(0, 6)) shown.push(`${legend(target, s.metric)} ${figure(s.value[1])}`);
      if (samples.length > 6) shown.push(`… ${samples.length - 6} more`);
      if (samples.length === 0) shown.push(`${target.legendFormat ?? target.expr}: no data`);
    }
    lines.push(`| ${panel.title} | ${shown.join('; ')} |`);
  }
  return lines;
}

const prometheus = process.argv[2] ?? 'http://127.0.0.1:9090';
console.log(['| panel | series (value now) |', '| --- | --- |', ...await render(prometheus)].join('\n'));
