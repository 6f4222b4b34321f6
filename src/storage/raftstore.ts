/**
 * One Raft group's durable log in a shared StorageEngine (many groups per engine, one batch and
 * one fsync for all of them per host cycle: group commit).
 *
 * Key layout, under the group prefix `r/<groupId>/` (see docs/storage.md):
 *   e/<index u64 BE>  an entry              [crc32 u32][term u64][index u64][type u8][data]
 *   c/<index u64 BE>  empty: entry <index> is a configuration entry (so compaction can fold
 *                     the configuration forward without reading every compacted entry)
 *   hs                the hard state        [crc32 u32][term u64][commit u64][vote utf8]
 *   b                 the log base: the compaction point or installed snapshot, i.e. index and
 *                     term of entry firstIndex()-1 and the configuration there
 *                                           [crc32 u32][index u64][term u64][confState json]
 * Every checksum covers the rest of its value; an entry's also covers its own index, so a value
 * found under the wrong key is caught too. Corrupt data is reported (CorruptionError), never
 * returned.
 *
 * Writes are staged into the caller's batch: `stage(rd, ops)`, the caller writes the batch
 * (durably if `rd.mustSync`), then `persisted(rd)` moves the cached view forward. Reads of the
 * hard state, first/last index and last term are served from memory.
 */
import { crc32 } from "node:zlib";
import { assert } from "../base/index.js";
import {
  applyConfChange,
  bootstrapStorage,
  type ConfState,
  decodeConfChange,
  EMPTY_CONF,
  EMPTY_HARD_STATE,
  type Entry,
  entryBytes,
  type HardState,
  MemoryStorage,
  type NodeId,
  type RaftStorage,
  type Ready,
  type Snapshot,
  type SnapshotMeta,
} from "../raft/index.js";
import type { StorageEngine, WriteOp } from "./engine.js";
import { bytesStr, concat, decodeU64, prefixEnd, strBytes, u64, writeU64 } from "./keys.js";

/** Stored data failed its checksum or is missing: the group's log cannot be trusted. */
export class CorruptionError extends Error {
  override name = "CorruptionError";
  constructor(
    /** CORRUPT_ENTRY: a log entry (or a missing one); CORRUPT_META: hard state or log base. */
    readonly code: "CORRUPT_ENTRY" | "CORRUPT_META",
    readonly group: string,
    /** The entry's index (CORRUPT_ENTRY). */
    readonly index: number | undefined,
    detail: string,
  ) {
    super(
      `group ${group}: corrupt ${code === "CORRUPT_ENTRY" ? `entry ${index}` : "metadata"}: ${detail}`,
    );
  }
}

/** Creates a snapshot of the host's state machine (at its applied index) on demand. */
/** Returns undefined when no consistent snapshot can be made right now (raft retries later). */
export type SnapshotProvider = () => Snapshot | undefined;

const GROUP_ID = /^[A-Za-z0-9_.-]{1,64}$/;
const ROOT = strBytes("r/");
const ENTRY = strBytes("e/");
const CONF_ENTRY = strBytes("c/");
const HARD_STATE = strBytes("hs");
const BASE = strBytes("b");
const EMPTY_BASE: SnapshotMeta = Object.freeze({ index: 0, term: 0, confState: EMPTY_CONF });

/** Entries read from the engine per scan in `entries()` (bounds memory for small maxBytes). */
const ENTRIES_CHUNK = 64;
/**
 * Bounds of the per-group cache of the newest persisted entries (see `tail`). 1,000 groups cost
 * at most 64 MiB; a busy group's apply and its followers' appends need only the last few cycles.
 */
export const TAIL_ENTRIES_MAX = 128;
export const TAIL_BYTES_MAX = 64 * 1024;

/** Bounds of the tail cache (tests shrink them to exercise eviction). */
export interface TailCacheLimits {
  readonly entriesMax: number;
  readonly bytesMax: number;
}
const TAIL_LIMITS: TailCacheLimits = { entriesMax: TAIL_ENTRIES_MAX, bytesMax: TAIL_BYTES_MAX };
const ENTRY_HEADER_BYTES = 4 + 8 + 8 + 1;

