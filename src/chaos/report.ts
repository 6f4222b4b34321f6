/**
 * The report of a chaos run: a text summary for the terminal (ending with the one-line verdict
 * that CI greps), report.json for tools, and report.html with a throughput / latency timeline in
 * which the nemesis intervals are shaded, so a person can see availability during each fault.
 */
import type { Availability, Verdict } from "./checker.js";
import type { ChaosOp } from "./history.js";
import type { NemesisEvent } from "./nemesis.js";
import type { S3Audit } from "./s3checker.js";

export interface RunReport {
  readonly workload: "kv" | "s3";
  readonly seed: number;
  readonly replay: string;
  readonly dir: string;
  readonly network: string;
  /** Things the run could not do as asked (e.g. no namespaces), said out loud. */
  readonly notes: readonly string[];
  readonly durationMs: number;
  readonly events: readonly NemesisEvent[];
  readonly availability: Availability;
  readonly verdict: Verdict;
  /** Nodes whose stale reads never matched the final linearizable values. */
  readonly divergence: readonly string[];
  /** Keys whose final value could not be read through some node. */
  readonly unreadable: readonly string[];
  readonly problems: readonly string[];
  readonly valid: boolean;
  /** The S3 workload's durability audit (s3checker.ts); absent for kv. */
  readonly s3?: S3Audit;
}

const f1 = (x: number) => x.toFixed(1);
const pct = (x: number) => `${(100 * x).toFixed(1)}%`;

function linText(r: Verdict["linearizable"]): string {
  if (r.ok === true) return `yes (${r.ops} ops on ${r.keys} keys)`;
  if (r.ok === "unknown") return `UNKNOWN: ${r.reason}`;
  return `NO: ${r.reason}`;
}

export function summaryLine(r: RunReport): string {
  const a = r.availability;
  if (r.s3)
    return (
      `chaos: ${r.workload} ops=${a.ops} ok=${a.ok} fail=${a.fail} info=${a.info} ` +
      `linearizable=${r.verdict.linearizable.ok} lost=${r.verdict.durability.lost} ` +
      `durable=${r.s3.durableReads}/${r.s3.durableReadsExpected} ` +
      `audit=${r.s3.ok ? "ok" : `BAD(${r.s3.violationCount})`} valid=${r.valid}`
    );
  return (
    `chaos: ${r.workload} ops=${a.ops} ok=${a.ok} fail=${a.fail} info=${a.info} ` +
    `linearizable=${r.verdict.linearizable.ok} lost=${r.verdict.durability.lost} ` +
    `revisions=${r.verdict.revisions.ok ? "ok" : "BAD"} valid=${r.valid}`
  );
}

export function textReport(r: RunReport): string {
  const a = r.availability;
  const v = r.verdict;
  const lines: string[] = [];
  lines.push(
    `== chaos run: ${r.workload}, seed ${r.seed}, ${f1(r.durationMs / 1000)} s, network: ${r.network}`,
  );
  for (const n of r.notes) lines.push(`NOTE: ${n}`);
  lines.push("", "nemesis timeline (s since start):");
  if (r.events.length === 0) lines.push("  (no faults)");
  for (const e of r.events) {
    lines.push(
      `  ${f1(e.startMs / 1000).padStart(6)} – ${f1(e.endMs / 1000).padStart(6)}  ${e.description}`,
    );
    for (const p of e.problems) lines.push(`           problem: ${p}`);
  }
  lines.push(
    "",
    `operations: ${a.ops} (ok ${a.ok}, fail ${a.fail}, info ${a.info})`,
    `availability: ${pct(a.okFraction)} of ops ok; longest gap without an ok op: ${f1(a.longestGapMs / 1000)} s (from ${f1(a.longestGapAtMs / 1000)} s)`,
    `linearizable: ${linText(v.linearizable)}`,
  );
  if (v.nonLinearizableKeys > 1)
    lines.push(`  (${v.nonLinearizableKeys} keys are not linearizable)`);
  if (v.linearizableIf503Unknown) {
    const relaxed = v.linearizableIf503Unknown;
    lines.push(
      `  with 503 UNAVAILABLE/OVERLOADED treated as unknown: ${relaxed.ok === true ? "yes" : linText(relaxed)}`,
      v.linearizableIf503Unknown.ok === true
        ? "  => a write answered 503 'not executed' did take effect (the API's claim is wrong)"
        : "  => a genuine consistency violation (independent of how 503s are read)",
    );
  }
  lines.push(
    `durability: ${v.durability.ok ? "ok, the final state of every key is one the history allows" : "VIOLATED"} (` +
      `${v.durability.lost} keys lost a write${v.durability.unknownKeys > 0 ? `, ${v.durability.unknownKeys} undecided` : ""})`,
  );
  for (const fl of v.durability.failures) lines.push(`  ${fl.reason}`);
  if (r.s3) lines.push(...s3AuditLines(r.s3));
  else {
    lines.push(`revisions: ${v.revisions.ok ? "consistent" : "INCONSISTENT"}`);
    for (const p of v.revisions.problems) lines.push(`  ${p}`);
    lines.push(
      `replicas converged: ${r.divergence.length === 0 ? "yes" : `NO: ${r.divergence.join("; ")}`}`,
    );
  }
  if (r.unreadable.length > 0) lines.push(`final reads failed for: ${r.unreadable.join(", ")}`);
  for (const p of r.problems) lines.push(`problem: ${p}`);
  lines.push(
    `checked in ${f1(v.checkMs)} ms`,
    "",
    `history and report: ${r.dir}`,
    `replay the nemesis schedule: ${r.replay}`,
    summaryLine(r),
  );
  return lines.join("\n");
}

