/**
 * S3 metadata: access keys and buckets, as records in the metadata group ("_meta"), next to
 * the keyspace and member records. Every node caches them (refreshed every second and on a
 * miss), because SigV4 needs a key's secret on every request and a bucket lookup precedes
 * every object operation.
 *
 *   s3/key/<accessKeyId>  → AccessKeyRecord (secret, grants per bucket)
 *   s3/bucket/<name>      → BucketRecord (its index id, owner, versioning, CORS, public-read)
 *
 * A bucket's objects are indexed under its *id* (random, fixed at creation), not its name: a
 * bucket deleted and created again under the same name starts empty even if a stale node
 * wrote an object into the old one after the deletion (such an orphan is never visible).
 *
 * Creating a bucket is one create-only write, so two clients racing to create one name
 * cannot both win; changing one (versioning, CORS) is a compare-and-set on its revision.
 *
 * SigV4 needs the secret itself, not a hash of it, so secrets are sealed (AES-256-GCM) under
 * the cluster secret key (--secret-key-file) when one is configured: the stored record then has
 * `secretSealed` and no `secretAccessKey`; in memory every record has its plaintext secret.
 * Records written without a key (or before keys existed) hold the plaintext and still load;
 * once a key is configured the metadata leader re-writes them sealed (`sealPlaintextKeys`).
 * Without a key they stay plaintext, and the node says so in a warning at start-up.
 */
import { randomBytes } from "node:crypto";
import type { SecretBox } from "../auth/secrets.js";
import type { KvError, KvService } from "../kv/service.js";

export type Access = "read" | "write" | "owner";

/** What each access level allows; higher levels include the lower ones. */
const RANK: Record<Access, number> = { read: 1, write: 2, owner: 3 };

export interface AccessKeyRecord {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly name: string;
  readonly createdMs: number;
  /** Bucket name (or "*" for every bucket) → access. */
  readonly grants: Readonly<Record<string, Access>>;
  /** May create buckets (it then owns them). */
  readonly createBuckets: boolean;
}

export interface CorsRuleRecord {
  readonly id?: string;
  readonly allowedOrigins: readonly string[];
  readonly allowedMethods: readonly string[];
  readonly allowedHeaders: readonly string[];
  readonly exposeHeaders: readonly string[];
  readonly maxAgeSeconds?: number;
}

export interface BucketRecord {
  readonly name: string;
  /** The bucket's index prefix: random, fixed at creation. */
  readonly id: string;
  readonly createdMs: number;
  /** The access key that created it (it has owner access). */
  readonly owner: string;
  /** Absent: never enabled. */
  readonly versioning?: "Enabled" | "Suspended";
  readonly cors?: readonly CorsRuleRecord[];
  /** Anonymous GET/HEAD of objects (and listing) allowed. */
  readonly publicRead?: boolean;
  /**
   * Chunk copies that must be durable before an upload to this bucket is acknowledged (W);
   * absent: the nodes' --chunk-write-quorum. Between 1 and the ring's replica count.
   */
  readonly chunkWriteQuorum?: number;
  /**
   * Chunk copies kept (N, the replication class, src/blob/classes.ts); absent: the ring's
   * replica count (--chunk-replicas). Between 1 and that count; applies to bodies written after
   * it is set (each body records its class).
   */
  readonly chunkReplicas?: number;
}

export const META_KEYSPACE = "_meta";
const KEY_PREFIX = "s3/key/";
const BUCKET_PREFIX = "s3/bucket/";
/** Records read per refresh; creating more keys or buckets than this is refused. */
export const ACCESS_KEYS_MAX = 10_000;
export const BUCKETS_MAX = 10_000;
/** Attempts of one metadata lookup (with 200, 400 ms between them). */
const LOOKUP_ATTEMPTS = 3;
/** A key or bucket not in the cache is looked up at most this often (a flood of bad keys). */
const MISS_CACHE_MS = 1_000;

const enc = new TextEncoder();
const dec = new TextDecoder();

