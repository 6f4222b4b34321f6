/**
 * An upload whose node dies mid-body, on a real 3-node cluster with a short
 * `--s3-upload-deadline`: the chunks it stored stay referenced (never collected under a live
 * upload) until the deadline passes, and then the metadata leader sweeps the abandoned body
 * (`kumo_s3_abandoned_bodies_swept_total`). Committed objects are untouched, and an upload that
 * stays under the deadline commits normally.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { after, before, test } from "node:test";
import { GetObjectCommand, PutObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { http, type TestCluster, waitFor } from "./_cluster.js";
import { bytesOf, createBucketWhenReady, s3Client, sha256Hex, startS3Cluster } from "./_s3.js";

const ROOT = { accessKeyId: "GKROOTSWEEP000000001", secretAccessKey: "root-secret-sweep-0001" };
const ARGS = [
  ...["--tick-ms", "20", "--election-ticks", "10"],
  ...["--s3-upload-deadline", "3s", "--chunk-gc-grace", "2s"],
];
const MiB = 1024 * 1024;
let c: TestCluster;

before(async () => {
  c = await startS3Cluster(ROOT, ARGS);
});

after(async () => {
  await c?.stop();
});

const client = (id: string): S3Client => s3Client(c.node(id).s3, ROOT, { maxAttempts: 1 });

/** A counter summed over the live nodes. */
async function total(name: string): Promise<number> {
  let sum = 0;
  for (const n of c.alive()) {
    const text = (await http(c.url(n.id, "/metrics"))).text;
    const m = new RegExp(`^${name}\\{[^}]*\\} (\\d+)`, "m").exec(text);
    sum += m ? Number(m[1]) : 0;
  }
  return sum;
}
const swept = () => total("kumo_s3_abandoned_bodies_swept_total");
const collected = () => total("kumo_chunks_collected_total");

test("the body of an upload whose node was killed is swept after the deadline", async () => {
  await createBucketWhenReady(client("n1"), "sweep");
  const kept = randomBytes(3 * MiB + 5);
  await client("n1").send(new PutObjectCommand({ Bucket: "sweep", Key: "kept", Body: kept }));
  assert.equal(await swept(), 0);
  const collectedBefore = await collected();

  // Through n3: 3 MiB of a declared 10 MiB, then nothing; n3 dies with the upload open.
  const body = new Readable({ read() {} });
  body.push(randomBytes(3 * MiB));
  const stuck = client("n3")
    .send(
      new PutObjectCommand({ Bucket: "sweep", Key: "lost", Body: body, ContentLength: 10 * MiB }),
    )
    .then(
      () => "acknowledged",
      () => "failed",
    );
  // Time for the three chunks to reach their replicas and their references to be written.
  await new Promise((r) => setTimeout(r, 2_000));
  await c.kill("n3");
  assert.equal(await stuck, "failed");

  // After the deadline (3 s) and a sweep interval (3 s): swept by the metadata leader.
  await waitFor(async () => (await swept()) >= 1, 30_000, "the abandoned body to be swept");
  // Its three chunks, unreferenced now, are collected after their grace (2 s) on the live nodes.
  await waitFor(
    async () => (await collected()) - collectedBefore >= 3,
    30_000,
    "the abandoned chunks to be collected",
  );

  // Committed objects read back intact; new uploads commit as before.
  const got = await client("n2").send(new GetObjectCommand({ Bucket: "sweep", Key: "kept" }));
  assert.equal(sha256Hex(await bytesOf(got.Body)), sha256Hex(kept));
  const fresh = randomBytes(2 * MiB + 1);
  await client("n1").send(new PutObjectCommand({ Bucket: "sweep", Key: "fresh", Body: fresh }));
  const back = await client("n2").send(new GetObjectCommand({ Bucket: "sweep", Key: "fresh" }));
  assert.equal(sha256Hex(await bytesOf(back.Body)), sha256Hex(fresh));
});
