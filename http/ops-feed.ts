// The live operations view: a snapshot of what this node hosts (drivers by way
// of its cell actors, surge per cell with the cell's outline), the bookings in
// play, status counters and the shard map, pushed to admin sockets every couple
// of seconds. In a cluster each node shows the cells it owns; the shard map says
// which node holds the rest.

import { cellToBoundary } from 'h3-js';
import type { DriverCopy } from '../actors/cell.ts';
import type { Edge } from './edge.ts';

export async function opsSnapshot(edge: Edge) {
  const cells = edge.host.activeRefs('cell');
  const perCell = await Promise.all(cells.map(async (ref) => {
    const [drivers, surge] = await Promise.all([
      edge.region.ask<DriverCopy[]>(ref, { type: 'drivers' }).catch(() => [] as DriverCopy[]),
      edge.region.ask<{ surge: number; supply: number; demand: number }>(ref, { type: 'surge' })
        .catch(() => ({ surge: 1, supply: 0, demand: 0 })),
    ]);
    return { cell: ref.id, drivers, surge };
  }));
  const [bookings, counts] = await Promise.all([
    edge.readModels.activeBookings(200),
    edge.readModels.statusCounts(Date.now() - 3_600_000),
  ]);
  // A driver crossing a cell boundary can sit in both cells until the old one hears of it: newest copy wins.
  const newest = new Map<string, DriverCopy>();
  for (const d of perCell.flatMap((c) => c.drivers)) if ((newest.get(d.driverId)?.seenAt ?? -1) < d.seenAt) newest.set(d.driverId, d);
  const drivers = [...newest.values()].map((d) => ({ id: d.driverId, lat: d.lat, lng: d.lng, status: d.status }));
  const { nodes, placement } = edge.region.assignment;
  return {
    type: 'ops.snapshot',
    at: new Date().toISOString(),
    node: edge.region.nodeId,
    drivers,
    cells: perCell.filter((c) => c.drivers.length > 0 || c.surge.demand > 0).map((c) => ({
      cell: c.cell, surge: c.surge.surge, supply: c.surge.supply, demand: c.surge.demand,
      boundary: cellToBoundary(c.cell).map(([lat, lng]) => [Math.round(lat * 1e5) / 1e5, Math.round(lng * 1e5) / 1e5]),
    })),
    bookings: bookings.map((b) => ({ id: b.id, status: b.status, pickup: b.pickup, driverId: b.driverId ?? null })),
    counters: {
      driversOnline: drivers.length,
      driversAvailable: drivers.filter((d) => d.status === 'available').length,
      bookingsLastHour: Object.values(counts).reduce((a, b) => a + b, 0),
      completed: counts.completed ?? 0, noDriver: counts.no_driver ?? 0, active: bookings.length,
    },
    cluster: { nodes, shards: [...placement].map(([shard, node]) => ({ shard, node })) },
  };
}
