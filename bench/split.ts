/**
 * `npm run bench:split`: what a shard split costs the event loop of each replica. Every replica
 * applies the split entry at the same log position, copying the right half into the new shard
 * inside one batch, so the synchronous part of that copy is a stall of the whole group. Loads
 * one shard machine on a real LmdbEngine with N index-like keys (about 180 bytes each, N = 300,000
 * ≈ 55 MB: a 64 MiB split threshold), then times, on the event loop: the size scan, the middle
 * key, the split's apply, the engine write (call and until durable).
 *
 * A benchmark, not a test: it prints numbers; docs/benchmarks.md ("Splits") discusses them.
 *   --keys / BENCH_SPLIT_KEYS    keys in the shard (300,000)
 *   --dir / BENCH_DIR            where the LMDB environment goes (the OS temp directory)
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { encodeCommand, ShardMachine } from "../src/shard/index.js";
import { LmdbEngine, type WriteOp } from "../src/storage/index.js";
import { fmt, numberOption, option, recordPrinted } from "./_lib.js";

const keys = numberOption("keys", "BENCH_SPLIT_KEYS", 300_000);
const baseDir = option("dir", "BENCH_DIR", tmpdir());
const enc = new TextEncoder();

async function main(): Promise<void> {
  const dir = mkdtempSync(join(baseDir, "kumo-bench-split-"));
  const engine = await LmdbEngine.open(dir);
  try {
    const m = new ShardMachine(engine, "p");
    const value = new Uint8Array(150).fill(120);
    let index = 10;
    let ops: WriteOp[] = [];
    const commit = async () => {
      m.stageApplied(ops);
      await engine.write(ops, { sync: false });
      m.batchCommitted();
      ops = [];
      await engine.flush();
    };
    const t0 = performance.now();
    for (let i = 0; i < keys; i++) {
      // Object-index-like keys, written out of key order as S3 PUTs are.
      const key = enc.encode(
        `h/bucket01/k/${String(i % 1000).padStart(3, "0")}/${String(i).padStart(7, "0")}`,
      );
      const cmd = encodeCommand({ op: "put", key, value, cond: { kind: "none" } });
      m.apply({ term: 1, index: ++index, type: "normal", data: cmd }, ops);
      if (ops.length >= 5000) await commit();
    }
    await commit();
    console.log(
      `bench:split — one shard of ${fmt(keys)} keys on LmdbEngine (${dir}), loaded in ${fmt((performance.now() - t0) / 1000, 1)} s`,
    );
    const timed = <T>(what: string, f: () => T): T => {
      const t = performance.now();
      const r = f();
      console.log(`${what.padEnd(44)} ${fmt(performance.now() - t).padStart(6)} ms`);
      return r;
    };
    const size = timed("approximateSize (a full scan, once)", () => m.approximateSize());
    const at = timed("middleKey (scan to the middle byte)", () => m.middleKey());
    if (!at) throw new Error("no middle key");
    const cmd = encodeCommand({ op: "split", at, newShard: "p.1", voters: ["n1"] });
    const r = timed("split apply (copy of the right half, staged)", () =>
      m.apply({ term: 1, index: ++index, type: "normal", data: cmd }, ops),
    );
    if (!r?.ok) throw new Error(`split refused: ${JSON.stringify(r)}`);
    m.stageApplied(ops);
    const staged = ops.length;
    const t = performance.now();
    const w = timed("engine.write call (buffer + log record)", () =>
      engine.write(ops, { sync: true }),
    );
    await w;
    console.log(
      `${"engine.write until durable".padEnd(44)} ${fmt(performance.now() - t).padStart(6)} ms`,
    );
    m.batchCommitted();
    const f = performance.now();
    await engine.flush();
    console.log(
      `${"LMDB commit of the batch (flush)".padEnd(44)} ${fmt(performance.now() - f).padStart(6)} ms`,
    );
    console.log(
      `shard: ${fmt(size.keys)} keys, ${fmt(size.bytes / 2 ** 20, 1)} MiB; split batch: ${fmt(staged)} ops; ` +
        `RSS ${fmt(process.memoryUsage().rss / 2 ** 20)} MiB`,
    );
  } finally {
    await engine.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const recorded = recordPrinted("bench:split", baseDir);
await main();
recorded();
