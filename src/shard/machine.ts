/**
 * The shard state machine: an ordered KV where each key carries a revision (the log index of
 * the entry that last wrote it). It lives in the node's StorageEngine under `d/<shard>/`, with
 * the applied index under `s/<shard>/applied`, and is changed only by applying committed Raft
 * entries. Applying stages writes into the host's batch (so the log append, the state change and
 * the applied index of every group commit together, in one transaction); reads that must see
 * writes staged earlier in the same batch go through an overlay that is dropped once the batch
 * is durable.
 *
 * Deterministic: the same entries applied to the same state give the same state and results on
 * every replica (no clock, no randomness).
 */
import { assert } from "../base/index.js";
import type { Entry } from "../raft/index.js";
import type { StorageEngine, WriteOp } from "../storage/index.js";
import {
  compareBytes,
  concat,
  fromHex,
  GroupStorage,
  KEY_BYTES_MAX,
  keyAfter,
  prefixEnd,
  toHex,
} from "../storage/index.js";
import { decodeCommand } from "./command.js";
import { murmur3 } from "./map.js";

const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * Sizes of the split halves made on an engine, for the half's machine to start with (the host
 * opens it once the split is durable): without it, its first size estimate scans the whole half
 * on the event loop. Per engine, since every host of a simulation shares this module.
 */
const splitSizes = new WeakMap<StorageEngine, Map<string, { bytes: number; keys: number }>>();

/** Keys read per step by the split-point searches (middleKeySteps, middleHashSteps). */
const SCAN_STEP_KEYS = 4096;

/** Runs a stepped computation to its end at once. */
function runSteps<T>(steps: Generator<void, T>): T {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/**
 * A shard's own description, kept with its data (`s/<shard>/meta`) and carried in snapshots.
 * Ranges are positions in hex; absent = unbounded on that side. A key's position is the key
 * itself, or for a shard of a hash keyspace (`hashed`) its hash prefix followed by the key, as
 * the shard map orders keys (shard/map.ts encodeKey).
 */
export interface ShardMeta {
  readonly retired?: boolean;
  readonly start?: string;
  readonly end?: string;
  /** Set by the first split of a hash keyspace's shard: ranges are in hash order. */
  readonly hashed?: boolean;
  /** The shard that took [end, old end) in the last split (lets a leader repair the map). */
  readonly child?: string;
}

const NO_META: ShardMeta = Object.freeze({});

/**
 * A meta's range as bytes, decoded once per meta object (metas are immutable and replaced on
 * every change): `owns` runs for every write applied and every point read.
 */
const ranges = new WeakMap<ShardMeta, { start?: Uint8Array; end?: Uint8Array }>();

/** Where `key` sorts in the shard's range: itself, or hash prefix + key for a hashed shard. */
function position(meta: ShardMeta, key: Uint8Array): Uint8Array {
  return meta.hashed ? hashPosition(key) : key;
}

export function hashPosition(key: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + key.byteLength);
  new DataView(out.buffer).setUint32(0, murmur3(key));
  out.set(key, 4);
  return out;
}

function owns(meta: ShardMeta, key: Uint8Array): boolean {
  return inRange(meta, position(meta, key));
}

function inRange(meta: ShardMeta, pos: Uint8Array): boolean {
  let r = ranges.get(meta);
  if (!r) {
    r = {
      ...(meta.start === undefined ? {} : { start: fromHex(meta.start) }),
      ...(meta.end === undefined ? {} : { end: fromHex(meta.end) }),
    };
    ranges.set(meta, r);
  }
  if (r.start !== undefined && compareBytes(pos, r.start) < 0) return false;
  return r.end === undefined || compareBytes(pos, r.end) < 0;
}

function metaKeyOf(shardId: string): Uint8Array {
  return enc.encode(`s/${shardId}/meta`);
}

function encodeApplied(index: number, term: number): Uint8Array {
  const raw = new Uint8Array(16);
  const view = new DataView(raw.buffer);
  view.setFloat64(0, index);
  view.setFloat64(8, term);
  return raw;
}

/** Where a shard's data and applied index live in the engine. */
class ShardMachineKeys {
  readonly dataPrefix: Uint8Array;
  readonly appliedKey: Uint8Array;
  constructor(shardId: string) {
    this.dataPrefix = enc.encode(`d/${shardId}/`);
    this.appliedKey = enc.encode(`s/${shardId}/applied`);
  }
}

