// `npm run bench`: runs every benchmark in one process and writes bench/RESULTS.md
// with the machine and the command. `npm run bench -- --quick` for a smoke run.

import { cpus, totalmem } from 'node:os';
import { writeFileSync } from 'node:fs';
import { markdownTable, type Row } from './stats.ts';
import { runtimeBench } from './runtime.ts';

const quick = process.argv.includes('--quick');
const databaseUrl = process.env.DATABASE_URL;
const rows: Row[] = [];
const started = new Date();

rows.push(...await runtimeBench({ databaseUrl, quick }));

const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
const report = [
  '# Benchmark results',
  '',
  `Measured ${started.toISOString()} on ${machine}.`,
  `Command: \`${databaseUrl ? 'DATABASE_URL=… ' : ''}npm run bench${quick ? ' -- --quick' : ''}\``,
  '',
  markdownTable(rows),
  '',
].join('\n');
console.log(report);
if (!quick) writeFileSync(new URL('./RESULTS.md', import.meta.url), report);
process.exit(0);
