// One typed configuration, read from the environment and validated as a whole:
// every problem is reported (one line each, naming the variable), not just the first.
// The defaults select the embedded mode: no Kafka, PGlite, in-process Redis stand-ins.

import { hostname } from 'node:os';
import { VARIABLES, type VariableName } from './variables.ts';

export { VARIABLES };

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(problems.map((p) => `  - ${p}`).join('\n'));
    this.problems = problems;
  }
}

export type Mode = 'embedded' | 'cluster';

export interface Config {
  readonly mode: Mode;
  readonly node: { readonly id: string };
  readonly http: { readonly host: string; readonly port: number; readonly maxBodyBytes: number };
  readonly log: { readonly level: string };
  readonly cluster: {
    readonly shards: number;
    readonly placementRes: number;
    readonly kafkaBrokers: readonly string[];
    readonly topicPrefix: string;
    readonly sessionTimeoutMs: number;
  };
  readonly storage: { readonly databaseUrl?: string; readonly dataDir: string; readonly redisUrl?: string };
  readonly runtime: {
    readonly passivateAfterMs: number;
    readonly maxActiveEntities: number;
    readonly maxConcurrentRecoveries: number;
    readonly snapshotEvery: number;
    readonly askTimeoutMs: number;
    readonly shutdownTimeoutMs: number;
  };
  readonly auth: {
    readonly secret?: string;
    readonly publicKey?: string;
    readonly jwksUrl?: string;
    readonly issuer: string;
    readonly devTokens: boolean;
    readonly tokenTtlSeconds: number;
  };
  readonly dispatch: {
    readonly cellRes: number;
    readonly offerTimeoutMs: number;
    readonly surgeCap: number;
    readonly deadlineMs: number;
    readonly scheduleLeadMs: number;
  };
}

type Env = Readonly<Record<string, string | undefined>>;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Reads one variable at a time, collecting problems instead of throwing on the first. */
class Reader {
  readonly problems: string[] = [];
  readonly #env: Env;
  constructor(env: Env) {
    this.#env = env;
  }

  raw(name: VariableName): string | undefined {
    const value = this.#env[name];
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  }

  string(name: VariableName): string {
    return this.raw(name) ?? VARIABLES[name].default ?? '';
  }

  optional(name: VariableName): string | undefined {
    return this.raw(name);
  }

  int(name: VariableName, min: number, max: number): number {
    const text = this.raw(name) ?? VARIABLES[name].default!;
    const value = Number(text);
    if (!/^-?\d+$/.test(text) || !Number.isSafeInteger(value) || value < min || value > max) {
      this.problems.push(`${name} must be an integer from ${min} to ${max}, got "${text}"`);
      return Number(VARIABLES[name].default ?? min);
    }
    return value;
  }

  number(name: VariableName, min: number, max: number): number {
    const text = this.raw(name) ?? VARIABLES[name].default!;
    const value = Number(text);
    if (text === '' || !Number.isFinite(value) || value < min || value > max) {
      this.problems.push(`${name} must be a number from ${min} to ${max}, got "${text}"`);
      return Number(VARIABLES[name].default ?? min);
    }
    return value;
  }

  bool(name: VariableName): boolean {
    const text = (this.raw(name) ?? VARIABLES[name].default ?? 'false').toLowerCase();
    if (['true', '1', 'yes'].includes(text)) return true;
    if (['false', '0', 'no'].includes(text)) return false;
    this.problems.push(`${name} must be true or false, got "${text}"`);
    return false;
  }

  oneOf<T extends string>(name: VariableName, allowed: readonly T[], fallback: T): T {
    const text = this.raw(name);
    if (text === undefined) return fallback;
    if (!allowed.includes(text as T)) {
      this.problems.push(`${name} must be one of ${allowed.join(', ')}, got "${text}"`);
      return fallback;
    }
    return text as T;
  }

