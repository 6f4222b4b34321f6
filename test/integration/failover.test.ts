/**
 * Failures on a real 3-node cluster: a shard leader killed with SIGKILL (writes resume on the
 * survivors, the restarted node catches up), every node killed at once (no acknowledged write
 * is lost), and quorum loss (requests fail fast with 503 within the documented deadlines, and
 * recover once a majority is back).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { errorBody, type HttpAnswer, sleep, TestCluster, waitFor } from "./_cluster.js";

const REQUEST_TIMEOUT_MS = 3000;
const LEADERLESS_TIMEOUT_MS = 1500;
const ARGS = [
  "--tick-ms",
  "20",
  "--election-ticks",
  "10",
  "--request-timeout-ms",
  String(REQUEST_TIMEOUT_MS),
  "--leaderless-timeout-ms",
  String(LEADERLESS_TIMEOUT_MS),
];
const KV = "/v1/kv/default/";

let c: TestCluster;
const tag = randomBytes(4).toString("hex");

function log(msg: string): void {
  console.log(`# failover: ${msg}`);
}

function revisionOf(r: HttpAnswer): number {
  return (JSON.parse(r.text) as { revision: number }).revision;
}

/** A refusal must be the documented 503 with Retry-After and one of `codes`. */
function assertRetryable503(r: HttpAnswer, what: string, codes: readonly string[]): void {
  assert.equal(r.status, 503, `${what}: ${r.status} ${r.text} ${r.error ?? ""}`);
  const retry = r.headers.get("retry-after");
  assert.ok(retry !== null && /^\d+$/.test(retry), `${what}: Retry-After ${retry}`);
  const code = errorBody(r.text)?.code ?? "";
  assert.ok(codes.includes(code), `${what}: code ${code} not in ${codes}: ${r.text}`);
}

