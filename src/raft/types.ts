/**
 * The Raft data model: entries, hard state, configurations, snapshots and messages.
 * Everything here is plain data (structured-clone friendly) so hosts can encode it however
 * they like (the transport uses protobuf, the simulator passes objects).
 */

/** A node's identity within a Raft group. The empty string means "nobody". */
export type NodeId = string;
export const NONE: NodeId = "";

export type EntryType = "normal" | "conf";

export interface Entry {
  readonly term: number;
  readonly index: number;
  readonly type: EntryType;
  /** Application payload for `normal`; an encoded `ConfChange` for `conf`. Empty = no-op. */
  readonly data: Uint8Array;
}

/** What must be durable before a vote or an acknowledgement is sent. */
export interface HardState {
  readonly term: number;
  readonly vote: NodeId;
  readonly commit: number;
}

/**
 * A membership configuration. Outside a joint configuration `votersOutgoing` is empty.
 * In a joint configuration decisions need a majority of `voters` AND of `votersOutgoing`.
 * `learnersNext` are outgoing voters that become learners when the joint config is left.
 */
export interface ConfState {
  readonly voters: readonly NodeId[];
  readonly learners: readonly NodeId[];
  readonly votersOutgoing: readonly NodeId[];
  readonly learnersNext: readonly NodeId[];
  /** Leave the joint configuration automatically once it is applied (the leader proposes it). */
  readonly autoLeave: boolean;
}

export type ConfChangeItem =
  | { readonly type: "addVoter"; readonly node: NodeId }
  | { readonly type: "addLearner"; readonly node: NodeId }
  | { readonly type: "removeNode"; readonly node: NodeId };

/**
 * A membership change. A non-empty `changes` list enters a joint configuration (Raft §6,
 * "joint consensus"); an empty list leaves the current joint configuration.
 * With `autoLeave` (the default) the leader leaves the joint configuration by itself as soon as
 * the entering entry is applied.
 */
export interface ConfChange {
  readonly changes: readonly ConfChangeItem[];
  readonly autoLeave?: boolean;
}

export interface SnapshotMeta {
  readonly index: number;
  readonly term: number;
  readonly confState: ConfState;
}

export interface Snapshot {
  readonly meta: SnapshotMeta;
  /** The application's state machine image at `meta.index`. */
  readonly data: Uint8Array;
}

export interface ReadState {
  /** The read may be served once the state machine has applied this index. */
  readonly index: number;
  readonly context: string;
}

export type Role = "follower" | "preCandidate" | "candidate" | "leader";

export interface SoftState {
  readonly leader: NodeId;
  readonly role: Role;
}

interface MessageBase {
  readonly from: NodeId;
  readonly to: NodeId;
  readonly term: number;
}

/** Append entries after (index, logTerm); also carries the leader's commit index. */
export interface MsgApp extends MessageBase {
  readonly type: "app";
  readonly index: number;
  readonly logTerm: number;
  readonly entries: readonly Entry[];
  readonly commit: number;
}

/**
 * Answer to MsgApp (and to an installed snapshot). On success `index` is the last index known
 * to match. On rejection `index` is the rejected MsgApp's index and (`rejectHint`, `logTerm`)
 * let the leader skip a whole term of conflicting entries at once.
 */
export interface MsgAppResp extends MessageBase {
  readonly type: "appResp";
  readonly index: number;
  readonly reject: boolean;
  readonly rejectHint: number;
  readonly logTerm: number;
}

export interface MsgVote extends MessageBase {
  readonly type: "vote" | "preVote";
  /** The candidate's last log index and term. */
  readonly index: number;
  readonly logTerm: number;
  /** Set by a leadership transfer: voters ignore their leader lease for it. */
  readonly force: boolean;
}

export interface MsgVoteResp extends MessageBase {
  readonly type: "voteResp" | "preVoteResp";
  readonly reject: boolean;
}

/**
 * Heartbeats carry a round number (`seq`) used by ReadIndex and the leader's tick at send
 * time (`sentTick`) used by the leader lease; both are echoed back unchanged.
 */
export interface MsgHeartbeat extends MessageBase {
  readonly type: "heartbeat";
  readonly commit: number;
  readonly seq: number;
  readonly sentTick: number;
  /** The leader has quiesced the group: stop the election timer until something happens. */
  readonly quiesce?: boolean;
}

export interface MsgHeartbeatResp extends MessageBase {
  readonly type: "heartbeatResp";
  readonly seq: number;
  readonly sentTick: number;
}

export interface MsgSnap extends MessageBase {
  readonly type: "snap";
  readonly snapshot: Snapshot;
}

/** Sent by a leader to its transfer target: campaign now, ignoring leases. */
export interface MsgTimeoutNow extends MessageBase {
  readonly type: "timeoutNow";
}

/** How a leader confirms it is still leader before serving a read (see docs/raft.md). */
export type ReadMode = "quorum" | "lease";

/** A follower asks its leader for a read index on behalf of one of its clients. */
export interface MsgReadIndex extends MessageBase {
  readonly type: "readIndex";
  readonly context: string;
  /** The confirmation the follower's caller asked for. */
  readonly mode: ReadMode;
}

export interface MsgReadIndexResp extends MessageBase {
  readonly type: "readIndexResp";
  readonly context: string;
  /** 0 when the leader refused (not leader any more, or overloaded): the host retries. */
  readonly index: number;
}

