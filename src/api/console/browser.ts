/**
 * The console's bucket and keyspace browser, behind the admin token, so that the page never
 * needs an S3 secret or a KV token:
 *
 *   GET    /v1/admin/console/buckets                     → {"buckets":[{name,createdMs,owner,versioning}]}
 *   PUT    /v1/admin/console/buckets/{bucket}            → 201 {"name"} (owned by the configured owner)
 *   DELETE /v1/admin/console/buckets/{bucket}            → 200; 409 BUCKET_NOT_EMPTY
 *   GET    /v1/admin/console/objects/{bucket}?prefix=&after=&limit=
 *          → {"objects":[{key,size,etag,lastModifiedMs,contentType}],"prefixes":[...],"next"}
 *            (one level: keys are rolled up at "/" into prefixes, like `aws s3 ls`)
 *   GET    /v1/admin/console/objects/{bucket}/{key}      → the body (as an attachment)
 *   PUT    /v1/admin/console/objects/{bucket}/{key}      → 200 {"key","size","etag"}; the body
 *          streams into chunks like an S3 PutObject, with the request's Content-Type
 *   DELETE /v1/admin/console/objects/{bucket}/{key}      → 200 {"deleted"}
 *
 *   GET    /v1/admin/console/kv/{keyspace}?prefix=&after=&limit=
 *          → {"items":[{key,revision,size,preview}],"next"}
 *   GET    /v1/admin/console/kv/{keyspace}/{key}         → {"key","revision","size","value"(base64)}
 *   PUT    /v1/admin/console/kv/{keyspace}/{key}         → {"revision"} (the body is the value)
 *   DELETE /v1/admin/console/kv/{keyspace}/{key}         → {"revision"}
 *
 * Objects go through the same object index and chunk layer as the S3 door (src/api/s3/), with
 * the same semantics: a PUT replaces the current version (a new version when the bucket is
 * versioned), a DELETE removes it (a delete marker when versioned), replaced bodies are
 * removed a little later.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { HttpError, readBody, sendJson } from "../kv/http.js";
import type { KvError, KvService } from "../kv/service.js";
import { validateBucketName, validateObjectKey } from "../s3/http-headers.js";
import type { AccessKeyRecord, BucketRecord, MetaError, S3Meta } from "../s3/meta.js";
import {
  chunkPlacement,
  type IndexError,
  newSortId,
  type ObjectIndex,
  type ObjectRecord,
} from "../s3/objects.js";

const enc = new TextEncoder();
const dec = new TextDecoder();
const LIST_LIMIT_DEFAULT = 200;
const LIST_LIMIT_MAX = 1000;
/** Bytes of each value shown in a keyspace listing. */
const PREVIEW_BYTES = 96;
/** The owner of buckets created from the console when no owner key is configured. */
export const CONSOLE_OWNER = "console";

export interface BrowserSources {
  readonly kv: KvService;
  readonly meta: S3Meta;
  readonly index: ObjectIndex;
  /** Creates the object index keyspace if needed (the first bucket). */
  readonly ensureIndex: () => Promise<boolean>;
  /** The access key that owns buckets created here (e.g. the S3 root key). */
  readonly bucketOwner?: string;
  readonly keyBytesMax: number;
  readonly valueBytesMax: number;
  /** Largest object uploaded through the console. */
  readonly objectBytesMax: number;
  readonly onError?: (what: string, err: unknown) => void;
}

function unavailable(message: string): HttpError {
  return new HttpError(503, "UNAVAILABLE", message, { "retry-after": "1" });
}

function kvFail(e: KvError | IndexError | MetaError): HttpError {
  switch (e.code) {
    case "NOT_FOUND":
    case "NoSuchKey":
      return new HttpError(404, "NOT_FOUND", e.message);
    case "NoSuchBucket":
      return new HttpError(404, "NO_SUCH_BUCKET", e.message);
    case "KEYSPACE_NOT_FOUND":
      return new HttpError(404, "KEYSPACE_NOT_FOUND", e.message);
    case "BucketAlreadyExists":
    case "BucketAlreadyOwnedByYou":
      return new HttpError(409, "BUCKET_EXISTS", e.message);
    case "BucketNotEmpty":
      return new HttpError(409, "BUCKET_NOT_EMPTY", e.message);
    case "TooManyBuckets":
      return new HttpError(409, "TOO_MANY_BUCKETS", e.message);
    case "Conflict":
    case "CONFLICT":
    case "PRECONDITION_FAILED":
      return new HttpError(409, "CONFLICT", e.message);
    case "TOO_LARGE":
      return new HttpError(413, "TOO_LARGE", e.message);
    case "INVALID_KEY":
      return new HttpError(400, "INVALID_KEY", e.message);
    default:
      return unavailable(e.message);
  }
}

