/**
 * The image's runtime stage, without a Docker engine (none runs on this machine): lays out what
 * the Dockerfile's runtime stage holds (its COPY instructions, with the build stage's output
 * taken from this checkout's build, and its `npm ci --omit=dev` run for real), then starts the
 * image's ENTRYPOINT + CMD with the image's ENV, as its USER (uid 10001) when the test runs as
 * root, and judges it with the image's own HEALTHCHECK. It catches a runtime file the image
 * forgets to copy, a runtime import of a devDependency, and a health check that does not work.
 * It does not build an image: base image, `useradd` and the read-only root are not exercised.
 */
import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { chmodSync, chownSync, cpSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { OPTIONS } from "../../src/node/config.js";
import { envOf, execForm, findExecutable, ROOT, readDockerfile, repoFile } from "./_deploy.js";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => resolve(typeof a === "object" && a ? a.port : 0));
    });
  });
}

function exec(
  file: string,
  args: readonly string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs: number; uid?: number; gid?: number },
): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(
      file,
      args,
      {
        cwd: opts.cwd,
        env: opts.env,
        timeout: opts.timeoutMs,
        maxBuffer: 16 << 20,
        ...(opts.uid !== undefined ? { uid: opts.uid, gid: opts.gid } : {}),
      },
      (e, stdout, stderr) =>
        resolve({ code: e ? (typeof e.code === "number" ? e.code : 1) : 0, out: stdout + stderr }),
    );
  });
}