/**
 * Longest user key a shard can store: the engine's key limit minus the longest storage prefix
 * (`d/` + a shard id of at most 64 characters + `/`). The API's --key-bytes-max may not exceed it.
 */
export const SHARD_KEY_BYTES_MAX = KEY_BYTES_MAX - 67;

export type ApplyResult =
  | { readonly ok: true; readonly revision: number }
  /** The key cannot be stored (empty, or over SHARD_KEY_BYTES_MAX): nothing was written. */
  | { readonly ok: false; readonly code: "INVALID_KEY" }
  | { readonly ok: false; readonly code: "PRECONDITION_FAILED"; readonly revision: number }
  | { readonly ok: false; readonly code: "NOT_FOUND" }
  /** The shard was retired (its keyspace deleted): nothing was written. */
  | { readonly ok: false; readonly code: "RETIRED" }
  /** The key is outside the shard's range (it moved in a split): nothing was written. */
  | { readonly ok: false; readonly code: "WRONG_SHARD" }
  /** A split command that does not fit the shard (changes nothing). */
  | { readonly ok: false; readonly code: "INVALID_SPLIT" };

export interface KvItem {
  readonly key: Uint8Array;
  readonly value: Uint8Array;
  readonly revision: number;
}

function encodeStored(revision: number, value: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + value.byteLength);
  new DataView(out.buffer).setFloat64(0, revision);
  out.set(value, 8);
  return out;
}

function decodeStored(raw: Uint8Array): { revision: number; value: Uint8Array } {
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  return { revision: view.getFloat64(0), value: raw.subarray(8) };
}

export class ShardMachine {
  private readonly dataPrefix: Uint8Array;
  private readonly dataEnd: Uint8Array;
  private readonly appliedKey: Uint8Array;
  private readonly metaKey: Uint8Array;
  /**
   * What the shard serves, as of `applied`: retired (its keyspace was deleted), and the range of
   * user keys it owns (narrowed by splits; unbounded until the first). Reads check
   * `metaDurable`, the same as of `durableApplied`, which is what they see of the data too.
   */
  private meta: ShardMeta = NO_META;
  metaDurable: ShardMeta = NO_META;
  /** Groups this batch created (split halves), for the host to open once it is durable. */
  private created: string[] = [];
  /**
   * Approximate size (stored key + value bytes, keys), kept up to date by apply; undefined
   * until first asked (then counted once by a scan). Only split decisions use it.
   */
  private size: { bytes: number; keys: number } | undefined;
  /** Writes (puts and deletes) applied since this replica started: the shard's write load. */
  writesApplied = 0;
  /** Writes staged in the current, not yet durable batch: toHex(key) -> stored bytes or null. */
  private overlay = new Map<string, Uint8Array | null>();
  /** Last applied entry, including writes staged in the batch in flight. */
  applied = 0;
  appliedTerm = 0;
  /** Last applied entry whose writes are visible in the engine (what reads and snapshots see). */
  durableApplied = 0;
  durableAppliedTerm = 0;

  constructor(
    private readonly engine: StorageEngine,
    readonly shardId: string,
  ) {
    this.dataPrefix = enc.encode(`d/${shardId}/`);
    this.dataEnd = prefixEnd(this.dataPrefix);
    this.appliedKey = enc.encode(`s/${shardId}/applied`);
    this.metaKey = metaKeyOf(shardId);
    // A split half made on this engine a moment ago: its size is known (no scan of the half).
    const sizes = splitSizes.get(engine);
    const hint = sizes?.get(shardId);
    if (hint) {
      this.size = { ...hint };
      sizes?.delete(shardId);
    }
    const rawMeta = engine.get(this.metaKey);
    this.meta = rawMeta ? (JSON.parse(dec.decode(rawMeta)) as ShardMeta) : NO_META;
    this.metaDurable = this.meta;
    const raw = engine.get(this.appliedKey);
    if (raw) {
      const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
      this.applied = view.getFloat64(0);
      this.appliedTerm = view.getFloat64(8);
    }
    this.durableApplied = this.applied;
    this.durableAppliedTerm = this.appliedTerm;
  }

  private storedKey(key: Uint8Array): Uint8Array {
    return concat(this.dataPrefix, key);
  }

