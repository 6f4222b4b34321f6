/**
 * Crash safety of LmdbEngine: a child process writes numbered sync batches and is killed with
 * SIGKILL at a random moment; the store must then hold every acknowledged batch, and no batch
 * partially.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { compareBytes, decodeU64, LmdbEngine, strBytes } from "../../src/storage/index.js";
import { removeDir, tempDir } from "./_util.js";
import { batchKey, batchValue, KEYS_PER_BATCH } from "./crash_child.js";

const CHILD = fileURLToPath(new URL("./crash_child.js", import.meta.url));
const RUNS = 4;

/** Runs the child until `killAfterMs` after it is ready, kills it; returns the acknowledged batches. */
function runAndKill(
  dir: string,
  killAfterMs: number,
): Promise<{ acked: number[]; signal: string | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CHILD, dir], { stdio: ["ignore", "pipe", "pipe"] });
    const acked: number[] = [];
    let partial = "";
    let stderr = "";
    // A hard bound even if the child never becomes ready.
    const guard = setTimeout(() => child.kill("SIGKILL"), 5000);
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (chunk: string) => {
      const lines = (partial + chunk).split("\n");
      partial = lines.pop() ?? "";
      for (const line of lines) {
        if (line === "ready") setTimeout(() => child.kill("SIGKILL"), killAfterMs);
        else acked.push(Number(line));
      }
    });
    child.stderr.on("data", (d) => {
      stderr += d;
    });
    child.on("error", reject);
    child.on("exit", (_code, signal) => {
      clearTimeout(guard);
      if (signal !== "SIGKILL") reject(new Error(`child exited by itself: ${stderr}`));
      else resolve({ acked, signal });
    });
  });
}

test(`LmdbEngine: acknowledged sync batches survive kill -9, and no batch is partial (${RUNS} runs)`, async (t) => {
  for (let run = 0; run < RUNS; run++) {
    const dir = await tempDir("crash");
    try {
      const killAfterMs = 100 + Math.floor(Math.random() * 900);
      const { acked } = await runAndKill(dir, killAfterMs);
      const engine = await LmdbEngine.open(dir);
      try {
        const c = engine.get(strBytes("c"));
        const counter = c ? decodeU64(c) : 0;
        const maxAcked = acked.length > 0 ? Math.max(...acked) : 0;
        assert.ok(maxAcked > 0, `run ${run}: the child acknowledged nothing in ${killAfterMs} ms`);
        assert.ok(
          counter >= maxAcked,
          `run ${run}: batch ${maxAcked} was acknowledged, store has ${counter}`,
        );
        // Exactly batches 1..counter are present, each with all its keys and exact values.
        const rows = [...engine.scan(strBytes("b/"), strBytes("b0"))];
        assert.equal(
          rows.length,
          counter * KEYS_PER_BATCH,
          `run ${run}: ${rows.length} keys for ${counter} batches`,
        );
        for (let n = 1; n <= counter; n++) {
          for (let j = 0; j < KEYS_PER_BATCH; j++) {
            const row = rows[(n - 1) * KEYS_PER_BATCH + j] as [Uint8Array, Uint8Array];
            assert.equal(
              compareBytes(row[0], batchKey(n, j)),
              0,
              `run ${run}: key of batch ${n}/${j}`,
            );
            assert.deepEqual(row[1], batchValue(n, j), `run ${run}: value of batch ${n}/${j}`);
          }
        }
        t.diagnostic(
          `run ${run}: killed ${killAfterMs} ms after start, ${acked.length} batches acknowledged, ${counter} stored`,
        );
        // The reopened store keeps working.
        await engine.write([{ op: "put", key: strBytes("after"), value: strBytes("crash") }], {
          sync: true,
        });
      } finally {
        await engine.close();
      }
    } finally {
      await removeDir(dir);
    }
  }
});
