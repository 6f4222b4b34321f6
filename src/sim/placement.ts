/**
 * The placement scenario of the simulator (`npm run sim -- --scenario placement`): the real
 * placement decisions (src/placement: planAll, applyPlan, recordAfterSplit, planKeyspace,
 * livenessAt, computeRing) and a model of everything around them, under churn.
 *
 * What is real and what is modeled:
 * - Real: the planners, the record updates (`applyPlan`, `recordAfterSplit`), keyspace creation
 *   (`planKeyspace`), the liveness rule (`livenessAt` on each node's own reachability history),
 *   the chunk ring (`computeRing` with `previous`), and Raft's membership rule
 *   (`applyConfChange`: one voter changes directly, more go through a joint configuration that
 *   the leader leaves by itself).
 * - Modeled: what src/api/admin/keyspaces.ts and src/node/node.ts do around them, step for step
 *   (every node, every second: observe reachability, refresh its records, on the metadata leader
 *   run a placement round at most every 2 s, reconcile the shards it leads, check splits; every
 *   2 s hand leadership to each shard's preferred replica), and each shard's Raft group as a
 *   small state machine: configuration, leader, per-replica log position, one pending
 *   configuration change, catch-up (snapshot or log) taking random time, elections that need a
 *   quorum and an up-to-date candidate, entries that may survive a leader's loss or not.
 * - The nemesis: kills (the node restarts later, with its durable state), permanent losses,
 *   isolation of the placement leader or of any node, joins, drains, activations, removals and
 *   decommissions of emptied nodes; then everything heals and a quiet period must converge.
 *
 * Everything random derives from the seed (src/base Prng), there is no wall clock: a seed
 * replays exactly. Invariants are checked after every event; the first violation ends the seed.
 */
import { AssertionError, assert, Prng } from "../base/index.js";
import {
  applyPlan,
  type ClusterView,
  clusterViewOf,
  computeRing,
  type KeyspaceRecord,
  keyspacePrefixHex,
  type LivenessTimeouts,
  livenessAt,
  type MemberRecord,
  moveInFlight,
  type NodeState,
  nextMembershipChange,
  PLAN_LIMITS_DEFAULT,
  type PlacementOp,
  planAll,
  planKeyspace,
  type Ring,
  type RingNode,
  recordAfterSplit,
  replicaLoad,
  ringMoves,
  type Sharding,
  type ShardStats,
  unlistedVoters,
  withMovesSince,
} from "../placement/index.js";
import {
  applyConfChange,
  type ConfChange,
  type ConfState,
  isJoint,
  type NodeId,
} from "../raft/index.js";
import {
  isQuorum,
  quorumsIntersect,
  ringErrors,
  sameRing,
  tilingErrors,
  voterSets,
} from "./placement-checks.js";
import { EventQueue } from "./queue.js";

/** Deliberately broken executors, to prove the checkers can fail. */
export type PlacementBug =
  /** Promote and remove in one simple change instead of a joint configuration. */
  | "replaceWithoutJoint"
  /** Remove voters the record no longer lists before adding (and catching up) their successors. */
  | "removeBeforeAdd";
export const PLACEMENT_BUG_NAMES: readonly PlacementBug[] = [
  "replaceWithoutJoint",
  "removeBeforeAdd",
];

/**
 * Real defects the scenario found in the code it models (not planted; reported, not fixed
 * here). Tolerating one records each occurrence instead of failing the seed, and the seed goes
 * on; anything else still fails. Each is matched by its exact signature, so a planted bug that
 * breaks the same invariant another way is still caught.
 */
export type KnownIssue =
  /**
   * KeyspaceAdmin.reconcile promotes the caught-up learners and removes EVERY voter the record
   * no longer lists in one joint change: when the record replaced two voters and only one
   * successor has caught up, the group is left with fewer voters than its replica count.
   */
  | "reconcile-joint-dip"
  /**
   * KeyspaceAdmin.create passes every member to planKeyspace, whatever its liveness and
   * operator state: a new keyspace may place replicas on dead, draining or removed nodes.
   */
  | "create-on-ineligible"
  /**
   * planAll counts every move in flight against `movesMax`, including moves that can never
   * finish (their target is lost and no other node can take its place, or their group lost
   * its quorum for good): they hold the budget for good, and other shards' repairs and drains
   * wait forever. Seen only when the planner gets the shards' reports (today's node passes
   * none, so it does not count moves in flight at all).
   */
  | "stuck-moves-budget";
/**
 * Every known issue is fixed: reconcile-joint-dip and create-on-ineligible in
 * src/api/admin/keyspaces.ts, stuck-moves-budget in planAll (only moves that can progress hold
 * the budget). The names stay for old replay lines and so that a regression is named.
 */
export const KNOWN_ISSUES: readonly KnownIssue[] = [];

export interface PlacementSimOptions {
  readonly bug?: PlacementBug;
  /** Known issues to record and go on past, instead of failing the seed. */
  readonly tolerate?: readonly KnownIssue[];
  /** Virtual milliseconds of faults, joins, drains and load before everything heals. */
  readonly chaosMs?: number;
  /** Keep the last events for a failure report. */
  readonly traceEvents?: number;
}

export type PlacementViolationKind =
  /** The records do not tile a keyspace exactly once, or a shard id repeats. */
  | "tiling"
  /** A configuration change has a quorum disjoint from a quorum of the previous configuration. */
  | "quorum-intersection"
  /** A configuration change left fewer voters than before (up to the replica count). */
  | "replica-dip"
  /** Voters without the committed entries form a quorum (they could elect a leader). */
  | "data-safety"
  /** No surviving voter holds the committed entries. */
  | "durability"
  /** A shard lost its quorum although the nemesis took down no more voters than it tolerates. */
  | "unavailable"
  /** A new keyspace placed a replica on a node that is not alive and active. */
  | "create-target"
  /** A chunk ring is malformed, or moved although its input did not change. */
  | "ring"
  /** The quiet period did not converge within its bound (or did not stay converged). */
  | "convergence"
  /** An assertion of the real code (or of the model) failed. */
  | "assertion";

export interface PlacementViolation {
  readonly kind: PlacementViolationKind;
  readonly message: string;
  readonly atMs: number;
}

export interface PlacementStats {
  events: number;
  nodesStart: number;
  nodesEnd: number;
  keyspaces: number;
  shardsStart: number;
  shardsEnd: number;
  /** Shards when the faults ended (the quiet period's work grows with them). */
  shardsAtHeal: number;
  /** Placement rounds that changed records. */
  rounds: number;
  /** Planned operations that repair (dead, removed, draining, under/over-replicated, zones). */
  repairs: number;
  /** Planned balance replica moves. */
  balances: number;
  /** Planned leader transfers (the records' preferred leader changes). */
  leaderOps: number;
  /** Actual configuration changes applied (entering or leaving joint counts once each). */
  confChanges: number;
  learnersAdded: number;
  /** Learners promoted to voters: replica moves completed. */
  moves: number;
  votersRemoved: number;
  joints: number;
  splits: number;
  splitsRecorded: number;
  elections: number;
  transfers: number;
  ringRounds: number;
  /** Partition-replica slots the chunk ring moved. */
  ringMoves: number;
  kills: number;
  losses: number;
  isolations: number;
  joins: number;
  drains: number;
  removals: number;
  decommissions: number;
  creates: number;
  /** Shard outages the nemesis caused (a majority of voters down at once): allowed. */
  outages: number;
  /** Virtual ms from healing to convergence (-1: never). */
  convergeMs: number;
}

export interface PlacementResult {
  readonly seed: number;
  readonly violation: PlacementViolation | undefined;
  /** Occurrences of tolerated known issues: how many, and the first. */
  readonly known: Partial<Record<KnownIssue, { count: number; first: PlacementViolation }>>;
  readonly stats: PlacementStats;
  readonly settings: string;
  readonly trace: readonly string[];
}

// As src/api/admin/keyspaces.ts and src/node/node.ts (private there; keep in step).
/** Every node's placement timer: observe, refresh, repair, reconcile, checkSplits. */
const NODE_TICK_MS = 1_000;
/** Placement rounds that changed something are at least this far apart. */
const PLAN_INTERVAL_MS = 2_000;
/** Replica moves planned per round (`movesMax`). */
const MOVES_PER_ROUND = 2;
/** The metadata group's voters: the first members, sorted. */
const META_REPLICAS = 3;
/** Record writes retried by recordSplit. */
const RECORD_SPLIT_ATTEMPTS = 5;

/** Writes and catch-up progress in every shard. */
const LOAD_TICK_MS = 500;
/** The chunk ring is recomputed by the placement leader this often. */
const RING_INTERVAL_MS = 2_000;
/** Virtual time of chaos by default. */
export const PLACEMENT_CHAOS_MS_DEFAULT = 150_000;
/**
 * The quiet period's bound. After healing, every shard must have converged within the dead
 * timeout (a node lost just before healing is only declared dead then) plus CONVERGE_BASE_MS
 * plus CONVERGE_PER_SHARD_MS per shard, and stay converged for STABLE_MS. The work left grows
 * with the shards (two moves per 2 s round; with reports, two moves in flight at once, each a
 * snapshot of up to a few seconds): measured, at most ~5.3 s per shard and ~2 min in all
 * beyond the dead timeout (docs/placement.md), so the bound has a margin of about two.
 */
