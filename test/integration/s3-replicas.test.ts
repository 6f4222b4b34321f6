/**
 * Per-bucket replication factor (N, `chunkReplicas`) on a real 3-node cluster whose ring keeps 3
 * copies: a bucket with N = 1 or 2 stores exactly N copies of each chunk (in the class's own
 * store, `chunks-r<N>/`), and anti-entropy, run every 2 s here, never copies them to more nodes;
 * the default bucket keeps 3. Objects read back through every node. The admin API refuses N
 * outside 1..3 and a write quorum W above N.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import {
  CreateBucketCommand,
  GetObjectCommand,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { runCli, type TestCluster, waitFor } from "./_cluster.js";
import { bytesOf, createBucketWhenReady, s3Client, sha256Hex, startS3Cluster } from "./_s3.js";

const ROOT = { accessKeyId: "GKROOTREPLICAS000001", secretAccessKey: "root-secret-replicas-01" };
const ARGS = ["--tick-ms", "20", "--election-ticks", "10", "--anti-entropy-interval", "2s"];
const MiB = 1024 * 1024;
let c: TestCluster;

before(async () => {
  c = await startS3Cluster(ROOT, ARGS);
});

after(async () => {
  await c?.stop();
});

const client = (id: string): S3Client => s3Client(c.node(id).s3, ROOT);

/** Chunk files (64 hex digits) under `dir`, quarantine excluded. */
async function chunkFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  let entries: import("node:fs").Dirent[];
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    if (e.isDirectory() && e.name !== "quarantine")
      out.push(...(await chunkFiles(join(dir, e.name))));
    else if (e.isFile() && /^[0-9a-f]{64}$/.test(e.name)) out.push(e.name);
  }
  return out;
}

/** How many nodes hold each chunk of the store `dirName`, over the three nodes. */
async function copies(dirName: string): Promise<Map<string, number>> {
  const m = new Map<string, number>();
  for (const id of c.ids())
    for (const h of await chunkFiles(join(c.node(id).data, dirName))) m.set(h, (m.get(h) ?? 0) + 1);
  return m;
}

async function setBucket(name: string, settings: unknown) {
  return c.req("n1", "PUT", `/v1/admin/buckets/${name}`, {
    body: JSON.stringify(settings),
    headers: { "content-type": "application/json" },
  });
}

test("a bucket keeps the number of chunk copies it asks for, through anti-entropy", async () => {
  await createBucketWhenReady(client("n1"), "one");
  await client("n1").send(new CreateBucketCommand({ Bucket: "two" }));
  await client("n1").send(new CreateBucketCommand({ Bucket: "three" }));

  // Bad settings: N outside 1..3, W above N (given together, or against the stored N).
  for (const bad of [{ chunkReplicas: 0 }, { chunkReplicas: 4 }, { chunkReplicas: 1.5 }]) {
    const r = await setBucket("one", bad);
    assert.equal(r.status, 400, `${JSON.stringify(bad)}: ${r.text}`);
  }
  assert.equal((await setBucket("one", { chunkReplicas: 1, chunkWriteQuorum: 2 })).status, 400);
  let r = await setBucket("one", { chunkReplicas: 1 });
  assert.equal(r.status, 200, r.text);
  assert.equal((JSON.parse(r.text) as { chunkReplicas?: number }).chunkReplicas, 1);
  const w2 = await setBucket("one", { chunkWriteQuorum: 2 });
  assert.equal(w2.status, 400, w2.text);
  assert.match(w2.text, /cannot exceed/);
  // Through the CLI this time: `kumo bucket set`, then `kumo bucket ls`.
  const auth = ["--endpoint", c.node("n2").api, "--token", c.token];
  const set = await runCli([
    ...["bucket", "set", "two", "--chunk-replicas", "2", "--chunk-write-quorum", "2"],
    ...auth,
  ]);
  assert.equal(set.code, 0, set.stdout + set.stderr);
  const ls = await runCli(["bucket", "ls", "--json", ...auth]);
  assert.equal(ls.code, 0, ls.stderr);
  const listed = (JSON.parse(ls.stdout) as { buckets: { name: string; chunkReplicas?: number }[] })
    .buckets;
  assert.equal(listed.find((b) => b.name === "two")?.chunkReplicas, 2, ls.stdout);
  assert.equal(listed.find((b) => b.name === "one")?.chunkReplicas, 1, ls.stdout);
  await new Promise((res) => setTimeout(res, 1_200)); // every node's bucket cache refreshes

  // 4 chunks per object (3 MiB + 5 bytes), through different nodes.
  const bodies = new Map<string, Buffer>();
  for (const [bucket, via] of [
    ["one", "n1"],
    ["two", "n2"],
    ["three", "n3"],
  ] as const) {
    const body = randomBytes(3 * MiB + 5);
    bodies.set(bucket, body);
    await client(via).send(new PutObjectCommand({ Bucket: bucket, Key: "obj", Body: body }));
  }

  const expect = async (what: string) => {
    const one = await copies("chunks-r1");
    const two = await copies("chunks-r2");
    const three = await copies("chunks");
    assert.equal(one.size, 4, `${what}: class 1 chunks ${JSON.stringify([...one])}`);
    assert.ok(
      [...one.values()].every((n) => n === 1),
      `${what}: class 1 copies ${[...one.values()]}`,
    );
    assert.equal(two.size, 4, `${what}: class 2 chunks`);
    assert.ok(
      [...two.values()].every((n) => n === 2),
      `${what}: class 2 copies ${[...two.values()]}`,
    );
    return three;
  };
  await expect("right after the uploads");
  // The default class reaches 3 copies (W = 2 answers before the third copy lands).
  await waitFor(
    async () => {
      const three = await copies("chunks");
      return [...three.values()].filter((n) => n === 3).length >= 4;
    },
    20_000,
    "3 copies of the default bucket's chunks",
  );
  // Several anti-entropy rounds later (every 2 s), the classes still hold N copies each.
  await new Promise((res) => setTimeout(res, 5_000));
  await expect("after anti-entropy");

  for (const [bucket, body] of bodies)
    for (const id of c.ids()) {
      const g = await client(id).send(new GetObjectCommand({ Bucket: bucket, Key: "obj" }));
      assert.equal(sha256Hex(await bytesOf(g.Body)), sha256Hex(body), `${bucket} via ${id}`);
    }

  // N back to the default: stored bodies keep their class, new ones get 3 copies.
  r = await setBucket("one", { chunkReplicas: null });
  assert.equal(r.status, 200, r.text);
  assert.equal((JSON.parse(r.text) as { chunkReplicas?: number }).chunkReplicas, undefined);
  const g = await client("n2").send(new GetObjectCommand({ Bucket: "one", Key: "obj" }));
  assert.equal(sha256Hex(await bytesOf(g.Body)), sha256Hex(bodies.get("one") as Buffer));
});
