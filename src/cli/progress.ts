/**
 * Progress bars with rate and ETA for long CLI operations (uploads, downloads, drains,
 * repairs). Drawn on stderr, and only when stderr is a terminal, so stdout stays clean for
 * scripts and pipes; a non-terminal gets one summary line at the end instead (unless quiet).
 *
 * The rate is an exponentially weighted average over samples at least 200 ms apart, so a
 * stall shows as a falling rate and a growing ETA instead of a frozen one.
 */
import { formatBytes, formatDuration } from "./output.js";

export interface ProgressOptions {
  readonly label: string;
  /** Units of `done`/`total`: bytes are shown as KiB/MiB and rates as MiB/s. */
  readonly unit: "bytes" | "items";
  readonly total?: number;
  /** Where to draw (stderr). */
  readonly stream?: NodeJS.WriteStream | { isTTY?: boolean; write(s: string): boolean };
  /** Draw nothing at all (--json, --quiet). */
  readonly quiet?: boolean;
  /** The clock, in milliseconds (tests pass their own). */
  readonly nowMs?: () => number;
  /** Columns for the whole line (defaults to the terminal's width, at most 100). */
  readonly columns?: number;
}

const SAMPLE_MS = 200;
const DRAW_MS = 100;
/** Weight of the newest sample in the rate average. */
const ALPHA = 0.3;

export class Progress {
  private done = 0;
  private total: number | undefined;
  private rate: number | undefined;
  private lastSample: { t: number; done: number };
  private lastDraw = Number.NEGATIVE_INFINITY;
  private readonly started: number;
  private readonly now: () => number;
  private readonly stream: NonNullable<ProgressOptions["stream"]>;
  private readonly live: boolean;
  private finished = false;

  constructor(private readonly opts: ProgressOptions) {
    this.now = opts.nowMs ?? (() => performance.now());
    this.stream = opts.stream ?? process.stderr;
    this.total = opts.total;
    this.started = this.now();
    this.lastSample = { t: this.started, done: 0 };
    this.live = !opts.quiet && Boolean(this.stream.isTTY);
  }

  /** Sets how much is done (absolute), and the total if it became known or changed. */
  update(done: number, total?: number): void {
    if (this.finished) return;
    this.done = done;
    if (total !== undefined) this.total = total;
    const t = this.now();
    const dt = t - this.lastSample.t;
    if (dt >= SAMPLE_MS) {
      const r = ((done - this.lastSample.done) / dt) * 1000;
      this.rate = this.rate === undefined ? r : ALPHA * r + (1 - ALPHA) * this.rate;
      this.lastSample = { t, done };
    }
    if (this.live && t - this.lastDraw >= DRAW_MS) {
      this.lastDraw = t;
      this.stream.write(`\r${this.line()}\x1b[K`);
    }
  }

  /** Ends the bar: a final line with the average rate (also when not on a terminal). */
  finish(outcome = "done"): void {
    if (this.finished) return;
    this.finished = true;
    if (this.opts.quiet) return;
    const secs = (this.now() - this.started) / 1000;
    const avg = secs > 0 ? this.done / secs : 0;
    const amount = this.amount(this.done);
    const summary = `${this.opts.label}: ${outcome}, ${amount} in ${formatDuration(secs)}${
      secs > 0 && this.done > 0 ? ` (${this.rateText(avg)})` : ""
    }`;
    this.stream.write(this.live ? `\r${summary}\x1b[K\n` : `${summary}\n`);
  }

  /** Ends the bar without a summary, erasing it (the caller prints its own result). */
  clear(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.live) this.stream.write("\r\x1b[K");
  }

  /** The bar line as drawn now (exposed for tests). */
  line(): string {
    const cols = Math.min(100, this.opts.columns ?? (process.stderr.columns || 80));
    const total = this.total;
    const parts: string[] = [];
    if (total !== undefined && total > 0) {
      const frac = Math.min(1, this.done / total);
      parts.push(`${Math.floor(frac * 100)}%`.padStart(4));
      parts.push(`${this.amount(this.done)}/${this.amount(total)}`);
    } else {
      parts.push(this.amount(this.done));
    }
    if (this.rate !== undefined) parts.push(this.rateText(this.rate));
    if (total !== undefined && this.rate !== undefined && this.rate > 0) {
      parts.push(`ETA ${formatDuration(Math.max(0, total - this.done) / this.rate)}`);
    }
    const tail = parts.join("  ");
    const head = this.opts.label;
    const barWidth = cols - head.length - tail.length - 6;
    if (total === undefined || total <= 0 || barWidth < 10) return `${head}  ${tail}`;
    const filled = Math.round(Math.min(1, this.done / total) * barWidth);
    return `${head} [${"#".repeat(filled)}${"-".repeat(barWidth - filled)}] ${tail}`;
  }

  private amount(n: number): string {
    return this.opts.unit === "bytes" ? formatBytes(n) : String(Math.round(n));
  }

  private rateText(perSecond: number): string {
    return this.opts.unit === "bytes"
      ? `${formatBytes(perSecond)}/s`
      : `${perSecond.toFixed(perSecond >= 10 ? 0 : 1)}/s`;
  }
}
