/**
 * Judging a recorded KV history.
 *
 * - Linearizability: the simulator's checker (src/sim/linearizability.ts), per key, with "info"
 *   ops as possibly-happened. If it fails, the same history is checked again with every
 *   "not executed" 503 (UNAVAILABLE, OVERLOADED) turned into "info": if that passes, the
 *   violation is the API claiming a write did not happen when it did, rather than a stale or
 *   lost read, and the report says which.
 * - Durability: the post-heal reads of every key (made through every node) are appended to the
 *   history as ok reads, after everything else, and each key is checked again. The final state
 *   must be a possible final state of the history: every acknowledged write not overwritten is
 *   still there, nothing failed comes back. A key failing only this check lost (or resurrected)
 *   a write: `lost` counts such keys.
 * - Revisions: a value names exactly one write (values are unique), so every ok op that shows
 *   a value must show the same revision with it, different values must never share a revision,
 *   and a key's revision never goes back in real time (docs/kv-api.md: "Revisions of a key only
 *   grow"). The revision-based CAS is only equivalent to the checker's value-based CAS if this
 *   holds, so it is checked rather than assumed.
 */
import {
  checkLinearizable,
  type HistoryOp,
  type LinearizabilityResult,
} from "../sim/linearizability.js";
import { type ChaosOp, toHistoryOp } from "./history.js";

export interface Verdict {
  /** The first violation found (or undecided key), else the counts of what was checked. */
  readonly linearizable: LinearizabilityResult;
  /** Keys whose workload history is not linearizable. */
  readonly nonLinearizableKeys: number;
  /** Set when the history is not linearizable: the same check with 503 "not executed" as info. */
  readonly linearizableIf503Unknown?: LinearizabilityResult;
  readonly durability: {
    readonly ok: boolean;
    /**
     * Keys whose workload history is linearizable but whose final state it cannot explain (an
     * acknowledged write lost, or a failed one resurrected).
     */
    readonly lost: number;
    readonly failures: readonly { key: string; reason: string }[];
    readonly unknownKeys: number;
  };
  readonly revisions: { readonly ok: boolean; readonly problems: readonly string[] };
  readonly checkMs: number;
}

/** Problems reported per check, at most (the first ones are the useful ones). */
const PROBLEMS_MAX = 10;

/**
 * Checks key by key (linearizability is compositional, and the checker splits by key anyway),
 * so that every failing key is counted and the durability verdict only covers keys whose run
 * was linearizable: a key that already failed would fail the final-state check too, and
 * counting it as "lost" would blame durability for a consistency violation.
 */
export function checkHistory(workload: readonly ChaosOp[], finals: readonly ChaosOp[]): Verdict {
  const started = performance.now();
  const byKey = new Map<string, ChaosOp[]>();
  for (const op of workload) pushTo(byKey, op.key, op);
  let end = 0;
  for (const o of workload) end = Math.max(end, o.status === "ok" ? o.ret : o.call);
  const finalsByKey = new Map<string, HistoryOp[]>();
  for (const f of finals) {
    // Final reads happen after the workload stopped; keep them after every recorded op even if
    // clocks were equal, so they cannot be linearized before anything.
    const h = toHistoryOp(f);
    pushTo(finalsByKey, f.key, {
      ...h,
      call: Math.max(h.call, end + 1),
      ret: Math.max(h.ret, end + 2),
    });
  }
  let firstBad: LinearizabilityResult | undefined;
  let firstUnknown: LinearizabilityResult | undefined;
  let relaxedBad: LinearizabilityResult | undefined;
  let relaxedChecked = false;
  let nonLinearizableKeys = 0;
  let keys = 0;
  let ops = 0;
  const lostFailures: { key: string; reason: string }[] = [];
  let lost = 0;
  let unknownKeys = 0;
  const keyNames = new Set([...byKey.keys(), ...finalsByKey.keys()]);
  for (const key of keyNames) {
    const keyOps = byKey.get(key) ?? [];
    const history = keyOps.map(toHistoryOp);
    const r = checkLinearizable(history);
    if (r.ok === true) {
      keys += r.keys;
      ops += r.ops;
    } else if (r.ok === "unknown") {
      firstUnknown ??= r;
      continue;
    } else {
      nonLinearizableKeys++;
      firstBad ??= r;
      // Would it pass if every "not executed" 503 had been an unknown outcome?
      const relaxed = checkLinearizable(
        keyOps.map((op) =>
          op.status === "fail" && op.http === 503
            ? toHistoryOp({ ...op, status: "info" })
            : toHistoryOp(op),
        ),
      );
      relaxedChecked = true;
      if (relaxed.ok !== true) relaxedBad ??= relaxed;
      continue;
    }
    const fs = finalsByKey.get(key);
    if (!fs) continue;
    const d = checkLinearizable([...history, ...fs]);
    if (d.ok === false) {
      lost++;
      if (lostFailures.length < PROBLEMS_MAX) lostFailures.push({ key, reason: d.reason });
    } else if (d.ok === "unknown") unknownKeys++;
  }
  const linearizable = firstBad ?? firstUnknown ?? { ok: true as const, keys, ops };
  const linearizableIf503Unknown: LinearizabilityResult | undefined = relaxedChecked
    ? (relaxedBad ?? { ok: true, keys: nonLinearizableKeys, ops: 0 })
    : undefined;
  return {
    linearizable,
    nonLinearizableKeys,
    ...(linearizableIf503Unknown ? { linearizableIf503Unknown } : {}),
    durability: { ok: lost === 0, lost, failures: lostFailures, unknownKeys },
    revisions: checkRevisions([...workload, ...finals]),
    checkMs: performance.now() - started,
  };
}