export const CONVERGE_BASE_MS = 60_000;
export const CONVERGE_PER_SHARD_MS = 10_000;
const STABLE_MS = 10_000;
/** At most this many nodes in a cluster (joins stop there). */
const NODES_MAX = 10;

interface MetaRecord {
  readonly record: KeyspaceRecord;
  readonly revision: number;
}

class SimNode {
  up = true;
  destroyed = false;
  isolated = false;
  /** Bumps at every restart: timers and writes of an earlier incarnation are dropped. */
  epoch = 0;
  // In-memory state of KeyspaceAdmin (lost on restart).
  readonly unreachableSince = new Map<NodeId, number>();
  records: KeyspaceRecord[] = [];
  members = new Map<NodeId, MemberRecord>();
  lastPlanMs = 0;
  /** KeyspaceAdmin.movesSince: when each move was first seen in flight. */
  readonly movesSince = new Map<string, number>();
  lastRingMs = Number.NEGATIVE_INFINITY;
  ticks = 0;

  constructor(
    readonly id: NodeId,
    readonly labels: Readonly<Record<string, string>>,
  ) {}

  restartMemory(): void {
    this.unreachableSince.clear();
    this.records = [];
    this.members = new Map();
    this.lastPlanMs = 0;
    this.movesSince.clear();
    this.lastRingMs = Number.NEGATIVE_INFINITY;
  }
}

/** An entry in a leader's log, not committed yet. */
type PendingEntry =
  | { readonly kind: "cc"; readonly seq: number; readonly cc: ConfChange }
  | {
      readonly kind: "split";
      readonly seq: number;
      readonly at: string;
      readonly child: string;
      readonly voters: readonly NodeId[];
      /** The node that proposed it (it records the split once applied). */
      readonly by: NodeId;
    };

/** A shard's Raft group, as the model keeps it. */
class Group {
  conf: ConfState;
  /** Durable log position of each replica (absent: the node has no replica). */
  readonly match = new Map<NodeId, number>();
  /** When a lagging replica will have caught up, while it stays connected to the leader. */
  readonly catchUpAt = new Map<NodeId, number>();
  commit = 1;
  leader: NodeId | undefined;
  /** Bumps at every change of leader; entries proposed under another value are orphans. */
  gen = 0;
  /** The leader's first entry is committed: it may propose configuration changes. */
  established = false;
  electionScheduled = false;
  /**
   * Uncommitted entries, in log order: they commit as a prefix and apply in this order (a
   * split and a membership change proposed after it never overtake each other).
   */
  log: PendingEntry[] = [];
  nextSeq = 1;
  /** The last split's new shard (what `metaDurable.child` holds). */
  child: string | undefined;
  sizeUnits = 0;
  /** The most voters the group has had, up to the replica count: its tolerance baseline. */
  peak: number;
  /** Currently without a live quorum (an outage the nemesis caused). */
  out = false;
  /** A tolerated known issue damaged this group (its consequences are that issue's). */
  taint: KnownIssue | undefined;
  /** The voter count a dipped group must regain to be whole again. */
  taintFloor = 0;

  constructor(
    readonly id: string,
    readonly keyspace: string,
    readonly sharding: Sharding,
    readonly replicas: number,
    public start: string,
    /** The applied range's end (hex, "" unbounded): narrowed by splits. */
    public end: string,
    voters: readonly NodeId[],
  ) {
    this.conf = {
      voters: [...voters].sort(),
      learners: [],
      votersOutgoing: [],
      learnersNext: [],
      autoLeave: false,
    };
    this.peak = Math.min(replicas, voters.length);
  }

  /** Voters of both halves. */
  allVoters(): NodeId[] {
    return [...new Set([...this.conf.voters, ...this.conf.votersOutgoing])];
  }

  /** A configuration change is in the log, not applied yet (RawNode's pendingConfIndex). */
  ccPending(): boolean {
    return this.log.some((e) => e.kind === "cc");
  }

  /** Every node the configuration replicates to. */
  members(): NodeId[] {
    return [
      ...new Set([
        ...this.conf.voters,
        ...this.conf.votersOutgoing,
        ...this.conf.learners,
        ...this.conf.learnersNext,
      ]),
    ];
  }
}

type Ev =
  | { readonly k: "tick"; readonly node: NodeId; readonly epoch: number }
  | { readonly k: "load" }
  | { readonly k: "commit"; readonly group: string; readonly gen: number; readonly seq: number }
  | { readonly k: "established"; readonly group: string; readonly gen: number }
  | { readonly k: "election"; readonly group: string }
  | { readonly k: "metaElection" }
  | { readonly k: "recordPut"; readonly put: RecordPut }
  | { readonly k: "nemesis" }
  | { readonly k: "restart"; readonly node: NodeId }
  | { readonly k: "reconnect"; readonly node: NodeId }
  | { readonly k: "heal" }
  | { readonly k: "check" };

/** A conditional write of a keyspace record, landing after the network's latency. */
interface RecordPut {
  readonly from: NodeId;
  readonly epoch: number;
  readonly record: KeyspaceRecord;
  readonly ifRevision: number;
  /** A split record: on a failed precondition, read again and retry (recordSplit). */
  readonly split?: { readonly shard: string; readonly attempt: number };
}

class ViolationError extends Error {
  constructor(readonly violation: PlacementViolation) {
    super(violation.message);
  }
}

const POSITIONS = 2 ** 32;

export function runPlacementSeed(seed: number, opts: PlacementSimOptions = {}): PlacementResult {
  return new PlacementSim(seed, opts).run();
}

class PlacementSim {
  private readonly prng: Prng;
  /** The nemesis draws from its own source, so model changes do not reshuffle its schedule. */
  private readonly nemesisPrng: Prng;
  private now = 0;
  private readonly queue = new EventQueue<Ev>();
  private readonly nodes = new Map<NodeId, SimNode>();
  private readonly initialIds: NodeId[];
  private readonly metaVoters: NodeId[];
  private metaLeader: NodeId | undefined;
  private metaElectionScheduled = false;
  // The metadata group's committed state.
  private readonly records = new Map<string, MetaRecord>();
  private readonly memberRecords = new Map<NodeId, MemberRecord>();
  private revision = 0;
  private ring: Ring | undefined;
  private ringKey = "";
  private readonly groups = new Map<string, Group>();
  private readonly trace: string[] = [];
  private nextNodeNum: number;
  private healedAt: number | undefined;
  private convergedSince: number | undefined;
  /** What the planner could not plan, at the last convergence check (for the report). */
  private lastBlocked: string[] = [];
  private lastLossAt = Number.NEGATIVE_INFINITY;
  private readonly stats: PlacementStats;
  private readonly known: Partial<
    Record<KnownIssue, { count: number; first: PlacementViolation }>
  > = {};

  // Per-seed settings, all drawn from the seed.
  private readonly bug: PlacementBug | undefined;
  private readonly chaosMs: number;
  private readonly zones: readonly string[];
  private readonly liveness: LivenessTimeouts;
  /** Whether the planner sees the shards' reports (today's node passes none). */
  private readonly reports: boolean;
  private readonly lossesMax: number;
  private readonly lossWindowMs: number;
  private readonly createMidRun: boolean;
  private readonly splitUnits: number;
  private readonly ringPartitions: number;
  private readonly ringReplicas: number;
  private readonly nemesisGapMs: readonly [number, number];
  private readonly loads = new Map<string, { rate: number; tail: boolean }>();

  constructor(
    readonly seed: number,
    readonly opts: PlacementSimOptions,
  ) {
    this.prng = new Prng(seed);
    this.nemesisPrng = new Prng((seed ^ 0x9e3779b9) >>> 0);
    const p = this.prng;
    this.bug = opts.bug;
    this.chaosMs = opts.chaosMs ?? PLACEMENT_CHAOS_MS_DEFAULT;
    const nodeCount = p.range(3, 7);
    this.zones = p.pick([[], [], ["a", "b", "c"], ["a", "b"], ["a", "b", "c", "d"]]);
    const suspectAfterMs = p.pick([2_000, 5_000, 10_000]);
    this.liveness = {
      suspectAfterMs,
      deadAfterMs: Math.max(suspectAfterMs, p.pick([15_000, 30_000, 60_000])),
    };
    this.reports = p.chance(0.5);
    this.lossesMax = p.pick([0, 1, 1, 2]);
    this.lossWindowMs = this.liveness.deadAfterMs + 90_000;
    this.createMidRun = p.chance(0.3);
    this.splitUnits = p.range(20, 60);
    this.ringPartitions = p.pick([32, 64, 128]);
    this.ringReplicas = p.range(2, 3);
    this.nemesisGapMs = p.pick([
      [2_000, 8_000],
      [4_000, 15_000],
      [8_000, 25_000],
    ] as const);

    this.initialIds = Array.from({ length: nodeCount }, (_, i) => nodeName(i + 1));
    this.nextNodeNum = nodeCount + 1;
    this.metaVoters = [...this.initialIds].sort().slice(0, META_REPLICAS);
    for (const id of this.initialIds) this.addNode(id);
    for (const id of this.initialIds) this.memberRecords.set(id, this.memberRecordOf(id));

    // Keyspaces, created one after the other as `PUT /v1/keyspaces` does.
    const keyspaceCount = p.range(2, 4);
    for (let i = 0; i < keyspaceCount; i++) {
      const sharding: Sharding = i === 0 ? "range" : i === 1 ? "hash" : p.pick(["hash", "range"]);
      const replicas = this.lossesMax > 0 ? p.pick([3, 3, 3, 5]) : p.pick([1, 2, 3, 3, 3, 5]);
      const shards = sharding === "hash" ? p.range(2, 8) : 1;
      this.createKeyspace(`ks${i}`, sharding, replicas, shards, [...this.initialIds].sort());
    }
    this.stats = {
      events: 0,
      nodesStart: nodeCount,
      nodesEnd: nodeCount,
      keyspaces: keyspaceCount,
      shardsStart: this.groups.size,
      shardsEnd: 0,
      shardsAtHeal: 0,
      rounds: 0,
      repairs: 0,
      balances: 0,
      leaderOps: 0,
      confChanges: 0,
      learnersAdded: 0,
      moves: 0,
      votersRemoved: 0,
      joints: 0,
      splits: 0,
      splitsRecorded: 0,
      elections: 0,
      transfers: 0,
      ringRounds: 0,
      ringMoves: 0,
      kills: 0,
      losses: 0,
      isolations: 0,
      joins: 0,
      drains: 0,
      removals: 0,
      decommissions: 0,
      creates: 0,
      outages: 0,
      convergeMs: -1,
    };
  }

