// Nearby drivers and surge: read-only asks to cell actors.
//
// A nearby search is bounded so that it cannot wake a region's worth of actors:
// radiusKm is capped (SEARCH_MAX_RADIUS_KM, 400 beyond it), at most
// SEARCH_MAX_CELLS cells are asked, and cells that never held a driver are
// skipped without being asked (the node's occupied cells, see node.ts).
//
// Riders see where cars are, not who they are: a rider who learnt a driver's id (from a
// past booking) must not be able to poll this and follow that driver. So a rider gets
// each driver under a `ref` drawn at random for that answer alone, with the position
// rounded to RIDER_DECIMALS decimal places and the distance to 100 m; admins also get
// the `driverId` and the exact figures.

import { randomBytes } from 'node:crypto';
import type { Candidate } from '../../actors/cell.ts';
import { DEFAULT_SEARCH, offerByAskNow, searchFound, type Found, type NearestQuery, type OccupiedFilter, type SearchSettings } from '../../actors/nearest.ts';
import type { ShardRegion } from '../../runtime/region.ts';
import { Api } from '../api.ts';
import { principalOf } from '../authenticate.ts';
import type { Edge } from '../edge.ts';
import { Nearby, nearbyQuery, Surge, SurgeQuery } from '../schemas.ts';
import { surgeAt } from '../surge.ts';
import { requireVehicleType } from '../vehicle-types.ts';

/**
 * A rider's nearby search as this route runs it: ring by ring over the cell actors (answered
 * at once when local), skipping cells that never held a driver, at most `maxCells` cells, with
 * the cells' own rules (available, fresh, vehicle type, not in maintenance). Exported so the
 * bench times this very path (bench/nearest.ts).
 */
export function findNearby(
  region: Pick<ShardRegion, 'askSoon' | 'askNow'>, cellRes: number, search: SearchSettings, occupied: OccupiedFilter | undefined, q: NearestQuery,
): Promise<Found[]> {
  return searchFound(q, cellRes, (cell) =>
    region.askSoon<Candidate[]>({ kind: 'cell', id: cell }, { type: 'nearest', ...q }),
  undefined, { maxCells: search.maxCells, occupied, offer: offerByAskNow((to, query) => region.askNow(to, query)) });
}

/** `occupied`: the node's cells that ever held a driver; without it every reachable cell is asked. */
export function discoveryRoutes(edge: Edge, occupied?: OccupiedFilter): Api {
  const api = new Api();
  const search = edge.domain.search ?? DEFAULT_SEARCH;
  api.add({
    method: 'get', path: '/v1/drivers/nearby', tag: 'discovery', summary: 'Available drivers near a point, closest first',
    roles: ['rider', 'admin'], query: nearbyQuery(search.maxRadiusKm), response: Nearby,
    handler: async (ctx, { query }) => {
      await requireVehicleType(edge, 'query.vehicleType', query.vehicleType);
      const point = { lat: query.lat, lng: query.lng };
      const q = { point, k: query.limit, radiusKm: query.radiusKm, vehicleType: query.vehicleType };
      const found = await findNearby(edge.region, edge.domain.dispatch.cellRes, search, occupied, q);
      const exact = principalOf(ctx.state).role === 'admin';
      return { drivers: found.map((c) => (exact ? adminView(c) : riderView(c))) };
    },
  });
  api.add({
    method: 'get', path: '/v1/surge', tag: 'discovery', summary: 'Surge multiplier of the cell holding a point',
    roles: ['rider', 'driver', 'admin'], query: SurgeQuery, response: Surge,
    handler: async (_ctx, { query }) => surgeAt(edge, query),
  });
  return api;
}

/** Decimal places of a position shown to riders: 3 is about 110 m north-south (less east-west away from the equator). */
export const RIDER_DECIMALS = 3;

const round = (x: number, decimals: number) => Math.round(x * 10 ** decimals) / 10 ** decimals;
/** Names a driver within one answer only: random, so two answers cannot be matched up by it. */
const freshRef = () => randomBytes(9).toString('base64url');

function riderView({ driver: d, km }: Found) {
  return {
    ref: freshRef(), lat: round(d.lat, RIDER_DECIMALS), lng: round(d.lng, RIDER_DECIMALS), distanceKm: round(km, 1),
    vehicleType: d.vehicleType,
  };
}

function adminView({ driver: d, km }: Found) {
  return { ref: freshRef(), driverId: d.driverId, lat: d.lat, lng: d.lng, distanceKm: round(km, 3), vehicleType: d.vehicleType };
}