function checkGroupId(groupId: string): void {
  // No "/" (or anything odd): "r/a/" must never be a prefix of another group's keys.
  assert(GROUP_ID.test(groupId), () => `bad group id ${JSON.stringify(groupId)}`);
}

class Keys {
  readonly prefix: Uint8Array;
  readonly entriesStart: Uint8Array;
  readonly entriesEnd: Uint8Array;
  readonly confStart: Uint8Array;
  readonly confEnd: Uint8Array;
  readonly hardState: Uint8Array;
  readonly base: Uint8Array;
  constructor(groupId: string) {
    checkGroupId(groupId);
    this.prefix = strBytes(`r/${groupId}/`);
    this.entriesStart = concat(this.prefix, ENTRY);
    this.entriesEnd = prefixEnd(this.entriesStart);
    this.confStart = concat(this.prefix, CONF_ENTRY);
    this.confEnd = prefixEnd(this.confStart);
    this.hardState = concat(this.prefix, HARD_STATE);
    this.base = concat(this.prefix, BASE);
  }
  entry(index: number): Uint8Array {
    return indexed(this.entriesStart, index);
  }
  conf(index: number): Uint8Array {
    return indexed(this.confStart, index);
  }
  /** The index in an e/ or c/ key. */
  indexOf(key: Uint8Array): number {
    return decodeU64(key, this.entriesStart.length);
  }
}

function indexed(prefix: Uint8Array, index: number): Uint8Array {
  const k = new Uint8Array(prefix.length + 8);
  k.set(prefix, 0);
  writeU64(k, prefix.length, index);
  return k;
}

/** The key of entry `index` of group `groupId` (tests and tools). */
export function entryKey(groupId: string, index: number): Uint8Array {
  return new Keys(groupId).entry(index);
}

// ---------------------------------------------------------------------- codecs

/** [crc32 of payload][payload]. */
function seal(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + payload.length);
  out.set(payload, 4);
  new DataView(out.buffer).setUint32(0, crc32(payload));
  return out;
}

/** The payload of a sealed value, or undefined when the checksum does not match. */
function unseal(value: Uint8Array): Uint8Array | undefined {
  if (value.length < 4) return undefined;
  const payload = value.subarray(4);
  const want = new DataView(value.buffer, value.byteOffset, 4).getUint32(0);
  return crc32(payload) === want ? payload : undefined;
}

export function encodeEntry(e: Entry): Uint8Array {
  const out = new Uint8Array(ENTRY_HEADER_BYTES + e.data.length);
  writeU64(out, 4, e.term);
  writeU64(out, 12, e.index);
  out[20] = e.type === "conf" ? 1 : 0;
  out.set(e.data, ENTRY_HEADER_BYTES);
  new DataView(out.buffer).setUint32(0, crc32(out.subarray(4)));
  return out;
}

/** Decodes the value stored for entry `index`, verifying checksum, index and type. */
export function decodeEntry(group: string, index: number, value: Uint8Array): Entry {
  const bad = (detail: string) => new CorruptionError("CORRUPT_ENTRY", group, index, detail);
  if (value.length < ENTRY_HEADER_BYTES) throw bad(`value of ${value.length} bytes is too short`);
  if (unseal(value) === undefined) throw bad("checksum mismatch");
  const term = decodeU64(value, 4);
  const stored = decodeU64(value, 12);
  const type = value[20];
  if (stored !== index) throw bad(`holds index ${stored}`);
  if (term < 0 || (type !== 0 && type !== 1)) throw bad("malformed header");
  return {
    term,
    index,
    type: type === 1 ? "conf" : "normal",
    data: value.subarray(ENTRY_HEADER_BYTES),
  };
}

function encodeHardState(hs: HardState): Uint8Array {
  const vote = strBytes(hs.vote);
  const p = new Uint8Array(16 + vote.length);
  writeU64(p, 0, hs.term);
  writeU64(p, 8, hs.commit);
  p.set(vote, 16);
  return seal(p);
}

function metaError(group: string, what: string): CorruptionError {
  return new CorruptionError("CORRUPT_META", group, undefined, what);
}

function decodeHardState(group: string, value: Uint8Array): HardState {
  const p = unseal(value);
  if (!p || p.length < 16) throw metaError(group, "hard state checksum mismatch");
  const term = decodeU64(p, 0);
  const commit = decodeU64(p, 8);
  if (term < 0 || commit < 0) throw metaError(group, "hard state out of range");
  return { term, commit, vote: bytesStr(p.subarray(16)) };
}

