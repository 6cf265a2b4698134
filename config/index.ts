// One typed configuration, read from the environment and validated as a whole:
// every problem is reported (one line each, naming the variable), not just the first.
// The defaults select the embedded mode: no Kafka, PGlite, in-process Redis stand-ins.

import { randomBytes } from 'node:crypto';
import { BlockList, isIP } from 'node:net';
import { createSecureContext } from 'node:tls';
import { hostname } from 'node:os';
import { readFileSync } from 'node:fs';
import { FILE_SUFFIX, VARIABLES, isVariable, type VariableName } from './variables.ts';

export { VARIABLES, isVariable };

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  readonly problems: readonly string[];
  constructor(problems: readonly string[]) {
    super(problems.map((p) => `  - ${p}`).join('\n'));
    this.problems = problems;
  }
}

export interface PersonalDataKeys {
  readonly keys: ReadonlyMap<string, Buffer>;
  readonly activeId: string;
  readonly indexKey: Buffer;
}

export type Mode = 'embedded' | 'cluster';

export interface KafkaSecurity {
  readonly ssl: boolean;
  readonly sasl?: { readonly mechanism: 'plain' | 'scram-sha-256' | 'scram-sha-512'; readonly username: string; readonly password: string };
}

/** Whose X-Forwarded-For to believe for the client address. */
export type TrustProxy =
  | { readonly kind: 'off' }
  /** This many proxies in front: the client is that many entries from the right of X-Forwarded-For. */
  | { readonly kind: 'hops'; readonly hops: number }
  /** Requests from these addresses or CIDRs are proxies; their X-Forwarded-For is believed. */
  | { readonly kind: 'addresses'; readonly addresses: readonly string[] };

export interface Config {
  readonly mode: Mode;
  /**
   * Development mode is the embedded mode (one node on a laptop, `npm start`): short
   * JWT secrets and a random per-process QUOTE_SECRET are allowed there, nowhere else.
   */
  readonly development: boolean;
  readonly node: { readonly id: string };
  readonly http: {
    readonly host: string; readonly port: number; readonly maxBodyBytes: number; readonly trustProxy: TrustProxy;
    /** PEM certificate and key: the node serves HTTPS and WSS itself. */
    readonly tls?: { readonly cert: string; readonly key: string };
  };
  /** Requests per minute: /v1/ per user or IP, bookings created per user, login and register per IP. */
  readonly rateLimits: {
    readonly apiPerMin: number;
    readonly bookingsPerMin: number;
    readonly loginPerMin: number;
    readonly registerPerMin: number;
  };
  readonly log: { readonly level: string };
  readonly cluster: {
    readonly shards: number;
    readonly placementRes: number;
    readonly kafkaBrokers: readonly string[];
    readonly kafkaSecurity: KafkaSecurity;
    readonly topicPrefix: string;
    readonly sessionTimeoutMs: number;
    readonly replicationFactor: number;
    readonly minInsyncReplicas: number;
    /** Commands waiting for the broker before appends are refused. */
    readonly sendQueueMax: number;
    /**
     * CLUSTER_KEY's keys: commands written to Kafka are signed with the first, and a record that
     * verifies with none is skipped. Undefined in embedded mode and with COMMAND_SIGNING=false.
     */
    readonly signingKeys?: readonly Buffer[];
    readonly maxRequestBytes: number;
    /** WIRE_FORMS: what other nodes read, written as this release does or as the release before (every node reads both). */
    readonly wireForms: 'current' | 'previous';
  };
  readonly storage: {
    readonly databaseUrl?: string; readonly dataDir: string; readonly redisUrl?: string;
    readonly statementTimeoutMs: number; readonly embeddedOpenTimeoutMs: number;
  };
  readonly runtime: {
    readonly passivateAfterMs: number;
    readonly maxActiveEntities: number;
    readonly maxConcurrentRecoveries: number;
    readonly snapshotEvery: number;
    readonly commandMaxAttempts: number;
    /** A dead letter's command older than this is retried only when an admin forces it. */
    readonly deadLetterRetryMaxAgeMs: number;
    readonly askTimeoutMs: number;
    readonly shutdownTimeoutMs: number;
    /** How long start-up waits for unreachable dependencies before the node gives up. */
    readonly startupTimeoutMs: number;
  };
  readonly auth: {
    readonly secret?: string;
    readonly publicKey?: string;
    readonly jwksUrl?: string;
    readonly issuer: string;
    /** Required aud claim; always set when tokens come from a public key or JWKS. */
    readonly audience?: string;
    readonly devTokens: boolean;
    readonly tokenTtlSeconds: number;
  };
  readonly metrics: {
    /** A separate listener for /metrics; undefined: /metrics on the API port, admins only. */
    readonly port?: number;
    /** Where that listener binds (METRICS_HOST), apart from the API's HOST. */
    readonly host: string;
  };
  /** OTLP trace export; undefined: tracing is off (runtime/tracing.ts records nothing). */
  readonly tracing?: TracingConfig;
  readonly ws: {
    /** Whether a token in the upgrade URL (?token=) is accepted; it reaches proxies' logs. */
    readonly queryToken: boolean;
    readonly maxSocketsPerUser: number;
    readonly maxSocketsPerIp: number;
    readonly authTimeoutMs: number;
    readonly messagesPerSecond: number;
    readonly fixesPerMinute: number;
  };
  readonly quotes: {
    /** HMAC key of quote tokens: QUOTE_SECRET, or in development mode a random one. */
    readonly secret: string;
    /** True when the secret is this process's random one (quotes die with the process). */
    readonly ephemeral: boolean;
  };
  /**
   * Keys sealing personal data at rest (runtime/personal-data.ts). Undefined only in
   * development mode with none configured: the node keeps its own under DATA_DIR.
   */
  readonly personalData?: PersonalDataKeys;
  readonly dispatch: {
    readonly cellRes: number;
    readonly offerTimeoutMs: number;
    readonly surgeCap: number;
    /** UTC hours whose fares are multiplied by peakMultiplier. */
    readonly peakHours: readonly number[];
    readonly peakMultiplier: number;
    readonly deadlineMs: number;
    readonly scheduleLeadMs: number;
    /** Wait after a search that found nobody, doubled per search up to searchBackoffMaxMs. */
    readonly searchBackoffMs: number;
    readonly searchBackoffMaxMs: number;
    /** Period of an online driver's presence timer (re-announces it to its cell). */
    readonly presenceMs: number;
    /** An online driver silent this long is no longer re-announced. */
    readonly driverSilentAfterMs: number;
    /** greedy: each booking offers its own best candidate; batched: an area's bookings matched at once (actors/area.ts). */
    readonly mode: 'greedy' | 'batched';
    /** Batched mode's window. */
    readonly batchMs: number;
    /** Batched mode: contentions in the last 15 windows that make an area wait its window (0: always). */
    readonly batchContention: number;
  };
  /** Bounds of nearest-driver searches: the nearby endpoint's radius cap, cells asked per search. */
  readonly search: {
    readonly maxRadiusKm: number;
    readonly maxCells: number;
  };
}

