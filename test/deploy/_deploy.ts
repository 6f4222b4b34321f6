/**
 * What the deployment tests share: the repository's paths, a Dockerfile reader, and the checks
 * every rendering of the Kubernetes objects must pass (the plain manifests as written, as
 * `kubectl kustomize` renders them, and the Helm chart as `helm template` renders it).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { accessSync, constants, readFileSync } from "node:fs";
import { delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";
import { envName, OPTIONS } from "../../src/node/config.js";

/** The repository (this file is dist/test/deploy/_deploy.js once compiled). */
export const ROOT = join(fileURLToPath(import.meta.url), "../../../..");
/** The compiled `kumo` entry point the tests run, and the image runs as /app/dist/src/cli/main.js. */
export const MAIN = join(ROOT, "dist/src/cli/main.js");

/** `--flag` names `kumo server` takes: every option of OPTIONS, and --config (src/cli/main.ts). */
export const SERVER_FLAGS = new Set(["config", ...OPTIONS.map((o) => o.flag)]);
/** KUMO_* variables `kumo server` reads: one per option, and KUMO_CONFIG. */
export const SERVER_ENV = new Set(["KUMO_CONFIG", ...OPTIONS.map((o) => envName(o.flag))]);

/** The port of an option's default HOST:PORT (peer 7000, api 7001, s3 7002). */
export function defaultPort(flag: "peer" | "api" | "s3"): number {
  const def = OPTIONS.find((o) => o.flag === flag)?.def;
  assert.equal(typeof def, "string", `--${flag} has a default address`);
  return Number(String(def).slice(String(def).lastIndexOf(":") + 1));
}

export function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(":") + 1));
}

/** Asserts every `--flag` in argv is a `kumo server` flag; returns the flags with their values. */
export function checkServerArgs(argv: readonly string[], where: string): Map<string, string> {
  const flags = new Map<string, string>();
  argv.forEach((a, i) => {
    if (!a.startsWith("--")) return;
    const [name, inline] = a.slice(2).split("=", 2) as [string, string | undefined];
    assert.ok(SERVER_FLAGS.has(name), `${where}: --${name} is not a kumo server flag`);
    flags.set(name, inline ?? argv[i + 1] ?? "");
  });
  return flags;
}

export function checkServerEnv(names: Iterable<string>, where: string): void {
  for (const n of names) {
    if (!n.startsWith("KUMO_")) continue;
    assert.ok(SERVER_ENV.has(n), `${where}: ${n} is not a kumo server variable (OPTIONS)`);
  }
}

/** Every YAML document of a file (or a text), parse errors failing the test. */
export function yamlDocs(text: string, where: string): unknown[] {
  const docs = parseAllDocuments(text);
  const out: unknown[] = [];
  for (const d of docs) {
    assert.equal(d.errors.length, 0, `${where}: ${d.errors.map((e) => e.message).join("; ")}`);
    const v = d.toJS() as unknown;
    if (v !== null && v !== undefined) out.push(v);
  }
  return out;
}

/** An executable on PATH (or at an absolute path), or undefined. */
export function findExecutable(name: string): string | undefined {
  const candidates = name.includes("/")
    ? [name]
    : (process.env.PATH ?? "").split(delimiter).map((d) => join(d, name));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // not there
    }
  }
  return undefined;
}

export function run(
  file: string,
  args: readonly string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(file, args, {
    cwd: opts.cwd ?? ROOT,
    env: opts.env ?? process.env,
    encoding: "utf8",
    timeout: opts.timeoutMs ?? 60_000,
    maxBuffer: 64 << 20,
  });
  return { status: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? String(r.error ?? "") };
}

// ---- Dockerfile ------------------------------------------------------------------------------

export interface Instruction {
  readonly op: string;
  /** The arguments, continuation lines joined. */
  readonly args: string;
  readonly line: number;
}

export interface Stage {
  readonly from: string;
  readonly name: string | undefined;
  readonly instructions: readonly Instruction[];
}

