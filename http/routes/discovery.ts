// Nearby drivers and surge: read-only asks to cell actors.

import { latLngToCell } from 'h3-js';
import type { Candidate } from '../../actors/cell.ts';
import { searchNearest } from '../../actors/nearest.ts';
import { Api } from '../api.ts';
import type { Edge } from '../edge.ts';
import { Nearby, NearbyQuery, Surge, SurgeQuery } from '../schemas.ts';

export function surgeAt(edge: Edge, point: { lat: number; lng: number }) {
  const cell = latLngToCell(point.lat, point.lng, edge.domain.dispatch.cellRes);
  return edge.region.ask<{ surge: number }>({ kind: 'cell', id: cell }, { type: 'surge' }).then((s) => ({ cell, surge: s.surge }));
}

export function discoveryRoutes(edge: Edge): Api {
  const api = new Api();
  api.add({
    method: 'get', path: '/v1/drivers/nearby', tag: 'discovery', summary: 'Available drivers near a point, closest first',
    roles: ['rider', 'admin'], query: NearbyQuery, response: Nearby,
    handler: async (_ctx, { query }) => {
      const point = { lat: query.lat, lng: query.lng };
      const q = { point, k: query.limit, radiusKm: query.radiusKm, vehicleType: query.vehicleType };
      const found = await searchNearest(q, edge.domain.dispatch.cellRes, (cell) =>
        edge.region.ask<Candidate[]>({ kind: 'cell', id: cell }, { type: 'nearest', ...q }));
      return {
        drivers: found.map((c) => ({ driverId: c.driverId, lat: c.lat, lng: c.lng, distanceKm: Math.round(c.distanceKm * 1000) / 1000, vehicleType: c.vehicleType })),
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
