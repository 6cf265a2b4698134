// Passwords under scrypt (node:crypto): salted, slow, memory-hard, at the cost
// OWASP recommends (N=2^17, r=8, p=1: 128 MiB and a few hundred ms a hash). The
// stored form carries its parameters (`scrypt$N$r$p$salt$key`), so hashes made at
// an older cost still verify, and `needsRehash` tells login to upgrade them.
// Strength is judged by zxcvbn with its common-password and diceware lists.

import { randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import type { ZxcvbnFactory } from '@zxcvbn-ts/core';

export const SCRYPT = { N: 2 ** 17, r: 8, p: 1, keyLength: 32 } as const;
/** zxcvbn's "safely unguessable" (score 3 of 4) is the least a password must reach. */
export const MIN_SCORE = 3;
/** Stored parameters beyond these are refused rather than run (a corrupt or hostile row). */
const MAX_N = 2 ** 20;
const MAX_RP = 32;

function scrypt(password: string, salt: Buffer, keyLength: number, options: ScryptOptions): Promise<Buffer> {
  // scrypt needs 128 * N * r bytes; Node refuses anything over 32 MiB unless maxmem is raised.
  const maxmem = 2 * 128 * options.N! * options.r!;
  return new Promise((resolve, reject) =>
    scryptCb(password, salt, keyLength, { ...options, maxmem }, (err, key) => (err ? reject(err) : resolve(key))));
}

export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, SCRYPT.keyLength, { N: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p });
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

function parseHash(stored: string) {
  const [scheme, n, r, p, salt, key, ...rest] = stored.split('$');
  if (scheme !== 'scrypt' || !n || !r || !p || !salt || !key || rest.length > 0) return undefined;
  const N = Number(n);
  const R = Number(r);
  const P = Number(p);
  const valid = Number.isInteger(N) && N > 1 && N <= MAX_N && (N & (N - 1)) === 0
    && Number.isInteger(R) && R >= 1 && R <= MAX_RP && Number.isInteger(P) && P >= 1 && P <= MAX_RP;
  return valid ? { N, r: R, p: P, salt: Buffer.from(salt, 'base64'), key: Buffer.from(key, 'base64') } : undefined;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const h = parseHash(stored);
  if (!h || h.key.length === 0) return false;
  const actual = await scrypt(password, h.salt, h.key.length, { N: h.N, r: h.r, p: h.p });
  return actual.length === h.key.length && timingSafeEqual(actual, h.key);
}

/** A hash made at a lower cost than today's (verify first, then store a fresh hash). */
export function needsRehash(stored: string): boolean {
  const h = parseHash(stored);
  return !h || h.N < SCRYPT.N || h.r < SCRYPT.r || h.p < SCRYPT.p || h.key.length < SCRYPT.keyLength;
}

let strength: Promise<ZxcvbnFactory> | undefined;
/**
 * Loaded and built on first use (the first registration): the dictionaries take tens of
 * milliseconds to rank, and their modules hold 3.4 MB of heap that a node nobody registers
 * on (an idle one; a fleet whose accounts come from an identity provider) never needs.
 */
function estimator(): Promise<ZxcvbnFactory> {
  strength ??= Promise.all([import('@zxcvbn-ts/core'), import('@zxcvbn-ts/language-common')])
    .then(([{ ZxcvbnFactory }, { adjacencyGraphs, dictionary }]) => new ZxcvbnFactory({ dictionary, graphs: adjacencyGraphs }));
  return strength;
}

// zxcvbn gives warning keys; its translations live in language packs we do not load.
const WARNINGS: Record<string, string> = {
  common: 'it is a commonly used password',
  similarToCommon: 'it is too close to a commonly used password',
  topTen: 'it is one of the most used passwords',
  topHundred: 'it is one of the most used passwords',
  wordByItself: 'a single word is easy to guess',
  namesByThemselves: 'names on their own are easy to guess',
  commonNames: 'common names are easy to guess',
  userInputs: 'it contains your name or email',
  straightRow: 'a row of keys is easy to guess',
  keyPattern: 'short keyboard patterns are easy to guess',
  simpleRepeat: 'repeated characters are easy to guess',
  extendedRepeat: 'repeated patterns are easy to guess',
  sequences: 'sequences like abc or 6543 are easy to guess',
  recentYears: 'recent years are easy to guess',
  dates: 'dates are easy to guess',
  pwned: 'it appeared in a data breach',
};

/**
 * Why a password is refused, or undefined when it is strong enough: 10 to 200
 * characters and a zxcvbn score of at least 3, judged with the account's email
 * and name as words an attacker would try first.
 */
export async function passwordProblem(password: string, email: string, name?: string): Promise<string | undefined> {
  if (password.length < 10) return 'password must be at least 10 characters';
  if (password.length > 200) return 'password must be at most 200 characters';
  const local = email.split('@')[0]!.toLowerCase();
  if (local.length >= 3 && password.toLowerCase().includes(local)) return 'password must not contain the email name';
  const inputs = [email, local, ...(name ? [name, ...name.split(/\s+/)] : [])].filter((w) => w.length >= 3);
  const result = (await estimator()).check(password, inputs);
  if (result.score >= MIN_SCORE) return undefined;
  const why = result.feedback.warning ? WARNINGS[result.feedback.warning] : undefined;
  return `password is too easy to guess${why ? `: ${why}` : ''}; use a longer phrase of unrelated words`;
}
