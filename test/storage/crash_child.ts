/**
 * The victim of crash.test.ts: opens an LmdbEngine in the directory given as argument and writes
 * numbered batches (sync: true) forever, a few in flight at a time, printing each batch number
 * once its promise has resolved. Batch n puts the 8 keys b/<n>/<j> and the counter key "c" = n,
 * so after any crash the batches present must be exactly 1..c, each complete.
 * With a second argument N, it writes exactly N batches one at a time with LMDB commits off
 * (flushDelayMs Infinity: everything durable only in the write-ahead log), prints "done", and
 * waits to be killed (wal.test.ts).
 * Does nothing without an argument (the test runner may load it as a test file).
 */
import { decodeU64, LmdbEngine, strBytes, u64, type WriteOp } from "../../src/storage/index.js";

export const KEYS_PER_BATCH = 8;

export function batchKey(n: number, j: number): Uint8Array {
  return strBytes(`b/${String(n).padStart(8, "0")}/${j}`);
}

/** A value whose length and bytes depend on (n, j), so a torn or misplaced value is visible. */
export function batchValue(n: number, j: number): Uint8Array {
  const v = new Uint8Array(64 + ((n * 131 + j * 977) % 3000));
  v.fill((n * 31 + j) & 0xff);
  v.set(u64(n), 0);
  v[8] = j;
  return v;
}

async function main(dir: string): Promise<void> {
  const engine = await LmdbEngine.open(dir);
  const inFlightMax = 4;
  let inFlight = 0;
  let n = 0;
  process.stdout.write("ready\n");
  for (;;) {
    while (inFlight >= inFlightMax) await new Promise((r) => setImmediate(r));
    n++;
    const batch = n;
    const ops = batchOps(batch);
    inFlight++;
    engine.write(ops, { sync: true }).then(
      () => {
        inFlight--;
        // Pipes are written synchronously on Linux: once printed, the parent can see it.
        process.stdout.write(`${batch}\n`);
      },
      (err) => {
        process.stderr.write(`write failed: ${err}\n`);
        process.exit(2);
      },
    );
  }
}

function batchOps(batch: number): WriteOp[] {
  const ops: WriteOp[] = [];
  for (let j = 0; j < KEYS_PER_BATCH; j++) {
    ops.push({ op: "put", key: batchKey(batch, j), value: batchValue(batch, j) });
  }
  ops.push({ op: "put", key: strBytes("c"), value: u64(batch) });
  return ops;
}

async function writeThenWait(dir: string, count: number): Promise<void> {
  const engine = await LmdbEngine.open(dir, { flushDelayMs: Number.POSITIVE_INFINITY });
  const c = engine.get(strBytes("c"));
  const first = c ? decodeU64(c) + 1 : 1;
  for (let n = first; n < first + count; n++) await engine.write(batchOps(n), { sync: true });
  process.stdout.write("done\n");
  setInterval(() => {}, 1 << 30);
}

const dir = process.argv[2];
const count = process.argv[3];
if (dir && count) void writeThenWait(dir, Number(count));
else if (dir) void main(dir);
