/**
 * The deterministic cluster simulator. One process, a virtual clock, a seeded PRNG, N replicas
 * of the real raft/ code hosted by MemoryPeer, a faulty network and faulty disks, a nemesis
 * that partitions, crashes, pauses, reconfigures and transfers leadership, and clients that
 * record a history. Invariants are checked after every event; the history is checked for
 * linearizability at the end; liveness is checked after all faults heal.
 *
 * Everything random derives from the seed, so `runSeed(seed, opts)` replays a run exactly.
 */
import { AssertionError, Prng } from "../base/index.js";
import {
  type ConfChange,
  type Entry,
  isJoint,
  MemoryStorage,
  type Message,
  type NodeId,
  type TestingBugs,
} from "../raft/index.js";
import { decodeCommand, encodeCommand, type KvCommand, KvMachine } from "./kv.js";
import { checkLinearizable, type HistoryOp } from "./linearizability.js";
import { MemoryPeer } from "./peer.js";
import { EventQueue } from "./queue.js";

export type BugName = keyof TestingBugs;
export const BUG_NAMES: readonly BugName[] = [
  "commitOldTermByCounting",
  "voteWithoutLogCheck",
  "leaseWithoutCheckQuorum",
];

export interface SimOptions {
  readonly nodes: 3 | 5;
  /** Plant a deliberately broken rule (to prove the checkers catch it). */
  readonly bug?: BugName;
  /** Virtual milliseconds of faults and load before everything heals. */
  readonly loadMs?: number;
  /** Virtual milliseconds after healing within which the cluster must serve again. */
  readonly livenessMs?: number;
  /** Keep the last events for a failure report. */
  readonly traceEvents?: number;
}

export type ViolationKind =
  | "election-safety"
  | "leader-completeness"
  | "committed-entry-changed"
  | "state-machine-safety"
  | "log-matching"
  | "linearizability"
  | "liveness"
  | "forwarded-term"
  | "assertion";

export interface Violation {
  readonly kind: ViolationKind;
  readonly message: string;
  readonly atMs: number;
}

export interface SimStats {
  events: number;
  messages: number;
  ops: number;
  opsOk: number;
  opsInfo: number;
  opsFail: number;
  maxTerm: number;
  leaderChanges: number;
  crashes: number;
  pauses: number;
  partitions: number;
  confChanges: number;
  transfers: number;
  snapshotsSent: number;
  compactions: number;
  quiesces: number;
}

export interface SimResult {
  readonly seed: number;
  readonly violation: Violation | undefined;
  readonly stats: SimStats;
  readonly settings: string;
  readonly trace: readonly string[];
}

type OpKind = "read" | "write" | "cas" | "delete";
interface ClientOp {
  readonly id: number;
  readonly client: number;
  readonly key: string;
  readonly kind: OpKind;
  readonly value?: string;
  readonly expect?: string | null;
  readonly call: number;
  attempt: number;
  done: boolean;
  final: boolean;
}

type Resp =
  | { readonly kind: "ok"; readonly value?: string | null; readonly ok?: boolean }
  | { readonly kind: "retry"; readonly hint: NodeId }
  | { readonly kind: "fail" }
  /** The outcome is unknown (a refusal that says the proposal may have been appended). */
  | { readonly kind: "unknown" };

type Ev =
  | { readonly k: "tick"; readonly node: NodeId; readonly epoch: number }
  | { readonly k: "msg"; readonly m: Message; readonly senderEpoch: number }
  | { readonly k: "disk"; readonly node: NodeId; readonly epoch: number }
  | { readonly k: "req"; readonly node: NodeId; readonly op: ClientOp; readonly attempt: number }
  | { readonly k: "resp"; readonly op: ClientOp; readonly attempt: number; readonly resp: Resp }
  | { readonly k: "clientNext"; readonly client: number }
  | { readonly k: "timeout"; readonly op: ClientOp }
  | { readonly k: "nemesis" }
  | { readonly k: "restart"; readonly node: NodeId }
  | { readonly k: "resume"; readonly node: NodeId }
  | { readonly k: "cut"; readonly link: string; readonly on: boolean }
  | { readonly k: "diskNormal"; readonly node: NodeId }
  | { readonly k: "finalWrite"; readonly client: number }
  | { readonly k: "kill"; readonly node: NodeId; readonly epoch: number }
  | { readonly k: "heal" };

/** Node-local events that a paused process only sees when it resumes. */
type LocalEv = Extract<Ev, { k: "msg" } | { k: "disk" } | { k: "req" }>;

class SimNode {
  peer: MemoryPeer;
  up = true;
  paused = false;
  epoch = 0;
  pausedAt = 0;
  buffered: LocalEv[] = [];
  diskSlowFactor = 1;
  lastCommitSeen = 0;
  /** Proposals waiting to apply: index -> the term they were proposed in, and the op. */
  waiting = new Map<number, { term: number; op: ClientOp; attempt: number }>();
  /** Proposals forwarded to the leader (MsgProp): op id -> the term they were forwarded in. */
  forwarded = new Map<number, { term: number; op: ClientOp; attempt: number }>();
  reads = new Map<string, { op: ClientOp; attempt: number }>();
  readyReads: { index: number; op: ClientOp; attempt: number }[] = [];

  constructor(
    readonly id: NodeId,
    peer: MemoryPeer,
    readonly tickMs: number,
    readonly diskMs: number,
  ) {
    this.peer = peer;
  }

