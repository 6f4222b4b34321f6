/**
 * End-to-end chaos runs against real node processes: a short kill + pause run on loopback (no
 * privileges needed) and, where network namespaces work (root on Linux), a short partition +
 * netem run. Both must report no violation. Bounded: about 15 s of workload each.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { probe } from "../../src/chaos/netns.js";
import { type RunOptions, runChaos } from "../../src/chaos/runner.js";

const CLI = join(fileURLToPath(import.meta.url), "../../../src/chaos/cli.js");

const base: RunOptions = {
  workload: "kv",
  nemeses: ["kill", "pause"],
  durationMs: 12_000,
  seed: 3, // kill -9 of a shard leader, then SIGSTOP of a shard leader
  nodes: 3,
  shards: 2,
  replicas: 3,
  readMode: "quorum",
  clients: 6,
  keys: 6,
  opsPerKeyMax: 200,
  rateMax: 100,
  requestTimeoutMs: 6000,
  staleReads: false,
  net: "loopback",
  keepData: false,
  serverArgs: [],
  log: () => {},
};

function check(r: Awaited<ReturnType<typeof runChaos>>): void {
  assert.equal(r.exitCode, 0, r.text);
  assert.equal(r.report.valid, true, r.text);
  assert.ok(r.report.availability.ok > 50, `only ${r.report.availability.ok} ok ops:\n${r.text}`);
  assert.ok(r.report.events.length >= 2, r.text);
  assert.match(r.text, /chaos: kv ops=\d+ ok=\d+ fail=\d+ info=\d+ linearizable=true lost=0/);
  const lines = readFileSync(join(r.report.dir, "history.jsonl"), "utf8").trim().split("\n");
  assert.ok(lines.length >= r.report.availability.ops);
  const first = JSON.parse(lines[0] ?? "{}") as Record<string, unknown>;
  for (const field of ["id", "client", "node", "op", "key", "call", "ret", "status", "http"]) {
    assert.ok(field in first, `history lines carry ${field}`);
  }
  assert.ok(existsSync(join(r.report.dir, "report.html")));
  rmSync(r.report.dir, { recursive: true, force: true });
}

test("kill -9 and SIGSTOP on loopback: no violation", async () => {
  check(await runChaos(base));
});

const netns = probe();
test("partitions and link faults in network namespaces: no violation", {
  skip: netns.ok ? false : `network namespaces unavailable: ${netns.ok ? "" : netns.reason}`,
}, async () => {
  const r = await runChaos({
    ...base,
    nemeses: ["partition", "netem"],
    net: "netns",
    seed: 32,
    durationMs: 14_000,
  });
  assert.match(r.report.network, /network namespaces/);
  check(r);
});

test("the CLI refuses what it cannot do, with exit code 2", async () => {
  const run = (args: string[]) =>
    new Promise<{ code: number | null; out: string }>((resolve) => {
      execFile(process.execPath, [CLI, ...args], { timeout: 60_000 }, (e, stdout, stderr) =>
        resolve({ code: e ? (typeof e.code === "number" ? e.code : 1) : 0, out: stdout + stderr }),
      );
    });
  const unknown = await run(["--workload", "sql"]);
  assert.equal(unknown.code, 2, unknown.out);
  assert.match(unknown.out, /unknown workload/);
  const stale = await run(["--workload", "s3", "--stale-reads"]);
  assert.equal(stale.code, 2, stale.out);
  assert.match(stale.out, /kv workload only/);
  const bad = await run(["--nemesis", "meteor"]);
  assert.notEqual(bad.code, 0, bad.out);
  assert.match(bad.out, /unknown nemesis/);
});
