/**
 * KV API tokens (docs/kv-api.md, "Authentication"): records in the metadata group, next to the
 * S3 access keys, with per-keyspace grants and an admin flag; and the node's authenticator,
 * which also knows the static tokens of its configuration.
 *
 *   auth/token/<id>  → TokenRecord (name, SHA-256 of the secret, grants, admin)
 *
 * Every node caches the records and re-reads them all every second (`refresh`, driven by the
 * node), so a revoked token is refused everywhere within REVOCATION_BOUND_MS, and at once by
 * the node that served the revocation. A token not in the cache (created through another node
 * a moment ago) is read on first use; unknown ids are remembered as absent for a second, so a
 * flood of made-up tokens costs one read per id per second.
 *
 * Credentials, by what they may do:
 *   - a token record: its grants (keyspace or "*" → read | write), admin if its flag says so;
 *   - a static --tokens token: read and write on every keyspace; admin too only while no admin
 *     credential is configured (no --admin-tokens), which keeps single-token deployments and
 *     `kumo dev` working as before;
 *   - an --admin-tokens token: admin (bootstrap: it creates the first token records), no KV.
 * Anything else is refused: a node with no credential configured refuses every request.
 */

import { timingSafeEqual } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { type Authenticator, HttpError, type KeyspaceAccess, type Principal } from "../kv/http.js";
import type { KvError, KvService } from "../kv/service.js";
import { newToken, parseToken, secretMatches } from "./secrets.js";

export interface TokenRecord {
  readonly id: string;
  readonly name: string;
  /** SHA-256 of the token's secret, hex (the secret itself is never stored). */
  readonly secretHash: string;
  /** Keyspace (or "*" for every keyspace) → access. */
  readonly grants: Readonly<Record<string, KeyspaceAccess>>;
  readonly admin: boolean;
  readonly createdMs: number;
}

/** The metadata group's keyspace (as in src/api/s3/meta.ts). */
const META_KEYSPACE = "_meta";
const TOKEN_PREFIX = "auth/token/";
/** Token records a cluster may hold; creating one more is refused (TOO_MANY_TOKENS). */
export const TOKENS_MAX = 10_000;
/** How often every node re-reads the token records (the node's timer). */
export const TOKEN_REFRESH_MS = 1_000;
/**
 * A revoked token is refused by every node within this long (one refresh period plus the
 * refresh's own read), while the metadata group has a leader. Documented in docs/kv-api.md.
 */
export const REVOCATION_BOUND_MS = 2_000;
/** A token id not found is looked up again at most this often. */
const MISS_CACHE_MS = 1_000;
/** Remembered misses; past this the memory is cleared (a flood of made-up ids). */
const MISSES_MAX = 10_000;
/**
 * A token deleted through this node stays refused here for this long whatever a refresh that
 * started before the deletion reads.
 */
const TOMBSTONE_MS = 10_000;
export const TOKEN_NAME_BYTES_MAX = 128;
/** Grants one token may carry. */
export const TOKEN_GRANTS_MAX = 1_000;

export type TokenError =
  | KvError
  | {
      readonly ok: false;
      readonly code: "NO_SUCH_TOKEN" | "TOO_MANY_TOKENS" | "CONFLICT";
      readonly message: string;
    };

/** The narrow part of the KV service the store uses (a map in unit tests). */
export type MetaKv = Pick<KvService, "get" | "put" | "delete" | "list">;

const enc = new TextEncoder();
const dec = new TextDecoder();

function parseRecord(v: Uint8Array): TokenRecord {
  return JSON.parse(dec.decode(v)) as TokenRecord;
}

export function grantOf(
  grants: Readonly<Record<string, KeyspaceAccess>>,
  keyspace: string,
): KeyspaceAccess | undefined {
  const own = grants[keyspace];
  const all = grants["*"];
  if (own === "write" || all === "write") return "write";
  return own ?? all;
}

export class TokenStore {
  private records = new Map<string, TokenRecord>();
  private readonly misses = new Map<string, number>();
  private readonly tombstones = new Map<string, number>();
  private readonly inflight = new Map<string, Promise<TokenRecord | undefined>>();
  private refreshing: Promise<void> | undefined;

  constructor(private readonly kv: MetaKv) {}

