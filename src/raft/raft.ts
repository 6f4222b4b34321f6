/**
 * The Raft protocol as a deterministic state machine (after etcd's raft library).
 *
 * It performs no I/O, reads no clock and starts no timer: time is `tick()`, the network is
 * `step()` in and `ready().messages` out, the disk is `ready().entries`/`hardState` out and
 * `RaftStorage` in. Randomness (election jitter) comes from the `Random` passed in. A host (the
 * multi-raft loop, or the simulator) drives it:
 *
 *   loop { tick()/step()/propose()...; if (hasReady()) { rd = ready(); persist(rd);
 *          send(rd.messages); apply(rd.committedEntries); advance(rd) } }
 *
 * Safety rules enforced here (see docs/raft.md for where each is checked):
 * - a leader counts only entries of its own term toward commitment (Raft §5.4.2);
 * - a vote is granted only to a candidate whose log is at least as up to date (§5.4.1);
 * - with check-quorum, a node that heard from a leader within the election timeout ignores
 *   (pre-)vote requests (unless a leadership transfer forces them): this is what makes the
 *   leader lease sound;
 * - the leader's own log counts toward commitment only once `advance()` confirms it durable;
 * - configuration changes take effect when applied, one at a time, and a node with unapplied
 *   committed configuration changes does not campaign.
 */
import { assert, type Random, unreachable } from "../base/index.js";
import {
  allMembers,
  applyConfChange,
  decodeConfChange,
  encodeConfChange,
  isJoint,
} from "./confchange.js";
import { RaftLog } from "./log.js";
import { Progress } from "./progress.js";
import { type JointVoters, jointCommitted, jointHasQuorum, jointVote } from "./quorum.js";
import { ENTRY_OVERHEAD_BYTES, entryBytes, type RaftStorage } from "./storage.js";
import {
  type ConfChange,
  type ConfState,
  type Entry,
  type ForwardProposeResult,
  type HardState,
  type Message,
  type MsgApp,
  type MsgAppResp,
  type MsgHeartbeat,
  type MsgHeartbeatResp,
  type MsgProp,
  type MsgReadIndex,
  type MsgSnap,
  type MsgVote,
  NONE,
  type NodeId,
  type ProposeResult,
  type PropRefusal,
  type ReadIndexResult,
  type ReadMode,
  type ReadState,
  type Ready,
  type Role,
  type Snapshot,
  type SoftState,
  type TransferResult,
} from "./types.js";
import { invalidMessage } from "./validate.js";

/**
 * Deliberately broken rules, used only to prove the simulator can catch protocol bugs.
 * Never set in production: each one breaks safety.
 */
export interface TestingBugs {
  /** Commit an entry of an earlier term as soon as a majority stores it (Raft Figure 8). */
  readonly commitOldTermByCounting?: boolean;
  /** Grant votes without checking that the candidate's log is up to date. */
  readonly voteWithoutLogCheck?: boolean;
  /** Serve lease reads on leadership alone without check-quorum (etcd's documented pitfall). */
  readonly leaseWithoutCheckQuorum?: boolean;
}

export interface RaftConfig {
  readonly id: NodeId;
  readonly storage: RaftStorage;
  readonly random: Random;
  /** Last index the state machine has applied durably (0 if it restarts from the snapshot). */
  readonly applied?: number;
  /** A follower campaigns after a random timeout in [electionTimeoutTicks, 2*electionTimeoutTicks). */
  readonly electionTimeoutTicks?: number;
  readonly heartbeatIntervalTicks?: number;
  readonly preVote?: boolean;
  readonly checkQuorum?: boolean;
  /** How `readIndex()` confirms leadership: a heartbeat round (default) or the leader lease. */
  readonly readMode?: ReadMode;
  /**
   * Ticks subtracted from the election timeout to get the lease length. The lease is sound if
   * no node's clock runs faster than the leader's by more than this many ticks per election
   * timeout (e.g. with 10-tick timeouts and a 2-tick margin: 20% relative clock-rate drift).
   */
  readonly leaseClockDriftTicks?: number;
  /** Largest append message (entries bytes). */
  readonly maxAppendBytes?: number;
  /** In-flight append window per follower in replicate state (messages and bytes; 0 = no byte bound). */
  readonly maxInflightMsgs?: number;
  readonly maxInflightBytes?: number;
  /** Proposals beyond this many uncommitted bytes are refused with OVERLOADED. */
  readonly maxUncommittedBytes?: number;
  /** Bound on reads waiting for a heartbeat round or for the leader's first commit. */
  readonly maxPendingReads?: number;
  /** Largest batch of committed entries handed out by one `ready()`. */
  readonly maxApplyBytes?: number;
  /** A snapshot unanswered for this many ticks is considered lost and sent again. */
  readonly snapshotRetryTicks?: number;
  readonly testingBugs?: TestingBugs;
}

interface PendingRead {
  readonly context: string;
  /** NONE for a local read; otherwise the follower that forwarded it. */
  readonly from: NodeId;
  readonly index: number;
  readonly seq: number;
}

export interface ProgressStatus {
  readonly match: number;
  readonly next: number;
  readonly state: string;
  readonly isLearner: boolean;
}

export interface RaftStatus {
  readonly id: NodeId;
  readonly role: Role;
  readonly term: number;
  readonly vote: NodeId;
  readonly leader: NodeId;
  readonly commit: number;
  readonly applied: number;
  readonly lastIndex: number;
  readonly firstIndex: number;
  readonly conf: ConfState;
  readonly leadTransferee: NodeId;
  readonly progress: ReadonlyMap<NodeId, ProgressStatus>;
}

const EMPTY = new Uint8Array(0);

export class RawNode {
  readonly id: NodeId;
  private readonly log: RaftLog;
  private readonly random: Random;
  private readonly electionTimeout: number;
  private readonly heartbeatInterval: number;
  private readonly preVote: boolean;
  private readonly checkQuorum: boolean;
  private readonly readMode: ReadMode;
  private readonly leaseTicks: number;
  private readonly maxAppendBytes: number;
  private readonly maxInflightMsgs: number;
  private readonly maxInflightBytes: number;
  private readonly maxUncommittedBytes: number;
  private readonly maxPendingReads: number;
  private readonly maxApplyBytes: number;
  private readonly snapshotRetryTicks: number;
  private readonly bugs: TestingBugs;

  private term = 0;
  private vote: NodeId = NONE;
  private lead: NodeId = NONE;
  private role: Role = "follower";
  /** Followers whose snapshot the storage could not provide when it was due (sendSnapshot). */
  private readonly snapshotsWanted = new Set<NodeId>();

  private conf: ConfState;
  private voters: JointVoters = { incoming: new Set(), outgoing: new Set() };
  private prs = new Map<NodeId, Progress>();
  private votes = new Map<NodeId, boolean>();
  private msgs: Message[] = [];
  private readStates: ReadState[] = [];
  /** Contexts of forwarded reads the leader refused, for the next Ready. */
  private refusedReads: string[] = [];
  /** Proposals to forward to `lead` at the next ready() (one MsgProp per cycle). */
  private forwardBuf: Entry[] = [];
  private forwardBytes = 0;
  /** Names this instance in its MsgProps (see MsgProp.incarnation); drawn when first needed. */
  private incarnation = "";
  private propSeq = 0;
  /**
   * Leader side: the MsgProps already taken in this term, per sender and incarnation (the
   * highest seq and the recent ones), so that a duplicate is never appended twice. Kept after
   * the node steps down, for late copies (answerUntakenProp): it is the last led term's.
   */
  private propsSeen = new Map<NodeId, Map<string, { max: number; recent: Set<number> }>>();
  /**
   * The terms this node led since it started (the newest LED_TERMS_MAX), and the first term it
   * can tell about: it may have led an earlier one (before a restart, or beyond that bound).
   */
  private ledTerms: number[] = [];
  private ledTermsKnownFrom = 1;
  /** Forwarded proposals known not to have been appended, for the next ready(). */
  private refused: { data: Uint8Array; reason: PropRefusal }[] = [];

