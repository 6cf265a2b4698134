// Signed command-log records. Whoever can write to the command topic could otherwise
// forge any command (an admin's `approve`, a `profile.set`): commands carry their own
// authority. Each record's value is `<HMAC-SHA256, base64url>.<serialized envelope>`,
// the MAC taken with the cluster key (CLUSTER_KEY) over the topic, the partition and the
// envelope, so a signed record copied to another partition or another cluster's topic
// does not verify either. Keys rotate: records are signed with the first key and
// verified against every key given, so a new key is added everywhere (second), then
// made first, then the old one dropped.

import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';

/** Where a record sits; part of what is signed. */
export interface RecordPlace {
  readonly topic: string;
  readonly partition: number;
}

/** Why a record was not opened. */
export type UnverifiedReason = 'unsigned' | 'bad_signature';

export type Opened<T> = { readonly ok: true; readonly payload: T } | { readonly ok: false; readonly reason: UnverifiedReason };

/** The error a record that does not verify is reported with (the log says why and where). */
export class UnverifiedRecordError extends Error {
  override readonly name = 'UnverifiedRecordError';
  readonly reason: UnverifiedReason;
  constructor(reason: UnverifiedReason) {
    super(reason === 'unsigned'
      ? 'record carries no signature: not from a node holding CLUSTER_KEY; skipped'
      : 'record signature does not verify with any CLUSTER_KEY key; skipped');
    this.reason = reason;
  }
}

const MAC_CHARS = 43; // 32 bytes in base64url, unpadded
const SIGNATURE = /^[A-Za-z0-9_-]{43}\.$/;

/**
 * Each key as a KeyObject, made once: createHmac given a Buffer checks and wraps it anew on
 * every call (14 µs a MAC here, against 2-4 µs with a KeyObject; a record is signed once
 * and opened once, and this was 5% of a cluster node's CPU).
 */
const keyObjects = new WeakMap<Buffer, KeyObject>();

function keyObjectOf(key: Buffer): KeyObject {
  let k = keyObjects.get(key);
  if (!k) { k = createSecretKey(key); keyObjects.set(key, k); }
  return k;
}

function mac(key: Buffer, place: RecordPlace, payload: string | Buffer): Buffer {
  return createHmac('sha256', keyObjectOf(key)).update(`${place.topic}\n${place.partition}\n`).update(payload).digest();
}

/** The record value for `payload`, signed with the first key; unchanged without keys (signing off). */
export function sign(payload: string, place: RecordPlace, keys: readonly Buffer[] | undefined): string {
  const key = keys?.[0];
  if (!key) return payload;
  return `${mac(key, place, payload).toString('base64url')}.${payload}`;
}

/** sign() of a payload held as bytes (a compact soft record): the same `<MAC>.` prefix, then the bytes as they are. */
export function signBytes(payload: Buffer, place: RecordPlace, keys: readonly Buffer[] | undefined): Buffer {
  const key = keys?.[0];
  if (!key) return payload;
  return Buffer.concat([Buffer.from(`${mac(key, place, payload).toString('base64url')}.`, 'latin1'), payload]);
}

/**
 * The payload of a record value (a Kafka record's bytes; null, a tombstone, is unsigned) whose
 * signature verifies with one of the keys. Without keys (signing off) every record opens, a
 * signature, if any, dropped unchecked. Bytes in, bytes out: no copy of the payload.
 */
export function openRecord(value: Buffer | null | undefined, place: RecordPlace, keys: readonly Buffer[] | undefined): Opened<Buffer> {
  const bytes = value ?? Buffer.alloc(0);
  const signed = bytes.length > MAC_CHARS + 1 && SIGNATURE.test(bytes.toString('latin1', 0, MAC_CHARS + 1));
  const payload = signed ? bytes.subarray(MAC_CHARS + 1) : bytes;
  if (!keys || keys.length === 0) return { ok: true, payload };
  if (!signed) return { ok: false, reason: 'unsigned' };
  const given = Buffer.from(bytes.toString('latin1', 0, MAC_CHARS), 'base64url');
  for (const key of keys) {
    const expected = mac(key, place, payload);
    if (given.length === expected.length && timingSafeEqual(given, expected)) return { ok: true, payload };
  }
  return { ok: false, reason: 'bad_signature' };
}

/** openRecord() of a value held as text. */
export function verify(value: string, place: RecordPlace, keys: readonly Buffer[] | undefined): Opened<string> {
  const opened = openRecord(Buffer.from(value, 'utf8'), place, keys);
  return opened.ok ? { ok: true, payload: opened.payload.toString('utf8') } : opened;
}
