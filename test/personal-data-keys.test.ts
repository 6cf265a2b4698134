// The personal-data keyring on its own: sealing, tamper detection, key ids, the email index,
// re-sealing for rotation, and how the keys are configured. Pure: no services.
// A value is sealed for its record and field (pd2): it opens nowhere else. Values sealed the
// earlier way (pd1: only the key id authenticated) still open, and rotation moves them on.

import test from 'ava';
import { createCipheriv, randomBytes } from 'node:crypto';
import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, loadConfig } from '../config/index.ts';
import { keyringFor } from '../adapters/personal-data-keys.ts';
import {
  Keyring, PersonalDataError, driverContact, isSealed, keyIdOf, mapPersonalJson, newKeyLine, revealFields, sealFields, type SealContext,
} from '../runtime/personal-data.ts';

const k1 = randomBytes(32);
const k2 = randomBytes(32);
const index = randomBytes(32);
const ring = (activeId: string, keys: [string, Buffer][] = [['k1', k1], ['k2', k2]], indexKey = index) => new Keyring({ keys: new Map(keys), activeId, indexKey });
const NAME: SealContext = { scope: 'driver', id: 'drv_1', field: 'name' };
const EMAIL: SealContext = { scope: 'account', id: 'rdr_1', field: 'email' };

/** A value as the earlier format sealed it: pd1, with only `pd1.<key id>` authenticated. */
function sealPd1(id: string, key: Buffer, plain: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: 16 });
  cipher.setAAD(Buffer.from(`pd1.${id}`));
  const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final(), cipher.getAuthTag()]);
  return `pd1.${id}.${iv.toString('base64url')}.${body.toString('base64url')}`;
}

test('a sealed value opens to the plaintext, carries its key id and shows nothing of the plaintext', (t) => {
  const keys = ring('k1');
  const plain = 'Zoë Ødegaard +44 7700 900123';
  const sealed = keys.seal(plain, NAME);
  t.true(isSealed(sealed));
  t.regex(sealed, /^pd2\.k1\./);
  t.is(keyIdOf(sealed), 'k1');
  t.false(sealed.includes('900123'));
  t.is(keys.open(sealed, NAME), plain);
  t.not(keys.seal(plain, NAME), sealed, 'a fresh IV each time: equal values do not look equal');
  t.is(keys.open(keys.seal('', NAME), NAME), '');
});

test('an altered value, a relabelled key id and an unknown key id are refused, each saying why', (t) => {
  const keys = ring('k1');
  const sealed = keys.seal('alice@example.org', EMAIL);
  const [prefix, id, iv, body] = sealed.split('.') as [string, string, string, string];
  const flipped = `${body.slice(0, 5)}${body[5] === 'A' ? 'B' : 'A'}${body.slice(6)}`;
  t.throws(() => keys.open([prefix, id, iv, flipped].join('.'), EMAIL), { instanceOf: PersonalDataError, message: /failed authentication/ });
  // The key id is authenticated: the same bytes under another key's id do not open.
  t.throws(() => keys.open([prefix, 'k2', iv, body].join('.'), EMAIL), { instanceOf: PersonalDataError, message: /failed authentication/ });
  // Nor as the earlier format, whose additional data was the key id alone.
  t.throws(() => keys.open(['pd1', id, iv, body].join('.'), EMAIL), { instanceOf: PersonalDataError, message: /failed authentication/ });
  t.throws(() => ring('k2', [['k2', k2]]).open(sealed, EMAIL),
    { instanceOf: PersonalDataError, message: /key id "k1", which is not in DATA_KEYS \(have: k2\)/ });
  t.throws(() => keys.open('alice@example.org', EMAIL), { message: /not a sealed value/ });
  t.is(keys.reveal('alice@example.org', EMAIL), 'alice@example.org', 'plaintext from before sealing reads as it is');
});

test('a sealed value copied to another field, another record or another kind of record does not open there', (t) => {
  const keys = ring('k1');
  const name = keys.seal('Grace Hopper', NAME);
  for (const elsewhere of [
    { ...NAME, field: 'phone' }, { ...NAME, id: 'drv_2' }, { scope: 'account', id: 'drv_1', field: 'name' }, { ...NAME, id: 'drv_10' },
  ] as SealContext[]) {
    t.throws(() => keys.open(name, elsewhere), { instanceOf: PersonalDataError, message: /copied from another field or record/ }, JSON.stringify(elsewhere));
    t.throws(() => keys.reseal(name, elsewhere), { instanceOf: PersonalDataError });
  }
  t.is(keys.open(name, NAME), 'Grace Hopper');
  // Ids that could run into each other in a joined string are kept apart.
  const odd = keys.seal('x', { scope: 'driver', id: 'a","b', field: 'name' });
  t.throws(() => keys.open(odd, { scope: 'driver', id: 'a', field: 'b","name' }), { instanceOf: PersonalDataError });
});

