/**
 * The KV service end to end on a real 3-node cluster: linearizable reads on every node,
 * revisions and ETags, HEAD, keys with `/` and UTF-8, conditional writes and deletes, listings
 * and stale reads (docs/kv-api.md).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { errorBody, MAIN, spawnTracked, TestCluster, waitFor } from "./_cluster.js";

const ARGS = ["--tick-ms", "20", "--election-ticks", "10"];
const KV = "/v1/kv/default/";

let c: TestCluster;
const tag = randomBytes(4).toString("hex");

interface ListPage {
  items: { key: string; revision: number; value?: string }[];
  next: string | null;
}

before(async () => {
  c = await TestCluster.start({ nodes: 3, args: ARGS });
});

after(async () => {
  await c?.stop();
});

/** PUT that must succeed; returns the revision (and checks the ETag against it). */
async function put(
  node: string,
  path: string,
  value: string | Uint8Array,
  headers: Record<string, string> = {},
): Promise<number> {
  const r = await c.req(node, "PUT", KV + path, { body: value, headers });
  assert.equal(r.status, 200, `PUT ${path} via ${node}: ${r.status} ${r.text} ${r.error ?? ""}`);
  const j = JSON.parse(r.text) as { revision: number };
  assert.ok(Number.isSafeInteger(j.revision) && j.revision > 0, `revision ${r.text}`);
  assert.equal(r.headers.get("etag"), `"${j.revision}"`);
  return j.revision;
}

/** GET that must find the key: checks body, ETag and X-Kumo-Revision. */
async function expectValue(
  node: string,
  path: string,
  value: string | Uint8Array,
  revision: number,
  query = "",
): Promise<void> {
  const r = await c.req(node, "GET", KV + path + query);
  assert.equal(
    r.status,
    200,
    `GET ${path}${query} via ${node}: ${r.status} ${r.text} ${r.error ?? ""}`,
  );
  assert.deepEqual(r.body, Buffer.from(value), `value of ${path} via ${node}`);
  assert.equal(r.headers.get("etag"), `"${revision}"`, `ETag of ${path} via ${node}`);
  assert.equal(r.headers.get("x-kumo-revision"), String(revision));
  assert.equal(r.headers.get("content-type"), "application/octet-stream");
}

async function expect404(node: string, path: string, query = ""): Promise<void> {
  const r = await c.req(node, "GET", KV + path + query);
  assert.equal(r.status, 404, `GET ${path}${query} via ${node}: ${r.status} ${r.text}`);
  assert.equal(errorBody(r.text)?.code, "NOT_FOUND");
}