  get machine(): KvMachine {
    return this.peer.machine as KvMachine;
  }
}

class ViolationError extends Error {
  constructor(readonly violation: Violation) {
    super(violation.message);
  }
}

export function runSeed(seed: number, opts: SimOptions): SimResult {
  return new Simulation(seed, opts).run();
}

class Simulation {
  private readonly prng: Prng;
  private now = 0;
  private readonly queue = new EventQueue<Ev>();
  private readonly nodes = new Map<NodeId, SimNode>();
  private readonly cut = new Set<string>();
  private readonly stats: SimStats = {
    events: 0,
    messages: 0,
    ops: 0,
    opsOk: 0,
    opsInfo: 0,
    opsFail: 0,
    maxTerm: 0,
    leaderChanges: 0,
    crashes: 0,
    pauses: 0,
    partitions: 0,
    confChanges: 0,
    transfers: 0,
    snapshotsSent: 0,
    compactions: 0,
    quiesces: 0,
  };
  private readonly trace: string[] = [];
  private readonly history: HistoryOp[] = [];
  private readonly leaderOfTerm = new Map<number, NodeId>();
  private readonly committedTerm = new Map<number, number>();
  /** Index → the term in which it was first seen committed (see checkNode). */
  private readonly commitTermOf = new Map<number, number>();
  private maxCommitted = 0;
  private readonly appliedAt = new Map<number, string>();
  private nextOpId = 1;
  private nextValue = 1;
  private nextNodeNum: number;
  private healed = false;
  private readonly lastLeaderHint = new Map<number, NodeId>();
  /** Clients that have not yet had a write succeed since everything healed. */
  private readonly clientsAwaitingService = new Set<number>();
  private readonly outstanding = new Set<ClientOp>();

  // Per-seed settings, all drawn from the seed.
  private readonly tickMs = 10;
  private readonly electionTimeoutTicks: number;
  private readonly latencyMs: number;
  private readonly jitterMs: number;
  private readonly dropRate: number;
  private readonly dupRate: number;
  private readonly clients: number;
  private readonly keys: string[];
  private readonly snapshotEvery: number;
  private readonly maxAppendBytes: number;
  private readonly readMode: "quorum" | "lease";
  private readonly nemesisGapMs: [number, number];
  private readonly opTimeoutMs = 2_000;
  private readonly loadMs: number;
  private readonly livenessMs: number;
  private readonly bug: BugName | undefined;
  /** Probability that a newly elected leader is killed moments later (divergent logs). */
  private readonly leaderKillRate: number;
  /** Per leader tick, the probability that it tries to quiesce its group. */
  private readonly quiesceRate: number;
  /**
   * How often a follower forwards a write inside Raft instead of redirecting the client.
   * Drawn from its own source so that adding it left every other setting of a seed unchanged.
   */
  private readonly forwardRate: number;
  private readonly forwardPrng: Prng;

  constructor(
    readonly seed: number,
    readonly opts: SimOptions,
  ) {
    this.prng = new Prng(seed);
    const p = this.prng;
    this.bug = opts.bug;
    this.loadMs = opts.loadMs ?? 6_000;
    this.livenessMs = opts.livenessMs ?? 8_000;
    this.electionTimeoutTicks = p.range(8, 14);
    this.latencyMs = p.range(1, 8);
    this.jitterMs = p.range(0, 10);
    this.dropRate = p.pick([0, 0.01, 0.05, 0.1]);
    this.dupRate = p.pick([0, 0.01, 0.05]);
    this.clients = p.range(3, 6);
    this.keys = Array.from({ length: p.range(1, 4) }, (_, i) => `k${i}`);
    this.snapshotEvery = p.pick([10, 30, 100, 1_000_000]);
    this.maxAppendBytes = p.pick([64, 256, 4096, 1 << 20]);
    this.readMode =
      this.bug === "leaseWithoutCheckQuorum" ? "lease" : p.pick(["quorum", "lease"] as const);
    this.leaderKillRate = p.pick([0, 0, 0.1, 0.3]);
    this.quiesceRate = p.pick([0, 0.05, 0.5]);
    this.forwardPrng = new Prng((seed ^ 0x5f0d) >>> 0);
    this.forwardRate = this.forwardPrng.pick([0, 0.5, 1]);
    this.nemesisGapMs = p.pick([
      [50, 300],
      [100, 800],
      [300, 1500],
    ] as [number, number][]);

    const ids = Array.from({ length: opts.nodes }, (_, i) => `n${i + 1}`);
    this.nextNodeNum = opts.nodes + 1;
    for (const id of ids) this.createNode(id, ids);
  }

  settings(): string {
    return [
      `nodes=${this.opts.nodes}`,
      `election=${this.electionTimeoutTicks}t`,
      `latency=${this.latencyMs}+${this.jitterMs}ms`,
      `drop=${this.dropRate}`,
      `dup=${this.dupRate}`,
      `clients=${this.clients}`,
      `keys=${this.keys.length}`,
      `snapshotEvery=${this.snapshotEvery}`,
      `appendBytes=${this.maxAppendBytes}`,
      `reads=${this.readMode}`,
      `leaderKill=${this.leaderKillRate}`,
      `quiesce=${this.quiesceRate}`,
      `forward=${this.forwardRate}`,
      this.bug ? `bug=${this.bug}` : "",
    ]
      .filter(Boolean)
      .join(" ");
  }