export interface TracingConfig {
  /** Where spans are posted (OTLP/HTTP, JSON). */
  readonly url: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly serviceName: string;
  /** Share of new traces sampled, 0 to 1. */
  readonly ratio: number;
}

type Env = Readonly<Record<string, string | undefined>>;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/** Reads one variable at a time, collecting problems instead of throwing on the first. */
/**
 * What the caps per client address are on a development node (AUTH_DEV_TOKENS=true) when
 * they are not set: such a node gives a token to whoever asks, so a cap per address keeps
 * no one out there, and its own simulator (`npm run simulate`, thousands of drivers and
 * riders from one address) must fit under it. Set, a variable means what it says.
 */
export const DEVELOPMENT_CAPS = { WS_MAX_SOCKETS_PER_IP: 100_000, RATE_LIMIT_API_PER_MIN: 100_000 } as const;

function perAddress(r: Reader, name: keyof typeof DEVELOPMENT_CAPS, devTokens: boolean): number {
  return devTokens && r.raw(name) === undefined ? DEVELOPMENT_CAPS[name] : r.int(name, 1, 1_000_000);
}

class Reader {
  readonly problems: string[] = [];
  readonly #env: Env;
  readonly #files = new Map<VariableName, string | undefined>();
  constructor(env: Env) {
    this.#env = env;
  }

  raw(name: VariableName): string | undefined {
    const value = this.#env[name] ?? this.#fromFile(name);
    return value === undefined || value.trim() === '' ? undefined : value.trim();
  }

  /** A secret given as NAME_FILE: the file's contents (read once; a trailing newline is dropped by trim). */
  #fromFile(name: VariableName): string | undefined {
    const path = this.#env[`${name}${FILE_SUFFIX}`]?.trim();
    if (!path || !(VARIABLES[name] as { secret?: true }).secret) return undefined;
    if (this.#files.has(name)) return this.#files.get(name);
    const text = this.file(`${name}${FILE_SUFFIX}`, path);
    this.#files.set(name, text);
    return text;
  }

