// The node runs the same way wherever it is started: `npm start` (package.json's start
// script, the one written copy), the image (Dockerfile ENV and CMD) and the bench (which
// reads package.json). The memory settings there (README, "Memory of a node") are what the
// bench's RSS figure is measured with, so a copy that drifts would measure another node.

import test from 'ava';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchNodeCommand } from '../bench/node-client.ts';
import { repoRoot } from './helpers/node-process.ts';
import { npmStart, parseStartScript } from './helpers/npm-start.ts';

const read = (file: string) => readFileSync(join(repoRoot, file), 'utf8');

test('the start script is read as variables, exec node, flags and the script', (t) => {
  t.deepEqual(parseStartScript('A_B=1 C=x exec node --f=2 --g main.ts'), { env: { A_B: '1', C: 'x' }, flags: ['--f=2', '--g'], script: 'main.ts' });
  t.deepEqual(parseStartScript('exec node main.ts'), { env: {}, flags: [], script: 'main.ts' });
  // What the bench could not repeat exactly is refused rather than half understood.
  for (const bad of ['node main.ts', 'A=1 exec node -e x main.ts', 'exec node --f="a b" main.ts', 'exec node --f', 'A=1 exec node main.ts && echo']) {
    t.throws(() => parseStartScript(bad), undefined, bad);
  }
  const start = npmStart();
  t.is(start.script, 'main.ts');
  t.true(Object.keys(start.env).length > 0, 'npm start sets its memory settings');
});

test('the image runs the node with npm start\'s variables and flags', (t) => {
  const start = npmStart();
  const dockerfile = read('Dockerfile');
  const env: Record<string, string> = {};
  for (const [, line] of dockerfile.matchAll(/^ENV\s+(.+)$/gm)) {
    for (const [, name, value] of line!.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=(\S+)/g)) env[name!] = value!;
  }
  for (const [name, value] of Object.entries(start.env)) t.is(env[name], value, `Dockerfile ENV ${name}`);
  for (const name of Object.keys(env).filter((n) => n.startsWith('MALLOC_') || n === 'NODE_OPTIONS')) {
    t.true(name in start.env, `the image sets ${name}, npm start does not`);
  }
  const cmd = /^CMD\s+(\[.*\])\s*$/m.exec(dockerfile);
  t.truthy(cmd, 'a CMD in exec form');
  t.deepEqual(JSON.parse(cmd![1]!), ['node', ...start.flags, start.script]);
});

test('the bench and the demo run the node with npm start\'s variables and flags', (t) => {
  const start = npmStart();
  const bench = benchNodeCommand({ DATA_DIR: '/nowhere' });
  for (const [name, value] of Object.entries(start.env)) t.is(bench.env[name], value, `the bench sets ${name}`);
  t.deepEqual(bench.args.filter((a) => start.flags.includes(a)), [...start.flags]);
  t.is(bench.args.at(-1), start.script);
  const demo = (JSON.parse(read('package.json')) as { scripts: Record<string, string> }).scripts.demo!;
  for (const [name, value] of Object.entries(start.env)) t.true(demo.includes(`${name}=${value} `), `the demo sets ${name}`);
  t.true(demo.endsWith(`node ${[...start.flags, start.script].join(' ')}`), 'the demo passes the same flags');
});

test('`npm start` hands its variables and flags to the node process itself', (t) => {
  // npm runs the script with sh: a probe loaded before main.ts (through NODE_OPTIONS, which
  // npm's own process reads too, hence the check of argv) reports what the node got, and exits.
  const dir = mkdtempSync(join(tmpdir(), 'dispatch-start-probe-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const probe = join(dir, 'probe.mjs');
  writeFileSync(probe, `if (process.argv[1]?.endsWith('main.ts')) {
  process.stdout.write('PROBE ' + JSON.stringify({ env: process.env, execArgv: process.execArgv, script: process.argv[1] }) + '\\n');
  process.exit(0);
}\n`);
  const start = npmStart();
  const scrubbed = Object.fromEntries(Object.entries(process.env).filter(([name]) => !(name in start.env)));
  const run = spawnSync('npm', ['start', '--silent'], { cwd: repoRoot, env: { ...scrubbed, NODE_OPTIONS: `--import=${probe}` }, encoding: 'utf8', timeout: 60_000 });
  const line = run.stdout.split('\n').find((l) => l.startsWith('PROBE '));
  t.truthy(line, `the probe reported (status ${run.status}): ${run.stderr.slice(-500)}`);
  const seen = JSON.parse(line!.slice('PROBE '.length)) as { env: Record<string, string>; execArgv: string[]; script: string };
  for (const [name, value] of Object.entries(start.env)) t.is(seen.env[name], value, `the node has ${name}`);
  t.deepEqual(seen.execArgv, [...start.flags]);
  t.true(seen.script.endsWith(start.script));
});
