/**
 * The sending side of `GrpcTransport` towards one peer: one channel, one long-lived `Raft`
 * client stream carrying batches, at most one `Snapshot` stream at a time, and the peer's
 * `Call`s. Everything queued here is bounded and drops oldest-first.
 *
 * Stream lifecycle: closed → opening (call started: waits for a connection, then for the
 * server's response headers) → up (headers received: the server accepted the stream) → closed on
 * any error or end, then re-opened after a capped exponential backoff with jitter. Batches are written only while the stream is up, so
 * while the peer is down they wait in our bounded queue rather than in grpc-js's unbounded
 * buffers, and what we count as sent was at least handed to a live HTTP/2 stream.
 */
import {
  type ChannelCredentials,
  Client,
  type ClientUnaryCall,
  type ClientWritableStream,
  connectivityState,
  Metadata,
  type ServiceError,
  status,
} from "@grpc/grpc-js";
import { assert } from "../base/index.js";
import type { MsgSnap, NodeId } from "../raft/index.js";
import type {
  PbCallRequest,
  PbCallResponse,
  PbRaftBatch,
  PbRaftMessage,
  PbSnapshotChunk,
} from "./codec.js";
import {
  CHUNK_OVERHEAD_BYTES,
  channelOptions,
  type GrpcCounters,
  type ResolvedGrpcOptions,
} from "./grpc-options.js";
import { BoundedQueue } from "./queue.js";
import type { CallResult } from "./transport.js";

/** A wire batch ready to write: already encoded, with what it counts for in the stats. */
export interface OutgoingBatch {
  readonly pb: PbRaftBatch;
  readonly messages: number;
  /** An upper bound of its encoded size (what the queue counts). */
  readonly bytes: number;
}

export interface OutgoingSnapshot {
  readonly group: string;
  readonly msg: MsgSnap;
  readonly header: PbRaftMessage;
}

type Ack = Record<string, never>;

/** The serializers and paths of kumo.v1.Peer, with byte counting wrapped in (see grpc.ts). */
export interface PeerRpc {
  readonly raftPath: string;
  readonly serializeBatch: (b: PbRaftBatch) => Buffer;
  readonly snapshotPath: string;
  readonly serializeChunk: (c: PbSnapshotChunk) => Buffer;
  readonly callPath: string;
  readonly serializeCall: (r: PbCallRequest) => Buffer;
  readonly deserializeCallResponse: (b: Buffer) => PbCallResponse;
  readonly deserializeAck: (b: Buffer) => Ack;
}

export interface LinkContext {
  readonly self: NodeId;
  readonly opts: ResolvedGrpcOptions;
  readonly counters: GrpcCounters;
  readonly rpc: PeerRpc;
}

/** Failures are reported through the call's callback; this only keeps a late Writable error
 * (a write racing the end of the call) from becoming an uncaught 'error' event. */
function ignoreStreamError(): void {}

/**
 * A call that failed after it was started: the request may have reached the peer, so every
 * transport failure is an unknown outcome (TIMEOUT), never UNREACHABLE, which promises the
 * request did not arrive (callers retry on it). The peer's own refusals are certain.
 */
function callFailure(err: ServiceError): CallResult {
  const message = `${status[err.code] ?? err.code}: ${err.details}`;
  switch (err.code) {
    case status.DEADLINE_EXCEEDED:
    case status.UNAVAILABLE:
    case status.CANCELLED:
      return { ok: false, code: "TIMEOUT", message: `no answer, outcome unknown (${message})` };
    case status.UNIMPLEMENTED:
      // The peer does not serve kumo.v1.Peer/Call at all (another program, another version).
      return { ok: false, code: "NO_HANDLER", message };
    default:
      return { ok: false, code: "REMOTE_ERROR", message };
  }
}

/** The peer answered: its handler's outcome travels in CallResponse (see peer.proto). */
function callAnswer(r: PbCallResponse | undefined): CallResult {
  const message = r?.errorMessage ?? "";
  if (r?.errorCode === "NO_HANDLER") return { ok: false, code: "NO_HANDLER", message };
  if (r?.errorCode) return { ok: false, code: "REMOTE_ERROR", message };
  const b = r?.body;
  // A plain Uint8Array view: callers should not come to depend on Buffer's extra API.
  return {
    ok: true,
    body: b ? new Uint8Array(b.buffer, b.byteOffset, b.byteLength) : new Uint8Array(0),
  };
}

