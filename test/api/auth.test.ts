/**
 * Credentials at rest: token hashing and parsing, S3 secret sealing, the token store and the
 * S3 key records over an in-memory stand-in of the metadata group (limits, plaintext records
 * written before sealing existed, revocation on the node that served it).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import type { IncomingMessage } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import {
  newSecretKeyText,
  newToken,
  parseToken,
  readSecretKeyFile,
  SecretBox,
  secretMatches,
} from "../../src/api/auth/secrets.js";
import {
  grantOf,
  type MetaKv,
  NodeAuthenticator,
  TOKENS_MAX,
  TokenStore,
} from "../../src/api/auth/tokens.js";
import { ACCESS_KEYS_MAX, type AccessKeyRecord, S3Meta } from "../../src/api/s3/meta.js";
import type { Condition } from "../../src/shard/index.js";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** The metadata group as an ordered map with revisions (what KvService offers, minus Raft). */
class FakeMeta implements MetaKv {
  readonly data = new Map<string, { value: Uint8Array; revision: number }>();
  private rev = 0;

  private check(k: string, cond: Condition) {
    const cur = this.data.get(k);
    if (cond.kind === "ifAbsent" && cur)
      return { ok: false as const, code: "PRECONDITION_FAILED" as const, message: "exists" };
    if (cond.kind === "ifRevision" && cur?.revision !== cond.revision)
      return { ok: false as const, code: "PRECONDITION_FAILED" as const, message: "changed" };
    return undefined;
  }

  async get(_ks: string, key: Uint8Array) {
    const v = this.data.get(dec.decode(key));
    return { ok: true as const, item: v && { key, ...v } };
  }

  async put(_ks: string, key: Uint8Array, value: Uint8Array, cond: Condition) {
    const k = dec.decode(key);
    const bad = this.check(k, cond);
    if (bad) return bad;
    this.data.set(k, { value, revision: ++this.rev });
    return { ok: true as const, revision: this.rev };
  }

  async delete(_ks: string, key: Uint8Array, cond: Condition) {
    const k = dec.decode(key);
    if (!this.data.has(k))
      return { ok: false as const, code: "NOT_FOUND" as const, message: "no such key" };
    const bad = this.check(k, cond);
    if (bad) return bad;
    this.data.delete(k);
    return { ok: true as const, revision: ++this.rev };
  }

  async list(
    _ks: string,
    req: { prefix: Uint8Array; startAfter: Uint8Array | undefined; limit: number },
  ) {
    const prefix = dec.decode(req.prefix);
    const after = req.startAfter && dec.decode(req.startAfter);
    const keys = [...this.data.keys()]
      .filter((k) => k.startsWith(prefix) && (after === undefined || k > after))
      .sort();
    const items = keys.slice(0, req.limit).map((k) => {
      const v = this.data.get(k) as { value: Uint8Array; revision: number };
      return { key: enc.encode(k), ...v };
    });
    return { ok: true as const, items, more: keys.length > req.limit };
  }

  /** Every stored byte, as text (what a disk would hold). */
  raw(): string {
    return [...this.data.entries()].map(([k, v]) => `${k}=${dec.decode(v.value)}`).join("\n");
  }
}

function bearer(token: string | undefined): IncomingMessage {
  return {
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  } as IncomingMessage;
}

