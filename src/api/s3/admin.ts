/**
 * The access-key admin API (admin token), used by `kumo key create|ls|rm|allow`:
 *
 *   POST   /v1/admin/keys            {"name":"app","buckets":{"photos":"write"},"createBuckets":true}
 *                                    → 201 {"accessKeyId","secretAccessKey",...} (the secret is
 *                                      shown once here, never listed)
 *   GET    /v1/admin/keys            → {"keys":[{accessKeyId,name,createdMs,grants,createBuckets}]}
 *   DELETE /v1/admin/keys/{id}       → 200
 *   PUT    /v1/admin/keys/{id}/grants {"bucket":"photos","access":"read"|"write"|"owner"|null}
 *                                    → 200 the key (without its secret)
 *   GET    /v1/admin/buckets         → {"buckets":[{name,owner,createdMs,versioning,...}]}
 *   GET    /v1/admin/buckets/{name}  → the bucket's record (its settings)
 *   PUT    /v1/admin/buckets/{name}  {"chunkWriteQuorum": 2 | null, "chunkReplicas": 3 | null}
 *                                    → 200 the record (null: back to the nodes' default); W
 *                                      cannot exceed N
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { type Credentials, HttpError, readJsonObject, requireAdmin, sendJson } from "../kv/http.js";
import type { KvError } from "../kv/service.js";
import type { Access, AccessKeyRecord, MetaError, S3Meta } from "./meta.js";

const BODY_BYTES_MAX = 64 << 10;
const ACCESS: readonly Access[] = ["read", "write", "owner"];
const NAME_BYTES_MAX = 128;

function fail(e: MetaError | KvError): never {
  switch (e.code) {
    case "NoSuchKey":
      throw new HttpError(404, "NOT_FOUND", e.message);
    case "Conflict":
      throw new HttpError(409, "CONFLICT", e.message);
    case "TooManyKeys":
      throw new HttpError(409, "TOO_MANY_KEYS", e.message);
    default:
      throw new HttpError(503, "UNAVAILABLE", e.message, { "retry-after": "1" });
  }
}

function publicView(k: AccessKeyRecord) {
  const { secretAccessKey: _secret, ...rest } = k;
  return rest;
}

function parseGrants(x: unknown): Record<string, Access> {
  if (x === undefined) return {};
  if (typeof x !== "object" || x === null || Array.isArray(x))
    throw new HttpError(400, "BAD_REQUEST", '"buckets" must be an object of bucket → access');
  const out: Record<string, Access> = {};
  for (const [b, a] of Object.entries(x)) {
    if (!ACCESS.includes(a as Access))
      throw new HttpError(400, "BAD_REQUEST", `access must be one of ${ACCESS.join(", ")}`);
    out[b] = a as Access;
  }
  return out;
}

const json = (req: IncomingMessage) => readJsonObject(req, BODY_BYTES_MAX);

export class S3KeysHttpApi {
  constructor(
    private readonly meta: S3Meta,
    private readonly adminTokens: Credentials,
    /** The largest per-bucket N and W: the chunk ring's replicas (--chunk-replicas). */
    private readonly replicasMax: number = 3,
  ) {}

  private authorize(req: IncomingMessage): Promise<void> {
    return requireAdmin(this.adminTokens, req);
  }

  /** /v1/admin/buckets[/{name}]: bucket records and their settings. */
  private async buckets(req: IncomingMessage, res: ServerResponse, name: string | undefined) {
    await this.authorize(req);
    if (name === undefined) {
      if (req.method !== "GET")
        throw new HttpError(405, "METHOD_NOT_ALLOWED", "GET only", { allow: "GET" });
      const r = await this.meta.listBuckets();
      if (!r.ok) fail(r);
      sendJson(res, 200, { buckets: r.buckets });
      return true;
    }
    if (req.method === "GET") {
      const b = await this.meta.bucket(name, true);
      if (!b) throw new HttpError(404, "NOT_FOUND", `no bucket ${JSON.stringify(name)}`);
      sendJson(res, 200, b);
      return true;
    }
    if (req.method !== "PUT")
      throw new HttpError(405, "METHOD_NOT_ALLOWED", "GET or PUT", { allow: "GET, PUT" });
    const body = await json(req);
    const known = new Set(["chunkWriteQuorum", "chunkReplicas"]);
    for (const k of Object.keys(body))
      if (!known.has(k))
        throw new HttpError(400, "BAD_REQUEST", `unknown setting ${JSON.stringify(k)}`);
    const setting = (k: "chunkWriteQuorum" | "chunkReplicas", what: string) => {
      const v = body[k];
      if (v === undefined || v === null) return v;
      if (!Number.isInteger(v) || (v as number) < 1 || (v as number) > this.replicasMax)
        throw new HttpError(
          400,
          "BAD_REQUEST",
          `${JSON.stringify(k)} (${what}) is an integer from 1 to ${this.replicasMax} (the chunk replicas), or null`,
        );
      return v as number;
    };
    const w = setting("chunkWriteQuorum", "W");
    const n = setting("chunkReplicas", "N");
    const r = await this.meta.updateBucket(name, (b) => {
      const { chunkWriteQuorum: oldW, chunkReplicas: oldN, ...rest } = b;
      const nextW = w === undefined ? oldW : (w ?? undefined);
      const nextN = n === undefined ? oldN : (n ?? undefined);
      // Checked against the record being replaced: either setting may come alone.
      if (nextW !== undefined && nextW > (nextN ?? this.replicasMax))
        throw new HttpError(
          400,
          "BAD_REQUEST",
          `"chunkWriteQuorum" (W = ${nextW}) cannot exceed "chunkReplicas" (N = ${nextN ?? this.replicasMax})`,
        );
      return {
        ...rest,
        ...(nextW !== undefined ? { chunkWriteQuorum: nextW } : {}),
        ...(nextN !== undefined ? { chunkReplicas: nextN } : {}),
      };
    });
    if (!r.ok) {
      if (r.code === "NoSuchBucket") throw new HttpError(404, "NOT_FOUND", r.message);
      fail(r);
    }
    sendJson(res, 200, r.record);
    return true;
  }

  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
    const bm = /^\/v1\/admin\/buckets(?:\/([^/]+))?$/.exec(url.pathname);
    if (bm)
      return this.buckets(req, res, bm[1] === undefined ? undefined : decodeURIComponent(bm[1]));
    const m = /^\/v1\/admin\/keys(?:\/([^/]+)(\/grants)?)?$/.exec(url.pathname);
    if (!m) return false;
    await this.authorize(req);
    const id = m[1] === undefined ? undefined : decodeURIComponent(m[1]);
    const grants = m[2] !== undefined;
    if (id === undefined) {
      if (req.method === "GET") {
        const r = await this.meta.listKeys();
        if (!r.ok) fail(r);
        sendJson(res, 200, { keys: r.keys.map(publicView) });
        return true;
      }
      if (req.method === "POST") {
        const b = await json(req);
        const name = b.name ?? "";
        if (typeof name !== "string" || Buffer.byteLength(name) > NAME_BYTES_MAX)
          throw new HttpError(
            400,
            "BAD_REQUEST",
            `"name" must be a string of at most ${NAME_BYTES_MAX} bytes`,
          );
        const r = await this.meta.createKey(name, parseGrants(b.buckets), b.createBuckets === true);
        if (!r.ok) fail(r);
        sendJson(res, 201, r.record);
        return true;
      }
      throw new HttpError(405, "METHOD_NOT_ALLOWED", "GET or POST", { allow: "GET, POST" });
    }
    if (grants) {
      if (req.method !== "PUT")
        throw new HttpError(405, "METHOD_NOT_ALLOWED", "PUT only", { allow: "PUT" });
      const b = await json(req);
      const bucket = b.bucket;
      if (typeof bucket !== "string" || bucket === "")
        throw new HttpError(400, "BAD_REQUEST", '"bucket" must be a bucket name or "*"');
      const access = b.access;
      if (access !== null && !ACCESS.includes(access as Access))
        throw new HttpError(
          400,
          "BAD_REQUEST",
          `"access" must be one of ${ACCESS.join(", ")} or null`,
        );
      const r = await this.meta.grant(
        id,
        bucket,
        (access ?? undefined) as Access | undefined,
        typeof b.createBuckets === "boolean" ? b.createBuckets : undefined,
      );
      if (!r.ok) fail(r);
      sendJson(res, 200, publicView(r.record));
      return true;
    }
    if (req.method !== "DELETE")
      throw new HttpError(405, "METHOD_NOT_ALLOWED", "DELETE only", { allow: "DELETE" });
    const r = await this.meta.deleteKey(id);
    if (!r.ok) fail(r);
    sendJson(res, 200, { deleted: id });
    return true;
  }
}