  private createNode(id: NodeId, bootstrapVoters: readonly NodeId[] | undefined): SimNode {
    const p = this.prng;
    const options = {
      random: p.fork(),
      electionTimeoutTicks: this.electionTimeoutTicks,
      heartbeatIntervalTicks: 1,
      preVote: true,
      checkQuorum: this.bug !== "leaseWithoutCheckQuorum",
      readMode: this.readMode,
      // 20% lease margin covers the +-5% tick drift below with room to spare.
      leaseClockDriftTicks: Math.ceil(this.electionTimeoutTicks / 5),
      maxAppendBytes: this.maxAppendBytes,
      maxInflightMsgs: p.pick([1, 4, 64]),
      testingBugs: this.bug ? { [this.bug]: true } : undefined,
    };
    const onApply = (e: Entry) => this.onApply(id, e);
    const peer = bootstrapVoters
      ? MemoryPeer.bootstrap(id, bootstrapVoters, new KvMachine(), options, onApply)
      : new MemoryPeer(id, new MemoryStorage(), new KvMachine(), options, onApply);
    // Each node's clock runs up to 5% fast or slow.
    const tickMs = this.tickMs * (1 + (p.next() - 0.5) / 10);
    const n = new SimNode(id, peer, tickMs, p.pick([0.1, 0.5, 2]));
    this.nodes.set(id, n);
    this.queue.push(this.now + p.next() * tickMs, { k: "tick", node: id, epoch: n.epoch });
    return n;
  }

  run(): SimResult {
    let violation: Violation | undefined;
    try {
      for (let c = 0; c < this.clients; c++)
        this.queue.push(this.prng.range(0, 50), { k: "clientNext", client: c });
      this.queue.push(this.prng.range(100, 500), { k: "nemesis" });
      this.queue.push(this.loadMs, { k: "heal" });
      const endAt = this.loadMs + this.livenessMs;
      while (this.queue.size > 0) {
        const at = this.queue.peekTime() as number;
        if (at > endAt) break;
        const ev = this.queue.pop();
        if (!ev) break;
        this.now = ev.at;
        this.stats.events++;
        this.handle(ev.item);
        if (this.healed && this.clientsAwaitingService.size === 0) break;
      }
      this.checkLogMatching();
      if (this.clientsAwaitingService.size > 0) {
        this.violate(
          "liveness",
          `clients [${[...this.clientsAwaitingService]}] got no write through within ${this.livenessMs}ms of healing`,
        );
      }
      // Operations still in flight may or may not have taken effect.
      for (const op of this.outstanding) this.complete(op, "info", undefined);
      const lin = checkLinearizable(this.history);
      if (lin.ok === false) {
        const ops = lin.ops.map((o: HistoryOp) => JSON.stringify(o)).join("\n    ");
        this.violate("linearizability", `key ${lin.key}: ${lin.reason}\n    ${ops}`);
      }
    } catch (e) {
      if (e instanceof ViolationError) violation = e.violation;
      else if (e instanceof AssertionError)
        violation = { kind: "assertion", message: e.stack ?? e.message, atMs: this.now };
      else throw e;
    }
    return {
      seed: this.seed,
      violation,
      stats: this.stats,
      settings: this.settings(),
      trace: this.trace,
    };
  }

  private violate(kind: ViolationKind, message: string): never {
    if (kind === "liveness") message += `\n  nodes:\n    ${this.describeNodes().join("\n    ")}`;
    throw new ViolationError({ kind, message, atMs: Math.round(this.now) });
  }

  private describeNodes(): string[] {
    return [...this.nodes.values()].map((n) => {
      const st = n.peer.node.status();
      const conf = `voters=[${st.conf.voters}]${st.conf.votersOutgoing.length ? ` outgoing=[${st.conf.votersOutgoing}]` : ""} learners=[${st.conf.learners}]`;
      const prs = [...st.progress]
        .map(([id, p]) => `${id}:${p.state}/${p.match}/${p.next}`)
        .join(" ");
      return `${n.id} ${n.up ? (n.paused ? "paused" : "up") : "down"} ${st.role} term=${st.term} lead=${st.leader || "-"} commit=${st.commit} applied=${st.applied} last=${st.lastIndex} first=${st.firstIndex} ${conf} ${prs}`;
    });
  }

  private log(line: string): void {
    const max = this.opts.traceEvents ?? 0;
    if (max === 0) return;
    this.trace.push(`${this.now.toFixed(1).padStart(9)}ms ${line}`);
    if (this.trace.length > max) this.trace.shift();
  }

  // ------------------------------------------------------------------ event dispatch

