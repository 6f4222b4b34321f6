/**
 * The multi-Raft host: drives every Raft group (shard replica) on this node from one loop.
 *
 * One cycle: collect the Ready of every group that has one; stage all their log appends, hard
 * states, snapshot installs and state-machine applies into ONE write batch; write it (one fsync
 * if any group needs durability: group commit); then send every message, batched per
 * destination node; then complete client proposals and reads; then advance every group. While a
 * cycle's write is in flight, new messages, ticks and proposals accumulate for the next cycle,
 * so the batch size adapts to the load by itself.
 *
 * Time: a single interval timer delivers ticks computed from the monotonic clock, so a stalled
 * event loop (GC, SIGSTOP) replays the missed ticks before anything else (this keeps the leader
 * lease sound, see docs/raft.md). Idle groups are quiesced and cost no ticks (see quiescence).
 *
 * Tracing (docs/operations.md, "Tracing"; only while `tracing.on`, and only for entries of a
 * sampled request): a write proposed here inside a traced request gets a `raft.propose` span on
 * the leader (a follower forwards the request's trace context with its MsgProp), from proposal
 * to apply; the leader sends the proposal span's context with the MsgApps carrying the entry,
 * and each follower records a `raft.append` span, from receipt until the entry is durable and
 * acknowledged; each cycle's durable batch holding a traced entry is a `storage.write` span.
 * Trace contexts travel in `GroupMessage.traces`, never inside the entries: the log is the same
 * with tracing on or off.
 */
import {
  type Context,
  context,
  type Link,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  TraceFlags,
  type Tracer,
  type TracerProvider,
  trace,
} from "@opentelemetry/api";
import { assert, Prng, tracing } from "../base/index.js";
import {
  type ConfChange,
  type Entry,
  invalidMessage,
  type Message,
  type NodeId,
  type PropRefusal,
  RawNode,
  type ReadMode,
  type Ready,
  type Snapshot,
} from "../raft/index.js";
import type { StorageEngine, WriteOp } from "../storage/engine.js";
import { GroupStorage } from "../storage/raftstore.js";
import type { EntryTrace, GroupMessage, Transport } from "../transport/transport.js";
import { Envelope } from "./envelope.js";

/**
 * What the host needs from a group's replicated state machine. It applies committed entries by
 * staging writes into the host's batch, so that log, state and applied index commit together.
 */
export interface GroupMachine<R> {
  /** Last applied index/term, including writes staged in the batch in flight. */
  readonly applied: number;
  /** Last applied index/term whose writes are visible in the engine. */
  readonly durableApplied: number;
  readonly durableAppliedTerm: number;
  /** Applies a committed entry; returns the result to hand to the proposer (if any). */
  apply(e: Entry, ops: WriteOp[]): R | undefined;
  stageApplied(ops: WriteOp[]): void;
  /** The batch staged since the last call is durable and visible. */
  batchCommitted(): void;
  /** An image of the state as of `durableApplied`. */
  snapshotData(): Uint8Array;
  restore(data: Uint8Array, index: number, term: number, ops: WriteOp[]): void;
  /**
   * Why `data` is not an image this machine could restore, or undefined. A snapshot from a
   * peer is checked before Raft sees it: once Raft accepts a snapshot, restoring it must work.
   */
  snapshotProblem?(data: Uint8Array): string | undefined;
  /** Stages the deletion of the machine's whole state (its group is leaving this node). */
  destroy(ops: WriteOp[]): void;
  /**
   * Groups that entries applied in the batch just committed created in storage (a shard split
   * creates its right half on every replica): the host opens them. Each id is returned once.
   */
  takeCreatedGroups(): readonly string[];
}

export interface HostConfig<R, M extends GroupMachine<R>> {
  readonly nodeId: NodeId;
  readonly engine: StorageEngine;
  readonly transport: Transport;
  /** Seed for election jitter (the composition root passes a random one). */
  readonly seed: number;
  readonly tickMs?: number;
  readonly electionTimeoutTicks?: number;
  readonly heartbeatIntervalTicks?: number;
  readonly readMode?: ReadMode;
  /** Compact a group's log once this many applied entries follow its first index. */
  readonly compactEveryEntries?: number;
  /** Entries kept behind the applied index at compaction (for slightly lagging followers). */
  readonly compactKeepEntries?: number;
  readonly maxUncommittedBytes?: number;
  /** Ticks a leader waits with nothing to do before it quiesces its group. */
  readonly quiesceAfterTicks?: number;
  /** Called when a cycle fails unrecoverably (storage error, corruption): the node must stop. */
  readonly onFatal?: (err: unknown) => void;
  /** Opens (or creates) the state machine of a group. */
  readonly machine: (groupId: string) => M;
}

export type ProposeOutcome<R> =
  | { readonly ok: true; readonly result: R | undefined }
  | { readonly ok: false; readonly code: "NOT_LEADER"; readonly leaderHint: NodeId }
  | { readonly ok: false; readonly code: "NO_GROUP"; readonly message: string }
  | { readonly ok: false; readonly code: "OVERLOADED"; readonly message: string }
  /** The entry was replaced by another leader's: it certainly did not take effect. */
  | { readonly ok: false; readonly code: "DROPPED"; readonly message: string }
  /** No answer within the deadline: the write may or may not take effect. */
  | { readonly ok: false; readonly code: "TIMEOUT"; readonly message: string };

export type ReadOutcome<M> =
  | { readonly ok: true; readonly machine: M }
  | { readonly ok: false; readonly code: "NOT_LEADER"; readonly leaderHint: NodeId }
  | {
      readonly ok: false;
      readonly code: "NO_GROUP" | "OVERLOADED" | "TIMEOUT";
      readonly message: string;
    };

interface Waiter<T> {
  readonly resolve: (v: T) => void;
  readonly timer: NodeJS.Timeout;
}

/** W3C trace context headers, as `propagation.inject` writes them. */
type TraceCarrier = { traceparent?: string; tracestate?: string };

/** A traced entry's span here: the leader's `raft.propose`, or a follower's `raft.append`. */
interface TracedEntry {
  readonly span: Span;
  readonly term: number;
  /** The span's context as headers, made once (a leader sends it to each follower). */
  carrier: TraceCarrier | undefined;
}

/** A traced proposal not in a log yet (see MultiRaftHost.pendingTraces). */
interface PendingTrace {
  readonly carrier: TraceCarrier;
  /** The node that proposed it (this one, or the follower that forwarded it). */
  readonly from: NodeId;
  /** When it was proposed or received (performance.now()): the proposal span's start. */
  readonly at: number;
}

