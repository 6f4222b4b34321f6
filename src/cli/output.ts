/**
 * How the CLI prints: aligned, coloured tables on a terminal; tab-separated plain lines when
 * the output goes to a pipe or file (stable for scripts: one record per line, no escape codes);
 * JSON with `--json`. Colours follow the usual conventions: off when stdout is not a terminal,
 * with NO_COLOR set, or TERM=dumb; FORCE_COLOR=1 turns them on anyway.
 */

export interface OutputMode {
  /** Print JSON documents instead of tables. */
  readonly json: boolean;
  /** stdout is a terminal: align columns. */
  readonly tty: boolean;
  /** Use ANSI colours. */
  readonly color: boolean;
}

export function outputMode(
  o: { json?: boolean },
  env: NodeJS.ProcessEnv = process.env,
  isTTY = Boolean(process.stdout.isTTY),
): OutputMode {
  const forced = env.FORCE_COLOR !== undefined && env.FORCE_COLOR !== "0";
  const color = forced || (isTTY && env.NO_COLOR === undefined && env.TERM !== "dumb");
  return { json: Boolean(o.json), tty: isTTY, color: color && !o.json };
}

export type Style = "bold" | "dim" | "red" | "green" | "yellow" | "cyan";

const SGR: Record<Style, [number, number]> = {
  bold: [1, 22],
  dim: [2, 22],
  red: [31, 39],
  green: [32, 39],
  yellow: [33, 39],
  cyan: [36, 39],
};

export function paint(mode: OutputMode, style: Style | undefined, s: string): string {
  if (!mode.color || !style) return s;
  const [on, off] = SGR[style];
  return `\x1b[${on}m${s}\x1b[${off}m`;
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: matching ANSI escapes is the point
const ANSI = /\x1b\[[0-9;]*m/g;

/** Width on screen: escape codes take none. */
export function visibleWidth(s: string): number {
  return s.replace(ANSI, "").length;
}

/** The colour a liveness or health word gets. */
export function stateStyle(state: string): Style | undefined {
  switch (state) {
    case "alive":
    case "self":
    case "active":
    case "ok":
    case "SERVING":
      return "green";
    case "suspect":
    case "draining":
    case "degraded":
      return "yellow";
    case "dead":
    case "removed":
    case "unreachable":
    case "NONE":
      return "red";
    default:
      return undefined;
  }
}

/** A cell: text, optionally styled. */
export type Cell = string | { readonly text: string; readonly style?: Style };

/**
 * A table: on a terminal, columns padded to their widest cell with a bold header; otherwise
 * tab-separated lines with the header first (cut/awk friendly).
 */
export function renderTable(
  mode: OutputMode,
  headers: readonly string[],
  rows: readonly (readonly Cell[])[],
): string {
  const text = (c: Cell) => (typeof c === "string" ? c : c.text);
  if (!mode.tty) {
    return [headers.join("\t"), ...rows.map((r) => r.map(text).join("\t"))].join("\n");
  }
  const widths = headers.map((h, i) =>
    Math.max(h.length, ...rows.map((r) => text(r[i] ?? "").length)),
  );
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) =>
        i === cells.length - 1 ? c : c + " ".repeat((widths[i] ?? 0) - visibleWidth(c)),
      )
      .join("  ")
      .trimEnd();
  const head = line(headers.map((h, i) => paint(mode, "bold", h.padEnd(widths[i] ?? 0))));
  const body = rows.map((r) =>
    line(r.map((c) => (typeof c === "string" ? c : paint(mode, c.style, c.text)))),
  );
  return [head, ...body].join("\n");
}

/** 1536 → "1.5 KiB". */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(v >= 100 ? 0 : 1)} ${units[u]}`;
}

/** 65 → "1m05s"; 3725 → "1h02m". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "--";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}
