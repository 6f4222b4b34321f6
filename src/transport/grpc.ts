/**
 * `GrpcTransport`: the transport between real nodes, gRPC over HTTP/2 (@grpc/grpc-js), schemas in
 * proto/kumo/v1/peer.proto. This file is the server side and the public API; the per-peer sending
 * side is `PeerLink` (grpc-link.ts). See docs/transport.md for the design.
 */
import { readFile } from "node:fs/promises";
import type { PeerCertificate } from "node:tls";
import {
  type ChannelCredentials,
  credentials,
  experimental,
  type handleClientStreamingCall,
  type handleUnaryCall,
  Metadata,
  Server,
  ServerCredentials,
  type ServiceDefinition,
  type ServiceError,
  status,
} from "@grpc/grpc-js";
import {
  type Context,
  context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  TraceFlags,
  trace,
} from "@opentelemetry/api";
import { assert, tracing } from "../base/index.js";
import type { MsgSnap, NodeId } from "../raft/index.js";
import {
  batchBytesUpperBound,
  decodeBatch,
  decodeSnapshotHeader,
  encodeBatch,
  encodeSnapshotHeader,
  groupMessageBytesUpperBound,
  type PbCallRequest,
  type PbCallResponse,
  type PbRaftBatch,
  type PbRaftMessage,
  type PbSnapshotChunk,
} from "./codec.js";
import { PeerLink, type PeerRpc } from "./grpc-link.js";
import {
  CHUNK_OVERHEAD_BYTES,
  type GrpcCounters,
  type GrpcTransportOptions,
  type GrpcTransportStats,
  type ResolvedGrpcOptions,
  resolveOptions,
  serverOptions,
  type TlsSource,
  type TlsSourceMaterial,
  zeroCounters,
} from "./grpc-options.js";
import { HealthServer } from "./health.js";
import { healthService, method, peerService } from "./protos.js";
import {
  type CallResult,
  type GroupMessage,
  NoHandlerError,
  type Transport,
  type TransportHandlers,
} from "./transport.js";
import { deserializeRaftBatch, serializeRaftBatch } from "./wire.js";

type Ack = Record<string, never>;

/** The part of a server call that knows the client's TLS certificate. */
interface AuthCall {
  getAuthContext(): { sslPeerCertificate?: PeerCertificate } | null;
}

type State = "new" | "starting" | "started" | "stopping" | "stopped";

/** Health Watch streams served at once (orchestrators and probes: a handful in practice). */
const HEALTH_WATCHERS_MAX = 256;

