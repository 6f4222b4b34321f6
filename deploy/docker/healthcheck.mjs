/**
 * The Kumo image's HEALTHCHECK (slim images have no curl): GET /healthz on this node's API port,
 * exit 0 on 200 and 1 otherwise. The address is KUMO_API (the image sets 0.0.0.0:7001); a
 * wildcard host is reached on the loopback. /healthz is liveness only (the process and its event
 * loop run): readiness (/readyz) depends on the other nodes and is for load balancers.
 */
const api = process.env.KUMO_API || "127.0.0.1:7001";
const i = api.lastIndexOf(":");
let host = api.slice(0, i);
if (host === "" || host === "0.0.0.0" || host === "::" || host === "[::]") host = "127.0.0.1";
const url = `http://${host}:${api.slice(i + 1)}/healthz`;

fetch(url, { signal: AbortSignal.timeout(4000) }).then(
  (r) => process.exit(r.status === 200 ? 0 : 1),
  (e) => {
    console.error(`healthcheck: ${url}: ${e.message}`);
    process.exit(1);
  },
);