  private handle(ev: Ev): void {
    switch (ev.k) {
      case "tick":
        this.onTick(ev.node, ev.epoch);
        return;
      case "msg":
      case "disk":
      case "req":
        this.deliverLocal(ev);
        return;
      case "resp":
        this.onResponse(ev.op, ev.attempt, ev.resp);
        return;
      case "clientNext":
        this.startOp(ev.client);
        return;
      case "timeout":
        this.onTimeout(ev.op);
        return;
      case "nemesis":
        this.nemesis();
        return;
      case "restart":
        this.restart(ev.node);
        return;
      case "resume":
        this.resume(ev.node);
        return;
      case "cut":
        if (ev.on) this.cut.add(ev.link);
        else this.cut.delete(ev.link);
        this.log(`${ev.on ? "clog" : "unclog"} ${ev.link}`);
        return;
      case "diskNormal": {
        const n = this.nodes.get(ev.node);
        if (n) n.diskSlowFactor = 1;
        return;
      }
      case "heal":
        this.heal();
        return;
      case "kill": {
        const n = this.nodes.get(ev.node);
        if (this.healed || !n || n.epoch !== ev.epoch) return;
        this.crash(ev.node);
        this.queue.push(this.now + this.prng.range(10, 500), { k: "restart", node: ev.node });
        return;
      }
      case "finalWrite":
        this.issue(ev.client, this.prng.pick(this.keys), "write", true);
        return;
    }
  }

  private onTick(id: NodeId, epoch: number): void {
    const n = this.nodes.get(id);
    if (!n?.up || n.epoch !== epoch) return;
    this.queue.push(this.now + n.tickMs, { k: "tick", node: id, epoch });
    if (n.paused) return; // the missed ticks are replayed on resume
    const node = n.peer.node;
    node.tick();
    const st = node.basicStatus();
    if (node.isQuiesced() && st.role === "follower" && !this.leaderReachable(n, st.leader)) {
      // What a host's node-level liveness does: the leader's node stopped answering, so the
      // group must run its election timer again.
      node.unquiesce();
    } else if (st.role === "leader" && this.prng.chance(this.quiesceRate)) {
      if (node.quiesce()) this.stats.quiesces++;
    }
    this.afterInput(n);
  }

  private leaderReachable(n: SimNode, leader: NodeId): boolean {
    const l = this.nodes.get(leader);
    return (
      l?.up === true &&
      !l.paused &&
      !this.cut.has(`${leader}>${n.id}`) &&
      !this.cut.has(`${n.id}>${leader}`)
    );
  }

  private deliverLocal(ev: LocalEv): void {
    if (
      ev.k === "msg" &&
      this.nodes.get(ev.m.from)?.epoch !== ev.senderEpoch &&
      this.prng.chance(0.5)
    ) {
      return; // the sender lost power while this was still in its queues
    }
    const id = ev.k === "msg" ? ev.m.to : ev.node;
    const n = this.nodes.get(id);
    if (!n?.up) {
      if (ev.k === "req") this.respond(ev.op, ev.attempt, { kind: "retry", hint: "" }, true);
      return;
    }
    if (ev.k === "disk" && ev.epoch !== n.epoch) return;
    if (n.paused) {
      n.buffered.push(ev);
      return;
    }
    this.processLocal(n, ev);
  }

  private processLocal(n: SimNode, ev: LocalEv): void {
    switch (ev.k) {
      case "msg":
        if (ev.m.type === "snap") this.stats.snapshotsSent++;
        n.peer.node.step(ev.m);
        break;
      case "disk":
        this.finishDisk(n);
        break;
      case "req":
        this.serve(n, ev.op, ev.attempt);
        break;
    }
    this.afterInput(n);
  }

  // ------------------------------------------------------------------ the host loop

  /** After any input: check invariants, and start persisting a Ready if the disk is idle. */
  private afterInput(n: SimNode): void {
    this.checkNode(n);
    if (n.peer.busy()) {
      // What the multi-Raft host does while a write is in flight: messages that depend on
      // nothing durable (a leader's appends and commit notifications, forwards) go out at once.
      for (const m of n.peer.node.takeEagerMessages()) this.send(m);
      return;
    }
    const rd = n.peer.beginReady();
    if (!rd) return;
    if (rd.snapshot) {
      // A forwarded proposal of the snapshot's term or older may be inside it, or lost: its
      // outcome is unknown, so its client will time out ("info").
      const snapTerm = rd.snapshot.meta.term;
      for (const [id, f] of n.forwarded) if (f.term <= snapTerm) n.forwarded.delete(id);
    }
    // A leader's appends go out while its own disk write is in flight (and are still delivered
    // if it crashes before the write completes, as on a real network).
    for (const m of rd.eagerMessages) this.send(m);
    const needsDisk =
      rd.mustSync ||
      rd.snapshot !== undefined ||
      rd.entries.length > 0 ||
      rd.hardState !== undefined;
    const latency = needsDisk ? n.diskMs * n.diskSlowFactor * (0.5 + this.prng.next()) : 0;
    this.queue.push(this.now + latency, { k: "disk", node: n.id, epoch: n.epoch });
  }

  private finishDisk(n: SimNode): void {
    const msgs = n.peer.finishReady();
    for (const m of msgs) this.send(m);
    // Refused forwards were certainly not appended: the client may retry them. Except UNKNOWN
    // (a leader of an earlier term may have appended it): the outcome is unknown, as a host says.
    for (const r of n.peer.refused.splice(0)) {
      const f = n.forwarded.get(decodeCommand(r.data).id);
      if (!f) continue;
      n.forwarded.delete(f.op.id);
      this.respond(
        f.op,
        f.attempt,
        r.reason === "UNKNOWN" ? { kind: "unknown" } : { kind: "retry", hint: "" },
      );
    }
    // Read permissions granted by raft: serve each once its index is applied.
    for (const rs of n.peer.readStates.splice(0)) {
      const r = n.reads.get(rs.context);
      if (!r) continue;
      n.reads.delete(rs.context);
      n.readyReads.push({ index: rs.index, op: r.op, attempt: r.attempt });
    }
    const st = n.peer.node.basicStatus();
    if (n.readyReads.length > 0) {
      const still: typeof n.readyReads = [];
      for (const r of n.readyReads) {
        if (st.applied >= r.index)
          this.respond(r.op, r.attempt, { kind: "ok", value: n.machine.get(r.op.key) });
        else still.push(r);
      }
      n.readyReads = still;
    }
    this.trackCommit(n);
    if (st.applied - n.peer.storage.snapshot().meta.index >= this.snapshotEvery) {
      n.peer.compact(this.prng.range(0, 5));
      this.stats.compactions++;
    }
  }

