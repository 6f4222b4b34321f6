/**
 * The transport port: how nodes talk to each other. Implementations: `MemoryTransport` (tests,
 * in-process clusters) and `GrpcTransport` (real nodes, @grpc/grpc-js over HTTP/2); both pass
 * the same contract suite (test/transport/contract.ts). `FaultyTransport` wraps either one to
 * drop, delay or partition traffic between node ids in tests.
 *
 * Raft traffic is fire-and-forget: a lost batch is recovered by the protocol, so `send` never
 * blocks and never throws; it drops (and counts) when a peer's bounded queue is full or the peer
 * is unreachable. Requests (`call`) are for things that need an answer, e.g. forwarding a client
 * request to a shard leader; they fail with a typed error instead of hanging.
 */
import type { Message, NodeId } from "../raft/index.js";

/**
 * The W3C trace context of one entry of a message that belongs to a traced client write (a
 * forwarded proposal, or its replication): set by the multi-Raft host only when tracing is on
 * and a sampled request's entry is in the message. Peers that do not know it ignore it.
 */
export interface EntryTrace {
  /** Position of the entry in `msg.entries`. */
  readonly entry: number;
  readonly traceparent: string;
  readonly tracestate?: string;
}

/** A Raft message of one group. Group ids are opaque strings (shard ids, "meta", ...). */
export interface GroupMessage {
  readonly group: string;
  readonly msg: Message;
  /** Absent unless tracing is on and a traced entry is in `msg` (see EntryTrace). */
  readonly traces?: readonly EntryTrace[];
}

/**
 * Why a call has no answer. What matters to callers is whether the request may have run:
 * - `UNREACHABLE`: it certainly did not reach the peer's handler (unknown peer, no connection,
 *   too many calls in flight, a cut request in the fault injector): safe to retry, elsewhere too.
 * - `TIMEOUT`: no answer, outcome unknown: the deadline passed, or the connection or the peer
 *   went away after the request may have left. Retry only what is idempotent.
 * - `NO_HANDLER`: the peer does not serve `method` (nothing ran).
 * - `REMOTE_ERROR`: the peer's handler failed (its message is carried), or the peer refused the
 *   request (e.g. a certificate that does not name the caller).
 */
export type CallError =
  | { readonly ok: false; readonly code: "UNREACHABLE"; readonly message: string }
  | { readonly ok: false; readonly code: "TIMEOUT"; readonly message: string }
  | { readonly ok: false; readonly code: "NO_HANDLER"; readonly message: string }
  | { readonly ok: false; readonly code: "REMOTE_ERROR"; readonly message: string };

export type CallResult = { readonly ok: true; readonly body: Uint8Array } | CallError;

/**
 * What an `onCall` handler rejects with when it does not serve `method`: the caller gets
 * `NO_HANDLER` (any other rejection becomes `REMOTE_ERROR` with the error's message). Both
 * transports map it the same way, so an application router can be written once.
 */
export class NoHandlerError extends Error {
  override name = "NoHandlerError";
  constructor(readonly method: string) {
    super(`no handler for method ${JSON.stringify(method)}`);
  }
}

export interface TransportHandlers {
  /** A batch of Raft messages arrived from `from` (possibly for many groups). */
  onRaft(from: NodeId, batch: readonly GroupMessage[]): void;
  /**
   * A request arrived; answer with bytes (the method names the application protocol). Reject
   * with `NoHandlerError` for a method this node does not serve.
   */
  onCall(from: NodeId, method: string, body: Uint8Array): Promise<Uint8Array>;
}

export interface TransportStats {
  readonly batchesSent: number;
  readonly messagesSent: number;
  readonly messagesDropped: number;
  readonly bytesSent: number;
}

export interface Transport {
  readonly self: NodeId;
  /** Starts serving (binds the listening address for network transports). */
  start(handlers: TransportHandlers): Promise<void>;
  /** Registers or updates where a peer listens ("host:port" for gRPC). */
  setPeer(id: NodeId, address: string): void;
  /**
   * Queues a batch for `to`; never blocks, never throws. Messages to one peer arrive in the
   * order sent (or not at all), but batch boundaries are not kept: consecutive batches still
   * queued together may arrive as one `onRaft` (the gRPC transport merges them into one wire
   * message), and a batch over the message limit arrives split.
   */
  send(to: NodeId, batch: readonly GroupMessage[]): void;
  call(to: NodeId, method: string, body: Uint8Array, timeoutMs: number): Promise<CallResult>;
  /** Whether we currently have a working connection to `to` (best effort). */
  reachable(to: NodeId): boolean;
  /** Marks the node SERVING / NOT_SERVING in grpc.health.v1 (no-op for memory). */
  setServing(serving: boolean): void;
  stats(): TransportStats;
  stop(): Promise<void>;
}
