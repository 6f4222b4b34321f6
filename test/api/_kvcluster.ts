/**
 * Three real multi-Raft hosts in one process (memory engines, memory network), each with a
 * KvService, for tests of the layers above the KV service: the shard map is whatever the test
 * installs (one range keyspace per call of `mapOf`), the groups are created by the test.
 */
import { KvService } from "../../src/api/kv/service.js";
import { MultiRaftHost } from "../../src/multiraft/index.js";
import { type ApplyResult, ShardMachine, ShardMap } from "../../src/shard/index.js";
import { MemoryEngine } from "../../src/storage/index.js";
import { MemoryNetwork } from "../../src/transport/index.js";

const enc = new TextEncoder();
export type Host = MultiRaftHost<ApplyResult, ShardMachine>;
export const NODE_IDS = ["n1", "n2", "n3"] as const;

/** A map with one range keyspace of one shard, `shardId`, on all three nodes. */
export function mapOf(version: number, keyspace: string, shardId: string): ShardMap {
  const start = new Uint8Array([...enc.encode(keyspace), 0]);
  return new ShardMap(version, [
    {
      name: keyspace,
      sharding: "range",
      shards: [{ id: shardId, keyspace, start, end: new Uint8Array(0), replicas: [...NODE_IDS] }],
    },
  ]);
}

export interface KvCluster {
  readonly hosts: Host[];
  readonly services: KvService[];
  /** Creates the group on every node (all three are its initial voters); n1 campaigns. */
  createEverywhere(shardId: string): Promise<void>;
  stop(): Promise<void>;
}

export async function startKvCluster(map: ShardMap): Promise<KvCluster> {
  const net = new MemoryNetwork();
  const hosts: Host[] = [];
  const services: KvService[] = [];
  for (const id of NODE_IDS) {
    const transport = net.transport(id);
    const engine = new MemoryEngine();
    const host: Host = new MultiRaftHost<ApplyResult, ShardMachine>({
      nodeId: id,
      engine,
      transport,
      seed: id.charCodeAt(1),
      tickMs: 10,
      electionTimeoutTicks: 10,
      machine: (g) => new ShardMachine(engine, g),
    });
    const kv = new KvService(id, host, transport, map, {
      requestTimeoutMs: 5_000,
      leaderlessTimeoutMs: 2_000,
    });
    await transport.start({
      onRaft: (from, b) => host.receive(from, b),
      onCall: (from, method, body) => kv.handleCall(from, method, body),
    });
    for (const p of NODE_IDS) if (p !== id) transport.setPeer(p, p);
    host.start();
    hosts.push(host);
    services.push(kv);
  }
  return {
    hosts,
    services,
    async createEverywhere(shardId) {
      for (const h of hosts) await h.createGroup(shardId, [...NODE_IDS]);
      (hosts[0] as Host).campaign(shardId);
    },
    async stop() {
      for (const h of hosts) await h.stop();
    },
  };
}
