/** Options, defaults and statistics of `GrpcTransport` (see docs/transport.md). */
import type { ChannelOptions } from "@grpc/grpc-js";
import { assert } from "../base/index.js";
import type { NodeId } from "../raft/index.js";
import type { TransportStats } from "./transport.js";

const KiB = 1024;
const MiB = 1024 * KiB;

/** Mutual TLS: every node has a key and a certificate signed by the cluster CA. */
export interface GrpcTlsOptions {
  /** PEM file of the CA that signs every node certificate (trusted for servers and clients). */
  readonly caFile: string;
  /** PEM certificate of this node, presented as server and as client. */
  readonly certFile: string;
  /** PEM private key of `certFile`. */
  readonly keyFile: string;
  /**
   * Require the subject CN of a client's certificate to equal the node id it claims in its
   * requests (default true). Without it any holder of a cluster certificate could speak as any
   * node, e.g. vote in another node's name.
   */
  readonly verifyPeerNodeId?: boolean;
  /**
   * Certificates that change while the transport runs (the node passes its reloading
   * `TlsFiles`): new connections, both ways, use the latest material; connections already open
   * keep theirs. Without it the three files are read once, at start.
   */
  readonly source?: TlsSource;
}

/** PEM contents of the CA, this node's certificate and its key. */
export interface TlsSourceMaterial {
  readonly ca: Buffer | undefined;
  readonly cert: Buffer;
  readonly key: Buffer;
}

export interface TlsSource {
  current(): TlsSourceMaterial;
  /** Calls `fn` with each replacement; returns the unsubscribe function. */
  onChange(fn: (m: TlsSourceMaterial) => void): () => void;
}

export interface GrpcTransportOptions {
  readonly self: NodeId;
  /** "host:port" to bind, e.g. "127.0.0.1:0" (port 0: the OS picks; see `address()`). */
  readonly listen: string;
  /** Mutual TLS. Without it traffic is plaintext: only for loopback and trusted networks. */
  readonly tls?: GrpcTlsOptions;
  /** Raft batches queued per peer while its stream is down or slow; the oldest are dropped. */
  readonly queueBatchesMax?: number;
  /** The same queue, bounded in (upper-bound estimated) bytes. */
  readonly queueBytesMax?: number;
  /** Deadline of a `call` whose `timeoutMs` is not finite (Infinity, NaN). */
  readonly callTimeoutMsDefault?: number;
  /** Outgoing calls in flight at once; beyond it `call` fails with UNREACHABLE at once. */
  readonly callsInflightMax?: number;
  /** Snapshot messages whose data is larger than this go through the chunked Snapshot stream. */
  readonly snapshotInlineBytesMax?: number;
  /** Data bytes per SnapshotChunk. */
  readonly snapshotChunkBytes?: number;
  /** Streamed snapshots waiting per peer (one is in flight at a time); the oldest are dropped. */
  readonly snapshotQueueMax?: number;
  /** Deadline of one whole snapshot stream. */
  readonly snapshotTimeoutMs?: number;
  /** Largest snapshot accepted from a peer (the receiver allocates it whole). */
  readonly snapshotBytesMax?: number;
  /** Snapshot streams received at once; more are refused with RESOURCE_EXHAUSTED. */
  readonly snapshotsReceivingMax?: number;
  /** Largest gRPC message sent or accepted; wire batches are split to stay under it. */
  readonly messageBytesMax?: number;
  /** Backoff between attempts to re-open a peer's Raft stream: doubles from min up to max. */
  readonly reconnectDelayMsMin?: number;
  readonly reconnectDelayMsMax?: number;
  /** HTTP/2 PING period on idle and busy connections, both directions. */
  readonly keepaliveIntervalMs?: number;
  /** A PING unanswered for this long closes the connection (dead peer detected). */
  readonly keepaliveTimeoutMs?: number;
  /** `stop()` waits this long for calls in progress to finish, then cancels them. */
  readonly stopGraceMs?: number;
}

export type ResolvedGrpcOptions = Required<Omit<GrpcTransportOptions, "tls">> &
  Pick<GrpcTransportOptions, "tls">;