/** Instructions of a Dockerfile (comments dropped, `\` continuations joined), by stage. */
export function readDockerfile(text: string): { args: Map<string, string>; stages: Stage[] } {
  const instructions: Instruction[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const start = i;
    let line = lines[i] ?? "";
    if (/^\s*(#|$)/.test(line)) continue;
    while (line.endsWith("\\")) {
      line = `${line.slice(0, -1)} `;
      i++;
      // Comment lines inside a continued instruction are skipped, as Docker does.
      while (/^\s*#/.test(lines[i] ?? "")) i++;
      line += (lines[i] ?? "").trim();
    }
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line);
    assert.ok(m, `Dockerfile line ${start + 1}: ${line}`);
    instructions.push({
      op: (m[1] as string).toUpperCase(),
      args: (m[2] as string).replace(/\s+/g, " ").trim(),
      line: start + 1,
    });
  }
  const args = new Map<string, string>();
  const stages: { from: string; name: string | undefined; instructions: Instruction[] }[] = [];
  for (const ins of instructions) {
    if (ins.op === "ARG" && stages.length === 0) {
      const [k, v] = ins.args.split("=", 2) as [string, string | undefined];
      args.set(k, v ?? "");
    } else if (ins.op === "FROM") {
      const [image, as, name] = ins.args.split(" ");
      const from = (image ?? "").replace(/\$\{?(\w+)\}?/g, (_, k: string) => args.get(k) ?? "");
      stages.push({ from, name: as?.toUpperCase() === "AS" ? name : undefined, instructions: [] });
    } else {
      assert.ok(stages.length > 0, `Dockerfile line ${ins.line}: ${ins.op} before FROM`);
      stages[stages.length - 1]?.instructions.push(ins);
    }
  }
  return { args, stages };
}

/** The JSON (exec) form of ENTRYPOINT/CMD/HEALTHCHECK CMD, or undefined for the shell form. */
export function execForm(args: string): string[] | undefined {
  if (!args.trim().startsWith("[")) return undefined;
  return JSON.parse(args) as string[];
}

/** `ENV A=1 B=2` (the key=value form) as a map. */
export function envOf(stage: Stage): Map<string, string> {
  const out = new Map<string, string>();
  for (const ins of stage.instructions) {
    if (ins.op !== "ENV") continue;
    for (const m of ins.args.matchAll(/(\w+)=("[^"]*"|\S*)/g)) {
      out.set(m[1] as string, (m[2] as string).replace(/^"|"$/g, ""));
    }
  }
  return out;
}

// ---- Kubernetes objects ----------------------------------------------------------------------

export interface EnvVar {
  readonly name: string;
  readonly value?: string;
  readonly valueFrom?: {
    readonly fieldRef?: { readonly fieldPath: string };
    readonly secretKeyRef?: { readonly name: string; readonly key: string; optional?: boolean };
  };
}
interface Probe {
  readonly httpGet?: { readonly path: string; readonly port: string | number };
}
export interface Container {
  readonly name: string;
  readonly image: string;
  readonly command?: readonly string[];
  readonly args?: readonly string[];
  readonly env?: readonly EnvVar[];
  readonly ports?: readonly { readonly name?: string; readonly containerPort: number }[];
  readonly volumeMounts?: readonly { readonly name: string; readonly mountPath: string }[];
  readonly readinessProbe?: Probe;
  readonly livenessProbe?: Probe;
  readonly startupProbe?: Probe;
  readonly resources?: { readonly requests?: Record<string, string> };
  readonly securityContext?: {
    readonly readOnlyRootFilesystem?: boolean;
    readonly allowPrivilegeEscalation?: boolean;
    readonly runAsNonRoot?: boolean;
    readonly runAsUser?: number;
    readonly capabilities?: { readonly drop?: readonly string[] };
  };
}
interface PodSpec {
  readonly serviceAccountName?: string;
  readonly securityContext?: {
    readonly runAsNonRoot?: boolean;
    readonly runAsUser?: number;
    readonly fsGroup?: number;
  };
  readonly topologySpreadConstraints?: readonly {
    readonly topologyKey: string;
    readonly maxSkew: number;
    readonly labelSelector?: { readonly matchLabels?: Record<string, string> };
  }[];
  readonly initContainers?: readonly Container[];
  readonly containers: readonly Container[];
  readonly volumes?: readonly { readonly name: string }[];
}
export interface K8sObject {
  readonly apiVersion: string;
  readonly kind: string;
  readonly metadata: {
    readonly name: string;
    readonly namespace?: string;
    readonly labels?: Record<string, string>;
  };
  // biome-ignore lint/suspicious/noExplicitAny: the spec's shape depends on the kind
  readonly spec?: any;
  readonly stringData?: Record<string, string>;
  readonly rules?: readonly {
    readonly apiGroups: readonly string[];
    readonly resources: readonly string[];
    readonly verbs: readonly string[];
  }[];
  readonly roleRef?: { readonly kind: string; readonly name: string };
  readonly subjects?: readonly {
    readonly kind: string;
    readonly name: string;
    namespace?: string;
  }[];
}

function one(objects: readonly K8sObject[], kind: string, pred?: (o: K8sObject) => boolean) {
  const found = objects.filter((o) => o.kind === kind && (pred ? pred(o) : true));
  assert.equal(found.length, 1, `exactly one ${kind}${pred ? " (matching)" : ""}`);
  return found[0] as K8sObject;
}

function selects(selector: Record<string, string>, labels: Record<string, string> | undefined) {
  return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
}

export interface KumoObjects {
  readonly statefulSet: K8sObject;
  readonly pod: PodSpec;
  readonly init: Container;
  readonly server: Container;
  readonly headless: K8sObject;
  readonly client: K8sObject;
  readonly pdb: K8sObject;
  readonly secret: K8sObject | undefined;
}

/**
 * The checks every rendering of the Kubernetes objects must pass: the required fields, and that
 * they agree with what `kumo server` takes (src/node/config.ts) and with each other.
 */
export function checkKumoObjects(
  objects: readonly K8sObject[],
  opts: { namespace?: string; where: string },
): KumoObjects {
  const w = opts.where;
  for (const o of objects) {
    assert.ok(o.apiVersion && o.kind && o.metadata?.name, `${w}: apiVersion, kind, metadata.name`);
    if (opts.namespace && !o.kind.startsWith("Cluster"))
      assert.equal(o.metadata.namespace, opts.namespace, `${w}: ${o.kind} ${o.metadata.name}`);
  }
  const statefulSet = one(objects, "StatefulSet");
  const sts = statefulSet.spec;
  const pod = sts.template.spec as PodSpec;
  const podLabels = sts.template.metadata.labels as Record<string, string>;
  assert.ok(selects(sts.selector.matchLabels, podLabels), `${w}: the selector selects the pods`);

  // Identity: a headless Service published before readiness, pods started together.
  const headless = one(objects, "Service", (s) => s.spec?.clusterIP === "None");
  assert.equal(sts.serviceName, headless.metadata.name, `${w}: serviceName is the headless one`);
  assert.equal(headless.spec.publishNotReadyAddresses, true, `${w}: publishNotReadyAddresses`);
  assert.ok(selects(headless.spec.selector, podLabels), `${w}: headless Service selects the pods`);
  assert.equal(sts.podManagementPolicy, "Parallel", `${w}: podManagementPolicy Parallel`);
  assert.ok(sts.replicas >= 3, `${w}: at least 3 replicas`);

  const server = pod.containers.find((c) => c.name === "kumo") as Container;
  assert.ok(server, `${w}: a container named kumo`);
  const init = pod.initContainers?.find((c) => c.name === "pod-config") as Container;
  assert.ok(init, `${w}: the pod-config init container`);
  assert.equal(init.image, server.image, `${w}: the init container runs the same image`);
  assert.deepEqual(init.command, ["node", "/app/deploy/pod-config.mjs"], `${w}: init command`);

  // The server: the image's entrypoint, `server`, only real flags and variables.
  assert.equal(server.command, undefined, `${w}: the image's ENTRYPOINT is kept`);
  assert.equal(server.args?.[0], "server", `${w}: runs kumo server`);
  const flags = checkServerArgs(server.args ?? [], w);
  const env = new Map((server.env ?? []).map((e) => [e.name, e]));
  checkServerEnv(env.keys(), w);
  for (const own of ["KUMO_ID", "KUMO_PEER", "KUMO_JOIN", "KUMO_LABELS"]) {
    // Variables win over the file: any of these would override the per-pod file for every pod.
    assert.ok(!env.has(own), `${w}: ${own} must come from the per-pod file, not the environment`);
  }
  const initEnv = new Map((init.env ?? []).map((e) => [e.name, e]));
  const out = initEnv.get("OUT")?.value as string;
  assert.equal(flags.get("config"), out, `${w}: kumo server reads the file pod-config writes`);
  const mountOf = (c: Container, path: string) =>
    c.volumeMounts?.find((m) => path.startsWith(`${m.mountPath}/`))?.name;
  assert.ok(mountOf(init, out), `${w}: the init container writes on a volume`);
  assert.equal(mountOf(init, out), mountOf(server, out), `${w}: the same volume in both`);

  // Ports: the server's defaults (config.ts), the containers, the services and the probes agree.
  const portNamed = (name: string) => server.ports?.find((p) => p.name === name)?.containerPort;
  assert.equal(portNamed("peer"), defaultPort("peer"), `${w}: peer port`);
  assert.equal(portNamed("api"), defaultPort("api"), `${w}: api port`);
  assert.equal(portNamed("s3"), defaultPort("s3"), `${w}: s3 port`);
  assert.equal(portOf(env.get("KUMO_API")?.value ?? ""), portNamed("api"), `${w}: KUMO_API port`);
  assert.equal(portOf(env.get("KUMO_S3")?.value ?? ""), portNamed("s3"), `${w}: KUMO_S3 port`);
  assert.equal(Number(initEnv.get("PEER_PORT")?.value), portNamed("peer"), `${w}: PEER_PORT`);
  const probePort = (p: Probe | undefined) => {
    const port = p?.httpGet?.port;
    return typeof port === "number" ? port : portNamed(String(port));
  };
  assert.equal(server.readinessProbe?.httpGet?.path, "/readyz", `${w}: readiness on /readyz`);
  assert.equal(server.livenessProbe?.httpGet?.path, "/healthz", `${w}: liveness on /healthz`);
  assert.equal(server.startupProbe?.httpGet?.path, "/healthz", `${w}: startup on /healthz`);
  for (const p of [server.readinessProbe, server.livenessProbe, server.startupProbe]) {
    assert.equal(probePort(p), defaultPort("api"), `${w}: probes hit the API port`);
  }
  const servicePorts = (s: K8sObject) =>
    (s.spec.ports as { name: string; port: number; targetPort: string }[]).map(
      (p) => `${p.name}:${p.port}:${p.targetPort}`,
    );
  assert.deepEqual(
    servicePorts(headless).sort(),
    ["api:7001:api", "peer:7000:peer", "s3:7002:s3"],
    `${w}: headless Service ports`,
  );
  const client = one(objects, "Service", (s) => s.spec?.clusterIP !== "None");
  assert.ok(selects(client.spec.selector, podLabels), `${w}: client Service selects the pods`);
  assert.deepEqual(servicePorts(client).sort(), ["api:7001:api", "s3:7002:s3"], `${w}: client`);

  // Names: the peer addresses pod-config builds are the headless Service's DNS names.
  assert.equal(initEnv.get("HEADLESS_SERVICE")?.value, headless.metadata.name, `${w}: DNS names`);
  assert.equal(initEnv.get("POD_NAME")?.valueFrom?.fieldRef?.fieldPath, "metadata.name", w);
  assert.equal(initEnv.get("POD_NAMESPACE")?.valueFrom?.fieldRef?.fieldPath, "metadata.namespace");
  assert.equal(initEnv.get("NODE_NAME")?.valueFrom?.fieldRef?.fieldPath, "spec.nodeName", w);
  const initial = Number(initEnv.get("INITIAL_MEMBERS")?.value);
  assert.ok(Number.isInteger(initial) && initial >= 1 && initial <= sts.replicas, `${w}: initial`);

  // Storage: a claim per pod, mounted where KUMO_DATA points.
  const claims = sts.volumeClaimTemplates as {
    metadata: { name: string };
    spec: { accessModes: string[]; resources: { requests: { storage: string } } };
  }[];
  const dataMount = server.volumeMounts?.find((m) => m.mountPath === env.get("KUMO_DATA")?.value);
  assert.ok(dataMount, `${w}: KUMO_DATA is a mounted volume`);
  const claim = claims.find((c) => c.metadata.name === dataMount.name);
  assert.ok(claim, `${w}: the data volume is a volumeClaimTemplate`);
  assert.deepEqual(claim.spec.accessModes, ["ReadWriteOnce"], `${w}: ReadWriteOnce`);
  assert.match(claim.spec.resources.requests.storage, /^\d+[GT]i$/, `${w}: storage size`);
  for (const c of [init, server]) {
    for (const m of c.volumeMounts ?? []) {
      const known = pod.volumes?.some((v) => v.name === m.name) || m.name === claim.metadata.name;
      assert.ok(known, `${w}: volume ${m.name} of ${c.name} is defined`);
    }
  }

  // Not root, read-only root filesystem, no privilege escalation, no capabilities.
  assert.equal(pod.securityContext?.runAsNonRoot, true, `${w}: runAsNonRoot`);
  assert.ok((pod.securityContext?.runAsUser ?? 0) > 0, `${w}: a non-root uid`);
  assert.ok(pod.securityContext?.fsGroup !== undefined, `${w}: fsGroup (volume writable)`);
  for (const c of [init, server]) {
    assert.equal(c.securityContext?.readOnlyRootFilesystem, true, `${w}: ${c.name} read-only`);
    assert.equal(c.securityContext?.allowPrivilegeEscalation, false, `${w}: ${c.name}`);
    assert.deepEqual(c.securityContext?.capabilities?.drop, ["ALL"], `${w}: ${c.name} caps`);
  }
  assert.ok(server.resources?.requests?.cpu && server.resources.requests.memory, `${w}: requests`);

  // Zones: pods spread over the zone label pod-config turns into Kumo's zone label.
  const zoneLabel = initEnv.get("ZONE_NODE_LABEL")?.value;
  assert.equal(zoneLabel, "topology.kubernetes.io/zone", `${w}: zone from the node's zone label`);
  const spread = pod.topologySpreadConstraints ?? [];
  const zoneSpread = spread.find((s) => s.topologyKey === zoneLabel);
  assert.ok(zoneSpread && zoneSpread.maxSkew === 1, `${w}: pods spread over zones`);
  assert.ok(selects(zoneSpread.labelSelector?.matchLabels ?? {}, podLabels), `${w}: spread sel.`);
  assert.ok(
    spread.some((s) => s.topologyKey === "kubernetes.io/hostname"),
    `${w}: and hosts`,
  );
  // Reading the node's labels needs `get` on nodes, granted to the pods' service account.
  const sa = one(objects, "ServiceAccount");
  assert.equal(pod.serviceAccountName, sa.metadata.name, `${w}: the pods' service account`);
  const role = one(objects, "ClusterRole");
  assert.ok(
    role.rules?.some((r) => r.resources.includes("nodes") && r.verbs.includes("get")),
    `${w}: get nodes`,
  );
  const binding = one(objects, "ClusterRoleBinding");
  assert.equal(binding.roleRef?.name, role.metadata.name, `${w}: binding → role`);
  assert.deepEqual(
    binding.subjects?.map((s) => `${s.kind}/${s.name}`),
    [`ServiceAccount/${sa.metadata.name}`],
    `${w}: binding → service account`,
  );
  if (opts.namespace) assert.equal(binding.subjects?.[0]?.namespace, opts.namespace, w);

  // Quorum: voluntary disruptions never take a majority of any shard's replicas.
  const pdb = one(objects, "PodDisruptionBudget");
  const replicasPerShard = Number(env.get("KUMO_REPLICAS")?.value ?? 3);
  assert.ok(replicasPerShard >= 3, `${w}: 3 or more replicas per shard`);
  assert.equal(pdb.spec.minAvailable, undefined, `${w}: the PDB is maxUnavailable`);
  assert.ok(pdb.spec.maxUnavailable >= 1, `${w}: maxUnavailable`);
  assert.ok(
    pdb.spec.maxUnavailable <= Math.floor((replicasPerShard - 1) / 2),
    `${w}: maxUnavailable ${pdb.spec.maxUnavailable} keeps a majority of ${replicasPerShard}`,
  );
  assert.ok(selects(pdb.spec.selector.matchLabels, podLabels), `${w}: the PDB selects the pods`);

  // Secrets: every key a pod needs is in the Secret (when it is part of the objects).
  const secretObj = objects.find((o) => o.kind === "Secret");
  for (const e of env.values()) {
    const ref = e.valueFrom?.secretKeyRef;
    if (!ref) continue;
    if (secretObj) assert.equal(ref.name, secretObj.metadata.name, `${w}: ${e.name}'s Secret`);
    if (secretObj && !ref.optional)
      assert.ok(secretObj.stringData?.[ref.key] !== undefined, `${w}: ${ref.key} in the Secret`);
  }
  assert.ok(env.get("KUMO_TOKENS")?.valueFrom?.secretKeyRef, `${w}: tokens from a Secret`);
  return { statefulSet, pod, init, server, headless, client, pdb, secret: secretObj };
}

/** Reads a file of the repository. */
export function repoFile(path: string): string {
  return readFileSync(join(ROOT, path), "utf8");
}
