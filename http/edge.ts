// What the edge needs from the node: the region (tell/request/ask), read models,
// stores, and settings (storage through the ports in ports.ts). Built once in node.ts and handed to each route module.

import type { DomainSettings } from '../actors/index.ts';
import type { Config } from '../config/index.ts';
import { DEFAULT_PRICING, type PricingPolicy } from '../actors/pricing.ts';
import type { ShardRegion } from '../runtime/region.ts';
import type { DeadLetterStore } from '../runtime/ports.ts';
import type { ShardHost } from '../runtime/shard-host.ts';
import type { Keyring } from '../runtime/personal-data.ts';
import type { Authenticator } from './auth.ts';
import type { QuoteSigner } from './quote-token.ts';
import type { Accounts, AuditLog, Projections, RateLimiter, ReadModelQueries, Settings } from './ports.ts';

export interface Edge {
  readonly region: ShardRegion;
  readonly host: ShardHost;
  readonly readModels: ReadModelQueries;
  /** The projections behind the read models: how far behind they are, rebuilds. */
  readonly projector: Projections;
  readonly settings: Settings;
  readonly accounts: Accounts;
  readonly auth: Authenticator;
  readonly quotes: QuoteSigner;
  readonly limiter: RateLimiter;
  readonly domain: DomainSettings;
  readonly devTokens: boolean;
  /** Per-minute limits from the configuration (login and register are applied by the auth routes). */
  readonly rateLimits: Config['rateLimits'];
  /**
   * Seals contact details before they enter an entity (so commands, journal, snapshots and
   * views hold them sealed) and opens them where the API returns them.
   */
  readonly personalData: Keyring;
  /** Commands the runtime could not handle (admin: list, retry, discard). */
  readonly deadLetters: DeadLetterStore;
  /** A dead letter whose command was issued longer ago than this is retried only when forced. */
  readonly deadLetterRetryMaxAgeMs: number;
  /** Where admins' actions are recorded (http/audit.ts). */
  readonly audit: AuditLog;
}

export async function pricingPolicy(edge: Edge): Promise<PricingPolicy> {
  const stored = await edge.settings.get<Pick<PricingPolicy, 'tariffs' | 'surgeCap'> | null>('pricing', null);
  const d = edge.domain.dispatch;
  const configured = {
    ...DEFAULT_PRICING,
    surgeCap: d.surgeCap,
    peakHours: d.peakHours ?? DEFAULT_PRICING.peakHours,
    peakMultiplier: d.peakMultiplier ?? DEFAULT_PRICING.peakMultiplier,
  };
  // An admin's stored tariffs and surge cap override the configuration's.
  return stored ? { ...configured, ...stored } : configured;
}
