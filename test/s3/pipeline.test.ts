/**
 * An upload's chunks are written PUT_INFLIGHT_CHUNKS at a time, never more and (with enough of
 * body) not fewer: the body keeps streaming in while earlier chunks are still being replicated.
 * A regression test: writeBody once awaited each chunk's write before cutting the next one, so
 * a 64 MiB upload took 64 chunk round trips in a row (docs/benchmarks.md, S3).
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, before, test } from "node:test";
import type { KvService } from "../../src/api/kv/service.js";
import {
  ByteBudget,
  CHUNK_BYTES,
  CHUNK_INFLIGHT_BYTES_MAX,
  type ChunkPort,
  INDEX_KEYSPACE,
  ObjectIndex,
  type ObjectRecord,
  PUT_INFLIGHT_CHUNKS,
} from "../../src/api/s3/objects.js";
import { type KvCluster, mapOf, startKvCluster } from "../api/_kvcluster.js";

/** Chunks in memory; every put takes `delayMs`, and the most puts ever in flight is kept. */
class SlowChunks implements ChunkPort {
  readonly chunks = new Map<string, Uint8Array>();
  inflight = 0;
  inflightMax = 0;
  puts = 0;
  constructor(private readonly delayMs: number) {}
  async put(data: Uint8Array) {
    this.puts++;
    this.inflight++;
    this.inflightMax = Math.max(this.inflightMax, this.inflight);
    await new Promise((r) => setTimeout(r, this.delayMs));
    this.inflight--;
    const hash = createHash("sha256").update(data).digest();
    this.chunks.set(hash.toString("hex"), data.slice());
    return { ok: true as const, hash };
  }
  async get(hash: Uint8Array) {
    const d = this.chunks.get(Buffer.from(hash).toString("hex"));
    return d
      ? { ok: true as const, data: d }
      : { ok: false as const, code: "NOT_FOUND", message: "no such chunk" };
  }
}

let cluster: KvCluster;

before(async () => {
  cluster = await startKvCluster(mapOf(1, INDEX_KEYSPACE, "_s3.0"));
  await cluster.createEverywhere("_s3.0");
});

after(async () => {
  await cluster?.stop();
});

/** A body delivered in 64 KiB pieces, as an HTTP request's is. */
async function* pieces(body: Buffer): AsyncGenerator<Uint8Array> {
  for (let at = 0; at < body.byteLength; at += 65_536) yield body.subarray(at, at + 65_536);
}

test("an upload keeps PUT_INFLIGHT_CHUNKS chunk writes in flight, and its body reads back whole", async () => {
  assert.ok(PUT_INFLIGHT_CHUNKS > 1);
  const chunks = new SlowChunks(40);
  const index = new ObjectIndex(
    cluster.services[0] as KvService,
    chunks,
    new ByteBudget(CHUNK_INFLIGHT_BYTES_MAX),
  );
  const count = 3 * PUT_INFLIGHT_CHUNKS + 1;
  const body = randomBytes(count * CHUNK_BYTES - 123);
  const w = await index.writeBody(pieces(body), 1 << 30);
  assert.ok(w.ok && w.body.data, JSON.stringify(w));
  assert.equal(chunks.puts, count);
  assert.equal(chunks.inflightMax, PUT_INFLIGHT_CHUNKS, "chunk writes in flight at most");

  const rec: ObjectRecord = {
    key: "k",
    versionId: "null",
    size: body.byteLength,
    etag: '"x"',
    lastModifiedMs: 0,
    headers: {},
    meta: {},
    parts: [w.body.data],
  };
  const read: Uint8Array[] = [];
  for await (const c of index.readBody(rec, 0, body.byteLength)) read.push(c);
  assert.ok(Buffer.concat(read).equals(body), "the body reads back byte for byte, in order");
});

test("the node-wide byte budget bounds the chunk writes of all uploads together", async () => {
  const chunks = new SlowChunks(20);
  const budgetChunks = 3;
  const index = new ObjectIndex(
    cluster.services[1] as KvService,
    chunks,
    new ByteBudget(budgetChunks * CHUNK_BYTES),
  );
  const uploads = await Promise.all(
    [1, 2, 3].map(() => index.writeBody(pieces(randomBytes(6 * CHUNK_BYTES)), 1 << 30)),
  );
  for (const u of uploads) assert.ok(u.ok, JSON.stringify(u));
  assert.equal(chunks.puts, 18);
  assert.equal(chunks.inflightMax, budgetChunks);
});
