/**
 * The recorder's classification of HTTP outcomes into ok / fail / info, and the conversion of
 * recorded ops into the checker's register operations.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { type ChaosOp, classify, type HttpOutcome, toHistoryOp } from "../../src/chaos/history.js";

const answer = (status: number, body = "", revision?: number): HttpOutcome => ({
  kind: "answer",
  status,
  body,
  revision,
});
const err = (status: number, code: string) =>
  answer(status, JSON.stringify({ error: { code, message: "m" } }));
const net = (code: string): HttpOutcome => ({ kind: "error", code, message: code });

test("successful answers are ok, with what they reveal", () => {
  assert.deepEqual(classify("read", answer(200, "v1", 7)), {
    status: "ok",
    result: { value: "v1" },
    revision: 7,
  });
  assert.deepEqual(classify("write", answer(200, '{"revision":9}')), { status: "ok", revision: 9 });
  assert.deepEqual(classify("cas", answer(200, '{"revision":9}')), {
    status: "ok",
    result: { ok: true },
    revision: 9,
  });
  assert.deepEqual(classify("delete", answer(200, '{"revision":10}')), {
    status: "ok",
    revision: 10,
  });
});

test("definite negative answers are ok ops with their meaning", () => {
  // 404 on a read: the key was absent; on a delete: it was absent and nothing changed.
  assert.deepEqual(classify("read", err(404, "NOT_FOUND")), {
    status: "ok",
    result: { value: null },
    code: "NOT_FOUND",
  });
  assert.deepEqual(classify("delete", err(404, "NOT_FOUND")), {
    status: "ok",
    result: { value: null },
    code: "NOT_FOUND",
  });
  // 412 on a cas: the comparison was made and failed.
  assert.deepEqual(classify("cas", err(412, "PRECONDITION_FAILED")), {
    status: "ok",
    result: { ok: false },
    code: "PRECONDITION_FAILED",
  });
});

test("fail: certainly not executed", () => {
  for (const code of ["UNAVAILABLE", "OVERLOADED"]) {
    for (const op of ["read", "write", "cas", "delete"] as const) {
      assert.equal(classify(op, err(503, code)).status, "fail", `${op} ${code}`);
    }
  }
  // Rejected before reaching a shard.
  assert.equal(classify("write", err(400, "BAD_REQUEST")).status, "fail");
  assert.equal(classify("write", err(401, "UNAUTHORIZED")).status, "fail");
  assert.equal(classify("write", err(413, "VALUE_TOO_LARGE")).status, "fail");
  assert.equal(classify("read", err(404, "KEYSPACE_NOT_FOUND")).status, "fail");
  // The connection could not even be made.
  assert.equal(classify("write", net("ECONNREFUSED")).status, "fail");
  assert.equal(classify("write", net("EHOSTUNREACH")).status, "fail");
});

test("info: the outcome is unknown", () => {
  assert.equal(classify("write", err(503, "OUTCOME_UNKNOWN")).status, "info");
  assert.equal(classify("cas", answer(503, "not json")).status, "info");
  assert.equal(classify("write", err(500, "INTERNAL")).status, "info");
  assert.equal(classify("delete", answer(502)).status, "info");
  assert.equal(classify("write", net("ECONNRESET")).status, "info");
  assert.equal(classify("write", net("TIMEOUT")).status, "info");
  assert.equal(classify("write", net("EPIPE")).status, "info");
  const c = classify("write", err(503, "OUTCOME_UNKNOWN"));
  assert.equal(c.code, "OUTCOME_UNKNOWN");
});

test("recorded ops become register operations", () => {
  const base = { id: 1, client: 2, node: "n1", key: "k", call: 1, ret: 2, http: 200 } as const;
  const del404: ChaosOp = { ...base, op: "delete", status: "ok", result: { value: null } };
  assert.deepEqual(toHistoryOp(del404), {
    id: 1,
    client: 2,
    key: "k",
    status: "ok",
    call: 1,
    ret: 2,
    kind: "read",
    result: { value: null },
  });
  const del: ChaosOp = { ...base, op: "delete", status: "ok", revision: 5 };
  assert.equal(toHistoryOp(del).kind, "delete");
  const cas: ChaosOp = {
    ...base,
    op: "cas",
    value: "b",
    expect: "a",
    expectRevision: 4,
    status: "ok",
    result: { ok: false },
  };
  assert.deepEqual(toHistoryOp(cas), {
    id: 1,
    client: 2,
    key: "k",
    status: "ok",
    call: 1,
    ret: 2,
    kind: "cas",
    value: "b",
    expect: "a",
    result: { ok: false },
  });
  const casInfo: ChaosOp = { ...cas, status: "info", http: 0 };
  assert.equal(toHistoryOp(casInfo).result, undefined);
  const read: ChaosOp = { ...base, op: "read", status: "ok", result: { value: "v" }, revision: 3 };
  assert.deepEqual(toHistoryOp(read).result, { value: "v" });
});
