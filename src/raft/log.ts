/**
 * The log as raft sees it: the durable part (RaftStorage) followed by an unstable tail that is
 * not yet persisted (returned by ready(), confirmed stable by advance()).
 *
 * Invariants: applied <= committed <= lastIndex(); unstable.offset === stable last index + 1
 * whenever unstable entries exist (after a conflicting append, the tail replaces a suffix that
 * storage still holds, and storage truncates it when the ready is persisted).
 */
import { assert } from "../base/index.js";
import { limitBytes, type RaftStorage } from "./storage.js";
import type { Entry, Snapshot } from "./types.js";

export class RaftLog {
  /** Unstable snapshot (received from the leader, not yet persisted). */
  unstableSnapshot: Snapshot | undefined;
  /** Unstable entries; `unstableEntries[i].index === unstableOffset + i`. */
  unstableEntries: Entry[] = [];
  unstableOffset: number;
  committed: number;
  /** Highest index handed to the application (via ready) and acknowledged (via advance). */
  applied: number;

  constructor(
    readonly storage: RaftStorage,
    applied: number,
  ) {
    this.unstableOffset = storage.lastIndex() + 1;
    this.committed = storage.hardState().commit;
    const first = storage.firstIndex();
    // The state machine holds at least the snapshot; it cannot have applied past the commit.
    this.applied = Math.max(applied, first - 1);
    assert(this.applied <= Math.max(this.committed, first - 1), "applied beyond committed");
    if (this.committed < first - 1) this.committed = first - 1;
  }

  firstIndex(): number {
    if (this.unstableSnapshot) return this.unstableSnapshot.meta.index + 1;
    return this.storage.firstIndex();
  }

  lastIndex(): number {
    if (this.unstableEntries.length > 0)
      return this.unstableOffset + this.unstableEntries.length - 1;
    if (this.unstableSnapshot) return this.unstableSnapshot.meta.index;
    return this.storage.lastIndex();
  }

  lastTerm(): number {
    const t = this.term(this.lastIndex());
    assert(t !== undefined, "last term unavailable");
    return t;
  }

