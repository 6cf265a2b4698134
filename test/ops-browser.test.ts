/// <reference lib="dom" />
// The operations page in headless Chromium against a node with the simulator
// running: it connects with the admin token as the socket's first message (the token
// comes in the address's fragment, #token=, which no request carries, and leaves the
// address bar for sessionStorage, never localStorage), says "live" only
// once a snapshot has arrived, shows drivers, cells, a shard legend naming the node
// and a surge scale, keeps its bookings in a scrolling box, and runs under a strict
// Content-Security-Policy. The capture goes to test-results/ops.png; docs/ops.png (the
// README shows it) is rewritten only when asked for (`npm run docs:ops`), so a test run
// leaves the working tree as it found it.

import test from 'ava';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type WebSocketRoute } from 'playwright-core';
import { startEdge } from './helpers/edge-client.ts';
import { repoRoot } from './helpers/node-process.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

test('the operations page shows the simulated city live', async (t) => {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium is needed at ${CHROMIUM} (apt-get install chromium; .ci/run does this) or set CHROMIUM_PATH`);
  const edge = await startEdge();
  const nodeId = edge.node.region.nodeId;
  const sim = spawn(process.execPath, ['scripts/simulate.ts'], {
    cwd: repoRoot, stdio: 'ignore',
    env: { ...process.env, URL: edge.url, DRIVERS: '25', BOOKINGS_PER_MIN: '90', DURATION_S: '300', SPEEDUP: '30', SCHEDULED_SHARE: '0' },
  });
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  t.teardown(async () => { sim.kill('SIGKILL'); await browser.close(); await edge.stop(); });
  mkdirSync('test-results', { recursive: true });

  // The page is served under a strict policy, and has no inline script for it to block.
  const served = await fetch(`${edge.url}/ops`);
  const csp = served.headers.get('content-security-policy') ?? '';
  t.regex(csp, /script-src 'self'(;|$)/);
  t.false(csp.includes('unsafe-inline') || csp.includes('unsafe-eval'), csp);
  const html = await served.text();
  t.deepEqual([...html.matchAll(/<script\b(?![^>]*\bsrc=)[^>]*>/gi)].map((m) => m[0]), [], 'no inline <script>');
  t.false(/\son[a-z]+\s*=/i.test(html), 'no inline event handlers');

  // Riders booking for later (they stay `scheduled`): enough rows for the bookings box to scroll.
  const rider = await edge.token('ops-test-rider', 'rider');
  for (let i = 0; i < 24; i++) {
    const res = await edge.http('POST', '/v1/bookings', { token: rider, body: {
      // Spread over the simulator's city (a low-discrepancy sequence, not a lattice).
      pickup: { lat: 52.49 + ((i * 0.7549) % 1) * 0.06, lng: 13.35 + ((i * 0.5698) % 1) * 0.1 }, dropoff: { lat: 52.52, lng: 13.4 }, vehicleType: 'economy',
      scheduledAt: new Date(Date.now() + 2 * 3_600_000).toISOString(),
    } });
    t.is(res.status, 201);
  }

  const page = await browser.newPage({ viewport: { width: 1280, height: 760 } });
  const violations: string[] = [];
  page.on('console', (m) => { if (/Content[- ]Security[- ]Policy/i.test(m.text())) violations.push(m.text()); });
  // Every socket goes through here: its URL and first message are recorded, and snapshots
  // are held back until released, to see the status before and after the first frame.
  const sockets: { url: string; first?: unknown; route: WebSocketRoute; close(): void }[] = [];
  let holdSnapshots = true;
  const held: (() => void)[] = [];
  await page.routeWebSocket(/\/v1\/ws/, (ws) => {
    const server = ws.connectToServer();
    const entry: (typeof sockets)[number] = { url: ws.url(), route: ws, close: () => { void ws.close({ code: 1001, reason: 'test' }); void server.close(); } };
    sockets.push(entry);
    ws.onMessage((m) => { entry.first ??= JSON.parse(String(m)); server.send(m); });
    server.onMessage((m) => {
      const forward = () => ws.send(m);
      if (holdSnapshots && JSON.parse(String(m)).type === 'ops.snapshot') held.push(forward); else forward();
    });
  });

  const token = await edge.token('ops-admin', 'admin');
  // Every request the page makes, to see that the token in the fragment never travels.
  const requested: string[] = [];
  page.on('request', (r) => requested.push(r.url()));
  await page.goto(`${edge.url}/ops#token=${token}`);

  // The token went from the address bar to sessionStorage, and from there into the socket's first message.
  t.false(page.url().includes('token'), page.url());
  t.false(requested.some((u) => u.includes(token)), `no request carried the token: ${requested.join(' ')}`);
  t.false(page.url().includes(token));
  t.is(await page.evaluate(() => sessionStorage.getItem('opsToken')), token);
  t.false(JSON.stringify(await page.evaluate(() => ({ ...localStorage }))).includes(token), 'nothing in localStorage');
  t.is(await page.evaluate(() => localStorage.length), 0);
  await t.notThrowsAsync(waitFor(() => sockets.length >= 1 && sockets[0]!.first !== undefined), 'a socket opened and spoke');
  t.false(sockets[0]!.url.includes(token), `no token in the socket URL: ${sockets[0]!.url}`);
  t.deepEqual(sockets[0]!.first, { type: 'auth', token, ref: 'auth' });

  // Authenticated and subscribed, but no frame yet: not "live".
  await waitFor(() => held.length >= 1);
  t.is(await page.textContent('#status'), 'connecting…');
  holdSnapshots = false;
  for (const release of held.splice(0)) release();
  await page.waitForFunction(() => document.querySelector('#status')?.textContent === 'live', undefined, { timeout: 15_000 });

  await page.waitForFunction(() => Number(document.querySelector('#map')?.getAttribute('data-drivers')) >= 20, undefined, { timeout: 30_000 });
  t.true(Number(await page.getAttribute('#map', 'data-cells')) >= 1, 'cells are drawn');
  t.is(await page.textContent('#status'), 'live');
  t.true(Number(await page.textContent('#c-driversOnline')) >= 20);

  // The shard grid has a legend naming the node that owns the shards, in the node's colour, not red.
  const legend = page.locator('#shard-legend .item.node');
  t.is(await legend.count(), 1);
  t.is(await legend.first().getAttribute('data-node'), nodeId);
  t.regex(await legend.first().textContent() ?? '', new RegExp(`${nodeId} \\(this node\\) · 8 shards`));
  const colours = await page.$$eval('#shards div', (divs) => divs.map((d) => [d.getAttribute('data-node'), getComputedStyle(d).backgroundColor]));
  t.is(colours.length, 8);
  const swatch = await page.$eval('#shard-legend .item.node .swatch', (s) => getComputedStyle(s).backgroundColor);
  for (const [node, colour] of colours) {
    t.is(node, nodeId);
    t.is(colour, swatch, 'a shard has its owner\'s colour from the legend');
    const [r, g, b] = colour!.match(/\d+/g)!.map(Number);
    t.false(r! > 150 && g! < 90 && b! < 90, `owned shards are not alarm red: ${colour}`);
  }
  t.is(await page.locator('#shard-legend .item.unowned').count(), 0, 'no unowned shards to flag');

  // The surge shading has its scale, multipliers from none to the cap.
  const steps = await page.$$eval('#surge-scale .step', (s) => s.map((e) => e.textContent));
  t.true(steps.length >= 3, JSON.stringify(steps));
  t.is(steps[0], '×1.0');
  t.is(steps.at(-1), '×2.5+', 'the top step is open-ended, up to the cap');

  // Bookings scroll inside their own box: the shard grid stays on screen.
  const box = await page.$eval('#bookings-box', (el) => ({ overflowY: getComputedStyle(el).overflowY, maxHeight: getComputedStyle(el).maxHeight }));
  t.is(box.overflowY, 'auto');
  t.not(box.maxHeight, 'none');
  await page.waitForFunction(() => document.querySelectorAll('#bookings tbody tr').length >= 24, undefined, { timeout: 15_000 });
  t.true(await page.$eval('#bookings-box', (el) => el.scrollHeight > el.clientHeight + 20), 'the box scrolls');
  const grid = await page.locator('#shards').boundingBox();
  t.truthy(grid);
  t.true(grid!.y + grid!.height <= 760, `the shard grid is on screen (bottom at ${grid!.y + grid!.height})`);

  // Follow one booking being dispatched until its status on screen changes.
  const row = page.locator('#bookings tbody tr:not([data-status="scheduled"])').first();
  await row.waitFor({ timeout: 30_000 });
  const id = await row.getAttribute('data-booking');
  const first = await row.getAttribute('data-status');
  await page.waitForFunction(([bid, s]) => {
    const el = document.querySelector(`#bookings tr[data-booking="${bid}"]`);
    return !el || el.getAttribute('data-status') !== s; // changed, or finished and left the list
  }, [id, first] as const, { timeout: 40_000 });
  t.pass(`booking ${id} moved on from ${first} on screen`);

  // The capture for the README: once trips have been completed and others are under way (best effort).
  await page.waitForFunction(() => Number(document.querySelector('#c-completed')?.textContent) >= 1
    && document.querySelectorAll('#bookings tr[data-status="in_progress"]').length >= 1, undefined, { timeout: 30_000 }).catch(() => undefined);
  const committed = join(repoRoot, 'docs', 'ops.png');
  const digest = () => (existsSync(committed) ? createHash('sha256').update(readFileSync(committed)).digest('hex') : 'absent');
  const pictured = digest();
  await page.screenshot({ path: join(repoRoot, 'test-results', 'ops.png') });
  const asked = Boolean(process.env.UPDATE_OPS_PNG);
  if (asked) copyFileSync(join(repoRoot, 'test-results', 'ops.png'), committed);
  if (!asked) t.is(digest(), pictured, 'docs/ops.png is rewritten only by npm run docs:ops');

  // The socket closes: "disconnected"; it reconnects with the token from sessionStorage, live again.
  const before = sockets.length;
  sockets.at(-1)!.close();
  await page.waitForFunction(() => document.querySelector('#status')?.textContent === 'disconnected', undefined, { timeout: 10_000 });
  await page.waitForFunction(() => document.querySelector('#status')?.textContent === 'live', undefined, { timeout: 20_000 });
  t.true(sockets.length > before, 'a new socket');
  t.deepEqual(sockets.at(-1)!.first, { type: 'auth', token, ref: 'auth' });

  // Opened without a token: the page asks for one (no prompt(), no storage beyond the tab), and refuses a bad one.
  const bare = await browser.newPage();
  bare.on('console', (m) => { if (/Content[- ]Security[- ]Policy/i.test(m.text())) violations.push(m.text()); });
  await bare.goto(`${edge.url}/ops`);
  await bare.waitForFunction(() => document.querySelector('#status')?.textContent === 'admin token needed', undefined, { timeout: 10_000 });
  t.true(await bare.isVisible('#login'));
  await bare.fill('#token-input', 'not-a-token');
  await bare.click('#login button');
  await bare.waitForFunction(() => document.querySelector('#status')?.textContent === 'token refused', undefined, { timeout: 10_000 });
  await bare.fill('#token-input', token);
  await bare.click('#login button');
  await bare.waitForFunction(() => document.querySelector('#status')?.textContent === 'live', undefined, { timeout: 15_000 });
  t.false(await bare.isVisible('#login'));
  t.is(await bare.evaluate(() => localStorage.length), 0);

  // Opened the old way, the token in the query: it was sent (and logged) already, so it leaves the address bar unused.
  const old = await browser.newPage();
  await old.goto(`${edge.url}/ops?token=${token}&x=1`);
  await old.waitForFunction(() => document.querySelector('#status')?.textContent === 'admin token needed', undefined, { timeout: 10_000 });
  t.is(new URL(old.url()).search, '?x=1', 'the token left the address bar, the rest stayed');
  t.is(await old.evaluate(() => sessionStorage.getItem('opsToken')), null);
  t.deepEqual(violations, [], 'no Content-Security-Policy violations');
});

async function waitFor(check: () => boolean, timeoutMs = 15_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}
