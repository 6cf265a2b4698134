// A kafkajs partition assigner that places shards (partitions of the command
// topic) by runtime/placement.ts. Each member's subscription carries its node id
// and the shards it owns now, so the group leader can keep shards where they are;
// the assignment sent to every member carries the whole shard -> node map.

import { AssignerProtocol, type PartitionAssigner } from 'kafkajs';
import { placeShards } from '../../runtime/placement.ts';
import type { NodeId } from '../../runtime/entity.ts';

export const ASSIGNER_NAME = 'dispatch-sticky-rendezvous';

interface MemberData {
  readonly node: NodeId;
  readonly owned: readonly number[];
}

export interface PlacementData {
  readonly nodes: readonly string[];
  /** Index = shard, value = node id. */
  readonly owners: readonly string[];
}

export function encodeJson(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

export function decodeJson<T>(buffer: Buffer | null | undefined): T | undefined {
  if (!buffer || buffer.length === 0) return undefined;
  try { return JSON.parse(buffer.toString('utf8')) as T; } catch { return undefined; }
}

export interface AssignerOptions {
  readonly nodeId: NodeId;
  readonly topic: string;
  /** The shards this node owns right now (sent with every join). */
  readonly owned: () => readonly number[];
  /**
   * Called synchronously as this member (re)joins the group, before its JoinGroup request
   * is sent. Every member runs this, not only the leader (assign() runs on the leader only).
   */
  readonly onJoin?: () => void;
}

export function stickyRendezvousAssigner(options: AssignerOptions): PartitionAssigner {
  return ({ cluster }) => ({
    name: ASSIGNER_NAME,
    version: 1,
    protocol({ topics }) {
      options.onJoin?.();
      const data: MemberData = { node: options.nodeId, owned: options.owned() };
      return {
        name: ASSIGNER_NAME,
        metadata: AssignerProtocol.MemberMetadata.encode({ version: 1, topics, userData: encodeJson(data) }),
      };
    },
    async assign({ members }) {
      await cluster.refreshMetadataIfNecessary();
      const partitions = cluster.findTopicPartitionMetadata(options.topic).length;
      const nodeOf = new Map<string, string>();
      const previous = new Map<number, string>();
      for (const member of members) {
        const meta = AssignerProtocol.MemberMetadata.decode(member.memberMetadata);
        const data = decodeJson<MemberData>(meta?.userData);
        const node = data?.node ?? member.memberId;
        nodeOf.set(member.memberId, node);
        for (const shard of data?.owned ?? []) if (!previous.has(shard)) previous.set(shard, node);
      }
      const nodes = [...new Set(nodeOf.values())].sort();
      const map = placeShards(partitions, nodes, previous);
      const placement: PlacementData = { nodes, owners: Array.from({ length: partitions }, (_, s) => map.get(s)!) };
      // Two members claiming one node id (a restart overlapping its old session) must not both
      // consume: only the first listed gets the node's shards; the other idles until it leaves.
      const served = new Set<string>();
      return members.map((member) => {
        const node = nodeOf.get(member.memberId)!;
        const first = !served.has(node);
        served.add(node);
        const mine = first ? [...map].filter(([, owner]) => owner === node).map(([s]) => s) : [];
        return {
          memberId: member.memberId,
          memberAssignment: AssignerProtocol.MemberAssignment.encode({
            version: 1,
            assignment: { [options.topic]: mine },
            userData: encodeJson(placement),
          }),
        };
      });
    },
  });
}
