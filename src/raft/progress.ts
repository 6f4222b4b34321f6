/**
 * The leader's view of each follower: how much of the log it has (match), what to send next,
 * and the flow-control state. Modeled on etcd's tracker package.
 *
 * - probe: we do not know where the follower's log diverges; send one append per heartbeat
 *   interval and wait for the answer.
 * - replicate: the follower is keeping up; stream appends optimistically, bounded by an in-flight
 *   window (messages and bytes).
 * - snapshot: the follower needs entries we compacted; a snapshot is on its way.
 */
import { assert } from "../base/index.js";

export type ProgressState = "probe" | "replicate" | "snapshot";

/** A bounded window of in-flight appends, each identified by its last index and its size. */
export class Inflights {
  private readonly lastIndexes: number[] = [];
  private readonly sizes: number[] = [];
  private bytes = 0;

  constructor(
    readonly countMax: number,
    readonly bytesMax: number,
  ) {
    assert(countMax > 0, "in-flight window needs room for one message");
  }

  add(lastIndex: number, bytes: number): void {
    assert(!this.full(), "in-flight window overflow");
    const prev = this.lastIndexes[this.lastIndexes.length - 1];
    assert(prev === undefined || lastIndex > prev, "in-flight indexes must increase");
    this.lastIndexes.push(lastIndex);
    this.sizes.push(bytes);
    this.bytes += bytes;
  }

  /** Frees every in-flight message whose last index is <= `index`. */
  freeLE(index: number): void {
    let n = 0;
    while (n < this.lastIndexes.length && (this.lastIndexes[n] as number) <= index) {
      this.bytes -= this.sizes[n] as number;
      n++;
    }
    if (n > 0) {
      this.lastIndexes.splice(0, n);
      this.sizes.splice(0, n);
    }
  }

  /** Frees the oldest in-flight message (it was probably lost; see Raft.handleHeartbeatResp). */
  freeFirst(): void {
    const first = this.lastIndexes[0];
    if (first !== undefined) this.freeLE(first);
  }

  full(): boolean {
    return (
      this.lastIndexes.length >= this.countMax || (this.bytesMax > 0 && this.bytes >= this.bytesMax)
    );
  }

  count(): number {
    return this.lastIndexes.length;
  }

  reset(): void {
    this.lastIndexes.length = 0;
    this.sizes.length = 0;
    this.bytes = 0;
  }
}

export class Progress {
  match = 0;
  next: number;
  state: ProgressState = "probe";
  /** In probe state: an append was sent and we wait for its answer (or the next heartbeat). */
  probeSent = false;
  /** In snapshot state: the index of the snapshot being sent, and when it was sent. */
  pendingSnapshot = 0;
  snapshotSentTick = 0;
  /** Heard from since the last check-quorum round. */
  recentActive = false;
  /** Highest heartbeat round (ReadIndex) and send tick (lease) this peer acknowledged. */
  ackedSeq = 0;
  ackedSentTick = Number.NEGATIVE_INFINITY;
  readonly inflights: Inflights;

  constructor(
    next: number,
    public isLearner: boolean,
    inflightCountMax: number,
    inflightBytesMax: number,
  ) {
    this.next = next;
    this.inflights = new Inflights(inflightCountMax, inflightBytesMax);
  }

  private resetState(state: ProgressState): void {
    this.probeSent = false;
    this.pendingSnapshot = 0;
    this.state = state;
    this.inflights.reset();
  }

  becomeProbe(): void {
    if (this.state === "snapshot") {
      const pending = this.pendingSnapshot;
      this.resetState("probe");
      this.next = Math.max(this.match + 1, pending + 1);
    } else {
      this.resetState("probe");
      this.next = this.match + 1;
    }
  }

  becomeReplicate(): void {
    this.resetState("replicate");
    this.next = this.match + 1;
  }

  becomeSnapshot(snapshotIndex: number, nowTick: number): void {
    this.resetState("snapshot");
    this.pendingSnapshot = snapshotIndex;
    this.snapshotSentTick = nowTick;
  }

  /** Records an acknowledgement of everything up to `n`. Returns whether anything changed. */
  maybeUpdate(n: number): boolean {
    let updated = false;
    if (this.match < n) {
      this.match = n;
      updated = true;
      this.probeSent = false;
    }
    this.next = Math.max(this.next, n + 1);
    return updated;
  }

  /** Optimistically advances `next` after sending entries up to `lastIndex`. */
  sentEntries(lastIndex: number, bytes: number): void {
    if (this.state === "replicate") {
      if (lastIndex >= this.next) {
        this.inflights.add(lastIndex, bytes);
        this.next = lastIndex + 1;
      }
    } else if (this.state === "probe") {
      this.probeSent = true;
    }
  }

  /**
   * A rejection of the append at `rejected`, with the follower's hint of where to retry.
   * Returns false when the rejection is stale (it concerns an append we no longer care about).
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === "replicate") {
      if (rejected <= this.match) return false;
      this.next = this.match + 1;
      return true;
    }
    if (this.next - 1 !== rejected) return false;
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1, 1);
    this.probeSent = false;
    return true;
  }

  /** Whether we must hold back appends to this follower right now. */
  isPaused(): boolean {
    switch (this.state) {
      case "probe":
        return this.probeSent;
      case "replicate":
        return this.inflights.full();
      case "snapshot":
        return true;
    }
  }
}