function s3AuditLines(a: S3Audit): string[] {
  const lines = [
    `S3 audit (${a.keys} objects through ${a.nodes} nodes): ${a.ok ? "ok" : `VIOLATED (${a.violationCount})`}`,
    `  objects whose last acknowledged write is a put: ${a.expectedPuts}; read back with its SHA-256 ${a.durableReads} of ${a.durableReadsExpected} times (object × node)`,
    `  objects whose last acknowledged write is a delete: ${a.expectedAbsent}; whose final value is open (a write of unknown outcome, or a put concurrent with a delete): ${a.ambiguous}`,
    `  post-heal listing entries read back: ${a.listedChecked}`,
  ];
  for (const v of a.violations) lines.push(`  violation: ${v}`);
  if (a.violationCount > a.violations.length)
    lines.push(`  (${a.violationCount - a.violations.length} more violations)`);
  if (a.oddities.length > 0) lines.push(`  error answers worth a look: ${a.oddities.join("; ")}`);
  const vs = a.versions;
  if (vs)
    lines.push(
      vs.lost === 0
        ? `  versions: every acknowledged put (${vs.puts}) is still a version of its key`
        : `  versions LOST: ${vs.lost} of ${vs.puts} acknowledged puts are not among their key's versions (violations above)`,
    );
  const c = a.chunks;
  if (c)
    lines.push(
      c.underReplicated === 0
        ? `  chunk copies restored: ${c.chunks} chunks on ${c.copiesExpected} nodes each, ${c.restoredMs} ms after the final reads`
        : `  chunk copies NOT restored: ${c.underReplicated} of ${c.chunks} chunks on fewer than ${c.copiesExpected} nodes (${c.examples.join("; ")})`,
    );
  const st = a.strict;
  if (st && st.reclassified > 0) {
    const held = st.linearizable === true && st.lost === 0 && st.auditOk;
    lines.push(
      `  informational: with the ${st.reclassified} writes answered 503 "not executed" (no leader, chunk quorum not reached) counted as failed: ` +
        (held
          ? `still linearizable, durable ${st.durableReads}/${st.durableReadsExpected}`
          : `NOT explained (linearizable=${st.linearizable}, lost=${st.lost}, audit ${st.auditOk ? "ok" : "violated"}): such a 503 may have taken effect${st.first ? `; ${st.first}` : ""}`),
    );
  }
  return lines;
}

const esc = (s: string) =>
  s.replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c] ?? c);

/** Bins of the throughput chart. */
const BIN_MS = 250;
/** Latency points drawn at most (a sample beyond). */
const POINTS_MAX = 6000;

