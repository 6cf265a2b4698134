// The personal-data keyring on its own: sealing, tamper detection, key ids, the email index,
// re-sealing for rotation, and how the keys are configured. Pure: no services.

import test from 'ava';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '../config/index.ts';
import { keyringFor } from '../adapters/personal-data-keys.ts';
import { Keyring, PersonalDataError, driverContactPath, isSealed, keyIdOf, newKeyLine, resealJson, revealFields, sealFields } from '../runtime/personal-data.ts';

const k1 = randomBytes(32);
const k2 = randomBytes(32);
const index = randomBytes(32);
const ring = (activeId: string, keys: [string, Buffer][] = [['k1', k1], ['k2', k2]], indexKey = index) => new Keyring({ keys: new Map(keys), activeId, indexKey });

test('a sealed value opens to the plaintext, carries its key id and shows nothing of the plaintext', (t) => {
  const keys = ring('k1');
  const plain = 'Zoë Ødegaard +44 7700 900123';
  const sealed = keys.seal(plain);
  t.true(isSealed(sealed));
  t.is(keyIdOf(sealed), 'k1');
  t.false(sealed.includes('900123'));
  t.is(keys.open(sealed), plain);
  t.not(keys.seal(plain), sealed, 'a fresh IV each time: equal values do not look equal');
  t.is(keys.open(keys.seal('')), '');
});

test('an altered value, a relabelled key id and an unknown key id are refused, each saying why', (t) => {
  const keys = ring('k1');
  const sealed = keys.seal('alice@example.org');
  const [prefix, id, iv, body] = sealed.split('.') as [string, string, string, string];
  const flipped = `${body.slice(0, 5)}${body[5] === 'A' ? 'B' : 'A'}${body.slice(6)}`;
  t.throws(() => keys.open([prefix, id, iv, flipped].join('.')), { instanceOf: PersonalDataError, message: /failed authentication/ });
  // The key id is authenticated: the same bytes under another key's id do not open.
  t.throws(() => keys.open([prefix, 'k2', iv, body].join('.')), { instanceOf: PersonalDataError, message: /failed authentication/ });
  t.throws(() => ring('k2', [['k2', k2]]).open(sealed), { instanceOf: PersonalDataError, message: /key id "k1", which is not in DATA_KEYS \(have: k2\)/ });
  t.throws(() => keys.open('alice@example.org'), { message: /not a sealed value/ });
  t.is(keys.reveal('alice@example.org'), 'alice@example.org', 'plaintext from before sealing reads as it is');
});

test('the email index is deterministic, ignores case and spaces, and depends on the index key', (t) => {
  const a = ring('k1');
  const b = ring('k2');
  const other = ring('k1', [['k1', k1]], randomBytes(32));
  t.is(a.emailIndex('Alice@Example.org '), a.emailIndex('alice@example.org'));
  t.is(a.emailIndex('alice@example.org'), b.emailIndex('alice@example.org'), 'the data key does not matter: rotation keeps lookups');
  t.not(a.emailIndex('alice@example.org'), other.emailIndex('alice@example.org'));
  t.not(a.emailIndex('alice@example.org'), a.emailIndex('alicf@example.org'));
  t.regex(a.emailIndex('alice@example.org'), /^[0-9a-f]{64}$/);
});

test('reseal moves a value to the active key, leaves one already there, and seals plaintext', (t) => {
  const old = ring('k1').seal('Bob');
  const keys = ring('k2');
  const moved = keys.reseal(old)!;
  t.is(keyIdOf(moved), 'k2');
  t.is(keys.open(moved), 'Bob');
  t.is(keys.reseal(moved), undefined);
  t.is(keyIdOf(keys.reseal('Bob')!), 'k2');
});

test('resealJson re-seals sealed strings anywhere and plaintext only where told', (t) => {
  const k = ring('k1');
  const state = { profile: { name: 'Carol', phone: k.seal('+1 555'), active: true }, note: 'Carol', list: [k.seal('x')] };
  const moved = resealJson(ring('k2'), state, driverContactPath);
  t.is(moved.resealed, 3);
  const v = moved.value as typeof state;
  t.is(keyIdOf(v.profile.name), 'k2');
  t.is(keyIdOf(v.profile.phone), 'k2');
  t.is(v.note, 'Carol', 'a plaintext string outside a profile is not personal data');
  t.is(v.profile.active, true);
  t.is(ring('k2').open(v.list[0]!), 'x');
  t.is(resealJson(ring('k2'), v, driverContactPath).resealed, 0, 'a second run finds nothing');
});