  /** Ticks since this node started (the lease clock; only differences matter). */
  private now = 0;
  private electionElapsed = 0;
  private heartbeatElapsed = 0;
  private randomizedElectionTimeout = 0;
  /** Ticks since a leader was last heard from (see inLease and the constructor). */
  private ticksSinceLeader = 0;

  private leadTransferee: NodeId = NONE;
  private leaseDisabled = false;
  private pendingConfIndex = 0;
  /**
   * A leader's cache for leaving(): the members once its log up to `index` is applied (a
   * leader's log only grows within its term, so index and term identify that prefix).
   */
  private pendingMembers: { index: number; term: number; members: ReadonlySet<NodeId> } | undefined;
  private uncommittedBytes = 0;
  private heartbeatSeq = 0;
  private pendingReads: PendingRead[] = [];
  private readsAwaitingCommit: { context: string; from: NodeId; mode: ReadMode }[] = [];
  private readRoundNeeded = false;
  private appendNeeded = false;

  /** Quiesced: the group is idle and ticks are ignored (see quiesce()). */
  private quiesced = false;

  private prevSoft: SoftState;
  private prevHard: HardState;
  private readyInFlight = false;
  /** Messages dropped because no correct peer sends them (`invalidMessage`). */
  invalidMessages = 0;

  constructor(cfg: RaftConfig) {
    this.id = cfg.id;
    assert(cfg.id !== NONE, "a node needs a non-empty id");
    this.random = cfg.random;
    this.electionTimeout = cfg.electionTimeoutTicks ?? 10;
    this.heartbeatInterval = cfg.heartbeatIntervalTicks ?? 1;
    assert(
      this.heartbeatInterval < this.electionTimeout,
      "heartbeat interval must be below the election timeout",
    );
    this.preVote = cfg.preVote ?? true;
    this.checkQuorum = cfg.checkQuorum ?? true;
    this.bugs = cfg.testingBugs ?? {};
    this.readMode = cfg.readMode ?? "quorum";
    const drift = cfg.leaseClockDriftTicks ?? Math.max(1, Math.floor(this.electionTimeout / 5));
    this.leaseTicks = this.electionTimeout - drift;
    assert(this.leaseTicks > 0, "lease clock-drift margin must be below the election timeout");
    this.maxAppendBytes = cfg.maxAppendBytes ?? 1 << 20;
    this.maxInflightMsgs = cfg.maxInflightMsgs ?? 256;
    this.maxInflightBytes = cfg.maxInflightBytes ?? 32 << 20;
    this.maxUncommittedBytes = cfg.maxUncommittedBytes ?? 64 << 20;
    this.maxPendingReads = cfg.maxPendingReads ?? 4096;
    this.maxApplyBytes = cfg.maxApplyBytes ?? 64 << 20;
    this.snapshotRetryTicks = cfg.snapshotRetryTicks ?? 3 * this.electionTimeout;

    const storage = cfg.storage;
    this.log = new RaftLog(storage, cfg.applied ?? 0);
    const hs = storage.hardState();
    this.term = hs.term;
    this.vote = hs.vote;

    // The configuration is the log base's (snapshot or compaction point), plus every
    // configuration entry after it that the state machine has already applied.
    const base = storage.snapshotMeta();
    let conf = base.confState;
    const from = Math.max(base.index + 1, this.log.firstIndex());
    if (this.log.applied >= from) {
      for (const e of this.log.slice(from, this.log.applied + 1, Number.POSITIVE_INFINITY)) {
        if (e.type !== "conf") continue;
        const r = applyConfChange(conf, decodeConfChange(e.data));
        if (r.ok) conf = r.confState;
      }
    }
    this.conf = conf;
    this.switchToConfig(conf);
    this.becomeFollower(this.term, NONE);
    // A node restarting may have acknowledged a leader's heartbeat just before it crashed, and
    // that leader may be serving lease reads on the strength of it: honour the lease for one
    // election timeout after boot. Leaders exist only from term 2 on (bootstrap is term 1), so
    // a node whose durable term is below 2 never promised anything and may vote at once.
    this.ticksSinceLeader = this.term >= 2 ? 0 : this.electionTimeout;
    this.ledTermsKnownFrom = this.term + 1;
    this.prevSoft = this.softState();
    this.prevHard = this.hardState();
  }

  // ---------------------------------------------------------------- public API

  /** Advances logical time by one tick. */
  tick(): void {
    if (this.quiesced) return;
    this.now++;
    this.ticksSinceLeader++;
    if (this.role === "leader") this.tickHeartbeat();
    else this.tickElection();
  }

  /**
   * Advances logical time by `ticks` (at least 1) at once: what a host delivers when its timer
   * fires late. The lease clock advances by all of them, so a leader that stalled never trusts
   * a stale lease; the election and heartbeat timers by at most half an election timeout. The
   * time this node could not run says nothing about its peers (what they sent meanwhile waits
   * to be read), and counting all of it would start elections, and check-quorum step-downs, on
   * every replica of a group that stalled together (each applying the same large entry, say)
   * before they read the heartbeats that show the leader alive. Followers then keep their lease
   * promises longer in real time, never shorter, so lease reads stay sound.
   */
  elapse(ticks: number): void {
    assert(Number.isSafeInteger(ticks) && ticks >= 1, () => `elapse(${ticks})`);
    if (this.quiesced) return;
    const timers = Math.min(ticks, Math.max(1, Math.floor(this.electionTimeout / 2)));
    this.now += ticks - timers;
    for (let i = 0; i < timers; i++) this.tick();
  }

  /** Starts an election now (as if the election timeout had elapsed). */
  campaign(): void {
    this.unquiesce();
    this.hup(false);
  }

  /**
   * Leader only: if every replica has the whole log, nothing is pending and no transfer runs,
   * tell the followers to stop their election timers and stop ticking ourselves. An idle group
   * then costs no CPU and sends nothing. Anything that happens (a proposal, a read, any message
   * other than the quiescing heartbeat) wakes it. Followers must be woken by their host when the
   * leader's node stops answering (node-level liveness), or the group would wait forever.
   * Returns whether the group is now quiesced.
   */
  quiesce(): boolean {
    if (this.role !== "leader") return false;
    if (this.quiesced) return true;
    const last = this.log.lastIndex();
    if (this.log.committed !== last || this.leadTransferee !== NONE || this.appendNeeded)
      return false;
    if (
      this.pendingReads.length > 0 ||
      this.readsAwaitingCommit.length > 0 ||
      this.readRoundNeeded
    ) {
      return false;
    }
    if (isJoint(this.conf)) return false;
    for (const [id, pr] of this.prs) if (id !== this.id && pr.match !== last) return false;
    this.heartbeatSeq++;
    for (const id of this.prs.keys()) {
      if (id === this.id) continue;
      this.send({
        type: "heartbeat",
        to: id,
        from: this.id,
        term: this.term,
        commit: last,
        seq: this.heartbeatSeq,
        sentTick: this.now,
        quiesce: true,
      });
    }
    this.quiesced = true;
    return true;
  }

