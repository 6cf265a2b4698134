// GET /v1/admin/cluster: nodes, the shard -> node map as this node last learnt it,
// and live actors per shard (counted here for the shards this node owns).

import { z } from 'zod';
import type { ShardHost } from '../../runtime/shard-host.ts';
import type { ShardRegion } from '../../runtime/region.ts';
import type { ProjectionMonitor } from '../ports.ts';
import { Api } from '../api.ts';

const Cluster = z.object({
  nodeId: z.string(), nodes: z.array(z.string()),
  shards: z.array(z.object({ shard: z.number(), node: z.string().nullable(), actors: z.number().nullable() })),
  projections: z.array(z.object({
    name: z.string(), lagMs: z.number(), shards: z.number(), rowsProjected: z.number(), failures: z.number(),
    lastError: z.string().optional(),
  })).describe('Read-model projections on the shards this node owns: how far behind the journal each may be'),
});

export function clusterRoutes(region: ShardRegion, host: ShardHost, projector?: ProjectionMonitor): Api {
  const api = new Api();
  api.add({
    method: 'get', path: '/v1/admin/cluster', tag: 'admin',
    summary: 'Nodes, the shard -> node map, live actors per shard (for shards this node owns)',
    roles: ['admin'], response: Cluster,
    handler: async () => {
      const { placement, nodes } = region.assignment;
      const actors = host.stats().activeByShard;
      return {
        nodeId: region.nodeId,
        nodes,
        shards: Array.from({ length: region.shards }, (_, shard) => ({
          shard,
          node: placement.get(shard) ?? null,
          actors: region.owns(shard) ? actors.get(shard) ?? 0 : null,
        })),
        projections: projector?.status() ?? [],
      };
    },
  });
  return api;
}