  settings(): string {
    const ks = [...this.records.values()]
      .map((r) => `${r.record.name}:${r.record.sharding}/R${r.record.replicas}`)
      .join(",");
    return [
      `nodes=${this.initialIds.length}`,
      `zones=${this.zones.length > 0 ? this.zones.join("") : "none"}`,
      `keyspaces=${ks}`,
      `suspect=${this.liveness.suspectAfterMs}ms`,
      `dead=${this.liveness.deadAfterMs}ms`,
      `reports=${this.reports ? "yes" : "none"}`,
      `losses<=${this.lossesMax}`,
      `create=${this.createMidRun ? "yes" : "no"}`,
      `split=${this.splitUnits}u`,
      `ring=${this.ringPartitions}x${this.ringReplicas}`,
      `nemesisGap=${this.nemesisGapMs[0]}-${this.nemesisGapMs[1]}ms`,
      `chaos=${this.chaosMs}ms`,
      this.bug ? `bug=${this.bug}` : "",
    ]
      .filter(Boolean)
      .join(" ");
  }

  // ------------------------------------------------------------------ the run

  run(): PlacementResult {
    let violation: PlacementViolation | undefined;
    try {
      this.queue.push(0, { k: "metaElection" });
      this.metaElectionScheduled = true;
      for (const g of this.groups.values()) this.scheduleElection(g);
      this.queue.push(LOAD_TICK_MS, { k: "load" });
      this.queue.push(this.nemesisPrng.range(3_000, 8_000), { k: "nemesis" });
      this.queue.push(this.chaosMs, { k: "heal" });
      while (this.queue.size > 0) {
        const ev = this.queue.pop();
        if (!ev) break;
        if (ev.at > this.convergeDeadline()) break;
        this.now = ev.at;
        this.stats.events++;
        this.handle(ev.item);
        this.checkInvariants();
        if (this.convergedSince !== undefined && this.now - this.convergedSince >= STABLE_MS) break;
      }
      if (this.convergedSince === undefined || this.now - this.convergedSince < STABLE_MS) {
        // What is not a tolerated issue's consequence first.
        const all = this.unconverged();
        const unmet = [
          ...all.filter((u) => u.taint === undefined).map((u) => u.text),
          ...all.filter((u) => u.taint !== undefined).map((u) => `${u.text} [${u.taint}]`),
        ];
        if (this.lastBlocked.length > 0)
          unmet.splice(4, 0, `the planner is blocked: ${this.lastBlocked.slice(0, 4).join(", ")}`);
        this.fail(
          "convergence",
          `not converged and stable ${STABLE_MS}ms within ${this.convergeDeadline() - this.chaosMs}ms of healing (${this.stats.shardsAtHeal} shards): ${unmet.slice(0, 5).join("; ") || "(converged too late to be stable)"}`,
        );
      }
    } catch (err) {
      if (err instanceof ViolationError) violation = err.violation;
      else if (err instanceof AssertionError)
        violation = {
          kind: "assertion",
          message: `${err.message}\n${err.stack ?? ""}`,
          atMs: this.now,
        };
      else throw err;
    }
    this.stats.nodesEnd = [...this.nodes.values()].filter((n) => !n.destroyed).length;
    this.stats.shardsEnd = this.groups.size;
    return {
      seed: this.seed,
      violation,
      known: this.known,
      stats: this.stats,
      settings: this.settings(),
      trace: this.trace,
    };
  }

  /** When the quiet period must have converged (and stayed so for STABLE_MS). */
  private convergeDeadline(): number {
    if (this.healedAt === undefined) return Number.POSITIVE_INFINITY;
    return (
      this.healedAt +
      this.liveness.deadAfterMs +
      CONVERGE_BASE_MS +
      CONVERGE_PER_SHARD_MS * this.stats.shardsAtHeal
    );
  }

  private handle(ev: Ev): void {
    switch (ev.k) {
      case "tick":
        this.onTick(ev.node, ev.epoch);
        return;
      case "load":
        this.onLoad();
        return;
      case "commit":
        this.onCommit(ev.group, ev.gen, ev.seq);
        return;
      case "established":
        this.onEstablished(ev.group, ev.gen);
        return;
      case "election":
        this.onElection(ev.group);
        return;
      case "metaElection":
        this.onMetaElection();
        return;
      case "recordPut":
        this.onRecordPut(ev.put);
        return;
      case "nemesis":
        this.onNemesis();
        return;
      case "restart":
        this.onRestart(ev.node);
        return;
      case "reconnect":
        this.onReconnect(ev.node);
        return;
      case "heal":
        this.onHeal();
        return;
      case "check":
        this.onCheck();
        return;
    }
  }

  private log(text: string): void {
    const keep = this.opts.traceEvents ?? 0;
    if (keep <= 0) return;
    this.trace.push(`${this.now}ms ${text}`);
    if (this.trace.length > keep) this.trace.shift();
  }

  private fail(kind: PlacementViolationKind, message: string): never {
    throw new ViolationError({ kind, message, atMs: this.now });
  }

  /** A violation that is a tolerated known issue is recorded (true); any other fails the seed. */
  private failOrKnown(issue: KnownIssue, kind: PlacementViolationKind, message: string): void {
    if (!(this.opts.tolerate ?? []).includes(issue)) this.fail(kind, message);
    const k = this.known[issue];
    if (k) k.count++;
    else this.known[issue] = { count: 1, first: { kind, message, atMs: this.now } };
    this.log(`known issue ${issue}: ${message}`);
  }

  // ------------------------------------------------------------------ nodes and reachability

  private addNode(id: NodeId): SimNode {
    const labels: Record<string, string> = {};
    if (this.zones.length > 0) labels.zone = this.prng.pick(this.zones);
    const n = new SimNode(id, labels);
    this.nodes.set(id, n);
    this.queue.push(this.now + this.prng.range(1, NODE_TICK_MS), {
      k: "tick",
      node: id,
      epoch: n.epoch,
    });
    return n;
  }

  private node(id: NodeId): SimNode {
    const n = this.nodes.get(id);
    assert(n !== undefined, () => `unknown node ${id}`);
    return n;
  }

  private memberRecordOf(id: NodeId): MemberRecord {
    return {
      id,
      peer: `${id}:7000`,
      api: `${id}:8000`,
      s3: `${id}:9000`,
      labels: this.node(id).labels,
    };
  }

  /** Running (not killed, not lost). */
  private isUp(id: NodeId): boolean {
    const n = this.nodes.get(id);
    return n?.up === true && !n.destroyed;
  }

  /** Can a and b exchange messages? (An isolated node reaches no one but itself.) */
  private connected(a: NodeId, b: NodeId): boolean {
    if (!this.isUp(a) || !this.isUp(b)) return false;
    if (a === b) return true;
    return !this.node(a).isolated && !this.node(b).isolated;
  }

  /** Up and reachable by the rest of the cluster. */
  private live(id: NodeId): boolean {
    return this.isUp(id) && !this.node(id).isolated;
  }

  private adminOf(id: NodeId): "active" | "draining" | "removed" {
    return this.memberRecords.get(id)?.admin ?? "active";
  }

  // ------------------------------------------------------------------ the metadata group

  private metaOk(): boolean {
    const leader = this.metaLeader;
    if (leader === undefined || !this.live(leader)) return false;
    return this.metaVoters.filter((v) => this.live(v)).length * 2 > this.metaVoters.length;
  }

  /** Can `id` read and write the metadata group (through its leader)? */
  private canTalk(id: NodeId): boolean {
    return this.metaOk() && this.connected(id, this.metaLeader as NodeId);
  }

  private onMetaElection(): void {
    this.metaElectionScheduled = false;
    if (this.metaOk()) return;
    const live = this.metaVoters.filter((v) => this.live(v));
    if (live.length * 2 > this.metaVoters.length) {
      this.metaLeader = this.prng.pick(live);
      this.log(`meta leader ${this.metaLeader}`);
      return;
    }
    this.scheduleMetaElection();
  }

