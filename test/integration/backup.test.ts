/**
 * `kumo backup create|restore|verify` end to end: a 3-node cluster with KV keys in three
 * keyspaces and S3 objects (inline, multi-chunk, a versioned key, user metadata) is backed up
 * while a writer keeps writing (the cut must be consistent across shards), the cluster is
 * stopped, a fresh one is restored from the directory and every key and object is compared
 * byte for byte. A second backup into the same directory copies no chunk again; a corrupted
 * image or a missing chunk makes restore fail before it writes anything.
 */
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import {
  CreateBucketCommand,
  GetBucketVersioningCommand,
  GetObjectCommand,
  ListBucketsCommand,
  ListObjectsV2Command,
  ListObjectVersionsCommand,
  PutBucketVersioningCommand,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import type { CutResult } from "../../src/api/admin/backup.js";
import {
  chunkFile,
  chunkList,
  decodeRecords,
  readImage,
  readManifest,
} from "../../src/backup/format.js";
import { runCli, TestCluster } from "./_cluster.js";
import { bytesOf, s3Client, sha256Hex } from "./_s3.js";

const ARGS = ["--tick-ms", "20", "--election-ticks", "10"];
const ROOT = {
  accessKeyId: "GKROOTBACKUPTEST0001",
  secretAccessKey: "root-secret-for-backup-tests",
};
const ENV = { KUMO_S3_ROOT_KEY: `${ROOT.accessKeyId}:${ROOT.secretAccessKey}` };

const dirs: string[] = [];
const clusters: TestCluster[] = [];
const clients: S3Client[] = [];
after(async () => {
  for (const s of clients) s.destroy();
  await Promise.all(clusters.map((c) => c.stop()));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function startCluster(): Promise<{ c: TestCluster; s3: S3Client }> {
  const c = await TestCluster.start({ nodes: 3, args: ARGS, env: ENV, startTimeoutMs: 60_000 });
  clusters.push(c);
  const s3 = s3Client(c.node("n1").s3, ROOT, { maxAttempts: 3 });
  clients.push(s3);
  // The root key is stored by the metadata leader's first round.
  const until = Date.now() + 20_000;
  for (;;) {
    try {
      await s3.send(new ListBucketsCommand({}));
      return { c, s3 };
    } catch (e) {
      if (Date.now() > until) throw e;
      await new Promise((r) => setTimeout(r, 200));
    }
  }
}

async function pool<T>(items: readonly T[], n: number, fn: (x: T) => Promise<void>) {
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) await fn(items[next++] as T);
    }),
  );
}

async function kvPut(c: TestCluster, node: string, ks: string, key: string, value: string) {
  for (let attempt = 0; ; attempt++) {
    const r = await c.req(node, "PUT", `/v1/kv/${ks}/${key}`, { body: value });
    if (r.status === 200) return;
    if (attempt > 20) assert.fail(`PUT ${ks}/${key}: ${r.status} ${r.text}`);
    await new Promise((res) => setTimeout(res, 100));
  }
}

/** Every key and value (base64) of a keyspace. */
async function kvAll(c: TestCluster, ks: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  let after = "";
  for (;;) {
    const q = `limit=1000${after ? `&start_after=${encodeURIComponent(after)}` : ""}`;
    const r = await c.req("n2", "GET", `/v1/kv/${ks}?${q}`);
    assert.equal(r.status, 200, r.text);
    const j = JSON.parse(r.text) as {
      items: { key: string; value: string }[];
      next: string | null;
    };
    for (const i of j.items) out.set(i.key, i.value);
    if (!j.next) return out;
    after = j.next;
  }
}

const b64 = (s: string) => Buffer.from(s).toString("base64");

/** Every key of a keyspace in a backup's images, with its value as a number. */
async function imageValues(dir: string, keyspace: string): Promise<Map<string, number>> {
  const m = readManifest(dir);
  assert.ok(m.ok);
  const out = new Map<string, number>();
  for (const s of m.manifest.shards.filter((x) => x.keyspace === keyspace))
    for await (const rec of readImage(join(dir, s.file)))
      out.set(Buffer.from(rec.key).toString(), Number(Buffer.from(rec.value).toString()));
  return out;
}