export class PeerLink {
  private readonly queue: BoundedQueue<OutgoingBatch>;
  private readonly snapshots: BoundedQueue<OutgoingSnapshot>;
  private client: Client | undefined;
  private stream: ClientWritableStream<PbRaftBatch> | undefined;
  private upSinceMs: number | undefined;
  private waitingDrain = false;
  private flushScheduled = false;
  private reopenTimer: NodeJS.Timeout | undefined;
  private delayMs: number;
  private snapshotCall: ClientWritableStream<PbSnapshotChunk> | undefined;
  private readonly calls = new Set<ClientUnaryCall>();
  /** Calls waiting for the connection; woken (with a reason) when the link closes. */
  private readonly connectWaiters = new Set<(why: string) => void>();
  private closed = false;

  constructor(
    private readonly ctx: LinkContext,
    readonly id: NodeId,
    private addressValue: string,
  ) {
    const o = ctx.opts;
    this.queue = new BoundedQueue(o.queueBatchesMax, o.queueBytesMax);
    this.snapshots = new BoundedQueue(o.snapshotQueueMax);
    this.delayMs = o.reconnectDelayMsMin;
  }

  get address(): string {
    return this.addressValue;
  }

  /** Whether the Raft stream is up: the peer accepted it and it has not failed since. */
  get up(): boolean {
    return this.upSinceMs !== undefined;
  }

  get callsInflight(): number {
    return this.calls.size + this.connectWaiters.size;
  }

  get connected(): boolean {
    return this.client !== undefined;
  }

  /** Creates the channel and opens the Raft stream (once the transport has credentials). */
  connect(creds: ChannelCredentials): void {
    assert(!this.closed, "connect after close");
    if (this.client) return;
    this.client = new Client(this.addressValue, creds, channelOptions(this.ctx.opts));
    this.open();
  }

  /** A new address: a new channel. Queued traffic stays and goes to the new address. */
  setAddress(address: string, creds: ChannelCredentials | undefined): void {
    if (address === this.addressValue) return;
    this.addressValue = address;
    if (!this.client) return;
    this.disconnect();
    if (creds) this.connect(creds);
  }

  enqueue(batch: OutgoingBatch): void {
    for (const dropped of this.queue.push(batch, batch.bytes)) {
      this.ctx.counters.messagesDropped += dropped.messages;
    }
    this.scheduleFlush();
  }

  enqueueSnapshot(s: OutgoingSnapshot): void {
    for (const _dropped of this.snapshots.push(s, 0)) this.ctx.counters.messagesDropped++;
    this.pumpSnapshots();
  }

  /**
   * UNREACHABLE only when the request certainly was not sent: the call starts only on a READY
   * connection (waiting for one while the channel is connecting, failing at once while it is in
   * TRANSIENT_FAILURE). Once started, failures are unknown outcomes (see callFailure).
   */
  async call(
    req: PbCallRequest,
    timeoutMs: number,
    headers?: Readonly<Record<string, string>>,
  ): Promise<CallResult> {
    const deadlineMs = Date.now() + timeoutMs;
    const why = await this.whenConnected(deadlineMs);
    const client = this.client;
    if (why !== undefined || !client) {
      return { ok: false, code: "UNREACHABLE", message: `${this.id}: ${why ?? "link closed"}` };
    }
    const metadata = new Metadata();
    // Trace context (traceparent, tracestate) of a traced call: see GrpcTransport.call.
    if (headers) for (const [k, v] of Object.entries(headers)) metadata.set(k, v);
    return new Promise<CallResult>((resolve) => {
      const c = client.makeUnaryRequest(
        this.ctx.rpc.callPath,
        this.ctx.rpc.serializeCall,
        this.ctx.rpc.deserializeCallResponse,
        req,
        metadata,
        { deadline: deadlineMs },
        (err, res) => {
          this.calls.delete(c);
          resolve(err ? callFailure(err) : callAnswer(res));
        },
      );
      this.calls.add(c);
    });
  }

