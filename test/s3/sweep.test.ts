/**
 * Bodies of uploads that never commit: the object index on a real 3-replica Raft group (one
 * process, memory engines), two "nodes" (two ObjectIndex instances over two KvServices) with
 * one clock the test moves. A writer that stops mid-upload (its node crashed) leaves chunk
 * references that only the sweeper removes, after the upload deadline; a committed body, a
 * body being written, and a body whose commit outcome is unknown are never touched; a writer
 * that outlasts the deadline cannot commit what the sweeper removed.
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
} from "../../src/api/s3/objects.js";
import { type KvCluster, mapOf, startKvCluster } from "../api/_kvcluster.js";

const enc = new TextEncoder();
const dec = new TextDecoder();
const DEADLINE_MS = 60_000;
let cluster: KvCluster;
let nowMs = 1_000_000;
const clock = () => nowMs;

/** The chunk layer in memory: the index only needs put and get (src/blob is tested apart). */
class MemoryChunks implements ChunkPort {
  readonly chunks = new Map<string, Uint8Array>();
  async put(data: Uint8Array) {
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

const chunks = new MemoryChunks();
let writer: ObjectIndex; // on n2: the node whose uploads crash
let sweeper: ObjectIndex; // on n1: the metadata leader
let kv: KvService;

before(async () => {
  cluster = await startKvCluster(mapOf(1, INDEX_KEYSPACE, "_s3.0"));
  await cluster.createEverywhere("_s3.0");
  kv = cluster.services[0] as KvService;
  sweeper = new ObjectIndex(kv, chunks, new ByteBudget(CHUNK_INFLIGHT_BYTES_MAX), clock);
  writer = new ObjectIndex(
    cluster.services[1] as KvService,
    chunks,
    new ByteBudget(CHUNK_INFLIGHT_BYTES_MAX),
    clock,
  );
});

after(async () => {
  await cluster?.stop();
});

/** Keys of the index under `prefix`. */
async function keys(prefix: string): Promise<string[]> {
  const r = await kv.list(
    INDEX_KEYSPACE,
    { prefix: enc.encode(prefix), startAfter: undefined, limit: 10_000 },
    "linearizable",
  );
  assert.ok(r.ok, JSON.stringify(r));
  return r.items.map((i) => dec.decode(i.key));
}

const refsOf = async (dataId: string) => (await keys("r/")).filter((k) => k.endsWith(`/${dataId}`));

/** A body that yields `bytes` and then waits for `release` (or forever). */
function stalled(bytes: Uint8Array, release: Promise<void> = new Promise(() => {})) {
  return (async function* () {
    yield bytes;
    await release;
  })();
}

/** An upload by `writer` that sends `bytes`, then waits for `release` to end its body. */
function heldUpload(bytes: number) {
  let release = () => {};
  const held = new Promise<void>((r) => {
    release = r;
  });
  return { upload: writer.writeBody(stalled(randomBytes(bytes), held), 1 << 30), release };
}

async function until(cond: () => Promise<boolean>, what: string): Promise<void> {
  const end = Date.now() + 5_000;
  while (!(await cond())) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function record(key: string, dataId: string, size: number): ObjectRecord {
  return {
    key,
    versionId: "null",
    size,
    etag: '"x"',
    lastModifiedMs: nowMs,
    headers: {},
    meta: {},
    parts: [{ id: dataId, size, pages: 1 }],
  };
}

test("an abandoned upload's references go after the deadline; committed and young bodies stay", async () => {
  // A committed object: its birth record is gone once the head entry is written.
  const body = randomBytes(CHUNK_BYTES * 2 + 100);
  const w = await writer.writeBody(
    (async function* () {
      yield body;
    })(),
    1 << 30,
  );
  assert.ok(w.ok && w.body.data, JSON.stringify(w));
  const committed = w.body.data.id;
  const c = await writer.commit("b1", record("kept", committed, body.length), undefined, () => {
    return undefined;
  });
  assert.ok(c.ok, JSON.stringify(c));
  // (The birth record goes in the background, once the head entry is written.)
  await until(async () => (await keys("n/")).length === 0, "the birth record to go");
  assert.equal(writer.bodiesInFlight(), 0);
  assert.equal((await refsOf(committed)).length, 3);

  // An upload whose node "crashes" after two chunks: they are stored and referenced; the third
  // never comes. (Nothing will ever resume it.)
  void writer.writeBody(stalled(randomBytes(CHUNK_BYTES * 2 + 10)), 1 << 30);
  await until(async () => (await keys("r/")).length >= 5, "the abandoned body's references");
  const births = await keys("n/");
  assert.equal(births.length, 1);
  const abandoned = (births[0] as string).slice(2);
  assert.equal((await refsOf(abandoned)).length, 2);

  // Before the deadline nothing is swept.
  nowMs += DEADLINE_MS - 1;
  let s = await sweeper.sweepOrphans(DEADLINE_MS);
  assert.ok(s.ok && s.swept === 0, JSON.stringify(s));
  assert.equal((await refsOf(abandoned)).length, 2);

  // An upload that starts now is young when the deadline of the first passes.
  const { upload: young, release } = heldUpload(CHUNK_BYTES + 10);
  await until(async () => (await keys("n/")).length === 2, "the young body's birth record");

  nowMs += 2;
  s = await sweeper.sweepOrphans(DEADLINE_MS);
  assert.ok(s.ok, JSON.stringify(s));
  assert.equal(s.swept, 1);
  assert.ok(s.refsScanned >= 5, JSON.stringify(s));
  assert.deepEqual(await refsOf(abandoned), []);
  assert.deepEqual(
    (await keys("d/")).filter((k) => k.startsWith(`d/${abandoned}/`)),
    [],
    "no page of the abandoned body",
  );
  assert.equal((await refsOf(committed)).length, 3, "the committed body keeps its references");
  assert.equal((await keys("n/")).length, 1, "the young body's birth record stays");
  // Idempotent: a second sweep finds nothing more.
  s = await sweeper.sweepOrphans(DEADLINE_MS);
  assert.ok(s.ok && s.swept === 0, JSON.stringify(s));

  // The young upload completes and commits normally.
  release();
  const y = await young;
  assert.ok(y.ok && y.body.data, JSON.stringify(y));
  const yc = await writer.commit(
    "b1",
    record("young", y.body.data.id, y.body.size),
    undefined,
    () => {
      return undefined;
    },
  );
  assert.ok(yc.ok, JSON.stringify(yc));
  await until(async () => (await keys("n/")).length === 0, "the birth record to go");
  assert.equal((await refsOf(y.body.data.id)).length, 2);
});

test("a writer that outlasts the deadline cannot commit the body the sweeper took", async () => {
  // (The first test's abandoned upload still hangs in this process: it counts as in flight.)
  const inFlight = writer.bodiesInFlight();
  const { upload: slow, release } = heldUpload(CHUNK_BYTES + 10);
  await until(async () => (await keys("n/")).length === 1, "the slow body's birth record");
  const id = ((await keys("n/"))[0] as string).slice(2);
  nowMs += DEADLINE_MS + 1;
  const s = await sweeper.sweepOrphans(DEADLINE_MS);
  assert.ok(s.ok && s.swept === 1, JSON.stringify(s));
  release();
  const w = await slow;
  // The body's last chunk may land after the sweep: its reference goes with the failed commit.
  assert.ok(w.ok && w.body.data, JSON.stringify(w));
  const c = await writer.commit("b1", record("late", id, w.body.size), undefined, () => {
    return undefined;
  });
  assert.ok(!c.ok && "code" in c && c.code === "EXPIRED", JSON.stringify(c));
  // What the server does on a failed commit: the body goes.
  await writer.removeBody(w.body.data);
  assert.deepEqual(await refsOf(id), []);
  const head = await writer.head("b1", "late");
  assert.ok(head.ok && head.record === undefined, "nothing was committed");
  assert.equal(writer.bodiesInFlight(), inFlight);
});

test("a body whose commit outcome is unknown keeps its references; only its record goes", async () => {
  const hash = "ab".repeat(32);
  const put = (k: string, v: string) =>
    kv.put(INDEX_KEYSPACE, enc.encode(k), enc.encode(v), { kind: "none" });
  assert.ok((await put("n/unknown1", JSON.stringify({ state: "committing", sinceMs: nowMs }))).ok);
  assert.ok((await put(`r/${hash}/unknown1`, "")).ok);
  nowMs += DEADLINE_MS;
  const s = await sweeper.sweepOrphans(DEADLINE_MS);
  assert.ok(s.ok, JSON.stringify(s));
  assert.equal(s.swept, 0);
  assert.equal(s.settled, 1);
  assert.deepEqual(await keys("n/"), []);
  assert.deepEqual(await refsOf("unknown1"), [`r/${hash}/unknown1`]);
});
