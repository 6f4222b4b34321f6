/**
 * The history a chaos run records: one JSON line per KV operation, and the rules that turn an
 * HTTP outcome into the checker's three statuses.
 *
 *   ok    the operation completed and we know its result;
 *   fail  it certainly did not take effect (and never will);
 *   info  unknown: it may take effect at any time after its call, or never.
 *
 * Getting "fail" wrong is the dangerous direction: an op wrongly called "fail" that did take
 * effect can make a correct system look non-linearizable, and an op wrongly called "info"
 * only weakens the check. So "fail" is used exactly where docs/kv-api.md and the service's
 * retry rules (src/api/kv/service.ts: it only retries attempts that certainly did not take
 * effect, and reports a sent-but-unconfirmed write as OUTCOME_UNKNOWN) promise it.
 *
 * The KV API's compare-and-set compares *revisions*, while the checker's register model
 * compares *values*. Every value written is unique (client and sequence number), so a value
 * names the one write that produced it, and that write has exactly one revision; a cas whose
 * `If-Match` carries the revision observed together with value v therefore succeeds exactly
 * when the register holds v. The revision audit (checker.ts) verifies that premise on the
 * recorded history: one revision per value, one value per revision, revisions that only grow.
 */
import type { HistoryOp, OpStatus } from "../sim/linearizability.js";

export type KvOpKind = "read" | "write" | "cas" | "delete";

/** One recorded operation: a line of history.jsonl. */
export interface ChaosOp {
  readonly id: number;
  /** Worker number; final audit reads use FINAL_CLIENT. */
  readonly client: number;
  /** The node the request was sent to. */
  readonly node: string;
  readonly op: KvOpKind;
  readonly key: string;
  /** write / cas: the (unique) value written. */
  readonly value?: string;
  /** cas: the value the client believes the key holds (null = absent)... */
  readonly expect?: string | null;
  /** ...and the revision observed with it, sent as If-Match (0 = absent). */
  readonly expectRevision?: number;
  /** Milliseconds since the run started (monotonic clock). */
  readonly call: number;
  /** Milliseconds since the run started; for info ops, when the client gave up. */
  readonly ret: number;
  readonly status: OpStatus;
  /** read: value read (null = absent); cas: whether it succeeded. */
  readonly result?: { readonly value?: string | null; readonly ok?: boolean };
  /** The revision the answer reported (ETag of a read, `revision` of a write). */
  readonly revision?: number;
  /** HTTP status; 0 when there was no HTTP answer (see `error`). */
  readonly http: number;
  /** The error code of an error answer (PRECONDITION_FAILED, OUTCOME_UNKNOWN, ...). */
  readonly code?: string;
  /** Network-level failure (ECONNREFUSED, timeout, ...). */
  readonly error?: string;
  /** Part of the post-heal audit rather than the workload. */
  readonly final?: true;
}

export const FINAL_CLIENT = -1;

/** What came back for one request, before classification. */
export type HttpOutcome =
  | {
      readonly kind: "answer";
      readonly status: number;
      readonly body: string;
      /** ETag / X-Kumo-Revision of a read, as a number. */
      readonly revision: number | undefined;
    }
  | {
      readonly kind: "error";
      /** ECONNREFUSED, ECONNRESET, TIMEOUT, ... */
      readonly code: string;
      readonly message: string;
    };

/** Network errors raised before the request could leave: it certainly did not reach a node. */
const NOT_SENT_ERRORS: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "EHOSTUNREACH",
  "ENETUNREACH",
]);

/**
 * 503 codes the API documents as "not executed": UNAVAILABLE (no leader accepted it: the
 * service only gives up after attempts that certainly did not take effect) and OVERLOADED (the
 * proposal queue refused it). OUTCOME_UNKNOWN, and a 503 without a code, are ambiguous.
 */
const NOT_EXECUTED_503: ReadonlySet<string> = new Set(["UNAVAILABLE", "OVERLOADED"]);

export interface Classified {
  readonly status: OpStatus;
  readonly result?: { readonly value?: string | null; readonly ok?: boolean };
  readonly revision?: number;
  readonly code?: string;
}

/** The error code of a documented error body, if it is one. */
export function errorCode(body: string): string | undefined {
  try {
    const j = JSON.parse(body) as { error?: { code?: unknown } };
    return typeof j.error?.code === "string" ? j.error.code : undefined;
  } catch {
    return undefined;
  }
}

function bodyRevision(body: string): number | undefined {
  try {
    const j = JSON.parse(body) as { revision?: unknown };
    return typeof j.revision === "number" ? j.revision : undefined;
  } catch {
    return undefined;
  }
}

/** Classifies the outcome of one operation (a read's body is its value: the workload writes ASCII). */
export function classify(op: KvOpKind, outcome: HttpOutcome): Classified {
  if (outcome.kind === "error") {
    return { status: NOT_SENT_ERRORS.has(outcome.code) ? "fail" : "info" };
  }
  const { status, body } = outcome;
  const code = status >= 400 ? errorCode(body) : undefined;
  const withCode = code !== undefined ? { code } : {};
  if (status === 200) {
    switch (op) {
      case "read":
        return {
          status: "ok",
          result: { value: body },
          ...(outcome.revision !== undefined ? { revision: outcome.revision } : {}),
        };
      case "cas": {
        const revision = bodyRevision(body);
        return { status: "ok", result: { ok: true }, ...(revision ? { revision } : {}) };
      }
      case "write":
      case "delete": {
        const revision = bodyRevision(body);
        return { status: "ok", ...(revision ? { revision } : {}) };
      }
    }
  }
  if (status === 404 && code === "NOT_FOUND" && (op === "read" || op === "delete")) {
    // The key was absent when the op took effect; a delete of an absent key changes nothing.
    return { status: "ok", result: { value: null }, code };
  }
  if (status === 412 && op === "cas") {
    // The comparison was made and did not hold: a definite outcome, and information for the
    // checker (the register did not hold the expected value at that point).
    return { status: "ok", result: { ok: false }, code: "PRECONDITION_FAILED" };
  }
  if (status === 503) {
    return {
      status: code !== undefined && NOT_EXECUTED_503.has(code) ? "fail" : "info",
      ...withCode,
    };
  }
  // 500 INTERNAL (a bug: nothing is promised) and any undocumented status are unknown; other
  // 4xx answers reject the request before it reaches a shard.
  if (status >= 400 && status < 500) return { status: "fail", ...withCode };
  return { status: "info", ...withCode };
}

/**
 * The checker's view of a recorded op. A delete answered 404 took effect as a read of "absent"
 * (it changed nothing), which is more precise than a write of absent.
 */
export function toHistoryOp(op: ChaosOp): HistoryOp {
  const base = {
    id: op.id,
    client: op.client,
    key: op.key,
    status: op.status,
    call: op.call,
    ret: op.ret,
  };
  switch (op.op) {
    case "read":
      return op.status === "ok"
        ? { ...base, kind: "read", result: { value: op.result?.value ?? null } }
        : { ...base, kind: "read" };
    case "write":
      return { ...base, kind: "write", value: op.value ?? "" };
    case "delete":
      if (op.status === "ok" && op.result?.value === null) {
        return { ...base, kind: "read", result: { value: null } };
      }
      return { ...base, kind: "delete" };
    case "cas":
      return {
        ...base,
        kind: "cas",
        value: op.value ?? "",
        expect: op.expect ?? null,
        ...(op.status === "ok" ? { result: { ok: op.result?.ok === true } } : {}),
      };
  }
}