  private readStored(key: Uint8Array): { revision: number; value: Uint8Array } | undefined {
    const sk = this.storedKey(key);
    const staged = this.overlay.get(toHex(sk));
    if (staged === null) return undefined;
    const raw = staged ?? this.engine.get(sk);
    return raw ? decodeStored(raw) : undefined;
  }

  /**
   * Applies one committed entry, staging its writes into `ops`. Returns the client-visible
   * result for normal entries with a command, undefined for no-ops and configuration entries.
   */
  apply(e: Entry, ops: WriteOp[]): ApplyResult | undefined {
    assert(
      e.index > this.applied,
      () => `entry ${e.index} applied twice (applied ${this.applied})`,
    );
    this.applied = e.index;
    this.appliedTerm = e.term;
    if (e.type !== "normal" || e.data.byteLength === 0) return undefined;
    const cmd = decodeCommand(e.data);
    if (this.meta.retired) return { ok: false, code: "RETIRED" };
    if (cmd.op === "retire") {
      this.setMeta({ ...this.meta, retired: true }, ops);
      return { ok: true, revision: e.index };
    }
    if (cmd.op === "split") return this.applySplit(e, cmd, ops);
    // A stale route: the key moved to another shard in a split. Refused the same everywhere.
    if (!owns(this.meta, cmd.key)) return { ok: false, code: "WRONG_SHARD" };
    // The API refuses such keys; one that reached the log anyway (another node configured
    // differently, a bug) is refused identically on every replica instead of failing the
    // storage write, which would stop the node on every replay of the entry.
    if (cmd.key.byteLength === 0 || cmd.key.byteLength > SHARD_KEY_BYTES_MAX)
      return { ok: false, code: "INVALID_KEY" };
    const current = this.readStored(cmd.key);
    if (cmd.cond.kind === "ifRevision" && (current?.revision ?? 0) !== cmd.cond.revision) {
      return { ok: false, code: "PRECONDITION_FAILED", revision: current?.revision ?? 0 };
    }
    if (cmd.cond.kind === "ifAbsent" && current) {
      return { ok: false, code: "PRECONDITION_FAILED", revision: current.revision };
    }
    const sk = this.storedKey(cmd.key);
    this.writesApplied++;
    if (cmd.op === "put") {
      // The value is copied: the entry's bytes may alias a network buffer.
      const stored = encodeStored(e.index, cmd.value);
      if (this.size) {
        this.size.bytes +=
          stored.byteLength - (current ? current.value.byteLength + 8 : -cmd.key.byteLength);
        if (!current) this.size.keys++;
      }
      ops.push({ op: "put", key: sk, value: stored });
      this.overlay.set(toHex(sk), stored);
      return { ok: true, revision: e.index };
    }
    if (!current) return { ok: false, code: "NOT_FOUND" };
    if (this.size) {
      this.size.bytes -= cmd.key.byteLength + current.value.byteLength + 8;
      this.size.keys--;
    }
    ops.push({ op: "del", key: sk });
    this.overlay.set(toHex(sk), null);
    return { ok: true, revision: e.index };
  }

  /** Stages the applied index (once per batch, after the last apply). */
  stageApplied(ops: WriteOp[]): void {
    ops.push({
      op: "put",
      key: this.appliedKey,
      value: encodeApplied(this.applied, this.appliedTerm),
    });
  }

  /** The staged batch is durable and visible in the engine: drop the overlay. */
  batchCommitted(): void {
    if (this.overlay.size > 0) this.overlay = new Map();
    this.durableApplied = this.applied;
    this.durableAppliedTerm = this.appliedTerm;
    this.metaDurable = this.meta;
  }

  /** Split halves created by the batch just committed (each returned once). */
  takeCreatedGroups(): string[] {
    const c = this.created;
    this.created = [];
    return c;
  }

  private setMeta(meta: ShardMeta, ops: WriteOp[]): void {
    this.meta = meta;
    ops.push({ op: "put", key: this.metaKey, value: enc.encode(JSON.stringify(meta)) });
  }