test("the image's runtime files, production dependencies only, serve as the image would", {
  timeout: 240_000,
}, async (t) => {
  const npm = findExecutable("npm");
  if (!npm) return t.skip("npm is not installed");
  const { stages } = readDockerfile(repoFile("Dockerfile"));
  const runtime = stages.find((s) => s.name === "runtime");
  assert.ok(runtime, "a stage named runtime");
  const build = stages.find((s) => s.name === "build");
  const buildDir = build?.instructions.find((i) => i.op === "WORKDIR")?.args ?? "";

  const box = mkdtempSync(join(tmpdir(), "kumo-image-"));
  chmodSync(box, 0o755); // the image's files are root's and readable by the kumo user
  let workdir = "/";
  const inBox = (p: string) => join(box, p.startsWith("/") ? p : join(workdir, p));
  let node: ChildProcess | undefined;
  const logs: string[] = [];
  try {
    // Replay the runtime stage.
    const skipped: string[] = [];
    for (const ins of runtime.instructions) {
      if (ins.op === "WORKDIR") {
        workdir = ins.args;
        mkdirSync(inBox(workdir), { recursive: true });
      } else if (ins.op === "COPY") {
        const parts = ins.args.split(" ");
        const from = parts.find((p) => p.startsWith("--from="))?.slice(7);
        const paths = parts.filter((p) => !p.startsWith("--"));
        const dest = paths.pop() as string;
        for (const src of paths) {
          // From the build stage: this checkout's build output (npm run build) stands in for it.
          const real =
            from === "build" ? join(ROOT, src.replace(`${buildDir}/`, "")) : join(ROOT, src);
          assert.ok(
            existsSync(real),
            `${ins.line}: COPY ${src}: ${real} is missing (npm run build?)`,
          );
          const target = dest.endsWith("/")
            ? join(inBox(dest), src.split("/").pop() as string)
            : inBox(dest);
          cpSync(real, target, { recursive: true });
        }
      } else if (ins.op === "RUN" && /^npm ci --omit=dev\b/.test(ins.args)) {
        // The install itself (not `npm cache clean`, which would empty this machine's cache).
        const r = await exec(
          npm,
          ["ci", "--omit=dev", "--no-audit", "--no-fund", "--prefer-offline"],
          {
            cwd: inBox("."),
            timeoutMs: 180_000,
          },
        );
        assert.equal(r.code, 0, r.out);
      } else if (ins.op === "RUN") {
        skipped.push(ins.args.slice(0, 40));
      }
    }
    t.diagnostic(`not replayed (they change the machine, not the files): ${skipped.join(" | ")}`);
    assert.ok(!existsSync(inBox("node_modules/typescript")), "no devDependencies in the image");
    assert.ok(!existsSync(inBox("dist/test")), "no tests in the image");

    const entry = execForm(runtime.instructions.find((i) => i.op === "ENTRYPOINT")?.args ?? "");
    const cmd = execForm(runtime.instructions.find((i) => i.op === "CMD")?.args ?? "");
    const health = runtime.instructions.find((i) => i.op === "HEALTHCHECK")?.args ?? "";
    const healthCmd = execForm(health.slice(health.indexOf("CMD ") + 4)) ?? [];
    const user = Number(
      runtime.instructions
        .filter((i) => i.op === "USER")
        .at(-1)
        ?.args.split(":")[0],
    );
    const argvOf = (a: readonly string[]) =>
      a.map((x, i) =>
        i === 0 && x === "node" ? process.execPath : x.replace(/^\/app\//, `${inBox("/app")}/`),
      );

    // The image's environment, with the volume and ports moved into this sandbox (0.0.0.0 kept),
    // and what `docker run -e` would add: an id and a token.
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH ?? "" };
    for (const [k, v] of envOf(runtime)) env[k] = v;
    const data = inBox(env.KUMO_DATA as string);
    mkdirSync(data, { recursive: true });
    const [api, s3, peer] = [await freePort(), await freePort(), await freePort()];
    Object.assign(env, {
      KUMO_DATA: data,
      KUMO_API: `0.0.0.0:${api}`,
      KUMO_S3: `0.0.0.0:${s3}`,
      KUMO_PEER: `127.0.0.1:${peer}`,
      KUMO_ID: "n1",
      KUMO_TOKENS: "image-test-token",
    });
    // As the image's USER where we can switch to it (root); the volume is that user's.
    const asUser = process.getuid?.() === 0 ? { uid: user, gid: user } : {};
    if (asUser.uid !== undefined) chownSync(data, user, user);
    t.diagnostic(asUser.uid !== undefined ? `running as uid ${user}` : "running as this user");

    const help = await exec(
      process.execPath,
      [...argvOf(entry ?? []).slice(1), "server", "--help"],
      {
        env,
        timeoutMs: 30_000,
        ...asUser,
      },
    );
    assert.equal(help.code, 0, help.out);
    for (const o of OPTIONS) assert.ok(help.out.includes(`--${o.flag} `), `--${o.flag} in --help`);

    const argv = argvOf([...(entry ?? []), ...(cmd ?? [])]);
    node = spawn(argv[0] as string, argv.slice(1), {
      env,
      stdio: ["ignore", "pipe", "pipe"],
      ...asUser,
    });
    node.stdout?.on("data", (b: Buffer) => logs.push(b.toString()));
    node.stderr?.on("data", (b: Buffer) => logs.push(b.toString()));
    const exited = new Promise<number | null>((r) => node?.once("exit", (code) => r(code)));

    // The image's HEALTHCHECK, as Docker runs it: until it passes (start period 30 s).
    const check = () =>
      exec(argvOf(healthCmd)[0] as string, argvOf(healthCmd).slice(1), {
        env,
        timeoutMs: 10_000,
        ...asUser,
      });
    const until = Date.now() + 60_000;
    let last = { code: -1, out: "" };
    while (Date.now() < until) {
      last = await check();
      if (last.code === 0 || node.exitCode !== null) break;
      await sleep(500);
    }
    assert.equal(last.code, 0, `HEALTHCHECK: ${last.out}\n${logs.join("")}`);

    const base = `http://127.0.0.1:${api}`;
    const auth = { authorization: "Bearer image-test-token" };
    let ready = 0;
    for (let i = 0; i < 60 && ready !== 200; i++) {
      ready = (await fetch(`${base}/readyz`)).status;
      if (ready !== 200) await sleep(250);
    }
    assert.equal(ready, 200, "a one-node cluster becomes ready");
    // package.json is where the server finds its version; dist/console is the web console.
    const metrics = await (await fetch(`${base}/metrics`)).text();
    const version = (JSON.parse(repoFile("package.json")) as { version: string }).version;
    assert.match(metrics, new RegExp(`kumo_build_info\\{[^}]*version="${version}"`));
    const consolePage = await fetch(`${base}/console/`);
    assert.equal(consolePage.status, 200, "the web console is in the image");
    assert.match(await consolePage.text(), /<html/i);
    const put = await fetch(`${base}/v1/kv/default/image`, {
      method: "PUT",
      headers: auth,
      body: "ok",
    });
    assert.equal(put.status, 200, await put.text());
    const got = await fetch(`${base}/v1/kv/default/image`, { headers: auth });
    assert.equal(await got.text(), "ok");
    const s3port = await fetch(`http://127.0.0.1:${s3}/`);
    assert.equal(s3port.status, 403, "the S3 port answers (an unsigned request is refused)");

    // `docker stop`: SIGTERM, a clean exit well within the grace period; then the check fails.
    node.kill("SIGTERM");
    let timer: NodeJS.Timeout | undefined;
    const code = await Promise.race([
      exited,
      new Promise((r) => {
        timer = setTimeout(() => r("no exit within 20 s"), 20_000);
      }),
    ]);
    clearTimeout(timer);
    assert.equal(code, 0, `exit after SIGTERM\n${logs.join("").slice(-2000)}`);
    assert.equal((await check()).code, 1, "HEALTHCHECK fails once the node is gone");
    assert.ok(existsSync(join(data, "db")), "the data went to the volume");
  } finally {
    if (node && node.exitCode === null && node.signalCode === null) node.kill("SIGKILL");
    rmSync(box, { recursive: true, force: true });
  }
});
