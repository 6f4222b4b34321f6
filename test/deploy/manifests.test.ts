/**
 * The deployment files (deploy/, Dockerfile) agree with what `kumo server` takes and with each
 * other: every YAML parses; the Kubernetes objects carry the required fields, as written, as
 * `kubectl kustomize` renders them and as `helm template` renders the chart (where those tools
 * are installed: neither is a dependency); the init container's script writes a configuration the
 * server accepts; the Dockerfile copies what the server reads at run time; the systemd unit and
 * the bare-metal example configurations are accepted as they are.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { test } from "node:test";
import { parse as parseYaml } from "yaml";
import { OPTIONS, parseLabels, resolveConfig } from "../../src/node/config.js";
import {
  type Container,
  checkKumoObjects,
  checkServerArgs,
  checkServerEnv,
  defaultPort,
  envOf,
  execForm,
  findExecutable,
  type K8sObject,
  MAIN,
  ROOT,
  readDockerfile,
  repoFile,
  run,
  SERVER_ENV,
  yamlDocs,
} from "./_deploy.js";

const KUBE = join(ROOT, "deploy/kubernetes");
const CHART = join(ROOT, "deploy/helm/kumo");
const VERSION = (JSON.parse(repoFile("package.json")) as { version: string }).version;

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((d) => {
    const p = join(dir, d.name);
    return d.isDirectory() ? walk(p) : [p];
  });
}

/** The plain manifests, in the order kustomization.yaml lists them. */
function plainObjects(): { objects: K8sObject[]; kustomization: Record<string, unknown> } {
  const kustomization = parseYaml(readFileSync(join(KUBE, "kustomization.yaml"), "utf8")) as {
    resources: string[];
  };
  const listed = new Set(kustomization.resources);
  for (const f of readdirSync(KUBE).filter((f) => f.endsWith(".yaml"))) {
    if (f !== "kustomization.yaml") assert.ok(listed.has(f), `kustomization.yaml lists ${f}`);
  }
  const objects = kustomization.resources.flatMap(
    (f) => yamlDocs(readFileSync(join(KUBE, f), "utf8"), f) as K8sObject[],
  );
  return { objects, kustomization };
}

test("every YAML file under deploy/ parses (Helm templates aside)", () => {
  const files = walk(join(ROOT, "deploy")).filter(
    (f) => /\.ya?ml$/.test(f) && !f.includes("/helm/kumo/templates/"),
  );
  assert.ok(files.length >= 15, `found ${files.length}`);
  for (const f of files) yamlDocs(readFileSync(f, "utf8"), relative(ROOT, f));
});

test("the Kubernetes manifests carry the required fields and agree with kumo server", () => {
  const { objects, kustomization } = plainObjects();
  const k = checkKumoObjects(objects, { where: "deploy/kubernetes" });
  assert.equal(k.statefulSet.spec.replicas, 3);
  assert.equal(k.pdb.spec.maxUnavailable, 1);
  // The image the kustomization pins is this version's.
  const images = kustomization.images as { name: string; newTag: string }[];
  assert.equal(k.server.image.split(":")[0], images[0]?.name);
  assert.equal(images[0]?.newTag, VERSION);
  // The example Secret is marked as such, and its values are accepted by the server.
  const secretText = readFileSync(join(KUBE, "secret.yaml"), "utf8");
  assert.match(secretText, /EXAMPLE CREDENTIALS: replace every value/);
  for (const v of Object.values(k.secret?.stringData ?? {})) assert.match(v, /EXAMPLE/);
  // Namespace-agnostic: no object names one, except the binding (rewritten by kustomize).
  for (const o of objects) {
    if (o.kind !== "ClusterRoleBinding") assert.equal(o.metadata.namespace, undefined, o.kind);
  }
});