function encodeBase(m: SnapshotMeta): Uint8Array {
  return seal(concat(u64(m.index), u64(m.term), strBytes(JSON.stringify(m.confState))));
}

function decodeBase(group: string, value: Uint8Array): SnapshotMeta {
  const p = unseal(value);
  if (!p || p.length < 16) throw metaError(group, "log base checksum mismatch");
  const index = decodeU64(p, 0);
  const term = decodeU64(p, 8);
  if (index < 0 || term < 0) throw metaError(group, "log base out of range");
  try {
    return { index, term, confState: JSON.parse(bytesStr(p.subarray(16))) as ConfState };
  } catch {
    throw metaError(group, "log base configuration does not parse");
  }
}

// ---------------------------------------------------------------------- GroupStorage

/** What a staged Ready changes in the cached view once it is persisted. */
interface Staged {
  readonly rd: Ready;
  readonly snapshot: SnapshotMeta | undefined;
  readonly last: { index: number; term: number } | undefined;
  /** The entries the batch writes (a contiguous run ending at `last`), for the tail cache. */
  readonly appended: readonly Entry[];
}

export class GroupStorage implements RaftStorage {
  private readonly keys: Keys;
  private hs: HardState;
  /** The log base: entry firstIndex() - 1 (compacted or snapshot), its term and configuration. */
  private base: SnapshotMeta;
  private last: number;
  private lastTerm: number;
  private staged: Staged | undefined;
  /**
   * The newest persisted entries, in memory: `tail[i]` is entry `last - tail.length + 1 + i`, all
   * above the log base. Entries are read back right after they are written (to apply them once
   * committed, and to send them to a follower that was a little behind); serving those from
   * here saves an engine scan and a checksum per read. Bounded by TAIL_ENTRIES_MAX and
   * TAIL_BYTES_MAX (or the limits `load` was given); anything older is read from the engine.
   */
  private tail: Entry[] = [];
  private tailBytes = 0;

  private constructor(
    private readonly engine: StorageEngine,
    readonly groupId: string,
    private provider: SnapshotProvider | undefined,
    init: { hs: HardState; base: SnapshotMeta; last: number; lastTerm: number },
    private readonly tailLimits: TailCacheLimits,
  ) {
    this.keys = new Keys(groupId);
    this.hs = init.hs;
    this.base = init.base;
    this.last = init.last;
    this.lastTerm = init.lastTerm;
  }

  /**
   * Reads a group's state back from the engine (on restart, or after bootstrap). A group with
   * nothing stored loads as an empty log, like a fresh MemoryStorage.
   */
  static load(
    engine: StorageEngine,
    groupId: string,
    snapshotProvider?: SnapshotProvider,
    tailLimits: TailCacheLimits = TAIL_LIMITS,
  ): GroupStorage {
    const keys = new Keys(groupId);
    const hsValue = engine.get(keys.hardState);
    const hs = hsValue ? decodeHardState(groupId, hsValue) : EMPTY_HARD_STATE;
    const baseValue = engine.get(keys.base);
    const base = baseValue ? decodeBase(groupId, baseValue) : EMPTY_BASE;

    let last = base.index;
    let lastTerm = base.term;
    const [first] = engine.scan(keys.entriesStart, keys.entriesEnd, { limit: 1 });
    const [final] = engine.scan(keys.entriesStart, keys.entriesEnd, { limit: 1, reverse: true });
    if (first && final) {
      const firstIndex = keys.indexOf(first[0]);
      // Compaction deletes entries and moves the base in one batch: any other first entry
      // means lost or stale data.
      if (firstIndex !== base.index + 1) {
        throw new CorruptionError(
          "CORRUPT_ENTRY",
          groupId,
          base.index + 1,
          `first stored entry is ${firstIndex}, the log base is ${base.index}`,
        );
      }
      const index = keys.indexOf(final[0]);
      const e = decodeEntry(groupId, index, final[1]);
      last = e.index;
      lastTerm = e.term;
    }
    return new GroupStorage(
      engine,
      groupId,
      snapshotProvider,
      { hs, base, last, lastTerm },
      tailLimits,
    );
  }

