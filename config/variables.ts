// Every environment variable the node reads, with its default and meaning.
// `.env.example` documents exactly these (a test checks), and so must compose and k8s files.

export interface Variable {
  readonly default?: string;
  readonly doc: string;
}

const DEFINED = {
  MODE: { doc: 'embedded (one node, everything in-process) or cluster; default: cluster when KAFKA_BROKERS is set' },
  NODE_ID: { doc: 'this node\'s id in the cluster; default: the hostname' },
  HOST: { default: '0.0.0.0', doc: 'address the HTTP server binds' },
  PORT: { default: '8000', doc: 'HTTP port (0 picks a free one)' },
  MAX_BODY_BYTES: { default: '1048576', doc: 'largest accepted request body; larger is 413' },
  LOG_LEVEL: { default: 'info', doc: 'fatal, error, warn, info, debug, trace or silent' },
  SHARDS: { default: '32', doc: 'number of shards = partitions of the command topic; fixed for the life of a cluster' },
  PLACEMENT_RES: { default: '4', doc: 'H3 resolution whose parent cell places a cell actor (locality); coarser than CELL_RES' },
  KAFKA_BROKERS: { doc: 'comma-separated host:port list; unset means the embedded command log' },
  KAFKA_TOPIC_PREFIX: { default: 'dispatch', doc: 'prefix of the Kafka topics and consumer group' },
  KAFKA_SESSION_TIMEOUT_MS: { default: '10000', doc: 'how long a silent node keeps its shards before the group moves them' },
  DATABASE_URL: { doc: 'postgres:// URL; unset means embedded PostgreSQL (PGlite) under DATA_DIR' },
  DATA_DIR: { default: './data', doc: 'where the embedded node keeps its database and command log' },
  REDIS_URL: { doc: 'redis:// URL; unset means in-process stand-ins' },
  PASSIVATE_AFTER_MS: { default: '120000', doc: 'an entity idle this long is snapshotted and stopped' },
  MAX_ACTIVE_ENTITIES: { default: '100000', doc: 'cap on live entities per node; least recently used are passivated beyond it' },
  MAX_CONCURRENT_RECOVERIES: { default: '50', doc: 'entities recovering from the journal at once' },
  SNAPSHOT_EVERY: { default: '100', doc: 'journal entries between snapshots of an entity (0: only on passivation)' },
  ASK_TIMEOUT_MS: { default: '5000', doc: 'timeout of a query to an entity' },
  SHUTDOWN_TIMEOUT_MS: { default: '20000', doc: 'graceful shutdown gives up after this long' },
  JWT_SECRET: { doc: 'HS256 secret (development; at least 16 characters)' },
  JWT_PUBLIC_KEY: { doc: 'PEM public key (RS256 or ES256) to verify tokens in production' },
  JWKS_URL: { doc: 'JWKS URL to verify tokens in production' },
  JWT_ISSUER: { default: 'dispatch', doc: 'required iss claim' },
  AUTH_DEV_TOKENS: { default: 'false', doc: 'true enables POST /v1/auth/token (development only)' },
  TOKEN_TTL_SECONDS: { default: '900', doc: 'lifetime of tokens this node issues' },
  CELL_RES: { default: '7', doc: 'H3 resolution of cell actors (7 is about 5 km²)' },
  OFFER_TIMEOUT_MS: { default: '15000', doc: 'how long a driver has to answer an offer' },
  SURGE_CAP: { default: '3', doc: 'highest surge multiplier' },
  DISPATCH_DEADLINE_MS: { default: '120000', doc: 'a booking finds no driver after searching this long' },
  SCHEDULE_LEAD_MS: { default: '600000', doc: 'scheduled bookings start dispatch this long before their time' },
} as const satisfies Record<string, Variable>;

export type VariableName = keyof typeof DEFINED;

export const VARIABLES: Readonly<Record<VariableName, Variable>> = DEFINED;
