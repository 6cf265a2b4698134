// Nearby drivers and surge: read-only asks to cell actors.
//
// A nearby search is bounded so that it cannot wake a region's worth of actors:
// radiusKm is capped (SEARCH_MAX_RADIUS_KM, 400 beyond it), at most
// SEARCH_MAX_CELLS cells are asked, and cells that never held a driver are
// skipped without being asked (the node's occupied cells, see node.ts).

import type { Candidate } from '../../actors/cell.ts';
import { DEFAULT_SEARCH, searchNearest, type OccupiedFilter } from '../../actors/nearest.ts';
import { Api } from '../api.ts';
import type { Edge } from '../edge.ts';
import { Nearby, nearbyQuery, Surge, SurgeQuery } from '../schemas.ts';
import { surgeAt } from '../surge.ts';
import { requireVehicleType } from '../vehicle-types.ts';

/** `occupied`: the node's cells that ever held a driver; without it every reachable cell is asked. */
export function discoveryRoutes(edge: Edge, occupied?: OccupiedFilter): Api {
  const api = new Api();
  const search = edge.domain.search ?? DEFAULT_SEARCH;
  api.add({
    method: 'get', path: '/v1/drivers/nearby', tag: 'discovery', summary: 'Available drivers near a point, closest first',
    roles: ['rider', 'admin'], query: nearbyQuery(search.maxRadiusKm), response: Nearby,
    handler: async (_ctx, { query }) => {
      await requireVehicleType(edge, 'query.vehicleType', query.vehicleType);
      const point = { lat: query.lat, lng: query.lng };
      const q = { point, k: query.limit, radiusKm: query.radiusKm, vehicleType: query.vehicleType };
      const found = await searchNearest(q, edge.domain.dispatch.cellRes, (cell) =>
        edge.region.askSoon<Candidate[]>({ kind: 'cell', id: cell }, { type: 'nearest', ...q }),
      undefined, { maxCells: search.maxCells, occupied });
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
