// Accounts and tokens: register and log in (for deployments without their own
// identity provider), and development tokens for any subject when enabled.

import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { DuplicateEmailError } from '../../adapters/postgres/accounts.ts';
import { Api } from '../api.ts';
import type { Edge } from '../edge.ts';
import { HttpError } from '../errors.ts';
import { hashPassword, passwordProblem, verifyPassword } from '../passwords.ts';
import { byIp, rateLimit } from '../rate-limit.ts';
import { Account, Login, Register, Token } from '../schemas.ts';

// A hash to compare against when the email is unknown, so timing does not reveal which emails exist.
const decoy = hashPassword('decoy-password-0');

export function authRoutes(edge: Edge): Api {
  const api = new Api();
  const loginLimit = rateLimit(edge.limiter, { name: 'login', limit: 10, windowMs: 60_000 }, byIp);
  const registerLimit = rateLimit(edge.limiter, { name: 'register', limit: 20, windowMs: 60_000 }, byIp);

  api.add({
    method: 'post', path: '/v1/auth/register', tag: 'auth', summary: 'Create a rider or driver account', body: Register, response: Account, status: 201,
    guards: [registerLimit],
    handler: async (_ctx, { body }) => {
      const problem = passwordProblem(body.password, body.email);
      if (problem) throw new HttpError(400, 'weak_password', problem);
      const id = `${body.role === 'rider' ? 'rdr' : 'drv'}_${randomUUID()}`;
      try {
        await edge.accounts.create({ id, email: body.email, name: body.name, phone: body.phone, role: body.role, passwordHash: await hashPassword(body.password) });
      } catch (error) {
        if (error instanceof DuplicateEmailError) throw new HttpError(409, 'email_taken', 'an account with this email exists');
        throw error;
      }
      if (body.role === 'driver') await edge.region.request({ kind: 'driver', id }, { type: 'profile.set', profile: { name: body.name, phone: body.phone, active: true } });
      return { id, email: body.email.toLowerCase(), name: body.name, role: body.role };
    },
  });

  api.add({
    method: 'post', path: '/v1/auth/login', tag: 'auth', summary: 'Exchange email and password for a short-lived token', body: Login, response: Token,
    guards: [loginLimit],
    handler: async (_ctx, { body }) => {
      const account = await edge.accounts.byEmail(body.email);
      const ok = await verifyPassword(body.password, account?.passwordHash ?? await decoy);
      if (!account || !ok) throw new HttpError(401, 'invalid_credentials', 'email or password is wrong');
      return edge.auth.issue({ sub: account.id, role: account.role as 'rider' | 'driver' });
    },
  });

  api.add({
    method: 'post', path: '/v1/auth/token', tag: 'auth', summary: 'Development only: a token for any subject and role',
    body: z.object({ sub: z.string().min(1).max(128), role: z.enum(['rider', 'driver', 'admin']) }).strict(), response: Token,
    handler: async (_ctx, { body }) => {
      if (!edge.devTokens || !edge.auth.canIssue) throw new HttpError(404, 'not_found', 'development tokens are disabled on this node');
      return edge.auth.issue(body);
    },
  });
  return api;
}
