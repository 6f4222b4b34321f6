/** The CLI's tables, colours, durations and progress bars (pure functions, a fake clock). */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { S3Client } from "@aws-sdk/client-s3";
import {
  formatBytes,
  formatDuration,
  outputMode,
  renderTable,
  visibleWidth,
} from "../../src/cli/output.js";
import { Progress } from "../../src/cli/progress.js";
import { PART_MIB_MAX, PART_MIB_MIN, parseS3Url, s3Copy } from "../../src/cli/s3.js";

describe("output mode", () => {
  test("colours only on a terminal, never with NO_COLOR, TERM=dumb or --json; FORCE_COLOR wins", () => {
    assert.equal(outputMode({}, {}, true).color, true);
    assert.equal(outputMode({}, {}, false).color, false);
    assert.equal(outputMode({}, { NO_COLOR: "" }, true).color, false);
    assert.equal(outputMode({}, { TERM: "dumb" }, true).color, false);
    assert.equal(outputMode({}, { FORCE_COLOR: "1" }, false).color, true);
    assert.equal(outputMode({ json: true }, { FORCE_COLOR: "1" }, true).color, false);
  });
});

describe("tables", () => {
  const rows = [
    ["n1", { text: "alive", style: "green" as const }, "12"],
    ["n10", { text: "dead", style: "red" as const }, "0"],
  ];

  test("not a terminal: tab-separated, header first, no escape codes", () => {
    const out = renderTable(outputMode({}, {}, false), ["NODE", "STATE", "REPLICAS"], rows);
    assert.equal(out, "NODE\tSTATE\tREPLICAS\nn1\talive\t12\nn10\tdead\t0");
  });

  test("a terminal: columns aligned on visible width, colours around the cells", () => {
    const mode = outputMode({}, {}, true);
    const out = renderTable(mode, ["NODE", "STATE", "REPLICAS"], rows);
    const lines = out.split("\n");
    assert.equal(lines.length, 3);
    assert.ok(lines[1]?.includes("\x1b[32malive\x1b[39m"));
    // Every column starts at the same visible offset on every line.
    const col = (line: string, word: string) => visibleWidth(line.slice(0, line.lastIndexOf(word)));
    assert.equal(col(lines[0] as string, "STATE"), col(lines[1] as string, "\x1b[32malive"));
    assert.equal(col(lines[0] as string, "REPLICAS"), col(lines[2] as string, "0"));
  });
});

test("bytes and durations read like a human wrote them", () => {
  assert.equal(formatBytes(0), "0 B");
  assert.equal(formatBytes(1536), "1.5 KiB");
  assert.equal(formatBytes(12 * 2 ** 20 + 1), "12.0 MiB");
  assert.equal(formatBytes(300 * 2 ** 30), "300 GiB");
  assert.equal(formatDuration(5), "5s");
  assert.equal(formatDuration(65), "1m05s");
  assert.equal(formatDuration(3725), "1h02m");
  assert.equal(formatDuration(Number.POSITIVE_INFINITY), "--");
});

describe("progress", () => {
  function fake(isTTY: boolean) {
    let t = 0;
    const out: string[] = [];
    const stream = { isTTY, write: (s: string) => out.push(s) > 0 };
    return { clock: () => t, advance: (ms: number) => (t += ms), out, stream };
  }

  test("percent, amounts, rate and ETA from a steady rate", () => {
    const f = fake(true);
    const p = new Progress({
      label: "upload x",
      unit: "bytes",
      total: 100 * 2 ** 20,
      stream: f.stream,
      nowMs: f.clock,
      columns: 100,
    });
    for (let i = 1; i <= 10; i++) {
      f.advance(1000);
      p.update(i * 5 * 2 ** 20); // 5 MiB/s
    }
    const line = p.line();
    assert.match(
      line,
      /^upload x \[#+-+\] {2}50% {2}50\.0 MiB\/100 MiB {2}5\.0 MiB\/s {2}ETA 10s$/,
    );
    assert.ok(line.length <= 100);
    assert.ok(
      f.out.every((s) => s.startsWith("\r")),
      "redrawn in place",
    );
    p.finish("uploaded");
    assert.match(f.out.at(-1) as string, /upload x: uploaded, 50\.0 MiB in 10s \(5\.0 MiB\/s\)/);
  });

  test("a stall lowers the rate and raises the ETA", () => {
    const f = fake(true);
    const p = new Progress({
      label: "d",
      unit: "items",
      total: 100,
      stream: f.stream,
      nowMs: f.clock,
    });
    for (let i = 1; i <= 5; i++) {
      f.advance(1000);
      p.update(i * 10);
    }
    const eta = (l: string) => Number(/ETA (\d+)s/.exec(l)?.[1]);
    const before = eta(p.line());
    for (let i = 0; i < 3; i++) {
      f.advance(1000);
      p.update(50);
    }
    assert.ok(eta(p.line()) > before, `${p.line()} after ${before}`);
  });

  test("clear() erases the bar without a summary (the caller prints its own result)", () => {
    const f = fake(true);
    const p = new Progress({
      label: "put:64 (s)",
      unit: "items",
      total: 10,
      stream: f.stream,
      nowMs: f.clock,
    });
    f.advance(500);
    p.update(1);
    p.clear();
    p.finish();
    assert.equal(f.out.at(-1), "\r\x1b[K");
    assert.equal(f.out.length, 2);
  });

  test("not a terminal: nothing drawn until one summary line; quiet: nothing at all", () => {
    const f = fake(false);
    const p = new Progress({
      label: "drain n3",
      unit: "items",
      total: 8,
      stream: f.stream,
      nowMs: f.clock,
    });
    f.advance(500);
    p.update(8);
    assert.deepEqual(f.out, []);
    p.finish();
    assert.deepEqual(f.out, ["drain n3: done, 8 in 1s (16/s)\n"]);
    const q = fake(true);
    const quiet = new Progress({ label: "x", unit: "items", stream: q.stream, quiet: true });
    quiet.update(1);
    quiet.finish();
    assert.deepEqual(q.out, []);
  });
});

test("s3:// URLs", () => {
  assert.deepEqual(parseS3Url("s3://b/k/x.txt"), { bucket: "b", key: "k/x.txt" });
  assert.deepEqual(parseS3Url("s3://b"), { bucket: "b", key: "" });
  assert.equal(parseS3Url("/tmp/x"), undefined);
  assert.throws(() => parseS3Url("s3:///k"), /no bucket/);
});

test("s3 cp refuses bad arguments before any request: part size bounds, two or no s3:// URLs", async () => {
  // A client that fails the test if it is used at all.
  const client = new Proxy({}, { get: () => assert.fail("no request expected") }) as S3Client;
  const mode = outputMode({ json: true }, {}, false);
  const cp = (src: string, dst: string, partMiB = 8) => s3Copy(client, src, dst, { partMiB, mode });
  for (const bad of [PART_MIB_MIN - 1, PART_MIB_MAX + 1, 5.5])
    await assert.rejects(
      cp("/etc/hostname", "s3://b/k", bad),
      /--part-size must be an integer from 5 to 512/,
    );
  await assert.rejects(cp("s3://a/x", "s3://b/y"), /between two s3:\/\/ URLs is not supported/);
  await assert.rejects(cp("/tmp/a", "/tmp/b"), /must be an s3:\/\/ URL/);
  await assert.rejects(cp("/nonexistent/file", "s3://b/k"), /no such file/);
  await assert.rejects(cp("/tmp", "s3://b/k"), /not a regular file/);
  await assert.rejects(cp("s3://b/dir/", "/tmp/x"), /name an object, not a prefix/);
});