  private onApply(id: NodeId, e: Entry): void {
    const n = this.nodes.get(id);
    if (!n) return;
    // State machine safety: every replica applies the same entry at each index.
    const fingerprint = `${e.term}:${e.type}:${Buffer.from(e.data).toString("base64")}`;
    const prev = this.appliedAt.get(e.index);
    if (prev === undefined) this.appliedAt.set(e.index, fingerprint);
    else if (prev !== fingerprint) {
      this.violate(
        "state-machine-safety",
        `${id} applied ${fingerprint} at index ${e.index}, another replica applied ${prev}`,
      );
    }
    this.settleForwarded(n, e);
    const w = n.waiting.get(e.index);
    if (!w) return;
    n.waiting.delete(e.index);
    if (w.term !== e.term) {
      // Another leader's entry took this index: our proposal is certainly lost.
      this.respond(w.op, w.attempt, { kind: "fail" });
      return;
    }
    const result = n.machine.lastResult;
    this.respond(w.op, w.attempt, { kind: "ok", ok: result.ok });
  }

  /**
   * What a host does with forwarded proposals: answer when it applies its own (recognized by
   * the op id in the command); once an entry of a later term is applied, the ones still waiting
   * were certainly dropped ("fail", which the checker holds us to).
   */
  private settleForwarded(n: SimNode, e: Entry): void {
    if (n.forwarded.size === 0) return;
    if (e.type === "normal" && e.data.byteLength > 0) {
      const f = n.forwarded.get(decodeCommand(e.data).id);
      if (f) {
        n.forwarded.delete(f.op.id);
        if (f.term !== e.term) {
          this.violate(
            "forwarded-term",
            `op ${f.op.id} forwarded in term ${f.term} committed in ${e.term}`,
          );
        }
        this.respond(f.op, f.attempt, { kind: "ok", ok: n.machine.lastResult.ok });
      }
    }
    for (const [id, f] of n.forwarded) {
      if (f.term >= e.term) continue;
      n.forwarded.delete(id);
      this.respond(f.op, f.attempt, { kind: "fail" });
    }
  }

  private trackCommit(n: SimNode): void {
    const st = n.peer.node.basicStatus();
    for (let i = n.lastCommitSeen + 1; i <= st.commit; i++) {
      const t = n.peer.node.termAt(i);
      if (t === undefined) continue;
      const known = this.committedTerm.get(i);
      if (known === undefined) {
        this.committedTerm.set(i, t);
        // The term it was committed in: the first node to see it committed is its leader, or
        // a follower told by that leader, which is then in the leader's term.
        this.commitTermOf.set(i, st.term);
      } else if (known !== t) {
        this.violate(
          "committed-entry-changed",
          `${n.id} committed index ${i} with term ${t}, but term ${known} was committed there before`,
        );
      }
    }
    n.lastCommitSeen = Math.max(n.lastCommitSeen, st.commit);
    this.maxCommitted = Math.max(this.maxCommitted, st.commit);
  }

  private checkNode(n: SimNode): void {
    const st = n.peer.node.basicStatus();
    if (st.term > this.stats.maxTerm) this.stats.maxTerm = st.term;
    if (st.role !== "leader") return;
    const known = this.leaderOfTerm.get(st.term);
    if (known === undefined) {
      this.leaderOfTerm.set(st.term, n.id);
      this.stats.leaderChanges++;
      this.log(`${n.id} became leader of term ${st.term}`);
      if (!this.healed && this.prng.chance(this.leaderKillRate)) {
        // Kill it after it has sent a little: some followers get its entries, most do not.
        const at = this.now + this.prng.next() * (this.latencyMs + this.jitterMs) * 6;
        this.queue.push(at, { k: "kill", node: n.id, epoch: n.epoch });
      }
      // Leader completeness (Raft §5.4): a leader holds every entry committed in an earlier
      // term. Not every entry committed before it took office: a candidate of an older term
      // can win its votes and read them late (a paused node, delayed messages) after a newer
      // term committed entries it lacks. It cannot commit or confirm a read with them: the
      // majority that committed them is already past its term.
      const first = n.peer.node.status().firstIndex;
      for (let i = Math.max(first, 1); i <= this.maxCommitted; i++) {
        const want = this.committedTerm.get(i);
        if (want === undefined || (this.commitTermOf.get(i) ?? 0) >= st.term) continue;
        const have = n.peer.node.termAt(i);
        if (have !== want) {
          this.violate(
            "leader-completeness",
            `${n.id} became leader of term ${st.term} without committed entry ${i} (term ${want}; it has ${have})`,
          );
        }
      }
    } else if (known !== n.id) {
      this.violate("election-safety", `${n.id} and ${known} are both leaders of term ${st.term}`);
    }
  }