  private scheduleMetaElection(): void {
    if (this.metaElectionScheduled) return;
    this.metaElectionScheduled = true;
    this.queue.push(this.now + this.prng.range(1_000, 3_000), { k: "metaElection" });
  }

  private putRecord(put: RecordPut): void {
    this.queue.push(this.now + this.prng.range(5, 80), { k: "recordPut", put });
  }

  private onRecordPut(put: RecordPut): void {
    const from = this.nodes.get(put.from);
    if (from === undefined || from.epoch !== put.epoch || !this.canTalk(put.from)) return;
    const cur = this.records.get(put.record.name);
    if (cur === undefined) return;
    if (cur.revision !== put.ifRevision) {
      // PRECONDITION_FAILED: a placement round drops its write; recordSplit reads and retries.
      if (put.split !== undefined && put.split.attempt + 1 < RECORD_SPLIT_ATTEMPTS)
        this.recordSplit(from, put.record.name, put.split.shard, put.split.attempt + 1);
      return;
    }
    this.records.set(put.record.name, { record: put.record, revision: ++this.revision });
    this.log(
      `record ${put.record.name} r${this.revision} by ${put.from}${put.split ? " (split)" : ""}`,
    );
    if (put.split !== undefined) this.stats.splitsRecorded++;
    const errors = tilingErrors([...this.records.values()].map((r) => r.record));
    if (errors.length > 0) this.fail("tiling", errors.slice(0, 3).join("; "));
    this.refresh(from);
  }

  // ------------------------------------------------------------------ keyspaces

  private createKeyspace(
    name: string,
    sharding: Sharding,
    replicas: number,
    shards: number,
    members: readonly NodeId[],
  ): KeyspaceRecord {
    const load = replicaLoad([...this.records.values()].map((r) => r.record));
    const generation = this.prng.nextU32().toString(36);
    const record = planKeyspace({ name, sharding, replicas, shards }, members, load, generation);
    this.records.set(name, { record, revision: ++this.revision });
    const errors = tilingErrors([...this.records.values()].map((r) => r.record));
    if (errors.length > 0) this.fail("tiling", errors.slice(0, 3).join("; "));
    this.loads.set(name, {
      rate: this.prng.pick([0.5, 1, 2, 3]),
      tail: sharding === "range" && this.prng.chance(0.5),
    });
    for (const s of record.shards) {
      const g = new Group(s.id, name, sharding, replicas, s.start, s.end, s.replicas);
      // Each replica bootstraps the same first entry when its node sees the record; a lost
      // node never does.
      for (const v of s.replicas) if (!this.node(v).destroyed) g.match.set(v, 1);
      this.groups.set(s.id, g);
    }
    return record;
  }

  // ------------------------------------------------------------------ the node's timer

  private onTick(id: NodeId, epoch: number): void {
    const n = this.node(id);
    if (n.epoch !== epoch || !this.isUp(id)) return;
    n.ticks++;
    this.observe(n);
    this.refresh(n);
    this.repair(n);
    this.ringRound(n);
    this.reconcile(n);
    this.checkSplits(n);
    if (n.ticks % 2 === 0) this.balanceLeaders(n);
    this.queue.push(this.now + NODE_TICK_MS, { k: "tick", node: id, epoch });
  }

  private membersOf(n: SimNode): NodeId[] {
    return [...new Set([...this.initialIds, ...n.members.keys()])].sort();
  }

  /** KeyspaceAdmin.observe: when each member became unreachable from this node. */
  private observe(n: SimNode): void {
    for (const m of this.membersOf(n)) {
      if (m === n.id || this.connected(n.id, m)) n.unreachableSince.delete(m);
      else if (!n.unreachableSince.has(m)) n.unreachableSince.set(m, this.now);
    }
  }

  private livenessOf(n: SimNode, id: NodeId): NodeState {
    return livenessAt(
      { lastHeartbeatMs: n.unreachableSince.get(id) ?? this.now },
      this.now,
      this.liveness,
    );
  }

  /** KeyspaceAdmin.refresh: member records (writing its own if missing), then the records. */
  private refresh(n: SimNode): void {
    if (!this.canTalk(n.id)) return;
    if (!this.memberRecords.has(n.id)) {
      this.memberRecords.set(n.id, this.memberRecordOf(n.id));
      this.log(`member record ${n.id}`);
    }
    n.members = new Map(this.memberRecords);
    n.records = [...this.records.values()].map((r) => r.record);
  }

  /** KeyspaceAdmin.clusterView, as the metadata leader builds it. */
  private clusterView(n: SimNode, records: readonly KeyspaceRecord[]): ClusterView {
    const stats: Record<string, ShardStats> = {};
    if (this.reports) {
      for (const g of this.groups.values()) {
        if (g.leader === undefined) continue;
        stats[g.id] = {
          shard: g.id,
          sizeBytes: g.sizeUnits,
          keys: g.sizeUnits,
          readsPerSec: 0,
          writesPerSec: 0,
          voters: g.conf.voters,
          learners: g.conf.learners,
          leader: g.leader,
        };
      }
    }
    return clusterViewOf({
      records,
      members: this.membersOf(n),
      memberRecord: (id) => n.members.get(id),
      liveness: (id) => this.livenessOf(n, id),
      unreachableSince: (id) => n.unreachableSince.get(id),
      nowMs: this.now,
      stats,
    });
  }

  /** KeyspaceAdmin.repair: the placement round, on the metadata leader. */
  private repair(n: SimNode): void {
    if (this.metaLeader !== n.id || !this.metaOk()) return;
    if (this.now - n.lastPlanMs < PLAN_INTERVAL_MS) return;
    const snapshot = [...this.records.values()];
    const records = snapshot.map((x) => x.record);
    const plan = planAll(withMovesSince(this.clusterView(n, records), n.movesSince), {
      ...PLAN_LIMITS_DEFAULT,
      movesMax: MOVES_PER_ROUND,
    });
    const changed = applyPlan(records, plan.ops);
    if (changed.length === 0) return;
    n.lastPlanMs = this.now;
    this.stats.rounds++;
    for (const op of plan.ops) this.countOp(op);
    this.log(`plan by ${n.id}: ${plan.ops.map(describeOp).join(", ")}`);
    for (const rec of changed) {
      const revision = snapshot.find((x) => x.record.name === rec.name)?.revision;
      if (revision === undefined) continue;
      this.putRecord({ from: n.id, epoch: n.epoch, record: rec, ifRevision: revision });
    }
  }

  private countOp(op: PlacementOp): void {
    if (op.kind === "transfer-leader") this.stats.leaderOps++;
    else if (op.kind === "replace" && op.reason === "balance") this.stats.balances++;
    else if (op.kind !== "split") this.stats.repairs++;
  }

  /** The chunk ring over the alive, active members, kept sticky with `previous`. */
  private ringRound(n: SimNode): void {
    if (this.metaLeader !== n.id || !this.metaOk()) return;
    if (this.now - n.lastRingMs < RING_INTERVAL_MS) return;
    n.lastRingMs = this.now;
    const nodes: RingNode[] = this.membersOf(n)
      .filter(
        (id) =>
          this.livenessOf(n, id) === "alive" && (n.members.get(id)?.admin ?? "active") === "active",
      )
      .map((id) => ({ id, zone: n.members.get(id)?.labels?.zone ?? "", weight: 1 }));
    if (nodes.length === 0) return;
    const key = nodes.map((x) => `${x.id}@${x.zone}`).join(",");
    const previous = this.ring;
    const ring = computeRing({
      nodes,
      partitions: this.ringPartitions,
      replicas: this.ringReplicas,
      ...(previous ? { previous } : {}),
    });
    this.stats.ringRounds++;
    const errors = ringErrors(
      ring,
      new Set(nodes.map((x) => x.id)),
      this.ringReplicas,
      this.ringPartitions,
    );
    if (errors.length > 0) this.fail("ring", `ring over ${key}: ${errors.join("; ")}`);
    if (previous !== undefined) {
      const moved = ringMoves(previous, ring);
      this.stats.ringMoves += moved;
      if (key === this.ringKey && !sameRing(previous, ring))
        this.fail(
          "ring",
          `the ring moved ${moved} slots although its nodes did not change (${key})`,
        );
      if (key !== this.ringKey) this.log(`ring over ${key}: ${moved} slots moved`);
    }
    this.ring = ring;
    this.ringKey = key;
  }

  /**
   * KeyspaceAdmin.reconcile, for the shards this node leads: the same decision
   * (`nextMembershipChange`), plus the planted bug "removeBeforeAdd".
   */
  private reconcile(n: SimNode): void {
    for (const rec of n.records) {
      for (const s of rec.shards) {
        const g = this.groups.get(s.id);
        if (g === undefined || g.leader !== n.id || isJoint(g.conf)) continue;
        const membership = {
          voters: g.conf.voters,
          learners: g.conf.learners,
          match: g.match,
          commit: g.commit,
        };
        const alive = (id: NodeId) => this.livenessOf(n, id) === "alive";
        const extraVoters = unlistedVoters(membership, s.replicas, alive);
        const cc =
          this.bug === "removeBeforeAdd" && extraVoters.length > 0 && g.conf.voters.length > 1
            ? { changes: [{ type: "removeNode" as const, node: extraVoters[0] as NodeId }] }
            : nextMembershipChange(membership, s.replicas, alive);
        if (cc) this.proposeCc(g, n.id, cc);
      }
    }
  }