/** A server-side stream we may have to end ourselves when stopping. */
interface IncomingStream {
  finish(err?: Partial<ServiceError>): void;
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Reads W3C trace headers from gRPC metadata (values are strings for non-binary keys). */
const METADATA_GETTER: TextMapGetter<Metadata> = {
  keys: (md) => Object.keys(md.getMap()),
  get: (md, key) => {
    const v = md.get(key);
    return v.length === 0 ? undefined : v.map((x) => (typeof x === "string" ? x : x.toString()));
  },
};

function sampled(ctx: Context): boolean {
  const sc = trace.getSpanContext(ctx);
  return sc !== undefined && (sc.traceFlags & TraceFlags.SAMPLED) !== 0;
}

/**
 * A span for one peer call (`peer kv.proposeBatch`), client or server side. Only made within a
 * traced request: the caller's active context is sampled, or the metadata carried a sampled one.
 */
function peerSpan(
  kind: SpanKind,
  self: NodeId,
  peer: NodeId,
  method: string,
  parent: Context,
): Span {
  return trace.getTracer("kumo.transport").startSpan(
    `peer ${method}`,
    {
      kind,
      attributes: {
        "rpc.system": "grpc",
        "rpc.service": "kumo.v1.Peer",
        "rpc.method": "Call",
        "kumo.peer.method": method,
        "kumo.node": self,
        "kumo.peer": peer,
      },
    },
    parent,
  );
}

/**
 * What the Raft stream's deserializer gives for bytes that do not parse. grpc-js fails the whole
 * stream (INTERNAL) when a deserializer throws; a bad batch must cost only itself, so the
 * deserializer returns this instead and the handler counts and drops it.
 */
const UNPARSABLE_BATCH: PbRaftBatch = Object.freeze({});

function deserializeRaftBatchOrMarker(buf: Buffer): PbRaftBatch {
  try {
    return deserializeRaftBatch(buf);
  } catch {
    return UNPARSABLE_BATCH;
  }
}

/**
 * kumo.v1.Peer with the Raft stream (de)serialized by wire.ts instead of protobufjs (the schema
 * and the bytes are the same; see wire.ts for why).
 */
function peerServiceFastRaft(): ServiceDefinition {
  const svc = peerService();
  const raft = method<PbRaftBatch, Ack>(svc, "Raft");
  return {
    ...svc,
    Raft: {
      ...raft,
      requestSerialize: serializeRaftBatch,
      requestDeserialize: deserializeRaftBatchOrMarker,
    },
  };
}

/** Zero-copy view as a plain Uint8Array (handlers should not see Buffer's extra API). */
function plainBytes(b: Uint8Array | undefined): Uint8Array {
  if (!b) return new Uint8Array(0);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

type CaListener = experimental.CaCertificateUpdateListener;
type IdentityListener = experimental.IdentityCertificateUpdateListener;

/**
 * A grpc-js certificate provider over a `TlsSource`: every listener gets the current material
 * soon after it subscribes, then each change.
 */
class SourceCertificateProvider implements experimental.CertificateProvider {
  private readonly unsubscribe = new Map<CaListener | IdentityListener, () => void>();

  constructor(private readonly source: TlsSource) {}

  private subscribe(
    listener: CaListener | IdentityListener,
    push: (m: TlsSourceMaterial) => void,
  ): void {
    this.unsubscribe.set(listener, this.source.onChange(push));
    // Not synchronously: grpc-js's server credentials subscribe before they register the
    // server's watcher, so an update delivered inside the subscribe call would be lost (and
    // the server would drop every connection as "credentials not loaded").
    queueMicrotask(() => {
      if (this.unsubscribe.has(listener)) push(this.source.current());
    });
  }

  addCaCertificateListener(listener: CaListener): void {
    this.subscribe(listener, (m) => listener(m.ca ? { caCertificate: m.ca } : null));
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.unsubscribe.get(listener)?.();
    this.unsubscribe.delete(listener);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.subscribe(listener, (m) => listener({ certificate: m.cert, privateKey: m.key }));
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.unsubscribe.get(listener)?.();
    this.unsubscribe.delete(listener);
  }
}

export class GrpcTransport implements Transport {
  readonly self: NodeId;
  private readonly opts: ResolvedGrpcOptions;
  private readonly counters: GrpcCounters = zeroCounters();
  private readonly links = new Map<NodeId, PeerLink>();
  private readonly health: HealthServer;
  private readonly rpc: PeerRpc;
  private readonly incoming = new Set<IncomingStream>();
  private snapshotsReceiving = 0;
  private state: State = "new";
  private server: Server | undefined;
  private clientCreds: ChannelCredentials | undefined;
  private boundAddress: string | undefined;
  private handlers: TransportHandlers | undefined;
  private stopped: Promise<void> | undefined;
  private startDone: Promise<void> | undefined;

  constructor(options: GrpcTransportOptions) {
    this.opts = resolveOptions(options);
    this.self = this.opts.self;
    this.health = new HealthServer(HEALTH_WATCHERS_MAX);
    const svc = peerServiceFastRaft();
    const raft = method<PbRaftBatch, Ack>(svc, "Raft");
    const snapshot = method<PbSnapshotChunk, Ack>(svc, "Snapshot");
    const call = method<PbCallRequest, PbCallResponse>(svc, "Call");
    // Counting in the serializer gives exact wire sizes at no extra encoding cost.
    this.rpc = {
      raftPath: raft.path,
      serializeBatch: (b) => {
        const buf = serializeRaftBatch(b);
        this.counters.bytesSent += buf.length;
        return buf;
      },
      snapshotPath: snapshot.path,
      serializeChunk: (c) => {
        const buf = snapshot.requestSerialize(c);
        this.counters.bytesSent += buf.length;
        return buf;
      },
      callPath: call.path,
      serializeCall: call.requestSerialize,
      deserializeCallResponse: call.responseDeserialize,
      deserializeAck: raft.responseDeserialize,
    };
  }

  /** "host:port" this node serves on (the real port when `listen` asked for port 0). */
  address(): string {
    assert(this.boundAddress !== undefined, "address() before start()");
    return this.boundAddress;
  }

  /**
   * Reads the TLS files, binds `listen` and connects to the peers set so far. On failure (address
   * in use, unreadable TLS files) it rejects with a message saying which, and the transport is
   * stopped: create a new one to retry.
   */
  start(handlers: TransportHandlers): Promise<void> {
    assert(this.state === "new", `start() in state ${this.state}`);
    this.state = "starting";
    this.handlers = handlers;
    this.startDone = this.startServing();
    return this.startDone;
  }

  private async startServing(): Promise<void> {
    const { serverCreds, clientCreds } = await this.credentials();
    const server = new Server(serverOptions(this.opts));
    server.addService(peerServiceFastRaft(), {
      Raft: this.serveRaft,
      Call: this.serveCall,
      Snapshot: this.serveSnapshot,
    });
    server.addService(healthService(), this.health.implementation());
    const port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(this.opts.listen, serverCreds, (err, p) => (err ? reject(err) : resolve(p)));
    }).catch((e: unknown) => {
      this.state = "stopped";
      server.forceShutdown();
      throw new Error(
        `transport ${this.self}: cannot listen on ${this.opts.listen}: ${errorMessage(e)}`,
      );
    });
    this.server = server;
    this.boundAddress = `${this.opts.listen.slice(0, this.opts.listen.lastIndexOf(":"))}:${port}`;
    // stop() may have been called while we were binding; it waits for us and shuts the server.
    if (this.state !== "starting") return;
    this.clientCreds = clientCreds;
    this.state = "started";
    for (const link of this.links.values()) link.connect(clientCreds);
  }