describe("kv", () => {
  test("a write through any node is seen at once by linearizable reads on every node; revisions grow", async () => {
    const nodes = c.ids();
    // One key written 3 times through each node in turn, and read right after on the others.
    const key = `lin-${tag}/counter`;
    let lastRev = 0;
    for (let round = 0; round < 9; round++) {
      const writer = nodes[round % nodes.length] as string;
      const value = `v${round}-via-${writer}-${randomBytes(6).toString("hex")}`;
      const rev = await put(writer, key, value);
      assert.ok(rev > lastRev, `revision ${rev} after ${lastRev}`);
      lastRev = rev;
      for (const reader of nodes) await expectValue(reader, key, value, rev);
    }
    // Many keys (so every shard is involved), each written on one node and read on the others.
    for (let i = 0; i < 24; i++) {
      const writer = nodes[i % nodes.length] as string;
      const key2 = `lin-${tag}/k${i}`;
      const value = `value-${i}-${randomBytes(4).toString("hex")}`;
      const rev = await put(writer, key2, value);
      for (const reader of nodes)
        if (reader !== writer) await expectValue(reader, key2, value, rev);
    }
  });

  test("concurrent writers and readers on every node: no read misses a write acknowledged before it started", async () => {
    const key = `conc-${tag}/k`;
    const writes: { ackAt: number; revision: number; value: string }[] = [];
    const reads: { node: string; startAt: number; revision: number; value: string }[] = [];
    const failures: string[] = [];
    const until = performance.now() + 3000;
    const writer = async (node: string) => {
      for (let i = 0; i < 500 && performance.now() < until; i++) {
        const value = `${node}-${i}`;
        const r = await c.req(node, "PUT", KV + key, { body: value });
        if (r.status !== 200) failures.push(`PUT via ${node}: ${r.status} ${r.text}`);
        else
          writes.push({
            ackAt: performance.now(),
            revision: (JSON.parse(r.text) as { revision: number }).revision,
            value,
          });
      }
    };
    const reader = async (node: string) => {
      for (let i = 0; i < 1000 && performance.now() < until; i++) {
        const startAt = performance.now();
        const r = await c.req(node, "GET", KV + key);
        if (r.status === 200)
          reads.push({
            node,
            startAt,
            revision: Number(r.headers.get("x-kumo-revision")),
            value: r.text,
          });
        else if (r.status !== 404) failures.push(`GET via ${node}: ${r.status} ${r.text}`);
      }
    };
    await Promise.all([...c.ids().map(writer), ...c.ids().map(reader), ...c.ids().map(reader)]);
    assert.deepEqual(failures, []);
    assert.ok(
      writes.length >= 30 && reads.length >= 30,
      `${writes.length} writes, ${reads.length} reads`,
    );
    const valueAt = new Map(writes.map((w) => [w.revision, w.value]));
    assert.equal(valueAt.size, writes.length, "every acknowledged write has its own revision");
    const stale: string[] = [];
    for (const rd of reads) {
      const must = Math.max(
        0,
        ...writes.filter((w) => w.ackAt < rd.startAt).map((w) => w.revision),
      );
      if (rd.revision < must)
        stale.push(`${rd.node} read revision ${rd.revision} after ${must} was acknowledged`);
      const v = valueAt.get(rd.revision);
      if (v !== undefined && v !== rd.value)
        stale.push(`${rd.node} read ${rd.value} at revision ${rd.revision} (written: ${v})`);
    }
    assert.deepEqual(stale.slice(0, 10), []);
    console.log(
      `# kv: ${writes.length} concurrent writes and ${reads.length} linearizable reads checked`,
    );
  });

  // The default --key-bytes-max (1 KiB) must be storable: a key the API accepts but storage
  // cannot hold would stop every replica each time it replays the entry.
  test("a 1 KiB key (the default limit) is written, read and listed; the nodes stay up", async () => {
    const key = "k".repeat(1024);
    const w = await c.put("n1", key, "long");
    assert.equal(w.status, 200);
    for (const n of c.nodes) {
      const r = await c.get(n.id, key);
      assert.equal(r.status, 200);
      assert.equal(await r.text(), "long");
    }
    assert.equal(c.alive().length, 3);
  });

  test("HEAD answers the headers of GET without a body; 404 for a missing key", async () => {
    const key = `head-${tag}/x`;
    const rev = await put("n2", key, "twelve bytes");
    for (const n of c.ids()) {
      const r = await c.req(n, "HEAD", KV + key);
      assert.equal(r.status, 200);
      assert.equal(r.headers.get("etag"), `"${rev}"`);
      assert.equal(r.headers.get("x-kumo-revision"), String(rev));
      assert.equal(r.headers.get("content-length"), "12");
      assert.equal(r.body.byteLength, 0);
      const missing = await c.req(n, "HEAD", `${KV}head-${tag}/absent`);
      assert.equal(missing.status, 404);
      assert.equal(missing.body.byteLength, 0);
    }
  });

  test("keys with '/' and percent-encoded UTF-8 round-trip; values are raw bytes", async () => {
    const cases: { path: string; key: string }[] = [
      { path: `caf%C3%A9-${tag}/x`, key: `café-${tag}/x` },
      { path: `dir-${tag}/sub/leaf`, key: `dir-${tag}/sub/leaf` },
      { path: `dir-${tag}/trailing/`, key: `dir-${tag}/trailing/` },
      { path: `sp-${tag}/a%20b%3Fc%23d`, key: `sp-${tag}/a b?c#d` },
      { path: `emoji-${tag}/%F0%9F%8C%A5`, key: `emoji-${tag}/🌥` },
      { path: `plus-${tag}/a+b%2Bc`, key: `plus-${tag}/a+b+c` },
    ];
    for (const [i, k] of cases.entries()) {
      const value = `value of ${k.key}`;
      const rev = await put(c.ids()[i % 3] as string, k.path, value);
      for (const n of c.ids()) await expectValue(n, k.path, value, rev);
      // The decoded key is what is stored: listing shows it decoded.
      const r = await c.req("n1", "GET", `/v1/kv/default?prefix=${encodeURIComponent(k.key)}`);
      assert.equal(r.status, 200, r.text);
      const page = JSON.parse(r.text) as ListPage;
      assert.deepEqual(
        page.items.map((it) => it.key),
        [k.key],
      );
      assert.equal(page.items[0]?.revision, rev);
    }
    // An encoded '/' names the same key as a literal one.
    const rev = await put("n1", `slash-${tag}%2Fa`, "one");
    await expectValue("n3", `slash-${tag}/a`, "one", rev);
    // Binary and empty values come back byte for byte.
    const bin = new Uint8Array(256).map((_, i) => i);
    const binRev = await put("n2", `bin-${tag}`, bin);
    for (const n of c.ids()) await expectValue(n, `bin-${tag}`, bin, binRev);
    const emptyRev = await put("n3", `empty-${tag}`, "");
    const e = await c.req("n1", "GET", `${KV}empty-${tag}`);
    assert.equal(e.status, 200);
    assert.equal(e.body.byteLength, 0);
    assert.equal(e.headers.get("etag"), `"${emptyRev}"`);
  });

  test("compare-and-set with If-Match: right revision → 200, wrong → 412 with the current revision", async () => {
    const key = `cas-${tag}/k`;
    // "0" matches an absent key.
    const r1 = await put("n1", key, "one", { "if-match": '"0"' });
    const r2 = await put("n2", key, "two", { "if-match": `"${r1}"` });
    assert.ok(r2 > r1);
    for (const stale of [`"${r1}"`, '"0"', `"${r2 + 1000}"`]) {
      const bad = await c.req("n3", "PUT", KV + key, {
        body: "lost",
        headers: { "if-match": stale },
      });
      assert.equal(bad.status, 412, `If-Match ${stale}: ${bad.text}`);
      const err = errorBody(bad.text);
      assert.equal(err?.code, "PRECONDITION_FAILED");
      assert.equal(err?.revision, r2);
    }
    for (const n of c.ids()) await expectValue(n, key, "two", r2);
    // The ETag (as sent back) is accepted as If-Match, weak or strong.
    const r3 = await put("n3", key, "three", { "if-match": `W/"${r2}"` });
    assert.ok(r3 > r2);
    await expectValue("n1", key, "three", r3);
  });

  test("create-only with If-None-Match: * → 200 the first time, then 412", async () => {
    const key = `create-${tag}/k`;
    const rev = await put("n2", key, "first", { "if-none-match": "*" });
    for (const n of c.ids()) {
      const again = await c.req(n, "PUT", KV + key, {
        body: "second",
        headers: { "if-none-match": "*" },
      });
      assert.equal(again.status, 412, again.text);
      const err = errorBody(again.text);
      assert.equal(err?.code, "PRECONDITION_FAILED");
      assert.equal(err?.revision, rev);
    }
    for (const n of c.ids()) await expectValue(n, key, "first", rev);
  });

  test("delete: conditional (412 on mismatch), then 404 everywhere; a new write gets a higher revision", async () => {
    const key = `del-${tag}/k`;
    const rev = await put("n1", key, "doomed");
    const wrong = await c.req("n2", "DELETE", KV + key, {
      headers: { "if-match": `"${rev + 1}"` },
    });
    assert.equal(wrong.status, 412, wrong.text);
    assert.equal(errorBody(wrong.text)?.revision, rev);
    await expectValue("n3", key, "doomed", rev);

    const del = await c.req("n2", "DELETE", KV + key, { headers: { "if-match": `"${rev}"` } });
    assert.equal(del.status, 200, del.text);
    const delRev = (JSON.parse(del.text) as { revision: number }).revision;
    assert.ok(delRev > rev, `delete revision ${delRev} after ${rev}`);
    for (const n of c.ids()) await expect404(n, key);

    const again = await c.req("n3", "DELETE", KV + key);
    assert.equal(again.status, 404, again.text);
    assert.equal(errorBody(again.text)?.code, "NOT_FOUND");

    // Unconditional delete.
    const key2 = `del-${tag}/k2`;
    await put("n3", key2, "x");
    const d2 = await c.req("n1", "DELETE", KV + key2);
    assert.equal(d2.status, 200, d2.text);
    for (const n of c.ids()) await expect404(n, key2);

    // Recreated: the revision keeps growing, create-only works again.
    const rev2 = await put("n1", key, "reborn", { "if-none-match": "*" });
    assert.ok(rev2 > delRev, `revision ${rev2} after the delete at ${delRev}`);
    await expectValue("n2", key, "reborn", rev2);
  });

  test("listing: 25 keys under a prefix paged by 7, in byte order, each exactly once; keys_only; base64 values", async () => {
    const prefix = `list-${tag}/`;
    const names = [
      ...Array.from({ length: 18 }, (_, i) => `k${i}`),
      "10",
      "9",
      "Z",
      "a",
      "é",
      "sub/deeper",
      "~",
    ];
    assert.equal(names.length, 25);
    const written = new Map<string, { value: Buffer; revision: number }>();
    for (const [i, name] of names.entries()) {
      const key = prefix + name;
      const value = Buffer.concat([Buffer.from(`${name}:`), randomBytes(8), Buffer.from([0, 255])]);
      const rev = await put(
        c.ids()[i % 3] as string,
        key.split("/").map(encodeURIComponent).join("/"),
        value,
      );
      written.set(key, { value, revision: rev });
    }
    // Neighbours outside the prefix.
    for (const other of [
      `list-${tag}`,
      `list-${tag}.`,
      `list-${tag}0`,
      `lisa-${tag}/x`,
      `list-${tag.toUpperCase()}x/1`,
    ]) {
      await put("n2", encodeURIComponent(other), "outside");
    }
    const expected = [...written.keys()].sort((a, b) =>
      Buffer.compare(Buffer.from(a), Buffer.from(b)),
    );

    for (const node of c.ids()) {
      const seen: string[] = [];
      let startAfter: string | null = null;
      const pageSizes: number[] = [];
      for (let pages = 0; pages < 10; pages++) {
        const q = new URLSearchParams({ prefix, limit: "7" });
        if (startAfter !== null) q.set("start_after", startAfter);
        const r = await c.req(node, "GET", `/v1/kv/default?${q}`);
        assert.equal(r.status, 200, r.text);
        assert.match(r.headers.get("content-type") ?? "", /application\/json/);
        const page = JSON.parse(r.text) as ListPage;
        pageSizes.push(page.items.length);
        for (const it of page.items) {
          const w = written.get(it.key);
          assert.ok(w, `unexpected key ${it.key}`);
          assert.equal(it.revision, w.revision, it.key);
          assert.equal(typeof it.value, "string");
          assert.deepEqual(Buffer.from(it.value as string, "base64"), w.value, it.key);
          seen.push(it.key);
        }
        if (page.next === null) break;
        assert.equal(page.next, page.items[page.items.length - 1]?.key);
        startAfter = page.next;
      }
      assert.deepEqual(pageSizes, [7, 7, 7, 4], `page sizes via ${node}`);
      assert.deepEqual(seen, expected, `listing via ${node}`);
    }

    // keys_only omits values but keeps revisions.
    const ko = await c.req(
      "n3",
      "GET",
      `/v1/kv/default?${new URLSearchParams({ prefix, keys_only: "true", limit: "100" })}`,
    );
    assert.equal(ko.status, 200, ko.text);
    const kop = JSON.parse(ko.text) as ListPage;
    assert.equal(kop.next, null);
    assert.deepEqual(
      kop.items.map((i) => i.key),
      expected,
    );
    for (const it of kop.items) {
      assert.equal("value" in it, false, `value present for ${it.key}`);
      assert.equal(it.revision, written.get(it.key)?.revision);
    }

    // A page that ends exactly at the last key has next = null; start_after the last key is empty.
    const last = expected[expected.length - 1] as string;
    const tail = await c.req(
      "n1",
      "GET",
      `/v1/kv/default?${new URLSearchParams({ prefix, start_after: last })}`,
    );
    assert.equal(tail.status, 200, tail.text);
    assert.deepEqual(JSON.parse(tail.text), { items: [], next: null });
    const exact = await c.req(
      "n1",
      "GET",
      `/v1/kv/default?${new URLSearchParams({ prefix, limit: "25" })}`,
    );
    const ep = JSON.parse(exact.text) as ListPage;
    assert.equal(ep.items.length, 25);
    assert.equal(ep.next, null);

    // Stale listing agrees once replicated.
    await waitFor(
      async () => {
        const r = await c.req(
          "n2",
          "GET",
          `/v1/kv/default?${new URLSearchParams({ prefix, keys_only: "1", consistency: "stale" })}`,
        );
        const p = JSON.parse(r.text) as ListPage;
        return r.status === 200 && p.items.map((i) => i.key).join("\n") === expected.join("\n");
      },
      5000,
      "stale listing",
    );
  });

  test("?consistency=stale answers from the local replica; ?consistency=linearizable is the default", async () => {
    const key = `stale-${tag}/k`;
    const rev = await put("n1", key, "fresh");
    for (const n of c.ids()) {
      await waitFor(
        async () => {
          const r = await c.req(n, "GET", `${KV + key}?consistency=stale`);
          return r.status === 200 && r.text === "fresh" && r.headers.get("etag") === `"${rev}"`;
        },
        5000,
        `stale read of ${key} on ${n}`,
      );
      await expectValue(n, key, "fresh", rev, "?consistency=linearizable");
      await expect404(n, `stale-${tag}/absent`, "?consistency=stale");
    }
  });

  test("SIGTERM stops a node cleanly (exit 0); the others keep serving; a different cluster shape is refused; restarted, it has every write", async () => {
    const before = await put("n3", `term-${tag}/before`, "written before");
    const proc = c.node("n3").proc;
    assert.ok(proc);
    const t = Date.now();
    await c.kill("n3", "SIGTERM");
    const stopMs = Date.now() - t;
    assert.equal(proc.exitCode, 0, `exit ${proc.exitCode} ${proc.signalCode}\n${c.logs()}`);
    assert.ok(stopMs < 5000, `graceful stop took ${stopMs} ms`);
    console.log(`# kv: n3 stopped gracefully in ${stopMs} ms`);
    // A majority is left: writes and linearizable reads go on through the others.
    const during = await put("n1", `term-${tag}/during`, "written while n3 was down");
    await expectValue("n2", `term-${tag}/during`, "written while n3 was down", during);
    // Started with a different cluster shape on the same data, it refuses to start.
    const n3 = c.node("n3");
    const join = c.nodes.filter((o) => o.id !== "n3").map((o) => `${o.id}=${o.peer}`);
    const bad = spawnTracked(
      [MAIN, "server", "--id", "n3", "--data", n3.data, "--peer", n3.peer, "--api", n3.api]
        .concat(["--s3", n3.s3, "--join", join.join(","), "--shards", "4"])
        .concat(ARGS),
      { ...process.env, KUMO_TOKENS: c.token },
    );
    let out = "";
    bad.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
    });
    bad.stderr?.on("data", (d: Buffer) => {
      out += d.toString();
    });
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => bad.kill("SIGKILL"), 15_000);
      bad.once("exit", (cd) => {
        clearTimeout(timer);
        resolve(cd);
      });
    });
    assert.notEqual(code, 0, `a start with --shards 4 was not refused:\n${out}`);
    assert.equal(bad.signalCode, null, `no answer within 15 s:\n${out}`);
    assert.match(out, /shards/, out);

    await c.restart("n3");
    await expectValue("n3", `term-${tag}/before`, "written before", before);
    await expectValue("n3", `term-${tag}/during`, "written while n3 was down", during);
  });
});