  /** Re-reads every record (every TOKEN_REFRESH_MS); a failed read keeps the last view. */
  refresh(): Promise<void> {
    this.refreshing ??= this.doRefresh().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async doRefresh(): Promise<void> {
    const r = await this.listRecords();
    if (!r.ok) return;
    const now = Date.now();
    for (const [id, at] of this.tombstones) if (now - at > TOMBSTONE_MS) this.tombstones.delete(id);
    this.records = new Map(
      r.records.filter((x) => !this.tombstones.has(x.id)).map((x) => [x.id, x]),
    );
  }

  private async listRecords(): Promise<{ ok: true; records: TokenRecord[] } | KvError> {
    const out: TokenRecord[] = [];
    let startAfter: Uint8Array | undefined;
    for (;;) {
      const r = await this.kv.list(
        META_KEYSPACE,
        { prefix: enc.encode(TOKEN_PREFIX), startAfter, limit: 1000 },
        "linearizable",
      );
      if (!r.ok) return r;
      for (const i of r.items) out.push(parseRecord(i.value));
      if (!r.more || r.items.length === 0 || out.length >= TOKENS_MAX)
        return { ok: true, records: out };
      startAfter = r.items[r.items.length - 1]?.key;
    }
  }

  /** A cached record, for the synchronous rate-limit tenant lookup. */
  cached(id: string): TokenRecord | undefined {
    return this.records.get(id);
  }

  /** A record from the cache, or read (once per id at a time) when this node has not seen it. */
  async find(id: string): Promise<TokenRecord | undefined> {
    const cached = this.records.get(id);
    if (cached) return cached;
    if (this.tombstones.has(id)) return undefined;
    const absentAt = this.misses.get(id);
    if (absentAt !== undefined && Date.now() - absentAt < MISS_CACHE_MS) return undefined;
    const running = this.inflight.get(id);
    if (running) return running;
    const p = this.kv
      .get(META_KEYSPACE, enc.encode(TOKEN_PREFIX + id), "linearizable")
      .then((r) => {
        if (!r.ok)
          throw new HttpError(503, "UNAVAILABLE", `cannot read the token record: ${r.message}`, {
            "retry-after": "1",
          });
        if (!r.item) {
          if (this.misses.size >= MISSES_MAX) this.misses.clear();
          this.misses.set(id, Date.now());
          return undefined;
        }
        const rec = parseRecord(r.item.value);
        if (!this.tombstones.has(id)) this.records.set(id, rec);
        return rec;
      })
      .finally(() => this.inflight.delete(id));
    this.inflight.set(id, p);
    return p;
  }

  async create(
    name: string,
    grants: Record<string, KeyspaceAccess>,
    admin: boolean,
  ): Promise<{ ok: true; record: TokenRecord; token: string } | TokenError> {
    const all = await this.listRecords();
    if (!all.ok) return all;
    if (all.records.length >= TOKENS_MAX)
      return {
        ok: false,
        code: "TOO_MANY_TOKENS",
        message: `the cluster holds ${all.records.length} tokens, the most allowed (${TOKENS_MAX}); delete unused ones first`,
      };
    const t = newToken();
    const record: TokenRecord = {
      id: t.id,
      name,
      secretHash: t.secretHash,
      grants,
      admin,
      createdMs: Date.now(),
    };
    const w = await this.kv.put(
      META_KEYSPACE,
      enc.encode(TOKEN_PREFIX + t.id),
      enc.encode(JSON.stringify(record)),
      { kind: "ifAbsent" },
    );
    if (!w.ok) {
      if (w.code === "PRECONDITION_FAILED")
        return { ok: false, code: "CONFLICT", message: "a token with this id exists; retry" };
      return w;
    }
    this.misses.delete(t.id);
    this.records.set(t.id, record);
    return { ok: true, record, token: t.token };
  }

  async list(): Promise<{ ok: true; records: TokenRecord[] } | KvError> {
    return this.listRecords();
  }

  /** Deletes a token; this node refuses it from now on, the others within the bound. */
  async remove(id: string): Promise<{ ok: true } | TokenError> {
    // Refused here before the deletion commits: a revocation is never slower than asked.
    this.tombstones.set(id, Date.now());
    this.records.delete(id);
    const d = await this.kv.delete(META_KEYSPACE, enc.encode(TOKEN_PREFIX + id), {
      kind: "none",
    });
    if (!d.ok) {
      if (d.code === "NOT_FOUND")
        return { ok: false, code: "NO_SUCH_TOKEN", message: `no token ${id}` };
      return d;
    }
    return { ok: true };
  }

  /** Sets (or with `access` undefined, removes) a grant, and optionally the admin flag. */
  async grant(
    id: string,
    keyspace: string | undefined,
    access: KeyspaceAccess | undefined,
    admin?: boolean,
  ): Promise<{ ok: true; record: TokenRecord } | TokenError> {
    const key = enc.encode(TOKEN_PREFIX + id);
    for (let attempt = 0; attempt < 5; attempt++) {
      const cur = await this.kv.get(META_KEYSPACE, key, "linearizable");
      if (!cur.ok) return cur;
      if (!cur.item) return { ok: false, code: "NO_SUCH_TOKEN", message: `no token ${id}` };
      const old = parseRecord(cur.item.value);
      const grants = { ...old.grants };
      if (keyspace !== undefined) {
        if (access) grants[keyspace] = access;
        else delete grants[keyspace];
      }
      if (Object.keys(grants).length > TOKEN_GRANTS_MAX)
        return {
          ok: false,
          code: "CONFLICT",
          message: `a token carries at most ${TOKEN_GRANTS_MAX} grants`,
        };
      const next: TokenRecord = { ...old, grants, admin: admin ?? old.admin };
      const w = await this.kv.put(META_KEYSPACE, key, enc.encode(JSON.stringify(next)), {
        kind: "ifRevision",
        revision: cur.item.revision,
      });
      if (w.ok) {
        if (!this.tombstones.has(id)) this.records.set(id, next);
        return { ok: true, record: next };
      }
      if (w.code !== "PRECONDITION_FAILED") return w;
    }
    return { ok: false, code: "CONFLICT", message: "the token kept changing; retry" };
  }
}

/** Constant-time membership of `given` in `list`; the index found, or -1. */
function indexIn(list: readonly Buffer[], given: Buffer): number {
  let found = -1;
  for (const [i, want] of list.entries())
    if (want.byteLength === given.byteLength && timingSafeEqual(want, given)) found = i;
  return found;
}

function bearerOf(req: IncomingMessage): string | undefined {
  const h = req.headers.authorization;
  if (!h?.startsWith("Bearer ")) return undefined;
  return h.slice(7).trim();
}

const EVERYTHING: (ks: string) => KeyspaceAccess = () => "write";
const NOTHING: (ks: string) => undefined = () => undefined;

/** The node's authenticator: static tokens, bootstrap admin tokens, then token records. */
export class NodeAuthenticator implements Authenticator {
  private readonly staticTokens: readonly Buffer[];
  private readonly adminTokens: readonly Buffer[];
  /** Static tokens are admin too while no admin credential is configured (see the top). */
  private readonly staticIsAdmin: boolean;

