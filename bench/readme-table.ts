// Rewrites the README's figures table from bench/RESULTS.md, between the markers
// <!-- bench:start --> and <!-- bench:end -->: every row that carries one of issue 14's
// goals (value, goal, pass/FAIL) and the peers measured beside them, with when and where
// they were measured. `npm run bench` calls it after a full run; by hand:
// `node bench/readme-table.ts`.

import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const RESULTS = new URL('./RESULTS.md', import.meta.url);
const README = new URL('../README.md', import.meta.url);
const START = '<!-- bench:start -->';
const END = '<!-- bench:end -->';

/**
 * Rows the README shows besides those with a goal: the peers the goals are compared with
 * and a few figures of their own (names of older runs' rows match too).
 */
const SHOWN: readonly RegExp[] = [
  /^nearest k=10 3 km over .* (cell actors|Redis GEOSEARCH|brute force) p50$/,
  /^nearest.*agree/,
  /ratio Redis \/ cell actors/,
  /^cell updates\/s/,
  /^Redis GEOADD pipelined\/s \(same (100k|100000|1M)/,
  /^GPS fixes\/s/,
  /^fix → visible.* p99$/,
  /^booking → first offer at .* p99$/,
  /^commands\/s, (in-memory journal|PostgreSQL)$/,
  /^recover 1000 events (no snapshot|with snapshot), PostgreSQL$/,
  /^commands\/s end to end/,
  /^CPU per command/,
  /^shards moved 3→4 nodes/,
  /^heap per/,
];

interface Parsed { case: string; value: string; unit: string; goal: string; mark: string }

const cells = (line: string) => line.trim().replace(/^\||\|$/g, '').split(/(?<!\\)\|/).map((c) => c.trim());

export function parseResults(text: string): { rows: Parsed[]; measured: string; summary?: string } {
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
  const summary = lines.find((l) => l.startsWith("Issue 14's goals:"))?.replace(/^Issue 14's goals: \*\*(.*)\*\*\.$/, '$1');
  return { rows, measured, summary };
}

export function readmeTable(results: string): string {
  const { rows, measured, summary } = parseResults(results);
  const shown = rows.filter((r) => r.goal || SHOWN.some((p) => p.test(r.case)));
  const out = [
    `Measured ${measured} by \`npm run bench\`${summary ? `: issue 14's goals, ${summary}` : ''}. Every row, with its note: [\`bench/RESULTS.md\`](bench/RESULTS.md).`,
    '',
    '| measured (2 shared cores) | figure | goal | |',
    '| --- | ---: | --- | --- |',
    ...shown.map((r) => `| ${r.case} | ${r.value === '—' ? 'not measured' : `${r.value} ${r.unit}`} | ${r.goal} | ${r.mark} |`),
  ];
  return out.join('\n');
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