  setPeer(id: NodeId, address: string): void {
    assert(id !== this.self, "setPeer(self)");
    if (this.state === "stopping" || this.state === "stopped") return;
    const link = this.links.get(id);
    if (link) {
      link.setAddress(address, this.clientCreds);
      return;
    }
    const created = new PeerLink(
      { self: this.self, opts: this.opts, counters: this.counters, rpc: this.rpc },
      id,
      address,
    );
    this.links.set(id, created);
    if (this.clientCreds) created.connect(this.clientCreds);
  }

  send(to: NodeId, batch: readonly GroupMessage[]): void {
    if (batch.length === 0) return;
    const link = this.links.get(to);
    if (!link || this.state === "stopping" || this.state === "stopped") {
      this.counters.messagesDropped += batch.length;
      return;
    }
    const inline: GroupMessage[] = [];
    for (const gm of batch) {
      if (
        gm.msg.type === "snap" &&
        gm.msg.snapshot.data.length > this.opts.snapshotInlineBytesMax
      ) {
        const msg: MsgSnap = gm.msg;
        link.enqueueSnapshot({ group: gm.group, msg, header: encodeSnapshotHeader(msg) });
      } else {
        inline.push(gm);
      }
    }
    if (inline.length === 0) return;
    // Keep each wire batch under the gRPC message limit (which would otherwise fail the whole
    // stream); encode now so that a malformed message asserts in the caller's stack.
    const limitBytes = this.opts.messageBytesMax - CHUNK_OVERHEAD_BYTES;
    const total = batchBytesUpperBound(inline);
    if (total <= limitBytes) {
      link.enqueue({ pb: encodeBatch(this.self, inline), messages: inline.length, bytes: total });
      return;
    }
    let part: GroupMessage[] = [];
    let partBytes = 0;
    const flush = (): void => {
      if (part.length === 0) return;
      link.enqueue({ pb: encodeBatch(this.self, part), messages: part.length, bytes: partBytes });
      part = [];
      partBytes = 0;
    };
    for (const gm of inline) {
      const n = groupMessageBytesUpperBound(gm);
      if (n > limitBytes) {
        // No peer would accept it; Raft sends at least one entry per append, so this is an entry
        // larger than messageBytesMax, which the host must refuse at proposal time.
        this.counters.messagesDropped++;
        continue;
      }
      if (partBytes + n > limitBytes) flush();
      part.push(gm);
      partBytes += n;
    }
    flush();
  }

