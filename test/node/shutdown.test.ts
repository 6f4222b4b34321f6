/**
 * The parts of a graceful shutdown (src/node/shutdown.ts): the leadership handover against a
 * fake Raft host, the draining-peer lease on a fake clock, and the HTTP drain on a real server.
 */
import assert from "node:assert/strict";
import { createServer, request } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import {
  DrainingPeers,
  drainServer,
  encodeDraining,
  handOverLeadership,
  type LeadershipPort,
  successorOf,
} from "../../src/node/shutdown.js";

/** Groups led by "a" until a transfer to an accepting target completes (after `lagPolls`). */
class FakeHost implements LeadershipPort {
  readonly leader = new Map<string, string>();
  readonly transfers: [string, string][] = [];
  private readonly pending = new Map<string, { to: string; polls: number }>();

  constructor(
    groups: Record<string, string>,
    readonly voters: readonly string[],
    readonly match: ReadonlyMap<string, number>,
    private readonly lagPolls = 1,
    private readonly refuses: ReadonlySet<string> = new Set(),
  ) {
    for (const [g, l] of Object.entries(groups)) this.leader.set(g, l);
  }

  groupIds(): string[] {
    // Every call is one poll: pending transfers make progress.
    for (const [g, p] of this.pending) {
      if (++p.polls >= this.lagPolls) {
        this.leader.set(g, p.to);
        this.pending.delete(g);
      }
    }
    return [...this.leader.keys()];
  }

  status(id: string) {
    const l = this.leader.get(id);
    if (l === undefined) return undefined;
    return { role: l === "a" ? "leader" : "follower", voters: this.voters, match: this.match };
  }

  transferLeadership(id: string, to: string): boolean {
    this.transfers.push([id, to]);
    if (this.refuses.has(to)) return true; // accepted by Raft, never completes
    if (!this.pending.has(id)) this.pending.set(id, { to, polls: 0 });
    return true;
  }
}

test("the successor is the most up-to-date eligible voter (ties by id)", () => {
  const match = new Map([
    ["a", 10],
    ["b", 7],
    ["c", 9],
    ["d", 9],
  ]);
  const st = { voters: ["a", "b", "c", "d"], match };
  assert.equal(
    successorOf("a", st, () => true),
    "c",
  );
  assert.equal(
    successorOf("a", st, (id) => id !== "c"),
    "d",
  );
  assert.equal(
    successorOf("a", st, (id) => id === "a"),
    undefined,
  );
});

test("hands every led group over and returns once it leads none", async () => {
  const host = new FakeHost(
    { g1: "a", g2: "a", g3: "b" },
    ["a", "b", "c"],
    new Map([
      ["b", 5],
      ["c", 8],
    ]),
    2,
  );
  const r = await handOverLeadership({
    self: "a",
    host,
    eligible: () => true,
    deadlineMs: performance.now() + 5_000,
    pollMs: 1,
  });
  assert.deepEqual(r, { leading: 0, transferred: 2, outcome: "done" });
  assert.equal(host.leader.get("g1"), "c");
  assert.equal(host.leader.get("g2"), "c");
  assert.ok(host.transfers.every(([, to]) => to === "c"));
});

test("draining or unreachable voters are never targets; with none left it stops at once", async () => {
  const host = new FakeHost({ g1: "a" }, ["a", "b", "c"], new Map());
  const t0 = performance.now();
  const r = await handOverLeadership({
    self: "a",
    host,
    eligible: () => false,
    deadlineMs: t0 + 5_000,
    pollMs: 1,
  });
  assert.deepEqual(r, { leading: 1, transferred: 0, outcome: "no-successor" });
  assert.equal(host.transfers.length, 0);
  assert.ok(performance.now() - t0 < 1_000);
});

