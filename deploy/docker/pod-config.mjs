/**
 * The init container of the Kumo StatefulSet (deploy/kubernetes/, deploy/helm/kumo/): writes the
 * part of a node's configuration that differs from pod to pod and that a StatefulSet template
 * cannot express, as a YAML file (written as JSON, which is YAML) for `kumo server --config`:
 *
 *   id      the pod name (kumo-0, kumo-1, ...): stable across restarts and rescheduling, since the
 *           pod keeps its name and its PersistentVolumeClaim (NODE_ID_OVERRIDES can rename one)
 *   peer    the pod's DNS name in the headless Service and the peer port: stable, unlike its IP
 *   join    the other initial members (ordinals 0 .. INITIAL_MEMBERS-1 except this pod) by DNS
 *           name; `kumo server` refuses a --join that lists the node itself, so this list cannot
 *           be the same for every pod. A pod beyond the initial members (a scale-up) gets them all:
 *           they are its seeds, and it joins the running cluster through them.
 *   labels  zone=<the value of ZONE_NODE_LABEL, default topology.kubernetes.io/zone, on the
 *           Kubernetes node the pod runs on>. The downward API cannot read node labels, so this
 *           asks the API server (GET /api/v1/nodes/NODE_NAME, which the chart's ClusterRole
 *           allows). A node without that label (a single-zone test cluster) gives no zone; an
 *           API error stops the pod with a message (zones silently lost would be worse).
 *
 * Everything else (ports, data directory, tokens, shards) comes from KUMO_* variables of the
 * main container, which take precedence over this file (docs/configuration.md), so they must not
 * set KUMO_ID, KUMO_PEER, KUMO_JOIN or KUMO_LABELS.
 *
 * Environment: POD_NAME, POD_NAMESPACE, NODE_NAME (downward API), HEADLESS_SERVICE,
 * CLUSTER_DOMAIN (cluster.local), INITIAL_MEMBERS, PEER_PORT (7000), ZONE_NODE_LABEL ("" turns
 * zones off), EXTRA_LABELS (e.g. "rack=r1"), NODE_ID_OVERRIDES ("kumo-1=kumo-1b,..."),
 * OUT (/run/kumo/kumo.yaml); K8S_API and SERVICE_ACCOUNT_DIR only to point it elsewhere (tests).
 * Plain Node.js, no dependencies: it runs from the Kumo image (/app/deploy/pod-config.mjs).
 */
import { readFileSync, writeFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";

const env = process.env;

function fail(message) {
  console.error(`kumo pod-config: ${message}`);
  process.exit(1);
}

function need(name) {
  const v = env[name];
  if (v === undefined || v === "") fail(`${name} is not set (see deploy/docker/pod-config.mjs)`);
  return v;
}

/** "kumo-1=kumo-1b,kumo-2=kumo-2b" → Map; ids as `kumo server` accepts them. */
function parseOverrides(v) {
  const out = new Map();
  for (const entry of (v ?? "").split(",").map((s) => s.trim())) {
    if (entry === "") continue;
    const m = /^([a-z0-9.-]+)=([A-Za-z0-9_.-]+)$/.exec(entry);
    if (!m)
      fail(`NODE_ID_OVERRIDES entries look like kumo-1=kumo-1b, got ${JSON.stringify(entry)}`);
    out.set(m[1], m[2]);
  }
  return out;
}

/** GET a JSON document from the Kubernetes API with the pod's service account. */
function getJson(url, token, ca) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const send = u.protocol === "https:" ? httpsRequest : httpRequest;
    const req = send(
      u,
      {
        method: "GET",
        headers: { authorization: `Bearer ${token}`, accept: "application/json" },
        ...(u.protocol === "https:" && ca ? { ca } : {}),
        timeout: 10_000,
      },
      (res) => {
        const chunks = [];
        res.on("data", (c) => chunks.push(c));
        res.on("end", () => {
          const body = Buffer.concat(chunks).toString("utf8");
          if (res.statusCode !== 200)
            return reject(new Error(`${res.statusCode} ${body.slice(0, 300)}`));
          try {
            resolve(JSON.parse(body));
          } catch (e) {
            reject(e);
          }
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error("timed out after 10 s")));
    req.on("error", reject);
    req.end();
  });
}

