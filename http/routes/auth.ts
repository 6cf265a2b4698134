// Accounts and tokens: register and log in (for deployments without their own
// identity provider), and development tokens for any subject when enabled.

import { randomId } from '../../runtime/random-id.ts';
import { z } from 'zod';
import { DuplicateEmailError } from '../ports.ts';
import { Api } from '../api.ts';
import type { Edge } from '../edge.ts';
import { HttpError } from '../errors.ts';
import { UserId } from '../ids.ts';
import { hashPassword, needsRehash, passwordProblem, verifyPassword } from '../passwords.ts';
import { byIp, rateLimit } from '../rate-limit.ts';
import { Login, RegistrationAccepted, Register, Token } from '../schemas.ts';
import { outcome } from '../rejections.ts';
import { sealFields } from '../../runtime/personal-data.ts';

// A hash to compare against when the email is unknown, so timing does not reveal which emails exist.
const decoy = hashPassword('decoy-password-0');
/** Registration answers this for new and existing emails alike. */
const ACCEPTED = { status: 'accepted' } as const;

/**
 * Failed logins per account, from any address: after the third in 15 minutes each
 * one holds the account's next attempt back for a doubling time, capped at a
 * minute. A delay, not a lockout: the owner always gets a try within a minute.
 * Unknown emails are throttled alike, so the answer does not tell them apart.
 */
async function penalize(edge: Edge, throttle: string): Promise<void> {
  const { count } = await edge.limiter.hit(`${throttle}:failed`, Number.MAX_SAFE_INTEGER, 15 * 60_000);
  if (count >= 3) await edge.limiter.block(throttle, Math.min(1000 * 2 ** (count - 3), 60_000));
}

export function authRoutes(edge: Edge): Api {
  const api = new Api();
  const loginLimit = rateLimit(edge.limiter, { name: 'login', limit: edge.rateLimits.loginPerMin, windowMs: 60_000 }, byIp);
  const registerLimit = rateLimit(edge.limiter, { name: 'register', limit: edge.rateLimits.registerPerMin, windowMs: 60_000 }, byIp);

  api.add({
    method: 'post', path: '/v1/auth/register', tag: 'auth', summary: 'Create a rider or driver account',
    body: Register, response: RegistrationAccepted, status: 202, public: true,
    guards: [registerLimit],
    handler: async (_ctx, { body }) => {
      const problem = await passwordProblem(body.password, body.email, body.name);
      if (problem) throw new HttpError(400, 'weak_password', problem, [{ path: 'body.password', message: problem }]);
      // Hashed whether or not the email is taken, so the two answers take about as long (the hash is nearly all of it).
      const passwordHash = await hashPassword(body.password);
      // An existing email gets the same answer and nothing changes: registration does not tell who has an account.
      if (await edge.accounts.byEmail(body.email)) return ACCEPTED;
      const id = randomId(body.role === 'rider' ? 'rdr_' : 'drv_');
      // The driver's pending profile is written before the account, so no driver account can log in without one
      // (a driver with no profile is not held for approval).
      if (body.role === 'driver') {
        outcome(await edge.region.request({ kind: 'driver', id }, {
          type: 'profile.set',
          profile: sealFields(edge.personalData, { name: body.name, phone: body.phone, active: true, approval: 'pending' as const }, { scope: 'driver', id }),
        }));
      }
      try {
        await edge.accounts.create({ id, email: body.email, name: body.name, phone: body.phone, role: body.role, passwordHash });
      } catch (error) {
        // Registered by a concurrent request since the lookup: the same answer.
        if (!(error instanceof DuplicateEmailError)) throw error;
      }
      return ACCEPTED;
    },
  });

  api.add({
    method: 'post', path: '/v1/auth/login', tag: 'auth', summary: 'Exchange email and password for a short-lived token',
    body: Login, response: Token, public: true, errors: [401],
    guards: [loginLimit],
    handler: async (ctx, { body }) => {
      // Keyed by the email's keyed hash: the rate limiter (Redis in a cluster) holds no email either.
      const throttle = `login:${edge.personalData.emailIndex(body.email)}`;
      const wait = await edge.limiter.blockedFor(throttle);
      if (wait > 0) {
        const seconds = Math.ceil(wait / 1000);
        ctx.set('Retry-After', String(seconds));
        throw new HttpError(429, 'login_throttled', `too many failed logins for this account; retry in ${seconds} s`);
      }
      const account = await edge.accounts.byEmail(body.email);
      const ok = await verifyPassword(body.password, account?.passwordHash ?? await decoy);
      if (!account || !ok) {
        await penalize(edge, throttle);
        throw new HttpError(401, 'invalid_credentials', 'email or password is wrong');
      }
      // A hash from an older, cheaper cost is replaced while the password is at hand (best effort).
      if (needsRehash(account.passwordHash)) {
        await hashPassword(body.password).then((h) => edge.accounts.setPasswordHash(account.id, h)).catch(() => undefined);
      }
      return edge.auth.issue({ sub: account.id, role: account.role as 'rider' | 'driver' });
    },
  });

  api.add({
    method: 'post', path: '/v1/auth/token', tag: 'auth', summary: 'Development only: a token for any subject and role',
    public: true, errors: [404],
    body: z.object({ sub: UserId, role: z.enum(['rider', 'driver', 'admin']) }).strict(), response: Token,
    handler: async (_ctx, { body }) => {
      if (!edge.devTokens || !edge.auth.canIssue) throw new HttpError(404, 'not_found', 'development tokens are disabled on this node');
      return edge.auth.issue(body);
    },
  });
  return api;
}
