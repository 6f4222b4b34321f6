/**
 * `ResyncQueue`: the chunk replicas known to be missing, as (hash, target node) entries, waiting
 * to be copied to their target. A pure data structure (the clock is passed in); `BlobService`
 * runs the entries.
 *
 * Invariants: at most `entriesMax` entries (an entry that does not fit is dropped and counted:
 * anti-entropy finds the replica again later); one entry per (hash, target); an entry being run
 * is not handed out again until it is `done` or `retry`ed; a retried entry waits an exponential
 * backoff (with jitter) and is given up after `attemptsMax` attempts (again left to
 * anti-entropy).
 */
import { assert } from "../base/index.js";
import type { NodeId } from "../raft/index.js";

export interface ResyncEntry {
  readonly key: string;
  readonly hex: string;
  readonly target: NodeId;
  attempts: number;
  dueMs: number;
  running: boolean;
}

export interface ResyncQueueOptions {
  readonly entriesMax?: number;
  readonly backoffMsMin?: number;
  readonly backoffMsMax?: number;
  readonly attemptsMax?: number;
  /** A number in [0, 1) for the backoff's jitter (default Math.random). */
  readonly random?: () => number;
}

export const RESYNC_DEFAULTS = {
  entriesMax: 100_000,
  backoffMsMin: 1_000,
  backoffMsMax: 300_000,
  attemptsMax: 30,
} as const;

export interface ResyncQueueStats {
  readonly length: number;
  readonly added: number;
  readonly dropped: number;
  readonly gaveUp: number;
}

export class ResyncQueue {
  private readonly entries = new Map<string, ResyncEntry>();
  private readonly entriesMax: number;
  private readonly backoffMsMin: number;
  private readonly backoffMsMax: number;
  private readonly attemptsMax: number;
  private readonly random: () => number;
  private readonly counters = { added: 0, dropped: 0, gaveUp: 0 };

  constructor(options: ResyncQueueOptions = {}) {
    this.entriesMax = options.entriesMax ?? RESYNC_DEFAULTS.entriesMax;
    this.backoffMsMin = options.backoffMsMin ?? RESYNC_DEFAULTS.backoffMsMin;
    this.backoffMsMax = options.backoffMsMax ?? RESYNC_DEFAULTS.backoffMsMax;
    this.attemptsMax = options.attemptsMax ?? RESYNC_DEFAULTS.attemptsMax;
    this.random = options.random ?? Math.random;
    assert(this.entriesMax >= 1, "resync queue needs room for an entry");
    assert(this.backoffMsMin > 0 && this.backoffMsMin <= this.backoffMsMax, "resync backoff");
    assert(this.attemptsMax >= 1, "resync attemptsMax >= 1");
  }

  get length(): number {
    return this.entries.size;
  }

  /** Adds (hash, target), due at `nowMs`. False when the queue is full (the entry is dropped). */
  add(hex: string, target: NodeId, nowMs: number): boolean {
    const key = `${hex}/${target}`;
    if (this.entries.has(key)) return true;
    if (this.entries.size >= this.entriesMax) {
      this.counters.dropped++;
      return false;
    }
    this.entries.set(key, { key, hex, target, attempts: 0, dueMs: nowMs, running: false });
    this.counters.added++;
    return true;
  }

  has(hex: string, target: NodeId): boolean {
    return this.entries.has(`${hex}/${target}`);
  }

  get full(): boolean {
    return this.entries.size >= this.entriesMax;
  }

  /** Up to `max` entries due at `nowMs`, marked running. */
  takeDue(nowMs: number, max: number): ResyncEntry[] {
    const out: ResyncEntry[] = [];
    for (const e of this.entries.values()) {
      if (out.length >= max) break;
      if (e.running || e.dueMs > nowMs) continue;
      e.running = true;
      out.push(e);
    }
    return out;
  }

  /** The entry succeeded (or is moot): it leaves the queue. */
  done(e: ResyncEntry): void {
    assert(e.running, "resync done() on an entry that is not running");
    this.entries.delete(e.key);
  }

  /** The entry failed: due again after a backoff, or given up. */
  retry(e: ResyncEntry, nowMs: number): void {
    assert(e.running, "resync retry() on an entry that is not running");
    e.running = false;
    e.attempts++;
    if (e.attempts >= this.attemptsMax) {
      this.entries.delete(e.key);
      this.counters.gaveUp++;
      return;
    }
    const base = Math.min(this.backoffMsMax, this.backoffMsMin * 2 ** (e.attempts - 1));
    e.dueMs = nowMs + base * (0.5 + this.random() / 2);
    // Re-inserted at the end, so that takeDue serves long-waiting entries first.
    this.entries.delete(e.key);
    this.entries.set(e.key, e);
  }

  stats(): ResyncQueueStats {
    return { length: this.entries.size, ...this.counters };
  }
}
