// Personal data at rest: contact details (email, name, phone) are sealed with AES-256-GCM
// before they reach any table, journal entry, snapshot or command. A sealed value carries
// the id of its key, so keys can be rotated: old keys stay in the keyring until
// `npm run keys -- rotate` has re-sealed everything under the active one.
//
//   pd2.<key id>.<iv, base64url>.<ciphertext and tag, base64url>
//
// GCM's additional data binds the key id and where the value belongs (SealContext: the
// record's kind, its id, the field), so a value can be neither relabelled to another key
// nor copied into another field or row: it opens only where it was sealed. Values written
// before that are `pd1.`, whose additional data is the key id alone; they still open
// (anywhere) until a rotation re-seals them as pd2. A value from a request is always
// sealed, whatever it looks like: text shaped like a sealed value is just text.
//
// Lookups by email use a keyed hash (HMAC-SHA256 under a separate index key):
// deterministic, so it can be indexed, and useless without the key.

import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';

const PREFIX = 'pd2';
const IV_BYTES = 12;
const TAG_BYTES = 16;
export const KEY_BYTES = 32;
/** Key ids: short, and free of the separator. */
export const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/;
const SEALED = /^(pd1|pd2)\.([A-Za-z0-9_-]{1,32})\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{22,})$/;

/** Where a sealed value belongs, bound into it: it opens under this context only. */
export interface SealContext {
  /** The kind of record: `account` (its table) or `driver` (its commands, events, state and views alike). */
  readonly scope: 'account' | 'driver';
  /** The account's or driver's id. */
  readonly id: string;
  /** The field: `email`, `name`, `phone`. */
  readonly field: string;
}

/** A record's values, before the field is known. */
export type RecordContext = Omit<SealContext, 'field'>;

export class PersonalDataError extends Error {
  override readonly name = 'PersonalDataError';
}

export interface KeyringOptions {
  /** Key id -> 32-byte key. Every key a stored value may be under. */
  readonly keys: ReadonlyMap<string, Buffer>;
  /** The key new values are sealed with. */
  readonly activeId: string;
  /** HMAC key of the email index. */
  readonly indexKey: Buffer;
}

export class Keyring {
  readonly #keys: ReadonlyMap<string, Buffer>;
  readonly activeId: string;
  readonly #indexKey: Buffer;

  constructor(o: KeyringOptions) {
    for (const [id, key] of o.keys) {
      checkKeyId(id);
      if (key.length !== KEY_BYTES) throw new PersonalDataError(`key "${id}" must be ${KEY_BYTES} bytes, got ${key.length}`);
    }
    if (!o.keys.has(o.activeId)) {
      throw new PersonalDataError(`the active key id "${o.activeId}" is not among the keys (${[...o.keys.keys()].join(', ')})`);
    }
    if (o.indexKey.length < KEY_BYTES) throw new PersonalDataError(`the index key must be at least ${KEY_BYTES} bytes`);
    this.#keys = new Map(o.keys);
    this.activeId = o.activeId;
    this.#indexKey = Buffer.from(o.indexKey);
  }

  get keyIds(): string[] {
    return [...this.#keys.keys()];
  }

  /** `plain` sealed under the active key, for `where` only. */
  seal(plain: string, where: SealContext): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#keys.get(this.activeId)!, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(aad(PREFIX, this.activeId, where));
    const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final(), cipher.getAuthTag()]);
    return `${PREFIX}.${this.activeId}.${iv.toString('base64url')}.${body.toString('base64url')}`;
  }

  /** The plaintext of a value sealed for `where` (a pd1 value, from before contexts, opens wherever it is). */
  open(sealed: string, where: SealContext): string {
    const match = SEALED.exec(sealed);
    if (!match) throw new PersonalDataError('not a sealed value');
    const [, format, id, iv, body] = match as unknown as [string, 'pd1' | 'pd2', string, string, string];
    const key = this.#keys.get(id);
    if (!key) throw new PersonalDataError(`sealed under key id "${id}", which is not in DATA_KEYS (have: ${this.keyIds.join(', ')})`);
    const bytes = Buffer.from(body, 'base64url');
    if (bytes.length < TAG_BYTES) throw new PersonalDataError('sealed value is truncated');
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'), { authTagLength: TAG_BYTES });
    decipher.setAAD(aad(format, id, where));
    decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
    try {
      return Buffer.concat([decipher.update(bytes.subarray(0, bytes.length - TAG_BYTES)), decipher.final()]).toString('utf8');
    } catch {
      throw new PersonalDataError(
        `sealed value under key "${id}" failed authentication (altered, copied from another field or record, or the key is not the one ` +
        'it was sealed with)',
      );
    }
  }

  /** A stored value as plaintext: sealed values are opened, plaintext from before sealing is returned as it is. */
  reveal(value: string, where: SealContext): string;
  reveal(value: string | undefined | null, where: SealContext): string | undefined;
  reveal(value: string | undefined | null, where: SealContext): string | undefined {
    if (value === undefined || value === null) return undefined;
    return isSealed(value) ? this.open(value, where) : value;
  }

  /**
   * The value sealed under the active key for `where`; undefined when it already is (nothing to
   * write). Throws PersonalDataError for a sealed value that does not open there.
   */
  reseal(value: string, where: SealContext): string | undefined {
    const plain = this.reveal(value, where);
    if (value.startsWith(`${PREFIX}.`) && keyIdOf(value) === this.activeId) return undefined;
    return this.seal(plain, where);
  }

  /** The keyed hash an account is looked up by: lower-cased, trimmed, HMAC-SHA256 in hex. */
  emailIndex(email: string): string {
    return createHmac('sha256', this.#indexKey).update(normalizeEmail(email), 'utf8').digest('hex');
  }
}

