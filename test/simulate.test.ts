// The simulator finishes what it starts: run for a short while against a node, it
// completes trips within the run, and when its time is up it leaves no booking in
// play (trips under way are driven to their end, the rest cancelled through the
// REST API) and no driver online. Against a node started as `npm start` starts it (with
// development tokens), it fills a city of 2,000 drivers without a setting raised.

import test from 'ava';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEdge } from './helpers/edge-client.ts';
import { eventually, repoRoot, startNodeProcess } from './helpers/node-process.ts';

const LIVE = ['scheduled', 'searching', 'offered', 'accepted', 'arriving', 'in_progress'];

test('the simulator completes trips and cleans up every booking it made when it stops', async (t) => {
  const edge = await startEdge();
  const output: string[] = [];
  const sim = spawn(process.execPath, ['scripts/simulate.ts'], {
    cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env, URL: edge.url, DRIVERS: '8', BOOKINGS_PER_MIN: '40', DURATION_S: '20', SPEEDUP: '40',
      SCHEDULED_SHARE: '0.25', PROGRESS_S: '5', CLEANUP_S: '30',
    },
  });
  sim.stdout.on('data', (d: Buffer) => output.push(d.toString()));
  sim.stderr.on('data', (d: Buffer) => output.push(d.toString()));
  const exited = new Promise<number | null>((resolve) => sim.once('exit', (code) => resolve(code)));
  t.teardown(async () => {
    if (sim.exitCode === null && sim.signalCode === null) sim.kill('SIGKILL');
    await edge.stop();
  });

  // 20 s of city, then the clean-up (bounded by CLEANUP_S): generous, never a duration assertion.
  const code = await Promise.race([exited, new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), 100_000))]);
  const text = output.join('');
  t.log(text.split('\n').slice(-8).join('\n'));
  t.is(code, 0, `the simulator exits 0 once nothing is left open:\n${text}`);
  t.regex(text, /simulation over \(20 s\)/);
  t.regex(text, /; 0 left open/);
  t.false(text.includes('\r'), 'without a terminal, progress comes as whole lines');
  t.true(text.split('\n').filter((l) => /^\d+s \| drivers/.test(l)).length >= 2, 'progress lines every PROGRESS_S');

  const admin = await edge.token('sim-test-admin', 'admin');
  const all = async () => {
    const items: { id: string; status: string; riderId: string }[] = [];
    let cursor: string | undefined;
    do {
      const res = await edge.http('GET', `/v1/bookings?limit=100${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`, { token: admin });
      if (res.status !== 200) throw new Error(`list: ${res.status}`);
      items.push(...res.body.items);
      cursor = res.body.nextCursor;
    } while (cursor);
    return items;
  };

  // The actors are the authority: every booking the simulator made has ended.
  const made = await all();
  t.true(made.length >= 3, `the simulator booked (${made.length})`);
  t.true(made.every((b) => b.riderId.startsWith('sim-r-')), 'only simulated riders booked on this node');
  for (const b of made) {
    const res = await edge.http('GET', `/v1/bookings/${b.id}`, { token: admin });
    t.is(res.status, 200);
    t.false(LIVE.includes(res.body.status), `booking ${b.id} is ${res.body.status}`);
  }
  // The read model catches up: none left in play, at least one completed within the run.
  t.true(await eventually(async () => (await all()).every((b) => !LIVE.includes(b.status)), 60_000, 250),
    `no booking left in play: ${JSON.stringify((await all()).filter((b) => LIVE.includes(b.status)))}`);
  const final = await all();
  t.true(final.some((b) => b.status === 'completed'), `a trip was completed: ${JSON.stringify(final.map((b) => b.status))}`);

  // And its drivers went offline.
  t.true(await eventually(async () => {
    const res = await edge.http('GET', '/v1/admin/drivers', { token: admin });
    const sims = (res.body.items as { id: string; status: string }[]).filter((d) => d.id.startsWith('sim-d-'));
    return sims.length === 8 && sims.every((d) => d.status === 'offline');
  }, 20_000, 250), 'every simulated driver is offline');
});

/** Runs the simulator against `url` to its end; its exit code and everything it printed. */
async function simulate(url: string, env: Record<string, string>, boundMs: number): Promise<{ code: number | null | 'timeout'; text: string }> {
  const output: string[] = [];
  const sim = spawn(process.execPath, ['scripts/simulate.ts'], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, URL: url, ...env } });
  sim.stdout.on('data', (d: Buffer) => output.push(d.toString()));
  sim.stderr.on('data', (d: Buffer) => output.push(d.toString()));
  const exited = new Promise<number | null>((resolve) => sim.once('exit', (code) => resolve(code)));
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([exited, new Promise<'timeout'>((r) => { timer = setTimeout(() => r('timeout'), boundMs); })]);
  clearTimeout(timer);
  if (code === 'timeout') { sim.kill('SIGKILL'); await exited; }
  return { code, text: output.join('') };
}

test('the simulator fills a city of 2,000 drivers against a default embedded node, no setting raised', async (t) => {
  t.timeout(900_000); // a first embedded start compiles PGlite; generous, never a duration assertion
  const dir = mkdtempSync(join(tmpdir(), 'sim-city-'));
  // As `npm start` runs it: embedded storage in DATA_DIR, every cap at its default; development tokens for the simulator.
  const node = await startNodeProcess('main.ts', {
    DATA_DIR: dir, MODE: 'embedded', DATABASE_URL: '', REDIS_URL: '', KAFKA_BROKERS: '', AUTH_DEV_TOKENS: 'true', LOG_LEVEL: 'info',
  });
  t.teardown(async () => { await node.kill('SIGTERM'); rmSync(dir, { recursive: true, force: true }); });
  const { code, text } = await simulate(node.url, {
    DRIVERS: '2000', BOOKINGS_PER_MIN: '30', DURATION_S: '20', SPEEDUP: '40', PROGRESS_S: '5', CLEANUP_S: '120',
  }, 600_000);
  t.log(text.split('\n').slice(-8).join('\n'));
  t.is(code, 0, `the run ends with nothing left open:\n${text.slice(-3000)}`);
  t.regex(text, /drivers {3}2000 asked, 2000 online at most:/, 'every driver came online');
  t.true(text.split('\n').some((l) => /^\d+s \| drivers 2000 \|/.test(l)), 'and stayed online while riders booked');
  t.notRegex(text, /refused|too_many_sockets|rate_limited|could not start/, 'no socket or token was refused');
});

test('a socket the node refuses is tried again and reported with the setting that refused it; the run goes on', async (t) => {
  const edge = await startEdge({ WS_MAX_SOCKETS_PER_IP: '12' });
  t.teardown(() => edge.stop());
  const { code, text } = await simulate(edge.url, {
    DRIVERS: '16', BOOKINGS_PER_MIN: '20', DURATION_S: '8', SPEEDUP: '40', PROGRESS_S: '4', CLEANUP_S: '30',
  }, 180_000);
  t.log(text.split('\n').slice(-8).join('\n'));
  t.regex(text, /simulation over \(8 s\)/, `the run went on to its end:\n${text}`);
  t.regex(text, /drivers {3}16 asked, 12 online at most, 4 could not start/);
  t.regex(text, /too many open sockets from this address \(its WS_MAX_SOCKETS_PER_IP: raise it on the node, or run fewer DRIVERS\)/);
  t.regex(text, /refused {3}\d+ times, tried again/);
  t.not(code, 'timeout');
});
