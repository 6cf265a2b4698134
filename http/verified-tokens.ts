// Bearer tokens this node verified lately, with whom they name, until they expire. A
// rider's app sends the same token with every request, and verifying it again (an HMAC
// or a signature check through WebCrypto, a job off the main thread and back) was about
// 3% of a cluster node's CPU under the dispatch mix. Only the exact token string verified
// before is remembered, and only until its own expiry: a token changed in one byte is
// verified in full, and an expired one is verified again (and refused). Bounded: the
// oldest go first. WebSocket sessions verify once each and are not remembered here.

import type { Principal } from './auth.ts';

/** Tokens remembered at most (a few hundred bytes each). */
export const VERIFIED_TOKENS_MAX = 2_000;

export class VerifiedTokens {
  readonly #max: number;
  readonly #byToken = new Map<string, Principal>();

  constructor(max = VERIFIED_TOKENS_MAX) {
    this.#max = max;
  }

  /** Whom `token` names, if it was verified here and has not expired by `now`. */
  get(token: string, now: number): Principal | undefined {
    const principal = this.#byToken.get(token);
    if (!principal) return undefined;
    if (principal.expiresAt === undefined || principal.expiresAt <= now) {
      this.#byToken.delete(token);
      return undefined;
    }
    return principal;
  }

  remember(token: string, principal: Principal): void {
    if (principal.expiresAt === undefined) return;
    if (this.#byToken.size >= this.#max) this.#byToken.delete(this.#byToken.keys().next().value!);
    this.#byToken.set(token, principal);
  }

  get size(): number {
    return this.#byToken.size;
  }
}