describe("failover", () => {
  before(async () => {
    c = await TestCluster.start({ nodes: 3, args: ARGS });
  });

  after(async () => {
    await c?.stop();
  });

  test("(a) SIGKILL of a shard leader: writes through every survivor resume within 10 s; the restarted node catches up", async () => {
    await c.heal();
    const st = await c.status("n1", "default");
    const victim = st.shards.find((s) => s.id === "default.0")?.leader;
    assert.ok(victim, "default.0 has a leader");
    const victimShards = st.shards.filter((s) => s.leader === victim).map((s) => s.id);
    const otherShards = st.shards.filter((s) => s.leader !== victim).map((s) => s.id);
    const keys = [
      ...victimShards.map((id) => c.keysOfShard(id, 1, `fo-${tag}/`)[0] as string),
      ...otherShards.slice(0, 2).map((id) => c.keysOfShard(id, 1, `fo-${tag}/`)[0] as string),
    ];
    log(`victim ${victim} leads ${victimShards.join(",")}; keys ${keys.join(" ")}`);
    for (const k of keys) {
      const r = await c.req("n1", "PUT", KV + k, { body: `before-${k}` });
      assert.equal(r.status, 200, r.text);
    }

    await c.kill(victim, "SIGKILL");
    const t0 = Date.now();
    const survivors = c.alive().map((n) => n.id);
    assert.equal(survivors.length, 2);

    // Rounds of writes of every key through every survivor, until one round fully succeeds.
    let recoveredMs = -1;
    let refusals = 0;
    for (let round = 0; Date.now() - t0 < 15_000; round++) {
      const answers = await Promise.all(
        survivors.flatMap((s) =>
          keys.map(async (k) => ({
            s,
            k,
            r: await c.req(s, "PUT", KV + k, { body: `round${round}-${s}` }),
          })),
        ),
      );
      const failed = answers.filter((a) => a.r.status !== 200);
      for (const f of failed)
        assertRetryable503(f.r, `PUT ${f.k} via ${f.s}`, ["UNAVAILABLE", "OUTCOME_UNKNOWN"]);
      refusals += failed.length;
      if (failed.length === 0) {
        recoveredMs = Date.now() - t0;
        break;
      }
      await sleep(50);
    }
    log(
      `writes through every survivor succeed ${recoveredMs} ms after the leader was killed (${refusals} refusals before)`,
    );
    assert.ok(
      recoveredMs >= 0 && recoveredMs < 10_000,
      `writes did not resume within 10 s (${recoveredMs} ms)\n${c.logs()}`,
    );
    // Shards nobody wrote to may still be electing (their followers wake when the victim's
    // connection drops): give every shard an election timeout or two to settle.
    await waitFor(
      async () => {
        for (const s of survivors) {
          const view = await c.status(s);
          if (view.shards.some((sh) => !sh.leader || sh.leader === victim)) return false;
        }
        return true;
      },
      10_000,
      "every shard led by a survivor, as every survivor sees it",
    );

    // The latest values, written while the victim is down.
    const latest = new Map<string, { value: string; revision: number }>();
    for (const [i, k] of keys.entries()) {
      const value = `latest-${k}-${randomBytes(4).toString("hex")}`;
      const r = await c.req(survivors[i % 2] as string, "PUT", KV + k, { body: value });
      assert.equal(r.status, 200, r.text);
      latest.set(k, { value, revision: revisionOf(r) });
    }

    const t1 = Date.now();
    await c.restart(victim);
    const pending = new Set(keys);
    while (pending.size > 0 && Date.now() - t1 < 15_000) {
      for (const k of [...pending]) {
        const r = await c.req(victim, "GET", `${KV + k}?consistency=stale`);
        const want = latest.get(k);
        if (
          r.status === 200 &&
          r.text === want?.value &&
          r.headers.get("etag") === `"${want.revision}"`
        )
          pending.delete(k);
      }
      if (pending.size > 0) await sleep(50);
    }
    const caughtUpMs = Date.now() - t1;
    log(
      `restarted ${victim} serves the latest values from its own replica ${caughtUpMs} ms after restart`,
    );
    assert.equal(
      pending.size,
      0,
      `${victim} did not catch up on ${[...pending].join(" ")}\n${c.logs()}`,
    );
    // And linearizable reads through it (the leader confirms, the caught-up replica serves).
    for (const k of keys) {
      const t = Date.now();
      const r = await c.req(victim, "GET", KV + k);
      if (r.status !== 200) {
        const views = await Promise.all(
          c
            .alive()
            .map(async (n) => ({ n: n.id, st: await c.status(n.id).catch(() => undefined) })),
        );
        assert.fail(
          `linearizable GET ${k} via the restarted ${victim}: ${r.status} ${r.text} after ${Date.now() - t} ms\n` +
            `${JSON.stringify(views)}\n${c.logs()}`,
        );
      }
      assert.equal(r.text, latest.get(k)?.value);
    }
  });

  test("(b) durability: every acknowledged write survives SIGKILL of all nodes at once", async () => {
    await c.heal();
    const ids = c.ids();
    const acked = new Map<string, { value: string; revision: number }>();
    const pick = () => ids[Math.floor(Math.random() * ids.length)] as string;
    const unacked: string[] = [];
    // Retrying the same value is safe even after OUTCOME_UNKNOWN: the acknowledged retry is the
    // key's latest write either way.
    const writeKey = async (k: string, value: string): Promise<void> => {
      for (let attempt = 0; attempt < 5; attempt++) {
        const r = await c.req(pick(), "PUT", KV + k, { body: value });
        if (r.status === 200) {
          acked.set(k, { value, revision: revisionOf(r) });
          return;
        }
        assertRetryable503(r, `PUT ${k}`, ["UNAVAILABLE", "OUTCOME_UNKNOWN", "OVERLOADED"]);
        await sleep(100);
      }
      unacked.push(k);
    };
    const keys = Array.from({ length: 200 }, (_, i) => `dur-${tag}/${String(i).padStart(3, "0")}`);
    const t0 = Date.now();
    for (let i = 0; i < keys.length; i += 10) {
      await Promise.all(
        keys.slice(i, i + 10).map((k) => writeKey(k, `${k}=${randomBytes(8).toString("hex")}`)),
      );
    }
    // Overwrite a few: the acknowledged revision and value are the latest ones.
    for (const k of keys.slice(0, 20))
      await writeKey(k, `${k}=second-${randomBytes(8).toString("hex")}`);
    log(`${acked.size} acknowledged writes in ${Date.now() - t0} ms`);
    assert.deepEqual(unacked, [], "a healthy cluster acknowledges every write");
    assert.equal(acked.size, 200);

    await c.killAll("SIGKILL");
    assert.equal(c.alive().length, 0);
    const t1 = Date.now();
    await Promise.all(ids.map((id) => c.restart(id)));
    await c.waitServing(30_000);
    log(`all nodes restarted and serving in ${Date.now() - t1} ms`);

    const missing: string[] = [];
    for (const [i, [k, want]] of [...acked].entries()) {
      let r: HttpAnswer | undefined;
      for (let attempt = 0; attempt < 20; attempt++) {
        r = await c.req(ids[i % 3] as string, "GET", KV + k);
        if (r.status !== 503 && r.status !== 0) break;
        await sleep(100);
      }
      if (
        r?.status !== 200 ||
        r.text !== want.value ||
        r.headers.get("etag") !== `"${want.revision}"`
      ) {
        missing.push(
          `${k}: want ${want.revision} ${want.value}, got ${r?.status} ${r?.headers.get("etag")} ${r?.text}`,
        );
      }
    }
    assert.deepEqual(
      missing,
      [],
      `acknowledged writes lost or changed:\n${missing.slice(0, 20).join("\n")}`,
    );

    // Revisions keep growing across the restart.
    for (const k of keys.slice(0, 5)) {
      const r = await c.req("n3", "PUT", KV + k, { body: "after the restart" });
      assert.equal(r.status, 200, r.text);
      const before = acked.get(k)?.revision ?? 0;
      assert.ok(revisionOf(r) > before, `${k}: revision ${revisionOf(r)} after ${before}`);
      acked.set(k, { value: "after the restart", revision: revisionOf(r) });
    }

    // The listing agrees: exactly the acknowledged keys, with their revisions.
    const listed = new Map<string, number>();
    let startAfter: string | null = null;
    for (let page = 0; page < 20; page++) {
      const q = new URLSearchParams({ prefix: `dur-${tag}/`, keys_only: "true", limit: "64" });
      if (startAfter !== null) q.set("start_after", startAfter);
      const r = await c.req("n2", "GET", `/v1/kv/default?${q}`);
      assert.equal(r.status, 200, r.text);
      const p = JSON.parse(r.text) as {
        items: { key: string; revision: number }[];
        next: string | null;
      };
      for (const it of p.items) listed.set(it.key, it.revision);
      startAfter = p.next;
      if (startAfter === null) break;
    }
    assert.equal(listed.size, 200);
    for (const [k, want] of acked) assert.equal(listed.get(k), want.revision, k);
  });

  test("(c) quorum loss: 503 within the deadlines, stale reads still served; writes resume once a majority is back", async () => {
    await c.heal();
    const st = await c.status("n1", "default");
    // One shard led by the survivor n1 (if any) and one led by a node about to die.
    const ownShard = st.shards.find((s) => s.leader === "n1")?.id;
    const lostShard = st.shards.find((s) => s.leader !== "n1")?.id ?? "default.0";
    const shards = [...new Set([ownShard ?? "default.1", lostShard])];
    const outageKeys = shards.map((id) => c.keysOfShard(id, 1, `ql-${tag}/outage-`)[0] as string);
    const probeKeys = shards.map((id) => c.keysOfShard(id, 1, `ql-${tag}/probe-`)[0] as string);
    log(`survivor n1 leads ${ownShard ?? "nothing"}; shards ${shards.join(",")}`);
    const before = new Map<string, string>();
    for (const k of outageKeys) {
      const r = await c.req("n1", "PUT", KV + k, { body: `before-${k}` });
      assert.equal(r.status, 200, r.text);
      before.set(k, `before-${k}`);
    }

    await Promise.all([c.kill("n2", "SIGKILL"), c.kill("n3", "SIGKILL")]);
    const tKill = Date.now();
    const deadline = REQUEST_TIMEOUT_MS + 1000;

    const timed = async (what: string, method: string, path: string, body?: string) => {
      const t = Date.now();
      const r = await c.req("n1", method, path, body === undefined ? {} : { body });
      return { what, r, ms: Date.now() - t };
    };
    // Right after the loss (n1 may still believe it leads), then again once leaders stepped down.
    const attempted = new Map<string, { value: string; code: string }[]>();
    for (const phase of ["immediate", "settled"]) {
      if (phase === "settled")
        await sleep(Math.max(0, tKill + 2 * LEADERLESS_TIMEOUT_MS - Date.now()));
      const answers = await Promise.all([
        ...outageKeys.map((k) => timed(`PUT ${k}`, "PUT", KV + k, `${phase}-${k}`)),
        ...outageKeys.map((k) => timed(`GET ${k}`, "GET", KV + k)),
        timed("LIST", "GET", `/v1/kv/default?prefix=${encodeURIComponent(`ql-${tag}/`)}`),
      ]);
      for (const a of answers) {
        log(`${phase} ${a.what}: ${a.r.status} ${errorBody(a.r.text)?.code} in ${a.ms} ms`);
        const isWrite = a.what.startsWith("PUT");
        assertRetryable503(
          a.r,
          `${phase} ${a.what}`,
          isWrite ? ["UNAVAILABLE", "OUTCOME_UNKNOWN"] : ["UNAVAILABLE"],
        );
        assert.ok(a.ms < deadline, `${phase} ${a.what} took ${a.ms} ms (deadline ${deadline} ms)`);
        if (isWrite) {
          const k = a.what.slice(4);
          attempted.set(k, [
            ...(attempted.get(k) ?? []),
            { value: `${phase}-${k}`, code: errorBody(a.r.text)?.code ?? "" },
          ]);
        }
        // Once no leader is left, the node knows the shard is leaderless: it fails fast (about
        // --leaderless-timeout-ms, before the request deadline) with UNAVAILABLE: nothing was sent.
        if (phase === "settled") {
          assert.equal(errorBody(a.r.text)?.code, "UNAVAILABLE", `${phase} ${a.what}: ${a.r.text}`);
          assert.ok(a.ms < REQUEST_TIMEOUT_MS, `${phase} ${a.what} took ${a.ms} ms`);
        }
      }
      // The local replica still answers stale reads at once, with the last committed value.
      for (const k of outageKeys) {
        const t = Date.now();
        const r = await c.req("n1", "GET", `${KV + k}?consistency=stale`);
        assert.equal(r.status, 200, `${phase} stale GET ${k}: ${r.text}`);
        assert.equal(r.text, before.get(k));
        assert.ok(Date.now() - t < 1000, `stale read took ${Date.now() - t} ms`);
      }
    }

    // A majority again: writes through both live nodes succeed within a bounded time.
    const tRestart = Date.now();
    await c.restart("n2");
    let recoveredMs = -1;
    while (Date.now() - tRestart < 15_000) {
      const rs = await Promise.all(
        ["n1", "n2"].flatMap((s) =>
          probeKeys.map((k) => c.req(s, "PUT", KV + k, { body: `after-${s}` })),
        ),
      );
      if (rs.every((r) => r.status === 200)) {
        recoveredMs = Date.now() - tRestart;
        break;
      }
      for (const r of rs)
        if (r.status !== 200)
          assertRetryable503(r, "PUT after restart", ["UNAVAILABLE", "OUTCOME_UNKNOWN"]);
      await sleep(50);
    }
    log(
      `writes succeed again ${recoveredMs} ms after restarting n2 (${tRestart - tKill} ms after the loss)`,
    );
    assert.ok(
      recoveredMs >= 0 && recoveredMs < 10_000,
      `writes did not resume (${recoveredMs} ms)\n${c.logs()}`,
    );

    // A write refused as UNAVAILABLE was not applied; an OUTCOME_UNKNOWN one may or may not be.
    for (const k of outageKeys) {
      const r = await c.req("n2", "GET", KV + k);
      assert.equal(r.status, 200, r.text);
      const tries = attempted.get(k) ?? [];
      const allowed = [
        before.get(k),
        ...tries.filter((t) => t.code === "OUTCOME_UNKNOWN").map((t) => t.value),
      ];
      assert.ok(allowed.includes(r.text), `${k} = ${r.text}; attempts ${JSON.stringify(tries)}`);
    }
    await c.heal();
  });
});

