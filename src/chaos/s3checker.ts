/**
 * Judging a recorded S3 history (s3workload.ts).
 *
 * - Linearizability and durability: the S3 operations become the KV checker's register
 *   operations on the object keys (checker.ts, unchanged): get → read of the body's hash (null
 *   on NoSuchKey), put → write of the body's hash, delete → delete, conditional put
 *   (`If-None-Match: *`) → cas from null (412: a cas that did not hold), and each listing → one
 *   read per key (present with the hash its ETag names, absent if not listed), all with the
 *   listing's call and return times. A listing is not atomic across keys, and need not be: each
 *   key's entry is a linearizable read of that key within the listing's interval, and
 *   linearizability is checked key by key. The post-heal reads and listings (through every
 *   node) are appended as final reads, so the final state must be one the history allows.
 * - The durability audit says the same in plain terms and counts: for every key, the values
 *   its final state may hold (the acknowledged writes not followed in real time by another
 *   acknowledged write, and every write whose outcome is unknown); a key whose last
 *   acknowledged write is a put, with no unknown write that could follow it, must read back
 *   with that put's SHA-256 through every node. Every key in a post-heal listing must read
 *   back (a 404 or a lasting 503 is a violation) with the hash its ETag names, and every key
 *   that reads back must be listed by every node. Answers that contradict themselves (an ETag
 *   that is not the body's MD5, a listed size that is not the body's) are violations too.
 */
import { checkHistory, type Verdict } from "./checker.js";
import type { ChaosOp } from "./history.js";
import type { S3Op } from "./s3workload.js";

export interface S3Audit {
  /** Object keys audited (used by the workload or listed after healing). */
  readonly keys: number;
  readonly nodes: number;
  /**
   * Keys whose last acknowledged write is a put (or several concurrent puts) that nothing
   * unknown may have replaced.
   */
  readonly expectedPuts: number;
  /** Final reads (key × node) of those keys that returned that put's SHA-256, out of ... */
  readonly durableReads: number;
  readonly durableReadsExpected: number;
  /** Keys whose last acknowledged write is a delete (nothing unknown after it). */
  readonly expectedAbsent: number;
  /** Keys whose final value may be one of several (unknown outcomes, concurrent writes). */
  readonly ambiguous: number;
  /** Listing entries checked after healing (node × key). */
  readonly listedChecked: number;
  readonly violationCount: number;
  /** The first violations, described. */
  readonly violations: readonly string[];
  /** Error answers worth a look that are not violations (kind, status, code: count). */
  readonly oddities: readonly string[];
  readonly ok: boolean;
  /** The informational re-check with "not executed" 503s as failed (the runner adds it). */
  readonly strict?: StrictRecheck;
  /** Chunk copies on the nodes' disks after healing (the runner adds it). */
  readonly chunks?: ChunkCopies;
  /** With bucket versioning: acknowledged puts still among their key's versions. */
  readonly versions?: VersionAudit;
}

/** With bucket versioning: every acknowledged put must still be one of its key's versions. */
export interface VersionAudit {
  /** Acknowledged puts checked. */
  readonly puts: number;
  /** Acknowledged puts whose body is not among their key's versions (each is a violation). */
  readonly lost: number;
}

/**
 * Checks that the body of every acknowledged put (a put answered ok, a conditional put that
 * held) is among the versions of its key: in a versioned bucket nothing but an explicit
 * version delete (which the workload never sends) removes a version. `md5Of` maps a body's
 * SHA-256 to its MD5 (a version's ETag). Keys whose versions could not be listed are skipped
 * (the runner reports them as unreadable).
 */
export function checkVersions(
  ops: readonly S3Op[],
  versions: ReadonlyMap<string, ReadonlySet<string>>,
  md5Of: ReadonlyMap<string, string>,
): VersionAudit & { readonly lostPuts: readonly string[] } {
  let puts = 0;
  const lost: string[] = [];
  for (const op of ops) {
    if (op.status !== "ok" || op.value === undefined) continue;
    if (op.op !== "put" && !(op.op === "cput" && op.result?.ok === true)) continue;
    const have = versions.get(op.key);
    const md5 = md5Of.get(op.value);
    if (have === undefined || md5 === undefined) continue;
    puts++;
    if (!have.has(md5))
      lost.push(
        `${op.key}: acknowledged ${op.op} #${op.id} (sha256 ${op.value.slice(0, 12)}…) is not among its ${have.size} versions`,
      );
  }
  return { puts, lost: lost.length, lostPuts: lost };
}

