// GET /v1/admin/cluster: nodes, the shard -> node map as this node last learnt it,
// and live actors per shard (counted here for the shards this node owns).

import { z } from 'zod';
import type { ShardHost } from '../../runtime/shard-host.ts';
import type { ShardRegion } from '../../runtime/region.ts';
import { Api } from '../api.ts';

const Cluster = z.object({
  nodeId: z.string(), nodes: z.array(z.string()),
  shards: z.array(z.object({ shard: z.number(), node: z.string().nullable(), actors: z.number().nullable() })),
});

export function clusterRoutes(region: ShardRegion, host: ShardHost): Api {
  const api = new Api();
  api.add({
    method: 'get', path: '/v1/admin/cluster', tag: 'admin', summary: 'Nodes, the shard -> node map, live actors per shard (for shards this node owns)',
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
      };
    },
  });
  return api;
}