  url(name: VariableName, protocols: readonly string[]): string | undefined {
    const text = this.raw(name);
    if (text === undefined) return undefined;
    let parsed: URL;
    try {
      parsed = new URL(text);
    } catch {
      this.problems.push(`${name} must be a URL (${protocols.map((p) => `${p}//...`).join(' or ')}), got "${redact(text)}"`);
      return undefined;
    }
    if (!protocols.includes(parsed.protocol) || !parsed.hostname && !parsed.searchParams.get('host')) {
      this.problems.push(`${name} must be a ${protocols.join(' or ')} URL with a host, got "${redact(text)}"`);
      return undefined;
    }
    return text;
  }

  brokers(name: VariableName): string[] {
    const text = this.raw(name);
    if (text === undefined) return [];
    const brokers = text.split(',').map((b) => b.trim()).filter(Boolean);
    const bad = brokers.filter((b) => !/^[A-Za-z0-9.-]+:\d{1,5}$/.test(b) && !/^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(b));
    if (brokers.length === 0 || bad.length > 0) {
      this.problems.push(`${name} must be a comma-separated list of host:port, got "${text}"`);
    }
    return brokers;
  }
}

function redact(url: string): string {
  return url.replace(/\/\/([^:/@]+):([^@]+)@/, '//$1:***@');
}

export function loadConfig(env: Env = process.env): Config {
  const r = new Reader(env);
  const kafkaBrokers = r.brokers('KAFKA_BROKERS');
  const databaseUrl = r.url('DATABASE_URL', ['postgres:', 'postgresql:']);
  const redisUrl = r.url('REDIS_URL', ['redis:', 'rediss:']);
  const mode = r.oneOf<Mode>('MODE', ['embedded', 'cluster'], kafkaBrokers.length > 0 ? 'cluster' : 'embedded');
  if (mode === 'cluster') {
    for (const [name, value] of [['KAFKA_BROKERS', kafkaBrokers.length > 0], ['DATABASE_URL', databaseUrl], ['REDIS_URL', redisUrl]] as const) {
      if (!value && !r.raw(name)) r.problems.push(`${name} is required in cluster mode`);
    }
  }
  const cellRes = r.int('CELL_RES', 0, 15);
  const placementRes = r.int('PLACEMENT_RES', 0, 15);
  if (placementRes >= cellRes) r.problems.push(`PLACEMENT_RES must be coarser (smaller) than CELL_RES (${cellRes}), got ${placementRes}`);
  const level = r.string('LOG_LEVEL');
  if (!LOG_LEVELS.includes(level)) r.problems.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got "${level}"`);
  const jwksUrl = r.url('JWKS_URL', ['https:', 'http:']);

  const config: Config = {
    mode,
    node: { id: r.optional('NODE_ID') ?? hostname() },
    http: { host: r.string('HOST'), port: r.int('PORT', 0, 65535), maxBodyBytes: r.int('MAX_BODY_BYTES', 1024, 64 * 1024 * 1024) },
    log: { level },
    cluster: {
      shards: r.int('SHARDS', 1, 4096),
      placementRes,
      kafkaBrokers,
      topicPrefix: r.string('KAFKA_TOPIC_PREFIX'),
      sessionTimeoutMs: r.int('KAFKA_SESSION_TIMEOUT_MS', 3_000, 300_000),
    },
    storage: { databaseUrl, dataDir: r.string('DATA_DIR'), redisUrl },
    runtime: {
      passivateAfterMs: r.int('PASSIVATE_AFTER_MS', 100, 86_400_000),
      maxActiveEntities: r.int('MAX_ACTIVE_ENTITIES', 10, 10_000_000),
      maxConcurrentRecoveries: r.int('MAX_CONCURRENT_RECOVERIES', 1, 10_000),
      snapshotEvery: r.int('SNAPSHOT_EVERY', 0, 1_000_000),
      askTimeoutMs: r.int('ASK_TIMEOUT_MS', 10, 600_000),
      shutdownTimeoutMs: r.int('SHUTDOWN_TIMEOUT_MS', 100, 600_000),
    },
    auth: {
      secret: r.optional('JWT_SECRET'),
      publicKey: r.optional('JWT_PUBLIC_KEY'),
      jwksUrl,
      issuer: r.string('JWT_ISSUER'),
      devTokens: r.bool('AUTH_DEV_TOKENS'),
      tokenTtlSeconds: r.int('TOKEN_TTL_SECONDS', 60, 86_400),
    },
    dispatch: {
      cellRes,
      offerTimeoutMs: r.int('OFFER_TIMEOUT_MS', 1_000, 600_000),
      surgeCap: r.number('SURGE_CAP', 1, 20),
      deadlineMs: r.int('DISPATCH_DEADLINE_MS', 5_000, 3_600_000),
      scheduleLeadMs: r.int('SCHEDULE_LEAD_MS', 0, 86_400_000),
    },
  };
  if (mode === 'cluster' && !config.auth.secret && !config.auth.publicKey && !config.auth.jwksUrl && !r.raw('JWKS_URL')) {
    // Every node must verify the same tokens, so none may invent its own key.
    r.problems.push('JWT_SECRET, JWT_PUBLIC_KEY or JWKS_URL is required in cluster mode');
  }
  if (config.auth.secret !== undefined && config.auth.secret.length < 16) r.problems.push('JWT_SECRET must be at least 16 characters');
  if (r.problems.length > 0) throw new ConfigError(r.problems);
  return config;
}
