// Authentication and role checks as Koa middleware: `authenticate` reads the bearer
// token (if any) into ctx.state.principal; `requireRole` refuses what the route's
// roles do not allow (401 without a valid token, 403 with the wrong role).
//
// The Authorization header counts only where a token is needed: a missing, malformed or
// invalid one is 401 on an operation that names roles, and changes nothing on a public
// operation or page (/health, login, the docs), which would not read it anyway. A refused
// header is kept until a role check asks for it, so that 401 says what was wrong with it.

import type { Middleware } from 'koa';
import { bearerToken, type Authenticator, type Principal, type Role } from './auth.ts';
import { HttpError } from './errors.ts';
import { VerifiedTokens } from './verified-tokens.ts';

export interface AuthState {
  principal?: Principal;
  /** Why the request's Authorization header was refused, for the operations that need one. */
  authError?: HttpError;
  /** Set by POST /v1/bookings when it made a booking (the bookings-per-minute limit counts these). */
  created?: boolean;
}

export function authenticate(auth: Authenticator, verified = new VerifiedTokens()): Middleware<AuthState> {
  return async (ctx, next) => {
    try {
      const token = bearerToken(ctx.get('authorization') || undefined);
      if (token) ctx.state.principal = verified.get(token, Date.now()) ?? await verifyAndRemember(auth, verified, token);
    } catch (error) {
      if (!(error instanceof HttpError)) throw error;
      ctx.state.authError = error;
    }
    await next();
  };
}

async function verifyAndRemember(auth: Authenticator, verified: VerifiedTokens, token: string): Promise<Principal> {
  const principal = await auth.verify(token);
  verified.remember(token, principal);
  return principal;
}

export function requireRole(...roles: Role[]): Middleware<AuthState> {
  return async (ctx, next) => {
    const principal = principalOf(ctx.state);
    if (!roles.includes(principal.role)) {
      throw new HttpError(403, 'forbidden', `this needs the role ${roles.join(' or ')}, the token has ${principal.role}`);
    }
    await next();
  };
}

export function principalOf(state: AuthState): Principal {
  if (state.principal) return state.principal;
  throw state.authError ?? new HttpError(401, 'unauthenticated', 'a bearer token is required');
}
