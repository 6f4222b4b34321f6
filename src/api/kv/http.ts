/**
 * The KV HTTP API (see docs/kv-api.md):
 *
 *   PUT    /v1/kv/{keyspace}/{key}   body = value      → 200 {"revision":N}, ETag "N"
 *          If-Match: "N" (compare-and-set), If-None-Match: * (create only)  → 412 on mismatch
 *   GET    /v1/kv/{keyspace}/{key}[?consistency=stale] → 200 raw value, ETag; 404
 *   DELETE /v1/kv/{keyspace}/{key}   [If-Match]        → 200 {"revision":N}; 404; 412
 *   GET    /v1/kv/{keyspace}?prefix=&start_after=&limit=&keys_only=&consistency=
 *          → {"items":[{"key","revision","value"(base64)}],"next": key | null}
 *
 * Every error is JSON {"error":{"code","message"}} with the matching status; no stack traces.
 * Limits (key and value size, listing page size) are explicit and configurable.
 */
import { timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Condition } from "../../shard/index.js";
import type { Consistency, KvError, KvService } from "./service.js";

export interface KvHttpOptions {
  /** Who may read and write which keyspace (a list of tokens: each may do everything). */
  readonly tokens: Credentials;
  readonly keyBytesMax: number;
  readonly valueBytesMax: number;
  readonly listLimitMax: number;
}

/**
 * The status a finished exchange is recorded with: the answer's, or 499 when the client went
 * away before it was answered (nginx's convention), so that such requests neither vanish from
 * the metrics nor count as successes.
 */
export function statusAtClose(res: ServerResponse): number {
  return res.writableFinished ? res.statusCode : 499;
}

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

const enc = new TextEncoder();

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const data = Buffer.from(JSON.stringify(body));
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": data.byteLength,
    ...headers,
  });
  res.end(data);
}

export function sendError(res: ServerResponse, err: HttpError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  sendJson(
    res,
    err.status,
    { error: { code: err.code, message: err.message, ...err.extra } },
    err.headers,
  );
}

const STATUS: Record<KvError["code"], number> = {
  NOT_FOUND: 404,
  PRECONDITION_FAILED: 412,
  KEYSPACE_NOT_FOUND: 404,
  UNAVAILABLE: 503,
  OUTCOME_UNKNOWN: 503,
  OVERLOADED: 503,
  INVALID_KEY: 400,
  STALE_ROUTE: 503,
};

function kvError(e: KvError): HttpError {
  const status = STATUS[e.code];
  const headers: Record<string, string> = status === 503 ? { "retry-after": "1" } : {};
  const extra = e.revision !== undefined ? { revision: e.revision } : {};
  return new HttpError(status, e.code, e.message, headers, extra);
}

/** Bytes of an oversized body read and discarded before the connection is cut (see readBody). */
const DRAIN_BYTES_MAX = 8 << 20;

/** Reads a request body into memory, refusing (413) past `max` bytes without buffering more. */
/** A request body that must be one JSON object (the admin APIs), at most `max` bytes. */
export async function readJsonObject(
  req: IncomingMessage,
  max: number,
): Promise<Record<string, unknown>> {
  const body = await readBody(req, max);
  try {
    const v = JSON.parse(new TextDecoder().decode(body)) as unknown;
    if (typeof v !== "object" || v === null || Array.isArray(v)) throw new Error("not an object");
    return v as Record<string, unknown>;
  } catch {
    throw new HttpError(400, "BAD_REQUEST", "the body must be a JSON object");
  }
}