function decodePart(s: string, what: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new HttpError(400, "BAD_REQUEST", `${what} is not valid percent-encoded UTF-8`);
  }
}

function limitOf(url: URL): number {
  const t = url.searchParams.get("limit");
  if (t === null) return LIST_LIMIT_DEFAULT;
  const n = Number(t);
  if (!Number.isInteger(n) || n < 1 || n > LIST_LIMIT_MAX)
    throw new HttpError(400, "BAD_REQUEST", `limit is an integer from 1 to ${LIST_LIMIT_MAX}`);
  return n;
}

function methodNotAllowed(allow: string): never {
  throw new HttpError(405, "METHOD_NOT_ALLOWED", `${allow} only`, { allow });
}

/** `attachment; filename=...` with the name's last segment, ASCII-safe and RFC 5987. */
export function attachment(key: string): string {
  const name = key.slice(key.lastIndexOf("/") + 1) || "download";
  const ascii = name.replace(/[^\x20-\x7e]|["\\]/g, "_");
  return `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}

function isText(b: Uint8Array): boolean {
  for (const x of b) if (x < 0x09 || (x > 0x0d && x < 0x20) || x === 0x7f) return false;
  return !dec.decode(b).includes("\uFFFD");
}

export class Browser {
  constructor(private readonly src: BrowserSources) {}

  // ---------------------------------------------------------------- buckets

  private async bucket(name: string): Promise<BucketRecord> {
    const b = await this.src.meta.bucket(name, true).catch((e: unknown) => {
      throw unavailable((e as Error).message);
    });
    if (!b) throw new HttpError(404, "NO_SUCH_BUCKET", `no bucket ${JSON.stringify(name)}`);
    return b;
  }

  async buckets(req: IncomingMessage, res: ServerResponse, name: string | undefined) {
    const meta = this.src.meta;
    if (name === undefined) {
      if (req.method !== "GET") methodNotAllowed("GET");
      const r = await meta.listBuckets();
      if (!r.ok) throw kvFail(r);
      sendJson(res, 200, {
        buckets: r.buckets
          .map((b) => ({
            name: b.name,
            createdMs: b.createdMs,
            owner: b.owner,
            versioning: b.versioning ?? null,
            publicRead: b.publicRead === true,
          }))
          .sort((a, b) => (a.name < b.name ? -1 : 1)),
      });
      return;
    }
    if (req.method === "PUT") {
      const bad = validateBucketName(name);
      if (bad) throw new HttpError(400, "INVALID_BUCKET_NAME", bad.message);
      if (!(await this.src.ensureIndex()))
        throw unavailable("the object index is not available yet; retry");
      const ownerId = this.src.bucketOwner ?? CONSOLE_OWNER;
      const owner: AccessKeyRecord = (await meta.loadKey(ownerId).catch(() => undefined)) ?? {
        accessKeyId: ownerId,
        secretAccessKey: "",
        name: ownerId,
        createdMs: 0,
        grants: {},
        createBuckets: true,
      };
      const c = await meta.createBucket(name, owner);
      if (!c.ok) throw kvFail(c);
      sendJson(res, 201, { name, owner: c.record.owner, createdMs: c.record.createdMs });
      return;
    }
    if (req.method === "DELETE") {
      const d = await meta.deleteBucket(name, (rec) => this.src.index.isEmpty(rec.id));
      if (!d.ok) throw kvFail(d);
      sendJson(res, 200, { deleted: name });
      return;
    }
    methodNotAllowed("GET, PUT, DELETE");
  }

  // ---------------------------------------------------------------- objects

  /** /v1/admin/console/objects/{bucket}[/{key}] (`rest` is what follows "objects/"). */
  async objects(req: IncomingMessage, res: ServerResponse, url: URL, rest: string) {
    const slash = rest.indexOf("/");
    const bucketName = decodePart(slash < 0 ? rest : rest.slice(0, slash), "the bucket");
    const key = slash < 0 ? "" : decodePart(rest.slice(slash + 1), "the key");
    if (bucketName === "") throw new HttpError(400, "BAD_REQUEST", "name a bucket");
    if (key === "") {
      if (req.method !== "GET") methodNotAllowed("GET");
      return this.listObjects(res, url, await this.bucket(bucketName));
    }
    const bad = validateObjectKey(key);
    if (bad) throw new HttpError(400, "INVALID_KEY", bad.message);
    const b = await this.bucket(bucketName);
    switch (req.method) {
      case "GET":
      case "HEAD":
        return this.getObject(req, res, b, key);
      case "PUT":
        return this.putObject(req, res, b, key);
      case "DELETE":
        return this.deleteObject(res, b, key);
      default:
        methodNotAllowed("GET, HEAD, PUT, DELETE");
    }
  }

  private async listObjects(res: ServerResponse, url: URL, b: BucketRecord) {
    const prefix = url.searchParams.get("prefix") ?? "";
    const after = url.searchParams.get("after") || undefined;
    const r = await this.src.index.list(b.id, {
      prefix,
      delimiter: "/",
      after,
      max: limitOf(url),
    });
    if (!r.ok) throw kvFail(r);
    const p = r.page;
    sendJson(res, 200, {
      bucket: b.name,
      prefix,
      objects: p.entries.map((e) => ({
        key: e.key,
        size: e.record.size,
        etag: e.record.etag,
        lastModifiedMs: e.record.lastModifiedMs,
        contentType: e.record.headers["content-type"] ?? "binary/octet-stream",
      })),
      prefixes: p.prefixes,
      next: p.truncated && p.last !== undefined ? p.last : null,
    });
  }

  private async getObject(req: IncomingMessage, res: ServerResponse, b: BucketRecord, key: string) {
    const h = await this.src.index.head(b.id, key);
    if (!h.ok) throw kvFail(h);
    const rec = h.record;
    if (!rec || rec.deleteMarker)
      throw new HttpError(404, "NOT_FOUND", `no object ${JSON.stringify(key)} in ${b.name}`);
    // Always an attachment, sandboxed and never sniffed: an object's bytes are not a page of
    // this origin (the page fetches them with the token and shows them itself).
    const headers = {
      "content-type": rec.headers["content-type"] ?? "binary/octet-stream",
      "content-length": String(rec.size),
      "content-disposition": attachment(key),
      "content-security-policy": "sandbox; default-src 'none'",
      "x-content-type-options": "nosniff",
      "cache-control": "no-store",
      etag: rec.etag,
      "last-modified": new Date(rec.lastModifiedMs).toUTCString(),
    };
    if (req.method === "HEAD" || rec.size === 0) {
      res.writeHead(200, headers);
      res.end();
      return;
    }
    const it = this.src.index.readBody(rec, 0, rec.size)[Symbol.asyncIterator]();
    let next = await it.next();
    res.writeHead(200, headers);
    let closed = false;
    res.once("close", () => {
      closed = true;
    });
    while (!next.done && !closed) {
      if (!res.write(next.value))
        await new Promise<void>((r) => {
          res.once("drain", r);
          res.once("close", r);
        });
      next = await it.next();
    }
    if (closed) {
      await it.return?.(undefined);
      return;
    }
    res.end();
  }

  private async putObject(req: IncomingMessage, res: ServerResponse, b: BucketRecord, key: string) {
    const index = this.src.index;
    const declared = req.headers["content-length"];
    if (declared === undefined)
      throw new HttpError(411, "LENGTH_REQUIRED", "send the body with a Content-Length");
    if (Number(declared) > this.src.objectBytesMax)
      throw new HttpError(
        413,
        "TOO_LARGE",
        `the object is ${declared} bytes; at most ${this.src.objectBytesMax} are allowed`,
      );
    let streamError: unknown;
    const guarded = (async function* () {
      try {
        for await (const c of req as AsyncIterable<Buffer>) yield c;
      } catch (e) {
        streamError = e;
      }
    })();
    const w = await index.writeBody(
      guarded,
      this.src.objectBytesMax,
      () => {},
      true,
      chunkPlacement(b),
    );
    const drop = () => {
      if (w.ok && w.body.data) void index.removeBody(w.body.data);
    };
    if (streamError !== undefined) {
      drop();
      throw new HttpError(400, "BAD_REQUEST", "the upload was cut short");
    }
    if (!w.ok) throw kvFail(w);
    if (w.body.size !== Number(declared)) {
      drop();
      throw new HttpError(400, "INCOMPLETE_BODY", "the body is shorter than its Content-Length");
    }
    const now = Date.now();
    const sortId = b.versioning ? newSortId(now) : undefined;
    const type = req.headers["content-type"];
    const rec: ObjectRecord = {
      key,
      versionId: b.versioning === "Enabled" ? (sortId as string) : "null",
      ...(sortId !== undefined ? { sortId } : {}),
      size: w.body.size,
      etag: `"${w.body.md5}"`,
      lastModifiedMs: now,
      headers: type ? { "content-type": type } : {},
      meta: {},
      ...(w.body.inline ? { inline: Buffer.from(w.body.inline).toString("base64") } : {}),
      ...(w.body.data ? { parts: [w.body.data] } : {}),
    };
    const c = await index.commit(b.id, rec, b.versioning, () => undefined);
    if (!c.ok) {
      // (An unknown outcome may have made it current: its body stays, a leak at worst.)
      if ("refused" in c || c.code !== "OUTCOME_UNKNOWN") drop();
      if ("refused" in c) throw new HttpError(409, "CONFLICT", "refused");
      throw kvFail(c);
    }
    this.retire(b, c.removable);
    sendJson(res, 200, { key, size: rec.size, etag: rec.etag, versionId: rec.versionId });
  }

  private async deleteObject(res: ServerResponse, b: BucketRecord, key: string) {
    const d = await this.src.index.deleteCurrent(b.id, key, b.versioning, Date.now());
    if (!d.ok) throw kvFail(d);
    this.retire(b, d.removable);
    sendJson(res, 200, { deleted: key, ...(d.marker ? { deleteMarker: true } : {}) });
  }

  private retire(b: BucketRecord, recs: readonly ObjectRecord[]): void {
    this.src.index.retireLater(b.id, recs, (err) =>
      this.src.onError?.("removing a replaced body", err),
    );
  }

  // ---------------------------------------------------------------- keyspaces

  /** /v1/admin/console/kv/{keyspace}[/{key}] (`rest` is what follows "kv/"). */
  async kv(req: IncomingMessage, res: ServerResponse, url: URL, rest: string) {
    const kv = this.src.kv;
    const slash = rest.indexOf("/");
    const keyspace = decodePart(slash < 0 ? rest : rest.slice(0, slash), "the keyspace");
    if (keyspace === "" || keyspace.startsWith("_") || !(await kv.knowsKeyspace(keyspace)))
      throw new HttpError(404, "KEYSPACE_NOT_FOUND", `keyspace "${keyspace}" does not exist`);
    const keyText = slash < 0 ? "" : decodePart(rest.slice(slash + 1), "the key");
    if (keyText === "") {
      if (req.method !== "GET") methodNotAllowed("GET");
      const prefix = enc.encode(url.searchParams.get("prefix") ?? "");
      const after = url.searchParams.get("after");
      const limit = limitOf(url);
      const r = await kv.list(
        keyspace,
        { prefix, startAfter: after ? enc.encode(after) : undefined, limit },
        "linearizable",
      );
      if (!r.ok) throw kvFail(r);
      const items = r.items.map((i) => {
        const head = i.value.subarray(0, PREVIEW_BYTES);
        return {
          key: dec.decode(i.key),
          revision: i.revision,
          size: i.value.byteLength,
          preview: isText(head) ? dec.decode(head) : null,
        };
      });
      const last = items[items.length - 1];
      sendJson(res, 200, { keyspace, items, next: r.more && last ? last.key : null });
      return;
    }
    const key = enc.encode(keyText);
    if (key.byteLength > this.src.keyBytesMax)
      throw new HttpError(
        413,
        "KEY_TOO_LARGE",
        `the key is ${key.byteLength} bytes; at most ${this.src.keyBytesMax} are allowed`,
      );
    switch (req.method) {
      case "GET": {
        const r = await kv.get(keyspace, key, "linearizable");
        if (!r.ok) throw kvFail(r);
        if (!r.item)
          throw new HttpError(404, "NOT_FOUND", `no key ${JSON.stringify(keyText)} in ${keyspace}`);
        const v = r.item.value;
        sendJson(res, 200, {
          key: keyText,
          revision: r.item.revision,
          size: v.byteLength,
          text: isText(v),
          value: Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64"),
        });
        return;
      }
      case "PUT": {
        const value = await readBody(req, this.src.valueBytesMax);
        const r = await kv.put(keyspace, key, value, { kind: "none" });
        if (!r.ok) throw kvFail(r);
        sendJson(res, 200, { revision: r.revision });
        return;
      }
      case "DELETE": {
        const r = await kv.delete(keyspace, key, { kind: "none" });
        if (!r.ok) throw kvFail(r);
        sendJson(res, 200, { revision: r.revision });
        return;
      }
      default:
        methodNotAllowed("GET, PUT, DELETE");
    }
  }
}