export const GRPC_DEFAULTS = {
  queueBatchesMax: 1024,
  queueBytesMax: 64 * MiB,
  callTimeoutMsDefault: 5_000,
  callsInflightMax: 1024,
  snapshotInlineBytesMax: 1 * MiB,
  snapshotChunkBytes: 1 * MiB,
  snapshotQueueMax: 4,
  snapshotTimeoutMs: 5 * 60_000,
  snapshotBytesMax: 1024 * MiB,
  snapshotsReceivingMax: 4,
  messageBytesMax: 64 * MiB,
  reconnectDelayMsMin: 100,
  reconnectDelayMsMax: 2_000,
  // A dead peer (power loss, partition: no FIN, no RST) is noticed within interval + timeout.
  keepaliveIntervalMs: 2_000,
  keepaliveTimeoutMs: 3_000,
  stopGraceMs: 1_000,
} as const satisfies Omit<ResolvedGrpcOptions, "self" | "listen" | "tls">;

/** Room for the non-data fields of a SnapshotChunk (ids, header, ConfState). */
export const CHUNK_OVERHEAD_BYTES = 64 * KiB;

export function resolveOptions(o: GrpcTransportOptions): ResolvedGrpcOptions {
  const r: ResolvedGrpcOptions = { ...GRPC_DEFAULTS, ...dropUndefined(o) };
  assert(r.self !== "", "GrpcTransport needs a non-empty self id");
  assert(r.listen.lastIndexOf(":") > 0, `listen must be "host:port", got ${r.listen}`);
  for (const [k, v] of Object.entries(r)) {
    if (typeof v === "number") assert(v > 0 && !Number.isNaN(v), `${k} must be positive`);
  }
  assert(
    r.reconnectDelayMsMin <= r.reconnectDelayMsMax,
    "reconnectDelayMsMin > reconnectDelayMsMax",
  );
  assert(
    r.snapshotInlineBytesMax + CHUNK_OVERHEAD_BYTES <= r.messageBytesMax &&
      r.snapshotChunkBytes + CHUNK_OVERHEAD_BYTES <= r.messageBytesMax,
    "snapshot inline and chunk sizes must fit in messageBytesMax",
  );
  return r;
}

function dropUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

/** Both ends bound message sizes and ping each other, so either side notices a dead peer. */
export function channelOptions(o: ResolvedGrpcOptions): ChannelOptions {
  return {
    "grpc.keepalive_time_ms": o.keepaliveIntervalMs,
    "grpc.keepalive_timeout_ms": o.keepaliveTimeoutMs,
    // The Raft stream is always open, but pings must also run while it is being re-opened.
    "grpc.keepalive_permit_without_calls": 1,
    "grpc.initial_reconnect_backoff_ms": o.reconnectDelayMsMin,
    "grpc.max_reconnect_backoff_ms": o.reconnectDelayMsMax,
    "grpc.max_receive_message_length": o.messageBytesMax,
    "grpc.max_send_message_length": o.messageBytesMax,
    // grpc-js shares connections between channels with equal targets process-wide by default:
    // two transports in one process (tests, in-process clusters) must not share one, or
    // stopping one would cut the other's traffic.
    "grpc.use_local_subchannel_pool": 1,
  };
}

export function serverOptions(o: ResolvedGrpcOptions): ChannelOptions {
  return {
    "grpc.keepalive_time_ms": o.keepaliveIntervalMs,
    "grpc.keepalive_timeout_ms": o.keepaliveTimeoutMs,
    "grpc.max_receive_message_length": o.messageBytesMax,
    "grpc.max_send_message_length": o.messageBytesMax,
    // Bounds what one connection can make us hold: the Raft stream, snapshots, calls.
    "grpc.max_concurrent_streams": o.callsInflightMax + o.snapshotsReceivingMax + 16,
  };
}

export interface GrpcTransportStats extends TransportStats {
  /** Raft streams established (first connection and every reconnect). */
  readonly streamsOpened: number;
  /** Snapshot messages sent through the chunked Snapshot stream and acknowledged. */
  readonly snapshotsStreamed: number;
  readonly snapshotsFailed: number;
  readonly snapshotChunksSent: number;
  readonly batchesReceived: number;
  readonly messagesReceived: number;
  readonly snapshotsReceived: number;
  /** Received batches or snapshots that did not decode (dropped). */
  readonly invalidReceived: number;
  /** Requests refused because the claimed node id did not match the client certificate. */
  readonly identityRejected: number;
}

export type GrpcCounters = { -readonly [K in keyof GrpcTransportStats]: number };

export function zeroCounters(): GrpcCounters {
  return {
    batchesSent: 0,
    messagesSent: 0,
    messagesDropped: 0,
    bytesSent: 0,
    streamsOpened: 0,
    snapshotsStreamed: 0,
    snapshotsFailed: 0,
    snapshotChunksSent: 0,
    batchesReceived: 0,
    messagesReceived: 0,
    snapshotsReceived: 0,
    invalidReceived: 0,
    identityRejected: 0,
  };
}
