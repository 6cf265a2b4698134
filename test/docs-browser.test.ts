// /docs, /redoc and /docs/ws render in a real browser with no network: headless
// Chromium (Debian's package) driven by playwright-core; every request stays on
// the node, and the pages' CSP (no inline script) is never violated.

import test from 'ava';
import { existsSync, mkdirSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { ClientMessage, ServerMessage, messageTypes } from '../http/ws-messages.ts';
import { startEdge, type EdgeNode } from './helpers/edge-client.ts';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
let edge: EdgeNode;
let browser: Browser;

test.before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium is needed at ${CHROMIUM} (apt-get install chromium; .ci/run does this) or set CHROMIUM_PATH`);
  edge = await startEdge();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  mkdirSync('test-results', { recursive: true });
});
test.after.always(async () => { await browser?.close(); await edge?.stop(); });

/** A page that may reach nothing but the node, and that records what the browser complains about. */
async function offlinePage(): Promise<{ page: Page; foreign: string[]; complaints: string[] }> {
  const page = await browser.newPage();
  const foreign: string[] = [];
  const complaints: string[] = [];
  // No network but the node: anything else is refused, as on an air-gapped host.
  await page.route('**/*', (route) => {
    const url = route.request().url();
    if (url.startsWith(edge.url) || url.startsWith('data:') || url.startsWith('blob:')) return route.continue();
    foreign.push(url);
    return route.abort();
  });
  page.on('console', (m) => { if (/Content Security Policy|Refused to/i.test(m.text())) complaints.push(m.text()); });
  page.on('pageerror', (e) => complaints.push(String(e)));
  return { page, foreign, complaints };
}

for (const [path, ready, shot, strict] of [
  ['/docs', '.opblock', 'test-results/docs.png', true],
  ['/redoc', 'h2:has-text("Book now or for later")', 'test-results/redoc.png', true],
] as const) {
  test.serial(`${path} renders the API with the network cut off`, async (t) => {
    const { page, foreign, complaints } = await offlinePage();
    await page.goto(`${edge.url}${path}`);
    await page.waitForSelector(ready, { timeout: 30_000 });
    if (path === '/docs') t.true(await page.locator('.opblock').count() > 20, 'every operation is listed');
    else t.true(await page.locator('h2').count() > 20, 'every operation has a section');
    await page.screenshot({ path: shot, fullPage: false });
    // The pages' Content-Security-Policy keeps them from even asking (Redoc would fetch a logo).
    if (strict) t.deepEqual(foreign, [], 'the page asked for nothing outside the node');
    // (Redoc's CDN logo is refused on purpose, by img-src.)
    t.deepEqual(complaints.filter((c) => /script/i.test(c)), [], 'no script was refused by the CSP (none is inline)');
    await page.close();
  });
}

test.serial('/docs/ws renders the WebSocket protocol from /asyncapi.json with the network cut off', async (t) => {
  const { page, foreign, complaints } = await offlinePage();
  await page.goto(`${edge.url}/docs/ws`);
  // A message of the protocol, by name, is on the page once the document is parsed and rendered.
  await page.getByText('offer.accept', { exact: true }).first().waitFor({ state: 'attached', timeout: 30_000 });
  await page.getByText('dispatch-actors WebSocket API').filter({ visible: true }).first().waitFor({ timeout: 30_000 });
  const text = await page.locator('body').textContent() ?? '';
  t.true(text.includes('dispatch-actors WebSocket API'), 'the title');
  for (const type of [...messageTypes(ClientMessage), ...messageTypes(ServerMessage)]) t.true(text.includes(type), `message ${type} is shown`);
  await page.screenshot({ path: 'test-results/docs-ws.png', fullPage: false });
  t.deepEqual(foreign, [], 'the page asked for nothing outside the node');
  t.deepEqual(complaints, [], 'no CSP refusal and no script error');
  await page.close();
});
