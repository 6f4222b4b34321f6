/**
 * The KV token admin API (admin credential), used by `kumo token create|ls|rm|allow`:
 *
 *   POST   /v1/admin/tokens             {"name":"app","grants":{"orders":"write"},"admin":false}
 *                                       → 201 {"id","token","name","grants","admin","createdMs"}
 *                                         (the token is shown once here, never again)
 *   GET    /v1/admin/tokens             → {"tokens":[{id,name,grants,admin,createdMs}]}
 *   DELETE /v1/admin/tokens/{id}        → 200 {"deleted":id} (refused at once by this node, by
 *                                         every node within 2 s)
 *   PUT    /v1/admin/tokens/{id}/grants {"keyspace":"orders","access":"read"|"write"|null}
 *                                       and/or {"admin":true|false} → 200 the token
 *
 * Every error is the KV API's JSON error; 409 TOO_MANY_TOKENS past TOKENS_MAX.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import {
  TOKEN_GRANTS_MAX,
  TOKEN_NAME_BYTES_MAX,
  type TokenError,
  type TokenRecord,
  type TokenStore,
} from "../auth/tokens.js";
import {
  type Credentials,
  HttpError,
  type KeyspaceAccess,
  readJsonObject,
  requireAdmin,
  sendJson,
} from "../kv/http.js";

const BODY_BYTES_MAX = 64 << 10;
const ACCESS: readonly KeyspaceAccess[] = ["read", "write"];
/** Keyspace names as the keyspace API accepts them (src/placement/keyspaces.ts), or "*". */
const KEYSPACE_RE = /^(\*|[a-z0-9][a-z0-9_-]{0,39})$/;

function fail(e: TokenError): never {
  switch (e.code) {
    case "NO_SUCH_TOKEN":
      throw new HttpError(404, "NOT_FOUND", e.message);
    case "TOO_MANY_TOKENS":
      throw new HttpError(409, "TOO_MANY_TOKENS", e.message);
    case "CONFLICT":
      throw new HttpError(409, "CONFLICT", e.message);
    default:
      throw new HttpError(503, "UNAVAILABLE", e.message, { "retry-after": "1" });
  }
}

/** A record as clients see it: never its hash. */
function publicView(r: TokenRecord) {
  const { secretHash: _hash, ...rest } = r;
  return rest;
}

function keyspaceName(x: unknown): string {
  if (typeof x !== "string" || !KEYSPACE_RE.test(x))
    throw new HttpError(400, "BAD_REQUEST", `${JSON.stringify(x)} is not a keyspace name or "*"`);
  return x;
}

function parseGrants(x: unknown): Record<string, KeyspaceAccess> {
  if (x === undefined) return {};
  if (typeof x !== "object" || x === null || Array.isArray(x))
    throw new HttpError(400, "BAD_REQUEST", '"grants" must be an object of keyspace → access');
  const entries = Object.entries(x);
  if (entries.length > TOKEN_GRANTS_MAX)
    throw new HttpError(400, "BAD_REQUEST", `a token carries at most ${TOKEN_GRANTS_MAX} grants`);
  const out: Record<string, KeyspaceAccess> = {};
  for (const [k, a] of entries) {
    if (!ACCESS.includes(a as KeyspaceAccess))
      throw new HttpError(400, "BAD_REQUEST", `access must be one of ${ACCESS.join(", ")}`);
    out[keyspaceName(k)] = a as KeyspaceAccess;
  }
  return out;
}

const json = (req: IncomingMessage) => readJsonObject(req, BODY_BYTES_MAX);

export class TokensHttpApi {
  constructor(
    private readonly store: TokenStore,
    private readonly creds: Credentials,
  ) {}

  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
    const m = /^\/v1\/admin\/tokens(?:\/([^/]+)(\/grants)?)?$/.exec(url.pathname);
    if (!m) return false;
    await requireAdmin(this.creds, req);
    const id = m[1] === undefined ? undefined : decodeURIComponent(m[1]);
    if (id === undefined) {
      if (req.method === "GET") {
        const r = await this.store.list();
        if (!r.ok) fail(r);
        sendJson(res, 200, { tokens: r.records.map(publicView) });
        return true;
      }
      if (req.method !== "POST")
        throw new HttpError(405, "METHOD_NOT_ALLOWED", "GET or POST", { allow: "GET, POST" });
      const b = await json(req);
      const name = b.name ?? "";
      if (typeof name !== "string" || Buffer.byteLength(name) > TOKEN_NAME_BYTES_MAX)
        throw new HttpError(
          400,
          "BAD_REQUEST",
          `"name" must be a string of at most ${TOKEN_NAME_BYTES_MAX} bytes`,
        );
      if (b.admin !== undefined && typeof b.admin !== "boolean")
        throw new HttpError(400, "BAD_REQUEST", '"admin" must be true or false');
      const r = await this.store.create(name, parseGrants(b.grants), b.admin === true);
      if (!r.ok) fail(r);
      sendJson(res, 201, { ...publicView(r.record), token: r.token });
      return true;
    }
    if (m[2] !== undefined) {
      if (req.method !== "PUT")
        throw new HttpError(405, "METHOD_NOT_ALLOWED", "PUT only", { allow: "PUT" });
      const b = await json(req);
      const keyspace = b.keyspace === undefined ? undefined : keyspaceName(b.keyspace);
      const access = b.access;
      if (keyspace !== undefined && access !== null && !ACCESS.includes(access as KeyspaceAccess))
        throw new HttpError(400, "BAD_REQUEST", '"access" must be "read", "write" or null');
      if (b.admin !== undefined && typeof b.admin !== "boolean")
        throw new HttpError(400, "BAD_REQUEST", '"admin" must be true or false');
      if (keyspace === undefined && b.admin === undefined)
        throw new HttpError(400, "BAD_REQUEST", 'give "keyspace" and "access", or "admin"');
      const r = await this.store.grant(
        id,
        keyspace,
        (access ?? undefined) as KeyspaceAccess | undefined,
        b.admin as boolean | undefined,
      );
      if (!r.ok) fail(r);
      sendJson(res, 200, publicView(r.record));
      return true;
    }
    if (req.method !== "DELETE")
      throw new HttpError(405, "METHOD_NOT_ALLOWED", "DELETE only", { allow: "DELETE" });
    const r = await this.store.remove(id);
    if (!r.ok) fail(r);
    sendJson(res, 200, { deleted: id });
    return true;
  }
}