test("backup while writing, restore into a fresh cluster, verify everything", {
  timeout: 170_000,
}, async () => {
  const t0 = Date.now();
  const { c, s3 } = await startCluster();
  console.log(`started in ${Date.now() - t0} ms`);
  const auth = ["--endpoint", c.node("n1").api, "--token", c.token];

  // ---- fill: KV keys in three keyspaces (hash with 4 shards, range, and default)
  await Promise.all(
    (
      [
        ["alpha", { sharding: "hash", shards: 4 }],
        ["beta", { sharding: "range" }],
      ] as const
    ).map(async ([name, spec]) => {
      const r = await c.req("n1", "PUT", `/v1/keyspaces/${name}`, {
        body: JSON.stringify(spec),
        headers: { "content-type": "application/json" },
        timeoutMs: 20_000,
      });
      assert.ok(r.status === 201 || r.status === 200, r.text);
    }),
  );
  console.log(`keyspaces at ${Date.now() - t0} ms`);
  const expected = new Map<string, Map<string, string>>([
    ["default", new Map()],
    ["alpha", new Map()],
    ["beta", new Map()],
  ]);
  const puts: [string, string, string][] = [];
  for (let i = 0; i < 80; i++) {
    puts.push(["default", `k${i}`, `default value ${i} ${"x".repeat(i)}`]);
    puts.push(["alpha", `user/${i}`, JSON.stringify({ id: i, name: `user ${i}` })]);
    if (i % 2 === 0) puts.push(["beta", `ts/${String(i).padStart(5, "0")}`, `event ${i}`]);
  }
  const kvFill = pool(puts, 16, async ([ks, k, v]) => {
    await kvPut(c, "n1", ks, k, v);
    expected.get(ks)?.set(k, b64(v));
  });

  // ---- fill: S3 objects
  const objects = new Map<
    string,
    { bucket: string; key: string; body: Buffer; meta?: Record<string, string> }
  >();
  await s3.send(new CreateBucketCommand({ Bucket: "photos" }));
  await s3.send(new CreateBucketCommand({ Bucket: "docs" }));
  await s3.send(
    new PutBucketVersioningCommand({
      Bucket: "docs",
      VersioningConfiguration: { Status: "Enabled" },
    }),
  );
  const bodies: [string, string, Buffer, Record<string, string>?][] = [];
  for (let i = 0; i < 8; i++)
    bodies.push(["photos", `small/${i}.txt`, Buffer.from(`small object ${i}`), { owner: `o${i}` }]);
  let seed = 1;
  const rand = (n: number) => {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      b[i] = seed >>> 16;
    }
    return b;
  };
  bodies.push(["photos", "big/a.bin", rand(2_200_000), { kind: "big" }]);
  bodies.push(["photos", "big/b.bin", rand(1_100_000)]);
  bodies.push(["docs", "other.txt", Buffer.from("another document")]);
  for (const [bucket, key, body, meta] of bodies) {
    await s3.send(
      new PutObjectCommand({
        Bucket: bucket,
        Key: key,
        Body: body,
        ...(meta ? { Metadata: meta } : {}),
      }),
    );
    objects.set(`${bucket}/${key}`, { bucket, key, body, ...(meta ? { meta } : {}) });
  }
  const v1 = Buffer.from("doc version one");
  const v2 = rand(1_100_000); // a chunked second version
  const put1 = await s3.send(new PutObjectCommand({ Bucket: "docs", Key: "doc", Body: v1 }));
  const put2 = await s3.send(
    new PutObjectCommand({ Bucket: "docs", Key: "doc", Body: v2, Metadata: { rev: "2" } }),
  );
  assert.ok(put1.VersionId && put2.VersionId && put1.VersionId !== put2.VersionId);
  await kvFill;
  console.log(`filled in ${Date.now() - t0} ms`);

  // ---- writers that keep writing: each writes its counter in alpha, then the same value in
  // beta (another keyspace, other shards, often another leader). In any consistent cut,
  // alpha's counter equals beta's or is one ahead; a cut whose shards were taken at different
  // moments shows beta ahead, or alpha two ahead, for some pair, once two or more of that
  // pair's writes fell between the images (a probabilistic check: MultiRaftHost's gate, which
  // makes the cut atomic, is tested deterministically in test/multiraft/gate.test.ts).
  const WRITERS = 8;
  const nodes = ["n1", "n2", "n3"];
  let writing = true;
  const acked = new Array<number>(WRITERS).fill(0);
  const writers = Promise.all(
    acked.map(async (_, i) => {
      for (let n = 1; writing; n++) {
        await kvPut(c, nodes[i % 3] as string, "alpha", `counter${i}`, String(n));
        await kvPut(c, nodes[(i + 1) % 3] as string, "beta", `counter${i}`, String(n));
        acked[i] = n;
      }
    }),
  );
  while (acked.some((n) => n < 3)) await new Promise((r) => setTimeout(r, 20));
  const checkCut = (
    what: string,
    alpha: Map<string, number>,
    beta: Map<string, number>,
    before: number[],
  ) => {
    for (let i = 0; i < WRITERS; i++) {
      const a = alpha.get(`counter${i}`) ?? 0;
      const b = beta.get(`counter${i}`) ?? 0;
      assert.ok(
        b >= (before[i] as number),
        `${what}: misses acknowledged writes (pair ${i}: beta ${b} < ${before[i]})`,
      );
      assert.ok(
        a === b || a === b + 1,
        `${what}: an inconsistent cut (pair ${i}: alpha ${a}, beta ${b})`,
      );
    }
  };

  const dir = mkdtempSync(join(tmpdir(), "kumo-backup-"));
  dirs.push(dir);
  const ackedBefore = [...acked];
  const first = await runCli(["backup", "create", "--to", dir, "--json", ...auth], 60_000);
  assert.equal(first.code, 0, first.stderr);
  const s1 = JSON.parse(first.stdout) as {
    keys: number;
    chunks: number;
    chunksCopied: number;
    chunksSkipped: number;
    pauseMs: number;
    gateMsMax: number;
    shards: number;
    seconds: number;
  };
  console.log(`first backup: ${JSON.stringify(s1)}`);
  assert.ok(s1.chunks >= 5, `chunks referenced: ${s1.chunks}`);
  assert.equal(s1.chunksCopied, s1.chunks);
  checkCut(
    "the backup",
    await imageValues(dir, "alpha"),
    await imageValues(dir, "beta"),
    ackedBefore,
  );
  // More cuts under the same load (the node endpoint the CLI uses), each checked the same way.
  const pauses: number[] = [];
  for (let k = 0; k < 5; k++) {
    const before = [...acked];
    const r = await c.req("n3", "POST", "/v1/admin/backup/cut", { timeoutMs: 30_000 });
    assert.equal(r.status, 200, r.text);
    const cut = JSON.parse(r.text) as CutResult;
    pauses.push(cut.pauseMs);
    const values = async (ks: string) => {
      const out = new Map<string, number>();
      for (const s of cut.shards.filter((x) => x.keyspace === ks)) {
        const img = await c.req(
          "n1",
          "GET",
          `/v1/admin/backup/cuts/${cut.id}/shards/${s.id}?node=${s.node}`,
        );
        assert.equal(img.status, 200);
        const recs = decodeRecords(img.body);
        assert.ok(Array.isArray(recs));
        for (const x of recs)
          out.set(Buffer.from(x.key).toString(), Number(Buffer.from(x.value).toString()));
      }
      return out;
    };
    checkCut(`cut ${k}`, await values("alpha"), await values("beta"), before);
    await c.req("n3", "DELETE", `/v1/admin/backup/cuts/${cut.id}`);
  }
  console.log(`pauses of the extra cuts (ms): ${pauses.join(", ")}`);
  writing = false;
  await writers;
  for (let i = 0; i < WRITERS; i++) {
    expected.get("alpha")?.set(`counter${i}`, b64(String(acked[i])));
    expected.get("beta")?.set(`counter${i}`, b64(String(acked[i])));
  }

  // ---- a second backup into the same directory copies no chunk again
  const second = await runCli(
    ["backup", "create", "--to", dir, "--json", "--quiet", ...auth],
    60_000,
  );
  assert.equal(second.code, 0, second.stderr);
  const s2 = JSON.parse(second.stdout) as typeof s1;
  assert.equal(s2.chunksCopied, 0);
  assert.equal(s2.chunksSkipped, s1.chunks);
  const verify = await runCli(["backup", "verify", dir]);
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  assert.match(verify.stdout, /is whole/);

  await c.stop();
  clusters.splice(clusters.indexOf(c), 1);

  // ---- a fresh cluster
  const fresh = await startCluster();

  const c2 = fresh.c;
  const auth2 = ["--endpoint", c2.node("n2").api, "--token", c2.token];

  // A corrupted image or a missing chunk: refused before anything is written.
  const bad1 = mkdtempSync(join(tmpdir(), "kumo-backup-bad-"));
  dirs.push(bad1);
  cpSync(dir, bad1, { recursive: true });
  const m = readManifest(bad1);
  assert.ok(m.ok);
  const victim = m.manifest.shards.find((s) => s.keyspace === "alpha" && s.keys > 0);
  assert.ok(victim);
  const img = readFileSync(join(bad1, victim.file));
  img[img.length - 1] = (img[img.length - 1] as number) ^ 0xff;
  writeFileSync(join(bad1, victim.file), img);
  const r1 = await runCli(["backup", "restore", "--from", bad1, ...auth2], 60_000);
  assert.notEqual(r1.code, 0);
  assert.match(r1.stderr, /corrupt/);
  const bad2 = mkdtempSync(join(tmpdir(), "kumo-backup-bad-"));
  dirs.push(bad2);
  cpSync(dir, bad2, { recursive: true });
  const gone = chunkList(bad2)[0] as string;
  rmSync(chunkFile(bad2, gone));
  const r2 = await runCli(["backup", "restore", "--from", bad2, ...auth2], 60_000);
  assert.notEqual(r2.code, 0);
  assert.match(r2.stderr, new RegExp(`chunk ${gone} is missing`));
  const tgt = await c2.req("n1", "GET", "/v1/admin/backup/target");
  assert.deepEqual(JSON.parse(tgt.text), { keyspaces: [], defaultKeys: 0, buckets: 0 });

  // ---- restore
  const restore = await runCli(["backup", "restore", "--from", dir, "--json", ...auth2], 90_000);
  assert.equal(restore.code, 0, restore.stderr);
  const rs = JSON.parse(restore.stdout) as {
    keys: number;
    objects: number;
    chunks: number;
    seconds: number;
  };
  console.log(`restore: ${JSON.stringify(rs)}`);
  assert.equal(rs.chunks, s1.chunks);

  // Every key of every keyspace, byte for byte, and nothing else.
  for (const [ks, want] of expected) {
    const got = await kvAll(c2, ks);
    assert.deepEqual(got, want, `keyspace ${ks}`);
  }
  // Every object, byte for byte (SHA-256), with its metadata.
  const s3b = s3Client(c2.node("n3").s3, ROOT, { maxAttempts: 3 });
  clients.push(s3b);
  for (const o of objects.values()) {
    const g = await s3b.send(new GetObjectCommand({ Bucket: o.bucket, Key: o.key }));
    assert.equal(sha256Hex(await bytesOf(g.Body)), sha256Hex(o.body), `${o.bucket}/${o.key}`);
    if (o.meta) assert.deepEqual(g.Metadata, o.meta);
  }
  // The versioned bucket: still versioned, both versions of "doc" readable by id.
  const vs = await s3b.send(new GetBucketVersioningCommand({ Bucket: "docs" }));
  assert.equal(vs.Status, "Enabled");
  const lv = await s3b.send(new ListObjectVersionsCommand({ Bucket: "docs", Prefix: "doc" }));
  const ids = (lv.Versions ?? []).filter((v) => v.Key === "doc").map((v) => v.VersionId);
  assert.deepEqual(ids.sort(), [put1.VersionId, put2.VersionId].sort());
  const g1 = await s3b.send(
    new GetObjectCommand({ Bucket: "docs", Key: "doc", VersionId: put1.VersionId }),
  );
  assert.equal(sha256Hex(await bytesOf(g1.Body)), sha256Hex(v1));
  const g2 = await s3b.send(new GetObjectCommand({ Bucket: "docs", Key: "doc" }));
  assert.equal(sha256Hex(await bytesOf(g2.Body)), sha256Hex(v2));
  assert.deepEqual(g2.Metadata, { rev: "2" });

  // A cluster that holds data is refused without --force.
  const again = await runCli(["backup", "restore", "--from", dir, ...auth2], 60_000);
  assert.notEqual(again.code, 0);
  assert.match(again.stderr, /not empty/);
  assert.ok(readdirSync(dir).includes("manifest.json"));
  console.log(`total ${Date.now() - t0} ms`);
});

