// The services a full bench run needs, asked before anything is measured: each must
// answer, and says its own version (PostgreSQL's server_version, the postgis extension
// PostgreSQL offers, Redis's INFO server, the Kafka broker's jar). A missing one fails
// the run with one line naming it; with --allow-missing its rows are marked "not run" and
// left out of the goal count, visibly. The header of RESULTS.md lists what answered.

import { Redis } from 'ioredis';
import pg from 'pg';
import { kafkaBroker } from './proc.ts';

export type ServiceName = 'PostgreSQL' | 'PostGIS' | 'Redis' | 'Kafka';

export interface ServiceStatus {
  readonly name: ServiceName;
  /** Set when it answered. */
  readonly version?: string;
  /** Why not, when it did not. */
  readonly why?: string;
}

const within = <T>(ms: number, p: Promise<T>, what: string) =>
  Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what}: no answer in ${ms / 1000} s`)), ms).unref())]);

async function postgres(url: string | undefined): Promise<[ServiceStatus, ServiceStatus]> {
  if (!url) return [{ name: 'PostgreSQL', why: 'DATABASE_URL is unset' }, { name: 'PostGIS', why: 'DATABASE_URL is unset' }];
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
  try {
    await c.connect();
    const version = (await c.query<{ server_version: string }>('show server_version')).rows[0]!.server_version.split(' ')[0];
    const postgis = (await c.query<{ default_version: string }>("select default_version from pg_available_extensions where name = 'postgis'")).rows[0];
    return [
      { name: 'PostgreSQL', version },
      postgis
        ? { name: 'PostGIS', version: postgis.default_version }
        : { name: 'PostGIS', why: `PostgreSQL ${version} at ${url} offers no postgis extension (Debian: postgresql-${version?.split('.')[0]}-postgis-3; npm run bench installs it)` },
    ];
  } catch (error) {
    const why = `PostgreSQL at ${url} did not answer: ${(error as Error).message}`;
    return [{ name: 'PostgreSQL', why }, { name: 'PostGIS', why }];
  } finally {
    await c.end().catch(() => undefined);
  }
}

async function redis(url: string | undefined): Promise<ServiceStatus> {
  if (!url) return { name: 'Redis', why: 'REDIS_URL is unset' };
  const r = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  try {
    await within(5_000, r.connect(), 'Redis');
    const info = await within(5_000, r.info('server'), 'Redis');
    return { name: 'Redis', version: /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown' };
  } catch (error) {
    return { name: 'Redis', why: `Redis at ${url} did not answer: ${(error as Error).message}` };
  } finally {
    r.disconnect();
  }
}

async function kafka(brokers: string | undefined): Promise<ServiceStatus> {
  if (!brokers) return { name: 'Kafka', why: 'KAFKA_BROKERS is unset' };
  const { createKafka } = await import('../adapters/kafka/client.ts');
  const admin = createKafka({ brokers: brokers.split(','), clientId: 'bench-probe' }).admin();
  try {
    await within(10_000, admin.connect(), 'Kafka');
    const cluster = await within(10_000, admin.describeCluster(), 'Kafka');
    const local = kafkaBroker();
    return { name: 'Kafka', version: `${local?.version ?? 'version not readable (broker not on this machine)'}, ${cluster.brokers.length} broker(s)` };
  } catch (error) {
    return { name: 'Kafka', why: `Kafka at ${brokers} did not answer: ${(error as Error).message}` };
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}

export async function probeServices(env: NodeJS.ProcessEnv): Promise<ServiceStatus[]> {
  const [pgStatus, postgisStatus] = await postgres(env.DATABASE_URL);
  return [pgStatus, postgisStatus, await redis(env.REDIS_URL), await kafka(env.KAFKA_BROKERS)];
}

/** "PostgreSQL 15.20, PostGIS 3.3.2, Redis 7.0.15, Kafka 3.9.1 (1 broker)": what answered, read from each. */
export function servicesLine(services: readonly ServiceStatus[]): string {
  const answered = services.filter((s) => s.version).map((s) => `${s.name} ${s.version}`).join(', ');
  const missing = services.filter((s) => !s.version).map((s) => s.name);
  return `${answered || 'none'}${missing.length ? `; not answering: ${missing.join(', ')} (their rows are marked "not run")` : ''}`;
}