export function readBody(req: IncomingMessage, max: number): Promise<Uint8Array> {
  const declared = req.headers["content-length"];
  if (declared !== undefined && Number(declared) > max) {
    return Promise.reject(
      new HttpError(
        413,
        "VALUE_TOO_LARGE",
        `the value is ${declared} bytes; at most ${max} are allowed`,
      ),
    );
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    const tooLarge = () =>
      new HttpError(413, "VALUE_TOO_LARGE", `the value exceeds ${max} bytes`, {
        connection: "close",
      });
    req.on("data", (c: Buffer) => {
      size += c.byteLength;
      if (over) {
        // Answered already; keep reading (and discarding) so a client that sends its whole body
        // before reading sees the 413 rather than a reset. Past the drain bound, cut it off.
        if (size > max + DRAIN_BYTES_MAX) req.destroy();
        return;
      }
      if (size > max) {
        over = true;
        chunks.length = 0;
        reject(tooLarge());
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => {
      if (over) return;
      const buf = Buffer.concat(chunks, size);
      resolve(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength));
    });
    req.on("error", (e) => reject(new HttpError(400, "BAD_REQUEST", `request body: ${e.message}`)));
  });
}

/** Bearer-token check in constant time per token. */
export function authorized(req: IncomingMessage, tokens: readonly string[]): boolean {
  const h = req.headers.authorization;
  if (!h?.startsWith("Bearer ")) return false;
  const given = Buffer.from(h.slice(7).trim());
  let ok = false;
  for (const t of tokens) {
    const want = Buffer.from(t);
    if (want.byteLength === given.byteLength && timingSafeEqual(want, given)) ok = true;
  }
  return ok;
}

/** Access to one keyspace; write includes read. */
export type KeyspaceAccess = "read" | "write";

/** Who presented a request's bearer credential, and what it may do (docs/kv-api.md). */
export interface Principal {
  /** For logs and rate limits: a token record's id, or "static:N" / "admin:N" (never secret). */
  readonly id: string;
  /** May use the admin endpoints. */
  readonly admin: boolean;
  /** Access to a keyspace (undefined: none). */
  access(keyspace: string): KeyspaceAccess | undefined;
}

/** Turns a request's bearer credential into a principal (src/api/auth/tokens.ts). */
export interface Authenticator {
  /** undefined without a valid credential; throws HttpError 503 when it cannot tell. */
  authenticate(req: IncomingMessage): Promise<Principal | undefined>;
}

/**
 * What a door checks requests against: an authenticator, or (in unit tests and tools) a plain
 * list of tokens each of which may do everything.
 */
export type Credentials = Authenticator | readonly string[];

function unauthorized(admin: boolean): HttpError {
  return new HttpError(
    401,
    "UNAUTHORIZED",
    admin ? "missing or invalid admin bearer token" : "missing or invalid bearer token",
    { "www-authenticate": `Bearer realm="${admin ? "kumo-admin" : "kumo"}"` },
  );
}

/** Principals already found for a request (a door may check it more than once). */
const seen = new WeakMap<IncomingMessage, Principal>();

async function principalOf(
  creds: Credentials,
  req: IncomingMessage,
  admin: boolean,
): Promise<Principal | undefined> {
  if (Array.isArray(creds)) {
    if (!authorized(req, creds as readonly string[])) throw unauthorized(admin);
    return undefined;
  }
  const known = seen.get(req);
  if (known) return known;
  const p = await (creds as Authenticator).authenticate(req);
  if (!p) throw unauthorized(admin);
  seen.set(req, p);
  return p;
}

/** Any valid credential (read-only views of the cluster's shape); throws 401 otherwise. */
export async function requireAuthenticated(creds: Credentials, req: IncomingMessage) {
  await principalOf(creds, req, false);
}

/** An admin credential; throws 401 without a valid one, 403 for a valid non-admin one. */
export async function requireAdmin(creds: Credentials, req: IncomingMessage): Promise<void> {
  const p = await principalOf(creds, req, true);
  if (p && !p.admin) throw new HttpError(403, "FORBIDDEN", "this token is not an admin token");
}