  /**
   * Stages the first entry and hard state of a brand-new group on one of its initial members:
   * exactly what `bootstrapStorage()` writes to a MemoryStorage (a configuration entry adding
   * `voters` at term 1, index 1, already committed). Call `load()` once the batch is written.
   */
  static bootstrap(groupId: string, voters: readonly NodeId[], ops: WriteOp[]): void {
    const keys = new Keys(groupId);
    const m = new MemoryStorage();
    bootstrapStorage(m, voters);
    for (const e of m.entries(m.firstIndex(), m.lastIndex() + 1, Number.POSITIVE_INFINITY)) {
      ops.push({ op: "put", key: keys.entry(e.index), value: encodeEntry(e) });
      if (e.type === "conf")
        ops.push({ op: "put", key: keys.conf(e.index), value: new Uint8Array() });
    }
    ops.push({ op: "put", key: keys.hardState, value: encodeHardState(m.hardState()) });
  }

  /**
   * Stages a brand-new group whose log starts after `index` (of `term`), as if a snapshot at
   * that point had been installed: the base is (index, term, voters), nothing else is stored, and
   * the state machine must hold the matching state at `index`. A shard split creates the right
   * half this way on every replica at once, so that its log indexes (which are key revisions)
   * continue after the parent's instead of starting again at 1. Call `load()` once written.
   */
  static bootstrapAt(
    groupId: string,
    voters: readonly NodeId[],
    index: number,
    term: number,
    ops: WriteOp[],
  ): void {
    const keys = new Keys(groupId);
    const confState = { ...EMPTY_CONF, voters: [...voters] };
    ops.push({ op: "put", key: keys.base, value: encodeBase({ index, term, confState }) });
    ops.push({
      op: "put",
      key: keys.hardState,
      value: encodeHardState({ term, vote: "", commit: index }),
    });
  }

  /** Stages the deletion of everything stored for the group. */
  static destroy(groupId: string, ops: WriteOp[]): void {
    const keys = new Keys(groupId);
    ops.push({ op: "delRange", start: keys.prefix, end: prefixEnd(keys.prefix) });
  }

  /** Ids of the groups with anything stored, in key order (one seek per group). */
  static listGroups(engine: StorageEngine): string[] {
    const out: string[] = [];
    const end = prefixEnd(ROOT);
    let from = ROOT;
    for (;;) {
      const [hit] = engine.scan(from, end, { limit: 1 });
      if (!hit) return out;
      const rest = hit[0].subarray(ROOT.length);
      const slash = rest.indexOf(0x2f);
      assert(slash > 0, "a key under r/ without a group id");
      const id = bytesStr(rest.subarray(0, slash));
      out.push(id);
      from = prefixEnd(strBytes(`r/${id}/`));
    }
  }

  /** Sets (or replaces) the function that snapshots the host's state machine. */
  setSnapshotProvider(provider: SnapshotProvider | undefined): void {
    this.provider = provider;
  }

  // -------------------------------------------------------------------- RaftStorage

  hardState(): HardState {
    return this.hs;
  }

  firstIndex(): number {
    return this.base.index + 1;
  }

  lastIndex(): number {
    return this.last;
  }

  term(index: number): number | undefined {
    if (index === this.base.index) return this.base.term;
    if (index < this.base.index || index > this.last) return undefined;
    if (index === this.last) return this.lastTerm;
    const cached = this.cached(index);
    if (cached) return cached.term;
    return this.readEntry(index).term;
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    assert(
      lo > this.base.index && hi <= this.last + 1 && lo <= hi,
      () => `entries(${lo},${hi}) out of [${this.base.index + 1},${this.last + 1}]`,
    );
    const out: Entry[] = [];
    let size = 0;
    let next = lo;
    const tailFirst = this.last - this.tail.length + 1;
    if (this.tail.length > 0 && lo >= tailFirst) {
      // Same rule as below, from memory.
      for (let i = lo - tailFirst; next < hi; i++, next++) {
        const e = this.tail[i] as Entry;
        size += entryBytes(e);
        if (size > maxBytes && out.length > 0) break;
        out.push(e);
      }
      return out;
    }
    // Same rule as MemoryStorage's limitBytes: at least one entry, then stop before the one
    // that would exceed maxBytes. Read in chunks so a small maxBytes reads little.
    while (next < hi) {
      const limit = Math.min(hi - next, ENTRIES_CHUNK);
      const rows = [...this.engine.scan(this.keys.entry(next), this.keys.entry(hi), { limit })];
      for (const [key, value] of rows) {
        const index = this.keys.indexOf(key);
        if (index !== next) this.missing(next);
        const e = decodeEntry(this.groupId, index, value);
        size += entryBytes(e);
        if (size > maxBytes && out.length > 0) return out;
        out.push(e);
        next++;
      }
      if (rows.length < limit) this.missing(next);
    }
    return out;
  }

