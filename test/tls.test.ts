// The node serving TLS itself (TLS_CERT_FILE, TLS_KEY_FILE): a whole ride over HTTPS and
// WSS with a certificate from `npm run certs`, trusted through its development CA only.

import test from 'ava';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { get as httpsGet } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getCACertificates, setDefaultCACertificates } from 'node:tls';
import { ConfigError, loadConfig } from '../config/index.ts';
import { makeDevCertificates, type DevCertificates } from '../scripts/certs.ts';
import { startEdge, type EdgeNode } from './helpers/edge-client.ts';

const PICKUP = { lat: 41.3874, lng: 2.1686 };
const DROPOFF = { lat: 41.4036, lng: 2.1744 };

let dir: string;
let certs: DevCertificates;
let edge: EdgeNode;

test.before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'dispatch-tls-'));
  certs = await makeDevCertificates(dir);
  // This test process trusts the development CA, as a client given certs/ca.pem would.
  setDefaultCACertificates([...getCACertificates('default'), readFileSync(certs.caFile, 'utf8')]);
  edge = await startEdge({ TLS_CERT_FILE: certs.certFile, TLS_KEY_FILE: certs.keyFile });
});
test.after.always(async () => {
  await edge?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test.serial('a whole ride over HTTPS and WSS: quote, book, offer, accept, arrive, start, complete', async (t) => {
  t.regex(edge.url, /^https:\/\//);
  const driver = await edge.socket(await edge.token('tls-driver', 'driver'));
  t.is((await driver.call({ type: 'online', vehicleType: 'economy' }, 'on')).type, 'ack');
  const fix = { type: 'location', lat: PICKUP.lat + 0.002, lng: PICKUP.lng, at: new Date().toISOString() };
  t.is((await driver.call(fix, 'fix')).type, 'ack');

  const riderToken = await edge.token('tls-rider', 'rider');
  const quote = await edge.http('POST', '/v1/quotes', { token: riderToken, body: { pickup: PICKUP, dropoff: DROPOFF, vehicleType: 'economy' } });
  t.is(quote.status, 201);
  t.truthy(quote.headers.get('strict-transport-security'), 'HSTS is sent over TLS');
  const booked = await edge.http('POST', '/v1/bookings', { token: riderToken, body: { quoteId: quote.body.quoteId } });
  t.is(booked.status, 201, JSON.stringify(booked.body));
  const id = booked.body.id as string;
  const rider = await edge.socket(riderToken);
  t.is((await rider.call({ type: 'subscribe', bookingId: id }, 'sub')).type, 'ack');

  await driver.next((m) => m.type === 'offer' && m.bookingId === id);
  t.is((await driver.call({ type: 'offer.accept', bookingId: id }, 'acc')).type, 'ack');
  for (const step of ['trip.arrived', 'trip.start', 'trip.complete']) {
    t.is((await driver.call({ type: step, bookingId: id }, step)).type, 'ack', step);
  }
  await rider.next((m) => m.type === 'booking.updated' && m.booking.status === 'completed');
  const view = await edge.http('GET', `/v1/bookings/${id}`, { token: riderToken });
  t.is(view.body.status, 'completed');
});

test.serial('a client that does not trust the development CA is refused the connection', async (t) => {
  const outcome = await new Promise<string>((resolve) => {
    // Only the public CAs Node bundles: the certificate chains to nothing it knows.
    const req = httpsGet(`${edge.url}/health`, { ca: getCACertificates('bundled') }, (res) => resolve(`answered ${res.statusCode}`));
    req.on('error', (error) => resolve((error as NodeJS.ErrnoException).code ?? error.message));
  });
  t.regex(outcome, /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY|SELF_SIGNED_CERT_IN_CHAIN/);
});

test.serial('plain HTTP to the TLS port gets no answer from the API', async (t) => {
  const { port } = new URL(edge.url);
  const outcome = await new Promise<string>((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/health' }, (res) => resolve(`answered ${res.statusCode}`));
    req.on('error', (error) => resolve(`refused: ${(error as NodeJS.ErrnoException).code ?? error.message}`));
    req.setTimeout(10_000, () => { req.destroy(); resolve('refused: timeout'); });
    req.end();
  });
  // Node's TLS server answers a cleartext request with a bare 400 and closes: never the API.
  t.true(outcome.startsWith('refused') || outcome === 'answered 400', outcome);
});

test('TLS files that are missing, alone or not a certificate and its key stop the node with one line each', (t) => {
  const problems = (env: Record<string, string>) => {
    try {
      loadConfig(env);
      return [];
    } catch (error) {
      return error instanceof ConfigError ? [...error.problems] : [String(error)];
    }
  };
  t.deepEqual(problems({ TLS_CERT_FILE: certs.certFile }), ['TLS_CERT_FILE and TLS_KEY_FILE go together: set both (HTTPS) or neither (plain HTTP)']);
  t.regex(problems({ TLS_CERT_FILE: certs.certFile, TLS_KEY_FILE: join(dir, 'nope.pem') })[0] ?? '', /^TLS_KEY_FILE: cannot read .*nope\.pem \(ENOENT\)$/);
  const swapped = join(dir, 'not-a-key.pem');
  writeFileSync(swapped, readFileSync(certs.caFile));
  t.regex(problems({ TLS_CERT_FILE: certs.certFile, TLS_KEY_FILE: swapped })[0] ?? '', /^TLS_CERT_FILE and TLS_KEY_FILE are not a usable PEM certificate and its key/);
  t.deepEqual(loadConfig({ TLS_CERT_FILE: certs.certFile, TLS_KEY_FILE: certs.keyFile }).http.tls?.cert, readFileSync(certs.certFile, 'utf8'));
});

test('Kafka: TLS and SASL from the configuration; PLAIN without TLS is refused, SCRAM (no password on the wire) is not', (t) => {
  const base = { MODE: 'embedded' };
  t.deepEqual(loadConfig(base).cluster.kafkaSecurity, { ssl: false });
  const secured = loadConfig({ ...base, KAFKA_SSL: 'true', KAFKA_SASL_MECHANISM: 'scram-sha-512', KAFKA_SASL_USERNAME: 'dispatch', KAFKA_SASL_PASSWORD: 'k7#pQ2!x' });
  t.deepEqual(secured.cluster.kafkaSecurity, { ssl: true, sasl: { mechanism: 'scram-sha-512', username: 'dispatch', password: 'k7#pQ2!x' } });
  const error = t.throws(() => loadConfig({ ...base, KAFKA_SASL_MECHANISM: 'plain', KAFKA_SASL_USERNAME: 'u', KAFKA_SASL_PASSWORD: 'p' }), { instanceOf: ConfigError });
  t.regex(error?.message ?? '', /KAFKA_SASL_MECHANISM=plain needs KAFKA_SSL=true/);
  const scram = loadConfig({ ...base, KAFKA_SASL_MECHANISM: 'scram-sha-512', KAFKA_SASL_USERNAME: 'dispatch', KAFKA_SASL_PASSWORD: 'k7#pQ2!x' });
  t.deepEqual(scram.cluster.kafkaSecurity, { ssl: false, sasl: { mechanism: 'scram-sha-512', username: 'dispatch', password: 'k7#pQ2!x' } });
});