  /**
   * KeyspaceAdmin.checkSplits, for the range shards this node leads: record a split its group
   * applied but the record does not show yet; else split a shard past the size threshold at
   * its middle key.
   */
  private checkSplits(n: SimNode): void {
    for (const rec of n.records) {
      if (rec.sharding !== "range") continue;
      for (const s of rec.shards) {
        const g = this.groups.get(s.id);
        if (g === undefined || g.leader !== n.id) continue;
        if (g.child !== undefined && s.end !== g.end) {
          this.recordSplit(n, rec.name, s.id, 0);
          continue;
        }
        if (
          g.sizeUnits < this.splitUnits ||
          g.log.some((e) => e.kind === "split") ||
          !g.established
        )
          continue;
        const at = middleKey(rec.name, g.start, g.end);
        if (at === undefined) continue;
        const child = `${rec.name}.${rec.generation}.${this.prng.nextU32().toString(36)}`;
        this.append(g, {
          kind: "split",
          seq: g.nextSeq++,
          at,
          child,
          voters: [...g.conf.voters],
          by: n.id,
        });
      }
    }
  }

  /** KeyspaceAdmin.recordSplit: make the record show the split the group applied. */
  private recordSplit(n: SimNode, name: string, shardId: string, attempt: number): void {
    const g = this.groups.get(shardId);
    if (g === undefined || g.child === undefined || !this.canTalk(n.id)) return;
    const cur = this.records.get(name);
    if (cur === undefined) return;
    const next = recordAfterSplit(cur.record, shardId, g.end, g.child);
    if (next === undefined) return;
    this.putRecord({
      from: n.id,
      epoch: n.epoch,
      record: next,
      ifRevision: cur.revision,
      split: { shard: shardId, attempt },
    });
  }

  /** Node.balanceLeaders: hand each led shard to its preferred (first) replica when reachable. */
  private balanceLeaders(n: SimNode): void {
    for (const rec of n.records) {
      for (const s of rec.shards) {
        const g = this.groups.get(s.id);
        const preferred = s.replicas[0];
        if (g === undefined || g.leader !== n.id || preferred === undefined || preferred === n.id)
          continue;
        // A transfer goes to a voter only, once it has caught up.
        if (!g.conf.voters.includes(preferred) || !this.connected(n.id, preferred)) continue;
        if ((g.match.get(preferred) ?? 0) < g.commit) continue;
        this.stats.transfers++;
        this.loseLeader(g, true);
        this.becomeLeader(g, preferred);
      }
    }
  }

  // ------------------------------------------------------------------ shard groups (Raft model)

  private proposeCc(g: Group, by: NodeId, cc: ConfChange): void {
    // RawNode.proposeConfChange: refused while one is pending or the leader's first entry is not
    // applied yet (CONF_CHANGE_PENDING), and when invalid (INVALID_CONF_CHANGE).
    if (g.leader !== by || !g.established || g.ccPending()) return;
    if (!applyConfChange(g.conf, cc).ok) return;
    this.append(g, { kind: "cc", seq: g.nextSeq++, cc });
  }

  /** The leader appends an entry; it commits once a quorum has it. */
  private append(g: Group, e: PendingEntry): void {
    g.log.push(e);
    this.queue.push(this.now + this.prng.range(5, 60), {
      k: "commit",
      group: g.id,
      gen: g.gen,
      seq: e.seq,
    });
  }

  /** The voters that hold every committed entry and that the leader reaches. */
  private synced(g: Group): Set<NodeId> {
    const leader = g.leader;
    const out = new Set<NodeId>();
    if (leader === undefined) return out;
    for (const m of g.members()) {
      if ((g.match.get(m) ?? -1) >= g.commit && this.connected(leader, m)) out.add(m);
    }
    return out;
  }

  /** Appends and commits one entry if a quorum holds the log so far; false if it cannot. */
  private commitEntry(g: Group): boolean {
    const synced = this.synced(g);
    if (!isQuorum(voterSets(g.conf), (v) => synced.has(v))) return false;
    g.commit++;
    for (const m of synced) g.match.set(m, g.commit);
    return true;
  }

  private onCommit(id: string, gen: number, seq: number): void {
    const g = this.groups.get(id);
    if (g === undefined || g.gen !== gen) return;
    const upTo = g.log.findIndex((e) => e.seq === seq);
    if (upTo < 0) return;
    if (!this.commitEntry(g)) {
      // No quorum yet: the entry waits in the leader's log.
      this.queue.push(this.now + this.prng.range(200, 800), { k: "commit", group: id, gen, seq });
      return;
    }
    // Committing an entry commits the log before it; each entry is one more log index.
    const prefix = g.log.splice(0, upTo + 1);
    for (let i = 1; i < prefix.length; i++) this.commitEntry(g);
    for (const e of prefix) this.applyEntry(g, e);
  }

  private applyEntry(g: Group, entry: PendingEntry): void {
    if (entry.kind === "cc") this.applyCc(g, entry.cc);
    else this.applySplit(g, entry);
  }

  private applyCc(g: Group, cc: ConfChange): void {
    const before = g.conf;
    const r = applyConfChange(before, cc);
    assert(r.ok, () => `${g.id}: committed an invalid change: ${JSON.stringify(cc)}`);
    let after = r.confState;
    if (this.bug === "replaceWithoutJoint" && isJoint(after)) {
      // The planted bug: the new voters at once, without the joint step.
      after = {
        voters: after.voters,
        learners: [...new Set([...after.learners, ...after.learnersNext])].sort(),
        votersOutgoing: [],
        learnersNext: [],
        autoLeave: false,
      };
    }
    const change = `${g.id}: ${describeConf(before)} -> ${describeConf(after)} (${
      cc.changes.map((c) => `${c.type} ${c.node}`).join(", ") || "leave joint"
    })`;
    this.log(change);
    this.stats.confChanges++;
    if (isJoint(after)) this.stats.joints++;
    for (const c of cc.changes) {
      if (c.type === "addLearner") this.stats.learnersAdded++;
      else if (c.type === "addVoter") this.stats.moves++;
      else this.stats.votersRemoved++;
    }
    if (!quorumsIntersect(voterSets(before), voterSets(after)))
      this.fail(
        "quorum-intersection",
        `${change}: a quorum of the new configuration misses every quorum of the old`,
      );
    const floor = Math.min(g.replicas, before.voters.length);
    if (after.voters.length < floor) {
      const message = `${change}: ${after.voters.length} voters left of ${before.voters.length} (replicas ${g.replicas}): up-replicate before removing`;
      // The known reconcile defect's shape: entering a joint configuration that promotes fewer
      // learners than it removes voters.
      if (isJoint(after)) {
        this.failOrKnown("reconcile-joint-dip", "replica-dip", message);
        // Its outages, and a group wedged for good when a remaining voter is lost, are that
        // defect's consequences, already reported.
        g.peak = after.voters.length;
        g.taint = "reconcile-joint-dip";
        g.taintFloor = floor;
      } else this.fail("replica-dip", message);
    }
    g.conf = after;
    g.peak = Math.max(g.peak, Math.min(g.replicas, after.voters.length));
    if (g.taint === "reconcile-joint-dip" && !isJoint(after) && after.voters.length >= g.taintFloor)
      g.taint = undefined; // whole again
    const members = new Set(g.members());
    for (const m of members) if (!g.match.has(m)) g.match.set(m, 0);
    for (const m of [...g.match.keys()]) {
      if (!members.has(m)) {
        // Removed: the node deletes its replica (a later re-add starts empty).
        g.match.delete(m);
        g.catchUpAt.delete(m);
      }
    }
    const leader = g.leader;
    if (leader !== undefined && !g.allVoters().includes(leader)) {
      this.loseLeader(g, false);
      return;
    }
    if (
      leader !== undefined &&
      g.established &&
      isJoint(after) &&
      after.autoLeave &&
      !g.ccPending()
    ) {
      // The leader leaves the joint configuration as soon as entering it is applied.
      this.append(g, { kind: "cc", seq: g.nextSeq++, cc: { changes: [] } });
    }
  }

  private applySplit(g: Group, e: Extract<PendingEntry, { kind: "split" }>): void {
    // ShardMachine.applySplit: an `at` outside the range (or at its start) changes nothing.
    if (!(e.at > g.start && (g.end === "" || e.at < g.end)) || this.groups.has(e.child)) return;
    const c = new Group(e.child, g.keyspace, g.sharding, g.replicas, e.at, g.end, e.voters);
    // Every replica of the parent creates the half with the same voters and the same first
    // entry when it applies the split (a lagging one a little later, identically); a listed
    // voter that is no longer in the parent gets an empty replica and is caught up.
    const hosts = new Set(g.members());
    for (const v of e.voters) c.match.set(v, hosts.has(v) ? 1 : 0);
    // A half inherits its parent's damage (a dipped configuration stays dipped in both).
    c.taint = g.taint;
    c.taintFloor = g.taintFloor;
    c.sizeUnits = Math.floor(g.sizeUnits / 2);
    g.sizeUnits -= c.sizeUnits;
    g.end = e.at;
    g.child = e.child;
    this.groups.set(c.id, c);
    this.stats.splits++;
    this.log(`${g.id} split at ${e.at}: ${c.id} {${e.voters.join(",")}}`);
    this.scheduleElection(c);
    const by = this.nodes.get(e.by);
    if (by !== undefined && this.isUp(e.by)) this.recordSplit(by, g.keyspace, g.id, 0);
  }