  /**
   * Within a traced request (tracing on, a sampled span active), the call gets a client span and
   * carries its W3C trace context in the gRPC metadata (`traceparent`, `tracestate`); the peer
   * serves it under a server span child of it. Otherwise no metadata is added.
   */
  call(to: NodeId, method: string, body: Uint8Array, timeoutMs: number): Promise<CallResult> {
    if (tracing.on) {
      const parent = context.active();
      if (sampled(parent)) return this.tracedCall(parent, to, method, body, timeoutMs);
    }
    return this.callWith(to, method, body, timeoutMs, undefined);
  }

  private async tracedCall(
    parent: Context,
    to: NodeId,
    method: string,
    body: Uint8Array,
    timeoutMs: number,
  ): Promise<CallResult> {
    const span = peerSpan(SpanKind.CLIENT, this.self, to, method, parent);
    const headers: Record<string, string> = {};
    propagation.inject(trace.setSpan(parent, span), headers);
    const r = await this.callWith(to, method, body, timeoutMs, headers);
    if (!r.ok) span.setStatus({ code: SpanStatusCode.ERROR, message: `${r.code}: ${r.message}` });
    span.end();
    return r;
  }

  private async callWith(
    to: NodeId,
    method: string,
    body: Uint8Array,
    timeoutMs: number,
    headers: Record<string, string> | undefined,
  ): Promise<CallResult> {
    const budgetMs = Number.isFinite(timeoutMs) ? timeoutMs : this.opts.callTimeoutMsDefault;
    if (this.state !== "started") {
      return { ok: false, code: "UNREACHABLE", message: `transport ${this.self} is ${this.state}` };
    }
    const link = this.links.get(to);
    if (!link?.connected) return { ok: false, code: "UNREACHABLE", message: `unknown peer ${to}` };
    if (budgetMs <= 0) return { ok: false, code: "TIMEOUT", message: "no time left" };
    let inflight = 0;
    for (const l of this.links.values()) inflight += l.callsInflight;
    if (inflight >= this.opts.callsInflightMax) {
      return { ok: false, code: "UNREACHABLE", message: `${inflight} calls in flight already` };
    }
    return link.call({ from: this.self, method, body }, budgetMs, headers);
  }

  reachable(to: NodeId): boolean {
    return this.state === "started" && (this.links.get(to)?.up ?? false);
  }

  setServing(serving: boolean): void {
    if (this.state === "stopping" || this.state === "stopped") return;
    this.health.setServing(serving);
  }

  stats(): GrpcTransportStats {
    return { ...this.counters };
  }

  /**
   * Ends our side of every stream, asks the server to shut down gracefully, and cancels whatever
   * is still running after `stopGraceMs`. Queued messages count as dropped.
   */
  stop(): Promise<void> {
    this.stopped ??= this.shutdown();
    return this.stopped;
  }

  private async shutdown(): Promise<void> {
    this.state = "stopping";
    // A start in progress finishes (or fails) first, so that its server is shut down too.
    await this.startDone?.catch(() => undefined);
    this.state = "stopping";
    this.health.close();
    for (const link of this.links.values()) link.close();
    // Incoming Raft streams never end on their own: answer them so that tryShutdown can finish.
    for (const s of this.incoming) s.finish();
    this.incoming.clear();
    const server = this.server;
    if (server) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, this.opts.stopGraceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    this.state = "stopped";
  }

  private async credentials(): Promise<{
    serverCreds: ServerCredentials;
    clientCreds: ChannelCredentials;
  }> {
    const tls = this.opts.tls;
    if (!tls) {
      return {
        serverCreds: ServerCredentials.createInsecure(),
        clientCreds: credentials.createInsecure(),
      };
    }
    if (tls.source) {
      const m = tls.source.current();
      if (!m.ca) {
        this.state = "stopped";
        throw new Error(`transport ${this.self}: mutual TLS needs a CA certificate`);
      }
      // One provider serves as both the CA and the identity provider: grpc-js then rebuilds
      // its secure contexts (server: setSecureContext; client: per new connection) on each
      // change. (Passing the same object for both also sidesteps grpc-js 1.14's server
      // credentials swapping its two provider arguments.)
      const provider = new SourceCertificateProvider(tls.source);
      return {
        serverCreds: experimental.createCertificateProviderServerCredentials(
          provider,
          provider,
          true,
        ),
        clientCreds: experimental.createCertificateProviderChannelCredentials(provider, provider),
      };
    }
    const [ca, cert, key] = await Promise.all([
      readFile(tls.caFile),
      readFile(tls.certFile),
      readFile(tls.keyFile),
    ]).catch((e: unknown) => {
      this.state = "stopped";
      throw new Error(`transport ${this.self}: cannot read TLS files: ${errorMessage(e)}`);
    });
    return {
      // true: a client without a certificate signed by `ca` fails the handshake.
      serverCreds: ServerCredentials.createSsl(ca, [{ private_key: key, cert_chain: cert }], true),
      clientCreds: credentials.createSsl(ca, key, cert),
    };
  }

