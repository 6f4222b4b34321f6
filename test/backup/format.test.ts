/** The backup format: records, streaming image reads, the manifest's checks, offline verify. */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import {
  BACKUP_FORMAT,
  BACKUP_FORMAT_VERSION,
  CHUNK_LIST_FILE,
  chunkFile,
  chunkOfIndexKey,
  decodeRecords,
  encodeRecord,
  MANIFEST_FILE,
  type Manifest,
  parseManifest,
  readImage,
  shardFile,
  verifyBackup,
} from "../../src/backup/format.js";

const enc = new TextEncoder();
const sha = (b: Uint8Array | string) => createHash("sha256").update(b).digest("hex");
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

test("records round-trip, in a buffer and streamed from a file across read boundaries", async () => {
  const recs: [Uint8Array, Uint8Array][] = [];
  for (let i = 0; i < 3000; i++)
    recs.push([enc.encode(`key/${i}`), enc.encode("v".repeat(i % 700))]);
  // One value larger than the reader's 1 MiB buffer.
  recs.push([enc.encode("big"), new Uint8Array(3 << 20).fill(7)]);
  recs.push([enc.encode("empty"), new Uint8Array(0)]);
  const data = Buffer.concat(recs.map(([k, v]) => encodeRecord(k, v)));
  const decoded = decodeRecords(data);
  assert.ok(Array.isArray(decoded));
  assert.equal(decoded.length, recs.length);
  assert.deepEqual(Buffer.from(decoded[5]?.key ?? []), Buffer.from(recs[5]?.[0] ?? []));
  const dir = mkdtempSync(join(tmpdir(), "kumo-fmt-"));
  dirs.push(dir);
  writeFileSync(join(dir, "a.img"), data);
  let n = 0;
  for await (const r of readImage(join(dir, "a.img"))) {
    const [k, v] = recs[n] as [Uint8Array, Uint8Array];
    assert.deepEqual(r.key, k);
    assert.equal(r.value.byteLength, v.byteLength);
    assert.equal(r.bytes, 8 + k.byteLength + v.byteLength);
    n++;
  }
  assert.equal(n, recs.length);
  // A cut-off image is an error, not a shorter backup.
  writeFileSync(join(dir, "b.img"), data.subarray(0, data.byteLength - 3));
  await assert.rejects(async () => {
    for await (const _ of readImage(join(dir, "b.img"))) {
      // drain
    }
  }, /cut off/);
  assert.deepEqual(decodeRecords(data.subarray(0, 5)), { error: "a record header is cut off" });
});

test("chunk references are recognised in object-index keys", () => {
  const h = sha("x");
  assert.equal(chunkOfIndexKey(enc.encode(`r/${h}/0123abcd`)), h);
  assert.equal(chunkOfIndexKey(enc.encode(`h/${h}/0123abcd`)), undefined);
  assert.equal(chunkOfIndexKey(enc.encode(`r/${h.toUpperCase()}/x`)), undefined);
  assert.equal(chunkOfIndexKey(enc.encode("r/abc/x")), undefined);
});

/** A small, whole backup: one image and two chunks. */
function writeBackup(dir: string): Manifest {
  const img = Buffer.concat([encodeRecord(enc.encode("a"), enc.encode("1"))]);
  const file = shardFile("default", "default-0");
  mkdirSync(join(dir, "shards", "default"), { recursive: true });
  writeFileSync(join(dir, file), img);
  const chunks = ["chunk one", "chunk two"].map((c) => ({ hex: sha(c), data: c }));
  for (const c of chunks) {
    mkdirSync(join(dir, "chunks", c.hex.slice(0, 2)), { recursive: true });
    writeFileSync(chunkFile(dir, c.hex), c.data);
  }
  const list = chunks
    .map((c) => c.hex)
    .sort()
    .map((h) => `${h}\n`)
    .join("");
  writeFileSync(join(dir, CHUNK_LIST_FILE), list);
  const m: Manifest = {
    format: BACKUP_FORMAT,
    version: BACKUP_FORMAT_VERSION,
    cutMs: 1,
    cut: { id: "c1", coordinator: "n1", attempts: 1, pauseMs: 3 },
    cluster: { members: ["n1"] },
    keyspaces: [{ name: "default", sharding: "hash", replicas: 3, shards: 1 }],
    shards: [
      {
        id: "default-0",
        keyspace: "default",
        file,
        term: 2,
        index: 10,
        keys: 1,
        bytes: img.byteLength,
        sha256: sha(img),
      },
    ],
    chunks: { count: 2, bytes: 18, file: CHUNK_LIST_FILE, sha256: sha(list) },
  };
  writeFileSync(join(dir, MANIFEST_FILE), JSON.stringify(m));
  return m;
}

test("the manifest's checks name what is wrong", () => {
  const dir = mkdtempSync(join(tmpdir(), "kumo-fmt-"));
  dirs.push(dir);
  const m = writeBackup(dir);
  assert.ok(parseManifest(JSON.stringify(m)).ok);
  const bad = (x: unknown, re: RegExp) => {
    const r = parseManifest(JSON.stringify(x));
    assert.ok(!r.ok);
    assert.match(r.message, re);
  };
  bad({ ...m, version: 99 }, /format version 99/);
  bad({ ...m, format: "tar" }, /not a kumo-backup manifest/);
  bad({ ...m, shards: [m.shards[0], m.shards[0]] }, /listed twice/);
  bad({ ...m, shards: [{ ...m.shards[0], file: "../../etc/passwd" }] }, /unexpected file name/);
  bad({ ...m, shards: [{ ...m.shards[0], keyspace: "../x" }] }, /keyspace/);
  bad({ ...m, chunks: { ...m.chunks, sha256: "zz" } }, /chunks: sha256/);
  assert.match((parseManifest("{") as { message: string }).message, /not JSON/);
});

test("verify finds a corrupt image, a missing or corrupt chunk, a missing manifest", async () => {
  const dir = mkdtempSync(join(tmpdir(), "kumo-fmt-"));
  dirs.push(dir);
  const m = writeBackup(dir);
  const whole = await verifyBackup(dir);
  assert.deepEqual(whole.problems, []);
  assert.equal(whole.chunks, 2);
  assert.equal(whole.keys, 1);

  const s = m.shards[0] as Manifest["shards"][number];
  writeFileSync(join(dir, s.file), Buffer.from(encodeRecord(enc.encode("a"), enc.encode("2"))));
  const hexes = ["chunk one", "chunk two"].map((c) => sha(c));
  rmSync(chunkFile(dir, hexes[0] as string));
  writeFileSync(chunkFile(dir, hexes[1] as string), "tampered");
  const r = await verifyBackup(dir);
  assert.equal(r.problems.length, 3, r.problems.join("\n"));
  assert.match(r.problems[0] as string, /default-0.*corrupt/);
  assert.ok(r.problems.some((p) => p === `chunk ${hexes[0]} is missing`));
  assert.ok(r.problems.some((p) => p === `chunk ${hexes[1]} is corrupt`));
  // --quick: presence only.
  assert.equal((await verifyBackup(dir, { chunkHashes: false })).problems.length, 2);

  rmSync(join(dir, MANIFEST_FILE));
  const none = await verifyBackup(dir);
  assert.match(none.problems[0] as string, /incomplete/);
});