export type MetaError =
  | KvError
  | {
      readonly ok: false;
      readonly code:
        | "BucketAlreadyExists"
        | "BucketAlreadyOwnedByYou"
        | "NoSuchBucket"
        | "BucketNotEmpty"
        | "NoSuchKey"
        | "TooManyBuckets"
        | "TooManyKeys"
        | "Conflict";
      readonly message: string;
    };

type Lookup =
  | { readonly kind: "found"; readonly value: Uint8Array }
  | { readonly kind: "absent" }
  | { readonly kind: "failed"; readonly error: KvError };

/** The metadata group could not be read (the S3 door answers 503 ServiceUnavailable). */
export class MetaUnavailable extends Error {
  override name = "MetaUnavailable";
}

function parse<T>(v: Uint8Array): T {
  return JSON.parse(dec.decode(v)) as T;
}

/** Access key ids look like AWS's: 20 upper-case characters, starting with "GK" (Garage's). */
export function newAccessKey(
  name: string,
  grants: Record<string, Access>,
  createBuckets: boolean,
  nowMs: number,
): AccessKeyRecord {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  const id = [...randomBytes(18)].map((b) => alphabet[b & 31]).join("");
  return {
    accessKeyId: `GK${id}`,
    secretAccessKey: randomBytes(30).toString("base64url").slice(0, 40),
    name,
    createdMs: nowMs,
    grants,
    createBuckets,
  };
}

/** An access key record as stored: the secret in plaintext (legacy, or no key) or sealed. */
interface StoredKeyRecord extends Omit<AccessKeyRecord, "secretAccessKey"> {
  readonly secretAccessKey?: string;
  readonly secretSealed?: string;
}

/** The narrow part of the KV service the metadata uses (a map in unit tests). */
export type MetaKv = Pick<KvService, "get" | "put" | "delete" | "list">;

export class S3Meta {
  private keys = new Map<string, AccessKeyRecord>();
  private buckets = new Map<string, BucketRecord>();
  private readonly misses = new Map<string, number>();
  private refreshing: Promise<void> | undefined;
  /** Ids of sealed records this node could not open (reported once each). */
  private readonly unopenable = new Set<string>();

  constructor(
    private readonly kv: MetaKv,
    /** The cluster secret key (absent: secrets are stored in plaintext). */
    private readonly box?: SecretBox,
    private readonly onUnopenable?: (accessKeyId: string) => void,
  ) {}

  /** A record as stored: sealed when this node has the cluster secret key. */
  private encodeKey(r: AccessKeyRecord): Uint8Array {
    if (!this.box) return enc.encode(JSON.stringify(r));
    const { secretAccessKey, ...rest } = r;
    const stored: StoredKeyRecord = {
      ...rest,
      secretSealed: this.box.seal(secretAccessKey, r.accessKeyId),
    };
    return enc.encode(JSON.stringify(stored));
  }

  /**
   * A stored record with its plaintext secret, or undefined when it is sealed and this node
   * cannot open it (no key, or another key): such a key cannot authenticate here.
   */
  private decodeKey(v: Uint8Array): AccessKeyRecord | undefined {
    const s = parse<StoredKeyRecord>(v);
    const { secretSealed, secretAccessKey, ...rest } = s;
    if (secretSealed === undefined) {
      if (secretAccessKey === undefined) return undefined;
      return { ...rest, secretAccessKey };
    }
    const plain = this.box?.open(secretSealed, s.accessKeyId);
    if (plain === undefined) {
      if (!this.unopenable.has(s.accessKeyId)) {
        this.unopenable.add(s.accessKeyId);
        this.onUnopenable?.(s.accessKeyId);
      }
      return undefined;
    }
    return { ...rest, secretAccessKey: plain };
  }

  /** Whether a stored record still holds its secret in plaintext. */
  private static isPlaintext(v: Uint8Array): boolean {
    return parse<StoredKeyRecord>(v).secretSealed === undefined;
  }