  private loseLeader(g: Group, transfer: boolean): void {
    if (g.leader === undefined) return;
    this.log(`${g.id}: leader ${g.leader} ${transfer ? "transfers" : "lost"}`);
    g.leader = undefined;
    g.established = false;
    g.gen++;
    // Uncommitted entries survive in the next leader's log, or not: some prefix of them. A
    // transfer waits for the target to catch up, so there they all survive.
    if (!transfer) g.log.length = this.prng.int(g.log.length + 1);
    if (!transfer) this.scheduleElection(g);
  }

  private scheduleElection(g: Group): void {
    if (g.electionScheduled || g.leader !== undefined) return;
    g.electionScheduled = true;
    this.queue.push(this.now + this.prng.range(1_000, 3_000), { k: "election", group: g.id });
  }

  private onElection(id: string): void {
    const g = this.groups.get(id);
    if (g === undefined) return;
    g.electionScheduled = false;
    if (g.leader !== undefined) return;
    const live = new Set(g.allVoters().filter((v) => this.live(v) && g.match.has(v)));
    const candidates = [...live].filter((v) => (g.match.get(v) ?? 0) >= g.commit).sort();
    if (!isQuorum(voterSets(g.conf), (v) => live.has(v)) || candidates.length === 0) {
      this.scheduleElection(g);
      return;
    }
    this.becomeLeader(g, this.prng.pick(candidates));
  }

  private becomeLeader(g: Group, leader: NodeId): void {
    g.leader = leader;
    g.gen++;
    g.established = false;
    this.stats.elections++;
    this.queue.push(this.now + this.prng.range(5, 60), {
      k: "established",
      group: g.id,
      gen: g.gen,
    });
  }

  private onEstablished(id: string, gen: number): void {
    const g = this.groups.get(id);
    if (g === undefined || g.gen !== gen || g.leader === undefined) return;
    // The leader's first entry commits everything before it: orphaned entries apply now.
    if (!this.commitEntry(g)) {
      this.queue.push(this.now + this.prng.range(200, 800), { k: "established", group: id, gen });
      return;
    }
    // The earlier leaders' entries it holds are committed with it, in order.
    const inherited = g.log.splice(0);
    for (let i = 0; i < inherited.length; i++) this.commitEntry(g);
    for (const e of inherited) this.applyEntry(g, e);
    if (g.gen !== gen) return; // a change removed the leader
    g.established = true;
    if (isJoint(g.conf) && !g.ccPending())
      this.append(g, { kind: "cc", seq: g.nextSeq++, cc: { changes: [] } });
  }

  /** After a node goes down, comes back, is isolated or reconnects: leaders and elections. */
  private topologyChanged(): void {
    for (const g of this.groups.values()) {
      const leader = g.leader;
      if (leader !== undefined) {
        const reach = new Set(g.allVoters().filter((v) => this.connected(leader, v)));
        // A dead or isolated leader is gone; one that lost its quorum steps down (check-quorum).
        if (!this.live(leader) || !isQuorum(voterSets(g.conf), (v) => reach.has(v)))
          this.loseLeader(g, false);
      } else this.scheduleElection(g);
    }
    if (!this.metaOk()) {
      if (this.metaLeader !== undefined) this.log(`meta leader ${this.metaLeader} lost`);
      this.metaLeader = undefined;
      this.scheduleMetaElection();
    }
  }

  // ------------------------------------------------------------------ load

  private onLoad(): void {
    for (const g of this.groups.values()) this.catchUp(g);
    const quiet = this.healedAt !== undefined;
    for (const [name, load] of this.loads) {
      const rec = this.records.get(name)?.record;
      if (rec === undefined) continue;
      const groups = [...this.groups.values()].filter((g) => g.keyspace === name);
      const writes = Math.floor(load.rate / 2) + (this.prng.chance((load.rate / 2) % 1) ? 1 : 0);
      for (let i = 0; i < writes; i++) {
        const g = load.tail
          ? groups.find((x) => x.end === "")
          : pickByWidth(this.prng, name, groups);
        if (g === undefined || g.leader === undefined || !g.established) continue;
        // A write commits on a quorum; the shard only grows during the chaos (so that the
        // quiet period's work is bounded).
        if (this.commitEntry(g) && !quiet) g.sizeUnits++;
      }
    }
    // Background entries keep every log moving, so lagging replicas really lag.
    for (const g of this.groups.values())
      if (g.leader !== undefined && g.established && this.prng.chance(0.3)) this.commitEntry(g);
    this.queue.push(this.now + LOAD_TICK_MS, { k: "load" });
  }

  private catchUp(g: Group): void {
    const leader = g.leader;
    if (leader === undefined) return;
    for (const m of g.members()) {
      if (m === leader) continue;
      if (!this.connected(leader, m)) {
        g.catchUpAt.delete(m);
        continue;
      }
      const match = g.match.get(m) ?? 0;
      if (match >= g.commit) continue;
      const at = g.catchUpAt.get(m);
      if (at === undefined) {
        // An empty replica needs a snapshot (its size matters); a lagging one replays the log.
        const delay =
          match === 0
            ? this.prng.range(300, 2_000) + g.sizeUnits * this.prng.range(20, 100)
            : this.prng.range(100, 1_500);
        g.catchUpAt.set(m, this.now + delay);
      } else if (this.now >= at) {
        g.match.set(m, g.commit);
        g.catchUpAt.delete(m);
      }
    }
  }

  // ------------------------------------------------------------------ the nemesis

  private onNemesis(): void {
    if (this.healedAt !== undefined) return;
    const p = this.nemesisPrng;
    const actions: [string, number][] = [
      ["kill", 30],
      ["loss", this.lossesMax > 0 ? 8 : 0],
      ["isolateLeader", 10],
      ["isolate", 6],
      ["join", 10],
      ["drain", 10],
      ["activate", 5],
      ["remove", 6],
      ["decommission", 6],
      ["create", this.createMidRun ? 4 : 0],
    ];
    const total = actions.reduce((s, [, w]) => s + w, 0);
    let roll = p.next() * total;
    let action = "kill";
    for (const [name, w] of actions) {
      roll -= w;
      if (roll < 0) {
        action = name;
        break;
      }
    }
    this.nemesisAction(action, p);
    this.queue.push(this.now + p.range(this.nemesisGapMs[0], this.nemesisGapMs[1]), {
      k: "nemesis",
    });
  }

  /** Nodes that still exist and that the operator has not removed. */
  private inService(): SimNode[] {
    return [...this.nodes.values()].filter((n) => !n.destroyed && this.adminOf(n.id) !== "removed");
  }

  private activeCount(): number {
    return this.inService().filter((n) => this.adminOf(n.id) === "active").length;
  }