/**
 * Fail-fast deadlines with a short leaderless timeout (300 ms) and a long request deadline (5 s),
 * far enough apart to tell which one a 503 waited for. (This also checks that the
 * --leaderless-timeout-ms flag is honoured: the 2 s default would show.)
 */
describe("fail fast without a leader", () => {
  const LEADERLESS_MS = 300;
  const ARGS_FAST = [
    "--tick-ms",
    "20",
    "--election-ticks",
    "10",
    "--request-timeout-ms",
    "5000",
    "--leaderless-timeout-ms",
    String(LEADERLESS_MS),
  ];
  let cl: TestCluster;

  before(async () => {
    cl = await TestCluster.start({ nodes: 3, args: ARGS_FAST });
  });

  after(async () => {
    await cl?.stop();
  });

  /** A GET and a PUT for every shard, and a listing, all through n1 at once. */
  async function probeAll(label: string) {
    const st = await cl.status("n1", "default");
    const keys = st.shards.map((s) => cl.keysOfShard(s.id, 1, `ff-${tag}/`)[0] as string);
    const requests: [string, string, string | undefined][] = [
      ...keys.flatMap((k): [string, string, string | undefined][] => [
        ["GET", KV + k, undefined],
        ["PUT", KV + k, label],
      ]),
      ["GET", "/v1/kv/default?limit=5", undefined],
    ];
    return Promise.all(
      requests.map(async ([method, path, body]) => {
        const t = Date.now();
        const r = await cl.req("n1", method, path, body === undefined ? {} : { body });
        return { what: `${method} ${path}`, r, ms: Date.now() - t };
      }),
    );
  }

  function range(answers: { what: string; ms: number }[], method: string): string {
    const ms = answers.filter((a) => a.what.startsWith(method)).map((a) => a.ms);
    return `${Math.min(...ms)}..${Math.max(...ms)} ms`;
  }

  test("linearizable reads sent right after quorum loss answer 503 UNAVAILABLE well before the request deadline", async () => {
    await cl.heal();
    await Promise.all([cl.kill("n2", "SIGKILL"), cl.kill("n3", "SIGKILL")]);
    const answers = await probeAll("immediate");
    log(
      `right after quorum loss (leaderless ${LEADERLESS_MS} ms, deadline 5000 ms): ` +
        `GET ${range(answers, "GET")}, PUT ${range(answers, "PUT")}`,
    );
    for (const a of answers) {
      const isWrite = a.what.startsWith("PUT");
      // A write n1 had already appended as leader may still commit later: OUTCOME_UNKNOWN at the
      // deadline is the honest answer. A read has no effect: it fails fast.
      assertRetryable503(
        a.r,
        a.what,
        isWrite ? ["UNAVAILABLE", "OUTCOME_UNKNOWN"] : ["UNAVAILABLE"],
      );
      assert.ok(a.ms < 6000, `${a.what} took ${a.ms} ms (deadline 5000 ms)`);
      if (!isWrite) assert.ok(a.ms < 2500, `${a.what} took ${a.ms} ms`);
    }
  });

  test("once the shards are leaderless, reads, writes and listings answer 503 UNAVAILABLE within about --leaderless-timeout-ms", async () => {
    if (cl.alive().length > 1)
      await Promise.all([cl.kill("n2", "SIGKILL"), cl.kill("n3", "SIGKILL")]);
    // Let the old leaders step down and every request from before run out.
    await sleep(5500);
    const answers = await probeAll("settled");
    log(
      `leaderless (${LEADERLESS_MS} ms): GET ${range(answers, "GET")}, PUT ${range(answers, "PUT")}`,
    );
    for (const a of answers) {
      assertRetryable503(a.r, a.what, ["UNAVAILABLE"]);
      assert.ok(
        a.ms < LEADERLESS_MS + 1000,
        `${a.what} took ${a.ms} ms (--leaderless-timeout-ms ${LEADERLESS_MS})`,
      );
    }
    // Stale reads still answer from the surviving replica, at once.
    const t = Date.now();
    const st = await cl.req("n1", "GET", `${KV}ff-${tag}/absent?consistency=stale`);
    assert.equal(st.status, 404);
    assert.ok(Date.now() - t < 1000);
  });
});
