// Signed command-log records (adapters/kafka/envelope-signature.ts), pure: what verifies and what does not.

import test from 'ava';
import { randomBytes } from 'node:crypto';
import { openRecord, sign, verify } from '../adapters/kafka/envelope-signature.ts';

const place = { topic: 'dispatch.commands', partition: 3 };
const envelope = JSON.stringify({ id: 'c1', to: { kind: 'driver', id: 'd1' }, message: { type: 'approve' }, at: 1 });
const [current, previous, stranger] = [randomBytes(32), randomBytes(32), randomBytes(32)];

test('a record signed with the cluster key opens to the same envelope; unsigned or wrongly signed ones do not', (t) => {
  const signed = sign(envelope, place, [current]);
  t.not(signed, envelope);
  t.deepEqual(verify(signed, place, [current]), { ok: true, payload: envelope });
  t.deepEqual(verify(envelope, place, [current]), { ok: false, reason: 'unsigned' }, 'a forged record with no signature');
  t.deepEqual(verify(sign(envelope, place, [stranger]), place, [current]), { ok: false, reason: 'bad_signature' }, 'signed with another key');
  const tampered = signed.replace('"approve"', '"approve","x":1');
  t.deepEqual(verify(tampered, place, [current]), { ok: false, reason: 'bad_signature' }, 'the envelope changed after signing');
  t.deepEqual(verify(`${'A'.repeat(43)}.${envelope}`, place, [current]), { ok: false, reason: 'bad_signature' }, 'a made-up signature');
  t.deepEqual(openRecord(null, place, [current]), { ok: false, reason: 'unsigned' }, 'a tombstone');
});

test('the signature binds the record to its topic and partition: a signed record copied elsewhere does not verify', (t) => {
  const signed = sign(envelope, place, [current]);
  t.false(verify(signed, { ...place, partition: 4 }, [current]).ok);
  t.false(verify(signed, { ...place, topic: 'other-cluster.commands' }, [current]).ok);
});

test('rotation: the first key signs, every key given verifies', (t) => {
  const byOld = sign(envelope, place, [previous]);
  t.true(verify(byOld, place, [current, previous]).ok, 'records signed before the rotation still verify');
  const byNew = sign(envelope, place, [current, previous]);
  t.deepEqual(byNew, sign(envelope, place, [current]), 'signed with the first key');
  t.true(verify(byNew, place, [previous, current]).ok, 'a node that has the new key second already accepts it');
  t.false(verify(byOld, place, [current]).ok, 'once the old key is dropped, its records are refused');
});

test('signing off: records go out as the envelope, and any record opens (a signature, if any, dropped unchecked)', (t) => {
  t.is(sign(envelope, place, undefined), envelope);
  t.deepEqual(verify(envelope, place, undefined), { ok: true, payload: envelope });
  t.deepEqual(verify(sign(envelope, place, [current]), place, []), { ok: true, payload: envelope });
});