test("backup to an S3 bucket (here another Kumo cluster's), verify it there, restore from it", {
  timeout: 150_000,
}, async () => {
  // The source cluster also serves the bucket the backup goes to: any S3 service works.
  const { c, s3 } = await startCluster();
  await s3.send(new CreateBucketCommand({ Bucket: "vault" }));
  await s3.send(new CreateBucketCommand({ Bucket: "media" }));
  const body = Buffer.alloc(2_500_000);
  for (let i = 0; i < body.length; i++) body[i] = (i * 7919) % 251;
  await s3.send(new PutObjectCommand({ Bucket: "media", Key: "clip.bin", Body: body }));
  const keys = new Map<string, string>();
  for (let i = 0; i < 40; i++) {
    await kvPut(c, "n1", "default", `s3backup${i}`, `value ${i}`);
    keys.set(`s3backup${i}`, b64(`value ${i}`));
  }
  const location = "s3://vault/nightly/";
  const s3Flags = ["--s3-endpoint", `http://${c.node("n2").s3}`];
  const env = { AWS_ACCESS_KEY_ID: ROOT.accessKeyId, AWS_SECRET_ACCESS_KEY: ROOT.secretAccessKey };
  const auth = ["--endpoint", c.node("n1").api, "--token", c.token];
  const first = await runCli(
    ["backup", "create", "--to", location, "--json", ...s3Flags, ...auth],
    60_000,
    env,
  );
  assert.equal(first.code, 0, `${first.stdout}\n${first.stderr}`);
  const s1 = JSON.parse(first.stdout) as { chunks: number; chunksCopied: number; dir: string };
  assert.ok(s1.chunks >= 3, JSON.stringify(s1));
  assert.equal(s1.chunksCopied, s1.chunks);
  assert.equal(s1.dir, location);
  // The backup is objects in the bucket, manifest included.
  const listed = await s3.send(new ListObjectsV2Command({ Bucket: "vault", Prefix: "nightly/" }));
  const names = (listed.Contents ?? []).map((o) => o.Key);
  assert.ok(names.includes("nightly/manifest.json"), JSON.stringify(names));
  assert.ok(names.includes("nightly/chunks.list"));
  // Incremental: a second backup to the same place copies none of the chunks it has. (It
  // copies the chunks of the first backup's own files, now objects of this very cluster.)
  const second = await runCli(
    ["backup", "create", "--to", location, "--json", "--quiet", ...s3Flags, ...auth],
    60_000,
    env,
  );
  assert.equal(second.code, 0, `${second.stdout}\n${second.stderr}`);
  const s2 = JSON.parse(second.stdout) as { chunks: number; chunksSkipped: number };
  assert.ok(s2.chunksSkipped >= s1.chunks, JSON.stringify(s2));
  const verify = await runCli(["backup", "verify", location, ...s3Flags], 60_000, env);
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  assert.match(verify.stdout, /is whole/);
  // Without credentials the service refuses, and the command says so.
  const denied = await runCli(["backup", "verify", location, ...s3Flags], 30_000, {
    AWS_ACCESS_KEY_ID: "GKNOSUCHKEY000000001",
    AWS_SECRET_ACCESS_KEY: "wrong",
  });
  assert.notEqual(denied.code, 0);
  assert.match(denied.stderr, /kumo: /);

  // A fresh cluster restored from the bucket.
  const fresh = await startCluster();
  const auth2 = ["--endpoint", fresh.c.node("n3").api, "--token", fresh.c.token];
  const restore = await runCli(
    ["backup", "restore", "--from", location, "--json", ...s3Flags, ...auth2],
    90_000,
    env,
  );
  assert.equal(restore.code, 0, `${restore.stdout}\n${restore.stderr}`);
  const got = await kvAll(fresh.c, "default");
  for (const [k, v] of keys) assert.equal(got.get(k), v, k);
  const g = await fresh.s3.send(new GetObjectCommand({ Bucket: "media", Key: "clip.bin" }));
  assert.equal(sha256Hex(await bytesOf(g.Body)), sha256Hex(body));
});
