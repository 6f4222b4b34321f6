/**
 * Shard commands: what a KV write looks like in the Raft log. A compact binary encoding (a
 * value may be up to a few MiB; JSON would inflate it):
 *
 *   [op u8][cond u8][expectedRevision f64][keyLength u16][key][value...]
 *
 * op: 1 put, 2 delete, 3 retire (the shard stops serving: its keyspace was deleted; key empty),
 * 4 split (key = the split point, value = JSON {newShard, voters}). cond: 0 none, 1 if the key's revision equals expectedRevision
 * (compare-and-set), 2 if the key is absent (create-only). Revisions are log indexes (< 2^53).
 */
import { assert } from "../base/index.js";

export type Condition =
  | { readonly kind: "none" }
  | { readonly kind: "ifRevision"; readonly revision: number }
  | { readonly kind: "ifAbsent" };

export type ShardCommand =
  | {
      readonly op: "put";
      readonly key: Uint8Array;
      readonly value: Uint8Array;
      readonly cond: Condition;
    }
  | { readonly op: "delete"; readonly key: Uint8Array; readonly cond: Condition }
  /** Every later command and read of the shard answers RETIRED (docs/kv-api.md, keyspaces). */
  | { readonly op: "retire" }
  /** Keys from `at` on move to a new shard `newShard` with these voters (ShardMachine). */
  | {
      readonly op: "split";
      readonly at: Uint8Array;
      readonly newShard: string;
      readonly voters: readonly string[];
      /**
       * A shard of a hash keyspace: `at` is a position in hash order (4 bytes, big-endian
       * murmur3 of the key), and keys move by their hash (see ShardMeta.hashed).
       */
      readonly hashed?: boolean;
    };

const NO_COND: Condition = { kind: "none" };
const EMPTY = new Uint8Array(0);

const HEADER_BYTES = 12;
const OPS: Record<ShardCommand["op"], number> = { put: 1, delete: 2, retire: 3, split: 4 };
export const KEY_BYTES_HARD_MAX = 0xffff;

export function encodeCommand(c: ShardCommand): Uint8Array {
  const key = c.op === "retire" ? EMPTY : c.op === "split" ? c.at : c.key;
  const cond = c.op === "retire" || c.op === "split" ? NO_COND : c.cond;
  assert(key.byteLength <= KEY_BYTES_HARD_MAX, "key too long for the command encoding");
  const value =
    c.op === "put"
      ? c.value
      : c.op === "split"
        ? new TextEncoder().encode(
            JSON.stringify({
              newShard: c.newShard,
              voters: c.voters,
              ...(c.hashed ? { hashed: true } : {}),
            }),
          )
        : EMPTY;
  const out = new Uint8Array(HEADER_BYTES + key.byteLength + value.byteLength);
  const view = new DataView(out.buffer);
  out[0] = OPS[c.op];
  out[1] = cond.kind === "none" ? 0 : cond.kind === "ifRevision" ? 1 : 2;
  view.setFloat64(2, cond.kind === "ifRevision" ? cond.revision : 0);
  view.setUint16(10, key.byteLength);
  out.set(key, HEADER_BYTES);
  out.set(value, HEADER_BYTES + key.byteLength);
  return out;
}

export function decodeCommand(data: Uint8Array): ShardCommand {
  assert(data.byteLength >= HEADER_BYTES, "truncated shard command");
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const op = data[0];
  const condKind = data[1];
  const revision = view.getFloat64(2);
  const keyLength = view.getUint16(10);
  assert(HEADER_BYTES + keyLength <= data.byteLength, "shard command key overruns");
  const key = data.subarray(HEADER_BYTES, HEADER_BYTES + keyLength);
  const cond: Condition =
    condKind === 0
      ? { kind: "none" }
      : condKind === 1
        ? { kind: "ifRevision", revision }
        : { kind: "ifAbsent" };
  assert(condKind !== undefined && condKind <= 2, "unknown condition");
  if (op === 1) return { op: "put", key, value: data.subarray(HEADER_BYTES + keyLength), cond };
  if (op === 3) return { op: "retire" };
  if (op === 4) {
    const v = JSON.parse(new TextDecoder().decode(data.subarray(HEADER_BYTES + keyLength))) as {
      newShard: string;
      voters: string[];
      hashed?: boolean;
    };
    return {
      op: "split",
      at: key,
      newShard: v.newShard,
      voters: v.voters,
      ...(v.hashed === true ? { hashed: true } : {}),
    };
  }
  assert(op === 2, "unknown shard command");
  return { op: "delete", key, cond };
}
