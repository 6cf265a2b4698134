// The README tells the truth: its ride is run here against a real node, and every
// answer the README shows (the blocks after `<!-- example:NAME -->`) must equal what
// the node answers today, with ids, tokens and times written as "…".
// `UPDATE_README=1 npm test` (or this file alone) rewrites the blocks from the run.
// It also runs the ride's shell commands as the README writes them, in bash against a
// node, with nothing a newcomer would have to install, and checks that the README links
// only to files that are in the repository.

import test from 'ava';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startEdge } from './helpers/edge-client.ts';
import { eventually, repoRoot } from './helpers/node-process.ts';

const README = join(repoRoot, 'README.md');
const BLOCK = /<!-- example:([\w.-]+) -->\n```json\n((?:(?!```)[\s\S])*?)\n```/g;

const PICKUP = { lat: 52.52, lng: 13.405 };
const DROPOFF = { lat: 52.54, lng: 13.42 };

/**
 * Measured in seconds of this run: on a loaded machine the ride's steps take seconds, not
 * milliseconds (a wait of 2 s instead of 0 failed a run), so they are shown as "…" too.
 */
const MEASURED = new Set(['meanWaitToPickupSec', 'driverUtilisation']);

/** Ids, tokens and times change every run: written as "…" (keys kept, so the shape is checked). */
function normalize(value: unknown, key = ''): unknown {
  if (Array.isArray(value)) return value.map((v) => normalize(v, key));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, normalize(v, k)]));
  }
  if (MEASURED.has(key) && typeof value === 'number') return '…';
  if (typeof value !== 'string') return value;
  if (/^\d{4}-\d\d-\d\dT/.test(value)) return '…';
  if (['quoteId', 'token'].includes(key)) return 'eyJ…';
  if (/^bk_/.test(value)) return 'bk_…';
  return value;
}

const show = (value: unknown) => JSON.stringify(normalize(value));

test('every answer shown in the README is what a node answers today', async (t) => {
  // The README shows off-peak fares: a node without peak hours answers the same at any hour.
  const edge = await startEdge({ PEAK_HOURS: 'none' });
  t.teardown(() => edge.stop());
  const seen = new Map<string, string>();
  const driverTok = await edge.token('d-7', 'driver');
  const riderTok = await edge.token('ana', 'rider');
  const adminTok = await edge.token('ops', 'admin');

  const driver = await edge.socket();
  seen.set('ws-auth', show(await driver.call({ type: 'auth', token: driverTok }, 'a')));
  seen.set('ws-online', show(await driver.call({ type: 'online', vehicleType: 'economy' }, '1')));
  seen.set('ws-location', show(await driver.call({ type: 'location', lat: 52.521, lng: 13.405, at: new Date().toISOString() }, '2')));

  const quote = await edge.http('POST', '/v1/quotes', { token: riderTok, body: { pickup: PICKUP, dropoff: DROPOFF, vehicleType: 'economy' } });
  t.is(quote.status, 201);
  seen.set('quote', show(quote.body));
  const booked = await edge.http('POST', '/v1/bookings', { token: riderTok, body: { quoteId: quote.body.quoteId }, headers: { 'idempotency-key': 'ride-1' } });
  t.is(booked.status, 201);
  seen.set('booking', show(booked.body));
  const id = booked.body.id as string;

  const rider = await edge.socket();
  await rider.call({ type: 'auth', token: riderTok }, 'a');
  seen.set('ws-subscribe', show(await rider.call({ type: 'subscribe', bookingId: id }, 's')));
  const offer = await driver.next((m) => m.type === 'offer' && m.bookingId === id);
  seen.set('ws-offer', show(offer));
  seen.set('ws-accept', show(await driver.call({ type: 'offer.accept', bookingId: id }, 'acc')));
  const accepted = await rider.next((m) => m.type === 'booking.updated' && m.booking.status === 'accepted');
  seen.set('ws-accepted', show(accepted));
  for (const step of ['trip.arrived', 'trip.start', 'trip.complete']) await driver.call({ type: step, bookingId: id }, step);
  await driver.next((m) => m.type === 'booking.updated' && m.booking.status === 'completed');

  const done = await edge.http('GET', `/v1/bookings/${id}`, { token: riderTok });
  seen.set('booking-completed', show(done.body));
  const rated = await edge.http('POST', `/v1/bookings/${id}/rating`, { token: riderTok, body: { stars: 5 } });
  seen.set('rating', show(rated.body));

  const from = new Date(Date.now() - 3_600_000).toISOString();
  const to = new Date(Date.now() + 60_000).toISOString();
  let analytics: any;
  t.true(await eventually(async () => {
    analytics = (await edge.http('GET', `/v1/admin/analytics?from=${from}&to=${to}&groupBy=cell`, { token: adminTok })).body;
    return analytics.items?.[0]?.completed === 1 && analytics.items[0].activeDrivers === 1 && analytics.items[0].newRiders === 1;
  }), JSON.stringify(analytics));
  seen.set('analytics-cell', show(analytics));

  const text = readFileSync(README, 'utf8');
  if (process.env.UPDATE_README) {
    writeFileSync(README, text.replace(BLOCK, (all, name: string) => (seen.has(name) ? `<!-- example:${name} -->\n\`\`\`json\n${seen.get(name)}\n\`\`\`` : all)));
    t.log('README examples rewritten from this run');
  }
  const shown = new Map([...readFileSync(README, 'utf8').matchAll(BLOCK)].map((m) => [m[1]!, m[2]!]));
  t.deepEqual([...shown.keys()].sort(), [...seen.keys()].sort(), 'the README shows each answer of the ride once');
  for (const [name, actual] of seen) {
    t.is(shown.get(name), actual, `README example "${name}" is stale: run UPDATE_README=1 npx ava test/readme.test.ts`);
  }
});