/** Traced entries kept per group at most (a bound against leaks, far above real use). */
const TRACED_ENTRIES_MAX = 10_000;
/** Links from one storage.write span to the other traced entries of its batch, at most. */
const WRITE_LINKS_MAX = 32;

let tracerCache: { readonly provider: TracerProvider; readonly tracer: Tracer } | undefined;

/** This module's tracer, looked up again only when the global provider changes. */
function tracer(): Tracer {
  const provider = trace.getTracerProvider();
  if (tracerCache?.provider !== provider)
    tracerCache = { provider, tracer: provider.getTracer("kumo.multiraft") };
  return tracerCache.tracer;
}

/** Ends (and forgets) the spans of entries up to `index`, as failed when `why` is set. */
function endSpans(map: Map<number, TracedEntry>, index: number, why: string | undefined): void {
  for (const [i, t] of map) {
    if (i > index) continue;
    map.delete(i);
    if (why !== undefined) t.span.setStatus({ code: SpanStatusCode.ERROR, message: why });
    t.span.end();
  }
}

function sampledSpan(ctx: Context): Span | undefined {
  const span = trace.getSpan(ctx);
  return span && (span.spanContext().traceFlags & TraceFlags.SAMPLED) !== 0 ? span : undefined;
}

/** A backup's hold on a group's new writes (MultiRaftHost.gate). */
interface WriteGate {
  readonly owner: string;
  readonly timer: NodeJS.Timeout;
  /** Local proposals, resumed when the gate opens. */
  readonly waiting: (() => void)[];
  /** Forwarded proposals (MsgProp), stepped when the gate opens. */
  readonly held: { from: NodeId; batch: GroupMessage[] }[];
}

interface Group<R, M> {
  readonly id: string;
  raft: RawNode;
  readonly storage: GroupStorage;
  readonly machine: M;
  /**
   * This host's proposals by envelope sequence number, with the term they were proposed (or
   * forwarded) in: a committed entry carries exactly that term if it is ours.
   */
  readonly proposals: Map<number, { term: number; waiter: Waiter<ProposeOutcome<R>> }>;
  /** Pending proposals older than this term were already failed as dropped. */
  dropCheckedTerm: number;
  readonly reads: Map<string, Waiter<ReadOutcome<M>>>;
  readyReads: { index: number; waiter: Waiter<ReadOutcome<M>> }[];
  idleTicks: number;
  /** Set by removeGroup: the group takes part in no further cycle. */
  removed: boolean;
  /** Tracing only: this leader's proposal spans by log index, ended when applied. */
  traced: Map<number, TracedEntry> | undefined;
  /** Tracing only: this follower's append spans by log index, ended once durable and acked. */
  appends: Map<number, TracedEntry> | undefined;
}

export interface GroupStatus {
  readonly id: string;
  readonly role: string;
  readonly term: number;
  readonly leader: NodeId;
  readonly commit: number;
  readonly applied: number;
  readonly lastIndex: number;
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
  /** In a joint configuration (a membership change is in progress). */
  readonly joint: boolean;
  readonly quiesced: boolean;
  /** On the leader: each replica's highest log index known to match ours (empty elsewhere). */
  readonly match: ReadonlyMap<NodeId, number>;
}

export interface HostStats {
  cycles: number;
  writes: number;
  syncWrites: number;
  readies: number;
  entriesPersisted: number;
  entriesApplied: number;
  messagesSent: number;
  batchesSent: number;
  ticksDelivered: number;
  /** Peer messages dropped because no correct peer sends them (raft's `invalidMessage`, or a
   * snapshot image the machine could not restore). */
  invalidMessages: number;
}

export class MultiRaftHost<R, M extends GroupMachine<R>> {
  readonly nodeId: NodeId;
  private readonly engine: StorageEngine;
  private readonly transport: Transport;
  private readonly prng: Prng;
  private readonly tickMs: number;
  private readonly electionTimeoutTicks: number;
  private readonly heartbeatIntervalTicks: number;
  private readonly readMode: ReadMode;
  private readonly compactEveryEntries: number;
  private readonly compactKeepEntries: number;
  private readonly maxUncommittedBytes: number;
  private readonly quiesceAfterTicks: number;
  private readonly onFatal: (err: unknown) => void;
  private readonly makeMachine: (groupId: string) => M;

  private readonly groups = new Map<string, Group<R, M>>();
  /** The last snapshot made per group (reused while nothing was applied since). */
  private readonly snapshots = new Map<string, Snapshot>();
  private readonly dirty = new Set<Group<R, M>>();
  private pendingOps: WriteOp[] = [];
  private cycleScheduled = false;
  private cycleRunning = false;
  private tickTimer: NodeJS.Timeout | undefined;
  private lastTickAt = 0;
  private stopped = false;
  private readSeq = 0;
  private proposalSeq = 0;
  /** Groups with proposals forwarded since the last flush (sent once per event-loop turn). */
  private readonly forwarding = new Set<Group<R, M>>();
  /** Groups whose new writes are held for a backup's cut (see `gate`). */
  private readonly gates = new Map<string, WriteGate>();
  private readonly bootId: string;
  private readonly envelope: Envelope;
  /**
   * Tracing only: traced proposals not in a log yet, by their (enveloped) data. On a follower,
   * the request's context, sent with the MsgProp that forwards the entry; on a leader, the
   * context a forwarded MsgProp carried, until the entry shows up in a Ready with its index.
   * Weak: an entry that never gets there (a duplicate, a refusal) leaves nothing behind.
   */
  private readonly pendingTraces = new WeakMap<Uint8Array, PendingTrace>();
  readonly stats: HostStats = {
    cycles: 0,
    writes: 0,
    syncWrites: 0,
    readies: 0,
    entriesPersisted: 0,
    entriesApplied: 0,
    messagesSent: 0,
    batchesSent: 0,
    ticksDelivered: 0,
    invalidMessages: 0,
  };

  constructor(cfg: HostConfig<R, M>) {
    this.makeMachine = cfg.machine;
    this.bootId = (cfg.seed >>> 0).toString(36);
    this.envelope = new Envelope(`${cfg.nodeId}.${this.bootId}`);
    this.nodeId = cfg.nodeId;
    this.engine = cfg.engine;
    this.transport = cfg.transport;
    this.prng = new Prng(cfg.seed);
    this.tickMs = cfg.tickMs ?? 50;
    this.electionTimeoutTicks = cfg.electionTimeoutTicks ?? 10;
    this.heartbeatIntervalTicks = cfg.heartbeatIntervalTicks ?? 1;
    this.readMode = cfg.readMode ?? "quorum";
    this.compactEveryEntries = cfg.compactEveryEntries ?? 10_000;
    this.compactKeepEntries = cfg.compactKeepEntries ?? 1_000;
    this.maxUncommittedBytes = cfg.maxUncommittedBytes ?? 64 << 20;
    this.quiesceAfterTicks = cfg.quiesceAfterTicks ?? 2 * this.electionTimeoutTicks;
    this.onFatal = cfg.onFatal ?? ((err) => console.error("multiraft: fatal", err));
  }