test('sealFields and revealFields touch only the contact fields', (t) => {
  const k = ring('k1');
  const sealed = sealFields(k, { name: 'Dee', phone: '+33 1', active: true, vehicleId: 'veh_1' });
  t.true(isSealed(sealed.name) && isSealed(sealed.phone));
  t.is(sealed.vehicleId, 'veh_1');
  t.deepEqual(revealFields(k, sealed), { name: 'Dee', phone: '+33 1', active: true, vehicleId: 'veh_1' });
  t.deepEqual(sealFields(k, { active: false }), { active: false });
  t.is(revealFields(k, undefined), undefined);
});

const CLUSTER = {
  KAFKA_BROKERS: 'k1:9092', DATABASE_URL: 'postgres://u:p@db:5432/x', REDIS_URL: 'redis://r:6379',
  JWT_SECRET: randomBytes(32).toString('base64'), QUOTE_SECRET: randomBytes(32).toString('base64'),
  CLUSTER_KEY: randomBytes(32).toString('base64'),
};
const problems = (env: Record<string, string>) => {
  try { loadConfig(env); return []; } catch (error) { if (error instanceof ConfigError) return [...error.problems]; throw error; }
};

test('configuration: cluster mode needs the keys; entries, the active id and the index key are checked without echoing keys', (t) => {
  const line1 = newKeyLine('k1');
  const line2 = newKeyLine('k2');
  const indexKey = randomBytes(32).toString('base64');
  t.regex(problems(CLUSTER).join('\n'), /DATA_KEYS and DATA_INDEX_KEY are required in cluster mode/);
  const config = loadConfig({ ...CLUSTER, DATA_KEYS: `${line1}, ${line2}`, DATA_INDEX_KEY: indexKey });
  t.is(config.personalData!.activeId, 'k1', 'the first key is active by default');
  t.deepEqual([...config.personalData!.keys.keys()], ['k1', 'k2']);
  t.is(loadConfig({ ...CLUSTER, DATA_KEYS: `${line1},${line2}`, DATA_KEY_ID: 'k2', DATA_INDEX_KEY: indexKey }).personalData!.activeId, 'k2');
  const short = `k1:${randomBytes(16).toString('base64')}`;
  const bad = problems({ ...CLUSTER, DATA_KEYS: short, DATA_INDEX_KEY: indexKey });
  t.regex(bad.join('\n'), /DATA_KEYS entries must be <id>:<32 bytes in base64>/);
  t.false(bad.join('\n').includes(short.slice(3)), 'the key is not echoed');
  t.regex(problems({ ...CLUSTER, DATA_KEYS: line1, DATA_KEY_ID: 'k9', DATA_INDEX_KEY: indexKey }).join('\n'), /DATA_KEY_ID "k9" is not one of the ids in DATA_KEYS \(k1\)/);
  t.regex(problems({ ...CLUSTER, DATA_KEYS: `${line1},${line1}`, DATA_INDEX_KEY: indexKey }).join('\n'), /names key "k1" twice/);
  t.regex(problems({ ...CLUSTER, DATA_KEYS: `k1:${Buffer.alloc(32).toString('base64')}`, DATA_INDEX_KEY: indexKey }).join('\n'), /placeholder/);
  t.regex(problems({ ...CLUSTER, DATA_KEYS: line1 }).join('\n'), /DATA_KEYS and DATA_INDEX_KEY go together/);
  t.regex(problems({ ...CLUSTER, DATA_KEYS: line1, DATA_INDEX_KEY: 'short' }).join('\n'), /DATA_INDEX_KEY must be at least 32 bytes, got 5/);
  t.regex(problems({ ...CLUSTER, DATA_KEYS: line1, DATA_INDEX_KEY: CLUSTER.QUOTE_SECRET }).join('\n'), /DATA_INDEX_KEY must differ/);
});

test('development mode with no keys keeps its own under DATA_DIR: what one start sealed, the next opens', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pd-keys-'));
  const first = keyringFor(loadConfig({ DATA_DIR: dir }));
  t.is(first.file, join(dir, 'personal-data.keys'));
  t.is(statSync(first.file!).mode & 0o777, 0o600, 'readable by the node\'s user only');
  const sealed = first.keyring.seal('Erin');
  const again = keyringFor(loadConfig({ DATA_DIR: dir }));
  t.is(again.keyring.open(sealed), 'Erin');
  t.is(again.keyring.emailIndex('e@x.org'), first.keyring.emailIndex('e@x.org'));
  t.throws(() => keyringFor(loadConfig({ DATA_DIR: mkdtempSync(join(tmpdir(), 'pd-keys-')) })).keyring.open(sealed), { message: /failed authentication/ });
});