test("kubectl kustomize renders them into the kustomization's namespace", (t) => {
  const kubectl = findExecutable("kubectl");
  if (!kubectl) return t.skip("kubectl is not installed: the kustomization is not rendered here");
  const r = run(kubectl, ["kustomize", KUBE]);
  assert.equal(r.status, 0, r.stderr);
  const objects = yamlDocs(r.stdout, "kubectl kustomize") as K8sObject[];
  const ns = (
    parseYaml(readFileSync(join(KUBE, "kustomization.yaml"), "utf8")) as {
      namespace: string;
    }
  ).namespace;
  checkKumoObjects(objects, { namespace: ns, where: "kubectl kustomize" });
});

test("Chart.yaml, values.yaml and the chart's README agree", () => {
  const chart = parseYaml(readFileSync(join(CHART, "Chart.yaml"), "utf8")) as Record<
    string,
    string
  >;
  assert.equal(chart.apiVersion, "v2");
  assert.equal(chart.name, "kumo");
  assert.match(chart.version ?? "", /^\d+\.\d+\.\d+$/);
  assert.equal(chart.appVersion, VERSION, "the chart's appVersion is the package version");
  const values = parseYaml(readFileSync(join(CHART, "values.yaml"), "utf8")) as Record<
    string,
    unknown
  >;
  // `config` sets kumo server options by flag name.
  for (const flag of Object.keys(values.config as object)) {
    assert.ok(
      OPTIONS.some((o) => o.flag === flag),
      `values.config.${flag} is a kumo server flag`,
    );
  }
  // Every value is documented in the README's table, and every documented value exists.
  const leaves: string[] = [];
  const flatten = (o: Record<string, unknown>, prefix: string) => {
    for (const [key, v] of Object.entries(o)) {
      const path = prefix + key;
      const map = v !== null && typeof v === "object" && !Array.isArray(v);
      if (map && Object.keys(v).length > 0 && !["config", "resources"].includes(key))
        flatten(v as Record<string, unknown>, `${path}.`);
      else leaves.push(path);
    }
  };
  flatten(values, "");
  const readme = readFileSync(join(CHART, "README.md"), "utf8");
  const documented = [...readme.matchAll(/^\| `([A-Za-z0-9.]+)` \|/gm)].map((m) => m[1]);
  assert.deepEqual([...documented].sort(), [...leaves].sort(), "README values table");
});