describe("token and secret crypto", () => {
  test("a token parses back to its id, and only its own secret matches the stored hash", () => {
    const t = newToken();
    assert.match(t.token, /^kumo_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    const p = parseToken(t.token);
    assert.ok(p);
    assert.equal(p.id, t.id);
    assert.ok(secretMatches(p.secret, t.secretHash));
    assert.ok(!t.secretHash.includes(p.secret));
    const other = parseToken(newToken().token);
    assert.ok(other && !secretMatches(other.secret, t.secretHash));
    for (const bad of ["", "kumo_", "kumo_xyz_abc", `${t.token}x`, t.token.replace("kumo_", "")])
      assert.equal(parseToken(bad), undefined, bad);
  });

  test("a sealed secret opens only with its key and its record's id", () => {
    const box = new SecretBox(readKey());
    const sealed = box.seal("wJalrXUtnFEMI/K7MDENG", "GKAAA");
    assert.ok(!sealed.includes("wJalrXUtnFEMI"));
    assert.notEqual(box.seal("wJalrXUtnFEMI/K7MDENG", "GKAAA"), sealed, "a fresh IV each time");
    assert.equal(box.open(sealed, "GKAAA"), "wJalrXUtnFEMI/K7MDENG");
    assert.equal(box.open(sealed, "GKBBB"), undefined, "bound to the access key id");
    assert.equal(new SecretBox(readKey()).open(sealed, "GKAAA"), undefined, "another key");
    const tampered = `${sealed.slice(0, -4)}AAA=`;
    assert.equal(box.open(tampered, "GKAAA"), undefined);
    assert.throws(() => new SecretBox(new Uint8Array(16)), /32 bytes/);
  });

  test("the secret key file: hex or base64, anything else refused without echoing it", () => {
    const dir = mkdtempSync(join(tmpdir(), "kumo-key-"));
    try {
      const hex = join(dir, "hex");
      writeFileSync(hex, newSecretKeyText());
      assert.equal(readSecretKeyFile(hex).byteLength, 32);
      const b64 = join(dir, "b64");
      writeFileSync(b64, `${Buffer.alloc(32, 7).toString("base64")}\n`);
      assert.deepEqual(Buffer.from(readSecretKeyFile(b64)), Buffer.alloc(32, 7));
      const bad = join(dir, "bad");
      writeFileSync(bad, "not-a-key-hunter2");
      assert.throws(
        () => readSecretKeyFile(bad),
        (e: Error) => /64 hex digits/.test(e.message) && !e.message.includes("hunter2"),
      );
      assert.throws(() => readSecretKeyFile(join(dir, "missing")), /cannot read/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/**
 * The token with one character of its secret changed. (Not the last one: it carries only 4 of
 * the secret's bits, and 1 time in 16 it already is the character one would put there.)
 */
function tampered(token: string): string {
  const at = token.length - 10;
  return `${token.slice(0, at)}${token[at] === "A" ? "B" : "A"}${token.slice(at + 1)}`;
}

function readKey(): Uint8Array {
  return Buffer.from(newSecretKeyText().trim(), "hex");
}

describe("token store and authenticator", () => {
  test("grants: write implies read, '*' covers every keyspace", () => {
    assert.equal(grantOf({ a: "read" }, "a"), "read");
    assert.equal(grantOf({ a: "read" }, "b"), undefined);
    assert.equal(grantOf({ "*": "read", a: "write" }, "a"), "write");
    assert.equal(grantOf({ "*": "write", a: "read" }, "a"), "write");
    assert.equal(grantOf({ "*": "read" }, "z"), "read");
  });

  test("records store only a hash; the authenticator finds, checks and revokes them", async () => {
    const kv = new FakeMeta();
    const store = new TokenStore(kv);
    const auth = new NodeAuthenticator(["static-1"], ["boot-admin"], store);
    const made = await store.create("app", { orders: "read" }, false);
    assert.ok(made.ok);
    const secret = parseToken(made.token)?.secret as string;
    assert.ok(!kv.raw().includes(secret), "the secret is not stored");
    assert.ok(kv.raw().includes(made.record.secretHash));

    // Another node (an empty cache) finds it on first use.
    const other = new NodeAuthenticator([], [], new TokenStore(kv));
    const p = await other.authenticate(bearer(made.token));
    assert.equal(p?.id, made.record.id);
    assert.equal(p?.admin, false);
    assert.equal(p?.access("orders"), "read");
    assert.equal(p?.access("logs"), undefined);
    assert.equal(await other.authenticate(bearer(tampered(made.token))), undefined);
    assert.equal(await other.authenticate(bearer(undefined)), undefined);

    const s = await auth.authenticate(bearer("static-1"));
    assert.deepEqual([s?.admin, s?.access("anything")], [false, "write"]);
    const a = await auth.authenticate(bearer("boot-admin"));
    assert.deepEqual([a?.admin, a?.access("orders")], [true, undefined]);
    // Without --admin-tokens, static tokens are admin too (as before token records).
    const legacy = await new NodeAuthenticator(["static-1"], [], store).authenticate(
      bearer("static-1"),
    );
    assert.equal(legacy?.admin, true);
    assert.equal(new NodeAuthenticator([], [], store).configured, false);

    assert.equal(auth.tenantOf(bearer(made.token)), `k${made.record.id}`);
    assert.equal(auth.tenantOf(bearer(tampered(made.token))), undefined);

    // Revoked through this node: refused here at once, even by a refresh that raced it.
    const rm = await store.remove(made.record.id);
    assert.ok(rm.ok);
    assert.equal(await auth.authenticate(bearer(made.token)), undefined);
    await store.refresh();
    assert.equal(await auth.authenticate(bearer(made.token)), undefined);
    // Another node drops it on its next refresh.
    await other.authenticate(bearer(made.token)); // (cached there)
    const otherStore = new TokenStore(kv);
    assert.equal(
      await new NodeAuthenticator([], [], otherStore).authenticate(bearer(made.token)),
      undefined,
    );
  });

  test("grant changes apply; TOKENS_MAX is enforced with a clear error", async () => {
    const kv = new FakeMeta();
    const store = new TokenStore(kv);
    const made = await store.create("app", {}, false);
    assert.ok(made.ok);
    const g = await store.grant(made.record.id, "logs", "write", true);
    assert.ok(g.ok);
    assert.deepEqual(g.record.grants, { logs: "write" });
    assert.equal(g.record.admin, true);
    const none = await store.grant("0000000000000000", "logs", "read");
    assert.equal(none.ok ? "" : none.code, "NO_SUCH_TOKEN");
    for (let i = kv.data.size; i < TOKENS_MAX; i++)
      kv.data.set(`auth/token/f${String(i).padStart(15, "0")}`, {
        value: enc.encode(
          JSON.stringify({
            id: `f${i}`,
            name: "",
            secretHash: "",
            grants: {},
            admin: false,
            createdMs: 0,
          }),
        ),
        revision: 1,
      });
    const over = await store.create("one-too-many", {}, false);
    assert.equal(over.ok, false);
    assert.equal(over.ok ? "" : over.code, "TOO_MANY_TOKENS");
    assert.match(over.ok ? "" : over.message, /10000/);
  });
});

describe("S3 access key records", () => {
  const legacy: AccessKeyRecord = {
    accessKeyId: "GKLEGACYPLAINTEXT001",
    secretAccessKey: "legacy-plaintext-secret-0123456789",
    name: "old",
    createdMs: 1,
    grants: { "*": "owner" },
    createBuckets: true,
  };

  test("with a secret key, secrets are sealed at rest and open on every node", async () => {
    const kv = new FakeMeta();
    const key = readKey();
    const meta = new S3Meta(kv, new SecretBox(key));
    const k = await meta.createKey("app", { photos: "write" }, false);
    assert.ok(k.ok);
    assert.ok(!kv.raw().includes(k.record.secretAccessKey), "no plaintext secret stored");
    assert.ok(kv.raw().includes("secretSealed"));
    const other = new S3Meta(kv, new SecretBox(key));
    await other.refresh();
    assert.equal(other.secretOf(k.record.accessKeyId), k.record.secretAccessKey);
    const g = await other.grant(k.record.accessKeyId, "docs", "read");
    assert.ok(g.ok);
    assert.ok(!kv.raw().includes(k.record.secretAccessKey), "still sealed after a grant");
    // A node with another key (or none) cannot use it, and says so once.
    const told: string[] = [];
    const wrong = new S3Meta(kv, new SecretBox(readKey()), (id) => told.push(id));
    await wrong.refresh();
    await wrong.refresh();
    assert.equal(wrong.secretOf(k.record.accessKeyId), undefined);
    assert.deepEqual(told, [k.record.accessKeyId]);
  });

  test("plaintext records written before sealing still authenticate, and are re-sealed", async () => {
    const kv = new FakeMeta();
    await new S3Meta(kv).putKey(legacy);
    assert.ok(kv.raw().includes(legacy.secretAccessKey), "stored plaintext without a key");
    const meta = new S3Meta(kv, new SecretBox(readKey()));
    await meta.refresh();
    assert.equal(meta.secretOf(legacy.accessKeyId), legacy.secretAccessKey);
    assert.equal(await meta.sealPlaintextKeys(), 1);
    assert.ok(!kv.raw().includes(legacy.secretAccessKey));
    await meta.refresh();
    assert.equal(meta.secretOf(legacy.accessKeyId), legacy.secretAccessKey);
    assert.equal(await meta.sealPlaintextKeys(), 0);
  });

  test("ACCESS_KEYS_MAX is enforced at creation with a clear error", async () => {
    const kv = new FakeMeta();
    const meta = new S3Meta(kv);
    await meta.putKey(legacy);
    for (let i = 1; i < ACCESS_KEYS_MAX; i++)
      kv.data.set(`s3/key/GKFILL${String(i).padStart(14, "0")}`, {
        value: enc.encode("{}"),
        revision: 1,
      });
    const over = await meta.createKey("one-too-many", {}, false);
    assert.equal(over.ok, false);
    assert.equal(over.ok ? "" : over.code, "TooManyKeys");
    assert.match(over.ok ? "" : over.message, /10000/);
    // Storing an existing key again (the root key at every start) is not a new key.
    assert.ok((await meta.putKey(legacy)).ok);
  });
});
