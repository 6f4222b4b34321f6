/**
 * The web console end to end: a real 3-node cluster, Debian's Chromium driven by
 * playwright-core, the real `aws` CLI. A wrong token is refused; the admin token signs in; all
 * three nodes show alive; the shard map, the chunk ring and the traffic charts render; keys put
 * through the KV API are listed and one is put through the page; a bucket created and a file
 * uploaded through the page are found (byte for byte) by `aws s3`; finally a node killed with
 * SIGKILL turns suspect, then dead, on the overview.
 *
 * Screenshots of every page go to artifacts/console/ (CI keeps them). Chromium and the aws
 * CLI are required: without them this test fails, saying what to install, unless
 * KUMO_SKIP_BROWSER=1 (then it is skipped).
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { TestCluster, waitFor } from "../integration/_cluster.js";
import { awsCli } from "../integration/_s3.js";

const root = join(fileURLToPath(import.meta.url), "../../../..");
const SHOTS = join(root, "artifacts", "console");
const CHROMIUM = process.env.KUMO_CHROMIUM ?? "/usr/bin/chromium";
const CONSOLE_INDEX = join(root, "dist", "console", "index.html");
const ROOT = { accessKeyId: "GKROOTCONSOLE0000001", secretAccessKey: "root-secret-console-001" };
const ARGS = [
  "--tick-ms",
  "20",
  "--election-ticks",
  "10",
  "--suspect-after",
  "1s",
  "--dead-after",
  "7s",
];
const skipAll = process.env.KUMO_SKIP_BROWSER === "1";
const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

const work = mkdtempSync(join(tmpdir(), "kumo-console-e2e-"));

const aws = awsCli(ROOT, work);

/** What is missing to run this test (empty when everything is there). */
async function missing(): Promise<string[]> {
  const out: string[] = [];
  if (!existsSync(CHROMIUM))
    out.push(`Chromium at ${CHROMIUM} (apt-get install -y chromium, or set KUMO_CHROMIUM)`);
  if ((await aws(["--version"])).code !== 0) out.push("the aws CLI (apt-get install -y awscli)");
  if (!existsSync(CONSOLE_INDEX))
    out.push(`the built console at ${CONSOLE_INDEX} (npm run build:console)`);
  return out;
}

let c: TestCluster | undefined;
let ctx: BrowserContext | undefined;
let page: Page;
let base: string;
const pageErrors: string[] = [];
const profile = mkdtempSync(join(tmpdir(), "kumo-chromium-"));

