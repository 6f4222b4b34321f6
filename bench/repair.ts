/**
 * `node dist/bench/repair.js` (npm run bench:repair): how long re-replication of a dead node's
 * data takes. A real 4-node cluster (8 shards of the default keyspace, 3 replicas) is loaded
 * with BENCH_REPAIR_MIB of 64 KiB values; then one node is killed with SIGKILL for good. The
 * benchmark polls every survivor's GET /v1/cluster and prints when the node was declared dead
 * (--dead-after), when every shard's placement no longer listed it, and when every shard's Raft
 * voters matched its new placement (the new replicas caught up by snapshot and promoted), with
 * the bytes that had to be copied and the resulting rate.
 *
 * Options (flag or environment variable):
 *   --mib / BENCH_REPAIR_MIB          data loaded before the kill (64)
 *   --dead-after / BENCH_DEAD_AFTER   the nodes' --dead-after (5s)
 *   --dir / BENCH_DIR                 where data directories go (the OS temp directory)
 */
import { tmpdir } from "node:os";
import {
  codeVersion,
  commandLine,
  fmt,
  KvClient,
  loadAverage,
  machine,
  numberOption,
  option,
  recordPrinted,
  startBenchCluster,
} from "./_lib.js";

const mib = numberOption("mib", "BENCH_REPAIR_MIB", 64);
const deadAfter = option("dead-after", "BENCH_DEAD_AFTER", "5s");
const baseDir = option("dir", "BENCH_DIR", tmpdir());
const VALUE_BYTES = 64 << 10;

interface View {
  nodes: { id: string; state?: string }[];
  shards: {
    id: string;
    keyspace: string;
    replicas: string[];
    voters: string[] | null;
    learners: string[] | null;
    leader: string | null;
  }[];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function main(): Promise<void> {
  console.log(`bench:repair — ${commandLine()}`);
  console.log(`machine: ${machine(baseDir)}; code ${codeVersion()}`);
  const cluster = await startBenchCluster({
    nodes: 4,
    baseDir,
    args: ["--shards", "8", "--suspect-after", "1s", "--dead-after", deadAfter],
  });
  try {
    const client = new KvClient(cluster.token, 16, 60_000);
    const apis = cluster.nodes.map((n) => n.api);
    const count = Math.ceil((mib << 20) / VALUE_BYTES);
    const value = Buffer.alloc(VALUE_BYTES, 7);
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        for (let i = next++; i < count; i = next++) {
          const r = await client.send(
            apis[i % 3] as string,
            "PUT",
            `/v1/kv/default/blob-${i}`,
            value,
          );
          if (r.status !== 200) throw new Error(`load failed: ${r.status} ${r.error ?? ""}`);
        }
      }),
    );
    const loadS = (performance.now() - t0) / 1000;
    console.log(`loaded ${count} values of 64 KiB (${mib} MiB) in ${fmt(loadS, 1)} s`);

    const victim = "n4";
    const before = JSON.parse((await cluster.req("n1", "GET", "/v1/cluster")).text) as View;
    const lost = before.shards.filter(
      (s) => s.keyspace === "default" && s.replicas.includes(victim),
    );
    // Each of the victim's replicas is re-created in full on another node.
    const movedMiB = (mib * lost.length) / 8;
    await cluster.kill(victim);
    const tKill = performance.now();
    let tDead: number | undefined;
    let tPlaced: number | undefined;
    let tDone: number | undefined;
    const survivors = ["n1", "n2", "n3"];
    while (tDone === undefined && performance.now() - tKill < 600_000) {
      await sleep(200);
      const views = await Promise.all(
        survivors.map(
          async (n) => JSON.parse((await cluster.req(n, "GET", "/v1/cluster")).text) as View,
        ),
      );
      const v = views[0] as View;
      if (tDead === undefined && v.nodes.find((n) => n.id === victim)?.state === "dead")
        tDead = performance.now();
      const shards = v.shards.filter((s) => s.keyspace === "default");
      if (tPlaced === undefined && shards.every((s) => !s.replicas.includes(victim)))
        tPlaced = performance.now();
      if (tPlaced === undefined) continue;
      // Voters as each shard's leader reports them.
      const settled = shards.every((s) =>
        views.some((vv) => {
          const x = vv.shards.find((y) => y.id === s.id);
          return (
            x?.voters !== null &&
            x?.voters !== undefined &&
            x.leader !== null &&
            x.voters.length === s.replicas.length &&
            s.replicas.every((r) => x.voters?.includes(r)) &&
            (x.learners?.length ?? 0) === 0
          );
        }),
      );
      if (settled) tDone = performance.now();
    }
    const s = (t: number | undefined) =>
      t === undefined ? "never" : `${fmt((t - tKill) / 1000, 1)} s`;
    console.log(
      `killed ${victim} (held ${lost.length} of 8 shards): dead after ${s(tDead)}, re-placed after ${s(tPlaced)}, all voters settled after ${s(tDone)}`,
    );
    if (tDone !== undefined && tDead !== undefined) {
      const copyS = (tDone - tDead) / 1000;
      console.log(
        `re-replicated ${fmt(movedMiB, 0)} MiB in ${fmt(copyS, 1)} s after the dead timeout: ${fmt(movedMiB / copyS, 1)} MiB/s`,
      );
    }
    console.log(`load average at end: ${loadAverage()}`);
  } finally {
    await cluster.stop();
  }
}

const recorded = recordPrinted("bench:repair", baseDir);
await main();
recorded();