  /** Wakes a quiesced group: the election timer (or heartbeats) start again from zero. */
  unquiesce(): void {
    if (!this.quiesced) return;
    this.quiesced = false;
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    if (this.role === "leader") {
      // Followers were not heard from while we slept: give them a check-quorum round. Our clock
      // stood still while theirs may not have: acknowledgements from before do not count for
      // the lease, which restarts with the heartbeats answered from now on.
      for (const pr of this.prs.values()) {
        pr.recentActive = true;
        pr.ackedSentTick = Number.NEGATIVE_INFINITY;
      }
      this.bcastHeartbeat();
    }
  }

  isQuiesced(): boolean {
    return this.quiesced;
  }

  propose(data: Uint8Array): ProposeResult {
    this.unquiesce();
    const refused = this.checkCanPropose();
    if (refused) return refused;
    const size = data.byteLength + ENTRY_OVERHEAD_BYTES;
    if (this.uncommittedBytes > 0 && this.uncommittedBytes + size > this.maxUncommittedBytes) {
      return {
        ok: false,
        code: "OVERLOADED",
        message: `more than ${this.maxUncommittedBytes} bytes of proposals are waiting to commit`,
      };
    }
    const e = this.appendEntry("normal", data);
    return { ok: true, index: e.index, term: e.term };
  }

  /**
   * Proposes on the leader, or forwards to it from a follower that knows it. A forwarded
   * proposal either shows up among committed entries with a term equal to the returned
   * `term`, or comes back in `Ready.refusedProposals`, or is lost (the leader changed, a
   * message was dropped): then an entry of a later term gets applied without it. See
   * docs/raft.md, "Forwarded proposals". The host recognizes its own proposals by their data.
   */
  proposeOrForward(data: Uint8Array): ForwardProposeResult {
    if (this.role === "leader") return this.propose(data);
    if (this.role !== "follower" || this.lead === NONE)
      return { ok: false, code: "NOT_LEADER", leaderHint: this.lead };
    const size = data.byteLength + ENTRY_OVERHEAD_BYTES;
    if (this.forwardBytes > 0 && this.forwardBytes + size > this.maxUncommittedBytes) {
      return {
        ok: false,
        code: "OVERLOADED",
        message: `more than ${this.maxUncommittedBytes} bytes of proposals are waiting to be forwarded`,
      };
    }
    this.forwardBuf.push({ term: 0, index: 0, type: "normal", data });
    this.forwardBytes += size;
    return { ok: true, forwardedTo: this.lead, term: this.term };
  }

  /**
   * The MsgProp carrying the proposals forwarded since the last one, for a host that sends it
   * at once instead of with the next Ready (a forward depends on nothing durable, and waiting
   * for the host's next cycle would add a whole fsync to the write's latency). ready() sends
   * whatever is left the same way.
   */
  takeForwardMessage(): MsgProp | undefined {
    if (this.forwardBuf.length === 0) return undefined;
    // proposeOrForward only buffers as a follower that knows its leader, and a role or term
    // change empties the buffer (reset), so this still holds.
    assert(this.role === "follower" && this.lead !== NONE, "forward buffer without a leader");
    // Drawn lazily so that a node that never forwards consumes no randomness for it.
    if (this.incarnation === "") {
      this.incarnation = `${this.random.int(2 ** 30).toString(36)}.${this.random.int(2 ** 30).toString(36)}`;
    }
    const m: MsgProp = {
      type: "prop",
      to: this.lead,
      from: this.id,
      term: this.term,
      entries: this.forwardBuf,
      incarnation: this.incarnation,
      seq: ++this.propSeq,
    };
    this.forwardBuf = [];
    this.forwardBytes = 0;
    return m;
  }

  /** Whether a snapshot the storage could not provide is still owed to a follower. */
  hasSnapshotsWanted(): boolean {
    return this.snapshotsWanted.size > 0;
  }

  /**
   * Tries again, now, to send the snapshots the storage said were temporarily unavailable. A
   * host calls it when its snapshot provider can answer (between its cycles). Otherwise the
   * retry waits for the follower's next heartbeat answer, and on a host whose cycles run back to
   * back under load that answer can keep arriving while the provider is unavailable, starving a
   * new replica of its snapshot.
   */
  retrySnapshots(): void {
    const wanted = [...this.snapshotsWanted];
    this.snapshotsWanted.clear();
    if (this.role !== "leader") return;
    for (const id of wanted) {
      const pr = this.prs.get(id);
      if (pr?.state !== "probe") continue;
      pr.probeSent = false;
      this.sendAppend(id, false);
    }
  }

  /**
   * Takes the messages produced since the last ready() that depend on nothing durable (what
   * ready() would put in `eagerMessages`), for a host that sends them at once while a Ready's
   * write is still in flight: e.g. a leader's commit notification after a quorum acknowledged,
   * which would otherwise wait for the leader's own fsync to finish.
   */
  takeEagerMessages(): Message[] {
    if (this.msgs.length === 0) return [];
    const eager: Message[] = [];
    const rest: Message[] = [];
    for (const m of this.msgs) (isEager(m) ? eager : rest).push(m);
    this.msgs = rest;
    return eager;
  }

  proposeConfChange(cc: ConfChange): ProposeResult {
    this.unquiesce();
    const refused = this.checkCanPropose();
    if (refused) return refused;
    if (this.pendingConfIndex > this.log.applied) return { ok: false, code: "CONF_CHANGE_PENDING" };
    const check = applyConfChange(this.conf, cc);
    if (!check.ok) return { ok: false, code: "INVALID_CONF_CHANGE", message: check.message };
    const e = this.appendEntry("conf", encodeConfChange(cc));
    this.pendingConfIndex = e.index;
    return { ok: true, index: e.index, term: e.term };
  }

  /**
   * Requests a linearizable read. When granted, a ReadState with `context` appears in a later
   * `ready()`: the read may be served once the state machine has applied `index`.
   * On a follower the request is forwarded to the leader.
   */
  readIndex(context: string, mode: ReadMode = this.readMode): ReadIndexResult {
    this.unquiesce();
    if (this.role === "leader") return this.leaderRead(context, NONE, mode);
    if (this.lead === NONE) return { ok: false, code: "NOT_LEADER", leaderHint: NONE };
    this.send({ type: "readIndex", to: this.lead, term: this.term, from: this.id, context, mode });
    return { ok: true };
  }

  transferLeadership(to: NodeId): TransferResult {
    this.unquiesce();
    if (this.role !== "leader") return { ok: false, code: "NOT_LEADER", leaderHint: this.lead };
    if (to === this.id) return { ok: false, code: "IS_LEADER" };
    const pr = this.prs.get(to);
    if (!pr) return { ok: false, code: "UNKNOWN_TARGET" };
    if (pr.isLearner) return { ok: false, code: "TARGET_IS_LEARNER" };
    if (this.leadTransferee === to) return { ok: true };
    this.leadTransferee = to;
    // The transfer must finish within an election timeout, or it is abandoned.
    this.electionElapsed = 0;
    // The target may win a forced election while voters still honour our lease: never serve a
    // lease read again in this term.
    this.leaseDisabled = true;
    if (pr.match === this.log.lastIndex()) this.sendTimeoutNow(to);
    else this.sendAppend(to, true);
    return { ok: true };
  }

  /** The host could not deliver a snapshot (or did): resume probing. */
  reportSnapshot(to: NodeId, ok: boolean): void {
    const pr = this.prs.get(to);
    if (this.role !== "leader" || !pr || pr.state !== "snapshot") return;
    pr.becomeProbe();
    if (!ok) pr.probeSent = true; // wait for the next heartbeat before retrying
  }