export function normalizeEmail(email: string): string {
  return email.trim().toLowerCase();
}

export function isSealed(value: unknown): value is string {
  return typeof value === 'string' && SEALED.test(value);
}

export function keyIdOf(sealed: string): string | undefined {
  return SEALED.exec(sealed)?.[2];
}

/** A driver's contact details, wherever a driver's profile goes (commands, events, state, views). */
export const DRIVER_CONTACT = ['name', 'phone'] as const;

/**
 * The object with the given string fields sealed for `record` (absent fields are left alone).
 * Always sealed, whatever the text looks like: a request's text is never taken for a sealed value.
 */
export function sealFields<T extends object>(keys: Keyring, value: T, record: RecordContext, fields: readonly string[] = DRIVER_CONTACT): T {
  const out = { ...value } as Record<string, unknown>;
  for (const f of fields) if (typeof out[f] === 'string') out[f] = keys.seal(out[f] as string, { ...record, field: f });
  return out as T;
}

/** What revealFields adds when a field would not open: the fields shown as null. */
export interface Unreadable { readonly unreadable?: readonly string[] }

/**
 * The object with the given fields opened: what the API shows to whoever may see it. A field
 * that does not open (altered, copied from elsewhere, under a key no longer held) is null,
 * and named in `unreadable`: one bad value spoils its field, not the answer.
 */
export function revealFields<T>(keys: Keyring, value: T, record: RecordContext, fields: readonly string[] = DRIVER_CONTACT): T & Unreadable {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value as T & Unreadable;
  const out = { ...value } as Record<string, unknown>;
  const unreadable: string[] = [];
  for (const f of fields) {
    if (typeof out[f] !== 'string') continue;
    try {
      out[f] = keys.reveal(out[f] as string, { ...record, field: f });
    } catch (error) {
      if (!(error instanceof PersonalDataError)) throw error;
      out[f] = null;
      unreadable.push(f);
    }
  }
  if (unreadable.length > 0) out.unreadable = unreadable;
  return out as T & Unreadable;
}

/**
 * A JSON value with each string `where` says is personal data passed through `visit` (given
 * its context and its path), which answers a replacement or undefined to keep it. The shape is
 * kept; strings elsewhere are never looked at, whatever they look like (a rating comment
 * shaped like a sealed value is a comment). For journal, snapshot, view and dead-letter rows.
 */
export function mapPersonalJson(
  value: unknown,
  where: (path: readonly string[]) => SealContext | undefined,
  visit: (value: string, context: SealContext, path: readonly string[]) => string | undefined,
): { value: unknown; changed: number } {
  let changed = 0;
  const walk = (v: unknown, path: string[]): unknown => {
    if (typeof v === 'string') {
      const context = where(path);
      const next = context ? visit(v, context, path) : undefined;
      if (next === undefined) return v;
      changed += 1;
      return next;
    }
    if (Array.isArray(v)) return v.map((x, i) => walk(x, [...path, String(i)]));
    if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x, [...path, k])]));
    return v;
  };
  const out = walk(value, []);
  return { value: changed > 0 ? out : value, changed };
}

/** Where a driver's journal entry or snapshot holds contact details: any `profile` object's name and phone. */
export function driverContactPath(path: readonly string[]): boolean {
  return path.length >= 2 && path.at(-2) === 'profile' && (DRIVER_CONTACT as readonly string[]).includes(path.at(-1)!);
}

/** The context of driver `id`'s contact detail at `path` (by driverContactPath, or also top-level in a view). */
export function driverContact(id: string, path: readonly string[], topLevel = false): SealContext | undefined {
  const isField = driverContactPath(path) || (topLevel && path.length === 1 && (DRIVER_CONTACT as readonly string[]).includes(path[0]!));
  return isField ? { scope: 'driver', id, field: path.at(-1)! } : undefined;
}

/** A 32-byte key as DATA_KEYS takes it: `<id>:<base64url>`. */
export function newKeyLine(id: string): string {
  checkKeyId(id);
  return `${id}:${randomBytes(KEY_BYTES).toString('base64url')}`;
}

function checkKeyId(id: string): void {
  if (!KEY_ID.test(id)) throw new PersonalDataError(`key id "${id}" must be 1-32 letters, digits, _ or -`);
}

/** GCM's additional data: pd1 bound only the key id; pd2 binds the key id and where the value belongs. */
function aad(format: 'pd1' | 'pd2', id: string, where: SealContext): Buffer {
  if (format === 'pd1') return Buffer.from(`pd1.${id}`, 'utf8');
  return Buffer.from(JSON.stringify([format, id, where.scope, where.id, where.field]), 'utf8');
}