async function shot(name: string): Promise<void> {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

/** A test body whose failure also shows the nodes' recent output. */
function withLogs(fn: () => Promise<void>): () => Promise<void> {
  return async () => {
    try {
      await fn();
    } catch (e) {
      const logs = c?.logs() ?? "";
      (e as Error).message += `\n--- node output (last 8000 characters)\n${logs.slice(-8000)}`;
      throw e;
    }
  };
}

/** Follows a link of the top navigation (a client-side route change). */
async function nav(label: string): Promise<void> {
  await page.locator("nav.nav a", { hasText: label }).click();
}

const lacking = skipAll ? [] : await missing();

test("the console's end-to-end test has what it needs", {
  skip: skipAll ? "KUMO_SKIP_BROWSER=1" : false,
}, () => {
  assert.deepEqual(
    lacking,
    [],
    `the console's end-to-end test needs ${lacking.join("; ")}. ` +
      "Install them, or set KUMO_SKIP_BROWSER=1 to skip this test.",
  );
});

describe("the web console", {
  skip: skipAll ? "KUMO_SKIP_BROWSER=1" : lacking.length > 0 ? "missing prerequisites" : false,
}, () => {
  before(async () => {
    mkdirSync(SHOTS, { recursive: true });
    c = await TestCluster.start({
      nodes: 3,
      args: ARGS,
      env: { KUMO_S3_ROOT_KEY: `${ROOT.accessKeyId}:${ROOT.secretAccessKey}` },
    });
    base = `http://${c.node("n1").api}`;
    ctx = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 1440, height: 900 },
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    page = ctx.pages()[0] ?? (await ctx.newPage());
    page.setDefaultTimeout(20_000);
    page.on("pageerror", (e) => pageErrors.push(e.message));
    page.on("console", (m) => {
      if (m.type() === "error" && /Content.Security.Policy/i.test(m.text()))
        pageErrors.push(m.text());
    });
  });

  after(async () => {
    await ctx?.close();
    await c?.stop();
    rmSync(profile, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  });

  test(
    "a wrong token is refused",
    withLogs(async () => {
      await page.goto(`${base}/console/`);
      await page.waitForURL(/\/console\/login/);
      await page.fill("input[name=token]", "not-the-token");
      await page.click("button[type=submit]");
      await page.getByRole("alert").filter({ hasText: "refused" }).waitFor();
      await shot("login-refused");
    }),
  );

  test(
    "the admin token signs in, and the overview shows all three nodes alive",
    withLogs(async () => {
      assert.ok(c);
      await page.fill("input[name=token]", c.token);
      await page.click("button[type=submit]");
      await page.locator("h1", { hasText: "Cluster overview" }).waitFor();
      for (const id of ["n1", "n2", "n3"])
        await page.locator(`tr[data-node="${id}"] [data-state="alive"]`).waitFor();
      assert.equal(await page.locator("tr[data-node]").count(), 3);
      // Every node answered for itself: disk and uptime come from each node's own report.
      await waitFor(
        async () => (await page.locator("tr[data-node] .disk").count()) === 3,
        20_000,
        "every node's own report",
      );
      await shot("overview");
      // The same page on a phone-sized screen.
      await page.setViewportSize({ width: 390, height: 844 });
      await shot("overview-narrow");
      await page.setViewportSize({ width: 1440, height: 900 });
    }),
  );

  test(
    "the shard map and the chunk ring",
    withLogs(async () => {
      await nav("Keyspaces");
      await page.locator('[data-keyspace="default"]').waitFor();
      assert.equal(await page.locator("tr[data-shard]").count(), 8);
      // Every shard of the default keyspace has a leader, shown with a crown.
      await waitFor(
        async () => (await page.locator("tr[data-shard] .chip-leader").count()) >= 16,
        20_000,
        "a leader for every shard",
      );
      await shot("keyspaces");
      // A reload on a client route serves the page (index fallback) and keeps the session.
      await page.goto(`${base}/console/ring`);
      await page.locator("svg.donut").waitFor();
      await page.locator('tr[data-node="n3"]').waitFor();
      await shot("ring");
    }),
  );

  test(
    "keyspace browser: keys put through the API are listed; one is put through the page",
    withLogs(async () => {
      assert.ok(c);
      for (const [k, v] of [
        ["users/alice", '{"name":"Alice","plan":"pro"}'],
        ["users/bob", '{"name":"Bob","plan":"free"}'],
        ["config/flags", '{"darkMode":true}'],
      ] as const) {
        const r = await c.put("n2", k, v);
        assert.equal(r.status, 200);
      }
      await nav("KV browser");
      await page.locator('tr[data-kv-key="users/alice"]').waitFor();
      await page.locator('tr[data-kv-key="users/alice"] button.obj-name').click();
      await page.locator("[data-testid=kv-value]", { hasText: "Alice" }).waitFor();
      await shot("kv-value");
      await page.keyboard.press("Escape");

      await page.getByRole("button", { name: "Put key" }).click();
      await page.fill("input[name=key]", "console/greeting");
      await page.fill("textarea[name=value]", "hello from the console");
      await page.getByRole("button", { name: "Save" }).click();
      await page.locator('tr[data-kv-key="console/greeting"]').waitFor();
      const got = await c.get("n3", "console/greeting");
      assert.equal(got.status, 200);
      assert.equal(await got.text(), "hello from the console");
      await shot("kv");
    }),
  );

  test(
    "an object uploaded through the page is found by the aws CLI",
    withLogs(async () => {
      assert.ok(c);
      const bucket = `console-${randomBytes(3).toString("hex")}`;
      await nav("Buckets");
      await page.getByRole("button", { name: "New bucket" }).click();
      await page.fill("input[name=bucket]", bucket);
      await page.getByRole("button", { name: "Create bucket" }).click();
      await page.locator(`tr[data-bucket="${bucket}"]`).waitFor();
      await page.locator(`tr[data-bucket="${bucket}"] a`).click();
      await page.locator("h1", { hasText: bucket }).waitFor();

      // One small file (stored inline) and one of several chunks (1 MiB each).
      const small = join(work, "notes.txt");
      const big = join(work, "photo.bin");
      writeFileSync(small, "uploaded through the Kumo console\n");
      writeFileSync(big, randomBytes(2 * 1024 * 1024 + 4321));
      await page.locator("[data-testid=upload-input]").setInputFiles([small, big]);
      await page.locator('tr[data-key="notes.txt"]').waitFor();
      await page.locator('tr[data-key="photo.bin"]').waitFor();
      await page.locator('tr[data-key="notes.txt"] button.obj-name').click();
      await page.locator("pre.preview", { hasText: "uploaded through the Kumo console" }).waitFor();
      await shot("object");
      await page.keyboard.press("Escape");
      await shot("objects");

      const endpoint = `http://${c.node("n2").s3}`;
      const ls = await aws(["s3", "ls", `s3://${bucket}/`, "--endpoint-url", endpoint]);
      assert.equal(ls.code, 0, ls.stderr);
      assert.match(ls.stdout, /\s34 notes\.txt$/m);
      assert.match(ls.stdout, new RegExp(`\\s${2 * 1024 * 1024 + 4321} photo\\.bin$`, "m"));
      for (const [key, file] of [
        ["notes.txt", small],
        ["photo.bin", big],
      ] as const) {
        const down = join(work, `down-${key}`);
        const cp = await aws([
          "s3",
          "cp",
          `s3://${bucket}/${key}`,
          down,
          "--endpoint-url",
          endpoint,
        ]);
        assert.equal(cp.code, 0, cp.stderr);
        assert.equal(sha(readFileSync(down)), sha(readFileSync(file)), key);
      }
    }),
  );

  test(
    "traffic charts draw from the nodes' counters",
    withLogs(async () => {
      assert.ok(c);
      await nav("Traffic");
      // A few seconds of KV traffic through every node (bounded: 90 requests), charted meanwhile.
      const load = (async () => {
        for (let i = 0; i < 90; i++) {
          await c.put(`n${(i % 3) + 1}`, `traffic/${i % 7}`, `v${i}`);
          await new Promise((r) => setTimeout(r, 50));
        }
      })();
      await waitFor(
        async () => {
          const t = await page.locator(".legend-item b").first().textContent();
          return t !== null && t !== "0" && t !== "—";
        },
        30_000,
        "a KV request rate above zero",
        200,
      );
      await load;
      // Two more readings: the chart shows the burst rising and falling.
      await new Promise((r) => setTimeout(r, 4_500));
      await shot("traffic");
    }),
  );

  test(
    "a killed node turns suspect, then dead",
    withLogs(async () => {
      assert.ok(c);
      await nav("Overview");
      await page.locator('tr[data-node="n3"] [data-state="alive"]').waitFor();
      await c.kill("n3");
      await page.locator('tr[data-node="n3"] [data-state="suspect"]').waitFor({ timeout: 20_000 });
      await shot("overview-suspect");
      await page.locator('tr[data-node="n3"] [data-state="dead"]').waitFor({ timeout: 30_000 });
      for (const id of ["n1", "n2"])
        await page.locator(`tr[data-node="${id}"] [data-state="alive"]`).waitFor();
      await shot("overview-dead");
      // The shard map shows the dead replica; the chunk ring no longer gives it partitions.
      await nav("Keyspaces");
      await page.locator("tr[data-shard] .chip-down").first().waitFor();
      await shot("keyspaces-degraded");
      await nav("Chunk ring");
      await page.locator('tr[data-node="n1"]').waitFor();
      await waitFor(
        async () => (await page.locator('tr[data-node="n3"]').count()) === 0,
        20_000,
        "the ring without the dead node",
      );
      await shot("ring-after");
      assert.deepEqual(pageErrors, [], "no script errors in the page");
    }),
  );
});