/** See the module comment: one revision per value, one value per revision, never backwards. */
export function checkRevisions(ops: readonly ChaosOp[]): Verdict["revisions"] {
  const problems: string[] = [];
  const revOfValue = new Map<string, { rev: number; id: number }>();
  const valueOfRev = new Map<string, { value: string; id: number }>();
  /** Per key: (call, ret, revision) of ok ops that showed a revision of a present value. */
  const seen = new Map<string, { call: number; ret: number; rev: number; id: number }[]>();
  for (const op of ops) {
    if (op.status !== "ok" || op.revision === undefined) continue;
    let value: string | undefined;
    if (op.op === "read") value = op.result?.value ?? undefined;
    else if (op.op === "write" || (op.op === "cas" && op.result?.ok)) value = op.value;
    else if (op.op === "delete") value = `(delete #${op.id})`; // a delete's revision is its own
    if (value === undefined) continue;
    const vk = `${op.key}\u0000${value}`;
    const rk = `${op.key}\u0000${op.revision}`;
    const r = revOfValue.get(vk);
    if (r && r.rev !== op.revision) {
      problems.push(
        `key ${op.key}: value ${value} has revision ${r.rev} (op #${r.id}) and ${op.revision} (op #${op.id})`,
      );
    } else revOfValue.set(vk, { rev: op.revision, id: op.id });
    const v = valueOfRev.get(rk);
    if (v && v.value !== value) {
      problems.push(
        `key ${op.key}: revision ${op.revision} names ${v.value} (op #${v.id}) and ${value} (op #${op.id})`,
      );
    } else valueOfRev.set(rk, { value, id: op.id });
    pushTo(seen, op.key, { call: op.call, ret: op.ret, rev: op.revision, id: op.id });
  }
  // Real-time order: if A returned before B was called, B's revision is at least A's.
  for (const [key, list] of seen) {
    const byRet = [...list].sort((a, b) => a.ret - b.ret);
    const byCall = [...list].sort((a, b) => a.call - b.call);
    let i = 0;
    let max: { rev: number; id: number } | undefined;
    for (const b of byCall) {
      while (i < byRet.length && byRet[i]!.ret < b.call) {
        const a = byRet[i++]!;
        if (!max || a.rev > max.rev) max = { rev: a.rev, id: a.id };
      }
      if (max && b.rev < max.rev) {
        problems.push(
          `key ${key}: op #${b.id} saw revision ${b.rev} after op #${max.id} had seen ${max.rev}`,
        );
      }
    }
  }
  return { ok: problems.length === 0, problems: problems.slice(0, PROBLEMS_MAX) };
}

function pushTo<K, V>(map: Map<K, V[]>, key: K, value: V): void {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

export interface Availability {
  readonly ops: number;
  readonly ok: number;
  readonly fail: number;
  readonly info: number;
  readonly okFraction: number;
  /** The longest stretch with no ok completion, and where it started (ms since the run start). */
  readonly longestGapMs: number;
  readonly longestGapAtMs: number;
}

export function availability(ops: readonly ChaosOp[], fromMs: number, toMs: number): Availability {
  let ok = 0;
  let fail = 0;
  let info = 0;
  const okTimes: number[] = [];
  for (const op of ops) {
    if (op.status === "ok") {
      ok++;
      okTimes.push(op.ret);
    } else if (op.status === "fail") fail++;
    else info++;
  }
  okTimes.sort((a, b) => a - b);
  let prev = fromMs;
  let longestGapMs = 0;
  let longestGapAtMs = fromMs;
  for (const t of [...okTimes, toMs]) {
    if (t - prev > longestGapMs) {
      longestGapMs = t - prev;
      longestGapAtMs = prev;
    }
    prev = Math.max(prev, t);
  }
  return {
    ops: ops.length,
    ok,
    fail,
    info,
    okFraction: ops.length === 0 ? 0 : ok / ops.length,
    longestGapMs,
    longestGapAtMs,
  };
}