test("the Helm chart renders the same objects as the plain manifests", (t) => {
  const helm = findExecutable(process.env.KUMO_HELM ?? "helm");
  if (!helm) {
    return t.skip(
      "helm is not installed (set KUMO_HELM to its path): the chart is not rendered here",
    );
  }
  const secrets = [
    "secrets.tokens=tok1,secrets.adminTokens=adm1",
    "secrets.s3RootKey=ROOTKEY:root-secret-1",
  ];
  const template = (...args: string[]) =>
    run(helm, ["template", "kumo", CHART, "--namespace", "storage", ...args]);
  const lint = run(helm, ["lint", CHART, "--set", secrets.join(",")]);
  assert.equal(lint.status, 0, lint.stdout + lint.stderr);
  const r = template("--set", secrets.join(","));
  assert.equal(r.status, 0, r.stderr);
  const objects = yamlDocs(r.stdout, "helm template") as K8sObject[];
  const h = checkKumoObjects(objects, { where: "helm template" });
  const binding = objects.find((o) => o.kind === "ClusterRoleBinding");
  assert.equal(binding?.subjects?.[0]?.namespace, "storage", "the binding names the release's");
  assert.equal(h.server.image, `kumo:${VERSION}`);

  // The same objects as deploy/kubernetes, field for field where it matters.
  const p = checkKumoObjects(plainObjects().objects, { where: "deploy/kubernetes" });
  assert.deepEqual(
    objects.map((o) => o.kind).sort(),
    plainObjects()
      .objects.map((o) => o.kind)
      .sort(),
  );
  const names = (c: Container) => (c.env ?? []).map((e) => e.name).sort();
  assert.deepEqual(names(h.server), names(p.server), "the server's variables");
  assert.deepEqual(names(h.init), names(p.init), "the init container's variables");
  for (const field of [
    "args",
    "ports",
    "readinessProbe",
    "livenessProbe",
    "startupProbe",
    "securityContext",
    "resources",
  ] as const) {
    assert.deepEqual(h.server[field], p.server[field], `server ${field}`);
  }
  assert.deepEqual(h.pod.securityContext, p.pod.securityContext);
  assert.deepEqual(
    h.pod.topologySpreadConstraints?.map((s) => s.topologyKey),
    p.pod.topologySpreadConstraints?.map((s) => s.topologyKey),
  );
  assert.deepEqual(h.pdb.spec.maxUnavailable, p.pdb.spec.maxUnavailable);
  assert.deepEqual(h.headless.spec.ports, p.headless.spec.ports);
  assert.deepEqual(h.statefulSet.spec.volumeClaimTemplates[0].spec, {
    ...p.statefulSet.spec.volumeClaimTemplates[0].spec,
  });

  // Values do what the README says; the chart refuses what would be unsafe.
  const noTokens = template();
  assert.notEqual(noTokens.status, 0);
  assert.match(noTokens.stderr, /secrets.tokens is required/);
  const unsafe = template("--set", `${secrets[0]},podDisruptionBudget.maxUnavailable=2`);
  assert.notEqual(unsafe.status, 0);
  assert.match(unsafe.stderr, /lose their majority/);
  assert.match(template("--set", `${secrets[0]},config.id=x`).stderr, /config.id is set by/);
  const tuned = template(
    "--set",
    `${secrets[0]},replicas=5,config.read-mode=lease,zones.enabled=false`,
    "--set",
    "extraArgs={--dead-after,5m},cluster.nodeIdOverrides.kumo-1=kumo-1b",
  );
  assert.equal(tuned.status, 0, tuned.stderr);
  const tunedObjects = yamlDocs(tuned.stdout, "helm template (tuned)") as K8sObject[];
  assert.ok(!tunedObjects.some((o) => o.kind === "ClusterRole"), "no RBAC without zones");
  const sts = tunedObjects.find((o) => o.kind === "StatefulSet") as K8sObject;
  assert.equal(sts.spec.replicas, 5);
  const [init, server] = [
    sts.spec.template.spec.initContainers[0] as Container,
    sts.spec.template.spec.containers[0] as Container,
  ];
  const envValue = (c: Container, n: string) => c.env?.find((e) => e.name === n)?.value;
  assert.equal(envValue(init, "ZONE_NODE_LABEL"), "");
  assert.equal(envValue(init, "INITIAL_MEMBERS"), "3", "initial members do not follow replicas");
  assert.equal(envValue(init, "NODE_ID_OVERRIDES"), "kumo-1=kumo-1b");
  assert.equal(envValue(server, "KUMO_READ_MODE"), "lease");
  checkServerEnv(
    (server.env ?? []).map((e) => e.name),
    "helm (tuned)",
  );
  checkServerArgs(server.args ?? [], "helm (tuned)");
  assert.deepEqual(server.args?.slice(-2), ["--dead-after", "5m"]);
});

/** A stand-in for the Kubernetes API: GET /api/v1/nodes/NAME with the service account token. */
async function fakeApi(labels: Record<string, Record<string, string>>) {
  const server = createServer((req, res) => {
    const m = /^\/api\/v1\/nodes\/([^/]+)$/.exec(req.url ?? "");
    if (req.headers.authorization !== "Bearer sa-token" || !m || m[1] === "forbidden") {
      res.writeHead(403).end('{"reason":"Forbidden"}');
      return;
    }
    const node = labels[m[1] as string];
    if (!node) return res.writeHead(404).end('{"reason":"NotFound"}');
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ kind: "Node", metadata: { name: m[1], labels: node } }));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

