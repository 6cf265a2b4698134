// `npm run demo` issues development tokens (anyone may ask one for any role), so it binds
// loopback unless HOST says otherwise, and the link it prints carries the admin token in the
// fragment (#token=), which no browser sends: no access log or proxy sees it.

import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { eventually, repoRoot, START_BOUND_MS } from './helpers/node-process.ts';

const external = Object.values(networkInterfaces()).flat().find((a) => a && !a.internal && a.family === 'IPv4')?.address;

test('npm run demo binds 127.0.0.1 and prints the operations link with the token in the fragment', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'dispatch-demo-'));
  const { HOST: _, ...inherited } = process.env;
  const demo = spawn('npm', ['run', '-s', 'demo'], {
    cwd: repoRoot, detached: true, stdio: ['ignore', 'ignore', 'pipe'],
    env: {
      ...inherited, DATA_DIR: dir, PORT: '0', MODE: 'embedded', DATABASE_URL: '', REDIS_URL: '', KAFKA_BROKERS: '',
      EMBEDDED_OPEN_TIMEOUT_MS: String(START_BOUND_MS), DRIVERS: '3', BOOKINGS_PER_MIN: '1',
    },
  });
  const exited = new Promise<void>((resolve) => demo.once('exit', () => resolve()));
  t.teardown(async () => {
    // Its own process group: npm, the shell and the node (the simulator leaves when the node does).
    try { process.kill(-demo.pid!, 'SIGKILL'); } catch { /* gone */ }
    await exited;
    rmSync(dir, { recursive: true, force: true });
  });
  const lines: string[] = [];
  createInterface({ input: demo.stderr! }).on('line', (l) => lines.push(l));
  t.true(await eventually(async () => lines.some((l) => l.startsWith('watch the city: ')), START_BOUND_MS), lines.join('\n'));

  const link = new URL(lines.find((l) => l.startsWith('watch the city: '))!.slice('watch the city: '.length));
  t.is(link.hostname, '127.0.0.1');
  t.is(link.pathname, '/ops');
  t.is(link.search, '', 'nothing in the query, which requests carry');
  t.regex(link.hash, /^#token=[\w-]+\.[\w-]+\.[\w-]+$/, 'the token in the fragment');
  const started = readFileSync(join(dir, 'node.log'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { msg?: string; url?: string })
    .find((e) => e.msg === 'node started');
  t.is(new URL(started!.url!).hostname, '127.0.0.1', 'the node bound loopback');
  t.is((await fetch(`${link.origin}/health`)).status, 200);
  if (external) {
    const outside = await fetch(`http://${external}:${link.port}/health`).then((r) => r.status, (e: Error) => (e.cause as { code?: string })?.code);
    t.is(outside, 'ECONNREFUSED', `nothing answers on ${external}`);
  }
});