  /** With mTLS, whether the client's certificate names the node it claims to be. */
  private authorized(call: AuthCall, from: NodeId): boolean {
    const tls = this.opts.tls;
    if (!tls || tls.verifyPeerNodeId === false) return true;
    const cn = call.getAuthContext()?.sslPeerCertificate?.subject?.CN;
    if (cn === from) return true;
    this.counters.identityRejected++;
    return false;
  }

  private accepting(): boolean {
    return this.state === "started";
  }

  private readonly serveRaft: handleClientStreamingCall<PbRaftBatch, Ack> = (call, callback) => {
    if (!this.accepting()) {
      callback({ code: status.UNAVAILABLE, details: "stopping" });
      return;
    }
    let done = false;
    let checkedFrom: NodeId | undefined;
    const stream: IncomingStream = {
      finish: (err) => {
        if (done) return;
        done = true;
        this.incoming.delete(stream);
        if (err) callback(err);
        else callback(null, {});
      },
    };
    this.incoming.add(stream);
    call.on("cancelled", () => {
      done = true;
      this.incoming.delete(stream);
    });
    call.on("data", (pb: PbRaftBatch) => {
      if (done || !this.handlers) return;
      const d = pb === UNPARSABLE_BATCH ? undefined : decodeBatch(pb);
      if (!d?.ok) {
        // One bad batch (bytes that do not parse, a newer peer's message type, ...) must not cut
        // the whole link.
        this.counters.invalidReceived++;
        return;
      }
      const { from, batch } = d.value;
      if (checkedFrom !== from) {
        if (!this.authorized(call, from)) {
          stream.finish({
            code: status.PERMISSION_DENIED,
            details: `certificate does not name ${from}`,
          });
          return;
        }
        checkedFrom = from;
      }
      this.counters.batchesReceived++;
      this.counters.messagesReceived += batch.length;
      this.handlers.onRaft(from, batch);
    });
    call.on("end", () => stream.finish());
    call.on("error", () => stream.finish());
    // Tells the sender the stream is accepted: it starts writing only then (see grpc-link.ts).
    call.sendMetadata(new Metadata());
  };

  private readonly serveCall: handleUnaryCall<PbCallRequest, PbCallResponse> = (call, callback) => {
    const handlers = this.handlers;
    if (!this.accepting() || !handlers) {
      callback({ code: status.UNAVAILABLE, details: "stopping" });
      return;
    }
    const from = call.request.from ?? "";
    if (!this.authorized(call, from)) {
      callback({ code: status.PERMISSION_DENIED, details: `certificate does not name ${from}` });
      return;
    }
    const method = call.request.method ?? "";
    const body = plainBytes(call.request.body);
    let span: Span | undefined;
    let answer: Promise<Uint8Array>;
    try {
      const parent = tracing.on
        ? propagation.extract(ROOT_CONTEXT, call.metadata, METADATA_GETTER)
        : undefined;
      if (parent && sampled(parent)) {
        const s = peerSpan(SpanKind.SERVER, this.self, from, method, parent);
        span = s;
        answer = context.with(trace.setSpan(parent, s), () => handlers.onCall(from, method, body));
      } else {
        answer = handlers.onCall(from, method, body);
      }
    } catch (e) {
      answer = Promise.reject(e);
    }
    answer.then(
      (body) => {
        span?.end();
        if (!call.cancelled) callback(null, { body });
      },
      (e: unknown) => {
        if (span) {
          span.setStatus({ code: SpanStatusCode.ERROR, message: errorMessage(e) });
          span.end();
        }
        if (call.cancelled) return;
        const errorCode = e instanceof NoHandlerError ? "NO_HANDLER" : "REMOTE_ERROR";
        callback(null, { errorCode, errorMessage: errorMessage(e) });
      },
    );
  };

