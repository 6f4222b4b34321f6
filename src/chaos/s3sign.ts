/**
 * A small AWS Signature Version 4 signer (header auth) for the chaos S3 workload, built on the
 * helpers of the S3 door's own verifier (src/api/s3/sigv4.ts) rather than the AWS SDK: the
 * canonical URI and query are computed by the same functions the server verifies with.
 *
 * Signed: `host`, `x-amz-content-sha256` (the body's hex SHA-256, or UNSIGNED-PAYLOAD),
 * `x-amz-date`, and every other header passed in (e.g. `if-none-match`), so nothing on the
 * path can change them without the signature failing.
 */
import { createHash, createHmac } from "node:crypto";
import {
  ALGORITHM,
  canonicalQuery,
  canonicalUri,
  formatAmzDate,
  signingKey,
} from "../api/s3/sigv4.js";

export interface S3Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** Any region works with Kumo (the scope's region is not checked); us-east-1 by default. */
  readonly region?: string;
}

export interface S3RequestToSign {
  readonly method: string;
  /** The path as it will be sent (percent-encoded), without the query. */
  readonly path: string;
  /** The raw query string without "?" ("" when none). */
  readonly query: string;
  /** HOST:PORT, sent as the Host header. */
  readonly host: string;
  /** Hex SHA-256 of the body, or "UNSIGNED-PAYLOAD". */
  readonly payloadHash: string;
  /** More headers to send and sign (names in any case). */
  readonly headers?: Record<string, string>;
}

export const sha256Hex = (data: Uint8Array | string): string =>
  createHash("sha256").update(data).digest("hex");

/**
 * The headers to send: the caller's (lower-cased), host, x-amz-date, x-amz-content-sha256 and
 * authorization. `nowMs` is the signing time (the server allows 15 minutes of skew).
 */
export function signS3Request(
  req: S3RequestToSign,
  cred: S3Credentials,
  nowMs: number = Date.now(),
): Record<string, string> {
  const amzDate = formatAmzDate(nowMs);
  const date = amzDate.slice(0, 8);
  const region = cred.region ?? "us-east-1";
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.headers ?? {})) headers[k.toLowerCase()] = v;
  headers.host = req.host;
  headers["x-amz-date"] = amzDate;
  headers["x-amz-content-sha256"] = req.payloadHash;
  const names = Object.keys(headers).sort();
  const canonicalHeaders = names
    .map((n) => `${n}:${(headers[n] ?? "").replace(/[ \t]+/g, " ").trim()}\n`)
    .join("");
  const uri = canonicalUri(req.path);
  const query = canonicalQuery(req.query);
  if (uri === undefined || query === undefined)
    throw new Error(`cannot sign a malformed target ${req.path}?${req.query}`);
  const canonical = [
    req.method,
    uri,
    query,
    canonicalHeaders,
    names.join(";"),
    req.payloadHash,
  ].join("\n");
  const scope = `${date}/${region}/s3/aws4_request`;
  const stringToSign = [ALGORITHM, amzDate, scope, sha256Hex(canonical)].join("\n");
  const signature = createHmac("sha256", signingKey(cred.secretAccessKey, date, region, "s3"))
    .update(stringToSign, "utf8")
    .digest("hex");
  headers.authorization =
    `${ALGORITHM} Credential=${cred.accessKeyId}/${scope}, ` +
    `SignedHeaders=${names.join(";")}, Signature=${signature}`;
  return headers;
}
