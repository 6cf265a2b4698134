// Bearer tokens (JWT) verified with jose. Development signs and verifies with an
// HS256 secret; production verifies with a public key (RS256/ES256) or a JWKS URL
// and issues nothing itself. The accepted algorithms are pinned per key type, so
// `alg: none` and algorithm-confusion tokens are refused by jose before any claim is read.

import { SignJWT, createRemoteJWKSet, importSPKI, jwtVerify, type CryptoKey, type JWTVerifyGetKey } from 'jose';
import { UserId } from './ids.ts';
import { HttpError } from './errors.ts';

export type Role = 'rider' | 'driver' | 'admin';
export const ROLES: readonly Role[] = ['rider', 'driver', 'admin'];

export interface Principal {
  readonly sub: string;
  readonly role: Role;
  /** When the token expires (ms since the epoch); a WebSocket session ends then. */
  readonly expiresAt?: number;
}

export interface AuthSettings {
  readonly secret?: string;
  readonly publicKey?: string;
  readonly jwksUrl?: string;
  readonly issuer: string;
  readonly audience?: string;
  /** Lifetime of tokens this node issues (login, development tokens). */
  readonly tokenTtlSeconds: number;
}

export interface Authenticator {
  verify(token: string): Promise<Principal>;
  /** Signs a token; only where this node holds the signing secret. */
  issue(principal: Principal): Promise<{ token: string; expiresAt: string }>;
  readonly canIssue: boolean;
}

export async function createAuthenticator(settings: AuthSettings): Promise<Authenticator> {
  let key: Uint8Array | CryptoKey | JWTVerifyGetKey;
  let algorithms: string[];
  if (settings.jwksUrl) {
    key = createRemoteJWKSet(new URL(settings.jwksUrl));
    algorithms = ['RS256', 'ES256'];
  } else if (settings.publicKey) {
    const pem = settings.publicKey.replace(/\\n/g, '\n');
    const alg = pem.includes('BEGIN PUBLIC KEY') && isEcKey(pem) ? 'ES256' : 'RS256';
    key = await importSPKI(pem, alg);
    algorithms = [alg];
  } else if (settings.secret) {
    key = new TextEncoder().encode(settings.secret);
    algorithms = ['HS256'];
  } else {
    throw new Error('no JWT key: set JWT_SECRET (development) or JWT_PUBLIC_KEY / JWKS_URL');
  }
  const secret = settings.secret && !settings.publicKey && !settings.jwksUrl ? new TextEncoder().encode(settings.secret) : undefined;

  return {
    canIssue: secret !== undefined,
    async verify(token) {
      try {
        const { payload } = await jwtVerify(token, key as never, {
          algorithms, issuer: settings.issuer, audience: settings.audience, requiredClaims: ['sub', 'exp'],
        });
        const role = payload.role;
        // The subject names an actor and lands in storage keys: it must be an id the edge would accept.
        if (!UserId.safeParse(payload.sub).success) throw new Error('token subject is not a valid id');
        if (typeof role !== 'string' || !ROLES.includes(role as Role)) throw new Error('token has no valid role');
        return { sub: payload.sub!, role: role as Role, expiresAt: (payload.exp as number) * 1000 };
      } catch (error) {
        // Which check failed helps whoever forges tokens more than an honest client: logged only.
        throw new HttpError(401, 'unauthenticated', 'invalid or expired token', undefined, describe(error));
      }
    },
    async issue(principal) {
      if (!secret) throw new HttpError(403, 'forbidden', 'this node verifies tokens but does not issue them');
      const expires = Math.floor(Date.now() / 1000) + settings.tokenTtlSeconds;
      let jwt = new SignJWT({ role: principal.role })
        .setProtectedHeader({ alg: 'HS256' })
        .setSubject(principal.sub)
        .setIssuer(settings.issuer)
        .setIssuedAt()
        .setExpirationTime(expires);
      if (settings.audience) jwt = jwt.setAudience(settings.audience);
      return { token: await jwt.sign(secret), expiresAt: new Date(expires * 1000).toISOString() };
    },
  };
}

function isEcKey(pem: string): boolean {
  // An SPKI EC key's DER carries the id-ecPublicKey OID (1.2.840.10045.2.1).
  const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  return der.includes(Buffer.from([0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]));
}

function describe(error: unknown): string {
  const code = (error as { code?: string }).code;
  switch (code) {
    case 'ERR_JWT_EXPIRED': return 'expired';
    case 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED': return 'bad signature';
    case 'ERR_JOSE_ALG_NOT_ALLOWED': return 'algorithm not allowed';
    case 'ERR_JWT_CLAIM_VALIDATION_FAILED': return (error as Error).message;
    default: return (error as Error).message;
  }
}

/** Reads `Authorization: Bearer <token>`; undefined when absent. */
export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const match = /^Bearer\s+([A-Za-z0-9._~+/=-]+)$/i.exec(header.trim());
  if (!match) throw new HttpError(401, 'unauthenticated', 'Authorization must be "Bearer <token>"');
  return match[1];
}