/**
 * Whether chunk replica counts were restored after healing: every chunk file found on any node's
 * disk must come to be on `copiesExpected` nodes (min(chunk replicas, nodes)).
 */
export interface ChunkCopies {
  readonly chunks: number;
  readonly copiesExpected: number;
  /** Chunks still on fewer nodes when the wait ended (0: restored). */
  readonly underReplicated: number;
  /** How long after the post-heal reads every chunk had its copies (null: never, in the budget). */
  readonly restoredMs: number | null;
  /** A few under-replicated chunks with the nodes holding them. */
  readonly examples: readonly string[];
}

/** Counts copies per chunk over the nodes' chunk inventories (hex names). */
export function chunkCopies(
  inventories: ReadonlyMap<string, ReadonlySet<string>>,
  copiesExpected: number,
  restoredMs: number | null,
): ChunkCopies {
  const holders = new Map<string, string[]>();
  for (const [node, hexes] of inventories)
    for (const h of hexes) {
      const l = holders.get(h);
      if (l) l.push(node);
      else holders.set(h, [node]);
    }
  const under = [...holders].filter(([, nodes]) => nodes.length < copiesExpected);
  return {
    chunks: holders.size,
    copiesExpected,
    underReplicated: under.length,
    restoredMs: under.length === 0 ? restoredMs : null,
    examples: under.slice(0, 3).map(([h, nodes]) => `${h.slice(0, 12)}… on ${nodes.join(",")}`),
  };
}

export interface S3Verdict {
  readonly verdict: Verdict;
  readonly audit: S3Audit;
}

/**
 * 503 messages of the S3 door that say the write was not executed: the KV layer's UNAVAILABLE
 * ("has no leader", "no leader accepted the write": documented as not executed) and a body
 * whose chunks did not reach their write quorum (before the index entry, the commit point).
 * The door answers all of these and "may or may not have been applied" with the same code
 * (ServiceUnavailable), so the workload records them as unknown; `strictRecheck` asks whether
 * the history also holds if the messages are taken at their word.
 */