  /**
   * Deletes this node's replica of a group: its log, hard state and state machine. Pending
   * proposals and reads fail. The deletion is written in the next cycle, after anything a cycle
   * in flight writes for the group, so nothing of it survives. (Removing a replica from the
   * group's configuration is the caller's business: this only drops the local copy.)
   */
  removeGroup(id: string): void {
    const g = this.groups.get(id);
    if (!g) return;
    g.removed = true;
    this.failAll(g, `the replica of ${id} was removed from this node`);
    this.groups.delete(id);
    this.dirty.delete(g);
    this.snapshots.delete(id);
    GroupStorage.destroy(id, this.pendingOps);
    g.machine.destroy(this.pendingOps);
    this.schedule();
  }

  /** Loads every group stored on this node and starts ticking. */
  start(): void {
    for (const id of GroupStorage.listGroups(this.engine)) this.openGroup(id);
    this.lastTickAt = performance.now();
    this.tickTimer = setInterval(() => this.onTimer(), this.tickMs);
    for (const g of this.groups.values()) this.dirty.add(g);
    this.schedule();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.tickTimer) clearInterval(this.tickTimer);
    // Let a cycle in flight finish its write so nothing acknowledged is half-done.
    while (this.cycleRunning) await new Promise((r) => setTimeout(r, 1));
    for (const g of this.groups.values()) this.failAll(g, "node stopping");
  }

  hasGroup(id: string): boolean {
    return this.groups.has(id);
  }

  /**
   * Writes proposed through this replica and not answered yet. A caller about to drop the
   * replica waits for them: removeGroup could only answer them "outcome unknown".
   */
  pendingProposals(id: string): number {
    return this.groups.get(id)?.proposals.size ?? 0;
  }

  groupIds(): string[] {
    return [...this.groups.keys()];
  }

  /**
   * Creates a group replica. With `voters`, this node is one of the group's initial members and
   * bootstraps its log; without, it starts empty and learns everything from the leader.
   */
  async createGroup(id: string, voters?: readonly NodeId[]): Promise<void> {
    if (this.groups.has(id)) return;
    if (voters) {
      const ops: WriteOp[] = [];
      GroupStorage.bootstrap(id, voters, ops);
      await this.engine.write(ops, { sync: true });
    }
    const g = this.openGroup(id);
    this.dirty.add(g);
    this.schedule();
  }

  private openGroup(id: string): Group<R, M> {
    assert(!this.groups.has(id), `group ${id} opened twice`);
    // The snapshot provider needs the group object, which needs the storage: close over a slot.
    const slot: { g?: Group<R, M> } = {};
    const storage = GroupStorage.load(this.engine, id, () =>
      this.makeSnapshot(slot.g as Group<R, M>),
    );
    const machine = this.makeMachine(id);
    const raft = this.newRaft(storage, machine.applied);
    const g: Group<R, M> = {
      id,
      raft,
      storage,
      machine,
      proposals: new Map(),
      dropCheckedTerm: 0,
      reads: new Map(),
      readyReads: [],
      idleTicks: 0,
      removed: false,
      traced: undefined,
      appends: undefined,
    };
    slot.g = g;
    this.groups.set(id, g);
    return g;
  }

  private newRaft(storage: GroupStorage, applied: number): RawNode {
    return new RawNode({
      id: this.nodeId,
      storage,
      applied,
      random: this.prng.fork(),
      electionTimeoutTicks: this.electionTimeoutTicks,
      heartbeatIntervalTicks: this.heartbeatIntervalTicks,
      readMode: this.readMode,
      maxUncommittedBytes: this.maxUncommittedBytes,
      preVote: true,
      checkQuorum: true,
    });
  }

  /**
   * A snapshot of the group's state machine, for a follower that needs compacted entries. Made
   * only between cycles: during a cycle the engine may already show writes staged for entries
   * that raft has not yet marked applied (and configuration changes it has not yet taken), so
   * data, index and configuration would disagree. Then raft is told "temporarily unavailable"
   * and retries when the cycle ends (retryRefusedSnapshots) or on the next heartbeat answer. The
   * image is cached while it is still current.
   */
  private makeSnapshot(g: Group<R, M>): Snapshot | undefined {
    if (this.cycleRunning || g.machine.applied !== g.machine.durableApplied) {
      this.snapshotsRefused.add(g);
      return undefined;
    }
    const st = g.raft.status();
    if (st.applied !== g.machine.durableApplied) {
      this.snapshotsRefused.add(g);
      return undefined;
    }
    const cached = this.snapshots.get(g.id);
    if (cached && cached.meta.index === st.applied) return cached;
    const snap: Snapshot = {
      meta: { index: st.applied, term: g.machine.durableAppliedTerm, confState: st.conf },
      data: g.machine.snapshotData(),
    };
    this.snapshots.set(g.id, snap);
    return snap;
  }

  // ------------------------------------------------------------------ inputs

  /** Groups whose snapshot makeSnapshot refused (retried when the cycle ends). */
  private readonly snapshotsRefused = new Set<Group<R, M>>();
  /** Groups stepped while a cycle was in flight (their eager messages go out at once). */
  private readonly eagerGroups = new Set<Group<R, M>>();

  /** Raft messages from a peer node (possibly for many groups). */
  receive(from: NodeId, batch: readonly GroupMessage[]): void {
    for (const { group, msg, traces } of batch) {
      const g = this.groups.get(group);
      if (!g || msg.to !== this.nodeId) continue; // not (or no longer) a replica here
      const gate = msg.type === "prop" ? this.gates.get(group) : undefined;
      if (gate) {
        // A follower's forwarded write waits for the gate like a local one: held here, stepped
        // when the gate opens (to raft, the same as a message delayed by the network).
        gate.held.push({ from, batch: [{ group, msg, ...(traces ? { traces } : {}) }] });
        continue;
      }
      if (
        invalidMessage(msg) !== undefined ||
        (msg.type === "snap" && g.machine.snapshotProblem?.(msg.snapshot.data) !== undefined)
      ) {
        this.stats.invalidMessages++;
        continue;
      }
      if (traces !== undefined && tracing.on) this.traceIncoming(from, g, msg, traces);
      try {
        g.raft.step(msg);
      } catch (err) {
        this.fatal(err);
        return;
      }
      this.dirty.add(g);
      // While a cycle waits for its fsync, what the message caused and that depends on nothing
      // durable (a leader's commit notification, say) goes out now rather than after it.
      if (this.cycleRunning) {
        if (this.eagerGroups.size === 0) setImmediate(() => this.flushEager());
        this.eagerGroups.add(g);
      }
    }
    this.schedule();
  }

  private flushEager(): void {
    const out: [Group<R, M>, Message[]][] = [];
    for (const g of this.eagerGroups) {
      if (g.removed) continue;
      const msgs = g.raft.takeEagerMessages();
      if (msgs.length > 0) out.push([g, msgs]);
    }
    this.eagerGroups.clear();
    this.sendBatched(out);
  }

  /**
   * Proposes `data` to a group through this replica. On the leader it is appended here; on a
   * follower it is forwarded to the leader inside Raft (MsgProp) and answered when this replica
   * applies it, so a write through any replica costs no extra request between nodes.
   * The outcome is certain except for TIMEOUT: DROPPED and NOT_LEADER mean it never took effect.
   */
  propose(groupId: string, data: Uint8Array, timeoutMs: number): Promise<ProposeOutcome<R>> {
    const gate = this.gates.get(groupId);
    if (gate) {
      const since = performance.now();
      return new Promise((resolve) => {
        gate.waiting.push(() => {
          const left = timeoutMs - (performance.now() - since);
          // Certainly not appended: the caller may retry (KvService does, within its deadline).
          if (left <= 0)
            resolve({ ok: false, code: "DROPPED", message: "writes were paused for a backup" });
          else resolve(this.propose(groupId, data, left));
        });
      });
    }
    const g = this.groups.get(groupId);
    if (!g)
      return Promise.resolve({
        ok: false,
        code: "NO_GROUP",
        message: `no replica of ${groupId} here`,
      });
    const seq = ++this.proposalSeq;
    const wrapped = this.envelope.wrap(seq, data);
    const r = g.raft.proposeOrForward(wrapped);
    if (r.ok && tracing.on) this.traceProposal(g, wrapped, r);
    if (!r.ok) {
      switch (r.code) {
        case "NOT_LEADER":
        case "TRANSFERRING":
          return Promise.resolve({ ok: false, code: "NOT_LEADER", leaderHint: r.leaderHint });
        case "OVERLOADED":
          return Promise.resolve({ ok: false, code: "OVERLOADED", message: r.message });
        default:
          return Promise.resolve({ ok: false, code: "OVERLOADED", message: r.code });
      }
    }
    if ("forwardedTo" in r) {
      // Out to the leader within this turn of the event loop, batched with every other
      // forward of the turn, instead of waiting for this node's next cycle (and its fsync).
      if (this.forwarding.size === 0) setImmediate(() => this.flushForwards());
      this.forwarding.add(g);
    } else {
      this.dirty.add(g);
      this.schedule();
    }
    return new Promise<ProposeOutcome<R>>((resolve) => {
      const timer = setTimeout(() => {
        g.proposals.delete(seq);
        resolve({
          ok: false,
          code: "TIMEOUT",
          message: `not applied within ${timeoutMs} ms; it may still take effect`,
        });
      }, timeoutMs);
      g.proposals.set(seq, { term: r.term, waiter: { resolve, timer } });
    });
  }

  proposeConfChange(groupId: string, cc: ConfChange): ProposeOutcome<R> {
    const g = this.groups.get(groupId);
    if (!g) return { ok: false, code: "NO_GROUP", message: `no replica of ${groupId} here` };
    const r = g.raft.proposeConfChange(cc);
    this.dirty.add(g);
    this.schedule();
    if (r.ok) return { ok: true, result: undefined };
    if (r.code === "NOT_LEADER" || r.code === "TRANSFERRING")
      return { ok: false, code: "NOT_LEADER", leaderHint: r.leaderHint };
    return { ok: false, code: "OVERLOADED", message: r.code };
  }

  /**
   * A linearizable read of a group's state: resolves once this replica has applied everything
   * committed before the call (confirmed by the leader), so the caller may read `machine`.
   * Works on followers too (the leader confirms the read index).
   */
  linearizableRead(groupId: string, timeoutMs: number): Promise<ReadOutcome<M>> {
    const g = this.groups.get(groupId);
    if (!g)
      return Promise.resolve({
        ok: false,
        code: "NO_GROUP",
        message: `no replica of ${groupId} here`,
      });
    // Unique across restarts too: an answer to a read from before a restart must never match.
    const ctx = `${this.nodeId}.${this.bootId}.${++this.readSeq}`;
    const r = g.raft.readIndex(ctx);
    if (!r.ok) {
      if (r.code === "NOT_LEADER")
        return Promise.resolve({ ok: false, code: "NOT_LEADER", leaderHint: r.leaderHint });
      return Promise.resolve({ ok: false, code: "OVERLOADED", message: r.message });
    }
    this.dirty.add(g);
    this.schedule();
    return new Promise<ReadOutcome<M>>((resolve) => {
      const timer = setTimeout(() => {
        g.reads.delete(ctx);
        g.readyReads = g.readyReads.filter((x) => x.waiter.timer !== timer);
        resolve({
          ok: false,
          code: "TIMEOUT",
          message: `read not confirmed within ${timeoutMs} ms`,
        });
      }, timeoutMs);
      g.reads.set(ctx, { resolve, timer });
    });
  }

  /** The local replica's state without any consistency check (stale reads). */
  localMachine(groupId: string): M | undefined {
    return this.groups.get(groupId)?.machine;
  }

  transferLeadership(groupId: string, to: NodeId): boolean {
    const g = this.groups.get(groupId);
    // A gated leader keeps its leadership: a new leader would not be gated (the cut would fail).
    if (!g || this.gates.has(groupId)) return false;
    const r = g.raft.transferLeadership(to);
    this.dirty.add(g);
    this.schedule();
    return r.ok;
  }

  campaign(groupId: string): void {
    const g = this.groups.get(groupId);
    if (!g) return;
    g.raft.campaign();
    this.dirty.add(g);
    this.schedule();
  }

  status(groupId: string): GroupStatus | undefined {
    const g = this.groups.get(groupId);
    if (!g) return undefined;
    const st = g.raft.status();
    return {
      id: g.id,
      role: st.role,
      term: st.term,
      leader: st.leader,
      commit: st.commit,
      applied: st.applied,
      lastIndex: st.lastIndex,
      voters: st.conf.voters,
      learners: st.conf.learners,
      joint: st.conf.votersOutgoing.length > 0,
      quiesced: g.raft.isQuiesced(),
      match: new Map([...st.progress].map(([id, p]) => [id, p.match])),
    };
  }

  /**
   * Holds every new write to a group this replica leads (a backup's cut, docs/operations.md):
   * local proposals wait, and proposals forwarded by followers are held, until `ungate` or
   * until `leaseMs` passed (a coordinator that died cannot freeze the group). Entries already
   * in the log still commit and apply. Answers the term and last log index at the gate (every
   * write proposed before it is at or below that index), or undefined when this replica is not
   * the leader or the group is gated already.
   */
  gate(
    groupId: string,
    leaseMs: number,
    owner: string,
  ): { term: number; lastIndex: number } | undefined {
    const g = this.groups.get(groupId);
    if (!g || this.gates.has(groupId)) return undefined;
    const st = g.raft.status();
    if (st.role !== "leader") return undefined;
    const timer = setTimeout(() => this.ungate(groupId, owner), leaseMs);
    timer.unref();
    this.gates.set(groupId, { owner, timer, waiting: [], held: [] });
    return { term: st.term, lastIndex: st.lastIndex };
  }

  /** Whether the group is gated by `owner` (its lease has not run out). */
  gatedBy(groupId: string, owner: string): boolean {
    return this.gates.get(groupId)?.owner === owner;
  }

  /** Opens a gate `owner` set (no-op otherwise): held writes go on, in their order. */
  ungate(groupId: string, owner: string): void {
    const gate = this.gates.get(groupId);
    if (!gate || gate.owner !== owner) return;
    this.gates.delete(groupId);
    clearTimeout(gate.timer);
    for (const h of gate.held) this.receive(h.from, h.batch);
    for (const w of gate.waiting) w();
  }

  leaderOf(groupId: string): NodeId | undefined {
    const g = this.groups.get(groupId);
    const lead = g?.raft.basicStatus().leader;
    return lead ? lead : undefined;
  }

  // ------------------------------------------------------------------ time and quiescence

  private onTimer(): void {
    if (this.stopped) return;
    const now = performance.now();
    // Ticks owed by the monotonic clock (more than one if the event loop stalled): Raft's lease
    // clock gets them all, its timers at most half an election timeout (RawNode.elapse).
    const owed = Math.floor((now - this.lastTickAt) / this.tickMs);
    if (owed <= 0) return;
    this.lastTickAt += owed * this.tickMs;
    try {
      for (const g of this.groups.values()) this.tickGroup(g, owed);
    } catch (err) {
      this.fatal(err);
      return;
    }
    this.schedule();
  }

  /**
   * Quiescence: a leader whose group has been idle for `quiesceAfterTicks` (every replica has
   * the whole log, nothing pending) quiesces it; followers follow. A quiesced group costs no
   * ticks and sends nothing; any proposal, read or message wakes it (inside raft). The host adds
   * node-level liveness: a quiesced follower whose leader's node is unreachable wakes up and
   * runs its election timer again. This is what makes a thousand idle shards cost close to
   * nothing.
   */
  private tickGroup(g: Group<R, M>, ticks: number): void {
    const raft = g.raft;
    if (raft.isQuiesced()) {
      const st = raft.basicStatus();
      if (st.role !== "follower" || (st.leader !== "" && this.transport.reachable(st.leader)))
        return;
      raft.unquiesce();
    }
    raft.elapse(ticks);
    this.stats.ticksDelivered += ticks;
    this.dirty.add(g);
    const st = raft.basicStatus();
    const idle =
      st.role === "leader" &&
      g.proposals.size === 0 &&
      g.reads.size === 0 &&
      g.readyReads.length === 0;
    g.idleTicks = idle ? g.idleTicks + ticks : 0;
    if (g.idleTicks >= this.quiesceAfterTicks && raft.quiesce()) g.idleTicks = 0;
  }

  /** Number of groups currently quiesced on this node. */
  quiescedGroups(): number {
    let n = 0;
    for (const g of this.groups.values()) if (g.raft.isQuiesced()) n++;
    return n;
  }

  // ------------------------------------------------------------------ the cycle

  private schedule(): void {
    if (this.cycleScheduled || this.stopped) return;
    this.cycleScheduled = true;
    setImmediate(() => {
      this.cycleScheduled = false;
      void this.cycle();
    });
  }

  private fatal(err: unknown): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.tickTimer) clearInterval(this.tickTimer);
    this.onFatal(err);
  }

  private async cycle(): Promise<void> {
    if (this.cycleRunning || this.stopped) return;
    this.cycleRunning = true;
    try {
      await this.runCycle();
    } catch (err) {
      this.fatal(err);
    } finally {
      this.cycleRunning = false;
    }
    this.retryRefusedSnapshots();
    if (this.dirty.size > 0 || this.pendingOps.length > 0) this.schedule();
  }

  /**
   * Between cycles the snapshot provider can answer: retry the snapshots it refused during the
   * cycle now, instead of on a heartbeat answer that, under load, tends to arrive during the next
   * cycle again. A group whose retry is refused again waits for the next cycle's end (no spin).
   */
  private retryRefusedSnapshots(): void {
    if (this.snapshotsRefused.size === 0) return;
    const groups = [...this.snapshotsRefused];
    this.snapshotsRefused.clear();
    for (const g of groups) {
      if (g.removed || !g.raft.hasSnapshotsWanted()) continue;
      g.raft.retrySnapshots();
      if (g.raft.hasReady()) this.dirty.add(g);
    }
  }

  private async runCycle(): Promise<void> {
    const readies: [Group<R, M>, Ready][] = [];
    for (const g of this.dirty)
      if (!g.removed && g.raft.hasReady()) readies.push([g, g.raft.ready()]);
    this.dirty.clear();
    if (readies.length === 0 && this.pendingOps.length === 0) return;
    this.stats.cycles++;
    this.stats.readies += readies.length;
    if (tracing.on) this.traceAppended(readies);

    // A leader's appends and heartbeats do not wait for our fsync: replicate in parallel.
    this.sendBatched(readies.map(([g, rd]) => [g, rd.eagerMessages] as const));

    const ops = this.pendingOps;
    this.pendingOps = [];
    let sync = false;
    const applied: [Group<R, M>, Entry, R | undefined, number | undefined][] = [];
    for (const [g, rd] of readies) {
      g.storage.stage(rd, ops);
      if (rd.snapshot) {
        g.machine.restore(rd.snapshot.data, rd.snapshot.meta.index, rd.snapshot.meta.term, ops);
        this.failCoveredBySnapshot(g, rd.snapshot.meta.term);
        if (tracing.on) this.endTraces(g, rd.snapshot.meta.index, "covered by a snapshot");
      }
      for (const e of rd.committedEntries) {
        if (e.index <= g.machine.applied) continue; // already applied before a restart
        const { payload, seq } = this.envelope.unwrap(e.data);
        const inner = payload === e.data ? e : { ...e, data: payload };
        applied.push([g, e, g.machine.apply(inner, ops), seq]);
      }
      if (rd.committedEntries.length > 0) g.machine.stageApplied(ops);
      if (rd.mustSync) sync = true;
      this.stats.entriesPersisted += rd.entries.length;
    }
    // Write answers go out now, before this cycle's write: an applied entry is committed, that is
    // durable on a quorum, and its result is fixed by the log, whatever happens to this node's
    // copy of the state (a replica that crashes before its write applies the entry again). This
    // node's reads still see only what is durable here (durableApplied).
    this.stats.entriesApplied += applied.length;
    for (const [g, e, result, seq] of applied) {
      if (seq === undefined) continue;
      const p = g.proposals.get(seq);
      if (!p) continue; // timed out already
      g.proposals.delete(seq);
      clearTimeout(p.waiter.timer);
      assert(p.term === e.term, "a proposal committed in another term than it was made in");
      p.waiter.resolve({ ok: true, result });
    }
    if (tracing.on) this.traceApplied(applied);
    for (const [g, rd] of readies) {
      for (const rp of rd.refusedProposals) this.refused(g, rp.data, rp.reason);
      const last = rd.committedEntries[rd.committedEntries.length - 1];
      if (last && last.term > g.dropCheckedTerm) this.failDropped(g, last.term);
    }

    if (ops.length > 0) {
      const span = tracing.on ? this.storageWriteSpan(readies, ops, sync) : undefined;
      if (span === undefined) await this.engine.write(ops, { sync });
      else await this.tracedWrite(ops, sync, span);
      this.stats.writes++;
      if (sync) this.stats.syncWrites++;
    }
    for (const [g, rd] of readies) {
      g.storage.persisted(rd);
      g.machine.batchCommitted();
      for (const id of g.machine.takeCreatedGroups()) {
        if (this.groups.has(id)) continue;
        this.dirty.add(this.openGroup(id));
      }
    }

    // Acknowledgements and votes go out only now that what they acknowledge is durable.
    this.sendBatched(readies.map(([g, rd]) => [g, rd.messages] as const));
    if (tracing.on) this.traceAcknowledged(readies);

    for (const [g, rd] of readies) {
      // Raft drops unconfirmed reads when leadership changes: fail ours now so callers retry
      // at once instead of waiting for their deadline.
      if (rd.softState && g.reads.size > 0) this.failReads(g, rd.readStates);
      for (const rs of rd.readStates) {
        const w = g.reads.get(rs.context);
        if (!w) continue;
        g.reads.delete(rs.context);
        g.readyReads.push({ index: rs.index, waiter: w });
      }
      for (const ctx of rd.refusedReads) {
        const w = g.reads.get(ctx);
        if (!w) continue;
        g.reads.delete(ctx);
        clearTimeout(w.timer);
        w.resolve({ ok: false, code: "NOT_LEADER", leaderHint: g.raft.basicStatus().leader });
      }
      if (g.readyReads.length > 0) this.releaseReads(g);
    }

    for (const [g, rd] of readies) {
      g.raft.advance(rd);
      if (g.removed) continue;
      if (g.raft.hasReady()) this.dirty.add(g);
      this.maybeCompact(g);
    }
  }

  private flushForwards(): void {
    const out: [Group<R, M>, Message[]][] = [];
    for (const g of this.forwarding) {
      if (g.removed) continue;
      const m = g.raft.takeForwardMessage();
      if (m) out.push([g, [m]]);
    }
    this.forwarding.clear();
    this.sendBatched(out);
  }

  /** Sends messages of many groups, one batch per destination node. */
  private sendBatched(perGroup: readonly (readonly [Group<R, M>, readonly Message[]])[]): void {
    const byNode = new Map<NodeId, GroupMessage[]>();
    for (const [g, msgs] of perGroup) {
      for (const msg of msgs) {
        let batch = byNode.get(msg.to);
        if (!batch) {
          batch = [];
          byNode.set(msg.to, batch);
        }
        const traces = tracing.on ? this.tracesOf(g, msg) : undefined;
        batch.push(traces === undefined ? { group: g.id, msg } : { group: g.id, msg, traces });
      }
    }
    for (const [to, batch] of byNode) {
      this.transport.send(to, batch);
      this.stats.batchesSent++;
      this.stats.messagesSent += batch.length;
    }
  }

  private releaseReads(g: Group<R, M>): void {
    const still: typeof g.readyReads = [];
    for (const r of g.readyReads) {
      if (g.machine.durableApplied >= r.index) {
        clearTimeout(r.waiter.timer);
        r.waiter.resolve({ ok: true, machine: g.machine });
      } else still.push(r);
    }
    g.readyReads = still;
  }

  private maybeCompact(g: Group<R, M>): void {
    const first = g.storage.firstIndex();
    const upTo = g.machine.durableApplied - this.compactKeepEntries;
    if (upTo - first < this.compactEveryEntries) return;
    g.storage.compact(upTo, g.machine.durableApplied, this.pendingOps);
  }

  private failReads(g: Group<R, M>, granted: readonly { context: string }[]): void {
    const keep = new Set(granted.map((r) => r.context));
    for (const [ctx, w] of g.reads) {
      if (keep.has(ctx)) continue;
      g.reads.delete(ctx);
      clearTimeout(w.timer);
      w.resolve({ ok: false, code: "NOT_LEADER", leaderHint: g.raft.basicStatus().leader });
    }
  }

  /**
   * Entries are applied in log order and terms never decrease along the log, so once an entry
   * of term T is applied, an entry of an older term that is ours would have been applied (and
   * matched) before it. Our proposals of older terms still pending were therefore lost: a leader
   * change dropped them. A proposal's entry always carries the term it was proposed in (a
   * leader appends forwarded proposals only in the term they were forwarded in).
   */
  private failDropped(g: Group<R, M>, term: number): void {
    g.dropCheckedTerm = term;
    for (const [seq, p] of g.proposals) {
      if (p.term >= term) continue;
      g.proposals.delete(seq);
      clearTimeout(p.waiter.timer);
      p.waiter.resolve({
        ok: false,
        code: "DROPPED",
        message: "the leader changed before the write was committed; it did not take effect",
      });
    }
  }

  /**
   * A snapshot replaces entries we never see: a proposal of the snapshot's term or older may
   * be inside it, or lost. Its outcome is unknown.
   */
  private failCoveredBySnapshot(g: Group<R, M>, term: number): void {
    for (const [seq, p] of g.proposals) {
      if (p.term > term) continue;
      g.proposals.delete(seq);
      clearTimeout(p.waiter.timer);
      p.waiter.resolve({
        ok: false,
        code: "TIMEOUT",
        message: "this replica caught up by snapshot; the write may or may not have taken effect",
      });
    }
    g.dropCheckedTerm = Math.max(g.dropCheckedTerm, term);
  }

  /** The leader refused a forwarded proposal: it was certainly not appended. */
  private refused(g: Group<R, M>, data: Uint8Array, reason: PropRefusal): void {
    const { seq } = this.envelope.unwrap(data);
    if (seq === undefined) return;
    const p = g.proposals.get(seq);
    if (!p) return;
    g.proposals.delete(seq);
    clearTimeout(p.waiter.timer);
    p.waiter.resolve(refusalOutcome(reason, g.raft.basicStatus().leader));
  }

  private failAll(g: Group<R, M>, why: string): void {
    if (g.traced !== undefined || g.appends !== undefined)
      this.endTraces(g, Number.POSITIVE_INFINITY, why);
    for (const p of g.proposals.values()) {
      clearTimeout(p.waiter.timer);
      p.waiter.resolve({ ok: false, code: "TIMEOUT", message: why });
    }
    g.proposals.clear();
    for (const w of g.reads.values()) {
      clearTimeout(w.timer);
      w.resolve({ ok: false, code: "TIMEOUT", message: why });
    }
    g.reads.clear();
    for (const r of g.readyReads) {
      clearTimeout(r.waiter.timer);
      r.waiter.resolve({ ok: false, code: "TIMEOUT", message: why });
    }
    g.readyReads = [];
  }

  // ------------------------------------------------------------------ tracing (only when on)

  /** A proposal made here inside a traced request (the caller's context is active). */
  private traceProposal(
    g: Group<R, M>,
    data: Uint8Array,
    r: { readonly term: number } & ({ readonly index: number } | { readonly forwardedTo: NodeId }),
  ): void {
    const parent = context.active();
    const span = sampledSpan(parent);
    if (!span) return;
    if ("forwardedTo" in r) {
      span.addEvent("forwarded to the shard leader", {
        "kumo.shard": g.id,
        "kumo.raft.leader": r.forwardedTo,
      });
      const carrier: TraceCarrier = {};
      propagation.inject(parent, carrier);
      this.pendingTraces.set(data, { carrier, from: this.nodeId, at: performance.now() });
    } else {
      this.startProposalSpan(g, r.index, r.term, data.byteLength, parent, performance.now());
    }
  }

  private startProposalSpan(
    g: Group<R, M>,
    index: number,
    term: number,
    bytes: number,
    parent: Context,
    startTime: number,
    forwardedBy?: NodeId,
  ): void {
    g.traced ??= new Map();
    if (g.traced.size >= TRACED_ENTRIES_MAX) return;
    const span = tracer().startSpan(
      "raft.propose",
      {
        kind: forwardedBy === undefined ? SpanKind.INTERNAL : SpanKind.SERVER,
        startTime,
        attributes: {
          "kumo.node": this.nodeId,
          "kumo.shard": g.id,
          "kumo.raft.index": index,
          "kumo.raft.term": term,
          "kumo.raft.entry_bytes": bytes,
          ...(forwardedBy === undefined ? {} : { "kumo.raft.forwarded_by": forwardedBy }),
        },
      },
      parent,
    );
    g.traced.set(index, { span, term, carrier: undefined });
  }

  /**
   * Trace contexts that came with a message: a forwarded proposal's (the leader starts its
   * proposal span when the entry is appended, see traceAppended), or a leader's append of a
   * traced entry (a follower's `raft.append` span starts now).
   */
  private traceIncoming(
    from: NodeId,
    g: Group<R, M>,
    msg: Message,
    traces: readonly EntryTrace[],
  ): void {
    const now = performance.now();
    if (msg.type === "prop") {
      for (const t of traces) {
        const e = msg.entries[t.entry];
        if (e) this.pendingTraces.set(e.data, { carrier: t, from, at: now });
      }
      return;
    }
    if (msg.type !== "app") return;
    let bytes = 0;
    for (const e of msg.entries) bytes += e.data.byteLength;
    for (const t of traces) {
      const e = msg.entries[t.entry];
      if (!e) continue;
      // A retransmission of an entry traced already, or that this log already holds.
      if (g.appends?.has(e.index) || g.raft.termAt(e.index) === e.term) continue;
      const parent = propagation.extract(ROOT_CONTEXT, t);
      if (!sampledSpan(parent)) continue;
      g.appends ??= new Map();
      if (g.appends.size >= TRACED_ENTRIES_MAX) return;
      const span = tracer().startSpan(
        "raft.append",
        {
          kind: SpanKind.SERVER,
          startTime: now,
          attributes: {
            "kumo.node": this.nodeId,
            "kumo.shard": g.id,
            "kumo.raft.index": e.index,
            "kumo.raft.term": e.term,
            "kumo.raft.leader": from,
            "kumo.raft.entries": msg.entries.length,
            "kumo.raft.bytes": bytes,
          },
        },
        parent,
      );
      g.appends.set(e.index, { span, term: e.term, carrier: undefined });
    }
  }

  /** The trace contexts to send with `msg`, or undefined when it carries no traced entry. */
  private tracesOf(g: Group<R, M>, msg: Message): EntryTrace[] | undefined {
    let out: EntryTrace[] | undefined;
    if (msg.type === "app") {
      for (let i = 0; i < msg.entries.length; i++) {
        const e = msg.entries[i] as Entry;
        // An entry appended while a cycle was running can go out before the next cycle sees it.
        const t = g.traced?.get(e.index) ?? this.adoptForwarded(g, e);
        if (t === undefined || t.term !== e.term) continue;
        if (t.carrier === undefined) {
          t.carrier = {};
          propagation.inject(trace.setSpan(ROOT_CONTEXT, t.span), t.carrier);
        }
        const c = t.carrier;
        if (c.traceparent === undefined) continue;
        out ??= [];
        out.push(
          c.tracestate
            ? { entry: i, traceparent: c.traceparent, tracestate: c.tracestate }
            : { entry: i, traceparent: c.traceparent },
        );
      }
    } else if (msg.type === "prop") {
      for (let i = 0; i < msg.entries.length; i++) {
        const p = this.pendingTraces.get((msg.entries[i] as Entry).data);
        const c = p?.carrier;
        if (c?.traceparent === undefined) continue;
        out ??= [];
        out.push(
          c.tracestate
            ? { entry: i, traceparent: c.traceparent, tracestate: c.tracestate }
            : { entry: i, traceparent: c.traceparent },
        );
      }
    }
    return out;
  }

  /** Entries a leader appended this cycle that a traced proposal forwarded to it. */
  private traceAppended(readies: readonly [Group<R, M>, Ready][]): void {
    for (const [g, rd] of readies) for (const e of rd.entries) this.adoptForwarded(g, e);
  }

  /**
   * Starts the proposal span of an entry this leader appended for a traced forwarded proposal
   * (now that its index is known), the first time the entry is seen: in a Ready, or in an
   * append sent before the next cycle (flushEager).
   */
  private adoptForwarded(g: Group<R, M>, e: Entry): TracedEntry | undefined {
    const p = this.pendingTraces.get(e.data);
    if (p === undefined) return undefined;
    this.pendingTraces.delete(e.data);
    // Only the leader that appended it traces the proposal (an in-process network passes the
    // same bytes to every host, so a follower may recognize its own forward here).
    const st = g.raft.basicStatus();
    if (st.role !== "leader" || st.term !== e.term || p.from === this.nodeId) return undefined;
    const parent = propagation.extract(ROOT_CONTEXT, p.carrier);
    if (!sampledSpan(parent)) return undefined;
    this.startProposalSpan(g, e.index, e.term, e.data.byteLength, parent, p.at, p.from);
    return g.traced?.get(e.index);
  }

  /**
   * The span of a cycle's durable write when it holds traced entries: a child of the first
   * one's span (a leader's proposal or a follower's append), linked to the others'.
   */
  private storageWriteSpan(
    readies: readonly [Group<R, M>, Ready][],
    ops: readonly WriteOp[],
    sync: boolean,
  ): Span | undefined {
    let first: Span | undefined;
    let links: Link[] | undefined;
    let traced = 0;
    let entries = 0;
    for (const [g, rd] of readies) {
      entries += rd.entries.length;
      if (g.traced === undefined && g.appends === undefined) continue;
      for (const e of rd.entries) {
        const t = g.traced?.get(e.index) ?? g.appends?.get(e.index);
        if (t === undefined || t.term !== e.term) continue;
        traced++;
        if (first === undefined) {
          first = t.span;
          continue;
        }
        links ??= [];
        if (links.length < WRITE_LINKS_MAX) links.push({ context: t.span.spanContext() });
      }
    }
    if (first === undefined) return undefined;
    let bytes = 0;
    for (const op of ops) {
      if (op.op === "put") bytes += op.key.byteLength + op.value.byteLength;
      else if (op.op === "del") bytes += op.key.byteLength;
    }
    return tracer().startSpan(
      "storage.write",
      {
        attributes: {
          "kumo.node": this.nodeId,
          "kumo.storage.ops": ops.length,
          "kumo.storage.bytes": bytes,
          "kumo.storage.sync": sync,
          "kumo.raft.groups": readies.length,
          "kumo.raft.entries": entries,
          "kumo.raft.traced_entries": traced,
        },
        ...(links ? { links } : {}),
      },
      trace.setSpan(ROOT_CONTEXT, first),
    );
  }

  private async tracedWrite(ops: WriteOp[], sync: boolean, span: Span): Promise<void> {
    try {
      await this.engine.write(ops, { sync });
    } catch (err) {
      span.setStatus({ code: SpanStatusCode.ERROR, message: String(err) });
      throw err;
    } finally {
      span.end();
    }
  }

  /**
   * Followers' append spans end once their entries are durable and the acks went out (and, as
   * a safety net, any whose entry is applied and durable here by now).
   */
  private traceAcknowledged(readies: readonly [Group<R, M>, Ready][]): void {
    for (const [g, rd] of readies) {
      const appends = g.appends;
      if (appends === undefined || appends.size === 0) continue;
      for (const e of rd.entries) {
        const a = appends.get(e.index);
        if (a === undefined || a.term !== e.term) continue;
        appends.delete(e.index);
        a.span.end();
      }
      if (appends.size > 0) endSpans(appends, g.machine.durableApplied, undefined);
    }
  }

  /** Leaders' proposal spans end when their entries apply (the proposer is answered then). */
  private traceApplied(
    applied: readonly [Group<R, M>, Entry, R | undefined, number | undefined][],
  ): void {
    for (const [g, e] of applied) {
      const traced = g.traced;
      if (traced === undefined || traced.size === 0) continue;
      const t = traced.get(e.index);
      if (t === undefined) continue;
      traced.delete(e.index);
      if (t.term !== e.term) {
        t.span.setStatus({
          code: SpanStatusCode.ERROR,
          message: "replaced by another leader's entry; it did not take effect",
        });
      }
      t.span.end();
    }
  }

  /**
   * Ends every span of the group's entries up to `index` that will not finish here: covered by
   * a snapshot, the replica removed, the node stopping (`why`).
   */
  private endTraces(g: Group<R, M>, index: number, why: string): void {
    if (g.traced !== undefined) endSpans(g.traced, index, why);
    if (g.appends !== undefined) endSpans(g.appends, index, why);
  }
}

/** What a caller is told of its proposal that the leader refused (see PropRefusal). */
function refusalOutcome<R>(reason: PropRefusal, leaderHint: NodeId): ProposeOutcome<R> {
  switch (reason) {
    case "OVERLOADED":
      return {
        ok: false,
        code: "OVERLOADED",
        message: "the shard leader has too many writes waiting",
      };
    case "UNKNOWN":
      // The refuser led the proposal's term and may have appended it: the outcome is unknown.
      return {
        ok: false,
        code: "TIMEOUT",
        message: "a leader of an earlier term may have appended it (RawNode: UNKNOWN)",
      };
    case "NOT_LEADER":
    case "TRANSFERRING":
      return { ok: false, code: "NOT_LEADER", leaderHint };
  }
}