  private nemesisAction(action: string, p: Prng): void {
    const existing = [...this.nodes.values()].filter((n) => !n.destroyed);
    const down = existing.filter((n) => !n.up || n.isolated);
    switch (action) {
      case "kill": {
        if (down.length >= 2) return;
        const up = existing.filter((n) => n.up && !n.isolated);
        if (up.length === 0) return;
        const n = p.pick(up);
        n.up = false;
        n.epoch++;
        n.restartMemory();
        this.stats.kills++;
        // Mostly short; sometimes past the dead timeout (the node comes back replaced).
        const forMs = p.chance(0.25)
          ? this.liveness.deadAfterMs + p.range(1_000, 30_000)
          : p.range(2_000, 20_000);
        this.log(`nemesis: kill ${n.id} for ${forMs}ms`);
        this.queue.push(this.now + forMs, { k: "restart", node: n.id });
        this.topologyChanged();
        return;
      }
      case "loss": {
        // Losses are spread out: at most `lossesMax`, a window apart, only while every other
        // node is up, and never a second metadata voter (that group is fixed and never repaired:
        // it would be gone for good).
        if (this.stats.losses >= this.lossesMax) return;
        if (this.now - this.lastLossAt < this.lossWindowMs || down.length > 0) return;
        const metaGone = this.metaVoters.filter((v) => this.node(v).destroyed).length;
        // And never one that leaves a shard without a surviving quorum: no system recovers
        // from that without losing data, and any minority of every shard may be lost.
        const survivable = (id: NodeId): boolean =>
          [...this.groups.values()].every((g) =>
            isQuorum(voterSets(g.conf), (v) => v !== id && !this.node(v).destroyed),
          );
        const candidates = this.inService().filter(
          (n) => n.up && (metaGone === 0 || !this.metaVoters.includes(n.id)) && survivable(n.id),
        );
        if (this.inService().length <= 3 || candidates.length === 0) return;
        const n = p.pick(candidates);
        n.destroyed = true;
        n.up = false;
        n.epoch++;
        this.stats.losses++;
        this.lastLossAt = this.now;
        this.log(`nemesis: lose ${n.id} for good`);
        this.topologyChanged();
        return;
      }
      case "isolateLeader":
      case "isolate": {
        if (down.length >= 2) return;
        const pool = existing.filter((n) => n.up && !n.isolated).map((n) => n.id);
        if (pool.length === 0) return;
        const target = action === "isolateLeader" ? this.metaLeader : p.pick(pool);
        if (target === undefined) return;
        const n = this.node(target);
        if (!n.up || n.isolated) return;
        n.isolated = true;
        this.stats.isolations++;
        const forMs = p.chance(0.2)
          ? this.liveness.deadAfterMs + p.range(1_000, 20_000)
          : p.range(2_000, 30_000);
        this.log(
          `nemesis: isolate ${target}${target === this.metaLeader ? " (meta leader)" : ""} for ${forMs}ms`,
        );
        this.queue.push(this.now + forMs, { k: "reconnect", node: target });
        this.topologyChanged();
        return;
      }
      case "join": {
        if (this.nodes.size >= NODES_MAX) return;
        const id = nodeName(this.nextNodeNum++);
        this.addNode(id);
        this.stats.joins++;
        this.log(`nemesis: join ${id} ${JSON.stringify(this.node(id).labels)}`);
        return;
      }
      case "drain":
      case "remove": {
        if (!this.metaOk() || this.activeCount() <= 3) return;
        const pool = this.inService().filter((n) =>
          action === "drain" ? this.adminOf(n.id) === "active" : true,
        );
        if (pool.length === 0) return;
        const n = p.pick(pool);
        this.setAdmin(n.id, action === "drain" ? "draining" : "removed");
        if (action === "drain") this.stats.drains++;
        else this.stats.removals++;
        return;
      }
      case "activate": {
        if (!this.metaOk()) return;
        const pool = this.inService().filter((n) => this.adminOf(n.id) === "draining");
        if (pool.length === 0) return;
        this.setAdmin(p.pick(pool).id, "active");
        return;
      }
      case "decommission": {
        // The operator stops a removed node once nothing lists it any more.
        const pool = [...this.nodes.values()].filter(
          (n) =>
            !n.destroyed &&
            this.adminOf(n.id) === "removed" &&
            !this.metaVoters.includes(n.id) &&
            this.holders(n.id).length === 0,
        );
        if (pool.length === 0) return;
        const n = p.pick(pool);
        n.destroyed = true;
        n.up = false;
        n.epoch++;
        this.stats.decommissions++;
        this.log(`nemesis: decommission ${n.id}`);
        this.topologyChanged();
        return;
      }
      case "create": {
        // PUT /v1/keyspaces through some node: planKeyspace over the members it knows.
        const via = existing.filter((n) => this.canTalk(n.id));
        if (via.length === 0 || this.records.size >= 6) return;
        const n = p.pick(via);
        this.refresh(n);
        const name = `ks${this.records.size}`;
        const sharding: Sharding = p.pick(["hash", "range"]);
        const replicas = this.lossesMax > 0 ? 3 : p.pick([1, 2, 3]);
        // As KeyspaceAdmin.create: only live members that take replicas.
        const eligible = this.membersOf(n).filter(
          (m) => this.livenessOf(n, m) === "alive" && this.adminOf(m) === "active",
        );
        if (eligible.length === 0) return;
        const rec = this.createKeyspace(
          name,
          sharding,
          replicas,
          sharding === "hash" ? p.range(2, 6) : 1,
          eligible,
        );
        this.stats.creates++;
        this.log(`nemesis: create ${name} via ${n.id}`);
        const bad = rec.shards.flatMap((s) =>
          s.replicas.filter(
            (r) => this.livenessOf(n, r) !== "alive" || this.adminOf(r) !== "active",
          ),
        );
        if (bad.length > 0) {
          // A shard born with a quorum on lost nodes can never elect a leader: that stays this
          // issue's consequence. One that can still elect is repaired like any other.
          for (const s of rec.shards) {
            const g = this.groups.get(s.id) as Group;
            if (isQuorum(voterSets(g.conf), (v) => this.node(v).destroyed))
              g.taint = "create-on-ineligible";
          }
          this.failOrKnown(
            "create-on-ineligible",
            "create-target",
            `keyspace ${name} created via ${n.id} places replicas on ${[...new Set(bad)].map((r) => `${r} (${this.livenessOf(n, r)}, ${this.adminOf(r)})`).join(", ")}`,
          );
        }
        for (const s of rec.shards) this.scheduleElection(this.groups.get(s.id) as Group);
        return;
      }
    }
  }

  private setAdmin(id: NodeId, admin: "active" | "draining" | "removed"): void {
    const cur = this.memberRecords.get(id) ?? this.memberRecordOf(id);
    if (cur.admin === "removed") return;
    const { admin: _old, ...rest } = cur;
    this.memberRecords.set(id, admin === "active" ? rest : { ...rest, admin });
    this.log(`nemesis: ${id} is ${admin}`);
  }

  private onRestart(id: NodeId): void {
    const n = this.node(id);
    if (n.destroyed || n.up) return;
    n.up = true;
    this.log(`restart ${id}`);
    this.queue.push(this.now + this.prng.range(1, NODE_TICK_MS), {
      k: "tick",
      node: id,
      epoch: n.epoch,
    });
    this.topologyChanged();
  }

  private onReconnect(id: NodeId): void {
    const n = this.node(id);
    if (!n.isolated) return;
    n.isolated = false;
    this.log(`reconnect ${id}`);
    this.topologyChanged();
  }

  private onHeal(): void {
    this.healedAt = this.now;
    this.stats.shardsAtHeal = this.groups.size;
    this.log("heal: every fault ends");
    for (const n of this.nodes.values()) {
      if (n.destroyed) continue;
      if (n.isolated) this.onReconnect(n.id);
      if (!n.up) this.onRestart(n.id);
    }
    this.queue.push(this.now + 1_000, { k: "check" });
  }

  // ------------------------------------------------------------------ invariants

  private checkInvariants(): void {
    for (const g of this.groups.values()) {
      const vs = voterSets(g.conf);
      const voters = g.allVoters();
      // A shard born with a quorum on lost nodes never held data (that issue is reported).
      if (g.taint === "create-on-ineligible") continue;
      // Safety: voters missing committed entries must not be able to elect one of their own.
      const stale = new Set(
        voters.filter((v) => !this.node(v).destroyed && (g.match.get(v) ?? 0) < g.commit),
      );
      if (isQuorum(vs, (v) => stale.has(v)))
        this.fail(
          "data-safety",
          `${g.id}: voters ${[...stale].join(",")} lack committed entry ${g.commit} and form a quorum of ${describeConf(g.conf)}`,
        );
      // Durability: some surviving voter holds everything committed.
      if (!voters.some((v) => !this.node(v).destroyed && (g.match.get(v) ?? 0) >= g.commit))
        this.fail(
          "durability",
          `${g.id}: no surviving voter of ${describeConf(g.conf)} holds committed entry ${g.commit}`,
        );
      // Availability: losing the quorum is allowed only when the nemesis took down more voters
      // than the shard's replica count tolerates.
      const live = new Set(voters.filter((v) => this.live(v)));
      if (isQuorum(vs, (v) => live.has(v))) {
        g.out = false;
        continue;
      }
      const downCount = voters.length - live.size;
      const tolerated = Math.floor((g.peak - 1) / 2);
      if (downCount <= tolerated)
        this.fail(
          "unavailable",
          `${g.id}: no live quorum in ${describeConf(g.conf)} with only ${downCount} voter(s) down (${voters.filter((v) => !live.has(v)).join(",")}); ${g.peak} replicas tolerate ${tolerated}`,
        );
      if (!g.out) this.stats.outages++;
      g.out = true;
    }
  }

  private onCheck(): void {
    const healedAt = this.healedAt as number;
    const all = this.unconverged();
    const unmet = all.filter((u) => u.taint === undefined).map((u) => u.text);
    if (unmet.length === 0 && all.length > 0 && this.now >= this.convergeDeadline()) {
      // Only groups damaged by a tolerated known issue keep it from converging: that issue's.
      for (const u of all) if (u.taint) this.failOrKnown(u.taint, "convergence", u.text);
      this.convergedSince = this.now - STABLE_MS;
      return;
    }
    if (all.length === 0) {
      if (this.convergedSince === undefined) {
        this.convergedSince = this.now;
        this.stats.convergeMs = this.now - healedAt;
        this.log(`converged ${this.now - healedAt}ms after healing`);
      }
    } else {
      if (this.convergedSince !== undefined)
        this.fail(
          "convergence",
          `converged, then not any more: ${all
            .slice(0, 4)
            .map((u) => u.text)
            .join("; ")}`,
        );
      this.stats.convergeMs = -1;
    }
    this.queue.push(this.now + 1_000, { k: "check" });
  }

