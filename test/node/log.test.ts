/**
 * The structured log (src/node/log.ts): JSON lines with level names and the node id, secrets
 * redacted even when a caller passes them by mistake, sane request ids, and the short
 * human-readable form `kumo dev` prints.
 */
import assert from "node:assert/strict";
import type { IncomingMessage } from "node:http";
import { Writable } from "node:stream";
import { test } from "node:test";
import { createLogger, prettyLine, requestIdOf } from "../../src/node/log.js";

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString().split("\n").filter(Boolean));
      cb();
    },
  });
  return { lines, stream };
}

test("log lines are JSON with a level name, the time, the node id and the message", () => {
  const { lines, stream } = capture();
  const log = createLogger({ level: "info", node: "n7", destination: stream });
  log.info({ shard: "s1" }, "hello");
  log.debug("not at info");
  assert.equal(lines.length, 1);
  const o = JSON.parse(lines[0] as string) as Record<string, unknown>;
  assert.equal(o.level, "info");
  assert.equal(o.node, "n7");
  assert.equal(o.msg, "hello");
  assert.equal(o.shard, "s1");
  assert.match(String(o.time), /^\d{4}-\d\d-\d\dT/);
});

test("secrets passed to the logger by mistake are redacted", () => {
  const { lines, stream } = capture();
  const log = createLogger({ level: "trace", node: "n1", destination: stream });
  const secret = "s3cr3t-token-value";
  log.info({ authorization: `Bearer ${secret}` }, "a");
  log.info({ headers: { authorization: `Bearer ${secret}`, host: "x" } }, "b");
  log.info({ req: { headers: { authorization: `Bearer ${secret}` } } }, "c");
  log.info({ cfg: { tokens: [secret], adminTokens: [secret], id: "n1" } }, "d");
  log.info({ token: secret, s3: { secretAccessKey: secret } }, "e");
  assert.equal(lines.length, 5);
  for (const l of lines) assert.ok(!l.includes(secret), l);
  assert.match(lines[1] as string, /"host":"x"/, "other fields stay");
});

test("a sane incoming x-request-id is kept; anything else gets a fresh id", () => {
  const req = (id?: string) =>
    ({ headers: id === undefined ? {} : { "x-request-id": id } }) as unknown as IncomingMessage;
  assert.equal(requestIdOf(req("abc-123_X.y:z")), "abc-123_X.y:z");
  for (const bad of [undefined, "", "a b", "x".repeat(200), "evil\r\nheader", '{"json":1}']) {
    const id = requestIdOf(req(bad));
    assert.notEqual(id, bad);
    assert.match(id, /^[0-9a-f-]{36}$/);
  }
  assert.notEqual(requestIdOf(req()), requestIdOf(req()));
});

test("kumo dev's pretty form: time, level, message, fields; other lines pass through", () => {
  const line = JSON.stringify({
    level: "warn",
    time: "2026-01-02T03:04:05.678Z",
    node: "n1",
    reqId: "r1",
    status: 500,
    msg: "request failed",
  });
  assert.equal(prettyLine(line), "03:04:05.678 WARN  request failed reqId=r1 status=500");
  const withErr = JSON.stringify({
    level: "error",
    time: "2026-01-02T03:04:05.678Z",
    msg: "internal error",
    err: { message: "boom", stack: "Error: boom\n    at x" },
  });
  assert.match(prettyLine(withErr), /ERROR internal error\nError: boom/);
  assert.equal(prettyLine("plain text"), "plain text");
  assert.equal(prettyLine("{not json"), "{not json");
});