  /** A file a variable names, or undefined with a problem saying why it cannot be read. */
  file(name: string, path: string): string | undefined {
    try {
      return readFileSync(path, 'utf8');
    } catch (error) {
      this.problems.push(`${name}: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
      return undefined;
    }
  }

  /** NAME and NAME_FILE both set: which one wins would be a guess. */
  checkSecretSources(): void {
    for (const [name, variable] of Object.entries(VARIABLES)) {
      if (!(variable as { secret?: true }).secret) continue;
      if (this.#env[name]?.trim() && this.#env[`${name}${FILE_SUFFIX}`]?.trim()) {
        this.problems.push(`${name} and ${name}${FILE_SUFFIX} are both set; keep one`);
      }
    }
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

  /** Comma-separated hours of the day (0-23), or `none`. */
  hours(name: VariableName): number[] {
    const text = this.string(name);
    if (text.toLowerCase() === 'none') return [];
    const hours = text.split(',').map((h) => h.trim());
    if (hours.some((h) => !/^\d{1,2}$/.test(h) || Number(h) > 23)) {
      this.problems.push(`${name} must be hours 0-23 separated by commas, or none, got "${text}"`);
      return [];
    }
    return [...new Set(hours.map(Number))].sort((a, b) => a - b);
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

/** Secrets that appear as samples in this repository's docs and deploy files, or read like a placeholder. */
const SAMPLE_SECRETS = [
  'change-me-in-production-please-32chars', 'replace-me-with-a-long-random-secret', 'a-long-shared-development-secret',
].map(normalized);
const PLACEHOLDER_WORDS = ['changeme', 'replaceme', 'changeit', 'placeholder', 'yoursecret', 'example', 'sample', 'dummy', 'notasecret'];

function normalized(text: string): string {
  return text.toLowerCase().replace(/[^a-z0-9]/g, '');
}

/** Why a secret is unusable whatever the mode (a sample or placeholder value), or undefined. */
function placeholderProblem(name: VariableName, value: string): string | undefined {
  // A compose-style "${VAR}" or "$VAR" that nothing substituted (a manifest applied as written).
  if (/^\$\{[A-Za-z_]\w*[^}]*\}$|^\$[A-Za-z_]\w*$/.test(value)) {
    return `${name} looks like an unsubstituted variable ("\${...}"); set the real secret`;
  }
  const n = normalized(value);
  if (
    SAMPLE_SECRETS.includes(n) || PLACEHOLDER_WORDS.some((w) => n.includes(w)) || /^(.)\1*$/.test(n) ||
    ['secret', 'password', 'dispatch'].includes(n)
  ) {
    return `${name} is a sample or placeholder value; generate a real one (for example: openssl rand -base64 48)`;
  }
  return undefined;
}

const bytes = (text: string) => Buffer.byteLength(text, 'utf8');

function trustProxy(r: Reader): TrustProxy {
  const text = r.string('TRUST_PROXY');
  const lower = text.toLowerCase();
  if (['false', 'off', 'no', '0'].includes(lower)) return { kind: 'off' };
  if (lower === 'true' || lower === 'yes' || lower === '*') {
    r.problems.push(
      `TRUST_PROXY=${text} would believe any client's X-Forwarded-For; ` +
      'give the number of proxies in front (for example 1) or their addresses',
    );
    return { kind: 'off' };
  }
  if (/^\d+$/.test(text)) {
    const hops = Number(text);
    if (hops > 16) {
      r.problems.push(
        `TRUST_PROXY must be false, a number of proxies from 1 to 16, or a comma-separated list of IP addresses or CIDRs, got "${text}"`,
      );
      return { kind: 'off' };
    }
    return { kind: 'hops', hops };
  }
  const addresses = text.split(',').map((a) => a.trim()).filter(Boolean);
  const bad = addresses.filter((a) => !isAddressOrCidr(a));
  if (addresses.length === 0 || bad.length > 0) {
    r.problems.push(
      `TRUST_PROXY must be false, a number of proxies from 1 to 16, or a comma-separated list of IP addresses or CIDRs, got "${text}" ` +
      `(not an address or CIDR: ${bad.join(', ') || 'none given'})`,
    );
    return { kind: 'off' };
  }
  return { kind: 'addresses', addresses };
}

function isAddressOrCidr(text: string): boolean {
  const [address, prefix, ...rest] = text.split('/');
  const family = isIP(address ?? '');
  if (family === 0 || rest.length > 0) return false;
  if (prefix === undefined) return true;
  return /^\d{1,3}$/.test(prefix) && Number(prefix) <= (family === 4 ? 32 : 128);
}

/** The proxies of an address list as a BlockList, to test a peer address with `.check(ip)`. */
export function trustedProxies(addresses: readonly string[]): BlockList {
  const list = new BlockList();
  for (const entry of addresses) {
    const [address, prefix] = entry.split('/') as [string, string | undefined];
    const type = isIP(address) === 6 ? 'ipv6' : 'ipv4';
    if (prefix === undefined) list.addAddress(address, type);
    else list.addSubnet(address, Number(prefix), type);
  }
  return list;
}

/** The node's own certificate and key, read at start (a file it cannot read stops it with one line). */
function serverTls(r: Reader): { cert: string; key: string } | undefined {
  const certFile = r.optional('TLS_CERT_FILE');
  const keyFile = r.optional('TLS_KEY_FILE');
  if (!certFile && !keyFile) return undefined;
  if (!certFile || !keyFile) {
    r.problems.push('TLS_CERT_FILE and TLS_KEY_FILE go together: set both (HTTPS) or neither (plain HTTP)');
    return undefined;
  }
  const [cert, key] = [r.file('TLS_CERT_FILE', certFile), r.file('TLS_KEY_FILE', keyFile)];
  if (cert === undefined || key === undefined) return undefined;
  try {
    createSecureContext({ cert, key });
  } catch (error) {
    r.problems.push(`TLS_CERT_FILE and TLS_KEY_FILE are not a usable PEM certificate and its key (${(error as Error).message})`);
    return undefined;
  }
  return { cert, key };
}

/** Kafka connection security: TLS, and SASL over it. */
function kafkaSecurity(r: Reader): KafkaSecurity {
  const ssl = r.bool('KAFKA_SSL');
  const username = r.optional('KAFKA_SASL_USERNAME');
  const password = r.optional('KAFKA_SASL_PASSWORD');
  const placeholder = password === undefined ? undefined : placeholderProblem('KAFKA_SASL_PASSWORD', password);
  if (placeholder) r.problems.push(placeholder);
  if (r.raw('KAFKA_SASL_MECHANISM') === undefined) {
    // Credentials with no mechanism would be silently unused: the node would connect without them.
    if (username || password) r.problems.push('KAFKA_SASL_USERNAME or KAFKA_SASL_PASSWORD is set but KAFKA_SASL_MECHANISM is not');
    return { ssl };
  }
  const mechanism = r.oneOf('KAFKA_SASL_MECHANISM', ['plain', 'scram-sha-256', 'scram-sha-512'] as const, 'plain');
  if (!username || !password) r.problems.push('KAFKA_SASL_MECHANISM needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD');
  // SCRAM proves the password without sending it; PLAIN sends it as it is.
  if (!ssl && mechanism === 'plain') {
    r.problems.push('KAFKA_SASL_MECHANISM=plain needs KAFKA_SSL=true: PLAIN sends the password in clear (scram-sha-512 does not)');
  }
  return { ssl, sasl: { mechanism, username: username ?? '', password: password ?? '' } };
}

/**
 * DATA_KEYS, DATA_KEY_ID and DATA_INDEX_KEY. Required outside development mode: every node
 * must open what any other sealed, so none may invent its own keys.
 */
function personalDataKeys(r: Reader, development: boolean, otherSecrets: readonly (string | undefined)[]): PersonalDataKeys | undefined {
  const list = r.optional('DATA_KEYS');
  const index = r.optional('DATA_INDEX_KEY');
  const activeText = r.optional('DATA_KEY_ID');
  if (list === undefined && index === undefined) {
    if (activeText !== undefined) r.problems.push('DATA_KEY_ID is set but DATA_KEYS is not');
    if (!development) {
      r.problems.push(
        'DATA_KEYS and DATA_INDEX_KEY are required in cluster mode (the same on every node), ' +
        'so contact details are sealed at rest and every node can open them',
      );
    }
    return undefined;
  }
  // A sample value is named as one whatever else is wrong (a template applied as written).
  const samples = ([['DATA_KEYS', list], ['DATA_INDEX_KEY', index]] as const)
    .map(([name, value]) => value === undefined ? undefined : placeholderProblem(name, value))
    .filter((p) => p !== undefined);
  if (samples.length > 0) {
    r.problems.push(...samples);
    return undefined;
  }
  if (list === undefined || index === undefined) {
    r.problems.push('DATA_KEYS and DATA_INDEX_KEY go together: set both, or (development only) neither');
    return undefined;
  }
  const keys = new Map<string, Buffer>();
  for (const entry of list.split(',').map((e) => e.trim()).filter(Boolean)) {
    const [id = '', text = ''] = entry.split(':');
    const key = Buffer.from(text, 'base64');
    if (!/^[A-Za-z0-9_-]{1,32}$/.test(id) || key.length !== 32 || !/^[A-Za-z0-9+/_-]+=*$/.test(text)) {
      // The key itself is never echoed.
      r.problems.push(
        'DATA_KEYS entries must be <id>:<32 bytes in base64> with ids of letters, digits, _ or - ' +
        `(npm run keys -- new <id>); "${id}" is not`,
      );
      return undefined;
    }
    if (keys.has(id)) r.problems.push(`DATA_KEYS names key "${id}" twice`);
    if (new Set(key).size === 1) {
      r.problems.push(`DATA_KEYS key "${id}" is a placeholder (every byte the same); generate one with npm run keys -- new ${id}`);
    }
    keys.set(id, key);
  }
  if (keys.size === 0) {
    r.problems.push('DATA_KEYS has no keys');
    return undefined;
  }
  const activeId = activeText ?? [...keys.keys()][0]!;
  if (!keys.has(activeId)) r.problems.push(`DATA_KEY_ID "${activeId}" is not one of the ids in DATA_KEYS (${[...keys.keys()].join(', ')})`);
  if (bytes(index) < 32) r.problems.push(`DATA_INDEX_KEY must be at least 32 bytes, got ${bytes(index)}`);
  else if (otherSecrets.includes(index)) {
    r.problems.push('DATA_INDEX_KEY must differ from JWT_SECRET and QUOTE_SECRET (one key, one purpose)');
  }
  return { keys, activeId, indexKey: Buffer.from(index, 'utf8') };
}

/** Only the personal-data keys, for tools that need nothing else (npm run keys). */
export function loadPersonalDataKeys(env: Env = process.env): PersonalDataKeys | undefined {
  const r = new Reader(env);
  r.checkSecretSources();
  const keys = personalDataKeys(r, true, []);
  if (r.problems.length > 0) throw new ConfigError(r.problems);
  return keys;
}

/** DATABASE_URL or REDIS_URL with its *_PASSWORD put in, so the password can live in a secret file. */
function withPassword(r: Reader, service: 'DATABASE' | 'REDIS', url: string | undefined): string | undefined {
  const [urlName, passwordName] = [`${service}_URL`, `${service}_PASSWORD`] as const;
  const password = r.optional(passwordName);
  if (password === undefined) return url;
  const placeholder = placeholderProblem(passwordName, password);
  if (placeholder) r.problems.push(placeholder);
  if (url === undefined) {
    r.problems.push(`${passwordName} is set but ${urlName} is not (the password is for the URL's server)`);
    return url;
  }
  const parsed = new URL(url);
  if (parsed.password) {
    r.problems.push(`${urlName} already has a password and ${passwordName} is set; keep one`);
    return url;
  }
  parsed.password = encodeURIComponent(password);
  return parsed.toString();
}

/**
 * CLUSTER_KEY, comma-separated keys (the first signs), required in cluster mode unless
 * COMMAND_SIGNING=false: without it anyone who can write to Kafka can forge any command.
 */
function signingKeys(r: Reader, mode: Mode, otherSecrets: readonly (string | undefined)[]): Buffer[] | undefined {
  const text = r.optional('CLUSTER_KEY');
  const signing = r.bool('COMMAND_SIGNING');
  if (text === undefined) {
    if (mode === 'cluster' && signing) {
      r.problems.push(
        'CLUSTER_KEY is required in cluster mode (at least 32 bytes, the same on every node: it signs the commands written to Kafka); ' +
        'COMMAND_SIGNING=false turns signing off where nothing but the nodes can write to the brokers',
      );
    }
    return undefined;
  }
  const keys = text.split(',').map((k) => k.trim()).filter(Boolean);
  keys.forEach((key, i) => {
    const name = keys.length > 1 ? `CLUSTER_KEY key ${i + 1}` : 'CLUSTER_KEY';
    const placeholder = placeholderProblem('CLUSTER_KEY', key);
    if (placeholder) r.problems.push(placeholder.replace('CLUSTER_KEY', name));
    else if (bytes(key) < 32) r.problems.push(`${name} must be at least 32 bytes, got ${bytes(key)}`);
    else if (otherSecrets.includes(key)) r.problems.push(`${name} must differ from the other secrets (one key, one purpose)`);
  });
  if (mode !== 'cluster' || !signing) return undefined;
  return keys.map((k) => Buffer.from(k, 'utf8'));
}

/** A URL with its password masked; Redis URLs often have a password and no user (redis://:password@host). */
function redact(url: string): string {
  return url.replace(/\/\/([^:/@]*):([^@]+)@/, '//$1:***@');
}

/**
 * The OTEL_* variables, as the OpenTelemetry specification names them; tracing is on only
 * with an exporter (`otlp`, or an endpoint set and no exporter named).
 */
function tracing(r: Reader): TracingConfig | undefined {
  const traces = r.url('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', ['http:', 'https:']);
  const base = r.url('OTEL_EXPORTER_OTLP_ENDPOINT', ['http:', 'https:']);
  const exporter = r.oneOf('OTEL_TRACES_EXPORTER', ['otlp', 'none'], traces || base ? 'otlp' : 'none');
  const ratio = r.number('OTEL_TRACES_SAMPLER_ARG', 0, 1);
  const headers = otlpHeaders(r);
  if (exporter === 'none') return undefined;
  const url = traces ?? (base ? `${base.replace(/\/+$/, '')}/v1/traces` : 'http://localhost:4318/v1/traces');
  return { url, headers, serviceName: r.string('OTEL_SERVICE_NAME'), ratio };
}

/** `key=value,key2=value2`, values URL-encoded as the specification allows. */
function otlpHeaders(r: Reader): Record<string, string> {
  const text = r.optional('OTEL_EXPORTER_OTLP_HEADERS');
  const headers: Record<string, string> = {};
  for (const pair of (text ?? '').split(',').map((p) => p.trim()).filter(Boolean)) {
    const at = pair.indexOf('=');
    if (at <= 0) { r.problems.push('OTEL_EXPORTER_OTLP_HEADERS must be key=value pairs separated by commas'); return {}; }
    try {
      headers[pair.slice(0, at).trim()] = decodeURIComponent(pair.slice(at + 1).trim());
    } catch {
      headers[pair.slice(0, at).trim()] = pair.slice(at + 1).trim();
    }
  }
  return headers;
}

export function loadConfig(env: Env = process.env): Config {
  const r = new Reader(env);
  r.checkSecretSources();
  const kafkaBrokers = r.brokers('KAFKA_BROKERS');
  const databaseUrl = withPassword(r, 'DATABASE', r.url('DATABASE_URL', ['postgres:', 'postgresql:']));
  const redisUrl = withPassword(r, 'REDIS', r.url('REDIS_URL', ['redis:', 'rediss:']));
  const mode = r.oneOf<Mode>('MODE', ['embedded', 'cluster'], kafkaBrokers.length > 0 ? 'cluster' : 'embedded');
  if (mode === 'cluster') {
    for (const [name, value] of [
      ['KAFKA_BROKERS', kafkaBrokers.length > 0], ['DATABASE_URL', databaseUrl], ['REDIS_URL', redisUrl],
    ] as const) {
      if (!value && !r.raw(name)) r.problems.push(`${name} is required in cluster mode`);
    }
  }
  const cellRes = r.int('CELL_RES', 0, 15);
  const placementRes = r.int('PLACEMENT_RES', 0, 15);
  if (placementRes >= cellRes) r.problems.push(`PLACEMENT_RES must be coarser (smaller) than CELL_RES (${cellRes}), got ${placementRes}`);
  const level = r.string('LOG_LEVEL');
  if (!LOG_LEVELS.includes(level)) r.problems.push(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got "${level}"`);
  const development = mode === 'embedded';
  const quoteSecret = r.optional('QUOTE_SECRET');
  let jwksUrl = r.url('JWKS_URL', ['https:', 'http:']);
  if (jwksUrl?.toLowerCase().startsWith('http:')) {
    r.problems.push(`JWKS_URL must be an https: URL (keys fetched over plain HTTP can be swapped in transit), got "${redact(jwksUrl)}"`);
    jwksUrl = undefined;
  }

  const devTokens = r.bool('AUTH_DEV_TOKENS');
  const config: Config = {
    mode,
    development,
    node: { id: r.optional('NODE_ID') ?? hostname() },
    http: {
      host: r.string('HOST'),
      port: r.int('PORT', 0, 65535),
      maxBodyBytes: r.int('MAX_BODY_BYTES', 1024, 64 * 1024 * 1024),
      trustProxy: trustProxy(r),
      tls: serverTls(r),
    },
    metrics: { port: r.raw('METRICS_PORT') === undefined ? undefined : r.int('METRICS_PORT', 0, 65535), host: r.string('METRICS_HOST') },
    tracing: tracing(r),
    ws: {
      queryToken: r.bool('WS_QUERY_TOKEN'),
      maxSocketsPerUser: r.int('WS_MAX_SOCKETS_PER_USER', 1, 1000),
      maxSocketsPerIp: perAddress(r, 'WS_MAX_SOCKETS_PER_IP', devTokens),
      authTimeoutMs: r.int('WS_AUTH_TIMEOUT_MS', 100, 600_000),
      messagesPerSecond: r.int('WS_MESSAGES_PER_SECOND', 1, 10_000),
      fixesPerMinute: r.int('LOCATION_FIXES_PER_MINUTE', 1, 60_000),
    },
    rateLimits: {
      apiPerMin: perAddress(r, 'RATE_LIMIT_API_PER_MIN', devTokens),
      bookingsPerMin: r.int('RATE_LIMIT_BOOKINGS_PER_MIN', 1, 1_000_000),
      loginPerMin: r.int('RATE_LIMIT_LOGIN_PER_MIN', 1, 1_000_000),
      registerPerMin: r.int('RATE_LIMIT_REGISTER_PER_MIN', 1, 1_000_000),
    },
    log: { level },
    cluster: {
      shards: r.int('SHARDS', 1, 4096),
      placementRes,
      kafkaBrokers,
      kafkaSecurity: kafkaSecurity(r),
      topicPrefix: r.string('KAFKA_TOPIC_PREFIX'),
      sessionTimeoutMs: r.int('KAFKA_SESSION_TIMEOUT_MS', 3_000, 300_000),
      replicationFactor: r.int('KAFKA_REPLICATION_FACTOR', 1, 32),
      minInsyncReplicas: r.int('KAFKA_MIN_INSYNC_REPLICAS', 1, 32),
      sendQueueMax: r.int('KAFKA_SEND_QUEUE_MAX', 1, 10_000_000),
      // Room for one request's overheads (about 100 bytes per shard) and at least a small command.
      maxRequestBytes: r.int('KAFKA_MAX_REQUEST_BYTES', 65_536, 100 * 1024 * 1024),
      wireForms: r.oneOf('WIRE_FORMS', ['current', 'previous'] as const, 'current'),
      signingKeys: signingKeys(r, mode, [r.optional('JWT_SECRET'), quoteSecret, r.optional('DATA_INDEX_KEY')]),
    },
    storage: {
      databaseUrl, dataDir: r.string('DATA_DIR'), redisUrl,
      statementTimeoutMs: r.int('STATEMENT_TIMEOUT_MS', 100, 3_600_000),
      embeddedOpenTimeoutMs: r.int('EMBEDDED_OPEN_TIMEOUT_MS', 1_000, 3_600_000),
    },
    runtime: {
      passivateAfterMs: r.int('PASSIVATE_AFTER_MS', 100, 86_400_000),
      maxActiveEntities: r.int('MAX_ACTIVE_ENTITIES', 10, 10_000_000),
      maxConcurrentRecoveries: r.int('MAX_CONCURRENT_RECOVERIES', 1, 10_000),
      snapshotEvery: r.int('SNAPSHOT_EVERY', 0, 1_000_000),
      commandMaxAttempts: r.int('COMMAND_MAX_ATTEMPTS', 1, 1000),
      deadLetterRetryMaxAgeMs: r.int('DEAD_LETTER_RETRY_MAX_AGE_MS', 1_000, 366 * 86_400_000),
      askTimeoutMs: r.int('ASK_TIMEOUT_MS', 10, 600_000),
      shutdownTimeoutMs: r.int('SHUTDOWN_TIMEOUT_MS', 100, 600_000),
      startupTimeoutMs: r.int('STARTUP_TIMEOUT_MS', 1_000, 86_400_000),
    },
    auth: {
      secret: r.optional('JWT_SECRET'),
      publicKey: r.optional('JWT_PUBLIC_KEY'),
      jwksUrl,
      issuer: r.string('JWT_ISSUER'),
      audience: r.optional('JWT_AUDIENCE'),
      devTokens,
      tokenTtlSeconds: r.int('TOKEN_TTL_SECONDS', 60, 86_400),
    },
    personalData: personalDataKeys(r, development, [r.optional('JWT_SECRET'), quoteSecret]),
    quotes: quoteSecret
      ? { secret: quoteSecret, ephemeral: false }
      // Documented in .env.example: development only, random per process, never derived from anything public.
      : { secret: randomBytes(32).toString('base64url'), ephemeral: true },
    dispatch: {
      cellRes,
      offerTimeoutMs: r.int('OFFER_TIMEOUT_MS', 1_000, 600_000),
      surgeCap: r.number('SURGE_CAP', 1, 20),
      peakHours: r.hours('PEAK_HOURS'),
      peakMultiplier: r.number('PEAK_MULTIPLIER', 1, 5),
      deadlineMs: r.int('DISPATCH_DEADLINE_MS', 5_000, 3_600_000),
      scheduleLeadMs: r.int('SCHEDULE_LEAD_MS', 0, 86_400_000),
      searchBackoffMs: r.int('DISPATCH_SEARCH_BACKOFF_MS', 100, 60_000),
      searchBackoffMaxMs: r.int('DISPATCH_SEARCH_BACKOFF_MAX_MS', 100, 600_000),
      presenceMs: r.int('DRIVER_PRESENCE_MS', 1_000, 100_000),
      driverSilentAfterMs: r.int('DRIVER_SILENT_AFTER_MS', 60_000, 86_400_000),
      mode: r.oneOf('DISPATCH_MODE', ['greedy', 'batched'] as const, 'greedy'),
      batchMs: r.int('DISPATCH_BATCH_MS', 100, 60_000),
      batchContention: r.int('DISPATCH_BATCH_CONTENTION', 0, 1_000),
    },
    search: {
      maxRadiusKm: r.number('SEARCH_MAX_RADIUS_KM', 0.1, 100),
      maxCells: r.int('SEARCH_MAX_CELLS', 1, 100_000),
    },
  };
  if (config.dispatch.searchBackoffMaxMs < config.dispatch.searchBackoffMs) {
    r.problems.push(
      `DISPATCH_SEARCH_BACKOFF_MAX_MS (${config.dispatch.searchBackoffMaxMs}) ` +
      `must not be below DISPATCH_SEARCH_BACKOFF_MS (${config.dispatch.searchBackoffMs})`,
    );
  }
  if (config.dispatch.mode === 'batched' && config.dispatch.batchMs * 2 > config.dispatch.deadlineMs) {
    // A booking waits up to a window per batch: with fewer than two before its deadline it could never rejoin.
    r.problems.push(
      `DISPATCH_BATCH_MS (${config.dispatch.batchMs}) must be at most half of DISPATCH_DEADLINE_MS (${config.dispatch.deadlineMs}) in batched mode`,
    );
  }
  if (config.cluster.minInsyncReplicas > config.cluster.replicationFactor) {
    // The topic could never take a write: every append would fail.
    r.problems.push(
      `KAFKA_MIN_INSYNC_REPLICAS (${config.cluster.minInsyncReplicas}) ` +
      `must not exceed KAFKA_REPLICATION_FACTOR (${config.cluster.replicationFactor})`,
    );
  }
  if (mode === 'cluster' && !config.auth.secret && !config.auth.publicKey && !config.auth.jwksUrl && !r.raw('JWKS_URL')) {
    // Every node must verify the same tokens, so none may invent its own key.
    r.problems.push('JWT_SECRET, JWT_PUBLIC_KEY or JWKS_URL is required in cluster mode');
  }
  const secret = config.auth.secret;
  if (secret !== undefined) {
    const placeholder = placeholderProblem('JWT_SECRET', secret);
    if (placeholder) r.problems.push(placeholder);
    else if (development && secret.length < 16) r.problems.push('JWT_SECRET must be at least 16 characters');
    else if (!development && bytes(secret) < 32) {
      r.problems.push(`JWT_SECRET must be at least 32 bytes in ${mode} mode, got ${bytes(secret)}`);
    }
  }
  if ((r.raw('JWT_PUBLIC_KEY') || r.raw('JWKS_URL')) && !config.auth.audience) {
    r.problems.push(
      'JWT_AUDIENCE is required with JWT_PUBLIC_KEY or JWKS_URL, so tokens the identity provider issued for other services are refused',
    );
  }
  if (config.auth.devTokens && mode !== 'embedded') {
    // One variable would let anyone mint an admin token for the whole cluster.
    r.problems.push(`AUTH_DEV_TOKENS=true is refused in ${mode} mode: it lets anyone mint tokens of any role (embedded mode only)`);
  }
  if (quoteSecret !== undefined) {
    const placeholder = placeholderProblem('QUOTE_SECRET', quoteSecret);
    if (placeholder) r.problems.push(placeholder);
    else if (bytes(quoteSecret) < 32) r.problems.push(`QUOTE_SECRET must be at least 32 bytes, got ${bytes(quoteSecret)}`);
    else if (quoteSecret === secret) r.problems.push('QUOTE_SECRET must differ from JWT_SECRET (one key, one purpose)');
  } else if (!development) {
    r.problems.push(
      `QUOTE_SECRET is required in ${mode} mode (at least 32 bytes, the same on every node), ` +
      'so any node honours a quote and none can be forged',
    );
  }
  if (r.problems.length > 0) throw new ConfigError(r.problems);
  return config;
}
