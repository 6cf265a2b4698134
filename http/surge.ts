// The surge at a point: the cell holding it, asked for its multiplier (quotes and /v1/surge).

import { latLngToCell } from 'h3-js';
import type { Edge } from './edge.ts';

export function surgeAt(edge: Edge, point: { lat: number; lng: number }): Promise<{ cell: string; surge: number }> {
  const cell = latLngToCell(point.lat, point.lng, edge.domain.dispatch.cellRes);
  return edge.region.ask<{ surge: number }>({ kind: 'cell', id: cell }, { type: 'surge' }).then((s) => ({ cell, surge: s.surge }));
}