  /** Resolves undefined once the channel is READY, else why not (at once, or at the deadline). */
  private whenConnected(deadlineMs: number): Promise<string | undefined> {
    return new Promise((resolve) => {
      let done = false;
      const finish = (why: string | undefined): void => {
        if (done) return;
        done = true;
        this.connectWaiters.delete(finish);
        resolve(why);
      };
      this.connectWaiters.add(finish);
      const check = (): void => {
        const client = this.client;
        if (done) return;
        if (this.closed || !client) {
          finish("link closed");
          return;
        }
        const channel = client.getChannel();
        const state = channel.getConnectivityState(true);
        if (state === connectivityState.READY) {
          finish(undefined);
        } else if (
          state === connectivityState.TRANSIENT_FAILURE ||
          state === connectivityState.SHUTDOWN
        ) {
          finish(`no connection (${connectivityState[state]})`);
        } else if (Date.now() >= deadlineMs) {
          finish("not connected within the timeout");
        } else {
          // IDLE or CONNECTING: wait for the next state change (or the deadline).
          channel.watchConnectivityState(state, deadlineMs, () => check());
        }
      };
      check();
    });
  }

  /** Closes everything; what was still queued counts as dropped. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.disconnect();
    for (const b of this.queue.drain()) this.ctx.counters.messagesDropped += b.messages;
    this.ctx.counters.messagesDropped += this.snapshots.drain().length;
    // Calls not yet sent fail UNREACHABLE; sent ones see CANCELLED: TIMEOUT (outcome unknown).
    for (const wake of [...this.connectWaiters]) wake("transport stopped");
    for (const c of this.calls) c.cancel();
  }

  private disconnect(): void {
    clearTimeout(this.reopenTimer);
    this.reopenTimer = undefined;
    const stream = this.stream;
    this.stream = undefined;
    this.upSinceMs = undefined;
    this.waitingDrain = false;
    stream?.cancel();
    const snap = this.snapshotCall;
    this.snapshotCall = undefined;
    snap?.cancel();
    // Calls in progress keep their own deadline; close() cancels them when the transport stops.
    this.client?.close();
    this.client = undefined;
  }

  private open(): void {
    const client = this.client;
    if (this.closed || !client || this.stream) return;
    const call = client.makeClientStreamRequest<PbRaftBatch, Ack>(
      this.ctx.rpc.raftPath,
      this.ctx.rpc.serializeBatch,
      this.ctx.rpc.deserializeAck,
      // Wait for the channel instead of failing while it is (re)connecting: the channel retries
      // the connection with its own capped backoff (same bounds as ours), and the stream starts
      // the moment a connection is up. Failing fast here would stack our backoff on top of the
      // channel's and delay the reconnect by up to twice the cap.
      new Metadata({ waitForReady: true }),
      {},
      (err) => this.onStreamClosed(call, err),
    );
    call.on("error", ignoreStreamError);
    // The server sends its headers as soon as it accepts the stream (see peer.proto).
    call.on("metadata", () => {
      if (this.stream !== call) return;
      this.upSinceMs = Date.now();
      this.ctx.counters.streamsOpened++;
      this.scheduleFlush();
      this.pumpSnapshots();
    });
    this.stream = call;
  }

  private onStreamClosed(call: ClientWritableStream<PbRaftBatch>, _err: ServiceError | null): void {
    if (this.stream !== call) return;
    const livedMs = this.upSinceMs === undefined ? 0 : Date.now() - this.upSinceMs;
    this.stream = undefined;
    this.upSinceMs = undefined;
    this.waitingDrain = false;
    if (this.closed) return;
    // Reset the backoff only after a stream that lived a while: a peer that accepts streams and
    // fails them at once must not be hammered at the minimum delay.
    if (livedMs >= this.ctx.opts.reconnectDelayMsMax)
      this.delayMs = this.ctx.opts.reconnectDelayMsMin;
    // Equal jitter: between half and all of the delay, so peers restarted together spread out.
    const waitMs = this.delayMs / 2 + (Math.random() * this.delayMs) / 2;
    this.delayMs = Math.min(this.ctx.opts.reconnectDelayMsMax, this.delayMs * 2);
    this.reopenTimer = setTimeout(() => {
      this.reopenTimer = undefined;
      this.open();
    }, waitMs);
  }

  /** Writes happen in a microtask: every `send` of one host cycle is queued before any encoding. */
  private scheduleFlush(): void {
    if (this.flushScheduled || !this.up) return;
    this.flushScheduled = true;
    queueMicrotask(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  /**
   * The next wire message: the oldest queued batch, merged with the ones after it while the sum
   * stays within the message limit. Batches queue up together while the stream waits for a
   * drain, or when several sends of one turn target this peer; one gRPC message costs the same
   * framing and wake-up on both sides whatever it holds.
   */
  private nextMessage(): OutgoingBatch | undefined {
    const first = this.queue.shift();
    if (!first) return undefined;
    const limitBytes = this.ctx.opts.messageBytesMax - CHUNK_OVERHEAD_BYTES;
    let next = this.queue.peek();
    if (!next || first.bytes + next.bytes > limitBytes) return first;
    const messages = [...(first.pb.messages ?? [])];
    let count = first.messages;
    let bytes = first.bytes;
    while (next && bytes + next.bytes <= limitBytes) {
      this.queue.shift();
      for (const m of next.pb.messages ?? []) messages.push(m);
      count += next.messages;
      bytes += next.bytes;
      next = this.queue.peek();
    }
    return { pb: { from: first.pb.from, messages }, messages: count, bytes };
  }

  private flush(): void {
    const call = this.stream;
    if (!call || !this.up || this.waitingDrain) return;
    for (let out = this.nextMessage(); out !== undefined; out = this.nextMessage()) {
      this.ctx.counters.batchesSent++;
      this.ctx.counters.messagesSent += out.messages;
      if (!call.write(out.pb)) {
        // HTTP/2 flow control pushes back: the rest waits in our bounded queue.
        this.waitingDrain = true;
        call.once("drain", () => {
          if (this.stream !== call) return;
          this.waitingDrain = false;
          this.flush();
        });
        return;
      }
    }
  }

  private pumpSnapshots(): void {
    const client = this.client;
    if (this.closed || !client || !this.up || this.snapshotCall) return;
    const job = this.snapshots.shift();
    if (!job) return;
    const c = this.ctx.counters;
    const call = client.makeClientStreamRequest<PbSnapshotChunk, Ack>(
      this.ctx.rpc.snapshotPath,
      this.ctx.rpc.serializeChunk,
      this.ctx.rpc.deserializeAck,
      new Metadata(),
      { deadline: Date.now() + this.ctx.opts.snapshotTimeoutMs },
      (err) => {
        if (this.snapshotCall === call) this.snapshotCall = undefined;
        if (err) {
          c.snapshotsFailed++;
          c.messagesDropped++;
        } else {
          c.snapshotsStreamed++;
          c.messagesSent++;
        }
        this.pumpSnapshots();
      },
    );
    call.on("error", ignoreStreamError);
    this.snapshotCall = call;
    this.writeChunks(call, job, 0);
  }

  private writeChunks(
    call: ClientWritableStream<PbSnapshotChunk>,
    job: OutgoingSnapshot,
    from: number,
  ): void {
    const data = job.msg.snapshot.data;
    const total = data.length;
    const chunkBytes = this.ctx.opts.snapshotChunkBytes;
    let offset = from;
    while (this.snapshotCall === call) {
      const end = Math.min(total, offset + chunkBytes);
      const piece = data.subarray(offset, end);
      const last = end === total;
      const chunk: PbSnapshotChunk =
        offset === 0
          ? {
              from: this.ctx.self,
              group: job.group,
              msg: job.header,
              totalBytes: total,
              offset,
              data: piece,
              last,
            }
          : { offset, data: piece, last };
      this.ctx.counters.snapshotChunksSent++;
      const more = call.write(chunk);
      offset = end;
      if (last) {
        call.end();
        return;
      }
      if (!more) {
        const next = offset;
        call.once("drain", () => this.writeChunks(call, job, next));
        return;
      }
    }
  }
}
