// Personal data at rest: contact details (email, name, phone) are sealed with AES-256-GCM
// before they reach any table, journal entry, snapshot or command. A sealed value carries
// the id of its key, so keys can be rotated: old keys stay in the keyring until
// `npm run keys -- rotate` has re-sealed everything under the active one.
//
//   pd1.<key id>.<iv, base64url>.<ciphertext and tag, base64url>
//
// The key id is authenticated (GCM's additional data), so a value cannot be relabelled
// to another key. Lookups by email use a keyed hash (HMAC-SHA256 under a separate index
// key): deterministic, so it can be indexed, and useless without the key.

import { createCipheriv, createDecipheriv, createHmac, randomBytes } from 'node:crypto';

const PREFIX = 'pd1';
const IV_BYTES = 12;
const TAG_BYTES = 16;
export const KEY_BYTES = 32;
/** Key ids: short, and free of the separator. */
export const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/;
const SEALED = /^pd1\.([A-Za-z0-9_-]{1,32})\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{22,})$/;

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

  seal(plain: string): string {
    const iv = randomBytes(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.#keys.get(this.activeId)!, iv, { authTagLength: TAG_BYTES });
    cipher.setAAD(aad(this.activeId));
    const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final(), cipher.getAuthTag()]);
    return `${PREFIX}.${this.activeId}.${iv.toString('base64url')}.${body.toString('base64url')}`;
  }

  open(sealed: string): string {
    const match = SEALED.exec(sealed);
    if (!match) throw new PersonalDataError('not a sealed value');
    const [, id, iv, body] = match as unknown as [string, string, string, string];
    const key = this.#keys.get(id);
    if (!key) throw new PersonalDataError(`sealed under key id "${id}", which is not in DATA_KEYS (have: ${this.keyIds.join(', ')})`);
    const bytes = Buffer.from(body, 'base64url');
    if (bytes.length < TAG_BYTES) throw new PersonalDataError('sealed value is truncated');
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'), { authTagLength: TAG_BYTES });
    decipher.setAAD(aad(id));
    decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
    try {
      return Buffer.concat([decipher.update(bytes.subarray(0, bytes.length - TAG_BYTES)), decipher.final()]).toString('utf8');
    } catch {
      throw new PersonalDataError(
        `sealed value under key "${id}" failed authentication (altered, or the key is not the one it was sealed with)`,
      );
    }
  }

  /** A stored value as plaintext: sealed values are opened, plaintext from before sealing is returned as it is. */
  reveal(value: string): string;
  reveal(value: string | undefined | null): string | undefined;
  reveal(value: string | undefined | null): string | undefined {
    if (value === undefined || value === null) return undefined;
    return isSealed(value) ? this.open(value) : value;
  }

  /** The value sealed under the active key; undefined when it already is (nothing to write). */
  reseal(value: string): string | undefined {
    if (isSealed(value) && keyIdOf(value) === this.activeId) return undefined;
    return this.seal(this.reveal(value));
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
  return SEALED.exec(sealed)?.[1];
}

/** A driver's contact details, wherever a driver's profile goes (commands, events, state, views). */
export const DRIVER_CONTACT = ['name', 'phone'] as const;

/** The object with the given string fields sealed (fields absent or already sealed are left alone). */
export function sealFields<T extends object>(keys: Keyring, value: T, fields: readonly string[] = DRIVER_CONTACT): T {
  const out = { ...value } as Record<string, unknown>;
  for (const f of fields) if (typeof out[f] === 'string' && !isSealed(out[f])) out[f] = keys.seal(out[f] as string);
  return out as T;
}

/** The object with the given fields opened: what the API shows to whoever may see it. */
export function revealFields<T>(keys: Keyring, value: T, fields: readonly string[] = DRIVER_CONTACT): T {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  const out = { ...value } as Record<string, unknown>;
  for (const f of fields) if (typeof out[f] === 'string') out[f] = keys.reveal(out[f] as string);
  return out as T;
}

/**
 * A JSON value with every sealed string in it re-sealed under the active key, and how many
 * were. The shape is kept; nothing else changes. For journal, snapshot and view rows.
 * `plain` says where a plaintext string is personal data from before sealing (it is
 * sealed too): given the path of keys to it.
 */
export function resealJson(
  keys: Keyring, value: unknown, plain: (path: readonly string[]) => boolean = () => false,
): { value: unknown; resealed: number } {
  let resealed = 0;
  const walk = (v: unknown, path: string[]): unknown => {
    if (typeof v === 'string') {
      if (!isSealed(v) && !plain(path)) return v;
      const next = keys.reseal(v);
      if (next === undefined) return v;
      resealed += 1;
      return next;
    }
    if (Array.isArray(v)) return v.map((x, i) => walk(x, [...path, String(i)]));
    if (v !== null && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, walk(x, [...path, k])]));
    return v;
  };
  return { value: walk(value, []), resealed };
}

/** Where a driver's journal entry or snapshot holds contact details: any `profile` object's name and phone. */
export function driverContactPath(path: readonly string[]): boolean {
  return path.length >= 2 && path.at(-2) === 'profile' && (DRIVER_CONTACT as readonly string[]).includes(path.at(-1)!);
}

/** A 32-byte key as DATA_KEYS takes it: `<id>:<base64url>`. */
export function newKeyLine(id: string): string {
  checkKeyId(id);
  return `${id}:${randomBytes(KEY_BYTES).toString('base64url')}`;
}

function checkKeyId(id: string): void {
  if (!KEY_ID.test(id)) throw new PersonalDataError(`key id "${id}" must be 1-32 letters, digits, _ or -`);
}

function aad(id: string): Buffer {
  return Buffer.from(`${PREFIX}.${id}`, 'utf8');
}
