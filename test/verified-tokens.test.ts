// Tokens verified once are not verified again until they expire (http/verified-tokens.ts),
// and nothing else is taken on trust: another token, a changed one, an expired one and a
// refused one are each verified in full.

import test from 'ava';
import type { Context } from 'koa';
import { createAuthenticator, type Authenticator, type Principal } from '../http/auth.ts';
import { authenticate, type AuthState } from '../http/authenticate.ts';
import { HttpError } from '../http/errors.ts';
import { VerifiedTokens } from '../http/verified-tokens.ts';

/** Runs the middleware for one request with `token`; what it put in the state. */
async function request(mw: ReturnType<typeof authenticate>, token: string): Promise<AuthState> {
  const state: AuthState = {};
  const ctx = { get: (h: string) => (h === 'authorization' ? `Bearer ${token}` : ''), state } as unknown as Context;
  await mw(ctx as never, async () => undefined);
  return state;
}

function counting(expiresAt: number): Authenticator & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls, canIssue: false,
    async verify(token) {
      calls.push(token);
      if (token.startsWith('bad')) throw new HttpError(401, 'unauthenticated', 'invalid or expired token');
      return { sub: `u-${token}`, role: 'rider', expiresAt };
    },
    async issue() { throw new Error('not here'); },
  };
}

test('a token verified once is not verified again; another token, and a refused one, are verified each time', async (t) => {
  const auth = counting(Date.now() + 60_000);
  const mw = authenticate(auth);
  t.is((await request(mw, 'a')).principal?.sub, 'u-a');
  t.is((await request(mw, 'a')).principal?.sub, 'u-a');
  t.is((await request(mw, 'b')).principal?.sub, 'u-b');
  t.is((await request(mw, 'bad1')).authError?.status, 401);
  t.is((await request(mw, 'bad1')).authError?.status, 401);
  t.deepEqual(auth.calls, ['a', 'b', 'bad1', 'bad1']);
});

test('an expired token is verified again (and refused by the authenticator), never answered from memory', async (t) => {
  const now = Date.now();
  const tokens = new VerifiedTokens();
  const principal: Principal = { sub: 'r1', role: 'rider', expiresAt: now + 1_000 };
  tokens.remember('tok', principal);
  t.is(tokens.get('tok', now), principal);
  t.is(tokens.get('tok', now + 1_000), undefined, 'at its expiry');
  t.is(tokens.size, 0, 'and forgotten');
  // Through the middleware: an authenticator whose answers expire at once is asked every time.
  const auth = counting(Date.now() - 1);
  const mw = authenticate(auth);
  await request(mw, 'x');
  await request(mw, 'x');
  t.deepEqual(auth.calls, ['x', 'x']);
});

test('the oldest token goes first when the bound is reached', (t) => {
  const tokens = new VerifiedTokens(3);
  const p = (sub: string): Principal => ({ sub, role: 'rider', expiresAt: Date.now() + 60_000 });
  for (const s of ['a', 'b', 'c', 'd']) tokens.remember(s, p(s));
  t.is(tokens.size, 3);
  t.is(tokens.get('a', Date.now()), undefined);
  t.is(tokens.get('d', Date.now())?.sub, 'd');
});

test('with the real authenticator: a token whose signature is changed in one character after its original was remembered is refused', async (t) => {
  const auth = await createAuthenticator({ secret: 'a-secret-of-sufficient-length-for-hs256', issuer: 'dispatch', tokenTtlSeconds: 600 });
  const mw = authenticate(auth);
  const { token } = await auth.issue({ sub: 'rider-1', role: 'rider' });
  t.is((await request(mw, token)).principal?.sub, 'rider-1');
  // One character of the signature's middle (the last one may carry only padding bits).
  const at = token.lastIndexOf('.') + 10;
  const forged = `${token.slice(0, at)}${token[at] === 'A' ? 'B' : 'A'}${token.slice(at + 1)}`;
  t.is((await request(mw, forged)).authError?.status, 401);
  t.is((await request(mw, token)).principal?.sub, 'rider-1');
});