  /** Approximate bytes (keys + values) and keys stored. */
  approximateSize(): { bytes: number; keys: number } {
    if (!this.size) {
      let bytes = 0;
      let keys = 0;
      for (const [k, v] of this.engine.scan(this.dataPrefix, this.dataEnd)) {
        bytes += k.byteLength - this.dataPrefix.byteLength + v.byteLength;
        keys++;
      }
      this.size = { bytes, keys };
    }
    return { ...this.size };
  }

  /**
   * Where a shard of a hash keyspace splits in two by size: the 4-byte hash position (murmur3,
   * big-endian) that the most even cut in hash order starts at. Undefined when every key has
   * the same hash (nothing to split).
   */
  middleHash(): Uint8Array | undefined {
    return runSteps(this.middleHashSteps());
  }

  /**
   * The key that halves the shard by size (as of `durableApplied`): the first key at or past
   * the middle byte. Undefined when the shard has fewer than two keys (nothing to split).
   */
  middleKey(): Uint8Array | undefined {
    return runSteps(this.middleKeySteps());
  }

  /**
   * `middleHash` in steps: it yields after every `SCAN_STEP_KEYS` keys, so that the split round
   * (on the leader's event loop) lets requests and Raft messages through while it reads a whole
   * shard (about a second for 64 MiB here). The shard may change between steps; the split
   * proposed from the answer is checked again where it is applied.
   */
  *middleHashSteps(): Generator<void, Uint8Array | undefined> {
    const byHash: [number, number][] = [];
    let total = 0;
    for (const step of this.scanSteps()) {
      for (const [k, v] of step) {
        const bytes = k.byteLength - this.dataPrefix.byteLength + v.byteLength;
        byHash.push([murmur3(k.subarray(this.dataPrefix.byteLength)), bytes]);
        total += bytes;
      }
      yield;
    }
    byHash.sort((a, b) => a[0] - b[0]);
    let acc = 0;
    for (const [i, [h, bytes]] of byHash.entries()) {
      // The first hash past the smallest whose predecessors hold half the bytes.
      if (i > 0 && acc >= total / 2 && h !== (byHash[0] as [number, number])[0]) {
        const out = new Uint8Array(4);
        new DataView(out.buffer).setUint32(0, h);
        return out;
      }
      acc += bytes;
    }
    return undefined;
  }

  /** `middleKey` in steps (see middleHashSteps). */
  *middleKeySteps(): Generator<void, Uint8Array | undefined> {
    const half = this.approximateSize().bytes / 2;
    let acc = 0;
    let first = true;
    for (const step of this.scanSteps()) {
      for (const [k, v] of step) {
        // The first key whose predecessors hold half the bytes; never the first key (the left
        // half must keep at least one).
        if (!first && acc >= half) return k.slice(this.dataPrefix.byteLength);
        acc += k.byteLength - this.dataPrefix.byteLength + v.byteLength;
        first = false;
      }
      yield;
    }
    return undefined;
  }

  /** The shard's stored items in key order, SCAN_STEP_KEYS at a time. */
  private *scanSteps(): Generator<[Uint8Array, Uint8Array][]> {
    let from = this.dataPrefix;
    for (;;) {
      const step = [...this.engine.scan(from, this.dataEnd, { limit: SCAN_STEP_KEYS })];
      if (step.length > 0) yield step;
      if (step.length < SCAN_STEP_KEYS) return;
      const last = (step[step.length - 1] as [Uint8Array, Uint8Array])[0];
      from = keyAfter(last);
    }
  }

  get retiredDurable(): boolean {
    return this.metaDurable.retired === true;
  }

  /** Whether `key` belongs to this shard as of `durableApplied` (what reads see). */
  ownsDurable(key: Uint8Array): boolean {
    return owns(this.metaDurable, key);
  }

