/**
 * The S3 door: an HTTP handler speaking the S3 REST protocol over the object index
 * (objects.ts), the bucket and key records (meta.ts) and the chunk layer (src/blob/).
 *
 * A request goes: addressing (virtual-host or path style) → SigV4 (header, presigned query,
 * streaming chunk signatures) → the key's grants on the bucket → the operation. Bodies stream
 * through: an upload is cut into chunks as it arrives (a few MiB in memory whatever its size),
 * a download is sent chunk by chunk with backpressure. Every failure is an S3 `<Error>`
 * document with the code clients switch on and a request id.
 *
 * With tracing on (src/node/tracing.ts), each request is served under a server span
 * (`S3 put_object`): the index writes and chunk writes it causes on other nodes join its trace.
 */
import { once } from "node:events";
import type { IncomingMessage, ServerResponse } from "node:http";
import {
  context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import { tracing } from "../../base/index.js";
import { statusAtClose } from "../kv/http.js";
import type { KvError } from "../kv/service.js";
import type { Admission, Refusal } from "../limits.js";
import { BodyDigests, multipartEtag, parseChecksumHeaders } from "./checksums.js";
import { AwsChunkedDecoder, ChunkedBodyError } from "./chunked.js";
import { errorXml, S3Error } from "./errors.js";
import {
  collectUserMetadata,
  decodeToken,
  encodeS3Url,
  encodeToken,
  evaluateConditions,
  evaluateWriteConditions,
  httpDate,
  isoDate,
  parseRange,
  storedHeaders,
  validateBucketName,
  validateObjectKey,
} from "./http-headers.js";
import { type AccessKeyRecord, type BucketRecord, MetaUnavailable, type S3Meta } from "./meta.js";
import {
  BodyReadError,
  chunkPlacement,
  type DataRef,
  type IndexError,
  newSortId,
  newUploadId,
  type ObjectIndex,
  type ObjectRecord,
  PARTS_MAX,
  type PartRecord,
  type UploadRecord,
} from "./objects.js";
import { PayloadHashVerifier, type PayloadMode, verifyRequest } from "./sigv4.js";
import * as xml from "./xml.js";

export interface S3Options {
  /** Domains for virtual-host-style requests: `bucket.<domain>`. */
  readonly domains: readonly string[];
  /** The region reported by GetBucketLocation (SigV4 accepts any region in the scope). */
  readonly region: string;
  /** Largest single PUT (S3: 5 GiB). */
  readonly putBytesMax: number;
  /** Smallest part of a multipart upload except the last (S3: 5 MiB). */
  readonly partBytesMin: number;
  readonly log: { warn(o: object, msg: string): void; error(o: object, msg: string): void };
  /** Creates the object index keyspace when it does not exist yet (the first bucket). */
  readonly ensureIndex: () => Promise<boolean>;
  /** This node's id, on the request spans when tracing is on. */
  readonly nodeId?: string;
}

export const S3_DEFAULTS = {
  region: "us-east-1",
  putBytesMax: 5 * 1024 ** 3,
  partBytesMin: 5 * 1024 ** 2,
} as const;

/** XML request bodies (Complete, Delete, configurations) are small. */
const XML_BODY_BYTES_MAX = 1 << 20;
/** Keys per DeleteObjects request (S3's limit). */
const DELETE_KEYS_MAX = 1000;
/** A refused request's unread body is drained up to this size (else the connection closes). */
const DRAIN_BYTES_MAX = 8 << 20;
/** How long after a version stops existing its body is removed (see S3Api.retire). */
/** A CompleteMultipartUpload older than this is presumed dead (its node crashed): abort wins. */
const COMPLETING_STALE_MS = 10 * 60_000;
/** List pages are at most this long (S3's limit). */
const LIST_KEYS_MAX = 1000;

interface Req {
  readonly raw: IncomingMessage;
  readonly res: ServerResponse;
  readonly method: string;
  readonly bucket: string | undefined;
  readonly key: string | undefined;
  readonly query: URLSearchParams;
  readonly requestId: string;
  readonly resource: string;
  readonly who: AccessKeyRecord | undefined;
  readonly payload: PayloadMode;
}

const header = (r: IncomingMessage, name: string): string | undefined => {
  const v = r.headers[name];
  return Array.isArray(v) ? v.join(",") : v;
};

function kvError(e: KvError | IndexError): S3Error {
  switch (e.code) {
    case "OVERLOADED":
      return new S3Error("SlowDown", e.message);
    case "TOO_LARGE":
      return new S3Error("EntityTooLarge", e.message);
    case "CONFLICT":
      return new S3Error("OperationAborted", e.message);
    case "INVALID_KEY":
      return new S3Error("KeyTooLongError", e.message);
    default:
      return new S3Error("ServiceUnavailable", e.message, { headers: { "retry-after": "1" } });
  }
}

/** Admission control and request metrics, provided by the node (src/node/gateway.ts's twin). */
export interface S3Gate {
  admit(tenant: string): Admission;
  refused(reason: Refusal["reason"]): void;
  started(): void;
  observe(op: string, status: number, seconds: number): void;
}

export class S3Api {
  private gate: S3Gate | undefined;

  constructor(
    private readonly meta: S3Meta,
    private readonly index: ObjectIndex,
    private readonly opts: S3Options,
  ) {}

  useGate(gate: S3Gate): void {
    this.gate = gate;
  }

  /** Serves one request; never throws. */
  handle(raw: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
    if (!tracing.on) return this.serve(raw, res, requestId, undefined);
    const parent = propagation.extract(ROOT_CONTEXT, raw.headers);
    const method = raw.method ?? "GET";
    const span = trace.getTracer("kumo.s3").startSpan(
      `S3 ${method}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          "http.request.method": method,
          ...(this.opts.nodeId === undefined ? {} : { "kumo.node": this.opts.nodeId }),
          "kumo.door": "s3",
          "kumo.request_id": requestId,
        },
      },
      parent,
    );
    res.once("close", () => {
      const status = statusAtClose(res);
      span.setAttribute("http.response.status_code", status);
      if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
    });
    return context.with(trace.setSpan(parent, span), () => this.serve(raw, res, requestId, span));
  }

  private async serve(
    raw: IncomingMessage,
    res: ServerResponse,
    requestId: string,
    span: Span | undefined,
  ): Promise<void> {
    res.setHeader("x-amz-request-id", requestId);
    res.setHeader("x-amz-id-2", requestId);
    res.setHeader("server", "Kumo");
    let resource = "/";
    const t0 = performance.now();
    let op = "other";
    let release: (() => void) | undefined;
    const gate = this.gate;
    gate?.started();
    res.once("close", () => {
      release?.();
      const status = statusAtClose(res);
      gate?.observe(op, status, (performance.now() - t0) / 1000);
    });
    try {
      const target = raw.url ?? "/";
      const q = target.indexOf("?");
      const rawPath = q < 0 ? target : target.slice(0, q);
      const rawQuery = q < 0 ? "" : target.slice(q + 1);
      const { bucket, key } = this.address(raw, rawPath);
      resource = rawPath;
      const query = new URLSearchParams(rawQuery);
      if (raw.method === "OPTIONS") return await this.preflight(raw, res, bucket);
      const akid = accessKeyIdOf(raw, query);
      if (akid !== undefined) await this.meta.loadKey(akid);
      const auth = verifyRequest(
        { method: raw.method ?? "GET", path: rawPath, query: rawQuery, headers: raw.headers },
        (id) => this.meta.secretOf(id),
        Date.now(),
      );
      op = opName(raw.method ?? "GET", bucket, key, query, header(raw, "x-amz-copy-source"));
      if (span) {
        span.updateName(`S3 ${op}`);
        span.setAttributes({
          "kumo.op": op,
          "http.route":
            bucket === undefined ? "/" : key === undefined ? "/{bucket}" : "/{bucket}/{key}",
          ...(bucket === undefined ? {} : { "aws.s3.bucket": bucket }),
        });
      }
      if (!auth.ok) throw new S3Error(auth.code, auth.message);
      if (gate) {
        const a = gate.admit(`s3:${auth.accessKeyId ?? "anonymous"}`);
        if (!a.ok) {
          gate.refused(a.reason);
          throw new S3Error("SlowDown", a.message, {
            headers: { "retry-after": String(a.retryAfterSeconds) },
          });
        }
        release = a.release;
      }
      const who =
        auth.accessKeyId === undefined ? undefined : this.meta.cachedKey(auth.accessKeyId);
      if (auth.accessKeyId !== undefined && !who) throw new S3Error("InvalidAccessKeyId");
      const req: Req = {
        raw,
        res,
        method: raw.method ?? "GET",
        bucket,
        key,
        query,
        requestId,
        resource,
        who,
        payload: auth.payload,
      };
      await this.dispatch(req);
    } catch (err) {
      this.fail(res, err, requestId, resource, raw.method === "HEAD");
    }
  }

  private fail(
    res: ServerResponse,
    err: unknown,
    requestId: string,
    resource: string,
    head: boolean,
  ): void {
    let e: S3Error;
    if (err instanceof S3Error) e = err;
    else if (err instanceof ChunkedBodyError) e = new S3Error(err.code, err.message);
    else if (err instanceof BodyReadError || err instanceof MetaUnavailable)
      e = new S3Error("ServiceUnavailable", err.message, { headers: { "retry-after": "1" } });
    else {
      this.opts.log.error({ reqId: requestId, err }, "S3 request failed");
      e = new S3Error("InternalError", "internal error; see the node's log");
    }
    if (res.headersSent) {
      // A download already under way cannot turn into an error document: cut it, so the client
      // sees a short body rather than a complete-looking wrong one.
      res.destroy();
      return;
    }
    const body = e.hasBody && !head ? errorXml(e, requestId, resource) : "";
    // A request refused before its body was read: a small rest is drained (the connection
    // stays usable); a large one is not worth reading, and the connection closes after the
    // answer.
    const req = res.req;
    // (The body's declared size bounds what is left; the socket's byte count would not: it
    // includes earlier requests on a keep-alive connection.)
    const declared = Number(req.headers["content-length"] ?? Number.NaN);
    const close = !req.complete && !(declared <= DRAIN_BYTES_MAX);
    res.writeHead(e.status, {
      ...e.headers,
      ...(body ? { "content-type": "application/xml" } : {}),
      "content-length": Buffer.byteLength(body),
      ...(close ? { connection: "close" } : {}),
    });
    res.end(body);
    if (!req.complete) {
      if (close) res.once("finish", () => req.destroy());
      else req.resume();
    }
  }

  /** Virtual-host style (`bucket.s3.example.com/key`) or path style (`/bucket/key`). */
  private address(raw: IncomingMessage, rawPath: string): { bucket?: string; key?: string } {
    const host = (header(raw, "host") ?? "").replace(/:\d+$/, "").toLowerCase();
    const decode = (s: string) => {
      try {
        return decodeURIComponent(s);
      } catch {
        throw new S3Error("InvalidURI", "Couldn't parse the specified URI.");
      }
    };
    for (const d of this.opts.domains) {
      if (host.endsWith(`.${d}`)) {
        const bucket = host.slice(0, -d.length - 1);
        const key = rawPath.length > 1 ? decode(rawPath.slice(1)) : undefined;
        return { bucket, ...(key !== undefined ? { key } : {}) };
      }
    }
    const p = rawPath.startsWith("/") ? rawPath.slice(1) : rawPath;
    if (p === "") return {};
    const slash = p.indexOf("/");
    if (slash < 0) return { bucket: decode(p) };
    const key = p.slice(slash + 1);
    return { bucket: decode(p.slice(0, slash)), ...(key !== "" ? { key: decode(key) } : {}) };
  }

  private async dispatch(r: Req): Promise<void> {
    const q = r.query;
    if (r.bucket === undefined) {
      if (r.method === "GET") return this.listBuckets(r);
      throw new S3Error("MethodNotAllowed", undefined, { headers: { allow: "GET" } });
    }
    if (r.key === undefined) {
      switch (r.method) {
        case "PUT":
          if (q.has("versioning")) return this.putVersioning(r);
          if (q.has("cors")) return this.putCors(r);
          if (q.has("acl")) return this.putAcl(r);
          if (unsupported(q)) throw notImplemented(q);
          return this.createBucket(r);
        case "GET":
          if (q.has("location")) return this.getLocation(r);
          if (q.has("versioning")) return this.getVersioning(r);
          if (q.has("cors")) return this.getCors(r);
          if (q.has("versions")) return this.listVersions(r);
          if (q.has("uploads")) return this.listUploads(r);
          if (q.has("acl")) return this.getAcl(r);
          if (unsupported(q)) throw notImplemented(q);
          return this.listObjects(r);
        case "HEAD":
          // Bucket-level requests read the record itself, not this node's cache (which other
          // nodes' changes reach within a second): HeadBucket after DeleteBucket is a 404.
          await this.bucketFor(r, "read", true);
          return this.empty(r, 200);
        case "DELETE":
          if (q.has("cors")) return this.deleteCors(r);
          if (unsupported(q)) throw notImplemented(q);
          return this.deleteBucket(r);
        case "POST":
          if (q.has("delete")) return this.deleteObjects(r);
          throw notImplemented(q);
        default:
          throw new S3Error("MethodNotAllowed");
      }
    }
    const kerr = validateObjectKey(r.key);
    if (kerr) throw kerr;
    switch (r.method) {
      case "PUT":
        if (q.has("uploadId") && q.has("partNumber")) return this.uploadPart(r);
        if (unsupported(q)) throw notImplemented(q);
        if (header(r.raw, "x-amz-copy-source") !== undefined) return this.copyObject(r);
        return this.putObject(r);
      case "GET":
      case "HEAD":
        if (q.has("uploadId") && r.method === "GET") return this.listParts(r);
        if (unsupported(q)) throw notImplemented(q);
        return this.getObject(r);
      case "DELETE":
        if (q.has("uploadId")) return this.abortUpload(r);
        // (DeleteObjectTagging must never delete the object itself.)
        if (unsupported(q)) throw notImplemented(q);
        return this.deleteObject(r);
      case "POST":
        if (q.has("uploads")) return this.createUpload(r);
        if (q.has("uploadId")) return this.completeUpload(r);
        throw notImplemented(q);
      default:
        throw new S3Error("MethodNotAllowed");
    }
  }

  // ---------------------------------------------------------------- helpers

  private send(r: Req, status: number, body: string, headers: Record<string, string> = {}): void {
    r.res.writeHead(status, {
      "content-type": "application/xml",
      "content-length": Buffer.byteLength(body),
      ...headers,
    });
    r.res.end(body);
  }

  private empty(r: Req, status: number, headers: Record<string, string | number> = {}): void {
    r.res.writeHead(status, { "content-length": 0, ...headers });
    r.res.end();
  }

  /** The bucket of the request, if the caller has `need` on it (AccessDenied otherwise). */
  private async bucketFor(
    r: Req,
    need: "read" | "write" | "owner",
    fresh = false,
  ): Promise<BucketRecord> {
    const name = r.bucket as string;
    const b = await this.meta.bucket(name, fresh);
    if (!b) {
      if (!r.who) throw new S3Error("AccessDenied");
      throw new S3Error("NoSuchBucket", undefined, { extra: { BucketName: name } });
    }
    // CORS headers go on every answer about this bucket (errors included) when a rule matches
    // the browser's Origin: a browser multipart upload needs them on UploadPart and Complete.
    for (const [k, v] of Object.entries(this.corsHeaders(r, b))) r.res.setHeader(k, v);
    if (!this.meta.can(r.who, b, need)) throw new S3Error("AccessDenied");
    return b;
  }

  private requireKey(r: Req): AccessKeyRecord {
    if (!r.who) throw new S3Error("AccessDenied", "Anonymous users cannot do this.");
    return r.who;
  }

  /**
   * The request body as payload bytes: aws-chunked bodies are decoded (each chunk signature
   * checked), a signed payload hash is checked as the bytes pass; a mismatch fails the
   * iteration (the caller then stores nothing).
   */
  private body(r: Req): { stream: AsyncIterable<Uint8Array>; trailers: () => Map<string, string> } {
    const mode = r.payload;
    const encoding = header(r.raw, "content-encoding") ?? "";
    const chunked =
      mode.kind === "streaming-signed" ||
      mode.kind === "streaming-unsigned-trailer" ||
      encoding.split(",").some((x) => x.trim() === "aws-chunked");
    if (
      header(r.raw, "content-length") === undefined &&
      !chunked &&
      header(r.raw, "transfer-encoding") === undefined
    )
      throw new S3Error("MissingContentLength");
    if (
      chunked &&
      (mode.kind === "streaming-signed" || mode.kind === "streaming-unsigned-trailer")
    ) {
      const declared = header(r.raw, "x-amz-decoded-content-length");
      const decoder = new AwsChunkedDecoder({
        mode,
        ...(declared !== undefined ? { decodedLength: Number(declared) } : {}),
      });
      r.raw.pipe(decoder);
      r.raw.on("error", (e) => decoder.destroy(e));
      return { stream: decoder, trailers: () => decoder.trailers };
    }
    const verifier = mode.kind === "sha256" ? new PayloadHashVerifier(mode.hex) : undefined;
    const raw = r.raw;
    async function* gen(): AsyncGenerator<Uint8Array> {
      // destroyOnReturn false: a consumer that stops early (a refused body) must not destroy
      // the socket; the error answer drains what remains so keep-alive connections survive.
      for await (const c of raw.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
        verifier?.update(c);
        yield c;
      }
      if (verifier) {
        const v = verifier.finish();
        if (!v.ok) throw new S3Error(v.code, v.message);
      }
    }
    return { stream: gen(), trailers: () => new Map() };
  }

  private async readXml(r: Req, max = XML_BODY_BYTES_MAX): Promise<Buffer> {
    const { stream } = this.body(r);
    const parts: Buffer[] = [];
    let size = 0;
    for await (const c of stream) {
      size += c.byteLength;
      if (size > max) throw new S3Error("MalformedXML", "The XML body is too large.");
      parts.push(Buffer.from(c));
    }
    return Buffer.concat(parts);
  }

  // ---------------------------------------------------------------- buckets

  private async listBuckets(r: Req): Promise<void> {
    const who = this.requireKey(r);
    const all = await this.meta.listBuckets();
    if (!all.ok) throw kvError(all);
    const mine = all.buckets.filter((b) => this.meta.can(who, b, "read"));
    this.send(
      r,
      200,
      xml.listAllMyBucketsXml({
        owner: { id: who.accessKeyId, displayName: who.name },
        buckets: mine
          .sort((a, b) => (a.name < b.name ? -1 : 1))
          .map((b) => ({ name: b.name, creationDate: isoDate(b.createdMs) })),
      }),
    );
  }

  private async createBucket(r: Req): Promise<void> {
    const who = this.requireKey(r);
    const name = r.bucket as string;
    const bad = validateBucketName(name);
    if (bad) throw bad;
    if (!who.createBuckets && who.grants["*"] !== "owner" && who.grants[name] !== "owner")
      throw new S3Error("AccessDenied", "This access key may not create buckets.");
    const body = await this.readXml(r);
    if (body.byteLength > 0) xml.parseCreateBucketConfiguration(body);
    if (!(await this.opts.ensureIndex()))
      throw new S3Error("ServiceUnavailable", "The object index is not available yet; retry.");
    const c = await this.meta.createBucket(name, who);
    if (!c.ok) {
      if (c.code === "BucketAlreadyOwnedByYou" || c.code === "BucketAlreadyExists")
        throw new S3Error(c.code, c.message, { extra: { BucketName: name } });
      if (c.code === "TooManyBuckets") throw new S3Error("TooManyBuckets", c.message);
      throw kvError(c as KvError);
    }
    if (header(r.raw, "x-amz-acl") === "public-read") {
      const u = await this.meta.updateBucket(name, (b) => ({ ...b, publicRead: true }));
      if (!u.ok) throw kvError(u as KvError);
    }
    this.empty(r, 200, { location: `/${name}` });
  }

  private async deleteBucket(r: Req): Promise<void> {
    const b = await this.bucketFor(r, "owner");
    const d = await this.meta.deleteBucket(b.name, (rec) => this.index.isEmpty(rec.id));
    if (!d.ok) {
      if (d.code === "BucketNotEmpty" || d.code === "NoSuchBucket")
        throw new S3Error(d.code, d.message, { extra: { BucketName: b.name } });
      throw kvError(d as KvError);
    }
    this.empty(r, 204);
  }

  private async getLocation(r: Req): Promise<void> {
    await this.bucketFor(r, "read");
    this.send(r, 200, xml.locationConstraintXml(this.opts.region));
  }

  private async getVersioning(r: Req): Promise<void> {
    const b = await this.bucketFor(r, "read", true);
    this.send(r, 200, xml.versioningConfigurationXml(b.versioning));
  }

  private async putVersioning(r: Req): Promise<void> {
    const b = await this.bucketFor(r, "owner");
    const status = xml.parseVersioningConfiguration(await this.readXml(r));
    const u = await this.meta.updateBucket(b.name, (x) => ({ ...x, versioning: status }));
    if (!u.ok) throw kvError(u as KvError);
    this.empty(r, 200);
  }

  private async getCors(r: Req): Promise<void> {
    const b = await this.bucketFor(r, "read", true);
    if (!b.cors || b.cors.length === 0) throw new S3Error("NoSuchCORSConfiguration");
    this.send(r, 200, xml.corsConfigurationXml(b.cors));
  }

  private async putCors(r: Req): Promise<void> {
    const b = await this.bucketFor(r, "owner");
    const rules = xml.parseCorsConfiguration(await this.readXml(r));
    const u = await this.meta.updateBucket(b.name, (x) => ({ ...x, cors: rules }));
    if (!u.ok) throw kvError(u as KvError);
    this.empty(r, 200);
  }

  private async deleteCors(r: Req): Promise<void> {
    const b = await this.bucketFor(r, "owner");
    const u = await this.meta.updateBucket(b.name, ({ cors: _c, ...x }) => x);
    if (!u.ok) throw kvError(u as KvError);
    this.empty(r, 204);
  }

  /** Only the canned ACLs "private" and "public-read" (x-amz-acl) are supported. */
  private async putAcl(r: Req): Promise<void> {
    const b = await this.bucketFor(r, "owner");
    await this.readXml(r);
    const acl = header(r.raw, "x-amz-acl") ?? "private";
    if (acl !== "private" && acl !== "public-read")
      throw new S3Error(
        "NotImplemented",
        `Only the canned ACLs private and public-read are supported.`,
      );
    const u = await this.meta.updateBucket(b.name, (x) => ({
      ...x,
      publicRead: acl === "public-read",
    }));
    if (!u.ok) throw kvError(u as KvError);
    this.empty(r, 200);
  }

  private async getAcl(r: Req): Promise<void> {
    const b = await this.bucketFor(r, "read");
    this.send(r, 200, xml.aclXml({ ownerId: b.owner, publicRead: b.publicRead === true }));
  }

  /** CORS preflight: answered from the bucket's rules, without authentication (browsers). */
  private async preflight(
    raw: IncomingMessage,
    res: ServerResponse,
    bucket: string | undefined,
  ): Promise<void> {
    const origin = header(raw, "origin");
    const method = header(raw, "access-control-request-method");
    if (!origin || !method || !bucket)
      throw new S3Error("AccessDenied", "CORSResponse: invalid preflight");
    const b = await this.meta.bucket(bucket);
    const reqHeaders = (header(raw, "access-control-request-headers") ?? "")
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "");
    const rule = b?.cors ? xml.corsMatch(b.cors, origin, method, reqHeaders) : undefined;
    if (!rule)
      throw new S3Error("AccessForbidden", "CORSResponse: This CORS request is not allowed.");
    res.writeHead(200, {
      "access-control-allow-origin": rule.allowedOrigins.includes("*") ? "*" : origin,
      "access-control-allow-methods": rule.allowedMethods.join(", "),
      ...(reqHeaders.length > 0 ? { "access-control-allow-headers": reqHeaders.join(", ") } : {}),
      ...(rule.exposeHeaders.length > 0
        ? { "access-control-expose-headers": rule.exposeHeaders.join(", ") }
        : {}),
      ...(rule.maxAgeSeconds !== undefined
        ? { "access-control-max-age": String(rule.maxAgeSeconds) }
        : {}),
      vary: "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
      "content-length": 0,
    });
    res.end();
  }

  /** CORS headers on actual (non-preflight) requests from a browser. */
  private corsHeaders(r: Req, b: BucketRecord): Record<string, string> {
    const origin = header(r.raw, "origin");
    if (!origin || !b.cors) return {};
    const rule = xml.corsMatch(b.cors, origin, r.method, []);
    if (!rule) return {};
    return {
      "access-control-allow-origin": rule.allowedOrigins.includes("*") ? "*" : origin,
      ...(rule.exposeHeaders.length > 0
        ? { "access-control-expose-headers": rule.exposeHeaders.join(", ") }
        : {}),
      vary: "Origin",
    };
  }

  // ---------------------------------------------------------------- listing

  private maxKeys(r: Req, name = "max-keys"): number {
    const v = r.query.get(name);
    if (v === null) return LIST_KEYS_MAX;
    if (!/^\d+$/.test(v))
      throw new S3Error(
        "InvalidArgument",
        `Provided ${name} not an integer or within integer range`,
        {
          extra: { ArgumentName: name, ArgumentValue: v },
        },
      );
    return Math.min(Number(v), LIST_KEYS_MAX);
  }

  private async listObjects(r: Req): Promise<void> {
    const b = await this.bucketFor(r, "read");
    const q = r.query;
    const v2 = q.get("list-type") === "2";
    const prefix = q.get("prefix") ?? "";
    const delimiter = q.get("delimiter") ?? "";
    const max = this.maxKeys(r);
    const encodingType = q.get("encoding-type");
    if (encodingType !== null && encodingType !== "url")
      throw new S3Error("InvalidArgument", "Invalid Encoding Method specified in Request", {
        extra: { ArgumentName: "encoding-type", ArgumentValue: encodingType },
      });
    const url = encodingType === "url";
    const token = q.get("continuation-token");
    const startAfter = q.get("start-after") ?? undefined;
    const marker = q.get("marker") ?? undefined;
    let after: string | undefined;
    if (v2) {
      if (token !== null) {
        const t = decodeToken(token);
        if (t instanceof S3Error) throw t;
        after = t;
      } else after = startAfter;
    } else after = marker;
    const page =
      max === 0
        ? {
            ok: true as const,
            page: { entries: [], prefixes: [], truncated: false, last: undefined },
          }
        : await this.index.list(b.id, { prefix, delimiter, after, max });
    if (!page.ok) throw kvError(page);
    const enc = (s: string) => (url ? encodeS3Url(s) : s);
    const contents = page.page.entries.map((e) => ({
      key: enc(e.key),
      lastModified: isoDate(e.record.lastModifiedMs),
      etag: e.record.etag,
      size: e.record.size,
      ...(e.record.checksums
        ? { checksumAlgorithm: Object.keys(e.record.checksums).map((a) => a.toUpperCase()) }
        : {}),
      ...(v2 && q.get("fetch-owner") !== "true"
        ? {}
        : { owner: { id: b.owner, displayName: b.owner } }),
    }));
    const common = page.page.prefixes.map((p) => enc(p));
    const base = {
      name: b.name,
      prefix: enc(prefix),
      ...(delimiter !== "" ? { delimiter: enc(delimiter) } : {}),
      maxKeys: max,
      isTruncated: page.page.truncated,
      ...(url ? { encodingType: "url" } : {}),
      contents,
      commonPrefixes: common,
    };
    const body = v2
      ? xml.listBucketResultV2Xml({
          ...base,
          keyCount: contents.length + common.length,
          ...(token !== null ? { continuationToken: token } : {}),
          ...(startAfter !== undefined ? { startAfter: enc(startAfter) } : {}),
          ...(page.page.truncated && page.page.last !== undefined
            ? { nextContinuationToken: encodeToken(page.page.last) }
            : {}),
        })
      : xml.listBucketResultV1Xml({
          ...base,
          marker: enc(marker ?? ""),
          ...(page.page.truncated && page.page.last !== undefined
            ? { nextMarker: enc(page.page.last) }
            : {}),
        });
    this.send(r, 200, body, this.corsHeaders(r, b));
  }

  private async listVersions(r: Req): Promise<void> {
    const b = await this.bucketFor(r, "read");
    const q = r.query;
    const prefix = q.get("prefix") ?? "";
    const delimiter = q.get("delimiter") ?? "";
    const max = this.maxKeys(r);
    const url = q.get("encoding-type") === "url";
    const keyMarker = q.get("key-marker") ?? undefined;
    const versionIdMarker = q.get("version-id-marker") ?? undefined;
    const page = await this.index.listVersions(b.id, {
      prefix,
      delimiter,
      after: keyMarker,
      ...(keyMarker !== undefined && versionIdMarker ? { afterVersionId: versionIdMarker } : {}),
      max,
    });
    if (!page.ok) throw kvError(page);
    const enc = (s: string) => (url ? encodeS3Url(s) : s);
    this.send(
      r,
      200,
      xml.listVersionsResultXml({
        name: b.name,
        prefix: enc(prefix),
        ...(delimiter !== "" ? { delimiter: enc(delimiter) } : {}),
        keyMarker: enc(keyMarker ?? ""),
        versionIdMarker: q.get("version-id-marker") ?? "",
        maxKeys: max,
        isTruncated: page.truncated,
        ...(page.truncated && page.last !== undefined ? { nextKeyMarker: enc(page.last) } : {}),
        ...(page.truncated && page.lastVersionId !== undefined
          ? { nextVersionIdMarker: page.lastVersionId }
          : {}),
        ...(url ? { encodingType: "url" } : {}),
        versions: page.entries.map((e) => ({
          deleteMarker: e.record.deleteMarker === true,
          key: enc(e.key),
          versionId: e.record.versionId,
          isLatest: e.latest,
          lastModified: isoDate(e.record.lastModifiedMs),
          etag: e.record.etag,
          size: e.record.size,
          owner: { id: b.owner, displayName: b.owner },
        })),
        commonPrefixes: page.prefixes.map(enc),
      }),
    );
  }

  // ---------------------------------------------------------------- objects

  /** The version a GET/HEAD/copy names (the current one by default); NoSuchKey otherwise. */
  private async readRecord(
    b: BucketRecord,
    key: string,
    versionId: string | null,
  ): Promise<ObjectRecord> {
    if (versionId !== null) {
      const v = await this.index.version(b.id, key, versionId);
      if (!v.ok) throw kvError(v);
      if (!v.record)
        throw new S3Error(
          /^[0-9a-f]{20}$|^null$/.test(versionId) ? "NoSuchVersion" : "InvalidArgument",
          undefined,
          {
            extra: { Key: key, VersionId: versionId },
          },
        );
      if (v.record.deleteMarker)
        throw new S3Error(
          "MethodNotAllowed",
          "The specified method is not allowed against this resource.",
          {
            headers: {
              "x-amz-delete-marker": "true",
              "x-amz-version-id": versionId,
              allow: "DELETE",
            },
          },
        );
      return v.record;
    }
    const h = await this.index.head(b.id, key);
    if (!h.ok) throw kvError(h);
    if (!h.record || h.record.deleteMarker)
      throw new S3Error("NoSuchKey", undefined, {
        extra: { Key: key },
        headers: h.record?.deleteMarker
          ? { "x-amz-delete-marker": "true", "x-amz-version-id": h.record.versionId }
          : {},
      });
    return h.record;
  }

  private objectHeaders(
    rec: ObjectRecord,
    b: BucketRecord,
    checksums: boolean,
  ): Record<string, string> {
    const h: Record<string, string> = {
      etag: rec.etag,
      "last-modified": httpDate(rec.lastModifiedMs),
      "accept-ranges": "bytes",
      "content-type": rec.headers["content-type"] ?? "binary/octet-stream",
    };
    for (const [k, v] of Object.entries(rec.headers)) if (k !== "content-type") h[k] = v;
    for (const [k, v] of Object.entries(rec.meta)) h[k] = v;
    if (b.versioning || rec.versionId !== "null") h["x-amz-version-id"] = rec.versionId;
    if (rec.partsCount !== undefined) h["x-amz-mp-parts-count"] = String(rec.partsCount);
    if (checksums && rec.checksums) {
      for (const [a, v] of Object.entries(rec.checksums)) h[`x-amz-checksum-${a}`] = v;
      if (rec.checksumType) h["x-amz-checksum-type"] = rec.checksumType;
    }
    return h;
  }

  private async getObject(r: Req): Promise<void> {
    const b = await this.bucketFor(r, "read");
    const key = r.key as string;
    const rec = await this.readRecord(b, key, r.query.get("versionId"));
    const cond = evaluateConditions(
      {
        ifMatch: header(r.raw, "if-match"),
        ifNoneMatch: header(r.raw, "if-none-match"),
        ifModifiedSince: header(r.raw, "if-modified-since"),
        ifUnmodifiedSince: header(r.raw, "if-unmodified-since"),
      },
      { etag: rec.etag, lastModifiedMs: rec.lastModifiedMs },
      r.method === "HEAD" ? "HEAD" : "GET",
    );
    if (!cond.ok) {
      if (cond.status === 304)
        return this.empty(r, 304, {
          etag: rec.etag,
          "last-modified": httpDate(rec.lastModifiedMs),
        });
      throw new S3Error("PreconditionFailed", undefined, { extra: { Condition: "If-Match" } });
    }
    const partNumber = r.query.get("partNumber");
    let range: ReturnType<typeof parseRange> = parseRange(header(r.raw, "range"), rec.size);
    if (partNumber !== null) {
      // One part of a multipart object (a non-multipart object is its own part 1).
      const n = Number(partNumber);
      const sizes =
        rec.partsCount !== undefined ? (rec.parts ?? []).map((p) => p.size) : [rec.size];
      if (!Number.isInteger(n) || n < 1 || n > PARTS_MAX)
        throw new S3Error(
          "InvalidArgument",
          "Part number must be an integer between 1 and 10000, inclusive",
          {
            extra: { ArgumentName: "partNumber", ArgumentValue: partNumber },
          },
        );
      if (n > sizes.length)
        throw new S3Error("InvalidPartNumber", "The requested partnumber is not satisfiable");
      const start = sizes.slice(0, n - 1).reduce((a, x) => a + x, 0);
      const size = sizes[n - 1] as number;
      range = size === 0 ? { kind: "none" } : { kind: "range", start, end: start + size - 1 };
    }
    if (range.kind === "unsatisfiable")
      throw new S3Error("InvalidRange", undefined, {
        headers: { "content-range": `bytes */${rec.size}` },
        extra: { ActualObjectSize: String(rec.size), RangeRequested: header(r.raw, "range") ?? "" },
      });
    const ranged = range.kind === "range";
    const start = range.kind === "range" ? range.start : 0;
    const end = range.kind === "range" ? range.end + 1 : rec.size;
    const headers: Record<string, string> = {
      ...this.objectHeaders(
        rec,
        b,
        !ranged && header(r.raw, "x-amz-checksum-mode")?.toUpperCase() === "ENABLED",
      ),
      ...this.corsHeaders(r, b),
      "content-length": String(end - start),
      ...(ranged ? { "content-range": `bytes ${start}-${end - 1}/${rec.size}` } : {}),
    };
    // Response header overrides (presigned downloads use them).
    for (const [qname, hname] of RESPONSE_OVERRIDES) {
      const v = r.query.get(qname);
      if (v !== null) headers[hname] = v;
    }
    const status = ranged ? 206 : 200;
    if (r.method === "HEAD" || end <= start) {
      r.res.writeHead(status, headers);
      r.res.end();
      return;
    }
    const it = this.index.readBody(rec, start, end)[Symbol.asyncIterator]();
    // The first chunk is read before the status line: an unreadable object is a clean 503.
    let next = await it.next();
    r.res.writeHead(status, headers);
    let aborted = false;
    r.res.once("close", () => {
      aborted = true;
    });
    while (!next.done && !aborted) {
      if (!r.res.write(next.value))
        await Promise.race([once(r.res, "drain"), once(r.res, "close")]);
      next = await it.next();
    }
    if (aborted) {
      await it.return?.(undefined);
      return;
    }
    r.res.end();
  }

  private async putObject(r: Req): Promise<void> {
    refuseUnsupportedHeaders(r.raw);
    const b = await this.bucketFor(r, "write");
    const key = r.key as string;
    const meta = collectUserMetadata(r.raw.headers);
    if (meta instanceof S3Error) throw meta;
    const stored = storedHeaders(r.raw.headers);
    const written = await this.receive(r, b, this.opts.putBytesMax);
    const now = Date.now();
    const sortId = b.versioning ? newSortId(now) : undefined;
    const rec: ObjectRecord = {
      key,
      versionId: b.versioning === "Enabled" ? (sortId as string) : "null",
      ...(sortId !== undefined ? { sortId } : {}),
      size: written.size,
      etag: `"${written.md5}"`,
      lastModifiedMs: now,
      headers: stored,
      meta,
      ...(written.checksums
        ? { checksums: written.checksums, checksumType: "FULL_OBJECT" as const }
        : {}),
      ...(written.inline ? { inline: Buffer.from(written.inline).toString("base64") } : {}),
      ...(written.data ? { parts: [written.data] } : {}),
    };
    await this.commit(r, b, rec, written.data ? [written.data] : []);
    this.empty(r, 200, {
      etag: rec.etag,
      ...(b.versioning ? { "x-amz-version-id": rec.versionId } : {}),
      ...checksumHeaders(rec.checksums),
      ...this.corsHeaders(r, b),
    });
  }

  /** Makes `rec` current under the request's write conditions; bodies it replaced go. */
  private async commit(
    r: Req,
    b: BucketRecord,
    rec: ObjectRecord,
    bodies: readonly DataRef[],
  ): Promise<void> {
    const c = await this.index.commit(b.id, rec, b.versioning, (cur) =>
      writeConditions(r, cur && !cur.deleteMarker ? cur : undefined),
    );
    if (!c.ok) {
      // The new body goes unless the write's outcome is unknown (it may be the current
      // version now: removing its body would break it; keeping it costs a leak at worst).
      if ("refused" in c || c.code !== "OUTCOME_UNKNOWN")
        for (const d of bodies) void this.index.removeBody(d);
      if ("refused" in c) throw c.refused;
      throw kvError(c);
    }
    this.retire(b, c.removable);
  }

  private retire(b: BucketRecord, recs: readonly ObjectRecord[]): void {
    this.index.retireLater(b.id, recs, (err) =>
      this.opts.log.warn({ err }, "removing a replaced body failed"),
    );
  }

  /**
   * Receives a request body into chunks and checks every digest the client gave (Content-MD5,
   * x-amz-checksum-* in headers or trailers, the signed payload hash): on a mismatch nothing
   * is kept.
   */
  private async receive(
    r: Req,
    b: BucketRecord,
    sizeMax: number,
    inline = true,
  ): Promise<{
    size: number;
    md5: string;
    inline?: Uint8Array;
    data?: DataRef;
    checksums?: Record<string, string>;
  }> {
    const declared =
      header(r.raw, "x-amz-decoded-content-length") ?? header(r.raw, "content-length");
    if (declared !== undefined && Number(declared) > sizeMax)
      throw new S3Error(
        "EntityTooLarge",
        `Your proposed upload exceeds the maximum allowed size (${sizeMax} bytes).`,
        {
          extra: { ProposedSize: declared, MaxSizeAllowed: String(sizeMax) },
        },
      );
    const asked = parseChecksumHeaders(r.raw.headers);
    if (asked instanceof S3Error) throw asked;
    const digests = new BodyDigests(asked.algorithms, { md5: false });
    const { stream, trailers } = this.body(r);
    let streamError: unknown;
    const guarded = (async function* () {
      try {
        yield* stream;
      } catch (e) {
        streamError = e;
      }
    })();
    const w = await this.index.writeBody(
      guarded,
      sizeMax,
      (c) => digests.update(c),
      inline,
      chunkPlacement(b),
    );
    const drop = () => {
      if (w.ok && w.body.data) void this.index.removeBody(w.body.data);
    };
    if (streamError !== undefined) {
      drop();
      throw streamError;
    }
    if (!w.ok) throw kvError(w);
    if (
      declared !== undefined &&
      header(r.raw, "x-amz-decoded-content-length") === undefined &&
      Number(declared) !== w.body.size
    ) {
      drop();
      throw new S3Error("IncompleteBody");
    }
    const check = digests.verify(asked, trailers(), w.body.md5);
    if (check instanceof S3Error) {
      drop();
      throw check;
    }
    return {
      size: w.body.size,
      md5: w.body.md5,
      ...(w.body.inline ? { inline: w.body.inline } : {}),
      ...(w.body.data ? { data: w.body.data } : {}),
      ...(Object.keys(check).length > 0 ? { checksums: check } : {}),
    };
  }

  private async deleteObject(r: Req): Promise<void> {
    const b = await this.bucketFor(r, "write");
    const key = r.key as string;
    const versionId = r.query.get("versionId");
    const out = await this.deleteOne(b, key, versionId);
    this.empty(r, 204, {
      ...(out.versionId ? { "x-amz-version-id": out.versionId } : {}),
      ...(out.deleteMarker ? { "x-amz-delete-marker": "true" } : {}),
    });
  }

  private async deleteOne(
    b: BucketRecord,
    key: string,
    versionId: string | null,
  ): Promise<{ versionId?: string; deleteMarker?: boolean }> {
    if (versionId !== null) {
      const d = await this.index.deleteVersion(b.id, key, versionId);
      if (!d.ok) throw kvError(d);
      if (d.deleted) this.retire(b, [d.deleted]);
      return { versionId, ...(d.deleted?.deleteMarker ? { deleteMarker: true } : {}) };
    }
    const d = await this.index.deleteCurrent(b.id, key, b.versioning, Date.now());
    if (!d.ok) throw kvError(d);
    this.retire(b, d.removable);
    return d.marker ? { versionId: d.marker.versionId, deleteMarker: true } : {};
  }

  private async deleteObjects(r: Req): Promise<void> {
    const b = await this.bucketFor(r, "write");
    const req = xml.parseDelete(await this.readXml(r));
    if (req.objects.length > DELETE_KEYS_MAX)
      throw new S3Error("MalformedXML", `At most ${DELETE_KEYS_MAX} keys per request.`);
    const deleted: xml.DeletedEntry[] = [];
    const errors: xml.DeleteErrorEntry[] = [];
    for (const o of req.objects) {
      const bad = validateObjectKey(o.key);
      if (bad) {
        errors.push({ key: o.key, code: bad.code, message: bad.message });
        continue;
      }
      try {
        const out = await this.deleteOne(b, o.key, o.versionId ?? null);
        deleted.push({
          key: o.key,
          ...(o.versionId ? { versionId: o.versionId } : {}),
          ...(out.deleteMarker ? { deleteMarker: true } : {}),
          ...(out.deleteMarker && !o.versionId && out.versionId
            ? { deleteMarkerVersionId: out.versionId }
            : {}),
        });
      } catch (e) {
        const s3 = e instanceof S3Error ? e : new S3Error("InternalError");
        errors.push({ key: o.key, code: s3.code, message: s3.message });
      }
    }
    this.send(r, 200, xml.deleteResultXml({ deleted: req.quiet ? [] : deleted, errors }));
  }

  /** The source of a copy: `/bucket/key[?versionId=...]`, URL-encoded. */
  private async copySource(r: Req): Promise<{ bucket: BucketRecord; rec: ObjectRecord }> {
    let src = header(r.raw, "x-amz-copy-source") ?? "";
    let versionId: string | null = null;
    const q = src.indexOf("?");
    if (q >= 0) {
      versionId = new URLSearchParams(src.slice(q + 1)).get("versionId");
      src = src.slice(0, q);
    }
    let decoded: string;
    try {
      decoded = decodeURIComponent(src);
    } catch {
      throw new S3Error("InvalidArgument", "Invalid copy source encoding.");
    }
    if (decoded.startsWith("/")) decoded = decoded.slice(1);
    const slash = decoded.indexOf("/");
    if (slash <= 0 || slash === decoded.length - 1)
      throw new S3Error(
        "InvalidArgument",
        "Copy Source must mention the source bucket and key: sourcebucket/sourcekey.",
      );
    const bucketName = decoded.slice(0, slash);
    const key = decoded.slice(slash + 1);
    const bucket = await this.meta.bucket(bucketName);
    if (!bucket)
      throw new S3Error("NoSuchBucket", undefined, { extra: { BucketName: bucketName } });
    if (!this.meta.can(r.who, bucket, "read")) throw new S3Error("AccessDenied");
    const rec = await this.readRecord(bucket, key, versionId);
    const cond = evaluateConditions(
      {
        ifMatch: header(r.raw, "x-amz-copy-source-if-match"),
        ifNoneMatch: header(r.raw, "x-amz-copy-source-if-none-match"),
        ifModifiedSince: header(r.raw, "x-amz-copy-source-if-modified-since"),
        ifUnmodifiedSince: header(r.raw, "x-amz-copy-source-if-unmodified-since"),
      },
      { etag: rec.etag, lastModifiedMs: rec.lastModifiedMs },
      "GET",
    );
    if (!cond.ok) throw new S3Error("PreconditionFailed");
    return { bucket, rec };
  }

  private async copyObject(r: Req): Promise<void> {
    refuseUnsupportedHeaders(r.raw);
    const b = await this.bucketFor(r, "write");
    const key = r.key as string;
    const src = await this.copySource(r);
    const directive = (header(r.raw, "x-amz-metadata-directive") ?? "COPY").toUpperCase();
    if (directive !== "COPY" && directive !== "REPLACE")
      throw new S3Error("InvalidArgument", "Unknown metadata directive.");
    if (directive === "COPY" && src.bucket.id === b.id && src.rec.key === key && !b.versioning)
      throw new S3Error(
        "InvalidRequest",
        "This copy request is illegal because it is trying to copy an object to itself without changing the object's metadata, storage class, website redirect location or encryption attributes.",
      );
    let meta = src.rec.meta;
    let headers = src.rec.headers;
    if (directive === "REPLACE") {
      const m = collectUserMetadata(r.raw.headers);
      if (m instanceof S3Error) throw m;
      meta = m;
      headers = storedHeaders(r.raw.headers);
    }
    const parts: DataRef[] = [];
    for (const p of src.rec.parts ?? []) {
      const c = await this.index.cloneBody(p);
      if (!c.ok) {
        for (const d of parts) void this.index.removeBody(d);
        throw kvError(c);
      }
      parts.push(c.data);
    }
    const now = Date.now();
    const sortId = b.versioning ? newSortId(now) : undefined;
    const { sortId: _s, versionId: _v, deleteMarker: _d, ...body } = src.rec;
    const rec: ObjectRecord = {
      ...body,
      key,
      versionId: b.versioning === "Enabled" ? (sortId as string) : "null",
      ...(sortId !== undefined ? { sortId } : {}),
      lastModifiedMs: now,
      meta,
      headers,
      ...(parts.length > 0 ? { parts } : {}),
    };
    await this.commit(r, b, rec, parts);
    this.send(r, 200, xml.copyObjectResultXml({ etag: rec.etag, lastModified: isoDate(now) }), {
      ...(b.versioning ? { "x-amz-version-id": rec.versionId } : {}),
      ...(src.rec.versionId !== "null"
        ? { "x-amz-copy-source-version-id": src.rec.versionId }
        : {}),
    });
  }

  // ---------------------------------------------------------------- multipart

  private async createUpload(r: Req): Promise<void> {
    refuseUnsupportedHeaders(r.raw);
    const b = await this.bucketFor(r, "write");
    const key = r.key as string;
    const meta = collectUserMetadata(r.raw.headers);
    if (meta instanceof S3Error) throw meta;
    const algo = header(r.raw, "x-amz-checksum-algorithm")?.toLowerCase();
    const up: UploadRecord = {
      key,
      uploadId: newUploadId(),
      initiatedMs: Date.now(),
      initiator: r.who?.accessKeyId ?? "",
      headers: storedHeaders(r.raw.headers),
      meta,
      ...(algo ? { checksumAlgorithm: algo } : {}),
    };
    const c = await this.index.createUpload(b.id, up);
    if (!c.ok) throw kvError(c);
    this.send(
      r,
      200,
      xml.initiateMultipartUploadResultXml({ bucket: b.name, key, uploadId: up.uploadId }),
      algo ? { "x-amz-checksum-algorithm": algo.toUpperCase() } : {},
    );
  }

  private async uploadOf(r: Req, b: BucketRecord): Promise<UploadRecord> {
    return (await this.uploadWithRevision(r, b)).upload;
  }

  private async uploadWithRevision(
    r: Req,
    b: BucketRecord,
  ): Promise<{ upload: UploadRecord; revision: number }> {
    const uploadId = r.query.get("uploadId") ?? "";
    const u = /^[0-9a-f]{32}$/.test(uploadId)
      ? await this.index.upload(b.id, r.key as string, uploadId)
      : { ok: true as const, upload: undefined, revision: 0 };
    if (!u.ok) throw kvError(u);
    if (!u.upload) throw new S3Error("NoSuchUpload", undefined, { extra: { UploadId: uploadId } });
    return { upload: u.upload, revision: u.revision };
  }

  private async uploadPart(r: Req): Promise<void> {
    const b = await this.bucketFor(r, "write");
    const up = await this.uploadOf(r, b);
    const n = Number(r.query.get("partNumber"));
    if (!Number.isInteger(n) || n < 1 || n > PARTS_MAX)
      throw new S3Error(
        "InvalidArgument",
        `Part number must be an integer between 1 and ${PARTS_MAX}, inclusive`,
        {
          extra: { ArgumentName: "partNumber", ArgumentValue: r.query.get("partNumber") ?? "" },
        },
      );
    let written: {
      size: number;
      md5: string;
      inline?: Uint8Array;
      data?: DataRef;
      checksums?: Record<string, string>;
    };
    let copy: ObjectRecord | undefined;
    if (header(r.raw, "x-amz-copy-source") !== undefined) {
      copy = (await this.copySource(r)).rec;
      written = await this.copyRange(copy, header(r.raw, "x-amz-copy-source-range"), b);
    } else {
      written = await this.receive(r, b, this.opts.putBytesMax, false);
    }
    // Parts are always chunked (even small ones), so the object's body is a list of parts.
    const data = written.data as DataRef;
    const part: PartRecord = {
      partNumber: n,
      data,
      etag: `"${written.md5}"`,
      size: written.size,
      lastModifiedMs: Date.now(),
      ...(written.checksums ? { checksums: written.checksums } : {}),
    };
    // The upload may have been completed or aborted meanwhile: the part must not outlive it.
    const still = await this.index.upload(b.id, up.key, up.uploadId);
    if (!still.ok || !still.upload) {
      void this.index.removeBody(data);
      if (!still.ok) throw kvError(still);
      throw new S3Error("NoSuchUpload");
    }
    const p = await this.index.putPart(up.uploadId, part);
    if (!p.ok) {
      if (p.code !== "OUTCOME_UNKNOWN") void this.index.removeBody(data);
      throw kvError(p);
    }
    if (copy) {
      this.send(
        r,
        200,
        xml.copyPartResultXml({ etag: part.etag, lastModified: isoDate(part.lastModifiedMs) }),
      );
      return;
    }
    this.empty(r, 200, { etag: part.etag, ...checksumHeaders(part.checksums) });
  }

  /** Copies bytes of an object into a new body (UploadPartCopy). */
  private async copyRange(
    rec: ObjectRecord,
    rangeHeader: string | undefined,
    b: BucketRecord,
  ): Promise<{ size: number; md5: string; inline?: Uint8Array; data?: DataRef }> {
    let start = 0;
    let end = rec.size;
    if (rangeHeader !== undefined) {
      const m = /^bytes=(\d+)-(\d+)$/.exec(rangeHeader);
      if (!m)
        throw new S3Error(
          "InvalidArgument",
          "The x-amz-copy-source-range value must be of the form bytes=first-last.",
        );
      start = Number(m[1]);
      end = Number(m[2]) + 1;
      if (start >= end || end > rec.size) throw new S3Error("InvalidRange");
    }
    const w = await this.index.writeBody(
      this.index.readBody(rec, start, end),
      this.opts.putBytesMax,
      undefined,
      false,
      chunkPlacement(b),
    );
    if (!w.ok) throw kvError(w);
    return w.body;
  }

  private async completeUpload(r: Req): Promise<void> {
    const b = await this.bucketFor(r, "write");
    const { upload: up, revision } = await this.uploadWithRevision(r, b);
    const wanted = xml.parseCompleteMultipartUpload(
      await this.readXml(r, xml.MAX_COMPLETE_MULTIPART_BODY_BYTES),
    );
    if (wanted.parts.length === 0)
      throw new S3Error("MalformedXML", "You must specify at least one part.");
    const have = await this.index.parts(up.uploadId);
    if (!have.ok) throw kvError(have);
    const byNumber = new Map(have.parts.map((p) => [p.partNumber, p]));
    const chosen: PartRecord[] = [];
    let prev = 0;
    for (const [i, w] of wanted.parts.entries()) {
      if (w.partNumber <= prev) throw new S3Error("InvalidPartOrder");
      prev = w.partNumber;
      const p = byNumber.get(w.partNumber);
      if (!p || normEtag(p.etag) !== normEtag(w.etag))
        throw new S3Error("InvalidPart", undefined, {
          extra: { UploadId: up.uploadId, PartNumber: String(w.partNumber), ETag: w.etag },
        });
      if (i < wanted.parts.length - 1 && p.size < this.opts.partBytesMin)
        throw new S3Error("EntityTooSmall", undefined, {
          extra: {
            ProposedSize: String(p.size),
            MinSizeAllowed: String(this.opts.partBytesMin),
            PartNumber: String(p.partNumber),
            ETag: p.etag,
          },
        });
      chosen.push(p);
    }
    const now = Date.now();
    const sortId = b.versioning ? newSortId(now) : undefined;
    const etag = `"${multipartEtag(chosen.map((p) => normEtag(p.etag)))}"`;
    const rec: ObjectRecord = {
      key: up.key,
      versionId: b.versioning === "Enabled" ? (sortId as string) : "null",
      ...(sortId !== undefined ? { sortId } : {}),
      size: chosen.reduce((s, p) => s + p.size, 0),
      etag,
      lastModifiedMs: now,
      headers: up.headers,
      meta: up.meta,
      parts: chosen.map((p) => p.data),
      partsCount: chosen.length,
    };
    if (rec.size > 5 * 1024 ** 4) throw new S3Error("EntityTooLarge");
    // The upload is claimed first: an abort arriving now refuses instead of removing the
    // parts the object is about to reference. Then the object, then the upload's records.
    const claim = await this.index.claimUpload(b.id, up, revision, now);
    if (!claim.ok) {
      if (claim.code === "PRECONDITION_FAILED")
        throw new S3Error(
          "OperationAborted",
          "A conflicting operation on this upload is in progress; retry.",
        );
      throw kvError(claim);
    }
    try {
      await this.commit(r, b, rec, []);
    } catch (e) {
      await this.index.unclaimUpload(b.id, { ...up, completingMs: now }, claim.revision);
      throw e;
    }
    const keep = new Set(chosen.map((p) => p.data.id));
    const e = await this.index.endUpload(b.id, up, keep, claim.revision);
    if (!e.ok)
      this.opts.log.warn({ uploadId: up.uploadId, err: e.message }, "upload cleanup failed");
    this.send(
      r,
      200,
      xml.completeMultipartUploadResultXml({
        location: `/${b.name}/${encodeURIComponent(up.key)}`,
        bucket: b.name,
        key: up.key,
        etag,
      }),
      b.versioning ? { "x-amz-version-id": rec.versionId } : {},
    );
  }

  private async abortUpload(r: Req): Promise<void> {
    const b = await this.bucketFor(r, "write");
    const { upload: up, revision } = await this.uploadWithRevision(r, b);
    if (up.completingMs !== undefined && Date.now() - up.completingMs < COMPLETING_STALE_MS)
      throw new S3Error("OperationAborted", "The upload is being completed.");
    const e = await this.index.endUpload(b.id, up, new Set(), revision);
    if (!e.ok) {
      if (e.code === "PRECONDITION_FAILED")
        throw new S3Error(
          "OperationAborted",
          "A conflicting operation on this upload is in progress; retry.",
        );
      throw kvError(e);
    }
    this.empty(r, 204);
  }

  private async listParts(r: Req): Promise<void> {
    const b = await this.bucketFor(r, "read");
    const up = await this.uploadOf(r, b);
    const max = this.maxKeys(r, "max-parts");
    const marker = Number(r.query.get("part-number-marker") ?? "0") || 0;
    const p = await this.index.parts(up.uploadId, marker, max);
    if (!p.ok) throw kvError(p);
    const last = p.parts[p.parts.length - 1];
    this.send(
      r,
      200,
      xml.listPartsResultXml({
        bucket: b.name,
        key: up.key,
        uploadId: up.uploadId,
        partNumberMarker: marker,
        ...(p.truncated && last ? { nextPartNumberMarker: last.partNumber } : {}),
        maxParts: max,
        isTruncated: p.truncated,
        initiator: { id: up.initiator, displayName: up.initiator },
        owner: { id: b.owner, displayName: b.owner },
        parts: p.parts.map((x) => ({
          partNumber: x.partNumber,
          lastModified: isoDate(x.lastModifiedMs),
          etag: x.etag,
          size: x.size,
        })),
      }),
    );
  }

  private async listUploads(r: Req): Promise<void> {
    const b = await this.bucketFor(r, "read");
    const q = r.query;
    const prefix = q.get("prefix") ?? "";
    const delimiter = q.get("delimiter") ?? "";
    const max = this.maxKeys(r, "max-uploads");
    const keyMarker = q.get("key-marker") ?? undefined;
    const uploadIdMarker = q.get("upload-id-marker") ?? undefined;
    const l = await this.index.listUploads(b.id, {
      prefix,
      delimiter,
      after: keyMarker,
      ...(keyMarker !== undefined && uploadIdMarker ? { afterUploadId: uploadIdMarker } : {}),
      max,
    });
    if (!l.ok) throw kvError(l);
    const last = l.uploads[l.uploads.length - 1];
    this.send(
      r,
      200,
      xml.listMultipartUploadsResultXml({
        bucket: b.name,
        keyMarker: keyMarker ?? "",
        uploadIdMarker: q.get("upload-id-marker") ?? "",
        ...(l.truncated && last
          ? { nextKeyMarker: last.key, nextUploadIdMarker: last.uploadId }
          : {}),
        prefix,
        ...(delimiter !== "" ? { delimiter } : {}),
        maxUploads: max,
        isTruncated: l.truncated,
        uploads: l.uploads.map((u) => ({
          key: u.key,
          uploadId: u.uploadId,
          initiator: { id: u.initiator, displayName: u.initiator },
          owner: { id: b.owner, displayName: b.owner },
          initiated: isoDate(u.initiatedMs),
        })),
        commonPrefixes: l.prefixes,
      }),
    );
  }
}

const RESPONSE_OVERRIDES: readonly [string, string][] = [
  ["response-content-type", "content-type"],
  ["response-content-language", "content-language"],
  ["response-expires", "expires"],
  ["response-cache-control", "cache-control"],
  ["response-content-disposition", "content-disposition"],
  ["response-content-encoding", "content-encoding"],
];

/** Sub-resources Kumo does not implement: answered NotImplemented, never silently ignored. */
const UNSUPPORTED = [
  "tagging",
  "policy",
  "lifecycle",
  "replication",
  "website",
  "logging",
  "notification",
  "encryption",
  "object-lock",
  "retention",
  "legal-hold",
  "torrent",
  "restore",
  "select",
  "inventory",
  "metrics",
  "analytics",
  "accelerate",
  "requestPayment",
  "ownershipControls",
  "publicAccessBlock",
  "intelligent-tiering",
  "attributes",
  "acl",
];

function unsupported(q: URLSearchParams): boolean {
  return UNSUPPORTED.some((k) => q.has(k));
}

function notImplemented(q: URLSearchParams): S3Error {
  const which = UNSUPPORTED.find((k) => q.has(k)) ?? [...q.keys()][0] ?? "this request";
  return new S3Error("NotImplemented", `Kumo does not implement the "${which}" sub-resource.`);
}

/** The operation, for metrics: a small fixed set of names (never client input). */
function opName(
  method: string,
  bucket: string | undefined,
  key: string | undefined,
  q: URLSearchParams,
  copySource: string | undefined,
): string {
  if (bucket === undefined) return "list_buckets";
  if (key === undefined) {
    if (method === "GET") {
      if (q.has("versions")) return "list_versions";
      if (q.has("uploads")) return "list_uploads";
      for (const sub of ["location", "versioning", "cors", "acl"])
        if (q.has(sub)) return `get_bucket_${sub}`;
      return "list_objects";
    }
    if (method === "POST" && q.has("delete")) return "delete_objects";
    for (const sub of ["versioning", "cors", "acl"])
      if (q.has(sub)) return `${method.toLowerCase()}_bucket_${sub}`;
    return (
      { PUT: "create_bucket", DELETE: "delete_bucket", HEAD: "head_bucket" }[method] ?? "other"
    );
  }
  switch (method) {
    case "GET":
      return q.has("uploadId") ? "list_parts" : "get_object";
    case "HEAD":
      return "head_object";
    case "PUT":
      if (q.has("uploadId")) return copySource !== undefined ? "upload_part_copy" : "upload_part";
      return copySource !== undefined ? "copy_object" : "put_object";
    case "DELETE":
      return q.has("uploadId") ? "abort_upload" : "delete_object";
    case "POST":
      return q.has("uploads") ? "create_upload" : q.has("uploadId") ? "complete_upload" : "other";
    default:
      return "other";
  }
}

/**
 * Headers asking for something Kumo does not do are refused rather than ignored: a client that
 * asked for encryption or an archive storage class must not believe it got it.
 */
function refuseUnsupportedHeaders(raw: IncomingMessage): void {
  for (const h of Object.keys(raw.headers)) {
    if (h.startsWith("x-amz-server-side-encryption"))
      throw new S3Error("NotImplemented", "Kumo does not implement server-side encryption.");
    if (h.startsWith("x-amz-object-lock-"))
      throw new S3Error("NotImplemented", "Kumo does not implement object lock.");
  }
  const sc = header(raw, "x-amz-storage-class");
  if (sc !== undefined && sc !== "STANDARD")
    throw new S3Error("InvalidStorageClass", "Kumo stores every object as STANDARD.");
}

function normEtag(e: string): string {
  return e.replace(/^W\//, "").replace(/^"|"$/g, "");
}

function checksumHeaders(c: Readonly<Record<string, string>> | undefined): Record<string, string> {
  const h: Record<string, string> = {};
  for (const [a, v] of Object.entries(c ?? {})) h[`x-amz-checksum-${a}`] = v;
  return h;
}

/** The access key id a request claims (to load an unknown key before verifying). */
function accessKeyIdOf(raw: IncomingMessage, q: URLSearchParams): string | undefined {
  const auth = header(raw, "authorization");
  const cred = auth
    ? /Credential=([^/,\s]+)\//.exec(auth)?.[1]
    : q.get("X-Amz-Credential")?.split("/")[0];
  return cred && /^[A-Za-z0-9]{1,128}$/.test(cred) ? cred : undefined;
}

/** Conditional writes: `If-None-Match: *` (create only) and `If-Match` (replace that version). */
function writeConditions(r: Req, current: ObjectRecord | undefined): S3Error | undefined {
  const ifMatch = header(r.raw, "if-match");
  const ifNoneMatch = header(r.raw, "if-none-match");
  if (ifMatch === undefined && ifNoneMatch === undefined) return undefined;
  const v = evaluateWriteConditions(
    { ifMatch, ifNoneMatch },
    current ? { etag: current.etag } : undefined,
  );
  return v.ok ? undefined : v.error;
}
