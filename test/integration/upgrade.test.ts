/**
 * Rolling restart (upgrade) of every node of a real 3-node cluster, one at a time, under
 * continuous load (docs/operations.md, "Rolling upgrades"):
 *
 * - KV clients write and read back (linearizable) their own keys through random nodes, with
 *   the documented retry policy (docs/kv-api.md, "Retrying") and nothing more;
 * - S3 clients (@aws-sdk/client-s3, standard retry mode) put and get small and multi-chunk
 *   objects through a TCP load balancer that sends new connections to nodes whose /readyz
 *   answers 200, as a Kubernetes Service or any health-checking balancer does.
 *
 * Each node in turn gets SIGTERM, exits, and starts again on the same data directory as a "new
 * version" (KUMO_VERSION_SUFFIX), and the next one waits until it is ready and nothing is
 * under-replicated. Asserted: no client request failed after its retries, every acknowledged
 * write reads back with its last value, objects are byte-exact, `kumo status` shows the mixed
 * versions, and each gracefully stopped node led no shard when its HTTP listeners closed
 * (whereas a SIGKILLed node dies leading what it led). Retries and the worst latency per
 * restart are printed, not asserted.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { connect, createServer, type Server, type Socket } from "node:net";
import { after, before, test } from "node:test";
import {
  CreateBucketCommand,
  GetObjectCommand,
  PutObjectCommand,
  type S3Client,
} from "@aws-sdk/client-s3";
import { errorBody, freePort, http, runCli, sleep, TestCluster, waitFor } from "./_cluster.js";
import { bytesOf, s3Client, sha256Hex } from "./_s3.js";

const ROOT = { accessKeyId: "GKROOTTESTKEY0000009", secretAccessKey: "root-secret-for-upgrades" };
/** Load balancers notice a 503 from /readyz within this (their probe interval), in ms. */
const PROBE_EVERY_MS = 100;
const ARGS = [
  "--tick-ms",
  "20",
  "--election-ticks",
  "10",
  // Longer than a probe interval: the balancer stops sending before the listener closes.
  "--shutdown-delay",
  "500ms",
  "--shutdown-leadership-timeout",
  "5s",
  "--shutdown-drain-timeout",
  "5s",
];
const KV_CLIENTS = 4;
const S3_CLIENTS = 2;
const KEYS_PER_CLIENT = 16;
/** The documented KV retry policy (docs/kv-api.md, "Retrying"). */
const KV_ATTEMPTS_MAX = 8;
const KV_BACKOFF_BASE_MS = 50;
const KV_BACKOFF_CAP_MS = 1000;
const KV_ATTEMPT_TIMEOUT_MS = 10_000;
const NEW_SUFFIX = "upgraded";

const tag = randomBytes(3).toString("hex");
const bucket = `upg-${tag}`;
let c: TestCluster;
let lb: TcpBalancer;
const s3s: S3Client[] = [];

function log(msg: string): void {
  console.log(`# upgrade: ${msg}`);
}

/**
 * A layer-4 load balancer: each new client connection goes to a random backend whose probe
 * answered 200 last time (probed every PROBE_EVERY_MS); a backend that refuses the connection
 * is skipped for another ready one (HAProxy's "redispatch"). A connection stays on its backend
 * until either side closes it.
 */
class TcpBalancer {
  private readonly ready = new Set<string>();
  private readonly server: Server;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly sockets = new Set<Socket>();
  address = "";

  constructor(private readonly backends: () => { target: string; probe: string }[]) {
    this.server = createServer((client) => this.accept(client));
  }

  async start(): Promise<void> {
    const port = await freePort();
    await new Promise<void>((r) => this.server.listen(port, "127.0.0.1", r));
    this.address = `127.0.0.1:${port}`;
    const probe = async () => {
      await Promise.all(
        this.backends().map(async (b) => {
          const r = await http(b.probe, {}, 1_000);
          if (r.status === 200) this.ready.add(b.target);
          else this.ready.delete(b.target);
        }),
      );
      // A probe in flight when `stop` ran must not start the loop again (the test process
      // would never exit).
      if (this.stopped) return;
      this.timer = setTimeout(() => void probe(), PROBE_EVERY_MS);
      this.timer.unref();
    };
    await probe();
  }

