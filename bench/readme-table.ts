// Rewrites the README's figures table from bench/RESULTS.md, between the markers
// <!-- bench:start --> and <!-- bench:end -->: every row that carries one of issue 23's
// goals (value, goal, pass/FAIL) and the peers measured beside them, with when and where
// they were measured and the services' versions. `npm run bench` calls it after a full run
// with every service; by hand: `node bench/readme-table.ts`.

import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const RESULTS = new URL('./RESULTS.md', import.meta.url);
const README = new URL('../README.md', import.meta.url);
const START = '<!-- bench:start -->';
const END = '<!-- bench:end -->';

/**
 * Rows the README shows besides those with a goal: the peers the goals are compared with
 * and a few figures of their own.
 */
const SHOWN: readonly RegExp[] = [
  /^nearest k=10 3 km, .*: (ours|Redis GEOSEARCH, widening radius|PostGIS KNN \(GiST\)|in-process static index) p(50|99)$/,
  /^nearest k=10 3 km, .*: Redis server time per query/,
  /^nearest k=10 3 km, .*: ours agree with brute force/,
  /^driver copies applied/,
  /^GPS fixes\/s/,
  /^fix → every copy applied .* p99$/,
  /^booking → first offer frame .* p(50|99)$/,
  /^idle embedded node/,
  /^(heap|RSS) per/,
  /^node CPU per/,
  /^dispatch command/,
  /^(Kafka broker|PostgreSQL) CPU per dispatch command/,
  /^commands\/s, (in-memory journal|PostgreSQL)$/,
  /^projection lag, .* p99$/,
  /^rebuild analytics, .* ratio/,
];

interface Parsed { case: string; value: string; unit: string; goal: string; mark: string }

export interface ParsedResults { rows: Parsed[]; measured: string; summary?: string; services?: string }

const cells = (line: string) => line.trim().replace(/^\||\|$/g, '').split(/(?<!\\)\|/).map((c) => c.trim());

export function parseResults(text: string): ParsedResults {
  const lines = text.split('\n');
  const header = lines.findIndex((l) => l.startsWith('| bench |'));
  if (header < 0) throw new Error('RESULTS.md has no table');
  const names = cells(lines[header]!);
  const col = (row: string[], name: string) => (names.includes(name) ? row[names.indexOf(name)] ?? '' : '');
  const rows: Parsed[] = [];
  for (const line of lines.slice(header + 2)) {
    if (!line.startsWith('|')) break;
    const row = cells(line);
    rows.push({ case: col(row, 'case'), value: col(row, 'value'), unit: col(row, 'unit'), goal: col(row, 'goal'), mark: col(row, 'mark') });
  }
  const measured = lines.find((l) => l.startsWith('Measured '))?.replace(/^Measured (\S+?)T.*? on (.*?)(, in \d+ s.*)?\.$/, '$1, $2') ?? '';
  const summary = lines.find((l) => /^Issue \d+'s goals:/.test(l))?.replace(/^Issue \d+'s goals: \*\*(.*)\*\*\.$/, '$1');
  const services = /Services that answered, with the versions they report: (.*)\.$/.exec(lines.find((l) => l.includes('Services that answered')) ?? '')?.[1];
  return { rows, measured, summary, services };
}

export function readmeTable(results: string): string {
  const { rows, measured, summary, services } = parseResults(results);
  const shown = rows.filter((r) => r.goal || SHOWN.some((p) => p.test(r.case)));
  const out = [
    `Measured ${measured} by \`npm run bench\`${services ? ` against ${services}` : ''}${summary ? `: issue 23's goals, ${summary}` : ''}. `
      + 'Every row, with its note saying what it times: [`bench/RESULTS.md`](bench/RESULTS.md).',
    '',
    '| measured (2 shared cores) | figure | goal | |',
    '| --- | ---: | --- | --- |',
    ...shown.map((r) => `| ${r.case} | ${r.value === '—' ? (r.mark === 'not run' ? 'not run' : 'not measured') : `${r.value} ${r.unit}`} | ${r.goal} | ${r.mark} |`),
  ];
  // The closing note's nearest, side by side with the peers and their versions, follows the table.
  const lines = results.split('\n');
  const side = lines.indexOf('## Nearest, side by side');
  if (side >= 0) {
    const end = lines.findIndex((l, i) => i > side && l.startsWith('## '));
    out.push('', `**Nearest, side by side.** ${lines.slice(side + 1, end < 0 ? undefined : end).join('\n').trim()}`);
  }
  return out.join('\n').trimEnd();
}

export function updateReadme(): void {
  const readme = readFileSync(README, 'utf8');
  const start = readme.indexOf(START);
  const end = readme.indexOf(END);
  if (start < 0 || end < start) throw new Error(`README.md has no ${START} ... ${END} markers`);
  const next = `${readme.slice(0, start + START.length)}\n${readmeTable(readFileSync(RESULTS, 'utf8'))}\n${readme.slice(end)}`;
  if (next !== readme) writeFileSync(README, next);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) updateReadme();
