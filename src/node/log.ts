/**
 * Structured logs: one JSON object per line on standard output (pino), with the level, the time,
 * the node id and, for anything about a request, its request id. Secrets never reach the log:
 * nothing logs request headers or the configuration wholesale, and as a second line of defence
 * the fields that could hold one (authorization, tokens, secret keys) are redacted by pino.
 *
 * While tracing is on (src/node/tracing.ts), a line written inside a traced request also carries
 * the trace and span ids (`traceId`, `spanId`) of the active span, to find the request's trace
 * from its log lines and back.
 *
 * `kumo dev` turns these lines into short human-readable ones (`prettyLine`).
 */
import { randomUUID } from "node:crypto";
import type { IncomingMessage } from "node:http";
import { context, isSpanContextValid, type Span, trace } from "@opentelemetry/api";
import pino from "pino";
import { tracing } from "../base/index.js";

export type Logger = pino.Logger;

export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

/** Field paths pino replaces with "[redacted]" wherever a caller might put a secret. */
const REDACT_PATHS = [
  "authorization",
  "token",
  "tokens",
  "adminTokens",
  "secretAccessKey",
  "secretSealed",
  "secretHash",
  "secret",
  "password",
  "*.authorization",
  "*.secretSealed",
  "*.secretHash",
  "*.secret",
  "*.token",
  "*.tokens",
  "*.adminTokens",
  "*.secretAccessKey",
  "*.password",
  "headers.authorization",
  "*.headers.authorization",
  'headers["x-amz-security-token"]',
  '*.headers["x-amz-security-token"]',
];

/** What traceMixin returns when there is nothing to add (never mutated: see mergeMixin). */
const NO_TRACE: Record<string, string> = {};

/** The active span's ids, for every line written inside a traced request. */
function traceMixin(): Record<string, string> {
  if (!tracing.on) return NO_TRACE;
  const sc = trace.getSpanContext(context.active());
  if (sc === undefined || !isSpanContextValid(sc)) return NO_TRACE;
  return { traceId: sc.traceId, spanId: sc.spanId };
}

/** pino's default merge, except that nothing is merged (or allocated) without trace ids. */
function mergeMixin(fields: object, mixin: object): object {
  return mixin === NO_TRACE ? fields : Object.assign(mixin, fields);
}

/** A span's ids as log fields (for lines written outside its context, e.g. on `close`). */
export function traceFields(span: Span | undefined): Record<string, string> {
  if (span === undefined) return NO_TRACE;
  const sc = span.spanContext();
  return { traceId: sc.traceId, spanId: sc.spanId };
}

export function createLogger(opts: {
  readonly level: LogLevel;
  readonly node?: string;
  /** Where lines go (standard output by default; tests pass a stream). */
  readonly destination?: pino.DestinationStream;
}): Logger {
  return pino(
    {
      level: opts.level,
      base: opts.node !== undefined ? { node: opts.node } : {},
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: "[redacted]" },
      // Level names ("info") rather than numbers: readable with grep and jq.
      formatters: { level: (label) => ({ level: label }) },
      mixin: traceMixin,
      mixinMergeStrategy: mergeMixin,
    },
    // Synchronous writes: a fatal error's line must be out before process.exit.
    opts.destination ?? pino.destination({ fd: 1, sync: true }),
  );
}

/** An incoming request id we accept as is: short, and only characters safe in logs and headers. */
const SANE_REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

/**
 * The request id of an incoming request: the client's `x-request-id` when it looks sane (so a
 * proxy's id follows the request through), otherwise a new random one.
 */
export function requestIdOf(req: IncomingMessage): string {
  const given = req.headers["x-request-id"];
  if (typeof given === "string" && SANE_REQUEST_ID.test(given)) return given;
  return randomUUID();
}

const LEVEL_TAGS: Record<string, string> = {
  trace: "TRACE",
  debug: "DEBUG",
  info: "INFO ",
  warn: "WARN ",
  error: "ERROR",
  fatal: "FATAL",
};

/** Fields shown elsewhere in a pretty line, or noise for a person reading a terminal. */
const PRETTY_SKIP = new Set(["level", "time", "msg", "node", "pid", "hostname", "err"]);

/**
 * One log line as a person wants to read it in a terminal (`kumo dev`):
 * `12:03:04.567 INFO  serving api=http://127.0.0.1:7401` (`kumo dev` prefixes the node id).
 * Lines that are not our JSON pass through.
 */
export function prettyLine(line: string): string {
  if (!line.startsWith("{")) return line;
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  if (typeof o.level !== "string" || typeof o.msg !== "string") return line;
  const time = typeof o.time === "string" ? o.time.slice(11, 23) : "";
  const tag = LEVEL_TAGS[o.level] ?? o.level.toUpperCase();
  const fields = Object.entries(o)
    .filter(([k]) => !PRETTY_SKIP.has(k))
    .map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`);
  const err = o.err as { message?: string; stack?: string } | undefined;
  const errText = err ? `\n${err.stack ?? err.message ?? JSON.stringify(err)}` : "";
  return `${time} ${tag} ${o.msg}${fields.length > 0 ? ` ${fields.join(" ")}` : ""}${errText}`;
}