const NOT_EXECUTED_503 =
  /has no leader \(a majority|no leader accepted the write|\d+ of \d+ required replicas stored/;

export interface StrictRecheck {
  /** Unknown writes whose 503 message says "not executed", counted as failed. */
  readonly reclassified: number;
  readonly linearizable: true | false | "unknown";
  readonly lost: number;
  readonly auditOk: boolean;
  readonly durableReads: number;
  readonly durableReadsExpected: number;
  /** The first violation, when there is one. */
  readonly first?: string;
}

/** The same checks with "not executed" 503s as failed (see NOT_EXECUTED_503); informational. */
export function strictRecheck(
  workload: readonly S3Op[],
  finals: readonly S3Op[],
  nodes: readonly string[],
): StrictRecheck {
  let reclassified = 0;
  const strict = workload.map((op) => {
    if (
      op.status === "info" &&
      op.http === 503 &&
      op.op !== "get" &&
      op.op !== "list" &&
      NOT_EXECUTED_503.test(op.message ?? "")
    ) {
      reclassified++;
      return { ...op, status: "fail" as const };
    }
    return op;
  });
  const r = checkS3(strict, finals, nodes);
  const lin = r.verdict.linearizable;
  const first =
    lin.ok === false
      ? lin.reason
      : (r.verdict.durability.failures[0]?.reason ?? r.audit.violations[0]);
  return {
    reclassified,
    linearizable: lin.ok,
    lost: r.verdict.durability.lost,
    auditOk: r.audit.ok,
    durableReads: r.audit.durableReads,
    durableReadsExpected: r.audit.durableReadsExpected,
    ...(first !== undefined ? { first } : {}),
  };
}

const VIOLATIONS_MAX = 12;

/** What a register op keeps of any S3 op. */
function commonFields(op: S3Op) {
  const { id, client, node, key, call, ret, status, http } = op;
  return { id, client, node, key, call, ret, status, http };
}

/**
 * The S3 history as register operations (see the module comment). The per-key reads a listing
 * becomes get fresh ids from `firstIdFree` on.
 */
export function toRegisterOps(
  ops: readonly S3Op[],
  universe: readonly string[],
  firstIdFree: number,
): ChaosOp[] {
  // A listing says "absent" only about keys it could have seen: keys used before it returned.
  const firstCall = new Map<string, number>();
  for (const op of ops)
    if (op.op !== "list" && !firstCall.has(op.key)) firstCall.set(op.key, op.call);
  let nextId = firstIdFree;
  const out: ChaosOp[] = [];
  for (const op of ops) {
    const base = {
      ...commonFields(op),
      ...(op.code !== undefined ? { code: op.code } : {}),
      ...(op.error !== undefined ? { error: op.error } : {}),
      ...(op.final ? { final: true as const } : {}),
    };
    switch (op.op) {
      case "get":
        out.push({
          ...base,
          op: "read",
          ...(op.status === "ok" ? { result: { value: op.result?.value ?? null } } : {}),
        });
        break;
      case "put":
        out.push({ ...base, op: "write", value: op.value ?? "" });
        break;
      case "cput":
        out.push({
          ...base,
          op: "cas",
          value: op.value ?? "",
          expect: null,
          ...(op.status === "ok" ? { result: { ok: op.result?.ok === true } } : {}),
        });
        break;
      case "delete":
        out.push({ ...base, op: "delete" });
        break;
      case "list": {
        if (op.status !== "ok") break; // a listing that failed tells nothing
        const listed = new Map((op.result?.listed ?? []).map((e) => [e.key, e.value]));
        const last = op.result?.truncated ? [...listed.keys()].sort().at(-1) : undefined;
        const keys = new Set(listed.keys());
        for (const k of universe) {
          const first = firstCall.get(k);
          if (op.final || (first !== undefined && first < op.ret)) keys.add(k);
        }
        for (const k of [...keys].sort()) {
          // A truncated page says nothing about the keys after its last one.
          if (!listed.has(k) && last !== undefined && k > last) continue;
          out.push({
            ...base,
            id: nextId++,
            key: k,
            op: "read",
            result: { value: listed.get(k) ?? null },
          });
        }
        break;
      }
    }
  }
  return out;
}

/**
 * One register op per S3 op, for the report's availability and timeline (a listing is one
 * read of the bucket, key "").
 */
export function reportOps(ops: readonly S3Op[]): ChaosOp[] {
  return ops.map((op) => {
    const base = commonFields(op);
    switch (op.op) {
      case "get":
      case "list":
        return { ...base, op: "read" };
      case "put":
        return { ...base, op: "write", value: op.value ?? "" };
      case "cput":
        return { ...base, op: "cas", value: op.value ?? "", expect: null };
      default:
        return { ...base, op: "delete" };
    }
  });
}

/** Checks the workload history and the final reads; see the module comment. */
export function checkS3(
  workload: readonly S3Op[],
  finals: readonly S3Op[],
  nodes: readonly string[],
  extra: {
    unreadable?: readonly string[];
    oddities?: ReadonlyMap<string, number>;
    /** With bucket versioning: the ETags of every version of each key, and body MD5 by SHA. */
    versions?: {
      readonly etags: ReadonlyMap<string, ReadonlySet<string>>;
      readonly md5Of: ReadonlyMap<string, string>;
    };
  } = {},
): S3Verdict {
  const universe = new Set<string>();
  for (const op of [...workload, ...finals]) if (op.op !== "list") universe.add(op.key);
  for (const f of finals) for (const e of f.result?.listed ?? []) universe.add(e.key);
  const keys = [...universe].sort();
  let maxId = 0;
  for (const op of [...workload, ...finals]) maxId = Math.max(maxId, op.id);
  const w = toRegisterOps(workload, keys, maxId + 1);
  const f = toRegisterOps(finals, keys, maxId + 1 + w.length);
  const verdict = checkHistory(w, f);

  const violations: string[] = [];
  let violationCount = 0;
  const violation = (v: string) => {
    violationCount++;
    if (violations.length < VIOLATIONS_MAX) violations.push(v);
  };
  for (const op of [...workload, ...finals])
    if (op.mismatch) violation(`op #${op.id} (${op.op} ${op.key} via ${op.node}): ${op.mismatch}`);

  // Final reads by key and node.
  const finalRead = new Map<string, Map<string, string | null>>();
  for (const op of finals) {
    if (op.op !== "get" || op.status !== "ok") continue;
    const m = finalRead.get(op.key) ?? new Map<string, string | null>();
    finalRead.set(op.key, m);
    m.set(op.node, op.result?.value ?? null);
  }
  const short = (v: string | null | undefined) =>
    v === null ? "absent" : v === undefined ? "nothing (unreadable)" : v.slice(0, 16);

  const byKey = new Map<string, S3Op[]>();
  for (const op of workload) {
    if (op.op === "list") continue;
    const list = byKey.get(op.key);
    if (list) list.push(op);
    else byKey.set(op.key, [op]);
  }
  let expectedPuts = 0;
  let expectedAbsent = 0;
  let ambiguous = 0;
  let durableReads = 0;
  let durableReadsExpected = 0;
  for (const key of keys) {
    const ops = byKey.get(key) ?? [];
    // Writes that may have changed the key: ok ones, and unknown ones (a 412 changed nothing).
    const writes = ops.filter(
      (o) =>
        (o.op === "put" || o.op === "delete" || (o.op === "cput" && o.result?.ok !== false)) &&
        o.status !== "fail",
    );
    const acked = writes.filter((o) => o.status === "ok");
    const unknown = writes.filter((o) => o.status === "info");
    const written = (o: S3Op) => (o.op === "delete" ? null : (o.value ?? ""));
    // The last acknowledged writes: those no other acknowledged write started after.
    const last = acked.filter((a) => !acked.some((b) => b !== a && b.call > a.ret));
    const possible = new Set<string | null>([...last, ...unknown].map(written));
    if (acked.length === 0) possible.add(null);
    const reads = finalRead.get(key) ?? new Map<string, string | null>();
    // No unknown write, and the last acknowledged writes are puts (one, or several concurrent
    // ones): the object must read back as one of them. Only deletes last: it must be absent.
    const mustHold = unknown.length === 0 && !possible.has(null);
    if (mustHold) expectedPuts++;
    else if (unknown.length === 0 && possible.size === 1) expectedAbsent++;
    else ambiguous++;
    for (const node of nodes) {
      const got = reads.get(node);
      if (mustHold) {
        durableReadsExpected++;
        if (got !== undefined && possible.has(got)) durableReads++;
      }
      if (!reads.has(node)) continue; // unreadable: reported with the run (and below if listed)
      if (!possible.has(got ?? null)) {
        const puts = mustHold ? last : [];
        violation(
          puts.length > 0
            ? `lost acknowledged put: ${key} = ${puts.map((p) => `${short(written(p))} (op #${p.id}, acknowledged at ${p.ret.toFixed(0)} ms)`).join(" or ")}, ${node} reads ${short(got)}`
            : `${key} through ${node} reads ${short(got)}, which the history cannot leave (possible: ${[...possible].map(short).join(", ")})`,
        );
      }
    }
    const distinct = new Set(reads.values());
    if (distinct.size > 1)
      violation(
        `nodes disagree on ${key}: ${[...reads].map(([n, v]) => `${n}=${short(v)}`).join(", ")}`,
      );
  }

  // Post-heal listings against the post-heal reads.
  let listedChecked = 0;
  const lists = finals.filter((o) => o.op === "list" && o.status === "ok");
  for (const l of lists) {
    const listed = new Map((l.result?.listed ?? []).map((e) => [e.key, e.value]));
    for (const [key, value] of listed) {
      listedChecked++;
      const reads = finalRead.get(key);
      for (const node of nodes) {
        const got = reads?.get(node);
        if (reads === undefined || !reads.has(node)) {
          const why = extra.unreadable?.find((u) => u.startsWith(`${key}@${node} `)) ?? "";
          violation(`${key}, listed by ${l.node}, cannot be read through ${node} ${why}`.trim());
        } else if (got === null)
          violation(`${key}, listed by ${l.node}, reads 404 NoSuchKey through ${node}`);
        else if (got !== value)
          violation(
            `${key}, listed by ${l.node} as ${short(value)}, reads ${short(got)} through ${node}`,
          );
      }
    }
    for (const [key, reads] of finalRead) {
      if (listed.has(key)) continue;
      if ([...reads.values()].some((v) => v !== null))
        violation(`${key} reads back but ${l.node}'s listing does not show it`);
    }
  }

  // Versions: an acknowledged put missing from its key's versions is a lost write like any other.
  const versions = extra.versions
    ? checkVersions(workload, extra.versions.etags, extra.versions.md5Of)
    : undefined;
  for (const v of versions?.lostPuts ?? []) violation(v);

  const oddities = [...(extra.oddities ?? new Map())]
    .sort((a, b) => b[1] - a[1])
    .map(([k, n]) => `${k}: ${n}`);
  return {
    verdict,
    audit: {
      keys: keys.length,
      nodes: nodes.length,
      expectedPuts,
      durableReads,
      durableReadsExpected,
      expectedAbsent,
      ambiguous,
      listedChecked,
      violationCount,
      violations,
      oddities,
      ...(versions ? { versions: { puts: versions.puts, lost: versions.lost } } : {}),
      ok: violationCount === 0,
    },
  };
}
