/// <reference lib="dom" />
// The operations page in headless Chromium against a node with the simulator
// running: drivers and cells appear, and a booking's status changes on screen.

import test from 'ava';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { startEdge } from './helpers/edge-client.ts';
import { repoRoot } from './helpers/node-process.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

test('the operations page shows the simulated city live', async (t) => {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium is needed at ${CHROMIUM} (apt-get install chromium; .ci/run does this) or set CHROMIUM_PATH`);
  const edge = await startEdge();
  const sim = spawn(process.execPath, ['scripts/simulate.ts'], {
    cwd: repoRoot, stdio: 'ignore',
    env: { ...process.env, URL: edge.url, DRIVERS: '25', BOOKINGS_PER_MIN: '90', DURATION_S: '60', SPEEDUP: '30' },
  });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  t.teardown(async () => { sim.kill('SIGKILL'); await browser.close(); await edge.stop(); });
  mkdirSync('test-results', { recursive: true });
  const page = await browser.newPage({ viewport: { width: 1280, height: 760 } });
  await page.goto(`${edge.url}/ops?token=${await edge.token('ops-admin', 'admin')}`);
  await page.waitForFunction(() => Number(document.querySelector('#map')?.getAttribute('data-drivers')) >= 20, undefined, { timeout: 30_000 });
  t.true(Number(await page.getAttribute('#map', 'data-cells')) >= 1, 'cells are drawn');
  t.is(await page.textContent('#status'), 'live');
  // Follow one booking row until its status on screen changes.
  // A scheduled booking would wait minutes: follow one that is being dispatched.
  const row = page.locator('#bookings tbody tr:not([data-status="scheduled"])').first();
  await row.waitFor({ timeout: 30_000 });
  const id = await row.getAttribute('data-booking');
  const first = await row.getAttribute('data-status');
  await page.waitForFunction(([bid, s]) => {
    const el = document.querySelector(`#bookings tr[data-booking="${bid}"]`);
    return !el || el.getAttribute('data-status') !== s; // changed, or finished and left the list
  }, [id, first] as const, { timeout: 40_000 });
  t.pass(`booking ${id} moved on from ${first} on screen`);
  t.true(Number(await page.textContent('#c-driversOnline')) >= 20);
  // The README's docs/ops.png is a copy of this capture.
  await page.screenshot({ path: 'test-results/ops.png' });
});