test("the init container's script writes a configuration kumo server accepts", async () => {
  const { objects } = plainObjects();
  const k = checkKumoObjects(objects, { where: "deploy/kubernetes" });
  const dir = mkdtempSync(join(tmpdir(), "kumo-podcfg-"));
  writeFileSync(join(dir, "token"), "sa-token\n");
  const api = await fakeApi({
    "node-b": { "topology.kubernetes.io/zone": "eu-west-1b", "kubernetes.io/hostname": "node-b" },
    "node-c": { "kubernetes.io/hostname": "node-c" },
  });
  try {
    /** Runs pod-config.mjs as the pod would: the manifest's env, the downward API's values. */
    const podConfig = (pod: string, node: string, extra: Record<string, string> = {}) => {
      const field: Record<string, string> = {
        "metadata.name": pod,
        "metadata.namespace": "storage",
        "spec.nodeName": node,
      };
      const env: Record<string, string> = { PATH: process.env.PATH ?? "" };
      for (const e of k.init.env ?? []) {
        const from = e.valueFrom?.fieldRef?.fieldPath;
        env[e.name] = from ? (field[from] as string) : (e.value ?? "");
      }
      Object.assign(env, {
        K8S_API: api.url,
        SERVICE_ACCOUNT_DIR: dir,
        OUT: join(dir, `${pod}.yaml`),
        ...extra,
      });
      return new Promise<{ code: number; out: string; file: string }>((resolve) => {
        execFile(
          process.execPath,
          [join(ROOT, "deploy/docker/pod-config.mjs")],
          { env, timeout: 20_000 },
          (e, stdout, stderr) =>
            resolve({
              code: e ? Number(e.code ?? 1) : 0,
              out: stdout + stderr,
              file: env.OUT as string,
            }),
        );
      });
    };
    /** The main container's environment, secrets taken from the example Secret. */
    const serverEnv: NodeJS.ProcessEnv = {};
    for (const e of k.server.env ?? []) {
      const ref = e.valueFrom?.secretKeyRef;
      serverEnv[e.name] = ref ? k.secret?.stringData?.[ref.key] : e.value;
    }
    const resolve = (file: string) => resolveConfig({ config: file }, serverEnv);
    const dns = (i: number) => `kumo-${i}.kumo-headless.storage.svc.cluster.local:7000`;

    const r1 = await podConfig("kumo-1", "node-b");
    assert.equal(r1.code, 0, r1.out);
    const c1 = resolve(r1.file);
    assert.equal(c1.id, "kumo-1");
    assert.equal(c1.peer, dns(1));
    assert.deepEqual(c1.join, [
      { id: "kumo-0", address: dns(0) },
      { id: "kumo-2", address: dns(2) },
    ]);
    assert.deepEqual(parseLabels(c1.labels), { zone: "eu-west-1b" });
    assert.equal(c1.api, "0.0.0.0:7001");
    assert.equal(c1.s3, "0.0.0.0:7002");
    assert.equal(c1.data, "/var/lib/kumo");
    assert.deepEqual(c1.tokens, [k.secret?.stringData?.tokens]);
    assert.equal(c1.s3RootKey, k.secret?.stringData?.["s3-root-key"]);
    assert.equal(c1.replicas, 3);

    // A pod added by a scale-up: every initial member is a seed.
    const c4 = resolve((await podConfig("kumo-4", "node-b")).file);
    assert.deepEqual(
      c4.join.map((p) => p.id),
      ["kumo-0", "kumo-1", "kumo-2"],
    );
    // A node without a zone label (single-zone clusters): no zone, still starts.
    const rc = await podConfig("kumo-0", "node-c");
    assert.equal(rc.code, 0, rc.out);
    assert.match(rc.out, /has no topology.kubernetes.io\/zone label/);
    assert.deepEqual(resolve(rc.file).labels, []);
    // Zones off: no API call at all (the token is not even read).
    const off = await podConfig("kumo-0", "forbidden", {
      ZONE_NODE_LABEL: "",
      SERVICE_ACCOUNT_DIR: "/nonexistent",
    });
    assert.equal(off.code, 0, off.out);
    // A replaced volume: the pod runs under a new id, and the others' join lists follow.
    const ids = { NODE_ID_OVERRIDES: "kumo-1=kumo-1b" };
    assert.equal(resolve((await podConfig("kumo-1", "node-b", ids)).file).id, "kumo-1b");
    assert.deepEqual(
      resolve((await podConfig("kumo-0", "node-b", ids)).file).join.map((p) => p.id),
      ["kumo-1b", "kumo-2"],
    );
    // Missing RBAC stops the pod with a message saying what to fix.
    const denied = await podConfig("kumo-2", "forbidden");
    assert.equal(denied.code, 1);
    assert.match(denied.out, /403.*needs `get` on nodes/s);
    assert.equal((await podConfig("kumo", "node-b")).code, 1, "not a StatefulSet pod name");
  } finally {
    api.server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the Dockerfile builds in one stage and runs only the runtime files in another", () => {
  const { stages } = readDockerfile(repoFile("Dockerfile"));
  assert.equal(stages.length, 2);
  const [build, runtime] = stages as [(typeof stages)[0], (typeof stages)[0]];
  for (const s of stages) assert.equal(s.from, "node:20-bookworm-slim");
  assert.equal(build.name, "build");
  const runs = (s: typeof build) => s.instructions.filter((i) => i.op === "RUN").map((i) => i.args);
  assert.ok(
    runs(build).some((r) => /^npm ci\b/.test(r)),
    "build: npm ci",
  );
  assert.ok(runs(build).includes("npm run build"), "build: npm run build (tsc + console)");
  assert.ok(
    runs(runtime).some((r) => /^npm ci --omit=dev\b/.test(r)),
    "runtime: production dependencies only",
  );

  // COPY: sources exist and are not excluded from the build context by .dockerignore.
  const ignore = repoFile(".dockerignore")
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  const ignored = (path: string) => {
    let out = false;
    for (const pat of ignore) {
      const neg = pat.startsWith("!");
      const p = neg ? pat.slice(1) : pat;
      const re = new RegExp(`^${p.replace(/\./g, "\\.").replace(/\*/g, "[^/]*")}(/.*)?$`);
      if (re.test(path)) out = !neg;
    }
    return out;
  };
  const copies = (s: typeof build) =>
    s.instructions
      .filter((i) => i.op === "COPY")
      .map((i) => {
        const parts = i.args.split(" ");
        const from = parts.find((p) => p.startsWith("--from="))?.slice(7);
        const rest = parts.filter((p) => !p.startsWith("--"));
        return { from, sources: rest.slice(0, -1), dest: rest[rest.length - 1] as string };
      });
  for (const s of stages) {
    for (const c of copies(s).filter((c) => c.from === undefined)) {
      for (const src of c.sources) {
        assert.ok(existsSync(join(ROOT, src)), `COPY ${src}: exists`);
        assert.ok(!ignored(src), `COPY ${src}: not excluded by .dockerignore`);
      }
    }
  }
  assert.ok(ignored("node_modules") && ignored("dist") && ignored(".git"), "host builds stay out");
  // Runtime: the build output it needs and nothing else of the build stage (no dev deps, no
  // tests), at the paths the server resolves from its own location: /app/package.json (version),
  // /app/proto (src/transport/protos.ts), /app/dist/console (src/api/console/index.ts).
  const rt = copies(runtime);
  assert.deepEqual(
    rt.filter((c) => c.from !== undefined).map((c) => `${c.from} ${c.sources} ${c.dest}`),
    ["build /src/dist/src ./dist/src", "build /src/dist/console ./dist/console"],
  );
  const workdir = runtime.instructions.find((i) => i.op === "WORKDIR")?.args;
  assert.equal(workdir, "/app");
  const at = (src: string) => rt.find((c) => c.sources.includes(src))?.dest;
  assert.equal(at("package.json"), "./");
  assert.equal(at("proto"), "./proto");
  assert.equal(at("deploy/docker/pod-config.mjs"), "./deploy/");
  assert.equal(at("deploy/docker/healthcheck.mjs"), "./deploy/");

  // Not root; data in the volume; configuration through KUMO_* variables the server knows.
  const user = runtime.instructions.filter((i) => i.op === "USER").at(-1)?.args ?? "";
  assert.match(user, /^10001(:10001)?$/);
  assert.ok(
    runs(runtime).some((r) => /useradd .*--uid 10001/.test(r)),
    "a kumo user, uid 10001",
  );
  const env = envOf(runtime);
  checkServerEnv(env.keys(), "Dockerfile ENV");
  for (const own of ["KUMO_ID", "KUMO_PEER", "KUMO_JOIN", "KUMO_LABELS"])
    assert.ok(!env.has(own), `the image does not set ${own}`);
  const volume = runtime.instructions.find((i) => i.op === "VOLUME")?.args;
  assert.deepEqual(execForm(volume ?? "[]"), [env.get("KUMO_DATA")]);
  assert.equal(env.get("KUMO_DATA"), "/var/lib/kumo");
  const expose = runtime.instructions
    .find((i) => i.op === "EXPOSE")
    ?.args.split(" ")
    .map(Number);
  assert.deepEqual(expose, [defaultPort("peer"), defaultPort("api"), defaultPort("s3")]);
  assert.equal(Number(env.get("KUMO_API")?.split(":")[1]), defaultPort("api"));

  // HEALTHCHECK: /healthz through the copied script; ENTRYPOINT: the build's kumo CLI.
  const health = runtime.instructions.find((i) => i.op === "HEALTHCHECK")?.args ?? "";
  const healthCmd = execForm(health.slice(health.indexOf("CMD ") + 4));
  assert.deepEqual(healthCmd, ["node", "/app/deploy/healthcheck.mjs"]);
  assert.match(repoFile("deploy/docker/healthcheck.mjs"), /\/healthz/);
  const entrypoint = execForm(runtime.instructions.find((i) => i.op === "ENTRYPOINT")?.args ?? "");
  assert.deepEqual(entrypoint, ["node", "/app/dist/src/cli/main.js"]);
  assert.ok(existsSync(join(ROOT, String(entrypoint?.[1]).replace(/^\/app\//, ""))));
  assert.equal(join(ROOT, "dist/src/cli/main.js"), MAIN);
  assert.deepEqual(execForm(runtime.instructions.find((i) => i.op === "CMD")?.args ?? ""), [
    "server",
  ]);
});

test("the systemd unit runs kumo server with real flags, not as root", (t) => {
  const text = repoFile("deploy/systemd/kumo.service");
  const service = new Map<string, string>();
  let section = "";
  for (const line of text.split("\n")) {
    const m = /^\[(\w+)\]$/.exec(line.trim());
    if (m) section = m[1] as string;
    const kv = /^(\w+)=(.*)$/.exec(line);
    if (kv && section === "Service") service.set(kv[1] as string, kv[2] as string);
  }
  const argv = (service.get("ExecStart") ?? "").split(/\s+/);
  assert.equal(argv[0], "/usr/bin/node");
  assert.equal(argv[1], "/opt/kumo/dist/src/cli/main.js");
  assert.ok(existsSync(join(ROOT, (argv[1] as string).replace("/opt/kumo/", ""))));
  assert.equal(argv[2], "server");
  const flags = checkServerArgs(argv.slice(3), "ExecStart");
  assert.equal(flags.get("config"), "/etc/kumo/kumo.yaml");
  assert.equal(service.get("User"), "kumo");
  assert.equal(service.get("EnvironmentFile"), "/etc/kumo/kumo.env");
  assert.equal(service.get("StateDirectory"), "kumo", "/var/lib/kumo, owned by the user");
  assert.equal(service.get("RestartPreventExitStatus"), "2", "a config error does not loop");
  const analyze = findExecutable("systemd-analyze");
  if (!analyze) return t.skip("systemd-analyze is not installed: the unit is not verified");
  const dir = mkdtempSync(join(tmpdir(), "kumo-unit-"));
  try {
    // verify wants ExecStart's binary to exist: point it at this node if /usr/bin/node is absent.
    const unit = existsSync("/usr/bin/node")
      ? text
      : text.replace("/usr/bin/node", process.execPath);
    writeFileSync(join(dir, "kumo.service"), unit);
    const r = run(analyze, ["verify", join(dir, "kumo.service")]);
    const about = (r.stdout + r.stderr)
      .split("\n")
      .filter((l) => l.includes("kumo.service"))
      .join("\n");
    assert.equal(about, "", "systemd-analyze verify finds nothing to say about the unit");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the bare-metal example configurations are accepted by kumo server as they are", () => {
  const dir = join(ROOT, "deploy/bare-metal");
  const envText = readFileSync(join(dir, "kumo.env.example"), "utf8");
  const env: NodeJS.ProcessEnv = {};
  for (const line of envText.split("\n")) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line);
    if (m) env[m[1] as string] = m[2];
  }
  assert.deepEqual(Object.keys(env).sort(), [
    "KUMO_ADMIN_TOKENS",
    "KUMO_S3_ROOT_KEY",
    "KUMO_TOKENS",
  ]);
  checkServerEnv(Object.keys(env), "kumo.env.example");
  assert.ok(Object.keys(env).every((k) => SERVER_ENV.has(k)));
  const files = readdirSync(dir)
    .filter((f) => /^n\d+\.yaml$/.test(f))
    .sort();
  assert.equal(files.length, 5);
  const data = mkdtempSync(join(tmpdir(), "kumo-bm-"));
  try {
    const configs = files.map((f) => resolveConfig({ config: join(dir, f), data }, env));
    const zones = new Map(configs.map((c) => [c.id, parseLabels(c.labels).zone]));
    assert.equal(new Set(configs.map((c) => c.id)).size, 5, "unique ids");
    assert.equal(new Set(zones.values()).size, 3, "three zones");
    for (const c of configs) {
      // The join list is every other host by its own peer address.
      const others = configs.filter((o) => o.id !== c.id);
      assert.deepEqual(
        c.join,
        others.map((o) => ({ id: o.id, address: o.peer })),
        `${c.id}'s join`,
      );
      assert.notEqual(c.peer.split(":")[0], "0.0.0.0", "the peer address is advertised");
      assert.equal(c.shards, configs[0]?.shards);
      assert.equal(c.replicas, 3);
      assert.equal(c.s3RootKey, env.KUMO_S3_ROOT_KEY);
      assert.equal(c.data, data, "the flag wins over the file");
    }
    // The metadata group lives on the first three ids: they should be in three zones.
    const first3 = [...zones.keys()].sort().slice(0, 3);
    assert.equal(new Set(first3.map((id) => zones.get(id))).size, 3);
    // The file's data directory is the one the unit's StateDirectory= makes.
    assert.equal(
      resolveConfig({ config: join(dir, files[0] as string) }, env).data,
      "/var/lib/kumo",
    );
  } finally {
    rmSync(data, { recursive: true, force: true });
  }
});

test("the deployment guide is linked from the README and the operations guide", () => {
  assert.ok(existsSync(join(ROOT, "docs/deploy.md")));
  assert.match(repoFile("README.md"), /\(docs\/deploy\.md\)/);
  assert.match(repoFile("docs/operations.md"), /\(deploy\.md/);
  assert.match(repoFile("deploy/helm/kumo/README.md"), /docs\/deploy\.md/);
});