  private readonly serveSnapshot: handleClientStreamingCall<PbSnapshotChunk, Ack> = (
    call,
    callback,
  ) => {
    if (!this.accepting()) {
      callback({ code: status.UNAVAILABLE, details: "stopping" });
      return;
    }
    if (this.snapshotsReceiving >= this.opts.snapshotsReceivingMax) {
      callback({ code: status.RESOURCE_EXHAUSTED, details: "too many snapshots in progress" });
      return;
    }
    this.snapshotsReceiving++;
    const r = new SnapshotReceiver(this.opts.snapshotBytesMax);
    let done = false;
    const stream: IncomingStream = {
      finish: (err) => {
        if (done) return;
        done = true;
        this.snapshotsReceiving--;
        this.incoming.delete(stream);
        if (err) callback(err);
        else callback(null, {});
      },
    };
    this.incoming.add(stream);
    const fail = (details: string): void => {
      this.counters.invalidReceived++;
      stream.finish({ code: status.INVALID_ARGUMENT, details });
    };
    call.on("cancelled", () => {
      if (done) return;
      done = true;
      this.snapshotsReceiving--;
      this.incoming.delete(stream);
    });
    call.on("data", (chunk: PbSnapshotChunk) => {
      if (done) return;
      const problem = r.add(chunk);
      if (problem) fail(problem);
      else if (r.from !== undefined && r.chunks === 1 && !this.authorized(call, r.from)) {
        stream.finish({
          code: status.PERMISSION_DENIED,
          details: `certificate does not name ${r.from}`,
        });
      }
    });
    call.on("end", () => {
      if (done) return;
      const result = r.finish();
      if (!result.ok) return fail(result.reason);
      this.counters.snapshotsReceived++;
      this.counters.messagesReceived++;
      stream.finish();
      this.handlers?.onRaft(result.from, [{ group: result.group, msg: result.msg }]);
    });
    call.on("error", () => stream.finish());
  };
}

/** Reassembles one chunked snapshot, checking every chunk against the header's promises. */
class SnapshotReceiver {
  from: NodeId | undefined;
  chunks = 0;
  private group = "";
  private header: PbRaftMessage | null | undefined;
  private data: Uint8Array | undefined;
  private received = 0;
  private last = false;

  constructor(private readonly bytesMax: number) {}

  /** Returns what is wrong with the chunk, or undefined. */
  add(c: PbSnapshotChunk): string | undefined {
    this.chunks++;
    if (this.last) return "chunk after the last one";
    const piece = c.data ?? new Uint8Array(0);
    if (this.data === undefined) {
      const total = c.totalBytes ?? 0;
      if (!c.from) return "first chunk without sender";
      if (!c.msg) return "first chunk without header";
      if (total > this.bytesMax) return `snapshot of ${total} bytes exceeds ${this.bytesMax}`;
      this.from = c.from;
      this.group = c.group ?? "";
      this.header = c.msg;
      this.data = new Uint8Array(total);
    }
    if ((c.offset ?? 0) !== this.received) return `chunk at ${c.offset}, expected ${this.received}`;
    if (this.received + piece.length > this.data.length) return "more data than announced";
    this.data.set(piece, this.received);
    this.received += piece.length;
    this.last = c.last === true;
    return undefined;
  }

  finish():
    | { ok: true; from: NodeId; group: string; msg: MsgSnap }
    | { ok: false; reason: string } {
    if (this.data === undefined || this.from === undefined)
      return { ok: false, reason: "no chunks" };
    if (!this.last) return { ok: false, reason: "stream ended before the last chunk" };
    if (this.received !== this.data.length) {
      return { ok: false, reason: `received ${this.received} of ${this.data.length} bytes` };
    }
    const d = decodeSnapshotHeader(this.header, this.data);
    if (!d.ok) return { ok: false, reason: d.reason };
    return { ok: true, from: this.from, group: this.group, msg: d.value };
  }
}
