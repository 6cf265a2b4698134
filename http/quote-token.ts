// A quote is its own proof: its terms signed with HMAC-SHA256 into the quoteId, so
// any node can honour it until it expires without storing it.

import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';
import type { Quote } from '../actors/pricing.ts';

export interface QuoteTerms extends Quote {
  readonly riderId: string;
  readonly pickupCell: string;
}

export class QuoteSigner {
  /** A KeyObject: createHmac wraps a Buffer key anew on every call, several times the MAC's own cost. */
  readonly #key: KeyObject;
  constructor(secret: string) {
    this.#key = createSecretKey(createHmac('sha256', 'dispatch-quote').update(secret).digest());
  }

  sign(terms: QuoteTerms): string {
    const body = Buffer.from(JSON.stringify(terms)).toString('base64url');
    return `${body}.${this.#mac(body)}`;
  }

  /** The terms, or a reason the quote cannot be used. */
  verify(quoteId: string, now: number): QuoteTerms | string {
    const [body, mac] = quoteId.split('.');
    if (!body || !mac) return 'malformed quote id';
    const expected = Buffer.from(this.#mac(body));
    const given = Buffer.from(mac);
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) return 'quote signature does not match';
    const terms = JSON.parse(Buffer.from(body, 'base64url').toString('utf8')) as QuoteTerms;
    if (terms.expiresAt <= now) return 'quote expired';
    return terms;
  }

  #mac(body: string): string {
    return createHmac('sha256', this.#key).update(body).digest('base64url');
  }
}
