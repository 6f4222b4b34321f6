/**
 * The shard map: which shard owns which part of the encoded key space, and where its replicas
 * live. Everything routes through it, so that the placement driver (later) only has to change
 * the map: keys are encoded as `keyspace 0x00 hash32(key) key` for hash-sharded keyspaces (and
 * `keyspace 0x00 key` for range-sharded ones), and a shard owns a contiguous range
 * [start, end) of encoded keys. Pure: no I/O.
 */
import { assert } from "../base/index.js";
import type { NodeId } from "../raft/index.js";
import { compareBytes } from "../storage/index.js";

const enc = new TextEncoder();

export type Sharding = "hash" | "range";

export interface ShardInfo {
  readonly id: string;
  readonly keyspace: string;
  /** Encoded-key range [start, end); an empty `end` means "to the end of the keyspace". */
  readonly start: Uint8Array;
  readonly end: Uint8Array;
  readonly replicas: readonly NodeId[];
}

/** murmur3 x86 32-bit: fast, well distributed, identical everywhere. */
export function murmur3(data: Uint8Array, seed = 0): number {
  let h = seed >>> 0;
  const n = data.byteLength;
  const blocks = n & ~3;
  for (let i = 0; i < blocks; i += 4) {
    let k =
      (data[i] as number) |
      ((data[i + 1] as number) << 8) |
      ((data[i + 2] as number) << 16) |
      ((data[i + 3] as number) << 24);
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) >>> 0;
  }
  let k = 0;
  const rest = n & 3;
  if (rest === 3) k ^= (data[blocks + 2] as number) << 16;
  if (rest >= 2) k ^= (data[blocks + 1] as number) << 8;
  if (rest >= 1) {
    k ^= data[blocks] as number;
    k = Math.imul(k, 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    k = Math.imul(k, 0x1b873593);
    h ^= k;
  }
  h ^= n;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function keyspacePrefix(keyspace: string): Uint8Array {
  const ks = enc.encode(keyspace);
  const out = new Uint8Array(ks.byteLength + 1);
  out.set(ks, 0);
  return out; // trailing 0x00 separator
}

export function encodeKey(keyspace: string, key: Uint8Array, sharding: Sharding): Uint8Array {
  const prefix = keyspacePrefix(keyspace);
  const extra = sharding === "hash" ? 4 : 0;
  const out = new Uint8Array(prefix.byteLength + extra + key.byteLength);
  out.set(prefix, 0);
  if (sharding === "hash") new DataView(out.buffer).setUint32(prefix.byteLength, murmur3(key));
  out.set(key, prefix.byteLength + extra);
  return out;
}

export class ShardMap {
  private readonly byKeyspace = new Map<string, { sharding: Sharding; shards: ShardInfo[] }>();

  constructor(
    readonly version: number,
    keyspaces: readonly { name: string; sharding: Sharding; shards: readonly ShardInfo[] }[],
  ) {
    for (const ks of keyspaces) {
      const shards = [...ks.shards].sort((a, b) => compareBytes(a.start, b.start));
      // The shards of a keyspace tile its whole encoded range without gaps or overlaps.
      for (let i = 1; i < shards.length; i++) {
        assert(
          compareBytes((shards[i - 1] as ShardInfo).end, (shards[i] as ShardInfo).start) === 0,
          "shard ranges must tile",
        );
      }
      this.byKeyspace.set(ks.name, { sharding: ks.sharding, shards });
    }
  }

  hasKeyspace(name: string): boolean {
    return this.byKeyspace.has(name);
  }

  keyspaces(): string[] {
    return [...this.byKeyspace.keys()];
  }

  sharding(keyspace: string): Sharding | undefined {
    return this.byKeyspace.get(keyspace)?.sharding;
  }

  shards(keyspace?: string): ShardInfo[] {
    if (keyspace) return [...(this.byKeyspace.get(keyspace)?.shards ?? [])];
    return [...this.byKeyspace.values()].flatMap((k) => k.shards);
  }

  /** The shard that owns `key` of `keyspace`, or undefined for an unknown keyspace. */
  locate(keyspace: string, key: Uint8Array): ShardInfo | undefined {
    const ks = this.byKeyspace.get(keyspace);
    if (!ks) return undefined;
    const ek = encodeKey(keyspace, key, ks.sharding);
    let lo = 0;
    let hi = ks.shards.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (compareBytes((ks.shards[mid] as ShardInfo).start, ek) <= 0) lo = mid;
      else hi = mid - 1;
    }
    return ks.shards[lo];
  }
}

/**
 * The initial map of a new cluster: one hash-sharded keyspace split into `shardCount` equal
 * hash ranges, each replicated on `replicas` nodes chosen round-robin over the sorted node ids.
 */
export function initialShardMap(
  nodes: readonly NodeId[],
  shardCount: number,
  replicas: number,
  keyspace = "default",
): ShardMap {
  assert(shardCount > 0 && shardCount <= 4096, "shard count out of range");
  const sorted = [...nodes].sort();
  const rf = Math.min(replicas, sorted.length);
  const prefix = keyspacePrefix(keyspace);
  const boundary = (i: number): Uint8Array => {
    if (i === 0) return prefix;
    if (i === shardCount) return new Uint8Array(0);
    const b = new Uint8Array(prefix.byteLength + 4);
    b.set(prefix, 0);
    new DataView(b.buffer).setUint32(prefix.byteLength, Math.floor((i * 2 ** 32) / shardCount));
    return b;
  };
  const shards: ShardInfo[] = [];
  for (let i = 0; i < shardCount; i++) {
    const replicaSet: NodeId[] = [];
    for (let r = 0; r < rf; r++) replicaSet.push(sorted[(i + r) % sorted.length] as NodeId);
    shards.push({
      id: `${keyspace}.${i}`,
      keyspace,
      start: boundary(i),
      end: boundary(i + 1),
      replicas: replicaSet,
    });
  }
  return new ShardMap(1, [{ name: keyspace, sharding: "hash", shards }]);
}