  private checkLogMatching(): void {
    const live = [...this.nodes.values()].filter((n) => n.up);
    for (let a = 0; a < live.length; a++) {
      for (let b = a + 1; b < live.length; b++) {
        const x = (live[a] as SimNode).peer.node;
        const y = (live[b] as SimNode).peer.node;
        const lo = Math.max(x.status().firstIndex, y.status().firstIndex);
        const hi = Math.min(x.status().lastIndex, y.status().lastIndex);
        let matched = false;
        for (let i = hi; i >= lo; i--) {
          const same = x.termAt(i) === y.termAt(i);
          if (same) matched = true;
          else if (matched) {
            this.violate(
              "log-matching",
              `${x.id} and ${y.id} agree on a later entry but differ at index ${i}`,
            );
          }
        }
      }
    }
  }

  // ------------------------------------------------------------------ the network

  private send(m: Message): void {
    this.stats.messages++;
    if (this.cut.has(`${m.from}>${m.to}`)) return;
    if (this.prng.chance(this.dropRate)) return;
    const copies = this.prng.chance(this.dupRate) ? 2 : 1;
    const senderEpoch = this.nodes.get(m.from)?.epoch ?? 0;
    for (let i = 0; i < copies; i++) {
      const delay = this.latencyMs + this.prng.next() * this.jitterMs;
      this.queue.push(this.now + delay, { k: "msg", m, senderEpoch });
    }
  }

  // ------------------------------------------------------------------ clients

  private startOp(client: number): void {
    if (this.healed) return;
    const p = this.prng;
    const key = p.pick(this.keys);
    const r = p.next();
    const kind: OpKind = r < 0.4 ? "read" : r < 0.75 ? "write" : r < 0.95 ? "cas" : "delete";
    this.issue(client, key, kind, false);
  }

  private issue(client: number, key: string, kind: OpKind, final: boolean): void {
    const p = this.prng;
    const base = {
      id: this.nextOpId++,
      client,
      key,
      kind,
      call: this.now,
      attempt: 0,
      done: false,
      final,
    };
    let op: ClientOp;
    if (kind === "write") op = { ...base, value: `v${this.nextValue++}` };
    else if (kind === "cas") {
      const last = this.nextValue - 1;
      const expect = p.chance(0.2) ? null : `v${Math.max(1, last - p.range(0, 3))}`;
      op = { ...base, value: `v${this.nextValue++}`, expect };
    } else op = base;
    this.stats.ops++;
    this.outstanding.add(op);
    this.queue.push(this.now + this.opTimeoutMs, { k: "timeout", op });
    this.sendRequest(op, this.lastLeaderHint.get(client));
  }

  private sendRequest(op: ClientOp, hint: NodeId | undefined): void {
    const ids = [...this.nodes.keys()];
    const target = hint && this.nodes.has(hint) ? hint : this.prng.pick(ids);
    op.attempt++;
    this.queue.push(this.now + this.latencyMs / 2, {
      k: "req",
      node: target,
      op,
      attempt: op.attempt,
    });
  }

  /** A node receives a client request. */
  private serve(n: SimNode, op: ClientOp, attempt: number): void {
    const node = n.peer.node;
    if (op.kind === "read") {
      const ctx = `${op.id}.${attempt}`;
      const r = node.readIndex(ctx);
      if (r.ok) n.reads.set(ctx, { op, attempt });
      else
        this.respond(op, attempt, {
          kind: "retry",
          hint: r.code === "NOT_LEADER" ? r.leaderHint : "",
        });
      return;
    }
    let cmd: KvCommand;
    if (op.kind === "write") cmd = { op: "put", key: op.key, value: op.value as string, id: op.id };
    else if (op.kind === "delete") cmd = { op: "del", key: op.key, id: op.id };
    else
      cmd = {
        op: "cas",
        key: op.key,
        expect: op.expect ?? null,
        value: op.value as string,
        id: op.id,
      };
    const forward = this.forwardRate > 0 && this.forwardPrng.chance(this.forwardRate);
    const r = forward
      ? node.proposeOrForward(encodeCommand(cmd))
      : node.propose(encodeCommand(cmd));
    if (r.ok && "forwardedTo" in r) n.forwarded.set(op.id, { term: r.term, op, attempt });
    else if (r.ok) n.waiting.set(r.index, { term: r.term, op, attempt });
    else if (r.code === "NOT_LEADER" || r.code === "TRANSFERRING")
      this.respond(op, attempt, { kind: "retry", hint: r.leaderHint });
    else this.respond(op, attempt, { kind: "fail" });
  }

  private respond(op: ClientOp, attempt: number, resp: Resp, immediate = false): void {
    this.queue.push(this.now + (immediate ? 0 : this.latencyMs / 2), {
      k: "resp",
      op,
      attempt,
      resp,
    });
  }

  private onResponse(op: ClientOp, attempt: number, resp: Resp): void {
    if (op.done || attempt !== op.attempt) return;
    if (resp.kind === "retry") {
      if (resp.hint) this.lastLeaderHint.set(op.client, resp.hint);
      else this.lastLeaderHint.delete(op.client);
      const hint = resp.hint || undefined;
      const backoff = hint ? 1 : this.prng.range(5, 30);
      this.queue.push(this.now + backoff, {
        k: "req",
        node: hint ?? this.prng.pick([...this.nodes.keys()]),
        op,
        attempt: ++op.attempt,
      });
      return;
    }
    if (resp.kind === "unknown") {
      this.lastLeaderHint.delete(op.client);
      this.complete(op, "info", undefined);
      return;
    }
    this.complete(op, resp.kind === "ok" ? "ok" : "fail", resp);
  }

