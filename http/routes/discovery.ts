// Nearby drivers and surge: read-only asks to cell actors.
//
// A nearby search is bounded so that it cannot wake a region's worth of actors:
// radiusKm is capped (SEARCH_MAX_RADIUS_KM, 400 beyond it), at most
// SEARCH_MAX_CELLS cells are asked, and cells that never held a driver are
// skipped without being asked (the node's occupied cells, see node.ts).

import type { Candidate } from '../../actors/cell.ts';
import { DEFAULT_SEARCH, searchNearest, type NearestQuery, type OccupiedFilter, type SearchSettings } from '../../actors/nearest.ts';
import type { ShardRegion } from '../../runtime/region.ts';
import { Api } from '../api.ts';
import type { Edge } from '../edge.ts';
import { Nearby, nearbyQuery, Surge, SurgeQuery } from '../schemas.ts';
import { surgeAt } from '../surge.ts';

/**
 * A rider's nearby search as this route runs it: ring by ring over the cell actors (answered
 * at once when local), skipping cells that never held a driver, at most `maxCells` cells, with
 * the cells' own rules (available, fresh, vehicle type, not in maintenance). Exported so the
 * bench times this very path (bench/nearest.ts).
 */
export function findNearby(
  region: Pick<ShardRegion, 'askSoon'>, cellRes: number, search: SearchSettings, occupied: OccupiedFilter | undefined, q: NearestQuery,
): Promise<Candidate[]> {
  return searchNearest(q, cellRes, (cell) =>
    region.askSoon<Candidate[]>({ kind: 'cell', id: cell }, { type: 'nearest', ...q }),
  undefined, { maxCells: search.maxCells, occupied });
}

/** `occupied`: the node's cells that ever held a driver; without it every reachable cell is asked. */
export function discoveryRoutes(edge: Edge, occupied?: OccupiedFilter): Api {
  const api = new Api();
  const search = edge.domain.search ?? DEFAULT_SEARCH;
  api.add({
    method: 'get', path: '/v1/drivers/nearby', tag: 'discovery', summary: 'Available drivers near a point, closest first',
    roles: ['rider', 'admin'], query: nearbyQuery(search.maxRadiusKm), response: Nearby,
    handler: async (_ctx, { query }) => {
      const point = { lat: query.lat, lng: query.lng };
      const q = { point, k: query.limit, radiusKm: query.radiusKm, vehicleType: query.vehicleType };
      const found = await findNearby(edge.region, edge.domain.dispatch.cellRes, search, occupied, q);
      return {
        drivers: found.map((c) => ({
          driverId: c.driverId, lat: c.lat, lng: c.lng, distanceKm: Math.round(c.distanceKm * 1000) / 1000, vehicleType: c.vehicleType,
        })),
      };
    },
  });
  api.add({
    method: 'get', path: '/v1/surge', tag: 'discovery', summary: 'Surge multiplier of the cell holding a point',
    roles: ['rider', 'driver', 'admin'], query: SurgeQuery, response: Surge,
    handler: async (_ctx, { query }) => surgeAt(edge, query),
  });
  return api;
}
