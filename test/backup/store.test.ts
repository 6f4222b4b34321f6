/**
 * Backup stores: the directory store against the contract every store keeps (atomic whole-file
 * writes, sizes, streaming reads, removal of a file and of a tree), and the parsing of
 * `s3://bucket/prefix` locations. The S3 store passes the same operations against a real S3
 * service (a Kumo cluster) in test/integration/backup.test.ts.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { openBackupStore, S3Store } from "../../src/backup/s3-store.js";
import { type BackupStore, DirStore } from "../../src/backup/store.js";

const dir = mkdtempSync(join(tmpdir(), "kumo-store-"));
after(() => rmSync(dir, { recursive: true, force: true }));

async function collect(it: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of it) parts.push(Buffer.from(p));
  return Buffer.concat(parts);
}

async function contract(store: BackupStore): Promise<void> {
  assert.equal(await store.size("a/b/file"), undefined);
  await store.write("a/b/file", new TextEncoder().encode("hello"));
  assert.equal(await store.size("a/b/file"), 5);
  assert.equal((await store.readAll("a/b/file")).toString(), "hello");
  // A streamed body, replacing the file whole.
  const big = Buffer.alloc(3 << 20, 7);
  await store.write(
    "a/b/file",
    (async function* () {
      yield big.subarray(0, 1 << 20);
      yield big.subarray(1 << 20);
    })(),
  );
  assert.equal(await store.size("a/b/file"), big.length);
  assert.ok((await collect(store.read("a/b/file"))).equals(big));
  // A body whose stream fails leaves the previous file as it was.
  await assert.rejects(
    store.write(
      "a/b/file",
      (async function* () {
        yield Buffer.from("partial");
        throw new Error("the source broke");
      })(),
    ),
    /the source broke/,
  );
  assert.equal(await store.size("a/b/file"), big.length);
  assert.equal(await store.size("a/b/file.tmp"), undefined, "no temporary file left behind");
  await store.write("a/c", new Uint8Array([1]));
  await store.remove("a/c");
  assert.equal(await store.size("a/c"), undefined);
  await store.remove("a/never-there");
  await store.removeTree("a");
  assert.equal(await store.size("a/b/file"), undefined);
  store.close();
}

test("the directory store keeps the store contract", async () => {
  await contract(new DirStore(join(dir, "backup")));
  assert.deepEqual(
    readdirSync(join(dir, "backup")).filter((f) => f.endsWith(".tmp")),
    [],
    "no temporary file left behind",
  );
});

test("locations: s3://bucket/prefix picks the S3 store, anything else a directory", () => {
  const s = openBackupStore("s3://backups/prod/nightly", { endpoint: "http://127.0.0.1:1" });
  assert.ok(s instanceof S3Store);
  assert.equal(s.location, "s3://backups/prod/nightly/");
  s.close();
  const root = openBackupStore("s3://backups");
  assert.equal(root.location, "s3://backups/");
  root.close();
  assert.ok(openBackupStore(join(dir, "x")) instanceof DirStore);
  for (const bad of ["s3://", "s3://UPPER/x", "s3://a/x", "s3://-bad-/x"])
    assert.throws(() => openBackupStore(bad), /is not a bucket name/, bad);
});
