// /docs and /redoc render in a real browser with no network: headless Chromium
// (Debian's package) driven by playwright-core; every request stays on the node.

import test from 'ava';
import { existsSync, mkdirSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';
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

for (const [path, ready, shot, strict] of [
  ['/docs', '.opblock', 'test-results/docs.png', true],
  ['/redoc', 'h2:has-text("Book now or for later")', 'test-results/redoc.png', true],
] as const) {
  test.serial(`${path} renders the API with the network cut off`, async (t) => {
    const page = await browser.newPage();
    const foreign: string[] = [];
    // No network but the node: anything else is refused, as on an air-gapped host.
    await page.route('**/*', (route) => {
      const url = route.request().url();
      if (url.startsWith(edge.url) || url.startsWith('data:') || url.startsWith('blob:')) return route.continue();
      foreign.push(url);
      return route.abort();
    });
    await page.goto(`${edge.url}${path}`);
    await page.waitForSelector(ready, { timeout: 30_000 });
    if (path === '/docs') t.true(await page.locator('.opblock').count() > 20, 'every operation is listed');
    else t.true(await page.locator('h2').count() > 20, 'every operation has a section');
    await page.screenshot({ path: shot, fullPage: false });
    // The pages' Content-Security-Policy keeps them from even asking (Redoc would fetch a logo).
    if (strict) t.deepEqual(foreign, [], 'the page asked for nothing outside the node');
    await page.close();
  });
}