  private onTimeout(op: ClientOp): void {
    if (op.done) return;
    this.lastLeaderHint.delete(op.client);
    this.complete(op, "info", undefined);
  }

  private complete(op: ClientOp, status: "ok" | "fail" | "info", resp: Resp | undefined): void {
    op.done = true;
    this.outstanding.delete(op);
    if (status === "ok") this.stats.opsOk++;
    else if (status === "fail") this.stats.opsFail++;
    else this.stats.opsInfo++;
    const result =
      status !== "ok" || !resp || resp.kind !== "ok"
        ? undefined
        : op.kind === "read"
          ? { value: resp.value ?? null }
          : op.kind === "cas"
            ? { ok: resp.ok ?? false }
            : undefined;
    const h: HistoryOp = {
      id: op.id,
      client: op.client,
      key: op.key,
      kind: op.kind,
      status,
      call: op.call,
      ret: status === "info" ? Number.POSITIVE_INFINITY : this.now,
      ...(op.value !== undefined ? { value: op.value } : {}),
      ...(op.kind === "cas" ? { expect: op.expect ?? null } : {}),
      ...(result ? { result } : {}),
    };
    this.history.push(h);
    this.log(
      `client ${op.client} ${op.kind} ${op.key} ${op.value ?? ""} -> ${status} ${JSON.stringify(result ?? "")}`,
    );
    if (op.final) {
      // After healing, a client keeps writing (a new op each time, as a real client retrying
      // after a timeout would) until one succeeds; liveness bounds how long that may take.
      if (status === "ok") this.clientsAwaitingService.delete(op.client);
      else if (this.clientsAwaitingService.has(op.client)) {
        this.queue.push(this.now + this.prng.range(1, 20), { k: "finalWrite", client: op.client });
      }
      return;
    }
    if (this.healed) return;
    // Now and then a client goes quiet, so groups fall idle (and may quiesce).
    const think = this.prng.chance(0.05) ? this.prng.range(100, 1000) : this.prng.range(0, 20);
    this.queue.push(this.now + think, { k: "clientNext", client: op.client });
  }

  // ------------------------------------------------------------------ faults

  private leaderNode(): SimNode | undefined {
    let best: SimNode | undefined;
    let term = -1;
    for (const n of this.nodes.values()) {
      if (!n.up || n.paused) continue;
      const st = n.peer.node.basicStatus();
      if (st.role === "leader" && st.term > term) {
        best = n;
        term = st.term;
      }
    }
    return best;
  }

  private nemesis(): void {
    if (this.healed) return;
    const p = this.prng;
    const [lo, hi] = this.nemesisGapMs;
    this.queue.push(this.now + p.range(lo, hi), { k: "nemesis" });
    this.checkLogMatching();
    const ids = [...this.nodes.keys()];
    const live = ids.filter((id) => this.nodes.get(id)?.up);
    const r = p.next();
    if (r < 0.15) {
      // Random partition into two sides.
      this.cut.clear();
      const side = new Set(ids.filter(() => p.chance(0.5)));
      for (const a of ids)
        for (const b of ids) if (side.has(a) !== side.has(b)) this.cut.add(`${a}>${b}`);
      this.stats.partitions++;
      this.log(`partition {${[...side]}} | rest`);
    } else if (r < 0.25) {
      // Isolate the leader (or a random node).
      const target = this.leaderNode()?.id ?? p.pick(ids);
      this.cut.clear();
      for (const b of ids)
        if (b !== target) {
          this.cut.add(`${target}>${b}`);
          this.cut.add(`${b}>${target}`);
        }
      this.stats.partitions++;
      this.log(`isolate ${target}`);
    } else if (r < 0.33) {
      // Clog random links one way, one by one, and unclog them later in random order.
      const links: string[] = [];
      for (let i = p.range(1, 4); i > 0; i--) {
        const a = p.pick(ids);
        const b = p.pick(ids);
        if (a !== b) links.push(`${a}>${b}`);
      }
      let t = this.now;
      for (const l of links) {
        t += p.range(5, 100);
        this.queue.push(t, { k: "cut", link: l, on: true });
      }
      for (const l of p.shuffle(links.slice())) {
        t += p.range(50, 600);
        this.queue.push(t, { k: "cut", link: l, on: false });
      }
      this.stats.partitions++;
    } else if (r < 0.43) {
      this.cut.clear();
      this.log("heal network");
    } else if (r < 0.55) {
      // Crash a node (a leader half of the time); it restarts from its disk later.
      const leader = this.leaderNode();
      const target = leader && p.chance(0.5) ? leader.id : p.pick(live.length > 0 ? live : ids);
      this.crash(target);
      this.queue.push(this.now + p.range(20, 1500), { k: "restart", node: target });
    } else if (r < 0.63) {
      // Pause a process (SIGSTOP): it stops ticking and reading; time goes on without it.
      const leader = this.leaderNode();
      const target = leader && p.chance(0.6) ? leader : this.nodes.get(p.pick(ids));
      if (target?.up && !target.paused) {
        target.paused = true;
        target.pausedAt = this.now;
        this.stats.pauses++;
        this.log(`pause ${target.id}`);
        this.queue.push(this.now + p.range(50, 2000), { k: "resume", node: target.id });
      }
    } else if (r < 0.7) {
      const n = this.nodes.get(p.pick(ids));
      if (n) {
        n.diskSlowFactor = p.pick([20, 100]);
        this.queue.push(this.now + p.range(100, 1000), { k: "diskNormal", node: n.id });
        this.log(`slow disk ${n.id}`);
      }
    } else if (r < 0.85) {
      this.changeMembership();
    } else {
      const leader = this.leaderNode();
      if (leader) {
        const voters = leader.peer.node.status().conf.voters.filter((v) => v !== leader.id);
        if (voters.length > 0) {
          const to = p.pick(voters);
          const res = leader.peer.node.transferLeadership(to);
          this.log(`transfer ${leader.id} -> ${to}: ${res.ok ? "started" : res.code}`);
          if (res.ok) this.stats.transfers++;
          this.afterInput(leader);
        }
      }
    }
  }