  /** The host's transport could not reach `to`: stop streaming optimistically. */
  reportUnreachable(to: NodeId): void {
    const pr = this.prs.get(to);
    if (this.role === "leader" && pr && pr.state === "replicate") pr.becomeProbe();
  }

  step(m: Message): void {
    assert(m.to === this.id, () => `message for ${m.to} stepped into ${this.id}`);
    if (m.from === this.id) return;
    // What no correct peer sends is dropped here, before anything below can assert on it.
    if (invalidMessage(m) !== undefined) {
      this.invalidMessages++;
      return;
    }
    // Anything but the quiescing heartbeat and the answers to it wakes a quiesced group.
    if (!((m.type === "heartbeat" && m.quiesce) || m.type === "heartbeatResp")) this.unquiesce();

    if (m.term > this.term) {
      if (m.type === "vote" || m.type === "preVote") {
        if (!m.force && this.inLease()) return; // the leader we follow may hold a lease
      }
      if (m.type === "preVote" || (m.type === "preVoteResp" && !m.reject)) {
        // A pre-vote never changes our term (that is its point); a granted pre-vote answer carries
        // the future term and is counted by the pre-candidate below.
      } else if (m.type === "app" || m.type === "heartbeat" || m.type === "snap") {
        this.becomeFollower(m.term, m.from);
      } else {
        this.becomeFollower(m.term, NONE);
      }
    } else if (m.term < this.term) {
      if ((this.checkQuorum || this.preVote) && (m.type === "app" || m.type === "heartbeat")) {
        // A stale leader that we ignore would never learn of the new term (pre-vote keeps our
        // term from reaching it through elections): tell it, so it steps down.
        this.send({
          type: "appResp",
          to: m.from,
          from: this.id,
          term: this.term,
          index: 0,
          reject: false,
          rejectHint: 0,
          logTerm: 0,
        });
      } else if (m.type === "prop") {
        // Forwarded in an old term: tell the forwarder at once, with our term, whether it was
        // certainly not appended (NOT_LEADER) or may have been (UNKNOWN): answerUntakenProp.
        this.answerUntakenProp(m);
      } else if (m.type === "preVote") {
        this.send({
          type: "preVoteResp",
          to: m.from,
          from: this.id,
          term: this.term,
          reject: true,
        });
      }
      return;
    }

    if (m.type === "vote" || m.type === "preVote") {
      this.handleVoteRequest(m);
      return;
    }
    if (m.type === "prop") {
      this.handleProp(m);
      return;
    }
    if (m.type === "propResp") {
      for (const e of m.entries) this.refused.push({ data: e.data, reason: m.reason });
      return;
    }
    switch (this.role) {
      case "leader":
        this.stepLeader(m);
        break;
      case "candidate":
      case "preCandidate":
        this.stepCandidate(m);
        break;
      case "follower":
        this.stepFollower(m);
        break;
      default:
        unreachable(this.role, "role");
    }
  }

  hasReady(): boolean {
    if (this.role === "leader" && (this.appendNeeded || this.readRoundNeeded)) return true;
    if (this.msgs.length > 0 || this.readStates.length > 0) return true;
    if (this.forwardBuf.length > 0 || this.refused.length > 0) return true;
    if (this.refusedReads.length > 0) return true;
    if (this.log.unstableEntries.length > 0 || this.log.unstableSnapshot) return true;
    if (!this.log.unstableSnapshot && this.log.hasNextCommittedEntries()) return true;
    if (!sameSoft(this.softState(), this.prevSoft)) return true;
    return !sameHard(this.hardState(), this.prevHard);
  }

  ready(): Ready {
    assert(!this.readyInFlight, "ready() called twice without advance()");
    if (this.role === "leader") {
      if (this.appendNeeded) {
        this.appendNeeded = false;
        this.bcastAppend(false);
      }
      if (this.readRoundNeeded) {
        this.readRoundNeeded = false;
        this.bcastHeartbeat();
      }
    }
    const prop = this.takeForwardMessage();
    if (prop) this.send(prop);
    const soft = this.softState();
    const hard = this.hardState();
    const hardChanged = !sameHard(hard, this.prevHard);
    const entries = this.log.unstableEntries.slice();
    // Leader-originated traffic needs nothing from this Ready's writes; everything that
    // acknowledges or votes must wait until they are durable.
    const eager: Message[] = [];
    const after: Message[] = [];
    for (const m of this.msgs) (isEager(m) ? eager : after).push(m);
    const rd: Ready = {
      softState: sameSoft(soft, this.prevSoft) ? undefined : soft,
      hardState: hardChanged ? hard : undefined,
      snapshot: this.log.unstableSnapshot,
      entries,
      mustSync:
        entries.length > 0 || hard.term !== this.prevHard.term || hard.vote !== this.prevHard.vote,
      messages: after,
      eagerMessages: eager,
      committedEntries: this.log.unstableSnapshot
        ? []
        : this.log.nextCommittedEntries(this.maxApplyBytes),
      readStates: this.readStates,
      refusedProposals: this.refused,
      refusedReads: this.refusedReads,
    };
    this.msgs = [];
    this.readStates = [];
    this.refused = [];
    this.refusedReads = [];
    this.prevSoft = soft;
    if (rd.hardState) this.prevHard = rd.hardState;
    this.readyInFlight = true;
    return rd;
  }

  /** Acknowledges that `rd` was persisted, its messages sent and its entries applied. */
  advance(rd: Ready): void {
    assert(this.readyInFlight, "advance() without ready()");
    this.readyInFlight = false;
    if (rd.snapshot) {
      this.log.stableSnapTo(rd.snapshot.meta.index);
      this.log.applied = Math.max(this.log.applied, rd.snapshot.meta.index);
    }
    const lastEntry = rd.entries[rd.entries.length - 1];
    if (lastEntry) {
      this.log.stableTo(lastEntry.index, lastEntry.term);
      if (this.role === "leader") {
        // Our own copy now counts toward the commit quorum (it is durable).
        const self = this.prs.get(this.id);
        if (self?.maybeUpdate(this.stableLastIndex())) this.maybeCommitAndBroadcast();
      }
    }
    const lastApplied = rd.committedEntries[rd.committedEntries.length - 1];
    if (lastApplied) {
      this.log.appliedTo(lastApplied.index);
      for (const e of rd.committedEntries) {
        if (e.type === "conf") this.applyConfEntry(e);
        if (this.role === "leader" && e.term === this.term) {
          this.uncommittedBytes = Math.max(0, this.uncommittedBytes - entryBytes(e));
        }
      }
    }
    if (
      this.role === "leader" &&
      isJoint(this.conf) &&
      this.conf.autoLeave &&
      this.pendingConfIndex <= this.log.applied
    ) {
      // Leave the joint configuration as soon as entering it has been applied.
      const e = this.appendEntry("conf", encodeConfChange({ changes: [] }));
      this.pendingConfIndex = e.index;
    }
  }

  status(): RaftStatus {
    const progress = new Map<NodeId, ProgressStatus>();
    if (this.role === "leader") {
      for (const [id, pr] of this.prs) {
        progress.set(id, {
          match: pr.match,
          next: pr.next,
          state: pr.state,
          isLearner: pr.isLearner,
        });
      }
    }
    return {
      id: this.id,
      role: this.role,
      term: this.term,
      vote: this.vote,
      leader: this.lead,
      commit: this.log.committed,
      applied: this.log.applied,
      lastIndex: this.log.lastIndex(),
      firstIndex: this.log.firstIndex(),
      conf: this.conf,
      leadTransferee: this.leadTransferee,
      progress,
    };
  }

