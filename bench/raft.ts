/**
 * `npm run bench:raft`: committed entries per second through one 3-node Raft group in memory
 * (no disk, no network: the cost of the protocol and the host loop alone), with 1 and 64
 * concurrent proposers. Each proposer keeps one proposal in flight and proposes again when the
 * leader applies it (a closed loop), so the 64-proposer run shows what batching buys.
 * A benchmark, not a test: it prints numbers; docs/benchmarks.md records them.
 */
import { tmpdir } from "node:os";
import { Prng } from "../src/base/index.js";
import type { Entry, Message, NodeId } from "../src/raft/index.js";
import { MemoryPeer, RecordingMachine } from "../src/sim/peer.js";
import { recordPrinted } from "./_lib.js";

interface Result {
  proposers: number;
  entriesPerSec: number;
  entriesPerReady: number;
  messagesPerEntry: number;
  latencyUsP50: number;
}

class NullMachine extends RecordingMachine {
  override apply(): void {}
}

function run(proposers: number, durationMs: number, valueBytes: number): Result {
  const ids: NodeId[] = ["a", "b", "c"];
  const prng = new Prng(1);
  const inFlight = new Map<number, number>(); // index -> proposal start time
  const latencies: number[] = [];
  let committed = 0;
  let waiting = 0;
  const onLeaderApply = (e: Entry) => {
    const started = inFlight.get(e.index);
    if (started === undefined) return;
    inFlight.delete(e.index);
    latencies.push(performance.now() - started);
    committed++;
    waiting++;
  };
  const peers = new Map<NodeId, MemoryPeer>();
  let a: MemoryPeer | undefined;
  for (const id of ids) {
    const opts = { random: prng.fork(), electionTimeoutTicks: 10, maxInflightMsgs: 256 };
    const p = MemoryPeer.bootstrap(
      id,
      ids,
      new NullMachine(),
      opts,
      id === "a" ? onLeaderApply : undefined,
    );
    peers.set(id, p);
    if (id === "a") a = p;
  }
  if (!a) throw new Error("no peer a");
  const leader = a;
  let queue: Message[] = [];
  let messages = 0;
  const pump = (): number => {
    let leaderReadies = 0;
    for (const p of peers.values()) {
      for (let rd = p.beginReady(); rd; rd = p.beginReady()) {
        if (p === leader) leaderReadies++;
        const out = [...rd.eagerMessages, ...p.finishReady()];
        messages += out.length;
        queue.push(...out);
      }
    }
    const batch = queue;
    queue = [];
    for (const m of batch) (peers.get(m.to) as MemoryPeer).node.step(m);
    return leaderReadies;
  };
  pump(); // apply the bootstrap configuration entry
  leader.node.campaign();
  for (let i = 0; i < 20; i++) pump();
  if (leader.node.basicStatus().role !== "leader") throw new Error("a did not become leader");

  const payload = new Uint8Array(valueBytes).fill(7);
  waiting = proposers;
  let readies = 0;
  messages = 0;
  const start = performance.now();
  let ticks = 0;
  while (performance.now() - start < durationMs) {
    for (; waiting > 0; waiting--) {
      const r = leader.node.propose(payload);
      if (!r.ok) throw new Error(`proposal refused: ${r.code}`);
      inFlight.set(r.index, performance.now());
    }
    readies += pump();
    // Heartbeats keep flowing as in a real group (one tick per 64 host cycles).
    if (++ticks % 64 === 0) for (const p of peers.values()) p.node.tick();
  }
  const secs = (performance.now() - start) / 1000;
  latencies.sort((x, y) => x - y);
  return {
    proposers,
    entriesPerSec: Math.round(committed / secs),
    entriesPerReady: committed / Math.max(1, readies),
    messagesPerEntry: messages / Math.max(1, committed),
    latencyUsP50: Math.round((latencies[Math.floor(latencies.length / 2)] ?? 0) * 1000),
  };
}

const recorded = recordPrinted("bench:raft", tmpdir());
const durationMs = Number(process.env.BENCH_MS ?? 3000);
const valueBytes = 256;
console.log(
  `bench:raft — one 3-node group in memory, ${valueBytes}-byte entries, ${durationMs} ms per run, node ${process.version}`,
);
console.log("proposers  entries/s  entries/leader-ready  msgs/entry  p50 latency");
const results: Result[] = [];
for (const proposers of [1, 64]) {
  run(proposers, 300, valueBytes); // warm-up (JIT)
  const r = run(proposers, durationMs, valueBytes);
  results.push(r);
  console.log(
    `${String(r.proposers).padStart(9)}  ${String(r.entriesPerSec).padStart(9)}  ${r.entriesPerReady.toFixed(1).padStart(20)}  ${r.messagesPerEntry.toFixed(2).padStart(10)}  ${String(r.latencyUsP50).padStart(8)} us`,
  );
}
const [one, many] = results as [Result, Result];
console.log(
  `batching speed-up (64 vs 1 proposers): ${(many.entriesPerSec / one.entriesPerSec).toFixed(1)}x`,
);
recorded();