  private changeMembership(): void {
    const p = this.prng;
    const leader = this.leaderNode();
    if (!leader) return;
    const conf = leader.peer.node.status().conf;
    if (isJoint(conf)) return;
    const voters = conf.voters;
    const learners = conf.learners;
    const members = new Set([...voters, ...learners]);
    const spare = [...this.nodes.keys()].filter((id) => !members.has(id));
    const canCreate = this.nextNodeNum <= this.opts.nodes + 3;
    const newNode = (): NodeId | undefined => {
      if (spare.length > 0 && p.chance(0.5)) return p.pick(spare);
      if (!canCreate) return spare.length > 0 ? p.pick(spare) : undefined;
      const id = `n${this.nextNodeNum++}`;
      this.createNode(id, undefined);
      return id;
    };
    let cc: ConfChange | undefined;
    const r = p.next();
    if (r < 0.25) {
      const id = newNode();
      if (id) cc = { changes: [{ type: "addLearner", node: id }] };
    } else if (r < 0.45 && learners.length > 0) {
      cc = { changes: [{ type: "addVoter", node: p.pick(learners) }] };
    } else if (r < 0.6 && (voters.length > 3 || learners.length > 0)) {
      const pool = voters.length > 3 ? [...voters, ...learners] : [...learners];
      cc = { changes: [{ type: "removeNode", node: p.pick(pool) }] };
    } else if (r < 0.9) {
      // Replace a voter: joint consensus (remove + add in one change).
      const id = newNode();
      if (id)
        cc = {
          changes: [
            { type: "removeNode", node: p.pick(voters) },
            { type: "addVoter", node: id },
          ],
        };
    } else if (voters.length > 3) {
      cc = { changes: [{ type: "addLearner", node: p.pick(voters) }] };
    }
    if (!cc) return;
    const res = leader.peer.node.proposeConfChange(cc);
    this.log(
      `conf change ${JSON.stringify(cc.changes)} via ${leader.id}: ${res.ok ? `index ${res.index}` : res.code}`,
    );
    if (res.ok) this.stats.confChanges++;
    this.afterInput(leader);
  }

  private crash(id: NodeId): void {
    const n = this.nodes.get(id);
    if (!n?.up) return;
    n.up = false;
    n.paused = false;
    n.buffered = [];
    n.epoch++;
    n.waiting.clear();
    n.forwarded.clear();
    n.peer.refused.length = 0;
    n.reads.clear();
    n.readyReads = [];
    this.stats.crashes++;
    this.log(`crash ${id}`);
  }

  private restart(id: NodeId): void {
    const n = this.nodes.get(id);
    if (!n || n.up) return;
    n.up = true;
    n.peer.restart(new KvMachine());
    n.lastCommitSeen = 0;
    this.log(`restart ${id}`);
    this.queue.push(this.now + n.tickMs, { k: "tick", node: id, epoch: n.epoch });
    this.afterInput(n);
  }

  private resume(id: NodeId): void {
    const n = this.nodes.get(id);
    if (!n?.up || !n.paused) return;
    n.paused = false;
    this.log(`resume ${id}`);
    // A correct host counts ticks from a monotonic clock: the time spent stopped is delivered
    // before anything else is processed, to the lease clock in full (this is what keeps a stale
    // lease from serving) and to the election timers in part (RawNode.elapse), as the
    // multi-Raft host does.
    const missed = Math.floor((this.now - n.pausedAt) / n.tickMs);
    if (missed > 0) n.peer.node.elapse(missed);
    this.afterInput(n);
    const buffered = n.buffered;
    n.buffered = [];
    for (const ev of buffered) {
      if (!n.up || n.paused) break;
      this.processLocal(n, ev);
    }
  }

  private heal(): void {
    this.healed = true;
    this.cut.clear();
    this.log("heal everything");
    for (const n of this.nodes.values()) {
      n.diskSlowFactor = 1;
      if (!n.up) this.restart(n.id);
      else if (n.paused) this.resume(n.id);
    }
    // Every client must get a write through within the liveness bound.
    for (let c = 0; c < this.clients; c++) {
      this.clientsAwaitingService.add(c);
      this.issue(c, this.prng.pick(this.keys), "write", true);
    }
  }
}