  /**
   * Splits the shard at `at`: keys from `at` on move to a new group, created on this node in
   * the same batch with the same voters and a log that starts at this entry's index (revisions
   * keep growing), and this shard keeps [start, at). Every replica applies the same entry, so
   * every replica creates the same half. An invalid split (retired, `at` outside the range or
   * at its start) changes nothing, identically everywhere.
   */
  private applySplit(
    e: Entry,
    cmd: {
      readonly at: Uint8Array;
      readonly newShard: string;
      readonly voters: readonly string[];
      readonly hashed?: boolean;
    },
    ops: WriteOp[],
  ): ApplyResult {
    // A hash keyspace's shard switches to hash order at its first split (before it, it has no
    // range of its own: the map routes only its keys to it). Mixing the orders is refused.
    const hashed = cmd.hashed === true;
    const unsplit = this.meta.start === undefined && this.meta.end === undefined;
    if (hashed !== (this.meta.hashed === true) && !(hashed && unsplit))
      return { ok: false, code: "INVALID_SPLIT" };
    const meta: ShardMeta = hashed ? { ...this.meta, hashed: true } : this.meta;
    const start = meta.start === undefined ? undefined : fromHex(meta.start);
    const at = cmd.at;
    if (
      !inRange(meta, at) ||
      (start !== undefined && compareBytes(at, start) === 0) ||
      at.byteLength === 0
    )
      return { ok: false, code: "INVALID_SPLIT" };
    const end = meta.end === undefined ? undefined : fromHex(meta.end);
    // The right half as of this entry: durable keys with this batch's staged writes on top.
    // In key order that is one stored range; in hash order it is every key whose hash position
    // is at or past `at`, found by hashing each key of the shard.
    const from = hashed ? this.dataPrefix : this.storedKey(at);
    const to = hashed || !end ? this.dataEnd : this.storedKey(end);
    const strip = this.dataPrefix.byteLength;
    const right = (stored: Uint8Array) =>
      !hashed || compareBytes(hashPosition(stored.subarray(strip)), at) >= 0;
    // Writes staged earlier in this batch win over the engine's values. Every replica applies
    // this on its event loop at the same log position, so the copy of a 64 MiB half must be
    // cheap: no per-key hex strings or maps for the (usually many) durable keys, only for the
    // (usually few) staged ones. Moved keys need no overlay entry of their own: from this entry
    // on the parent refuses them (WRONG_SHARD), so nothing in this batch reads them again.
    const staged = new Map<string, Uint8Array | null>();
    for (const [hk, v] of this.overlay) {
      const k = fromHex(hk);
      if (compareBytes(k, from) >= 0 && compareBytes(k, to) < 0 && right(k)) staged.set(hk, v);
    }
    const child = new ShardMachineKeys(cmd.newShard);
    // What leaves, so that the size estimate stays known (a full scan of the shard otherwise).
    let movedBytes = 0;
    let movedKeys = 0;
    const move = (k: Uint8Array, v: Uint8Array) => {
      ops.push({ op: "put", key: concat(child.dataPrefix, k.subarray(strip)), value: v });
      movedBytes += k.byteLength - strip + v.byteLength;
      movedKeys++;
    };
    for (const [k, v] of this.engine.scan(from, to)) {
      if (!right(k) || (staged.size > 0 && staged.has(toHex(k)))) continue;
      move(k, v);
      if (hashed) ops.push({ op: "del", key: k });
    }
    for (const [hk, v] of staged) {
      const k = fromHex(hk);
      if (v !== null) move(k, v);
      // After this batch's own put of `k` (earlier in `ops`), so it goes too.
      if (hashed) ops.push({ op: "del", key: k });
      this.overlay.set(hk, null);
    }
    if (!hashed) ops.push({ op: "delRange", start: from, end: to });
    const childMeta: ShardMeta = {
      start: toHex(at),
      ...(meta.end === undefined ? {} : { end: meta.end }),
      ...(hashed ? { hashed: true } : {}),
    };
    ops.push({
      op: "put",
      key: metaKeyOf(cmd.newShard),
      value: enc.encode(JSON.stringify(childMeta)),
    });
    ops.push({ op: "put", key: child.appliedKey, value: encodeApplied(e.index, e.term) });
    GroupStorage.bootstrapAt(cmd.newShard, cmd.voters, e.index, e.term, ops);
    this.setMeta({ ...meta, end: toHex(at), child: cmd.newShard }, ops);
    if (this.size) {
      this.size = { bytes: this.size.bytes - movedBytes, keys: this.size.keys - movedKeys };
    }
    const sizes = splitSizes.get(this.engine) ?? new Map();
    splitSizes.set(this.engine, sizes);
    sizes.set(cmd.newShard, { bytes: movedBytes, keys: movedKeys });
    this.created.push(cmd.newShard);
    return { ok: true, revision: e.index };
  }