test("gives up at the deadline when a transfer never completes", async () => {
  const host = new FakeHost({ g1: "a" }, ["a", "b"], new Map(), 1, new Set(["b"]));
  const r = await handOverLeadership({
    self: "a",
    host,
    eligible: () => true,
    deadlineMs: performance.now() + 50,
    pollMs: 1,
  });
  assert.equal(r.outcome, "timeout");
  assert.equal(r.leading, 1);
});

test("leadership that comes back while holding is handed over again", async () => {
  const host = new FakeHost({ g1: "a" }, ["a", "b"], new Map(), 1);
  const t0 = performance.now();
  setTimeout(() => host.leader.set("g1", "a"), 30); // e.g. an election this node won
  const r = await handOverLeadership({
    self: "a",
    host,
    eligible: () => true,
    deadlineMs: t0 + 5_000,
    holdUntilMs: t0 + 80,
    pollMs: 1,
  });
  assert.equal(r.outcome, "done");
  assert.equal(host.leader.get("g1"), "b");
  assert.ok(host.transfers.length >= 2, `${host.transfers.length} transfers`);
  assert.ok(performance.now() - t0 >= 79);
});

test("a draining announcement holds for its lease, and 0 clears it", () => {
  let now = 1_000;
  const peers = new DrainingPeers(() => now);
  peers.onAnnouncement("b", encodeDraining(3_000));
  assert.ok(peers.has("b"));
  assert.deepEqual(peers.list(), ["b"]);
  now += 2_999;
  assert.ok(peers.has("b"));
  now += 2;
  assert.ok(!peers.has("b"), "the lease lapsed (the node is gone or restarted)");
  peers.onAnnouncement("c", encodeDraining(3_000));
  peers.onAnnouncement("c", encodeDraining(0));
  assert.ok(!peers.has("c"));
  peers.onAnnouncement("d", new TextEncoder().encode("not json"));
  assert.ok(!peers.has("d"));
});

function get(port: number, path: string): Promise<{ status: number; connection?: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, agent: false }, (res) => {
      res.resume();
      res.on("end", () =>
        resolve({
          status: res.statusCode ?? 0,
          ...(res.headers.connection ? { connection: res.headers.connection } : {}),
        }),
      );
    });
    req.on("error", reject);
    req.end();
  });
}

test("drainServer: the request in flight finishes, new connections are refused", async () => {
  const server = createServer((req, res) => {
    const ms = req.url === "/slow" ? 300 : 0;
    setTimeout(() => res.end("ok"), ms);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  const slow = get(port, "/slow");
  await new Promise((r) => setTimeout(r, 50));
  const t0 = performance.now();
  const drained = drainServer(server, 5_000);
  await assert.rejects(get(port, "/"), /ECONNREFUSED/);
  assert.equal((await slow).status, 200);
  assert.equal(await drained, false);
  assert.ok(performance.now() - t0 >= 200);
});

test("drainServer: idle keep-alive connections are closed at once", async () => {
  const server = createServer((_req, res) => res.end("ok"));
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  assert.equal((await fetch(`http://127.0.0.1:${port}/`)).status, 200);
  const t0 = performance.now();
  assert.equal(await drainServer(server, 5_000), false);
  assert.ok(performance.now() - t0 < 1_000);
});

test("drainServer: the bound cuts what is left", async () => {
  const server = createServer((req, res) => {
    if (req.url === "/hang") return; // never answers
    res.end("ok");
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  // A kept-alive idle connection (fetch pools it).
  assert.equal((await fetch(`http://127.0.0.1:${port}/`)).status, 200);
  const hung = new Promise<string>((resolve) => {
    const req = request({ host: "127.0.0.1", port, path: "/hang", agent: false });
    req.on("error", (e) => resolve((e as NodeJS.ErrnoException).code ?? e.message));
    req.end();
  });
  await new Promise((r) => setTimeout(r, 50));
  const t0 = performance.now();
  assert.equal(await drainServer(server, 200), true);
  const ms = performance.now() - t0;
  assert.ok(ms >= 190 && ms < 2_000, `${ms} ms`);
  assert.equal(await hung, "ECONNRESET");
});