/** `need` on `keyspace`; throws 401 without a valid credential, 403 without the grant. */
export async function requireAccess(
  creds: Credentials,
  req: IncomingMessage,
  keyspace: string,
  need: KeyspaceAccess,
): Promise<void> {
  const p = await principalOf(creds, req, false);
  if (!p) return;
  const have = p.access(keyspace);
  if (have === "write" || have === need) return;
  throw new HttpError(
    403,
    "FORBIDDEN",
    `this token may not ${need} keyspace ${JSON.stringify(keyspace)}`,
  );
}

function decodeSegment(s: string, what: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new HttpError(400, "BAD_REQUEST", `${what} is not valid percent-encoded UTF-8`);
  }
}

function parseRevision(h: string): number {
  const m = /^\s*(?:W\/)?"?(\d+)"?\s*$/.exec(h);
  if (!m)
    throw new HttpError(
      400,
      "BAD_REQUEST",
      `If-Match must be a revision such as "12", got ${JSON.stringify(h)}`,
    );
  const n = Number(m[1]);
  if (!Number.isSafeInteger(n))
    throw new HttpError(400, "BAD_REQUEST", "If-Match revision out of range");
  return n;
}

function condition(req: IncomingMessage, allowCreateOnly: boolean): Condition {
  const ifMatch = req.headers["if-match"];
  const ifNoneMatch = req.headers["if-none-match"];
  if (ifMatch !== undefined && ifNoneMatch !== undefined) {
    throw new HttpError(400, "BAD_REQUEST", "use either If-Match or If-None-Match, not both");
  }
  if (ifMatch !== undefined) return { kind: "ifRevision", revision: parseRevision(ifMatch) };
  if (ifNoneMatch !== undefined) {
    if (!allowCreateOnly || ifNoneMatch.trim() !== "*") {
      throw new HttpError(
        400,
        "BAD_REQUEST",
        'only "If-None-Match: *" (create only) is supported, on PUT',
      );
    }
    return { kind: "ifAbsent" };
  }
  return { kind: "none" };
}

function b64(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("base64");
}

export class KvHttpApi {
  constructor(
    private readonly service: KvService,
    private readonly opts: KvHttpOptions,
  ) {}

