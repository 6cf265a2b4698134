// Every environment variable the node reads, with its default and meaning.
// `.env.example` documents exactly these (a test checks), and so must compose and k8s files.

export interface Variable {
  readonly default?: string;
  readonly doc: string;
  /** A secret: also read from the file named by NAME_FILE (a mounted Docker or Kubernetes secret). */
  readonly secret?: true;
}

const DEFINED = {
  MODE: { doc: 'embedded (one node, everything in-process) or cluster; default: cluster when KAFKA_BROKERS is set' },
  NODE_ID: { doc: 'this node\'s id in the cluster; default: the hostname' },
  HOST: { default: '0.0.0.0', doc: 'address the HTTP server binds (`npm run demo` binds 127.0.0.1 unless HOST is set)' },
  PORT: { default: '8000', doc: 'HTTP port (0 picks a free one)' },
  TLS_CERT_FILE: {
    doc: 'PEM certificate (chain) the node serves HTTPS and WSS with, on PORT; with TLS_KEY_FILE. Unset: plain HTTP (TLS ends at a proxy ' +
      'in front). `npm run certs` makes a development one',
  },
  TLS_KEY_FILE: { doc: 'PEM private key of TLS_CERT_FILE (a mounted secret file)' },
  MAX_BODY_BYTES: { default: '1048576', doc: 'largest accepted request body; larger is 413' },
  LOG_LEVEL: { default: 'info', doc: 'fatal, error, warn, info, debug, trace or silent' },
  SHARDS: { default: '32', doc: 'number of shards = partitions of the command topic; fixed for the life of a cluster' },
  PLACEMENT_RES: { default: '4', doc: 'H3 resolution whose parent cell places a cell actor (locality); coarser than CELL_RES' },
  KAFKA_BROKERS: { doc: 'comma-separated host:port list; unset means the embedded command log' },
  KAFKA_SSL: {
    default: 'false',
    doc: 'true connects to the brokers over TLS (system CAs; a private CA through NODE_EXTRA_CA_CERTS=/path/ca.pem)',
  },
  KAFKA_SASL_MECHANISM: {
    doc: 'plain, scram-sha-256 or scram-sha-512 to authenticate to the brokers; plain only with KAFKA_SSL=true (it sends the password ' +
      'in clear, SCRAM does not). Unset: no SASL, and a cluster node says at start that anyone reaching Kafka can write commands',
  },
  KAFKA_SASL_USERNAME: { doc: 'SASL user name' },
  KAFKA_SASL_PASSWORD: { secret: true, doc: 'SASL password' },
  KAFKA_TOPIC_PREFIX: { default: 'dispatch', doc: 'prefix of the Kafka topics and consumer group' },
  KAFKA_SESSION_TIMEOUT_MS: { default: '10000', doc: 'how long a silent node keeps its shards before the group moves them' },
  KAFKA_REPLICATION_FACTOR: {
    default: '1',
    doc: 'copies of each command partition, when this node creates the topic; 3 in production, so a broker can fail (an existing topic ' +
      'keeps its own)',
  },
  KAFKA_MIN_INSYNC_REPLICAS: {
    default: '1',
    doc: 'copies that must have a command before the log acknowledges it (the topic\'s min.insync.replicas, set when this node creates ' +
      'it); 2 with 3 replicas. Fewer in sync: appends fail and are retried',
  },
  KAFKA_SEND_QUEUE_MAX: {
    default: '10000',
    doc: 'commands a node holds waiting for the broker; beyond it appends are refused at once (HTTP 503 overloaded, with Retry-After) ' +
      'until the broker catches up',
  },
  KAFKA_MAX_REQUEST_BYTES: {
    default: '900000',
    doc: 'largest produce request a node sends (queued commands go out in chunks under it); keep it under the broker\'s ' +
      'message.max.bytes (1048588 by default)',
  },
  WIRE_FORMS: {
    default: 'current',
    doc: 'the forms a node writes what other nodes read: current, or previous (what a node of the release before reads). ' +
      'Every node reads both. Set previous on the new nodes while rolling a cluster onto a release whose notes say so, and ' +
      'remove it once no node of the release before is left. Today: soft records (GPS fixes and cell copies forwarded to the ' +
      'shard\'s node) compact, a quarter of JSON\'s bytes and less than half its CPU to read, against JSON; and the messages of ' +
      'one tick to one node (asks, answers, outcomes) as one Redis message, against one each',
  },
  DATABASE_URL: {
    secret: true,
    doc: 'postgres:// URL; unset means embedded PostgreSQL (PGlite) under DATA_DIR. TLS: add ' +
      '?sslmode=verify-full&sslrootcert=/path/ca.pem (or sslmode=require)',
  },
  DATABASE_PASSWORD: {
    secret: true,
    doc: 'the PostgreSQL password, when DATABASE_URL carries none (so the URL can sit in plain configuration and the password in a ' +
      'secret file: DATABASE_PASSWORD_FILE)',
  },
  REDIS_PASSWORD: {
    secret: true,
    doc: 'the Redis password (requirepass, or the ACL user\'s named in REDIS_URL), when REDIS_URL carries none (so the password can ' +
      'be a secret file: REDIS_PASSWORD_FILE)',
  },
  CLUSTER_KEY: {
    secret: true,
    doc: 'HMAC key signing every command the nodes write to Kafka (a record that does not verify is skipped, so whoever reaches ' +
      'Kafka cannot forge commands): at least 32 bytes, the same on every node, not another secret; required in cluster mode unless ' +
      'COMMAND_SIGNING=false. Rotate: comma-separated keys, the first signs and all verify (add the new one second everywhere, then ' +
      'first, then drop the old)',
  },
  COMMAND_SIGNING: {
    default: 'true',
    doc: 'false: commands in Kafka are neither signed nor checked (CLUSTER_KEY not needed); only where nothing but the nodes can ' +
      'write to the brokers. The same on every node',
  },
  DATA_DIR: { default: './data', doc: 'where the embedded node keeps its database and command log' },
  REDIS_URL: {
    secret: true,
    doc: 'redis:// URL, or rediss:// for TLS (system CAs; a private CA through NODE_EXTRA_CA_CERTS); unset means in-process stand-ins',
  },
  PASSIVATE_AFTER_MS: { default: '120000', doc: 'an entity idle this long is snapshotted and stopped' },
  MAX_ACTIVE_ENTITIES: { default: '100000', doc: 'cap on live entities per node; least recently used are passivated beyond it' },
  MAX_CONCURRENT_RECOVERIES: { default: '50', doc: 'entities recovering from the journal at once' },
  SNAPSHOT_EVERY: { default: '100', doc: 'journal entries between snapshots of an entity (0: only on passivation)' },
  STATEMENT_TIMEOUT_MS: {
    default: '20000',
    doc: 'a SQL statement running longer is cancelled (PostgreSQL statement_timeout; the embedded database is restarted under it, as ' +
      'PGlite has no timeout of its own)',
  },
  EMBEDDED_OPEN_TIMEOUT_MS: {
    default: '180000',
    doc: 'an embedded database that does not answer within this at start-up stops the node with one line (it may be damaged); ' +
      'generous, as a first start on a busy two-core machine can take over a minute',
  },
  COMMAND_MAX_ATTEMPTS: {
    default: '20',
    doc: 'attempts at a command that fails transiently (storage down) before it is dead-lettered; with backoff capped at 5 s, 20 is ' +
      'about 70 s. Permanent failures are dead-lettered at once',
  },
  DEAD_LETTER_RETRY_MAX_AGE_MS: {
    default: '86400000',
    doc: 'a dead-lettered command issued longer ago than this is not retried (409 dead_letter_too_old) unless the admin forces it ' +
      '(?force=true): replayed late, an old command can undo what happened since (re-activate a driver deactivated meanwhile)',
  },
  ASK_TIMEOUT_MS: { default: '5000', doc: 'timeout of a query to an entity' },
  STARTUP_TIMEOUT_MS: {
    default: '300000',
    doc: 'a node whose PostgreSQL, Kafka or Redis is not reachable at start waits for them (one log line each, /ready 503 saying what it ' +
      'waits for) and exits after this long',
  },
  SHUTDOWN_TIMEOUT_MS: { default: '20000', doc: 'graceful shutdown gives up after this long' },
  JWT_SECRET: {
    secret: true,
    doc: 'HS256 secret signing and verifying tokens; at least 32 bytes in cluster mode (16 in embedded, development, mode); sample ' +
      'values are refused',
  },
  JWT_PUBLIC_KEY: { secret: true, doc: 'PEM public key (RS256 or ES256) to verify tokens in production; needs JWT_AUDIENCE' },
  JWKS_URL: { doc: 'https:// JWKS URL to verify tokens in production (http: is refused); needs JWT_AUDIENCE' },
  JWT_ISSUER: { default: 'dispatch', doc: 'required iss claim' },
  JWT_AUDIENCE: {
    doc: 'required aud claim; must be set with JWT_PUBLIC_KEY or JWKS_URL, so tokens an identity provider issued for another service are ' +
      'refused',
  },
  AUTH_DEV_TOKENS: {
    default: 'false',
    doc: 'true enables POST /v1/auth/token, which gives anyone a token of any role: embedded (development) mode only, refused in ' +
      'cluster mode',
  },
  TOKEN_TTL_SECONDS: { default: '900', doc: 'lifetime of tokens this node issues' },
  QUOTE_SECRET: {
    secret: true,
    doc: 'HMAC key signing quotes, at least 32 bytes, not JWT_SECRET; required in cluster mode (every node must honour every quote); ' +
      'unset in embedded (development) mode means a random key per process, so quotes die with the process',
  },
  DATA_KEYS: {
    secret: true,
    doc: 'keys sealing riders\' and drivers\' contact details (email, name, phone) at rest with AES-256-GCM: comma-separated <id>:<32 ' +
      'bytes in base64>, every key a stored value may be under (`npm run keys -- new <id>` prints one); required in cluster mode; unset ' +
      'in embedded (development) mode means keys made once and kept in DATA_DIR/personal-data.keys',
  },
  DATA_KEY_ID: {
    doc: 'the id in DATA_KEYS new values are sealed with; default: the first. Rotate: add a key, make it this, restart the nodes, then ' +
      '`npm run keys -- rotate`',
  },
  DATA_INDEX_KEY: {
    secret: true,
    doc: 'HMAC key of the email index accounts are looked up by, at least 32 bytes, unlike every other secret; required with DATA_KEYS. ' +
      'Changing it loses every login, so it is not rotated',
  },
  TRUST_PROXY: {
    default: 'false',
    doc: 'whose X-Forwarded-For gives the client IP (rate limits per IP): false (nobody: the peer address), the number of proxies in ' +
      'front (1 behind one nginx), or a comma-separated list of proxy addresses or CIDRs',
  },
  OTEL_TRACES_EXPORTER: {
    doc: 'otlp sends traces (OTLP over HTTP, JSON) to OTEL_EXPORTER_OTLP_ENDPOINT; none sends nothing. Default: otlp when an OTLP ' +
      'endpoint is set, else none (tracing off, and free)',
  },
  OTEL_EXPORTER_OTLP_ENDPOINT: {
    doc: 'base http(s):// URL of an OTLP/HTTP receiver (a collector, Jaeger on :4318); traces go to <it>/v1/traces',
  },
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: {
    doc: 'full http(s):// URL traces are posted to, used as given; wins over OTEL_EXPORTER_OTLP_ENDPOINT',
  },
  OTEL_EXPORTER_OTLP_HEADERS: {
    secret: true,
    doc: 'headers sent with every export, key=value pairs separated by commas (a vendor\'s API key: a secret)',
  },
  OTEL_SERVICE_NAME: { default: 'dispatch', doc: 'service.name of the traces; the node id goes with it as service.instance.id' },
  OTEL_TRACES_SAMPLER_ARG: {
    default: '1',
    doc: 'share of requests traced, 0 to 1, decided where the trace starts (the edge; a client\'s traceparent is only a link) and kept ' +
      'by every span of the trace across nodes',
  },
  METRICS_PORT: {
    doc: 'port of a separate listener serving /metrics to Prometheus without a token, on METRICS_HOST; unset: /metrics is on PORT for ' +
      'admin tokens only',
  },
  METRICS_HOST: {
    default: '127.0.0.1',
    doc: 'address the METRICS_PORT listener binds, apart from HOST: loopback unless set. 0.0.0.0 only where a firewall or ' +
      'NetworkPolicy lets nothing but the scraper reach METRICS_PORT (k8s/networkpolicy.yaml)',
  },
  WS_MAX_SOCKETS_PER_USER: { default: '5', doc: 'open WebSocket sessions one user may hold, across all nodes; the next is refused with close code 4429' },
  WS_MAX_SOCKETS_PER_IP: {
    default: '200',
    doc: 'open WebSocket sessions from one client IP, signed in or not (see TRUST_PROXY); unset with AUTH_DEV_TOKENS=true: 100000, ' +
      'so a development node takes its own simulator',
  },
  WS_QUERY_TOKEN: {
    default: 'false',
    doc: 'true accepts a token in the WebSocket URL (/v1/ws?token=...), which proxies and access logs record; otherwise such a socket ' +
      'is closed with 4401 and the token goes in the first message, {"type":"auth","token":"..."}',
  },
  WS_AUTH_TIMEOUT_MS: {
    default: '10000',
    doc: 'a socket opened without a token must send its auth message within this time or is closed with 4401',
  },
  WS_MESSAGES_PER_SECOND: {
    default: '20',
    doc: 'messages per second one user may send across all their sockets on all nodes (bursts up to 5x); more get error rate_limited',
  },
  LOCATION_FIXES_PER_MINUTE: {
    default: '120',
    doc: 'location fixes per minute one driver may send (a phone sends about 60); a batch after a dead zone may use up to 10 minutes of ' +
      'it at once',
  },
  RATE_LIMIT_API_PER_MIN: {
    default: '600',
    doc: 'requests per minute to /v1/ per signed-in user (or client IP); unset with AUTH_DEV_TOKENS=true: 100000, so a development ' +
      'node takes its own simulator',
  },
  RATE_LIMIT_BOOKINGS_PER_MIN: { default: '30', doc: 'bookings created per minute per user (or client IP)' },
  RATE_LIMIT_LOGIN_PER_MIN: { default: '10', doc: 'login attempts per minute per client IP' },
  RATE_LIMIT_REGISTER_PER_MIN: { default: '20', doc: 'registrations per minute per client IP' },
  CELL_RES: { default: '7', doc: 'H3 resolution of cell actors (7 is about 5 km²)' },
  OFFER_TIMEOUT_MS: { default: '15000', doc: 'how long a driver has to answer an offer' },
  SURGE_CAP: { default: '3', doc: 'highest surge multiplier' },
  PEAK_HOURS: { default: '7,8,17,18', doc: 'UTC hours whose fares are multiplied by PEAK_MULTIPLIER (comma-separated 0-23, or none)' },
  PEAK_MULTIPLIER: { default: '1.2', doc: 'fare multiplier in peak hours' },
  DISPATCH_DEADLINE_MS: { default: '120000', doc: 'a booking finds no driver after searching this long' },
  SCHEDULE_LEAD_MS: { default: '600000', doc: 'scheduled bookings start dispatch this long before their time' },
  DISPATCH_SEARCH_BACKOFF_MS: {
    default: '1000',
    doc: 'a dispatch search that finds nobody to offer is made again after this long, doubled each time up to ' +
      'DISPATCH_SEARCH_BACKOFF_MAX_MS, until DISPATCH_DEADLINE_MS',
  },
  DISPATCH_SEARCH_BACKOFF_MAX_MS: { default: '8000', doc: 'longest wait between two dispatch searches that found nobody' },
  DISPATCH_MODE: {
    default: 'greedy',
    doc: 'greedy: each booking offers its own best-ranked nearby driver; batched: the bookings of an area (the H3 parent of the pickup cell, ' +
      'two resolutions coarser) that search within DISPATCH_BATCH_MS are matched at once to free drivers by an exact assignment ' +
      '(least total of the ranking costs: shorter pickups when bookings compete for drivers)',
  },
  DISPATCH_BATCH_MS: {
    default: '2000',
    doc: 'batched dispatch: how long an area gathers searching bookings before matching them (a booking\'s first offer waits up to this)',
  },
  DISPATCH_BATCH_CONTENTION: {
    default: '3',
    doc: 'batched dispatch: an area waits DISPATCH_BATCH_MS only after this many contentions in its last 15 windows (a booking that ' +
      'did not get the driver it would have got alone: batching changed its answer) and matches each booking at once otherwise, so a ' +
      'quiet city waits for no window; 0: every window waits DISPATCH_BATCH_MS',
  },
  DRIVER_PRESENCE_MS: {
    default: '30000',
    doc: 'an online driver re-sends its last position to its cell this often (a timer journaled when it goes online, then re-armed in memory), so cells emptied by a restart or a ' +
      'shard move fill again without new fixes; below the cells\' 2-minute expiry',
  },
  DRIVER_SILENT_AFTER_MS: {
    default: '600000',
    doc: 'an online driver whose app has sent nothing for this long is no longer re-announced to its cell (it drops out of dispatch ' +
      'until its next fix)',
  },
  SEARCH_MAX_RADIUS_KM: { default: '10', doc: 'largest radiusKm of GET /v1/drivers/nearby (a city); a larger one is 400' },
  SEARCH_MAX_CELLS: {
    default: '200',
    doc: 'most cell actors one nearby or dispatch search asks; it stops before a ring that would pass this (a 12 km search at CELL_RES 7 ' +
      'is about 130 cells, at 8 about 800)',
  },
} as const satisfies Record<string, Variable>;

export type VariableName = keyof typeof DEFINED;

export const VARIABLES: Readonly<Record<VariableName, Variable>> = DEFINED;

/** Secrets are also read from a file: NAME_FILE names it (Docker's and Kubernetes' mounted secrets). */
export const FILE_SUFFIX = '_FILE';

/** Whether `name` is a variable the node reads: one of VARIABLES, or NAME_FILE of a secret. */
export function isVariable(name: string): boolean {
  if (name in VARIABLES) return true;
  const base = name.endsWith(FILE_SUFFIX) ? name.slice(0, -FILE_SUFFIX.length) : '';
  return base in VARIABLES && (VARIABLES as Record<string, Variable>)[base]!.secret === true;
}