async function zoneOf(nodeName, label) {
  const saDir = env.SERVICE_ACCOUNT_DIR || "/var/run/secrets/kubernetes.io/serviceaccount";
  const api =
    env.K8S_API ||
    `https://${need("KUBERNETES_SERVICE_HOST")}:${env.KUBERNETES_SERVICE_PORT || "443"}`;
  let token;
  let ca;
  try {
    token = readFileSync(`${saDir}/token`, "utf8").trim();
    if (api.startsWith("https:")) ca = readFileSync(`${saDir}/ca.crt`);
  } catch (e) {
    fail(
      `cannot read the service account token in ${saDir} (${e.message}); ` +
        "set automountServiceAccountToken, or ZONE_NODE_LABEL='' to run without zones",
    );
  }
  let node;
  try {
    node = await getJson(`${api}/api/v1/nodes/${encodeURIComponent(nodeName)}`, token, ca);
  } catch (e) {
    fail(
      `cannot read node ${nodeName} from the Kubernetes API (${e.message}). The pod's service ` +
        "account needs `get` on nodes (the kumo ClusterRole and ClusterRoleBinding; with plain " +
        "manifests, set `namespace:` in kustomization.yaml so the binding names the right " +
        "namespace), or set ZONE_NODE_LABEL='' to run without zones.",
    );
  }
  const zone = node?.metadata?.labels?.[label];
  if (zone === undefined) {
    console.error(
      `kumo pod-config: node ${nodeName} has no ${label} label: starting without a zone`,
    );
    return undefined;
  }
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(zone))
    fail(`zone ${JSON.stringify(zone)} is not a Kumo label value`);
  return zone;
}

const pod = need("POD_NAME");
const m = /^(.+)-(\d+)$/.exec(pod);
if (!m) fail(`POD_NAME ${JSON.stringify(pod)} is not a StatefulSet pod name (NAME-ORDINAL)`);
const [, set, ordinalText] = m;
const ordinal = Number(ordinalText);
const initial = Number(need("INITIAL_MEMBERS"));
if (!Number.isInteger(initial) || initial < 1) fail("INITIAL_MEMBERS must be a positive integer");
const domain = `${need("HEADLESS_SERVICE")}.${need("POD_NAMESPACE")}.svc.${env.CLUSTER_DOMAIN || "cluster.local"}`;
const port = env.PEER_PORT || "7000";
const overrides = parseOverrides(env.NODE_ID_OVERRIDES);
const idOf = (podName) => overrides.get(podName) ?? podName;
const addressOf = (podName) => `${podName}.${domain}:${port}`;

const join = [];
for (let i = 0; i < initial; i++) {
  if (i === ordinal) continue;
  join.push(`${idOf(`${set}-${i}`)}=${addressOf(`${set}-${i}`)}`);
}
const labels = (env.EXTRA_LABELS ?? "")
  .split(",")
  .map((s) => s.trim())
  .filter((s) => s !== "" && !s.startsWith("zone="));
const zoneLabel = env.ZONE_NODE_LABEL ?? "topology.kubernetes.io/zone";
if (zoneLabel !== "") {
  const zone = await zoneOf(need("NODE_NAME"), zoneLabel);
  if (zone !== undefined) labels.unshift(`zone=${zone}`);
}

const config = { id: idOf(pod), peer: addressOf(pod), join: join.join(","), labels };
const out = env.OUT || "/run/kumo/kumo.yaml";
writeFileSync(out, `${JSON.stringify(config, null, 2)}\n`);
console.log(`kumo pod-config: wrote ${out}: ${JSON.stringify(config)}`);
