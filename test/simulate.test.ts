// The simulator finishes what it starts: run for a short while against a node, it
// completes trips within the run, and when its time is up it leaves no booking in
// play (trips under way are driven to their end, the rest cancelled through the
// REST API) and no driver online.

import test from 'ava';
import { spawn } from 'node:child_process';
import { startEdge } from './helpers/edge-client.ts';
import { eventually, repoRoot } from './helpers/node-process.ts';

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