  /** Term of `index`, or undefined if compacted or beyond the end. */
  term(index: number): number | undefined {
    if (index > this.lastIndex()) return undefined;
    if (index >= this.unstableOffset && this.unstableEntries.length > 0) {
      return (this.unstableEntries[index - this.unstableOffset] as Entry).term;
    }
    if (this.unstableSnapshot) {
      const m = this.unstableSnapshot.meta;
      if (index === m.index) return m.term;
      if (index < m.index) return undefined;
    }
    return this.storage.term(index);
  }

  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term;
  }

  /** Raft §5.4.1: a candidate's log is at least as up to date as ours. */
  isUpToDate(lastIndex: number, term: number): boolean {
    const ourTerm = this.lastTerm();
    return term > ourTerm || (term === ourTerm && lastIndex >= this.lastIndex());
  }

  /**
   * Follower side of AppendEntries. Returns the last index of the new entries, or undefined if
   * (prevIndex, prevTerm) does not match our log.
   */
  maybeAppend(
    prevIndex: number,
    prevTerm: number,
    committed: number,
    ents: readonly Entry[],
  ): number | undefined {
    if (!this.matchTerm(prevIndex, prevTerm)) return undefined;
    const lastNew = prevIndex + ents.length;
    const conflict = this.findConflict(ents);
    if (conflict !== 0) {
      assert(
        conflict > this.committed,
        () => `conflict at ${conflict} within committed ${this.committed}`,
      );
      const first = (ents[0] as Entry).index;
      this.append(ents.slice(conflict - first));
    }
    this.commitTo(Math.min(committed, lastNew));
    return lastNew;
  }

  /** First index where `ents` disagrees with our log (or extends it); 0 if fully contained. */
  findConflict(ents: readonly Entry[]): number {
    for (const e of ents) {
      if (!this.matchTerm(e.index, e.term)) return e.index;
    }
    return 0;
  }

  /**
   * Fast backtracking: the largest index <= `index` whose term is <= `term`. The leader can then
   * skip every entry of a conflicting term in one round trip.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    let i = Math.min(index, this.lastIndex());
    for (;;) {
      const t = this.term(i);
      if (t === undefined) return { index: i, term: 0 };
      if (t <= term) return { index: i, term: t };
      i--;
    }
  }

  /** Appends (possibly replacing an uncommitted suffix) to the unstable tail. */
  append(ents: readonly Entry[]): number {
    if (ents.length === 0) return this.lastIndex();
    const after = (ents[0] as Entry).index - 1;
    assert(
      after >= this.committed,
      () => `append after ${after} would overwrite committed ${this.committed}`,
    );
    if (after === this.unstableOffset + this.unstableEntries.length - 1) {
      this.unstableEntries.push(...ents);
    } else if (after < this.unstableOffset) {
      // Replacing part of the stable log: the unstable tail starts over from here.
      this.unstableOffset = after + 1;
      this.unstableEntries = [...ents];
    } else {
      this.unstableEntries = this.unstableEntries
        .slice(0, after + 1 - this.unstableOffset)
        .concat(ents);
    }
    return this.lastIndex();
  }

  /** Entries [lo, hi) bounded by maxBytes (at least one). Caller ensures lo >= firstIndex. */
  slice(lo: number, hi: number, maxBytes: number): Entry[] {
    assert(
      lo >= this.firstIndex() && hi <= this.lastIndex() + 1,
      () => `slice(${lo},${hi}) out of range`,
    );
    if (lo >= hi) return [];
    let out: Entry[] = [];
    if (lo < this.unstableOffset) {
      const stableHi = Math.min(hi, this.unstableOffset);
      out = this.storage.entries(lo, stableHi, maxBytes);
      if (out.length < stableHi - lo) return out; // byte limit reached
    }
    if (hi > this.unstableOffset) {
      const from = Math.max(lo, this.unstableOffset) - this.unstableOffset;
      const to = hi - this.unstableOffset;
      out = out.concat(this.unstableEntries.slice(from, to));
    }
    return limitBytes(out, maxBytes);
  }

  /** Committed entries not yet applied, up to maxBytes. */
  nextCommittedEntries(maxBytes: number): Entry[] {
    const lo = Math.max(this.applied + 1, this.firstIndex());
    const hi = this.committed + 1;
    if (lo >= hi) return [];
    return this.slice(lo, hi, maxBytes);
  }

  hasNextCommittedEntries(): boolean {
    return this.committed > Math.max(this.applied, this.firstIndex() - 1);
  }

  commitTo(index: number): void {
    if (index > this.committed) {
      assert(
        index <= this.lastIndex(),
        () => `commit ${index} beyond last index ${this.lastIndex()}`,
      );
      this.committed = index;
    }
  }

  appliedTo(index: number): void {
    if (index === 0) return;
    assert(
      index <= this.committed && index >= this.applied,
      () => `applied ${index} outside [${this.applied}, ${this.committed}]`,
    );
    this.applied = index;
  }

  /** Entries up to (index, term) are now durable. */
  stableTo(index: number, term: number): void {
    if (this.unstableEntries.length === 0) return;
    if (index < this.unstableOffset) return;
    const t = this.term(index);
    // A conflicting append may have replaced the entry since the ready was handed out.
    if (t !== term) return;
    const n = index + 1 - this.unstableOffset;
    this.unstableEntries = this.unstableEntries.slice(n);
    this.unstableOffset = index + 1;
  }

  stableSnapTo(index: number): void {
    if (this.unstableSnapshot && this.unstableSnapshot.meta.index === index)
      this.unstableSnapshot = undefined;
  }

  /** Replaces the log with a snapshot from the leader. */
  restore(snap: Snapshot): void {
    this.committed = snap.meta.index;
    this.unstableSnapshot = snap;
    this.unstableOffset = snap.meta.index + 1;
    this.unstableEntries = [];
  }

  /** The snapshot to send to a lagging follower: an unstable one, else the stored one. */
  snapshot(): Snapshot | undefined {
    return this.unstableSnapshot ?? this.storage.snapshot();
  }
}