/**
 * A follower forwards its clients' proposals to the leader of its term (`term` = that term).
 * Only the `data` of each entry is meaningful (term and index are 0). The leader appends them
 * only if the term is still its own, so a forwarded entry always carries the term it was
 * forwarded in: a forwarder that applies an entry of a LATER term without having seen its
 * proposal knows the proposal was certainly dropped (docs/raft.md, "Forwarded proposals").
 */
export interface MsgProp extends MessageBase {
  readonly type: "prop";
  readonly entries: readonly Entry[];
  /**
   * The sender's incarnation (random per RawNode instance) and the message's number within it
   * (1, 2, ...): the leader appends each (incarnation, seq) at most once, so a network that
   * duplicates messages cannot make it append a proposal twice.
   */
  readonly incarnation: string;
  readonly seq: number;
}

/**
 * Why forwarded proposals were refused: nothing of them was appended, except for `UNKNOWN`: the
 * node led the proposals' term and may have appended them (it does not remember what it took
 * then: it restarted, or led other terms since), so their outcome is unknown. Either way the
 * forwarder stops waiting for them and learns the refuser's term.
 */
export type PropRefusal = "NOT_LEADER" | "OVERLOADED" | "TRANSFERRING" | "UNKNOWN";

/** The leader (or a node that is not one any more) refused these forwarded proposals. */
export interface MsgPropResp extends MessageBase {
  readonly type: "propResp";
  readonly entries: readonly Entry[];
  readonly reason: PropRefusal;
}

export type Message =
  | MsgProp
  | MsgPropResp
  | MsgApp
  | MsgAppResp
  | MsgVote
  | MsgVoteResp
  | MsgHeartbeat
  | MsgHeartbeatResp
  | MsgSnap
  | MsgTimeoutNow
  | MsgReadIndex
  | MsgReadIndexResp;

export type MessageType = Message["type"];

/** Output of `RawNode.ready()`. See docs/raft.md for the contract. */
export interface Ready {
  /** Changed soft state (leader, role); informational, need not be persisted. */
  readonly softState: SoftState | undefined;
  /** Hard state to persist (undefined when unchanged). */
  readonly hardState: HardState | undefined;
  /** A snapshot to persist and restore into the state machine, before `entries`. */
  readonly snapshot: Snapshot | undefined;
  /**
   * Entries to append to stable storage. `entries[0].index` may be below the stored last index:
   * stored entries from that index on are replaced (a conflicting suffix is truncated).
   */
  readonly entries: readonly Entry[];
  /** True when hard state or entries must be written durably (fsync) before `messages` go out. */
  readonly mustSync: boolean;
  /** Messages to send AFTER the above is durable (acknowledgements, votes, answers). */
  readonly messages: readonly Message[];
  /**
   * A leader's appends, heartbeats, snapshots and TimeoutNow: they do not depend on this
   * Ready's writes, so the host may send them at once, in parallel with its own fsync (the
   * leader counts its own log toward commitment only after advance()). Sending them with
   * `messages` instead is also correct, only slower.
   */
  readonly eagerMessages: readonly Message[];
  /** Committed entries to apply to the state machine, in order. */
  readonly committedEntries: readonly Entry[];
  /** Linearizable read permissions, released once `index` is applied. */
  readonly readStates: readonly ReadState[];
  /**
   * Forwarded proposals of this node that the leader refused: they were certainly not
   * appended, so the host may fail them as retryable (the data is what was proposed).
   */
  readonly refusedProposals: readonly { readonly data: Uint8Array; readonly reason: PropRefusal }[];
  /**
   * Contexts of this node's forwarded reads (readIndex) that the leader refused: no
   * ReadState will come for them, so the host may fail them as retryable at once.
   */
  readonly refusedReads: readonly string[];
}

export type ProposeError =
  | { readonly ok: false; readonly code: "NOT_LEADER"; readonly leaderHint: NodeId }
  | { readonly ok: false; readonly code: "OVERLOADED"; readonly message: string }
  | { readonly ok: false; readonly code: "TRANSFERRING"; readonly leaderHint: NodeId }
  | { readonly ok: false; readonly code: "CONF_CHANGE_PENDING" }
  | { readonly ok: false; readonly code: "INVALID_CONF_CHANGE"; readonly message: string };

/**
 * A successful proposal: the entry will be applied at `index` if it is committed in `term`.
 * If the host later sees a different term at `index`, the proposal was lost (leader change).
 */
export type ProposeResult =
  | { readonly ok: true; readonly index: number; readonly term: number }
  | ProposeError;

/**
 * `proposeOrForward`: a leader appends (and knows the index); a follower that knows its leader
 * forwards the proposal in its next Ready and knows only the term it was forwarded in.
 */
export type ForwardProposeResult =
  | ProposeResult
  | { readonly ok: true; readonly forwardedTo: NodeId; readonly term: number };

export type ReadIndexResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly code: "NOT_LEADER"; readonly leaderHint: NodeId }
  | { readonly ok: false; readonly code: "OVERLOADED"; readonly message: string };

export type TransferResult =
  | { readonly ok: true }
  | { readonly ok: false; readonly code: "NOT_LEADER"; readonly leaderHint: NodeId }
  | { readonly ok: false; readonly code: "UNKNOWN_TARGET" | "IS_LEADER" | "TARGET_IS_LEARNER" };