  private accept(client: Socket, tried: ReadonlySet<string> = new Set()): void {
    this.sockets.add(client);
    client.once("close", () => this.sockets.delete(client));
    client.on("error", () => client.destroy());
    const choices = [...this.ready].filter((t) => !tried.has(t));
    const target = choices[Math.floor(Math.random() * choices.length)];
    if (target === undefined) {
      client.destroy();
      return;
    }
    client.pause();
    const [host, port] = target.split(":") as [string, string];
    const upstream = connect(Number(port), host);
    this.sockets.add(upstream);
    upstream.once("close", () => this.sockets.delete(upstream));
    let connected = false;
    upstream.once("connect", () => {
      connected = true;
      client.pipe(upstream);
      upstream.pipe(client);
      client.resume();
    });
    upstream.on("error", () => {
      if (!connected) {
        upstream.destroy();
        this.accept(client, new Set([...tried, target]));
      } else client.destroy();
    });
    upstream.once("close", () => {
      if (connected) client.destroy();
    });
    client.once("close", () => upstream.destroy());
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}

/** What the clients saw, in windows (one per restart, plus the steady state before). */
interface Window {
  readonly name: string;
  requests: number;
  retries: number;
  latencyMsMax: number;
  /** The slowest request: what it was and its retries. */
  slowest: string;
}

const failures: string[] = [];
function newWindow(name: string): Window {
  return { name, requests: 0, retries: 0, latencyMsMax: 0, slowest: "-" };
}

let window = newWindow("warm-up");
const windows: Window[] = [];
let running = true;

function record(what: string, ms: number, retries: number): void {
  window.requests++;
  window.retries += retries;
  if (ms > window.latencyMsMax) {
    window.latencyMsMax = ms;
    window.slowest = `${what}, ${retries} retries`;
  }
}

/** KV values acknowledged last, per key. */
const kvAcked = new Map<string, string>();
/** SHA-256 of the object acknowledged last, per key. */
const s3Acked = new Map<string, string>();

/**
 * One KV request with the documented retry policy: on a network error (refused, reset, closed
 * without an answer, timed out), 429, or 503, retry at another node after a capped exponential
 * backoff with full jitter, up to KV_ATTEMPTS_MAX attempts. (Only idempotent requests here:
 * plain PUTs and GETs.)
 */
async function kvRequest(
  method: "PUT" | "GET",
  key: string,
  body?: string,
): Promise<{ status: number; text: string; retries: number }> {
  let node = Math.floor(Math.random() * c.nodes.length);
  let last = "";
  for (let attempt = 0; attempt < KV_ATTEMPTS_MAX; attempt++) {
    if (attempt > 0) {
      node = (node + 1 + Math.floor(Math.random() * (c.nodes.length - 1))) % c.nodes.length;
      const capMs = Math.min(KV_BACKOFF_CAP_MS, KV_BACKOFF_BASE_MS * 2 ** (attempt - 1));
      await sleep(Math.random() * capMs);
    }
    const n = c.nodes[node];
    assert.ok(n);
    const r = await http(
      `http://${n.api}/v1/kv/default/${key}`,
      { method, headers: c.auth(), ...(body !== undefined ? { body } : {}) },
      KV_ATTEMPT_TIMEOUT_MS,
    );
    if (r.status !== 0 && r.status !== 429 && r.status !== 503)
      return { status: r.status, text: r.text, retries: attempt };
    last = `${n.id}: ${r.status} ${r.error ?? errorBody(r.text)?.code ?? r.text}`;
  }
  throw new Error(`${method} ${key}: ${KV_ATTEMPTS_MAX} attempts failed; last ${last}`);
}

async function kvClient(i: number): Promise<void> {
  let seq = 0;
  while (running) {
    const key = `upg-${tag}/c${i}/k${seq % KEYS_PER_CLIENT}`;
    const value = `c${i}-v${seq}`;
    seq++;
    const t0 = performance.now();
    try {
      const w = await kvRequest("PUT", key, value);
      record("KV PUT", performance.now() - t0, w.retries);
      if (w.status !== 200) {
        failures.push(`PUT ${key} (${window.name}): ${w.status} ${w.text}`);
        continue;
      }
      kvAcked.set(key, value);
      const t1 = performance.now();
      const r = await kvRequest("GET", key);
      record("KV GET", performance.now() - t1, r.retries);
      if (r.status !== 200) failures.push(`GET ${key} (${window.name}): ${r.status} ${r.text}`);
      else if (r.text !== value)
        failures.push(`GET ${key} (${window.name}): read ${r.text}, last acknowledged ${value}`);
    } catch (e) {
      failures.push(`${window.name}: ${(e as Error).message}`);
    }
  }
}

async function s3Loop(i: number): Promise<void> {
  const s3 = s3s[i] as S3Client;
  let seq = 0;
  while (running) {
    // Small objects live in the index; 1.5 MiB ones are two chunks on the chunk ring.
    const big = seq % 3 === 2;
    const key = `c${i}/o${seq % 6}`;
    seq++;
    const body = randomBytes(big ? (3 << 20) / 2 : 2048);
    const t0 = performance.now();
    try {
      const put = await s3.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
      record(`S3 PUT ${body.length} B`, performance.now() - t0, (put.$metadata.attempts ?? 1) - 1);
      s3Acked.set(key, sha256Hex(body));
      const t1 = performance.now();
      const got = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
      const bytes = await bytesOf(got.Body);
      record(`S3 GET ${body.length} B`, performance.now() - t1, (got.$metadata.attempts ?? 1) - 1);
      if (sha256Hex(bytes) !== sha256Hex(body))
        failures.push(`S3 GET ${key} (${window.name}): ${bytes.length} bytes, not what was put`);
    } catch (e) {
      const err = e as Error & { $metadata?: { attempts?: number } };
      failures.push(
        `S3 ${key} (${window.name}): ${err.name}: ${err.message} after ${err.$metadata?.attempts ?? "?"} attempts`,
      );
    }
  }
}

interface ShutdownLine {
  readonly msg: string;
  readonly phase?: string;
  readonly leading?: number;
  readonly leadingAtClose?: number;
  readonly ms?: number;
  readonly totalMs?: number;
  readonly outcome?: string;
  readonly transferred?: number;
}

/** The node's structured log lines about its shutdown (pino JSON on stdout). */
function shutdownLines(id: string): ShutdownLine[] {
  return c
    .node(id)
    .log.join("")
    .split("\n")
    .flatMap((l) => {
      try {
        const j = JSON.parse(l) as ShutdownLine;
        return typeof j.msg === "string" && j.msg.startsWith("shutdown:") ? [j] : [];
      } catch {
        return [];
      }
    });
}

interface NodeView {
  id: string;
  version?: string | null;
  state?: string;
}

async function clusterView(id: string): Promise<{
  nodes: NodeView[];
  summary: { underReplicated: number; unavailable: number };
  shards: { id: string; leader: string | null }[];
}> {
  const r = await c.req(id, "GET", "/v1/cluster", { timeoutMs: 5_000 });
  assert.equal(r.status, 200, r.text);
  return JSON.parse(r.text);
}

/**
 * Ready everywhere, every shard led, nothing under-replicated, as every node sees it. Returns
 * what it waited on last (for the log).
 */
async function waitHealthy(timeoutMs: number): Promise<string> {
  await c.waitServing(timeoutMs, true);
  let waitedOn = "nothing";
  await waitFor(
    async () => {
      for (const n of c.nodes) {
        const v = await clusterView(n.id);
        if (v.summary.underReplicated > 0 || v.summary.unavailable > 0) {
          const leaderless = v.shards.filter((s) => !s.leader).map((s) => s.id);
          waitedOn = `${n.id}: ${JSON.stringify(v.summary)} ${leaderless.join(",")}`;
          return false;
        }
        const leaderless = v.shards.filter((s) => !s.leader).map((s) => s.id);
        if (leaderless.length > 0) {
          waitedOn = `${n.id}: no leader known for ${leaderless.join(",")}`;
          return false;
        }
      }
      return true;
    },
    timeoutMs,
    "no under-replicated or leaderless shard",
    100,
  );
  return waitedOn;
}

before(async () => {
  c = await TestCluster.start({
    nodes: 3,
    args: ARGS,
    env: { KUMO_S3_ROOT_KEY: `${ROOT.accessKeyId}:${ROOT.secretAccessKey}` },
  });
  lb = new TcpBalancer(() =>
    c.nodes.map((n) => ({ target: n.s3, probe: `http://${n.api}/readyz` })),
  );
  await lb.start();
});

after(async () => {
  running = false;
  for (const s of s3s) s.destroy();
  await lb?.stop();
  await c?.stop();
});

test("rolling restart of every node under load: no failed request, nothing lost, versions shown", {
  timeout: 120_000,
}, async () => {
  // The SDK's standard retry mode, as any S3 application would use it.
  for (let i = 0; i < S3_CLIENTS; i++)
    s3s.push(s3Client(lb.address, ROOT, { retryMode: "standard", maxAttempts: 3 }));
  const admin = s3Client(lb.address, ROOT);
  s3s.push(admin);
  await waitFor(
    async () => {
      await admin.send(new CreateBucketCommand({ Bucket: bucket }));
      return true;
    },
    20_000,
    "bucket created",
    250,
  );
  const oldVersion = (await clusterView("n1")).nodes.find((n) => n.id === "n1")?.version;
  assert.ok(oldVersion && !oldVersion.includes(NEW_SUFFIX), `version ${oldVersion}`);

  const load = [
    ...Array.from({ length: KV_CLIENTS }, (_, i) => kvClient(i)),
    ...Array.from({ length: S3_CLIENTS }, (_, i) => s3Loop(i)),
  ];
  await sleep(1_000);

  const graceful: { id: string; leadingBefore: number; leadingAtClose: number }[] = [];
  for (const n of c.nodes) {
    windows.push(window);
    window = newWindow(`restart ${n.id}`);
    const t0 = Date.now();
    n.env = { KUMO_VERSION_SUFFIX: NEW_SUFFIX };
    // SIGTERM, wait for the exit (SIGKILL only if it overstays every shutdown bound).
    await c.kill(n.id, "SIGTERM", 30_000);
    const stopMs = Date.now() - t0;
    const lines = shutdownLines(n.id);
    const draining = lines.find((l) => l.phase === "draining");
    const closing = lines.find((l) => l.msg === "shutdown: closing the HTTP listeners");
    const handover = lines.find((l) => l.phase === "leadership");
    assert.ok(draining && closing && handover, `${n.id} logged its shutdown:\n${c.logs()}`);
    graceful.push({
      id: n.id,
      leadingBefore: draining.leading ?? -1,
      leadingAtClose: closing.leadingAtClose ?? -1,
    });
    await c.restart(n.id);
    const readyMs = Date.now() - t0;
    const waitedOn = await waitHealthy(30_000);
    log(
      `${n.id}: stopped in ${stopMs} ms (led ${draining.leading} shards, leadership phase ${handover.ms} ms, ${closing.leadingAtClose} led when the listeners closed); ready ${readyMs} ms and healthy ${Date.now() - t0} ms after SIGTERM (last waited on ${waitedOn}); ` +
        `${window.requests} requests, ${window.retries} retries, max latency ${Math.round(window.latencyMsMax)} ms (${window.slowest})`,
    );
    if (n === c.nodes[0]) {
      // Mid-upgrade: `kumo status` shows both versions.
      await waitFor(
        async () => {
          const v = await clusterView("n2");
          return new Set(v.nodes.map((x) => x.version)).size === 2;
        },
        10_000,
        "mixed versions in kumo status",
        250,
      );
      const table = await runCli([
        "status",
        "--endpoint",
        `http://${c.nodes[1]?.api}`,
        "--token",
        c.token,
      ]);
      assert.match(table.stdout, new RegExp(`\\+${NEW_SUFFIX}`), table.stdout);
      assert.match(table.stdout, /VERSION/, table.stdout);
    }
    // Let the leader balancer give the restarted node its shards back before the next one.
    await sleep(500);
  }
  windows.push(window);
  window = newWindow("after");
  await sleep(1_000);
  running = false;
  await Promise.all(load);
  windows.push(window);

  for (const w of windows)
    log(
      `${w.name}: ${w.requests} requests, ${w.retries} retries, max latency ${Math.round(w.latencyMsMax)} ms (${w.slowest})`,
    );
  assert.deepEqual(failures, [], `requests failed after retries:\n${failures.join("\n")}`);
  const total = windows.reduce((n, w) => n + w.requests, 0);
  assert.ok(total > 200, `the load ran (${total} requests)`);

  // The graceful path: every node handed all its leadership over before its listeners closed,
  // and there was something to hand over.
  for (const g of graceful)
    assert.equal(g.leadingAtClose, 0, `${g.id} still led shards when its listeners closed`);
  assert.ok(
    graceful.some((g) => g.leadingBefore > 0),
    `no node led anything when stopped: ${JSON.stringify(graceful)}`,
  );

  // Every node now runs the new version, as every node reports it.
  await waitFor(
    async () => {
      for (const n of c.nodes) {
        const v = await clusterView(n.id);
        if (!v.nodes.every((x) => x.version === `${oldVersion}+${NEW_SUFFIX}`)) return false;
      }
      return true;
    },
    10_000,
    "every node on the new version",
    250,
  );

  // Nothing acknowledged was lost: every key reads back with its last acknowledged value.
  for (const [key, value] of kvAcked) {
    const r = await kvRequest("GET", key);
    assert.equal(r.status, 200, `${key}: ${r.text}`);
    assert.equal(r.text, value, key);
  }
  const reader = s3s[0] as S3Client;
  for (const [key, sha] of s3Acked) {
    const got = await reader.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    assert.equal(sha256Hex(await bytesOf(got.Body)), sha, key);
  }
  log(`${kvAcked.size} KV keys and ${s3Acked.size} objects read back as last acknowledged`);

  // The hard path, for contrast: a SIGKILLed node gets no chance to hand anything over.
  const view = await clusterView("n1");
  const victim = ["n1", "n2", "n3"].find((id) => view.shards.some((s) => s.leader === id));
  assert.ok(victim);
  const led = (await clusterView(victim)).shards.filter((s) => s.leader === victim).length;
  const linesBefore = shutdownLines(victim).length;
  await c.kill(victim, "SIGKILL");
  assert.equal(shutdownLines(victim).length, linesBefore, "SIGKILL: no shutdown phase ran");
  log(`SIGKILL of ${victim}: it died leading ${led} shards (left to elections)`);
  assert.ok(led > 0);
});