test('the README links only to files in the repository', (t) => {
  const text = readFileSync(README, 'utf8');
  t.notRegex(text, /\.\.\/shared/, 'no link outside the repository');
  const links = [...text.matchAll(/\]\(([^)#]+)(#[^)]*)?\)/g)].map((m) => m[1]!).filter((l) => !/^[a-z]+:/.test(l));
  t.true(links.length > 5, 'the README links the docs');
  for (const link of links) t.true(existsSync(join(repoRoot, link)), `${link} exists`);
});

/** The shell commands of the README's ride, in order; the node it starts in its own terminal is the test's. */
function rideCommands(text: string): string[] {
  const section = text.slice(text.indexOf('## The API in one ride'), text.indexOf('## Guarantees'));
  return [...section.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!).filter((block) => !block.includes('npm start'));
}

test('the README ride runs as typed: bash, curl, Node and npm run ride, ids in variables, nothing else to install', async (t) => {
  try { execFileSync('curl', ['--version'], { stdio: 'ignore' }); } catch { throw new Error('the README ride needs curl on the PATH'); }
  const commands = rideCommands(readFileSync(README, 'utf8'));
  t.true(commands.length >= 6, 'the ride is written as shell commands');
  const script = commands.join('\n');
  t.notRegex(script, /\bjq\b|websocat|date -d|date --date|bk_…|eyJ…/, 'no jq, no websocat, no GNU date, nothing to copy by hand');
  // Real windows: the ride client must beat the 10 s auth and 15 s offer windows itself.
  const edge = await startEdge({ PEAK_HOURS: 'none', OFFER_TIMEOUT_MS: '15000', DISPATCH_DEADLINE_MS: '120000' });
  t.teardown(() => edge.stop());
  t.true(script.includes('export API=http://localhost:8000'));
  const shell = spawn('bash', ['-e', '-c', script.replace('export API=http://localhost:8000', `export API=${edge.url}`)], {
    cwd: repoRoot, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RIDE_STEP_MS: '200', RIDE_TIMEOUT_S: '120' },
  });
  // The driver's app runs in the background of that shell: the whole group goes at the end.
  t.teardown(() => { try { process.kill(-shell.pid!, 'SIGKILL'); } catch { /* gone */ } });
  let output = '';
  shell.stdout.on('data', (d: Buffer) => { output += d.toString(); });
  shell.stderr.on('data', (d: Buffer) => { output += d.toString(); });
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([
    new Promise<number | null>((resolve) => shell.once('exit', (c) => resolve(c))),
    new Promise<'timeout'>((resolve) => { timer = setTimeout(() => resolve('timeout'), 180_000); }),
  ]);
  clearTimeout(timer);
  t.log(output.split('\n').filter((l) => l.startsWith('driver') || l.startsWith('rider')).slice(0, 12).join('\n'));
  t.is(code, 0, output);
  t.regex(output, /^driver < \{"type":"offer","bookingId":"bk_/m, 'the driver got the offer');
  t.regex(output, /^driver > \{"type":"offer\.accept"/m, 'and accepted it in time');
  t.regex(output, /^rider < \{"type":"booking\.updated","booking":\{[^\n]*"status":"completed"/m, 'the rider saw the trip end');
  t.regex(output, /"status":"completed"[^\n]*"rating":\{"stars":5\}/, 'and rated it');
  t.regex(output, /\{"groupBy":"cell"/, 'analytics answered for today');
});
