// Authentication and role checks as Koa middleware: `authenticate` reads the bearer
// token (if any) into ctx.state.principal; `requireRole` refuses what the route's
// roles do not allow (401 without a valid token, 403 with the wrong role).

import type { Middleware } from 'koa';
import { bearerToken, type Authenticator, type Principal, type Role } from './auth.ts';
import { HttpError } from './errors.ts';

export interface AuthState {
  principal?: Principal;
}

export function authenticate(auth: Authenticator): Middleware<AuthState> {
  return async (ctx, next) => {
    const token = bearerToken(ctx.get('authorization') || undefined);
    if (token) ctx.state.principal = await auth.verify(token);
    await next();
  };
}

export function requireRole(...roles: Role[]): Middleware<AuthState> {
  return async (ctx, next) => {
    const principal = ctx.state.principal;
    if (!principal) throw new HttpError(401, 'unauthenticated', 'a bearer token is required');
    if (!roles.includes(principal.role)) {
      throw new HttpError(403, 'forbidden', `this needs the role ${roles.join(' or ')}, the token has ${principal.role}`);
    }
    await next();
  };
}

export function principalOf(state: AuthState): Principal {
  if (!state.principal) throw new HttpError(401, 'unauthenticated', 'a bearer token is required');
  return state.principal;
}
