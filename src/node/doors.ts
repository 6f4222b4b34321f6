/**
 * The HTTP servers of the client ports (API and S3): plain HTTP, or HTTPS when the node has a
 * client certificate, with the same request handlers and the same limits against slow or
 * oversized clients either way:
 *
 * - headersTimeoutMs: the TLS handshake and the whole request header must arrive within it
 *   (slowloris: a client dribbling a header one byte at a time holds a socket for nothing).
 * - idleTimeoutMs: a connection on which no byte moves either way for this long is closed (a
 *   client stalled mid-body). A transfer that keeps moving is never cut, however long it takes.
 * - headerBytesMax: a larger header block is answered 431 and the connection closed.
 */

import type { Server } from "node:http";
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type ServerResponse,
} from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { assert } from "../base/index.js";
import type { TlsFiles } from "./tls.js";

export interface DoorLimits {
  readonly headersTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly headerBytesMax: number;
  /** Whole-request deadline; 0: none (S3 transfers take as long as they take). */
  readonly requestTimeoutMs: number;
  /** How long an idle keep-alive connection waits for its next request. */
  readonly keepAliveTimeoutMs: number;
}

/** Node checks headersTimeout only this often (30 s by default): a fraction of the timeout. */
function checkingIntervalMs(headersTimeoutMs: number): number {
  return Math.max(50, Math.min(1_000, Math.floor(headersTimeoutMs / 2)));
}

/**
 * A server for one client port; with `tls`, HTTPS serving its current certificate, swapped in
 * (for new connections) whenever `tls` reloads.
 */
export function createDoorServer(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  limits: DoorLimits,
  tls: TlsFiles | undefined,
): Server {
  assert(limits.headersTimeoutMs > 0 && limits.idleTimeoutMs > 0, "door timeouts must be > 0");
  assert(
    limits.requestTimeoutMs === 0 || limits.requestTimeoutMs >= limits.headersTimeoutMs,
    "requestTimeoutMs must be 0 or at least headersTimeoutMs",
  );
  const httpOptions = {
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.requestTimeoutMs,
    keepAliveTimeout: limits.keepAliveTimeoutMs,
    maxHeaderSize: limits.headerBytesMax,
    connectionsCheckingInterval: checkingIntervalMs(limits.headersTimeoutMs),
  };
  let server: Server;
  if (tls) {
    const m = tls.current();
    const https = createHttpsServer(
      { ...httpOptions, cert: m.cert, key: m.key, handshakeTimeout: limits.headersTimeoutMs },
      handler,
    );
    tls.onChange((next) => https.setSecureContext({ cert: next.cert, key: next.key }));
    // https.Server has http.Server's whole API (node merges the interfaces at run time).
    server = https as unknown as Server;
  } else {
    server = createHttpServer(httpOptions, handler);
  }
  // The idle timeout: with no 'timeout' listener, node destroys a socket idle this long.
  server.setTimeout(limits.idleTimeoutMs);
  server.keepAliveTimeout = limits.keepAliveTimeoutMs;
  return server;
}
