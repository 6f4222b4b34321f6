/**
 * Write gates (MultiRaftHost.gate, used by backup cuts): while a leader's group is gated, its
 * new writes wait, local ones and those forwarded by followers alike; entries proposed before
 * the gate still apply; the gate opens on `ungate` or when its lease runs out.
 */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import { MultiRaftHost } from "../../src/multiraft/index.js";
import { type ApplyResult, encodeCommand, ShardMachine } from "../../src/shard/index.js";
import { MemoryEngine } from "../../src/storage/index.js";
import { MemoryNetwork } from "../../src/transport/index.js";

type Host = MultiRaftHost<ApplyResult, ShardMachine>;
const enc = new TextEncoder();
const hosts: Host[] = [];
after(async () => {
  for (const h of hosts) await h.stop();
});

const put = (key: string) =>
  encodeCommand({
    op: "put",
    key: enc.encode(key),
    value: enc.encode("v"),
    cond: { kind: "none" },
  });

async function waitFor(cond: () => boolean, ms: number, what: string): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function group(): Promise<{ leader: Host; follower: Host }> {
  const net = new MemoryNetwork();
  const ids = ["n1", "n2", "n3"];
  const all: Host[] = [];
  for (const id of ids) {
    const engine = new MemoryEngine();
    const transport = net.transport(id);
    const host: Host = new MultiRaftHost<ApplyResult, ShardMachine>({
      nodeId: id,
      engine,
      transport,
      seed: id.charCodeAt(1),
      tickMs: 10,
      electionTimeoutTicks: 10,
      machine: (g) => new ShardMachine(engine, g),
    });
    await transport.start({
      onRaft: (from, b) => host.receive(from, b),
      onCall: async () => new Uint8Array(),
    });
    for (const p of ids) if (p !== id) transport.setPeer(p, p);
    host.start();
    hosts.push(host);
    all.push(host);
  }
  for (const h of all) await h.createGroup("g", ids);
  (all[0] as Host).campaign("g");
  await waitFor(() => all.every((h) => h.leaderOf("g") === "n1"), 5000, "a leader");
  return { leader: all[0] as Host, follower: all[1] as Host };
}

test("a gated leader holds local and forwarded writes until it is released", async () => {
  const { leader, follower } = await group();
  assert.equal((await leader.propose("g", put("before"), 5000)).ok, true);
  assert.equal(follower.gate("g", 5000, "cut1"), undefined, "only a leader gates");
  const g = leader.gate("g", 5000, "cut1");
  assert.ok(g);
  assert.equal(leader.gate("g", 5000, "cut2"), undefined, "one gate at a time");
  assert.equal(leader.transferLeadership("g", "n2"), false, "no transfer while gated");
  const applied = () => leader.localMachine("g")?.durableApplied ?? 0;
  await waitFor(() => applied() >= g.lastIndex, 2000, "the log at the gate applied");
  let local = false;
  let forwarded = false;
  const p1 = leader.propose("g", put("local"), 5000).then((r) => {
    local = r.ok;
  });
  const p2 = follower.propose("g", put("forwarded"), 5000).then((r) => {
    forwarded = r.ok;
  });
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(local || forwarded, false, "a write went through the gate");
  assert.equal(applied(), g.lastIndex, "nothing applied past the gate");
  assert.equal(leader.localMachine("g")?.get(enc.encode("local")), undefined);
  leader.ungate("g", "other cut"); // not its owner: no effect
  assert.ok(leader.gatedBy("g", "cut1"));
  leader.ungate("g", "cut1");
  await Promise.all([p1, p2]);
  assert.ok(local && forwarded);
  assert.ok(leader.localMachine("g")?.get(enc.encode("forwarded")));
});

test("a gate opens by itself when its lease runs out", async () => {
  const { leader } = await group();
  assert.ok(leader.gate("g", 100, "lost-coordinator"));
  const t0 = Date.now();
  const r = await leader.propose("g", put("k"), 5000);
  assert.equal(r.ok, true);
  assert.ok(Date.now() - t0 >= 80, "the write waited for the lease");
  assert.equal(leader.gatedBy("g", "lost-coordinator"), false);
});