  /**
   * The host's snapshot of its state machine (the group storage only holds the log), sent to
   * followers that need compacted entries. A log that was never compacted and has no provider
   * returns an index-0 snapshot, like MemoryStorage.
   */
  snapshot(): Snapshot | undefined {
    if (this.provider) return this.provider();
    assert(
      this.base.index === 0,
      () => `group ${this.groupId} is compacted to ${this.base.index}: set a snapshot provider`,
    );
    return { meta: EMPTY_BASE, data: new Uint8Array() };
  }

  /** The log base (compaction point or installed snapshot) with its configuration. */
  snapshotMeta(): SnapshotMeta {
    return this.base;
  }

  // -------------------------------------------------------------------- the write side

  /**
   * Appends to `ops` the writes that persist `rd`: its snapshot (replacing the whole log), its
   * entries (replacing any stored suffix from `entries[0].index` on) and its hard state. The
   * caller writes the batch (synced if `rd.mustSync`), then calls `persisted(rd)`.
   */
  stage(rd: Ready, ops: WriteOp[]): void {
    assert(!this.staged, "stage() called again before persisted()");
    const k = this.keys;
    let floor = this.base.index;
    let last = this.last;
    let snapshot: SnapshotMeta | undefined;
    if (rd.snapshot && rd.snapshot.meta.index > this.base.index) {
      snapshot = rd.snapshot.meta;
      ops.push({ op: "delRange", start: k.entriesStart, end: k.entriesEnd });
      ops.push({ op: "delRange", start: k.confStart, end: k.confEnd });
      ops.push({ op: "put", key: k.base, value: encodeBase(snapshot) });
      floor = snapshot.index;
      last = snapshot.index;
    }
    let lastEntry: { index: number; term: number } | undefined;
    let appended: readonly Entry[] = [];
    const ents = rd.entries;
    if (ents.length > 0) {
      const first = (ents[0] as Entry).index;
      assert(first <= last + 1, () => `append at ${first} leaves a gap after ${last}`);
      // Entries already covered by the log base are skipped (possibly all of them).
      const from = Math.max(first, floor + 1);
      const to = first + ents.length - 1;
      if (from <= to) {
        if (from <= last) {
          // Overwriting a suffix: forget its configuration entries first (re-added below).
          ops.push({ op: "delRange", start: k.conf(from), end: k.conf(last + 1) });
        }
        for (let i = from - first; i < ents.length; i++) {
          const e = ents[i] as Entry;
          assert(e.index === first + i, "Ready entries are not contiguous");
          ops.push({ op: "put", key: k.entry(e.index), value: encodeEntry(e) });
          if (e.type === "conf") {
            ops.push({ op: "put", key: k.conf(e.index), value: new Uint8Array() });
          }
        }
        // A shorter replacement: delete the stored entries it does not overwrite.
        if (to < last) {
          ops.push({ op: "delRange", start: k.entry(to + 1), end: k.entry(last + 1) });
        }
        lastEntry = { index: to, term: (ents[ents.length - 1] as Entry).term };
        appended = from === first ? ents : ents.slice(from - first);
      }
    }
    if (rd.hardState) {
      ops.push({ op: "put", key: k.hardState, value: encodeHardState(rd.hardState) });
    }
    this.staged = { rd, snapshot, last: lastEntry, appended };
  }