  /** The committed value of `key` as of `durableApplied` (staged writes are not visible). */
  get(key: Uint8Array): KvItem | undefined {
    const raw = this.engine.get(this.storedKey(key));
    if (!raw) return undefined;
    const s = decodeStored(raw);
    return { key, value: s.value, revision: s.revision };
  }

  /** Items with key in [start, end) (end undefined = no bound), in key order, at most `limit`.
   *  Reads the engine: the state as of `durableApplied`. */
  scan(start: Uint8Array, end: Uint8Array | undefined, limit: number): KvItem[] {
    const out: KvItem[] = [];
    const from = this.storedKey(start);
    const to = end ? this.storedKey(end) : this.dataEnd;
    for (const [k, v] of this.engine.scan(from, to, { limit })) {
      const { revision, value } = decodeStored(v);
      out.push({ key: k.subarray(this.dataPrefix.byteLength), value, revision });
    }
    return out;
  }

  /**
   * An image of the whole shard as of `durableApplied` (for Raft snapshots; may be called while
   * a batch is in flight, which it ignores): [keyLen u32][storedLen u32][key][stored]...
   */
  snapshotData(): Uint8Array {
    const parts: Uint8Array[] = [];
    let size = 0;
    if (this.metaDurable !== NO_META) {
      // A record with an empty key (no stored key is empty) carries the shard's meta.
      const m = enc.encode(JSON.stringify(this.metaDurable));
      const head = new Uint8Array(8);
      new DataView(head.buffer).setUint32(4, m.byteLength);
      parts.push(head, m);
      size += 8 + m.byteLength;
    }
    for (const [k, v] of this.engine.scan(this.dataPrefix, this.dataEnd)) {
      const key = k.subarray(this.dataPrefix.byteLength);
      const head = new Uint8Array(8);
      const view = new DataView(head.buffer);
      view.setUint32(0, key.byteLength);
      view.setUint32(4, v.byteLength);
      parts.push(head, key, v);
      size += 8 + key.byteLength + v.byteLength;
    }
    const out = new Uint8Array(size);
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.byteLength;
    }
    return out;
  }

  /** Why `data` is not an image `restore` reads (records that run past its end, a bad meta). */
  snapshotProblem(data: Uint8Array): string | undefined {
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    let at = 0;
    while (at < data.byteLength) {
      if (at + 8 > data.byteLength) return "a record header past the end";
      const kl = view.getUint32(at);
      const vl = view.getUint32(at + 4);
      at += 8;
      if (at + kl + vl > data.byteLength) return "a record past the end";
      if (kl === 0) {
        try {
          const meta: unknown = JSON.parse(dec.decode(data.subarray(at, at + vl)));
          if (typeof meta !== "object" || meta === null)
            return "a meta record that is not an object";
        } catch {
          return "a meta record that is not JSON";
        }
      }
      at += kl + vl;
    }
    return undefined;
  }

  /** Replaces the shard's contents with a snapshot image applied at (index, term). */
  restore(data: Uint8Array, index: number, term: number, ops: WriteOp[]): void {
    ops.push({ op: "delRange", start: this.dataPrefix, end: this.dataEnd });
    ops.push({ op: "del", key: this.metaKey });
    this.meta = NO_META;
    this.size = undefined;
    const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
    let at = 0;
    while (at < data.byteLength) {
      const kl = view.getUint32(at);
      const vl = view.getUint32(at + 4);
      at += 8;
      const key = data.slice(at, at + kl);
      at += kl;
      const stored = data.slice(at, at + vl);
      at += vl;
      if (kl === 0) {
        this.meta = JSON.parse(dec.decode(stored)) as ShardMeta;
        ops.push({ op: "put", key: this.metaKey, value: stored });
        continue;
      }
      ops.push({ op: "put", key: this.storedKey(key), value: stored });
    }
    assert(at === data.byteLength, "malformed shard snapshot");
    // No entry is applied in the same batch as a snapshot (raft hands out none), so no overlay.
    this.overlay = new Map();
    this.applied = index;
    this.appliedTerm = term;
    this.stageApplied(ops);
  }

  /** Stages deletion of the whole shard (when its replica is removed from this node). */
  destroy(ops: WriteOp[]): void {
    ops.push({ op: "delRange", start: this.dataPrefix, end: this.dataEnd });
    ops.push({ op: "del", key: this.appliedKey });
    ops.push({ op: "del", key: this.metaKey });
  }
}
