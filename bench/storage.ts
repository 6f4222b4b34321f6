/**
 * `node dist/bench/storage.js [--seconds 2] [--dir /path/on/the/disk/to/test]`: what durable
 * writes cost on this machine. Measures, each for about `--seconds`:
 * - raw fsyncs/s: node:fs 4 KiB write + fdatasync in a loop (the disk's floor);
 * - lmdb-js alone: `await db.put()` in a loop (one synced LMDB transaction each);
 * - LmdbEngine sync batches of 1 and of 64 ops, one at a time;
 * - LmdbEngine with 64 concurrent writers, each awaiting single-op sync batches in a closed loop
 *   (group commit: batches per fsync shows the coalescing);
 * - LmdbEngine sync:false batches (buffered, committed by size/time), including the final
 *   flush that makes them durable. A loop that never yields to the event loop (like this one)
 *   lets commits start only when the buffer reaches `bufferBytesMax` (backpressure).
 * A benchmark, not a test: it prints numbers; docs/storage.md records them.
 */
import { closeSync, fdatasyncSync, openSync, writeSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { open } from "lmdb";
import { LmdbEngine, u64, type WriteOp } from "../src/storage/index.js";
import { recordPrinted } from "./_lib.js";

interface Row {
  name: string;
  batchesPerSec: number;
  opsPerSec: number;
  syncsPerSec: number;
  batchesPerSync: number;
  p50Ms: number;
  p99Ms: number;
}

const VALUE_BYTES = 128;

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined ? (process.argv[i + 1] as string) : fallback;
}

const seconds = Number(arg("seconds", "2"));
const baseDir = arg("dir", tmpdir());
const durationMs = seconds * 1000;

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;
}

function row(
  name: string,
  batches: number,
  opsPerBatch: number,
  syncs: number,
  elapsedMs: number,
  latencies: number[],
): Row {
  latencies.sort((a, b) => a - b);
  return {
    name,
    batchesPerSec: (batches / elapsedMs) * 1000,
    opsPerSec: ((batches * opsPerBatch) / elapsedMs) * 1000,
    syncsPerSec: (syncs / elapsedMs) * 1000,
    batchesPerSync: syncs > 0 ? batches / syncs : Number.NaN,
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
  };
}

async function withDir<T>(tag: string, body: (dir: string) => Promise<T>): Promise<T> {
  const dir = await mkdtemp(join(baseDir, `kumo-bench-${tag}-`));
  try {
    return await body(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function rawFsync(): Promise<Row> {
  return withDir("raw", async (dir) => {
    const fd = openSync(join(dir, "f"), "w");
    const block = Buffer.alloc(4096, 7);
    const lat: number[] = [];
    let n = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < durationMs) {
      const s = performance.now();
      writeSync(fd, block, 0, block.length, 0);
      fdatasyncSync(fd);
      lat.push(performance.now() - s);
      n++;
    }
    const elapsed = performance.now() - t0;
    closeSync(fd);
    return row("raw 4 KiB write + fdatasync", n, 1, n, elapsed, lat);
  });
}

async function lmdbDirect(): Promise<Row> {
  return withDir("lmdbjs", async (dir) => {
    const db = open<Buffer, Buffer>({ path: dir, keyEncoding: "binary", encoding: "binary" });
    const value = Buffer.alloc(VALUE_BYTES, 1);
    const lat: number[] = [];
    let n = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < durationMs) {
      const s = performance.now();
      await db.put(Buffer.from(u64(n)), value);
      lat.push(performance.now() - s);
      n++;
    }
    const elapsed = performance.now() - t0;
    await db.close();
    // lmdb-js syncs every transaction in its default (overlappingSync) mode.
    return row("lmdb-js await db.put (1 op)", n, 1, n, elapsed, lat);
  });
}

function ops(seq: number, count: number, value: Uint8Array): WriteOp[] {
  return Array.from({ length: count }, (_, i) => ({
    op: "put" as const,
    key: u64(seq * count + i),
    value,
  }));
}

/** `writers` closed loops, each awaiting its batch of `opsPerBatch` puts before the next. */
async function engineRun(
  name: string,
  writers: number,
  opsPerBatch: number,
  sync: boolean,
): Promise<Row> {
  return withDir("engine", async (dir) => {
    const engine = await LmdbEngine.open(dir);
    const value = new Uint8Array(VALUE_BYTES).fill(1);
    const lat: number[] = [];
    let seq = 0;
    let batches = 0;
    const s0 = engine.stats().syncs;
    const t0 = performance.now();
    const loop = async () => {
      while (performance.now() - t0 < durationMs) {
        const s = performance.now();
        await engine.write(ops(seq++, opsPerBatch, value), { sync });
        lat.push(performance.now() - s);
        batches++;
      }
    };
    await Promise.all(Array.from({ length: writers }, loop));
    // sync:false batches are only buffered: count the time and the fsyncs to make them durable.
    if (!sync) await engine.flush();
    const elapsed = performance.now() - t0;
    const syncs = engine.stats().syncs - s0;
    await engine.close();
    return row(name, batches, opsPerBatch, syncs, elapsed, lat);
  });
}

function fmt(n: number, digits = 0): string {
  return Number.isNaN(n) ? "-" : n.toFixed(digits);
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  rows.push(await rawFsync());
  rows.push(await lmdbDirect());
  rows.push(await engineRun("LmdbEngine sync, 1 op/batch", 1, 1, true));
  rows.push(await engineRun("LmdbEngine sync, 64 ops/batch", 1, 64, true));
  rows.push(await engineRun("LmdbEngine sync, 64 writers x 1 op", 64, 1, true));
  rows.push(await engineRun("LmdbEngine sync:false, 1 op/batch, + flush", 1, 1, false));

  console.log(
    `storage bench: ${seconds} s per row, ${VALUE_BYTES} B values, dir ${baseDir}, node ${process.version}`,
  );
  const header = [
    "measurement",
    "batches/s",
    "ops/s",
    "fsyncs/s",
    "batches/fsync",
    "p50 ms",
    "p99 ms",
  ];
  const lines = rows.map((r) => [
    r.name,
    fmt(r.batchesPerSec),
    fmt(r.opsPerSec),
    fmt(r.syncsPerSec),
    fmt(r.batchesPerSync, 1),
    fmt(r.p50Ms, 3),
    fmt(r.p99Ms, 3),
  ]);
  const widths = header.map((h, i) =>
    Math.max(h.length, ...lines.map((l) => (l[i] as string).length)),
  );
  const print = (cells: string[]) =>
    console.log(
      `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i] as number) : c.padStart(widths[i] as number))).join(" | ")} |`,
    );
  print(header);
  console.log(
    `|${widths.map((w, i) => (i === 0 ? "-".repeat(w + 2) : `${"-".repeat(w + 1)}:`)).join("|")}|`,
  );
  for (const l of lines) print(l);
}

const recorded = recordPrinted("bench:storage", baseDir);
await main();
recorded();