export function htmlReport(r: RunReport, ops: readonly ChaosOp[]): string {
  const width = 1100;
  const plotH = 160;
  const left = 50;
  const endMs = maxOf(r.durationMs, ops, (o) => o.ret);
  const x = (ms: number) => left + ((width - left - 10) * ms) / Math.max(1, endMs);
  const bins = Math.ceil(endMs / BIN_MS) + 1;
  const counts = Array.from({ length: bins }, () => ({ ok: 0, fail: 0, info: 0 }));
  for (const o of ops) {
    const b = counts[Math.floor((o.status === "info" ? o.call : o.ret) / BIN_MS)];
    if (b) b[o.status]++;
  }
  const maxCount = maxOf(1, counts, (c) => c.ok + c.fail + c.info);
  const y1 = (n: number) => 20 + plotH - (plotH * n) / maxCount;
  const bars: string[] = [];
  counts.forEach((c, i) => {
    const x0 = x(i * BIN_MS);
    const w = Math.max(1, x((i + 1) * BIN_MS) - x0 - 0.5);
    let base = 0;
    for (const [k, color] of [
      ["ok", "#3a3"],
      ["fail", "#e90"],
      ["info", "#d33"],
    ] as const) {
      const n = c[k];
      if (n === 0) continue;
      bars.push(
        `<rect x="${x0.toFixed(1)}" y="${y1(base + n).toFixed(1)}" width="${w.toFixed(1)}" height="${(y1(base) - y1(base + n)).toFixed(1)}" fill="${color}"/>`,
      );
      base += n;
    }
  });
  // Latency panel: log scale from 1 ms to the largest latency.
  const top2 = 20 + plotH + 40;
  const lat = ops.filter((o) => o.status !== "info");
  const step = Math.max(1, Math.ceil(lat.length / POINTS_MAX));
  const maxLat = maxOf(10, lat, (o) => o.ret - o.call);
  const y2 = (ms: number) =>
    top2 + plotH - (plotH * Math.log10(Math.max(1, ms))) / Math.log10(maxLat);
  const dots: string[] = [];
  for (let i = 0; i < lat.length; i += step) {
    const o = lat[i]!;
    const color = o.status === "ok" ? (o.op === "read" ? "#36c" : "#3a3") : "#e90";
    dots.push(
      `<circle cx="${x(o.ret).toFixed(1)}" cy="${y2(o.ret - o.call).toFixed(1)}" r="1.3" fill="${color}"/>`,
    );
  }
  const shades = r.events.map(
    (e) =>
      `<rect x="${x(e.startMs).toFixed(1)}" y="10" width="${Math.max(1, x(e.endMs) - x(e.startMs)).toFixed(1)}" height="${top2 + plotH - 10}" fill="${shadeColor(e.kind)}" opacity="0.35"><title>${esc(e.description)}</title></rect>`,
  );
  const ticks: string[] = [];
  for (let s = 0; s * 1000 <= endMs; s += endMs > 60_000 ? 10 : 5) {
    ticks.push(
      `<text x="${x(s * 1000).toFixed(1)}" y="${top2 + plotH + 15}" font-size="10" text-anchor="middle">${s}s</text>`,
    );
  }
  const svgH = top2 + plotH + 25;
  const rows = r.events
    .map(
      (e) =>
        `<tr><td>${f1(e.startMs / 1000)}</td><td>${f1(e.endMs / 1000)}</td><td style="background:${shadeColor(e.kind)}">${e.kind}</td><td>${esc(e.description)}${e.problems.map((p) => `<br><b>problem:</b> ${esc(p)}`).join("")}</td></tr>`,
    )
    .join("\n");
  return `<!doctype html><html><head><meta charset="utf-8"><title>kumo chaos ${r.seed}</title>
<style>body{font-family:sans-serif;margin:20px}pre{background:#f4f4f4;padding:10px}td{padding:2px 8px;vertical-align:top}</style></head><body>
<h1>Kumo chaos run — ${r.workload}, seed ${r.seed}</h1>
<p><b>${r.valid ? "no violation found" : "VIOLATION"}</b> — ${esc(summaryLine(r))}</p>
<svg width="${width}" height="${svgH}" xmlns="http://www.w3.org/2000/svg">
${shades.join("\n")}
<text x="5" y="15" font-size="11">ops per ${BIN_MS} ms (green ok, orange fail, red info) — max ${maxCount}</text>
${bars.join("\n")}
<text x="5" y="${top2 - 5}" font-size="11">latency, log scale 1 ms – ${Math.round(maxLat)} ms (blue reads, green writes, orange failed)</text>
${dots.join("\n")}
${ticks.join("\n")}
</svg>
<h2>Nemesis timeline</h2><table><tr><th>from (s)</th><th>to (s)</th><th>kind</th><th>fault</th></tr>${rows}</table>
<h2>Report</h2><pre>${esc(textReport(r))}</pre></body></html>
`;
}

/** The largest f(x), at least `floor` (no spread: histories can exceed the argument limit). */
function maxOf<T>(floor: number, xs: readonly T[], f: (x: T) => number): number {
  let m = floor;
  for (const x of xs) m = Math.max(m, f(x));
  return m;
}

function shadeColor(kind: NemesisEvent["kind"]): string {
  switch (kind) {
    case "kill":
      return "#f99";
    case "pause":
      return "#fd8";
    case "partition":
      return "#9cf";
    case "netem":
      return "#cbf";
    case "drain":
      return "#9e9";
  }
}