  /**
   * What keeps the cluster from its final state (empty: converged). An item caused by a group
   * a tolerated known issue damaged carries that issue.
   */
  private unconverged(): Unmet[] {
    const unmet: Unmet[] = [];
    const leader = this.metaLeader;
    if (leader === undefined || !this.metaOk()) return [{ text: "no metadata leader" }];
    const eligible = [...this.nodes.values()]
      .filter((n) => this.live(n.id) && this.adminOf(n.id) === "active")
      .map((n) => n.id);
    const eligibleSet = new Set(eligible);
    const zoneOf = (id: NodeId): string => this.node(id).labels.zone ?? "";
    const zonesAvailable = new Set(eligible.map(zoneOf)).size;
    const view = this.clusterView(
      this.node(leader),
      [...this.records.values()].map((r) => r.record),
    );
    const plan = planAll(view, { ...PLAN_LIMITS_DEFAULT, movesMax: MOVES_PER_ROUND });
    this.lastBlocked = plan.blocked.map((b) => `${b.shard} ${b.reason} (${b.detail})`);
    // The planner works from the metadata leader's view: a node that has just joined or come
    // back counts (balance moves replicas onto it) only once that view has its record and sees
    // it alive. Until then the cluster is not converged, though no plan says so yet.
    const seen = new Set(view.members.filter((m) => m.liveness === "alive").map((m) => m.id));
    for (const id of eligible)
      if (!seen.has(id)) unmet.push({ text: `${id} is alive but not yet in the planner's view` });
    // The known planner issue's signature: every move in flight can never finish (it waits
    // for a node that is gone and cannot be retargeted, or its group lost a quorum for good),
    // and together they use up the budget other shards wait for.
    const inFlight = view.shards.filter((sh) => moveInFlight(sh, view.stats[sh.id]));
    const stuck = inFlight.filter((sh) => {
      const g = this.groups.get(sh.id);
      const wedged =
        g !== undefined && !isQuorum(voterSets(g.conf), (v) => !this.node(v).destroyed);
      return (
        wedged || sh.voters.some((v) => !this.live(v) && !view.stats[sh.id]?.voters.includes(v))
      );
    });
    const starved = new Set(
      inFlight.length > 0 && stuck.length === inFlight.length
        ? plan.blocked.filter((b) => b.reason === "moves-limit").map((b) => b.shard)
        : [],
    );
    const taintOf = (shard: string): { taint?: KnownIssue } => {
      const t =
        this.groups.get(shard)?.taint ?? (starved.has(shard) ? "stuck-moves-budget" : undefined);
      return t === undefined ? {} : { taint: t };
    };
    const recorded = new Set<string>();
    for (const { record } of this.records.values()) {
      const R = record.replicas;
      const enough = eligible.length >= R;
      for (const s of record.shards) {
        recorded.add(s.id);
        const where = `${s.id} {${s.replicas.join(",")}}`;
        const add = (text: string): void => {
          unmet.push({ text: `${where}: ${text}`, ...taintOf(s.id) });
        };
        if (enough) {
          if (s.replicas.length !== R) add(`${s.replicas.length} replicas, not ${R}`);
          const off = s.replicas.filter((r) => !eligibleSet.has(r));
          if (off.length > 0) add(`on ${off.join(",")} (not alive and active)`);
          const zones = new Set(s.replicas.map(zoneOf)).size;
          if (zones < Math.min(R, zonesAvailable)) add(`${zones} zones of ${zonesAvailable}`);
        } else if (!eligible.every((e) => s.replicas.includes(e))) {
          add(`only ${eligible.length} eligible nodes, and not all hold it`);
        }
        const g = this.groups.get(s.id);
        if (g === undefined) {
          add("no group");
          continue;
        }
        if (g.start !== s.start || g.end !== s.end)
          add(`the group serves [${g.start}, ${g.end}) not [${s.start}, ${s.end})`);
        // With too few nodes the record may keep a lost or draining node (nowhere to move to):
        // then only the eligible nodes must be voters.
        const same =
          g.conf.voters.length === s.replicas.length &&
          s.replicas.every((r) => g.conf.voters.includes(r));
        if (isJoint(g.conf) || (enough && (!same || g.conf.learners.length > 0)))
          add(`actual ${describeConf(g.conf)}`);
        else if (!enough) {
          // Too few nodes: only moves between live nodes must have finished. A live voter the
          // record dropped stays while its successor is a lost node (nowhere else to go).
          const liveListed = s.replicas.filter((r) => this.live(r));
          const waiting = s.replicas.some((r) => !this.live(r) && !g.conf.voters.includes(r));
          const liveActual = [...g.conf.voters, ...g.conf.learners].filter((v) => this.live(v));
          if (
            liveListed.some((r) => !g.conf.voters.includes(r)) ||
            (!waiting && liveActual.some((v) => !s.replicas.includes(v)))
          )
            add(`actual ${describeConf(g.conf)} (a move between live nodes is unfinished)`);
        }
        if (g.leader === undefined) add("no leader");
        if (g.ccPending()) add("a change is pending");
        if (
          g.log.some((e) => e.kind === "split") ||
          (record.sharding === "range" &&
            g.sizeUnits >= this.splitUnits &&
            middleKey(record.name, g.start, g.end) !== undefined)
        )
          add(`splitting (${g.sizeUnits} units)`);
        // (A voter on a lost node stays when no other node can take its place.)
        const behind = g.conf.voters.filter(
          (v) => this.live(v) && (g.match.get(v) ?? 0) < g.commit,
        );
        if (behind.length > 0) add(`${behind.join(",")} behind`);
      }
    }
    for (const id of this.groups.keys())
      if (!recorded.has(id))
        unmet.push({ text: `group ${id} has no record (an unrecorded split)`, ...taintOf(id) });
    // Nodes being emptied hold nothing once there is room elsewhere.
    const neededMax = Math.max(...[...this.records.values()].map((r) => r.record.replicas));
    if (eligible.length >= neededMax) {
      for (const n of this.nodes.values()) {
        if (n.destroyed || this.adminOf(n.id) === "active") continue;
        const holders = this.holders(n.id);
        if (holders.length === 0) continue;
        const taints = new Set(holders.map((id) => taintOf(id).taint));
        const only = taints.size === 1 ? [...taints][0] : undefined;
        unmet.push({
          text: `${n.id} (${this.adminOf(n.id)}) still holds ${holders.join(",")}`,
          ...(only !== undefined ? { taint: only } : {}),
        });
      }
    }
    // The planner is done moving replicas (leader transfers may go on).
    for (const op of plan.ops) {
      if (op.kind === "transfer-leader" || op.kind === "split") continue;
      unmet.push({ text: `the planner still plans ${describeOp(op)}`, ...taintOf(op.shard) });
    }
    // The chunk ring covers exactly the eligible nodes.
    const ringNodes = new Set(this.ring?.flat() ?? []);
    const ringWant = Math.min(this.ringReplicas, eligible.length) * this.ringPartitions;
    if (
      [...ringNodes].some((id) => !eligibleSet.has(id)) ||
      (this.ring?.flat().length ?? 0) !== ringWant
    )
      unmet.push({ text: `the chunk ring is over ${this.ringKey}, not ${eligible.join(",")}` });
    return unmet;
  }

  /** Shards whose record lists `id`, or whose group's configuration has it. */
  private holders(id: NodeId): string[] {
    const out = new Set<string>();
    for (const r of this.records.values())
      for (const s of r.record.shards) if (s.replicas.includes(id)) out.add(s.id);
    for (const g of this.groups.values()) if (g.members().includes(id)) out.add(g.id);
    return [...out].sort();
  }
}

/** One reason the cluster has not converged. */
interface Unmet {
  readonly text: string;
  /** Caused by a group that a tolerated known issue damaged. */
  readonly taint?: KnownIssue;
}

function nodeName(i: number): NodeId {
  return `n${String(i).padStart(2, "0")}`;
}

function describeConf(cs: ConfState): string {
  return (
    `{${cs.voters.join(",")}}${isJoint(cs) ? `&{${cs.votersOutgoing.join(",")}}` : ""}` +
    (cs.learners.length > 0 ? `+learners{${cs.learners.join(",")}}` : "")
  );
}

function describeOp(op: PlacementOp): string {
  switch (op.kind) {
    case "add":
      return `${op.shard} +${op.add} (${op.reason})`;
    case "remove":
      return `${op.shard} -${op.remove} (${op.reason})`;
    case "replace":
      return `${op.shard} ${op.remove}->${op.add} (${op.reason})`;
    case "transfer-leader":
      return `${op.shard} lead ${op.from}->${op.to}`;
    case "split":
      return `${op.shard} split`;
  }
}

/** A position in a keyspace's encoded key space: 32 bits after the prefix (the end: 2^32). */
function positionOf(prefix: string, key: string): number {
  if (key === "") return POSITIONS;
  if (key === prefix) return 0;
  return Number.parseInt(key.slice(prefix.length, prefix.length + 8).padEnd(8, "0"), 16);
}

/** The key halving [start, end) (what ShardMachine.middleKey finds for evenly spread keys). */
function middleKey(keyspace: string, start: string, end: string): string | undefined {
  const prefix = keyspacePrefixHex(keyspace);
  const lo = positionOf(prefix, start);
  const hi = positionOf(prefix, end);
  if (hi - lo < 2) return undefined;
  const at =
    prefix +
    Math.floor((lo + hi) / 2)
      .toString(16)
      .padStart(8, "0");
  return at > start && (end === "" || at < end) ? at : undefined;
}

/** A shard of the keyspace, chosen in proportion to the width of its range (uniform keys). */
function pickByWidth(p: Prng, keyspace: string, groups: readonly Group[]): Group | undefined {
  if (groups.length === 0) return undefined;
  const prefix = keyspacePrefixHex(keyspace);
  const x = p.next() * POSITIONS;
  return (
    groups.find((g) => positionOf(prefix, g.start) <= x && x < positionOf(prefix, g.end)) ??
    groups[groups.length - 1]
  );
}