  /** Handles /v1/kv/... ; returns false if the path is not ours. */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
    const raw = url.pathname;
    if (raw !== "/v1/kv" && !raw.startsWith("/v1/kv/")) return false;
    // Authenticated first (401 for anyone without a valid credential, whatever the path), then
    // authorized for the keyspace once it is known (403).
    await requireAuthenticated(this.opts.tokens, req);
    const rest = raw.slice("/v1/kv/".length);
    const slash = rest.indexOf("/");
    const keyspace = decodeSegment(slash < 0 ? rest : rest.slice(0, slash), "the keyspace");
    if (keyspace === "")
      throw new HttpError(
        400,
        "BAD_REQUEST",
        "the path must name a keyspace: /v1/kv/{keyspace}/{key}",
      );
    // Reads (GET, HEAD, listings) need read on the keyspace; anything else needs write. Checked
    // before the keyspace is looked up, so that a token learns nothing about keyspaces it may
    // not use.
    const need = req.method === "GET" || req.method === "HEAD" ? "read" : "write";
    await requireAccess(this.opts.tokens, req, keyspace, need);
    // Names starting with "_" are the system's (the metadata group is "_meta").
    if (keyspace.startsWith("_") || !(await this.service.knowsKeyspace(keyspace))) {
      throw new HttpError(404, "KEYSPACE_NOT_FOUND", `keyspace "${keyspace}" does not exist`);
    }
    const consistency = this.consistency(url);
    if (slash < 0) {
      if (req.method !== "GET")
        throw new HttpError(405, "METHOD_NOT_ALLOWED", "a keyspace can only be listed (GET)", {
          allow: "GET",
        });
      await this.list(res, keyspace, url, consistency);
      return true;
    }
    const keyText = decodeSegment(rest.slice(slash + 1), "the key");
    if (keyText === "") throw new HttpError(400, "BAD_REQUEST", "the key is empty");
    const key = enc.encode(keyText);
    if (key.byteLength > this.opts.keyBytesMax) {
      throw new HttpError(
        413,
        "KEY_TOO_LARGE",
        `the key is ${key.byteLength} bytes; at most ${this.opts.keyBytesMax} are allowed`,
      );
    }
    switch (req.method) {
      case "PUT": {
        const cond = condition(req, true);
        const value = await readBody(req, this.opts.valueBytesMax);
        const r = await this.service.put(keyspace, key, value, cond);
        if (!r.ok) throw kvError(r);
        sendJson(res, 200, { revision: r.revision }, { etag: `"${r.revision}"` });
        return true;
      }
      case "GET":
      case "HEAD": {
        const r = await this.service.get(keyspace, key, consistency);
        if (!r.ok) throw kvError(r);
        if (!r.item)
          throw new HttpError(
            404,
            "NOT_FOUND",
            `no key ${JSON.stringify(keyText)} in keyspace "${keyspace}"`,
          );
        res.writeHead(200, {
          "content-type": "application/octet-stream",
          "content-length": r.item.value.byteLength,
          etag: `"${r.item.revision}"`,
          "x-kumo-revision": String(r.item.revision),
        });
        res.end(req.method === "HEAD" ? undefined : r.item.value);
        return true;
      }
      case "DELETE": {
        const cond = condition(req, false);
        const r = await this.service.delete(keyspace, key, cond);
        if (!r.ok) {
          if (r.code === "NOT_FOUND") {
            throw new HttpError(
              404,
              "NOT_FOUND",
              `no key ${JSON.stringify(keyText)} in keyspace "${keyspace}"`,
            );
          }
          throw kvError(r);
        }
        sendJson(res, 200, { revision: r.revision });
        return true;
      }
      default:
        throw new HttpError(405, "METHOD_NOT_ALLOWED", `${req.method} is not supported on a key`, {
          allow: "GET, HEAD, PUT, DELETE",
        });
    }
  }

  private consistency(url: URL): Consistency {
    const c = url.searchParams.get("consistency");
    if (c === null || c === "linearizable") return "linearizable";
    if (c === "stale") return "stale";
    throw new HttpError(
      400,
      "BAD_REQUEST",
      'consistency must be "linearizable" (default) or "stale"',
    );
  }

  private async list(
    res: ServerResponse,
    keyspace: string,
    url: URL,
    consistency: Consistency,
  ): Promise<void> {
    const q = url.searchParams;
    const prefix = enc.encode(q.get("prefix") ?? "");
    const startAfterText = q.get("start_after");
    const limitText = q.get("limit");
    let limit = 100;
    if (limitText !== null) {
      limit = Number(limitText);
      if (!Number.isInteger(limit) || limit < 1 || limit > this.opts.listLimitMax) {
        throw new HttpError(
          400,
          "BAD_REQUEST",
          `limit must be an integer from 1 to ${this.opts.listLimitMax}`,
        );
      }
    }
    const keysOnlyText = q.get("keys_only");
    if (keysOnlyText !== null && !["", "true", "false", "1", "0"].includes(keysOnlyText)) {
      throw new HttpError(400, "BAD_REQUEST", "keys_only must be true or false");
    }
    const keysOnly = keysOnlyText !== null && keysOnlyText !== "false" && keysOnlyText !== "0";
    const startAfter =
      startAfterText !== null && startAfterText !== "" ? enc.encode(startAfterText) : undefined;
    const r = await this.service.list(keyspace, { prefix, startAfter, limit }, consistency);
    if (!r.ok) throw kvError(r);
    const dec = new TextDecoder();
    const items = r.items.map((i) => {
      const key = dec.decode(i.key);
      return keysOnly
        ? { key, revision: i.revision }
        : { key, revision: i.revision, value: b64(i.value) };
    });
    const last = items[items.length - 1];
    sendJson(res, 200, { items, next: r.more && last ? last.key : null });
  }
}