  /** The cheap part of status(): no per-follower progress. */
  basicStatus(): { role: Role; term: number; leader: NodeId; commit: number; applied: number } {
    return {
      role: this.role,
      term: this.term,
      leader: this.lead,
      commit: this.log.committed,
      applied: this.log.applied,
    };
  }

  /** Term of a log entry, or undefined if compacted/absent (for checkers and hosts). */
  termAt(index: number): number | undefined {
    return this.log.term(index);
  }

  /** Whether a lease read would be served locally right now (for tests and metrics). */
  hasValidLease(): boolean {
    return this.role === "leader" && this.leaseValid();
  }

  // ---------------------------------------------------------------- state transitions

  private softState(): SoftState {
    return { leader: this.lead, role: this.role };
  }

  private hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed };
  }

  private reset(term: number): void {
    // Buffered forwards were meant for the leader of the old term/role: never sent, so
    // certainly not appended.
    this.refuseForwardBuf("NOT_LEADER");
    if (term !== this.term) {
      this.term = term;
      this.vote = NONE;
    }
    this.lead = NONE;
    this.snapshotsWanted.clear();
    this.electionElapsed = 0;
    this.heartbeatElapsed = 0;
    this.randomizedElectionTimeout = this.electionTimeout + this.random.int(this.electionTimeout);
    this.leadTransferee = NONE;
    this.leaseDisabled = false;
    this.quiesced = false;
    this.votes.clear();
    this.pendingReads = [];
    this.readsAwaitingCommit = [];
    this.readRoundNeeded = false;
    this.appendNeeded = false;
    this.uncommittedBytes = 0;
    const last = this.log.lastIndex();
    for (const [id, pr] of this.prs) {
      const fresh = new Progress(
        last + 1,
        pr.isLearner,
        this.maxInflightMsgs,
        this.maxInflightBytes,
      );
      this.prs.set(id, fresh);
    }
  }

  private becomeFollower(term: number, lead: NodeId): void {
    const wasLeader = this.role === "leader";
    this.reset(term);
    this.role = "follower";
    this.lead = lead;
    if (lead !== NONE) this.ticksSinceLeader = 0;
    else if (wasLeader) this.ticksSinceLeader = this.electionTimeout; // we promised nobody anything
  }

  private becomePreCandidate(): void {
    assert(this.role !== "leader", "leader cannot become pre-candidate");
    // Term and vote are untouched: a pre-election changes nothing durable.
    this.role = "preCandidate";
    this.votes.clear();
    this.lead = NONE;
    this.refuseForwardBuf("NOT_LEADER"); // no leader to send them to any more
  }

  private becomeCandidate(): void {
    assert(this.role !== "leader", "leader cannot become candidate");
    this.reset(this.term + 1);
    this.vote = this.id;
    this.role = "candidate";
  }

  private becomeLeader(): void {
    assert(this.role === "candidate", "only a candidate becomes leader");
    this.reset(this.term);
    this.role = "leader";
    this.lead = this.id;
    this.propsSeen.clear();
    this.ledTerms.push(this.term);
    if (this.ledTerms.length > LED_TERMS_MAX) {
      this.ledTermsKnownFrom = (this.ledTerms.shift() as number) + 1;
    }
    const self = this.prs.get(this.id);
    assert(self, "leader must be in its configuration");
    self.becomeReplicate();
    self.match = this.stableLastIndex();
    self.next = this.log.lastIndex() + 1;
    // Entries of earlier terms may hide a configuration change we have not applied yet: no new
    // change until everything up to here is applied.
    this.pendingConfIndex = this.log.lastIndex();
    // An empty entry of our own term lets us commit (and learn the commit index) quickly.
    this.appendEntry("normal", EMPTY);
  }

  private stableLastIndex(): number {
    return this.log.unstableEntries.length > 0 ? this.log.unstableOffset - 1 : this.log.lastIndex();
  }

  private promotable(): boolean {
    const pr = this.prs.get(this.id);
    return pr !== undefined && !pr.isLearner && !this.log.unstableSnapshot;
  }

  private isVoter(id: NodeId): boolean {
    return this.voters.incoming.has(id) || this.voters.outgoing.has(id);
  }

  /**
   * Whether we honour a leader lease: with check-quorum, a node that heard from a leader within
   * an election timeout must not help elect another (a node that just booted may have promised
   * a lease before it crashed, so boot counts as contact).
   */
  private inLease(): boolean {
    if (!this.checkQuorum) return false;
    if (this.role === "leader") return true;
    return this.ticksSinceLeader < this.electionTimeout;
  }

  // ---------------------------------------------------------------- elections

  private tickElection(): void {
    this.electionElapsed++;
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0;
      this.hup(false);
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++;
    this.electionElapsed++;
    if (this.electionElapsed >= this.electionTimeout) {
      this.electionElapsed = 0;
      if (this.checkQuorum && !this.quorumActive()) {
        this.becomeFollower(this.term, NONE);
        return;
      }
      if (this.leadTransferee !== NONE) this.leadTransferee = NONE; // transfer timed out
    }
    if (this.heartbeatElapsed >= this.heartbeatInterval) {
      this.heartbeatElapsed = 0;
      this.bcastHeartbeat();
    }
  }

  private quorumActive(): boolean {
    const active = jointHasQuorum(
      this.voters,
      (id) => id === this.id || (this.prs.get(id)?.recentActive ?? false),
    );
    for (const [id, pr] of this.prs) if (id !== this.id) pr.recentActive = false;
    return active;
  }

  private hup(transfer: boolean): void {
    if (this.role === "leader" || !this.promotable()) return;
    // We may have acknowledged a leader's heartbeat within the election timeout: campaigning
    // now would break the lease that leader may be serving reads on. Only a transfer (which the
    // leader itself asked for) may skip this. The election timer never fires inside the lease
    // (both clocks restart on leader contact), so this only stops explicit campaign() calls.
    if (!transfer && this.inLease()) return;
    if (this.hasUnappliedConfChanges()) return;
    if (this.preVote && !transfer) this.runElection("pre", false);
    else this.runElection("real", transfer);
  }

  private hasUnappliedConfChanges(): boolean {
    const lo = Math.max(this.log.applied + 1, this.log.firstIndex());
    if (lo > this.log.committed) return false;
    for (const e of this.log.slice(lo, this.log.committed + 1, Number.POSITIVE_INFINITY)) {
      if (e.type === "conf") return true;
    }
    return false;
  }

  private runElection(kind: "pre" | "real", force: boolean): void {
    let term: number;
    if (kind === "pre") {
      this.becomePreCandidate();
      term = this.term + 1;
    } else {
      this.becomeCandidate();
      term = this.term;
    }
    this.votes.set(this.id, true);
    const result = jointVote(this.voters, this.votes);
    if (result === "won") {
      if (kind === "pre") this.runElection("real", force);
      else this.becomeLeader();
      return;
    }
    const index = this.log.lastIndex();
    const logTerm = this.log.lastTerm();
    for (const id of this.prs.keys()) {
      if (id === this.id || !this.isVoter(id)) continue;
      this.send({
        type: kind === "pre" ? "preVote" : "vote",
        to: id,
        from: this.id,
        term,
        index,
        logTerm,
        force,
      });
    }
  }

  private handleVoteRequest(m: MsgVote): void {
    const canVote =
      this.vote === m.from ||
      (this.vote === NONE && this.lead === NONE) ||
      (m.type === "preVote" && m.term > this.term);
    const upToDate =
      this.bugs.voteWithoutLogCheck === true || this.log.isUpToDate(m.index, m.logTerm);
    const respType = m.type === "vote" ? "voteResp" : "preVoteResp";
    if (canVote && upToDate) {
      // A granted pre-vote answers with the pre-vote's term so the pre-candidate counts it.
      this.send({ type: respType, to: m.from, from: this.id, term: m.term, reject: false });
      if (m.type === "vote") {
        this.electionElapsed = 0;
        this.vote = m.from;
      }
    } else {
      this.send({ type: respType, to: m.from, from: this.id, term: this.term, reject: true });
    }
  }

  private stepCandidate(m: Message): void {
    switch (m.type) {
      case "app":
        this.becomeFollower(m.term, m.from);
        this.handleAppend(m);
        return;
      case "heartbeat":
        this.becomeFollower(m.term, m.from);
        this.handleHeartbeat(m);
        return;
      case "snap":
        this.becomeFollower(m.term, m.from);
        this.handleSnapshot(m);
        return;
      case "voteResp":
      case "preVoteResp": {
        const expected = this.role === "preCandidate" ? "preVoteResp" : "voteResp";
        if (m.type !== expected) return;
        this.votes.set(m.from, !m.reject);
        const result = jointVote(this.voters, this.votes);
        if (result === "won") {
          if (this.role === "preCandidate") this.runElection("real", false);
          else {
            this.becomeLeader();
            this.bcastAppend(true);
          }
        } else if (result === "lost") {
          this.becomeFollower(this.term, NONE);
        }
        return;
      }
      case "readIndex":
        this.refuseRead(m);
        return;
      default:
        return;
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case "app":
        this.heardFromLeader(m.from);
        this.handleAppend(m);
        return;
      case "heartbeat":
        this.heardFromLeader(m.from);
        this.handleHeartbeat(m);
        return;
      case "snap":
        this.heardFromLeader(m.from);
        this.handleSnapshot(m);
        return;
      case "timeoutNow":
        // Our leader asks us to take over: campaign at once, skipping pre-vote and leases.
        this.hup(true);
        return;
      case "readIndex":
        this.refuseRead(m);
        return;
      case "readIndexResp":
        if (m.index > 0) this.readStates.push({ index: m.index, context: m.context });
        else this.refusedReads.push(m.context);
        return;
      default:
        return;
    }
  }

  private heardFromLeader(from: NodeId): void {
    this.electionElapsed = 0;
    this.ticksSinceLeader = 0;
    this.lead = from;
  }

  // ---------------------------------------------------------------- replication (follower side)

  private handleAppend(m: MsgApp): void {
    if (m.index < this.log.committed) {
      this.sendAppResp(m.from, this.log.committed, false, 0, 0);
      return;
    }
    const lastNew = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries);
    if (lastNew !== undefined) {
      this.sendAppResp(m.from, lastNew, false, 0, 0);
      return;
    }
    // Rejection with a hint: the largest index <= m.index whose term is <= m.logTerm. The leader
    // skips every entry in between instead of backing off one index per round trip.
    const hint = this.log.findConflictByTerm(Math.min(m.index, this.log.lastIndex()), m.logTerm);
    this.sendAppResp(m.from, m.index, true, hint.index, hint.term);
  }

  private handleHeartbeat(m: MsgHeartbeat): void {
    this.log.commitTo(Math.min(m.commit, this.log.lastIndex()));
    this.send({
      type: "heartbeatResp",
      to: m.from,
      from: this.id,
      term: this.term,
      seq: m.seq,
      sentTick: m.sentTick,
    });
    // Sleep only if we really hold everything the leader has committed.
    const caughtUp = this.log.committed === m.commit && this.log.lastIndex() === m.commit;
    if (m.quiesce && this.role === "follower" && caughtUp) this.quiesced = true;
    else this.unquiesce();
  }

  private handleSnapshot(m: MsgSnap): void {
    const snap = m.snapshot;
    if (this.restore(snap)) this.sendAppResp(m.from, this.log.lastIndex(), false, 0, 0);
    else this.sendAppResp(m.from, this.log.committed, false, 0, 0);
  }

  private restore(snap: Snapshot): boolean {
    const { index, term } = snap.meta;
    if (index <= this.log.committed) return false;
    if (this.log.matchTerm(index, term)) {
      // We already have the entries: just learn they are committed.
      this.log.commitTo(index);
      return false;
    }
    this.log.restore(snap);
    this.conf = snap.meta.confState;
    this.switchToConfig(this.conf);
    return true;
  }

  private sendAppResp(
    to: NodeId,
    index: number,
    reject: boolean,
    rejectHint: number,
    logTerm: number,
  ): void {
    this.send({
      type: "appResp",
      to,
      from: this.id,
      term: this.term,
      index,
      reject,
      rejectHint,
      logTerm,
    });
  }

  // ---------------------------------------------------------------- the leader

  private checkCanPropose(): ProposeResult | undefined {
    if (this.role !== "leader") return { ok: false, code: "NOT_LEADER", leaderHint: this.lead };
    if (this.leadTransferee !== NONE)
      return { ok: false, code: "TRANSFERRING", leaderHint: this.leadTransferee };
    return undefined;
  }

  private appendEntry(type: Entry["type"], data: Uint8Array): Entry {
    const e: Entry = { term: this.term, index: this.log.lastIndex() + 1, type, data };
    this.log.append([e]);
    // Every entry of our term counts until it is applied (advance() subtracts exactly this).
    this.uncommittedBytes += entryBytes(e);
    // Sent to followers at the next ready(): every proposal of one cycle shares one message.
    this.appendNeeded = true;
    return e;
  }

  private stepLeader(m: Message): void {
    const pr = this.prs.get(m.from);
    switch (m.type) {
      case "appResp":
        if (pr) this.handleAppResp(m, pr);
        return;
      case "heartbeatResp":
        if (pr) this.handleHeartbeatResp(m, pr);
        return;
      case "readIndex": {
        // As for forwarded proposals (handleProp): a node outside the configuration, or on its
        // way out, may never apply up to the read's index, so it could never serve the read.
        if (!this.prs.has(m.from) || this.leaving(m.from)) {
          this.refuseRead(m);
          return;
        }
        const r = this.leaderRead(m.context, m.from, m.mode);
        if (!r.ok) this.refuseRead(m);
        return;
      }
      default:
        return;
    }
  }

  private handleAppResp(m: MsgAppResp, pr: Progress): void {
    pr.recentActive = true;
    if (m.reject) {
      let hint = m.rejectHint;
      if (m.logTerm > 0) hint = this.log.findConflictByTerm(m.rejectHint, m.logTerm).index;
      if (pr.maybeDecrTo(m.index, hint)) {
        if (pr.state === "replicate") pr.becomeProbe();
        this.sendAppend(m.from, true);
      }
      return;
    }
    const wasPaused = pr.isPaused();
    if (!pr.maybeUpdate(m.index)) return;
    if (pr.state === "probe") pr.becomeReplicate();
    else if (pr.state === "snapshot" && pr.match + 1 >= this.log.firstIndex()) {
      pr.becomeProbe();
      pr.becomeReplicate();
    } else if (pr.state === "replicate") pr.inflights.freeLE(m.index);

    if (!this.maybeCommitAndBroadcast() && wasPaused) this.sendAppend(m.from, true);
    // Fill the in-flight window.
    while (this.sendAppend(m.from, false)) {}
    if (m.from === this.leadTransferee && pr.match === this.log.lastIndex())
      this.sendTimeoutNow(m.from);
  }

  private handleHeartbeatResp(m: MsgHeartbeatResp, pr: Progress): void {
    pr.recentActive = true;
    pr.probeSent = false;
    if (m.seq > pr.ackedSeq) pr.ackedSeq = m.seq;
    if (m.sentTick > pr.ackedSentTick) pr.ackedSentTick = m.sentTick;
    if (pr.state === "snapshot" && this.now - pr.snapshotSentTick >= this.snapshotRetryTicks) {
      pr.becomeProbe(); // the snapshot was probably lost: start over
    }
    // A full window with a follower that answers heartbeats means an append was lost: free one
    // slot so the next append goes out; a gap makes the follower reject it and we probe.
    if (pr.state === "replicate" && pr.inflights.full()) pr.inflights.freeFirst();
    if (pr.match < this.log.lastIndex()) this.sendAppend(m.from, true);
    this.releaseReads();
  }

  private maybeCommitAndBroadcast(): boolean {
    if (!this.maybeCommit()) return false;
    this.bcastAppend(true);
    return true;
  }

  private maybeCommit(): boolean {
    const mci = jointCommitted(this.voters, (id) => this.prs.get(id)?.match ?? 0);
    if (!Number.isFinite(mci) || mci <= this.log.committed) return false;
    // Raft §5.4.2: only entries of the current term are committed by counting replicas.
    if (!this.bugs.commitOldTermByCounting && this.log.term(mci) !== this.term) return false;
    const wasCommittedInTerm = this.committedInTerm();
    this.log.commitTo(mci);
    if (!wasCommittedInTerm && this.committedInTerm()) {
      // Reads that arrived before our first commit can now be given an index.
      const waiting = this.readsAwaitingCommit;
      this.readsAwaitingCommit = [];
      for (const r of waiting) this.leaderRead(r.context, r.from, r.mode);
    }
    return true;
  }

  private committedInTerm(): boolean {
    return this.log.term(this.log.committed) === this.term;
  }

  /** Sends an append to `to` if flow control allows; returns whether a message was sent. */
  private sendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.prs.get(to);
    if (!pr || to === this.id || pr.isPaused()) return false;
    const prevIndex = pr.next - 1;
    const prevTerm = this.log.term(prevIndex);
    if (prevTerm === undefined || pr.next < this.log.firstIndex()) {
      this.sendSnapshot(to, pr);
      return true;
    }
    const last = this.log.lastIndex();
    const entries = pr.next <= last ? this.log.slice(pr.next, last + 1, this.maxAppendBytes) : [];
    if (entries.length === 0 && !sendIfEmpty) return false;
    let bytes = 0;
    for (const e of entries) bytes += entryBytes(e);
    this.send({
      type: "app",
      to,
      from: this.id,
      term: this.term,
      index: prevIndex,
      logTerm: prevTerm,
      entries,
      commit: this.log.committed,
    });
    const lastSent = entries[entries.length - 1];
    if (lastSent) pr.sentEntries(lastSent.index, bytes);
    else if (pr.state === "probe") pr.probeSent = true;
    return true;
  }

  private sendSnapshot(to: NodeId, pr: Progress): void {
    const snapshot = this.log.snapshot();
    if (!snapshot) {
      // Temporarily unavailable: try again on the next heartbeat answer, or when the host says
      // the storage can provide one (retrySnapshots), whichever comes first.
      pr.probeSent = true;
      this.snapshotsWanted.add(to);
      return;
    }
    this.send({ type: "snap", to, from: this.id, term: this.term, snapshot });
    pr.becomeSnapshot(snapshot.meta.index, this.now);
  }

  private bcastAppend(sendIfEmpty: boolean): void {
    for (const id of this.prs.keys()) if (id !== this.id) this.sendAppend(id, sendIfEmpty);
  }

  private bcastHeartbeat(): void {
    this.heartbeatSeq++;
    for (const [id, pr] of this.prs) {
      if (id === this.id) continue;
      // Never tell a follower to commit beyond what it is known to hold.
      const commit = Math.min(pr.match, this.log.committed);
      this.send({
        type: "heartbeat",
        to: id,
        from: this.id,
        term: this.term,
        commit,
        seq: this.heartbeatSeq,
        sentTick: this.now,
      });
    }
  }

  private sendTimeoutNow(to: NodeId): void {
    this.send({ type: "timeoutNow", to, from: this.id, term: this.term });
  }

  // ---------------------------------------------------------------- linearizable reads

  /** Answers a forwarded read we cannot serve: index 0 tells the follower to retry. */
  private refuseRead(m: MsgReadIndex): void {
    this.send({
      type: "readIndexResp",
      to: m.from,
      from: this.id,
      term: this.term,
      context: m.context,
      index: 0,
    });
  }

  private leaderRead(context: string, from: NodeId, mode: ReadMode): ReadIndexResult {
    if (this.pendingReads.length + this.readsAwaitingCommit.length >= this.maxPendingReads) {
      return {
        ok: false,
        code: "OVERLOADED",
        message: `more than ${this.maxPendingReads} reads are waiting`,
      };
    }
    if (!this.committedInTerm()) {
      // Our commit index may lag the true one until an entry of our term commits.
      this.readsAwaitingCommit.push({ context, from, mode });
      return { ok: true };
    }
    const index = this.log.committed;
    const single =
      this.voters.incoming.size <= 1 && this.voters.outgoing.size <= 1 && this.isVoter(this.id);
    if (single || (mode === "lease" && this.leaseValid())) {
      this.grantRead({ context, from, index, seq: 0 });
      return { ok: true };
    }
    // Confirm leadership with one heartbeat round, shared by all reads of this cycle.
    this.pendingReads.push({ context, from, index, seq: this.heartbeatSeq + 1 });
    this.readRoundNeeded = true;
    return { ok: true };
  }

  private leaseValid(): boolean {
    // The planted bug: trust leadership alone, as a lease without check-quorum does (a leader
    // cut off from the rest never steps down, so it serves stale reads).
    if (this.bugs.leaseWithoutCheckQuorum) return this.committedInTerm();
    if (!this.checkQuorum) return false;
    if (this.leaseDisabled || this.leadTransferee !== NONE || !this.committedInTerm()) return false;
    // The lease starts at the send time of the latest heartbeat a quorum acknowledged: each of
    // those voters will refuse to elect anyone else for an election timeout after receiving it.
    const start = jointCommitted(this.voters, (id) =>
      id === this.id ? this.now : (this.prs.get(id)?.ackedSentTick ?? Number.NEGATIVE_INFINITY),
    );
    return this.now < start + this.leaseTicks;
  }

  private releaseReads(): void {
    if (this.pendingReads.length === 0) return;
    const acked = jointCommitted(this.voters, (id) =>
      id === this.id ? Number.POSITIVE_INFINITY : (this.prs.get(id)?.ackedSeq ?? 0),
    );
    let n = 0;
    while (n < this.pendingReads.length && (this.pendingReads[n] as PendingRead).seq <= acked) {
      this.grantRead(this.pendingReads[n] as PendingRead);
      n++;
    }
    if (n > 0) this.pendingReads.splice(0, n);
  }

  private grantRead(r: PendingRead): void {
    if (r.from === NONE) this.readStates.push({ index: r.index, context: r.context });
    else
      this.send({
        type: "readIndexResp",
        to: r.from,
        from: this.id,
        term: this.term,
        context: r.context,
        index: r.index,
      });
  }

  // ---------------------------------------------------------------- configuration

  private applyConfEntry(e: Entry): void {
    const r = applyConfChange(this.conf, decodeConfChange(e.data));
    // Changes are validated when proposed and serialized by pendingConfIndex, so an invalid
    // entry can only be a no-op; every replica skips it identically.
    if (!r.ok) return;
    this.conf = r.confState;
    this.switchToConfig(this.conf);
  }

  private switchToConfig(cs: ConfState): void {
    this.voters = { incoming: new Set(cs.voters), outgoing: new Set(cs.votersOutgoing) };
    const learners = new Set([...cs.learners, ...cs.learnersNext]);
    const members = [...allMembers(cs)].sort();
    const next = new Map<NodeId, Progress>();
    const last = this.log.lastIndex();
    for (const id of members) {
      const isLearner = learners.has(id) && !this.isVoter(id);
      let pr = this.prs.get(id);
      if (!pr) {
        pr = new Progress(last + 1, isLearner, this.maxInflightMsgs, this.maxInflightBytes);
        // A new member counts as active so check-quorum gives it a round to answer.
        pr.recentActive = true;
        if (id === this.id && this.role === "leader") {
          pr.becomeReplicate();
          pr.match = this.stableLastIndex();
        }
      }
      pr.isLearner = isLearner;
      next.set(id, pr);
    }
    this.prs = next;
    if (this.role !== "leader") return;
    if (!this.isVoter(this.id)) {
      // We were removed or demoted: the change is committed, so the rest can elect a leader.
      this.becomeFollower(this.term, NONE);
      return;
    }
    if (this.leadTransferee !== NONE && !this.isVoter(this.leadTransferee))
      this.leadTransferee = NONE;
    // The quorum changed: something may commit now; new members need the log.
    if (!this.maybeCommitAndBroadcast()) this.bcastAppend(true);
  }

  private send(m: Message): void {
    this.msgs.push(m);
  }

  private refuseForwardBuf(reason: PropRefusal): void {
    for (const e of this.forwardBuf) this.refused.push({ data: e.data, reason });
    this.forwardBuf = [];
    this.forwardBytes = 0;
  }

  /** A leader appends what it can of a follower's forwarded proposals and refuses the rest. */
  private handleProp(m: MsgProp): void {
    if (this.role !== "leader") {
      this.answerUntakenProp(m);
      return;
    }
    // A duplicate must be ignored, not refused: its first copy may have been appended.
    if (!this.firstSightOfProp(m)) return;
    // A sender outside the configuration (removed, or not added yet) would never receive the
    // entries, so it could never answer its client: refuse, and it sends the client elsewhere.
    // The same goes for a sender that a configuration change in our log, not applied yet, takes
    // out: an entry appended after that change commits after it, and once we apply the change
    // we stop replicating to the sender, which would wait for its proposal in vain.
    const accept = this.prs.has(m.from) && !this.leaving(m.from);
    const refused: Entry[] = [];
    let reason: PropRefusal = "NOT_LEADER";
    for (const e of m.entries) {
      const r = accept ? this.propose(e.data) : undefined;
      if (r?.ok) continue;
      refused.push(e);
      if (r && (r.code === "OVERLOADED" || r.code === "TRANSFERRING")) reason = r.code;
    }
    if (refused.length > 0) this.refuseProp(m, refused, reason);
  }

  /**
   * Whether a configuration change in the log but not applied yet removes `id` (a leader's
   * question: see handleProp). Changes are serialized (pendingConfIndex), so there are few such
   * entries; the members they leave are computed once per pendingConfIndex.
   */
  private leaving(id: NodeId): boolean {
    if (this.pendingConfIndex <= this.log.applied) return false;
    let pending = this.pendingMembers;
    if (
      pending === undefined ||
      pending.index !== this.pendingConfIndex ||
      pending.term !== this.term
    ) {
      let conf = this.conf;
      const lo = Math.max(this.log.applied + 1, this.log.firstIndex());
      for (const e of this.log.slice(lo, this.pendingConfIndex + 1, Number.POSITIVE_INFINITY)) {
        if (e.type !== "conf") continue;
        const r = applyConfChange(conf, decodeConfChange(e.data));
        if (r.ok) conf = r.confState;
      }
      pending = { index: this.pendingConfIndex, term: this.term, members: allMembers(conf) };
      this.pendingMembers = pending;
    }
    return !pending.members.has(id);
  }

  /**
   * Answers a MsgProp this node is not going to append (it does not lead the message's term
   * now). NOT_LEADER ("not appended: retry") only when that is certain: this node never led that
   * term, or led it and never saw this message. Not so for a late copy of one it took while it
   * led that term (the network duplicated it: a refusal would let the client write twice), nor
   * for a term it may have led without remembering what it took (before a restart, or before its
   * last LED_TERMS_MAX terms as leader): UNKNOWN then. Only one node leads a term, and a
   * forwarder sends each MsgProp to one node. Either answer carries our term, so a forwarder
   * stuck in an old term (a removed member, say) learns it and stops forwarding there.
   */
  private answerUntakenProp(m: MsgProp): void {
    // propsSeen belongs to the last term this node led (kept after it steps down).
    const certain =
      m.term === this.ledTerms[this.ledTerms.length - 1]
        ? this.firstSightOfProp(m)
        : m.term >= this.ledTermsKnownFrom && !this.ledTerms.includes(m.term);
    this.refuseProp(m, m.entries, certain ? "NOT_LEADER" : "UNKNOWN");
  }

  /**
   * Whether this MsgProp was not taken before in this term. Per sender incarnation, the recent
   * seqs (the last PROP_WINDOW) are remembered exactly; an older one is treated as seen (ignored,
   * so its proposals time out as "unknown" at the sender: safe, and it only happens to a message
   * delayed past PROP_WINDOW later ones). At most PROP_INCARNATIONS_MAX incarnations per sender
   * are kept (a follower restarting that often within one term loses the oldest record).
   */
  private firstSightOfProp(m: MsgProp): boolean {
    let bySender = this.propsSeen.get(m.from);
    if (!bySender) {
      bySender = new Map();
      this.propsSeen.set(m.from, bySender);
    }
    let seen = bySender.get(m.incarnation);
    if (!seen) {
      if (bySender.size >= PROP_INCARNATIONS_MAX) {
        const oldest = bySender.keys().next().value as string;
        bySender.delete(oldest);
      }
      seen = { max: 0, recent: new Set() };
      bySender.set(m.incarnation, seen);
    }
    if (m.seq <= seen.max - PROP_WINDOW || seen.recent.has(m.seq)) return false;
    seen.recent.add(m.seq);
    if (m.seq > seen.max) {
      seen.max = m.seq;
      if (seen.recent.size > PROP_WINDOW) {
        for (const s of seen.recent) if (s <= seen.max - PROP_WINDOW) seen.recent.delete(s);
      }
    }
    return true;
  }

  private refuseProp(m: MsgProp, entries: readonly Entry[], reason: PropRefusal): void {
    this.send({ type: "propResp", to: m.from, from: this.id, term: this.term, entries, reason });
  }
}

/**
 * Messages that depend on nothing the same Ready writes: a leader's traffic (appends,
 * heartbeats, snapshots, TimeoutNow) and forwarded proposals and their refusals. Everything
 * that acknowledges or votes must wait until the Ready's writes are durable.
 */
function isEager(m: Message): boolean {
  return (
    m.type === "app" ||
    m.type === "heartbeat" ||
    m.type === "snap" ||
    m.type === "timeoutNow" ||
    m.type === "prop" ||
    m.type === "propResp"
  );
}

/** See firstSightOfProp. */
const PROP_WINDOW = 1024;
const PROP_INCARNATIONS_MAX = 8;
/** Terms led that a node remembers (to tell a late forwarded proposal it certainly did not take). */
const LED_TERMS_MAX = 64;

function sameSoft(a: SoftState, b: SoftState): boolean {
  return a.leader === b.leader && a.role === b.role;
}

function sameHard(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit;
}
