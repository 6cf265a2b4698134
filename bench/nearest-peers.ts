// The peers a nearest-driver search is held against, each asked the way its own users
// ask it, over the same drivers as the cell actors:
// - Redis: one GEO set per vehicle type holding the available drivers (a Redis user
//   removes a driver from it when busy, offline or silent), asked with a widening radius
//   (0.25, 0.5, 1, 2, 3 km; GEOSEARCH ... BYRADIUS r km ASC COUNT 10) until 10 are found;
//   its server time per GEOSEARCH from INFO commandstats beside the client round trip;
// - PostGIS: every driver in one table with its status, vehicle type, last seen and
//   maintenance, a GiST index on a geography column, and KNN (ORDER BY geog <-> point
//   LIMIT 10) with the rules in the WHERE clause, as a prepared statement;
// - an in-process static index (kdbush + geokdbush), one per vehicle type over the
//   available drivers: the best an in-process structure does, with no actors around it.

import { readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import KDBush from 'kdbush';
import { around } from 'geokdbush';
import pg from 'pg';
import { driverId, eligible, STATUSES, VEHICLE_TYPES, type Clock, type Fleet, type Query } from './city.ts';
import { scratchDatabase } from './scratch-database.ts';

export interface Peer {
  readonly name: string;
  readonly version: string;
  /** Ids of the k nearest eligible drivers within radiusKm, closest first. */
  query(q: Query, k: number, radiusKm: number): Promise<string[]> | string[];
  close(): Promise<void>;
}

const QUERY_TYPES = ['economy', 'comfort'] as const;

/** The installed version, read from the package's own package.json (not every package exports it). */
const packageVersion = (name: string) =>
  (JSON.parse(readFileSync(new URL(`../node_modules/${name}/package.json`, import.meta.url), 'utf8')) as { version: string }).version;

/** The in-process static index: kdbush built once per vehicle type over its available drivers. */
export function staticIndexPeer(f: Fleet): Peer {
  const indexes = new Map<string, { index: KDBush; ids: Int32Array }>();
  for (const type of QUERY_TYPES) {
    const members: number[] = [];
    for (let i = 0; i < f.n; i++) if (eligible(f, i, type)) members.push(i);
    const index = new KDBush(members.length);
    for (const i of members) index.add(f.lng[i]!, f.lat[i]!);
    index.finish();
    indexes.set(type, { index, ids: Int32Array.from(members) });
  }
  return {
    name: 'in-process static index', version: `kdbush ${packageVersion('kdbush')} + geokdbush ${packageVersion('geokdbush')}`,
    query(q, k, radiusKm) {
      const { index, ids } = indexes.get(q.vehicleType)!;
      return around(index, q.point.lng, q.point.lat, k, radiusKm).map((slot) => driverId(ids[slot]!));
    },
    close: async () => undefined,
  };
}

export const WIDENING_KM = [0.25, 0.5, 1, 2, 3] as const;

export interface RedisPeer extends Peer {
  /** GEOSEARCH calls and their server time so far (INFO commandstats), to take differences of. */
  serverStats(): Promise<{ calls: number; usec: number }>;
  /** GEOSEARCH calls the queries made so far (a widening search makes one to five). */
  readonly searches: number;
  /** GEOADD of every available driver, pipelined: drivers per second. */
  readonly loadRate: number;
}

export async function redisPeer(url: string, f: Fleet): Promise<RedisPeer> {
  const redis = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  await redis.connect();
  const info = await redis.info('server');
  const version = /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown';
  const prefix = `bench:nearest:${randomUUID().slice(0, 8)}`;
  const keyOf = (type: string) => `${prefix}:${type}`;
  const t0 = performance.now();
  let loaded = 0;
  for (const type of QUERY_TYPES) {
    for (let i = 0; i < f.n; i += 10_000) {
      const pipe = redis.pipeline();
      for (let j = i; j < Math.min(f.n, i + 10_000); j++) {
        if (eligible(f, j, type)) { pipe.geoadd(keyOf(type), f.lng[j]!, f.lat[j]!, driverId(j)); loaded++; }
      }
      await pipe.exec();
    }
  }
  const loadRate = Math.round(loaded / ((performance.now() - t0) / 1000));
  let searches = 0;
  return {
    name: 'Redis GEOSEARCH, widening radius', version: `Redis ${version}`, loadRate,
    get searches() { return searches; },
    async query(q, k) {
      let ids: string[] = [];
      for (const r of WIDENING_KM) {
        searches++;
        ids = await redis.call('GEOSEARCH', keyOf(q.vehicleType), 'FROMLONLAT', q.point.lng, q.point.lat, 'BYRADIUS', r, 'km', 'ASC', 'COUNT', k) as string[];
        if (ids.length >= k) break;
      }
      return ids;
    },
    async serverStats() {
      const stats = await redis.info('commandstats');
      const line = /cmdstat_geosearch:calls=(\d+),usec=(\d+)/.exec(stats);
      return { calls: Number(line?.[1] ?? 0), usec: Number(line?.[2] ?? 0) };
    },
    async close() {
      await redis.del(...QUERY_TYPES.map(keyOf));
      redis.disconnect();
    },
  };
}

export interface PostgisPeer extends Peer {
  readonly loadRate: number;
}

/** A fresh database with the postgis extension, dropped on close (the server is shared). */
export async function postgisPeer(baseUrl: string, f: Fleet, clock: Clock, ttlMs: number): Promise<PostgisPeer> {
  const scratch = await scratchDatabase(baseUrl, 'bench_postgis');
  const db = new pg.Client({ connectionString: scratch.url });
  try {
    await db.connect();
    await db.query('create extension postgis');
    const full = (await db.query<{ v: string }>('select postgis_full_version() as v')).rows[0]!.v;
    const version = `PostGIS ${/POSTGIS="([^"\s]+)/.exec(full)?.[1] ?? full}, ${'PostgreSQL ' + (await db.query<{ server_version: string }>('show server_version')).rows[0]!.server_version.split(' ')[0]}`;
    await db.query(`create table drivers (id text primary key, status text not null, vehicle_type text not null, seen_at bigint not null,
      in_maintenance boolean not null, geog geography(Point, 4326) not null)`);
    const t0 = performance.now();
    for (let i = 0; i < f.n; i += 20_000) {
      const cols: [string[], string[], string[], string[], boolean[], number[], number[]] = [[], [], [], [], [], [], []];
      for (let j = i; j < Math.min(f.n, i + 20_000); j++) {
        cols[0].push(driverId(j)); cols[1].push(STATUSES[f.status[j]!]!); cols[2].push(VEHICLE_TYPES[f.vehicle[j]!]!);
        cols[3].push(String(f.stale[j] ? clock.staleAt : clock.freshAt)); cols[4].push(f.maintenance[j] === 1);
        cols[5].push(f.lng[j]!); cols[6].push(f.lat[j]!);
      }
      await db.query(`insert into drivers select id, status, vt, seen::bigint, maint, st_setsrid(st_makepoint(lng, lat), 4326)::geography
        from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::boolean[], $6::float8[], $7::float8[]) as t(id, status, vt, seen, maint, lng, lat)`, cols);
    }
    await db.query('create index drivers_geog on drivers using gist (geog)');
    await db.query('analyze drivers');
    const loadRate = Math.round(f.n / ((performance.now() - t0) / 1000));
    const knn = `select id from drivers
      where status = 'available' and vehicle_type = $3 and seen_at >= $4 and not in_maintenance
        and st_dwithin(geog, st_setsrid(st_makepoint($1, $2), 4326)::geography, $5, false)
      order by geog <-> st_setsrid(st_makepoint($1, $2), 4326)::geography limit $6`;
    return {
      name: 'PostGIS KNN (GiST)', version, loadRate,
      async query(q, k, radiusKm) {
        const res = await db.query<{ id: string }>({
          name: 'knn', text: knn, values: [q.point.lng, q.point.lat, q.vehicleType, Date.now() - ttlMs, radiusKm * 1000, k],
        });
        return res.rows.map((r) => r.id);
      },
      async close() {
        await db.end();
        await scratch.drop();
      },
    };
  } catch (error) {
    await db.end().catch(() => undefined);
    await scratch.drop();
    throw error;
  }
}