  /**
   * Re-writes the key records still holding plaintext secrets sealed (on the metadata leader,
   * once a secret key is configured). Each is a compare-and-set: a record changed meanwhile is
   * left for the next round. Returns how many were sealed.
   */
  async sealPlaintextKeys(): Promise<number> {
    if (!this.box) return 0;
    const r = await this.listRaw(KEY_PREFIX, ACCESS_KEYS_MAX);
    if (!r.ok) return 0;
    let sealed = 0;
    for (const { key, value, revision } of r.items) {
      if (!S3Meta.isPlaintext(value)) continue;
      const rec = this.decodeKey(value);
      if (!rec) continue;
      const w = await this.kv.put(META_KEYSPACE, key, this.encodeKey(rec), {
        kind: "ifRevision",
        revision,
      });
      if (w.ok) sealed++;
    }
    return sealed;
  }

  /** Re-reads every key and bucket record (every second, and after changes). */
  refresh(): Promise<void> {
    this.refreshing ??= this.doRefresh().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  private async doRefresh(): Promise<void> {
    const [k, b] = await Promise.all([
      this.listKeyRecords(),
      this.listRecords<BucketRecord>(BUCKET_PREFIX, BUCKETS_MAX),
    ]);
    if (k.ok) this.keys = new Map(k.records.map((r) => [r.record.accessKeyId, r.record]));
    if (b.ok) this.buckets = new Map(b.records.map((r) => [r.record.name, r.record]));
  }

  private async listRecords<T>(
    prefix: string,
    max: number,
  ): Promise<{ ok: true; records: { record: T; revision: number }[] } | KvError> {
    const r = await this.listRaw(prefix, max);
    if (!r.ok) return r;
    return {
      ok: true,
      records: r.items.map((i) => ({ record: parse<T>(i.value), revision: i.revision })),
    };
  }

  /** Every access key this node can use (sealed ones it cannot open are left out). */
  private async listKeyRecords(): Promise<
    { ok: true; records: { record: AccessKeyRecord; revision: number }[] } | KvError
  > {
    const r = await this.listRaw(KEY_PREFIX, ACCESS_KEYS_MAX);
    if (!r.ok) return r;
    return {
      ok: true,
      records: r.items.flatMap((i) => {
        const record = this.decodeKey(i.value);
        return record ? [{ record, revision: i.revision }] : [];
      }),
    };
  }

  private async listRaw(
    prefix: string,
    max: number,
  ): Promise<
    { ok: true; items: { key: Uint8Array; value: Uint8Array; revision: number }[] } | KvError
  > {
    const out: { key: Uint8Array; value: Uint8Array; revision: number }[] = [];
    let startAfter: Uint8Array | undefined;
    for (;;) {
      const r = await this.kv.list(
        META_KEYSPACE,
        { prefix: enc.encode(prefix), startAfter, limit: 1000 },
        "linearizable",
      );
      if (!r.ok) return r;
      out.push(...r.items);
      if (!r.more || out.length >= max || r.items.length === 0) return { ok: true, items: out };
      startAfter = r.items[r.items.length - 1]?.key;
    }
  }

  /** The secret of a cached access key (SigV4 verification is synchronous). */
  secretOf(accessKeyId: string): string | undefined {
    return this.keys.get(accessKeyId)?.secretAccessKey;
  }

  cachedKey(accessKeyId: string): AccessKeyRecord | undefined {
    return this.keys.get(accessKeyId);
  }

  /** Loads a key this node has not seen yet (created through another node a moment ago). */
  async loadKey(accessKeyId: string): Promise<AccessKeyRecord | undefined> {
    const cached = this.keys.get(accessKeyId);
    if (cached) return cached;
    const r = await this.lookup(`k/${accessKeyId}`, KEY_PREFIX + accessKeyId);
    if (r.kind === "failed") throw new MetaUnavailable(r.error.message);
    if (r.kind === "absent") return undefined;
    const rec = this.decodeKey(r.value);
    if (rec) this.keys.set(rec.accessKeyId, rec);
    return rec;
  }

  /** Reads in flight, shared by concurrent misses of one name. */
  private readonly inflight = new Map<string, Promise<Lookup>>();

  /**
   * Reads one record on a cache miss. Concurrent misses share the read; only a definite
   * "absent" is remembered (for MISS_CACHE_MS, so a flood of unknown names costs one read per
   * second each); a failed read is reported as such (the caller answers 503, never "no such").
   */
  private lookup(what: string, key: string, fresh = false): Promise<Lookup> {
    const absentAt = this.misses.get(what);
    if (!fresh && absentAt !== undefined && Date.now() - absentAt < MISS_CACHE_MS)
      return Promise.resolve({ kind: "absent" });
    // A fresh read must not join one that started before it was asked for.
    const running = fresh ? undefined : this.inflight.get(what);
    if (running) return running;
    const p = this.readRetrying(key)
      .then((r): Lookup => {
        if (!r.ok) return { kind: "failed", error: r };
        if (!r.item) {
          if (this.misses.size > 10_000) this.misses.clear();
          this.misses.set(what, Date.now());
          return { kind: "absent" };
        }
        this.misses.delete(what);
        return { kind: "found", value: r.item.value };
      })
      .finally(() => this.inflight.delete(what));
    this.inflight.set(what, p);
    return p;
  }

  /**
   * A linearizable read of one metadata record, tried a few times: a read has no side effect,
   * and a metadata leader change under load must not turn into a client-visible 503 (every
   * request sharing this lookup would get it).
   */
  private async readRetrying(key: string) {
    for (let attempt = 1; ; attempt++) {
      const r = await this.kv.get(META_KEYSPACE, enc.encode(key), "linearizable");
      if (r.ok || attempt >= LOOKUP_ATTEMPTS) return r;
      await new Promise((res) => setTimeout(res, 100 * 2 ** attempt));
    }
  }

  /**
   * A bucket by name: from the cache, or read when not cached (created through another node a
   * moment ago). `fresh` always reads (for decisions that must not act on a stale record, such
   * as deleting the bucket). Throws `MetaUnavailable` when the record cannot be read.
   */
  async bucket(name: string, fresh = false): Promise<BucketRecord | undefined> {
    const cached = this.buckets.get(name);
    if (cached && !fresh) return cached;
    const r = await this.lookup(`b/${name}`, BUCKET_PREFIX + name, fresh);
    if (r.kind === "failed") {
      if (cached) return cached;
      throw new MetaUnavailable(r.error.message);
    }
    if (r.kind === "absent") {
      this.buckets.delete(name);
      return undefined;
    }
    const rec = parse<BucketRecord>(r.value);
    this.buckets.set(name, rec);
    return rec;
  }

  async listBuckets(): Promise<{ ok: true; buckets: BucketRecord[] } | KvError> {
    const r = await this.listRecords<BucketRecord>(BUCKET_PREFIX, BUCKETS_MAX);
    if (!r.ok) return r;
    this.buckets = new Map(r.records.map((x) => [x.record.name, x.record]));
    return { ok: true, buckets: r.records.map((x) => x.record) };
  }

  /** Whether `accessKeyId` has at least `need` on `bucket`. */
  can(key: AccessKeyRecord | undefined, bucket: BucketRecord, need: Access): boolean {
    // Public-read covers every requester, signed or not (S3's AllUsers grant).
    if (need === "read" && bucket.publicRead === true) return true;
    if (!key) return false;
    if (bucket.owner === key.accessKeyId) return true;
    const g = key.grants[bucket.name] ?? key.grants["*"];
    return g !== undefined && RANK[g] >= RANK[need];
  }

  async createBucket(
    name: string,
    owner: AccessKeyRecord,
  ): Promise<{ ok: true; record: BucketRecord } | MetaError> {
    const existing = await this.bucket(name, true);
    if (existing) return this.alreadyExists(existing, owner);
    if (this.buckets.size >= BUCKETS_MAX)
      return { ok: false, code: "TooManyBuckets", message: `at most ${BUCKETS_MAX} buckets` };
    const record: BucketRecord = {
      name,
      id: randomBytes(8).toString("hex"),
      createdMs: Date.now(),
      owner: owner.accessKeyId,
    };
    const w = await this.kv.put(
      META_KEYSPACE,
      enc.encode(BUCKET_PREFIX + name),
      enc.encode(JSON.stringify(record)),
      { kind: "ifAbsent" },
    );
    if (!w.ok) {
      if (w.code !== "PRECONDITION_FAILED") return w;
      const theirs = await this.bucket(name, true);
      return theirs
        ? this.alreadyExists(theirs, owner)
        : { ok: false, code: "Conflict", message: "the bucket changed concurrently; retry" };
    }
    this.buckets.set(name, record);
    return { ok: true, record };
  }

  private alreadyExists(existing: BucketRecord, who: AccessKeyRecord): MetaError {
    return existing.owner === who.accessKeyId
      ? {
          ok: false,
          code: "BucketAlreadyOwnedByYou",
          message:
            "Your previous request to create the named bucket succeeded and you already own it.",
        }
      : {
          ok: false,
          code: "BucketAlreadyExists",
          message: "The requested bucket name is not available.",
        };
  }

  /** Changes a bucket record with a compare-and-set (retried on concurrent changes). */
  async updateBucket(
    name: string,
    change: (r: BucketRecord) => BucketRecord,
  ): Promise<{ ok: true; record: BucketRecord } | MetaError> {
    const key = enc.encode(BUCKET_PREFIX + name);
    for (let attempt = 0; attempt < 5; attempt++) {
      const cur = await this.kv.get(META_KEYSPACE, key, "linearizable");
      if (!cur.ok) return cur;
      if (!cur.item) return noSuchBucket(name);
      const next = change(parse<BucketRecord>(cur.item.value));
      const w = await this.kv.put(META_KEYSPACE, key, enc.encode(JSON.stringify(next)), {
        kind: "ifRevision",
        revision: cur.item.revision,
      });
      if (w.ok) {
        this.buckets.set(name, next);
        return { ok: true, record: next };
      }
      if (w.code !== "PRECONDITION_FAILED") return w;
    }
    return { ok: false, code: "Conflict", message: "the bucket kept changing; retry" };
  }

  /** Deletes the bucket record if `isEmpty` says its index is empty (checked after reading it). */
  async deleteBucket(
    name: string,
    isEmpty: (b: BucketRecord) => Promise<boolean | KvError>,
  ): Promise<{ ok: true } | MetaError> {
    const key = enc.encode(BUCKET_PREFIX + name);
    const cur = await this.kv.get(META_KEYSPACE, key, "linearizable");
    if (!cur.ok) return cur;
    if (!cur.item) return noSuchBucket(name);
    const empty = await isEmpty(parse<BucketRecord>(cur.item.value));
    if (typeof empty !== "boolean") return empty;
    if (!empty)
      return {
        ok: false,
        code: "BucketNotEmpty",
        message: "The bucket you tried to delete is not empty.",
      };
    const d = await this.kv.delete(META_KEYSPACE, key, {
      kind: "ifRevision",
      revision: cur.item.revision,
    });
    if (!d.ok && d.code !== "NOT_FOUND") return d;
    this.buckets.delete(name);
    return { ok: true };
  }

  // ------------------------------------------------------------------ access keys (admin)

  async createKey(
    name: string,
    grants: Record<string, Access>,
    createBuckets: boolean,
  ): Promise<{ ok: true; record: AccessKeyRecord } | MetaError> {
    const record = newAccessKey(name, grants, createBuckets, Date.now());
    return this.putKey(record);
  }

  /** TooManyKeys once the cluster holds ACCESS_KEYS_MAX keys (counted fresh: creating is rare). */
  private async roomForKey(): Promise<{ ok: true } | MetaError> {
    const r = await this.listRaw(KEY_PREFIX, ACCESS_KEYS_MAX);
    if (!r.ok) return r;
    if (r.items.length < ACCESS_KEYS_MAX) return { ok: true };
    return {
      ok: false,
      code: "TooManyKeys",
      message: `the cluster holds ${r.items.length} access keys, the most allowed (${ACCESS_KEYS_MAX}); delete unused ones first`,
    };
  }

  /** Stores a key with a given id and secret (the dev cluster's well-known key; imports). */
  async putKey(
    record: AccessKeyRecord,
  ): Promise<{ ok: true; record: AccessKeyRecord } | MetaError> {
    const room = await this.roomForKey();
    if (!room.ok) {
      // The root key, stored again on every start, is not a new key.
      const have = await this.loadKey(record.accessKeyId).catch(() => undefined);
      if (have && have.secretAccessKey === record.secretAccessKey)
        return { ok: true, record: have };
      return room;
    }
    const w = await this.kv.put(
      META_KEYSPACE,
      enc.encode(KEY_PREFIX + record.accessKeyId),
      this.encodeKey(record),
      { kind: "ifAbsent" },
    );
    if (!w.ok) {
      if (w.code === "PRECONDITION_FAILED") {
        const have = await this.loadKey(record.accessKeyId);
        if (have && have.secretAccessKey === record.secretAccessKey)
          return { ok: true, record: have };
        return { ok: false, code: "Conflict", message: "an access key with this id exists" };
      }
      return w;
    }
    this.keys.set(record.accessKeyId, record);
    return { ok: true, record };
  }

  async listKeys(): Promise<{ ok: true; keys: AccessKeyRecord[] } | KvError> {
    const r = await this.listKeyRecords();
    return r.ok ? { ok: true, keys: r.records.map((x) => x.record) } : r;
  }

  async deleteKey(accessKeyId: string): Promise<{ ok: true } | MetaError> {
    const d = await this.kv.delete(META_KEYSPACE, enc.encode(KEY_PREFIX + accessKeyId), {
      kind: "none",
    });
    if (!d.ok) {
      if (d.code === "NOT_FOUND")
        return { ok: false, code: "NoSuchKey", message: `no access key ${accessKeyId}` };
      return d;
    }
    this.keys.delete(accessKeyId);
    return { ok: true };
  }

  /** Grants (or with `access` undefined, revokes) access to a bucket ("*": every bucket). */
  async grant(
    accessKeyId: string,
    bucket: string,
    access: Access | undefined,
    createBuckets?: boolean,
  ): Promise<{ ok: true; record: AccessKeyRecord } | MetaError> {
    const key = enc.encode(KEY_PREFIX + accessKeyId);
    for (let attempt = 0; attempt < 5; attempt++) {
      const cur = await this.kv.get(META_KEYSPACE, key, "linearizable");
      if (!cur.ok) return cur;
      if (!cur.item)
        return { ok: false, code: "NoSuchKey", message: `no access key ${accessKeyId}` };
      const old = this.decodeKey(cur.item.value);
      if (!old)
        return {
          ok: false,
          code: "Conflict",
          message: `the secret of ${accessKeyId} is sealed under another cluster secret key`,
        };
      const grants = { ...old.grants };
      if (bucket !== "") {
        if (access) grants[bucket] = access;
        else delete grants[bucket];
      }
      const next: AccessKeyRecord = {
        ...old,
        grants,
        createBuckets: createBuckets ?? old.createBuckets,
      };
      const w = await this.kv.put(META_KEYSPACE, key, this.encodeKey(next), {
        kind: "ifRevision",
        revision: cur.item.revision,
      });
      if (w.ok) {
        this.keys.set(accessKeyId, next);
        return { ok: true, record: next };
      }
      if (w.code !== "PRECONDITION_FAILED") return w;
    }
    return { ok: false, code: "Conflict", message: "the key kept changing; retry" };
  }
}

function noSuchBucket(name: string): MetaError {
  return {
    ok: false,
    code: "NoSuchBucket",
    message: `The specified bucket does not exist: ${name}`,
  };
}