  /** Moves the cached view forward once the batch holding `stage(rd)` is written. */
  persisted(rd: Ready): void {
    const s = this.staged;
    assert(s && s.rd === rd, "persisted() of a Ready that was not staged");
    this.staged = undefined;
    if (s.snapshot) {
      this.base = s.snapshot;
      this.last = s.snapshot.index;
      this.lastTerm = s.snapshot.term;
      this.tail = [];
      this.tailBytes = 0;
    }
    if (s.last) {
      this.cacheAppended(s.appended);
      this.last = s.last.index;
      this.lastTerm = s.last.term;
    }
    if (rd.hardState) this.hs = rd.hardState;
  }

  /** Entry `index` if the tail cache holds it. */
  private cached(index: number): Entry | undefined {
    const i = index - (this.last - this.tail.length + 1);
    return i >= 0 && i < this.tail.length ? this.tail[i] : undefined;
  }

  /** Puts entries just persisted (replacing any suffix they overwrote) into the tail cache. */
  private cacheAppended(ents: readonly Entry[]): void {
    const first = (ents[0] as Entry).index;
    // Cached entries below `first` stay (they are contiguous with the new ones); the rest were
    // overwritten.
    const keep = first - (this.last - this.tail.length + 1);
    if (keep <= 0) {
      this.tail = [];
      this.tailBytes = 0;
    } else if (keep < this.tail.length) {
      for (const e of this.tail.splice(keep)) this.tailBytes -= entryBytes(e);
    }
    for (const e of ents) {
      this.tail.push(e);
      this.tailBytes += entryBytes(e);
    }
    let drop = 0;
    while (
      drop < this.tail.length &&
      (this.tail.length - drop > this.tailLimits.entriesMax ||
        this.tailBytes > this.tailLimits.bytesMax)
    ) {
      this.tailBytes -= entryBytes(this.tail[drop] as Entry);
      drop++;
    }
    if (drop > 0) this.tail.splice(0, drop);
  }

  /**
   * Stages the deletion of entries up to and including `index`, which must not exceed
   * `appliedIndex` (the caller's bound: what its state machine holds, hence what a snapshot
   * can cover) nor the last index. The new log base's configuration is the old one with the
   * compacted configuration entries applied, as raft applies them. Returns false (staging
   * nothing) when already compacted that far. Reads treat the entries as gone at once: the
   * caller must write `ops`.
   */
  compact(index: number, appliedIndex: number, ops: WriteOp[]): boolean {
    assert(
      index <= appliedIndex,
      () => `compact(${index}) beyond the applied index ${appliedIndex}`,
    );
    assert(index <= this.last, () => `compact(${index}) beyond the last index ${this.last}`);
    const floor = Math.max(this.base.index, this.staged?.snapshot?.index ?? 0);
    if (index <= floor) return false;
    const term = this.term(index);
    assert(term !== undefined, "term of a compactable index must be known");
    const k = this.keys;
    let confState = this.base.confState;
    for (const [key] of this.engine.scan(k.conf(this.base.index + 1), k.conf(index + 1))) {
      const e = this.readEntry(k.indexOf(key));
      if (e.type !== "conf") {
        throw new CorruptionError(
          "CORRUPT_ENTRY",
          this.groupId,
          e.index,
          "conf marker on a normal entry",
        );
      }
      // Exactly raft's rule: an invalid change is a no-op on every replica.
      const r = applyConfChange(confState, decodeConfChange(e.data));
      if (r.ok) confState = r.confState;
    }
    const base: SnapshotMeta = { index, term, confState };
    ops.push({ op: "delRange", start: k.entry(this.base.index + 1), end: k.entry(index + 1) });
    ops.push({ op: "delRange", start: k.conf(this.base.index + 1), end: k.conf(index + 1) });
    ops.push({ op: "put", key: k.base, value: encodeBase(base) });
    this.base = base;
    const drop = Math.min(this.tail.length, index - (this.last - this.tail.length + 1) + 1);
    if (drop > 0) {
      for (const e of this.tail.splice(0, drop)) this.tailBytes -= entryBytes(e);
    }
    return true;
  }

  private readEntry(index: number): Entry {
    const v = this.engine.get(this.keys.entry(index));
    if (!v) this.missing(index);
    return decodeEntry(this.groupId, index, v);
  }

  private missing(index: number): never {
    throw new CorruptionError("CORRUPT_ENTRY", this.groupId, index, "missing from the log");
  }
}