test('values sealed before contexts (pd1) still open, and reseal moves them to pd2 bound to where they are', (t) => {
  const old = sealPd1('k1', k1, 'Ada');
  const keys = ring('k1');
  t.is(keys.open(old, NAME), 'Ada', 'readable as written by earlier versions');
  t.is(keys.reveal(old, { ...NAME, id: 'anyone' }), 'Ada', 'pd1 never bound a record');
  const moved = keys.reseal(old, NAME)!;
  t.regex(moved, /^pd2\.k1\./, 'even under the active key, a pd1 value is re-sealed');
  t.is(keys.open(moved, NAME), 'Ada');
  t.throws(() => keys.open(moved, { ...NAME, id: 'anyone' }), { instanceOf: PersonalDataError });
  t.is(keys.reseal(moved, NAME), undefined);
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
  const old = ring('k1').seal('Bob', NAME);
  const keys = ring('k2');
  const moved = keys.reseal(old, NAME)!;
  t.is(keyIdOf(moved), 'k2');
  t.is(keys.open(moved, NAME), 'Bob');
  t.is(keys.reseal(moved, NAME), undefined);
  t.is(keyIdOf(keys.reseal('Bob', NAME)!), 'k2');
});

test('mapPersonalJson visits the contact fields of a profile only: a sealed-looking string elsewhere is text', (t) => {
  const k = ring('k1');
  const planted = k.seal('+1 555', { ...NAME, field: 'phone' });
  const state = { profile: { name: 'Carol', phone: planted, active: true }, note: planted, comment: 'pd1.k1.AAAAAAAAAAAAAAAA.BBBBBBBBBBBBBBBBBBBBBBBB' };
  const seen: string[] = [];
  const out = mapPersonalJson(state, (path) => driverContact('drv_1', path), (value, context, path) => {
    seen.push(`${path.join('.')}=${context.scope}/${context.id}/${context.field}`);
    return ring('k2').reseal(value, context);
  });
  t.deepEqual(seen, ['profile.name=driver/drv_1/name', 'profile.phone=driver/drv_1/phone']);
  t.is(out.changed, 2);
  const v = out.value as typeof state;
  t.is(keyIdOf(v.profile.name), 'k2', 'plaintext from before sealing, in a profile, is sealed');
  t.is(ring('k2').open(v.profile.phone, { ...NAME, field: 'phone' }), '+1 555');
  t.is(v.note, planted, 'outside a profile nothing is touched');
  t.is(v.comment, state.comment);
  t.is(v.profile.active, true);
  t.is(mapPersonalJson(v, (path) => driverContact('drv_1', path), (value, context) => ring('k2').reseal(value, context)).changed, 0,
    'a second run finds nothing');
});

test('sealFields seals every contact field, whatever it looks like; revealFields opens them or marks them unreadable', (t) => {
  const k = ring('k1');
  const record = { scope: 'driver', id: 'drv_1' } as const;
  const lookalike = 'pd1.k1.AAAAAAAAAAAAAAAA.BBBBBBBBBBBBBBBBBBBBBBBB';
  t.true(isSealed(lookalike), 'shaped like a sealed value');
  const sealed = sealFields(k, { name: lookalike, phone: '+33 1', active: true, vehicleId: 'veh_1' }, record);
  t.true(isSealed(sealed.name) && isSealed(sealed.phone));
  t.not(sealed.name, lookalike, 'text shaped like a sealed value is sealed like any other');
  t.is(sealed.vehicleId, 'veh_1');
  t.deepEqual(revealFields(k, sealed, record), { name: lookalike, phone: '+33 1', active: true, vehicleId: 'veh_1' });
  t.deepEqual(sealFields(k, { active: false }, record), { active: false });
  t.is(revealFields(k, undefined, record) as unknown, undefined);
  // Stored as it was before requests were always sealed, or copied from another driver: null and named, the rest still shown.
  const other = sealFields(k, { name: 'Someone Else' }, { scope: 'driver', id: 'drv_2' });
  t.deepEqual(revealFields(k, { id: 'drv_1', name: lookalike, phone: other.name, active: true }, record),
    { id: 'drv_1', name: null, phone: null, active: true, unreadable: ['name', 'phone'] });
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
  const sealed = first.keyring.seal('Erin', NAME);
  const again = keyringFor(loadConfig({ DATA_DIR: dir }));
  t.is(again.keyring.open(sealed, NAME), 'Erin');
  t.is(again.keyring.emailIndex('e@x.org'), first.keyring.emailIndex('e@x.org'));
  const elsewhere = keyringFor(loadConfig({ DATA_DIR: mkdtempSync(join(tmpdir(), 'pd-keys-')) })).keyring;
  t.throws(() => elsewhere.open(sealed, NAME), { message: /failed authentication/ });
});
