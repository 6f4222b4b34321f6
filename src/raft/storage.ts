/**
 * The read side of a group's durable log, as the protocol sees it, plus an in-memory
 * implementation. Hosts write to storage (after `ready()`) and raft only reads from it.
 * Reads are synchronous: durable engines (LMDB) serve them from memory-mapped pages.
 */
import { assert } from "../base/index.js";
import { encodeConfChange } from "./confchange.js";
import type { ConfState, Entry, HardState, NodeId, Snapshot, SnapshotMeta } from "./types.js";

export const EMPTY_CONF: ConfState = Object.freeze({
  voters: [],
  learners: [],
  votersOutgoing: [],
  learnersNext: [],
  autoLeave: false,
});

export const EMPTY_HARD_STATE: HardState = Object.freeze({ term: 0, vote: "", commit: 0 });

export interface RaftStorage {
  /** The persisted hard state (term, vote, commit). */
  hardState(): HardState;
  /** Index of the first entry still in the log (the latest snapshot's index + 1). */
  firstIndex(): number;
  /** Index of the last entry (the snapshot's index when the log is empty). */
  lastIndex(): number;
  /** Term of entry `index`, or undefined when it was compacted away or is beyond the end.
   *  `term(firstIndex() - 1)` is the snapshot's term and is always available. */
  term(index: number): number | undefined;
  /** Entries [lo, hi), at least one, stopping before the one that would exceed `maxBytes`. */
  entries(lo: number, hi: number, maxBytes: number): Entry[];
  /**
   * The most recent snapshot, to send to a follower that needs compacted entries (index 0,
   * empty config, for a fresh log). A durable host may create it on demand at its applied index,
   * and may answer undefined when it cannot make a consistent one right now ("temporarily
   * unavailable", e.g. while a write is in flight): raft then tries again later.
   */
  snapshot(): Snapshot | undefined;
  /**
   * The metadata (index, term, configuration) of the log's base: the latest snapshot or
   * compaction point. `index >= firstIndex() - 1`, and every entry after it is still in the log.
   * Cheap: raft reads it at boot to rebuild the configuration.
   */
  snapshotMeta(): SnapshotMeta;
}

/** Rough wire/storage footprint of an entry, used for every byte limit. */
/** Bytes an entry costs beyond its data (term, index, type), in every byte limit. */
export const ENTRY_OVERHEAD_BYTES = 24;

export function entryBytes(e: Entry): number {
  return e.data.byteLength + ENTRY_OVERHEAD_BYTES;
}

/** Takes a prefix of `ents` whose size stays within `maxBytes` (always at least one entry). */
export function limitBytes(ents: Entry[], maxBytes: number): Entry[] {
  let size = 0;
  for (let i = 0; i < ents.length; i++) {
    size += entryBytes(ents[i] as Entry);
    if (size > maxBytes && i > 0) return ents.slice(0, i);
  }
  return ents;
}

/**
 * The in-memory engine used by the simulator and tests. `ents[0]` is a dummy entry standing for
 * the snapshot (its index and term), exactly as in etcd's MemoryStorage.
 */
export class MemoryStorage implements RaftStorage {
  private hs: HardState = EMPTY_HARD_STATE;
  private snap: Snapshot = {
    meta: { index: 0, term: 0, confState: EMPTY_CONF },
    data: new Uint8Array(),
  };
  private ents: Entry[] = [{ term: 0, index: 0, type: "normal", data: new Uint8Array() }];

  hardState(): HardState {
    return this.hs;
  }
  firstIndex(): number {
    return (this.ents[0] as Entry).index + 1;
  }
  lastIndex(): number {
    return (this.ents[this.ents.length - 1] as Entry).index;
  }
  term(index: number): number | undefined {
    const offset = (this.ents[0] as Entry).index;
    if (index < offset || index > this.lastIndex()) return undefined;
    return (this.ents[index - offset] as Entry).term;
  }
  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    const offset = (this.ents[0] as Entry).index;
    assert(
      lo > offset && hi <= this.lastIndex() + 1 && lo <= hi,
      () => `entries(${lo},${hi}) out of [${offset + 1},${this.lastIndex() + 1}]`,
    );
    return limitBytes(this.ents.slice(lo - offset, hi - offset), maxBytes);
  }
  snapshot(): Snapshot {
    return this.snap;
  }
  snapshotMeta(): SnapshotMeta {
    return this.snap.meta;
  }

  // --- the write side, used by hosts ---

  setHardState(hs: HardState): void {
    this.hs = hs;
  }

  /** Appends entries, replacing any stored suffix from `ents[0].index` on. */
  append(ents: readonly Entry[]): void {
    if (ents.length === 0) return;
    const first = (ents[0] as Entry).index;
    const offset = (this.ents[0] as Entry).index;
    assert(first <= this.lastIndex() + 1, "append leaves a gap");
    if (first <= offset) {
      // Entries already covered by the snapshot are skipped.
      const skip = offset + 1 - first;
      if (skip >= ents.length) return;
      ents = ents.slice(skip);
    }
    const at = (ents[0] as Entry).index - offset;
    this.ents.length = at;
    for (const e of ents) this.ents.push(e);
  }

  /** Replaces the whole log with a snapshot received from the leader. */
  applySnapshot(snap: Snapshot): void {
    if (snap.meta.index <= this.snap.meta.index) return;
    this.snap = snap;
    this.ents = [
      { term: snap.meta.term, index: snap.meta.index, type: "normal", data: new Uint8Array() },
    ];
  }

  /** Records a snapshot taken by the local state machine at `index` (<= applied). */
  createSnapshot(index: number, confState: ConfState, data: Uint8Array): Snapshot {
    assert(
      index <= this.lastIndex() && index >= this.snap.meta.index,
      "createSnapshot out of range",
    );
    const term = this.term(index);
    assert(term !== undefined, "createSnapshot of a compacted index");
    this.snap = { meta: { index, term, confState }, data };
    return this.snap;
  }

  /** Drops entries up to and including `index` (which must be covered by a snapshot). */
  compact(index: number): void {
    const offset = (this.ents[0] as Entry).index;
    if (index <= offset) return;
    assert(
      index <= this.snap.meta.index,
      "compaction beyond the latest snapshot would lose entries",
    );
    const e = this.ents[index - offset] as Entry;
    this.ents = [
      { term: e.term, index: e.index, type: "normal", data: new Uint8Array() },
      ...this.ents.slice(index - offset + 1),
    ];
  }

  /** A copy of what is stored, used to simulate a restart from disk. */
  clone(): MemoryStorage {
    const c = new MemoryStorage();
    c.hs = this.hs;
    c.snap = this.snap;
    c.ents = this.ents.slice();
    return c;
  }
}

/**
 * Writes the first entry of a brand-new group on each of its initial members: a configuration
 * entry at (term 1, index 1) that adds `voters`, already committed. Every initial member must
 * be bootstrapped with the same list; nodes added later start empty and learn from the leader.
 */
export function bootstrapStorage(storage: MemoryStorage, voters: readonly NodeId[]): void {
  assert(storage.lastIndex() === 0, "bootstrap of a non-empty log");
  assert(voters.length > 0, "bootstrap needs at least one voter");
  storage.append([
    {
      term: 1,
      index: 1,
      type: "conf",
      data: encodeConfChange({ changes: voters.map((node) => ({ type: "addVoter", node })) }),
    },
  ]);
  storage.setHardState({ term: 1, vote: "", commit: 1 });
}