  constructor(
    tokens: readonly string[],
    adminTokens: readonly string[],
    private readonly store: TokenStore | undefined,
  ) {
    this.staticTokens = tokens.map((t) => Buffer.from(t));
    this.adminTokens = adminTokens.map((t) => Buffer.from(t));
    this.staticIsAdmin = adminTokens.length === 0;
  }

  /** Whether any credential at all can be accepted (deny by default; the node warns if not). */
  get configured(): boolean {
    return this.staticTokens.length > 0 || this.adminTokens.length > 0;
  }

  private staticPrincipal(bearer: string): Principal | undefined {
    const given = Buffer.from(bearer);
    const s = indexIn(this.staticTokens, given);
    if (s >= 0) return { id: `static:${s}`, admin: this.staticIsAdmin, access: EVERYTHING };
    const a = indexIn(this.adminTokens, given);
    if (a >= 0) return { id: `admin:${a}`, admin: true, access: NOTHING };
    return undefined;
  }

  private recordPrincipal(rec: TokenRecord): Principal {
    return { id: rec.id, admin: rec.admin, access: (ks) => grantOf(rec.grants, ks) };
  }

  async authenticate(req: IncomingMessage): Promise<Principal | undefined> {
    const bearer = bearerOf(req);
    if (bearer === undefined) return undefined;
    const fixed = this.staticPrincipal(bearer);
    if (fixed) return fixed;
    const t = parseToken(bearer);
    if (!t || !this.store) return undefined;
    const rec = await this.store.find(t.id);
    if (!rec || !secretMatches(t.secret, rec.secretHash)) return undefined;
    return this.recordPrincipal(rec);
  }

  /**
   * The rate-limit tenant of a request, from memory only (the gateway admits before the door
   * authenticates): "t<i>" for static token i, "k<id>" for a cached token record whose secret
   * matches, undefined otherwise (the door then decides; a tenant is never unverified input).
   */
  tenantOf(req: IncomingMessage): string | undefined {
    const bearer = bearerOf(req);
    if (bearer === undefined) return undefined;
    const s = indexIn(this.staticTokens, Buffer.from(bearer));
    if (s >= 0) return `t${s}`;
    const t = parseToken(bearer);
    const rec = t && this.store?.cached(t.id);
    return t && rec && secretMatches(t.secret, rec.secretHash) ? `k${rec.id}` : undefined;
  }
}
