/**
 * The first moments of a graceful shutdown on a real one-node cluster (the rolling restart
 * under load is test/integration/upgrade.test.ts): after SIGTERM, /readyz answers 503
 * "draining" at once while requests are still served, each with `Connection: close`; a second
 * SIGTERM exits at once instead of waiting out the shutdown bounds.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { sleep, TestCluster, waitFor } from "./_cluster.js";

let c: TestCluster;

before(async () => {
  c = await TestCluster.start({
    nodes: 1,
    shards: 1,
    // Long enough that only a second signal ends the process within this test.
    env: { KUMO_SHUTDOWN_DELAY: "60s" },
  });
});

after(async () => {
  await c?.stop();
});

test("SIGTERM: /readyz 503 draining at once, requests served with Connection: close; a second SIGTERM exits now", {
  timeout: 60_000,
}, async () => {
  const n = c.node("n1");
  const put = await c.req("n1", "PUT", "/v1/kv/default/before", { body: "v1" });
  assert.equal(put.status, 200, put.text);
  const ready = await c.req("n1", "GET", "/readyz");
  assert.equal(ready.status, 200);
  const proc = n.proc;
  assert.ok(proc);
  const exited = new Promise<number | null>((r) => proc.once("exit", (code) => r(code)));

  proc.kill("SIGTERM");
  await waitFor(
    async () => (await c.req("n1", "GET", "/readyz", { timeoutMs: 2_000 })).status === 503,
    10_000,
    "/readyz 503",
  );
  const draining = await c.req("n1", "GET", "/readyz");
  assert.equal(draining.status, 503);
  assert.equal((JSON.parse(draining.text) as { status: string }).status, "draining");
  assert.equal(draining.headers.get("retry-after"), "1");
  // Still serving (the delay lets load balancers notice), but every answer closes its connection.
  const during = await c.req("n1", "PUT", "/v1/kv/default/during", { body: "v2" });
  assert.equal(during.status, 200, during.text);
  assert.equal(during.headers.get("connection"), "close");
  const read = await c.req("n1", "GET", "/v1/kv/default/during");
  assert.equal(read.text, "v2");
  assert.equal(read.headers.get("connection"), "close");
  assert.equal(proc.exitCode, null, "still running within --shutdown-delay");

  await sleep(600); // a second signal right after the first is ignored (main.ts)
  const t0 = Date.now();
  proc.kill("SIGTERM");
  assert.equal(await exited, 1);
  const ms = Date.now() - t0;
  assert.ok(ms < 10_000, `exited ${ms} ms after the second SIGTERM`);
  assert.match(n.log.join(""), /second signal: exiting now/);
  n.proc = undefined;
  n.env = { KUMO_SHUTDOWN_DELAY: "0" }; // the teardown's SIGTERM need not wait

  // Nothing acknowledged was lost to the forced exit.
  await c.restart("n1");
  await c.waitServing(30_000);
  const again = await c.req("n1", "GET", "/v1/kv/default/during");
  assert.equal(again.status, 200, again.text);
  assert.equal(again.text, "v2");
});
