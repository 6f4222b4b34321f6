#!/usr/bin/env node
/** The `kumo` command: run a node, run a local cluster, and talk to a cluster. */
import { Command, InvalidArgumentError } from "commander";
import { ConfigError, envName, OPTIONS, resolveConfig } from "../node/config.js";
import { createLogger } from "../node/log.js";
import { KumoNode } from "../node/node.js";
import { registerBackup } from "./backup.js";
import {
  type ClientOptions,
  failOnError,
  keyPath,
  parseDuration,
  request,
  resolveClient,
  waitForMoves,
} from "./client.js";
import { runDev } from "./dev.js";
import { formatBytes, outputMode, paint, renderTable, stateStyle } from "./output.js";
import { PART_MIB_MAX, PART_MIB_MIN, type S3Options, s3ClientFor, s3Copy, s3List } from "./s3.js";
import { addTokenCommands } from "./tokens.js";

const program = new Command()
  .name("kumo")
  .description("Kumo: a replicated, sharded key-value store and S3-compatible object store")
  .showHelpAfterError();

const server = program
  .command("server")
  .description(
    "run one node (see docs/configuration.md; flags, KUMO_* variables and --config YAML are equivalent)",
  )
  .option("--config <file>", "YAML configuration file (env KUMO_CONFIG)");
for (const o of OPTIONS) {
  const def =
    o.def === undefined
      ? ""
      : ` (default ${Array.isArray(o.def) ? o.def.join(",") || "none" : o.def})`;
  server.option(`--${o.flag} <value>`, `${o.help}; env ${envName(o.flag)}${def}`);
}
server.action(async (flags: Record<string, unknown>) => {
  let cfg: ReturnType<typeof resolveConfig>;
  try {
    cfg = resolveConfig(flags);
  } catch (e) {
    if (e instanceof ConfigError) {
      console.error(`kumo server: ${e.message}`);
      process.exit(2);
    }
    throw e;
  }
  const log = createLogger({ level: cfg.logLevel, node: cfg.id });
  const node = new KumoNode(cfg, undefined, log);
  // The first signal stops gracefully (src/node/node.ts, stop(): drain, hand leadership over,
  // let requests finish, within the --shutdown-* bounds); a second one exits at once, as a
  // SIGKILL would (nothing acknowledged is lost either way: it is durable on a quorum). Not one
  // within SECOND_SIGNAL_AFTER_MS: Ctrl+C in a terminal reaches both a supervisor (kumo dev, a
  // script) and its children, and the supervisor then forwards its own SIGTERM.
  const SECOND_SIGNAL_AFTER_MS = 500;
  let signalledAtMs: number | undefined;
  const stop = async (signal: string) => {
    if (signalledAtMs !== undefined) {
      if (performance.now() - signalledAtMs < SECOND_SIGNAL_AFTER_MS) return;
      log.warn({ signal }, "second signal: exiting now, without finishing the graceful shutdown");
      process.exit(1);
    }
    signalledAtMs = performance.now();
    log.info({ signal }, "stopping");
    await node.stop();
    process.exit(0);
  };
  process.on("SIGINT", () => void stop("SIGINT"));
  process.on("SIGTERM", () => void stop("SIGTERM"));
  // SIGHUP: re-read the certificate files now (they are also polled, see --tls-reload-interval).
  process.on("SIGHUP", () => void node.reloadTls());
  try {
    await node.start();
  } catch (e) {
    log.fatal({ err: e }, `cannot start: ${(e as Error).message}`);
    process.exit(1);
  }
  const scheme = cfg.clientTlsCert ? "https" : "http";
  log.info(
    { peer: cfg.peer, api: `${scheme}://${cfg.api}`, s3: `${scheme}://${cfg.s3}` },
    "serving",
  );
});

function positiveInt(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1)
      throw new InvalidArgumentError(`${name} must be a positive integer`);
    return n;
  };
}

program
  .command("dev")
  .description("run a local cluster of real node processes on 127.0.0.1 (Ctrl+C stops it)")
  .option(
    "--nodes <n>",
    "number of nodes (on an existing folder: more nodes than it has start and join)",
    positiveInt("--nodes"),
    3,
  )
  .option("--add-node", "start one more node that joins the folder's cluster", false)
  .option("--data <dir>", "data directory (cluster.json goes here)", ".kumo")
  .option(
    "--base-port <port>",
    "first port; node i uses base+10(i-1) .. +2",
    positiveInt("--base-port"),
    7400,
  )
  .option("--quiet", "do not forward node output", false)
  .option(
    "--tls",
    "throwaway CA and certificates in DIR/tls: mutual TLS between nodes, HTTPS on the API and S3 ports",
    false,
  )
  .option("--suspect-after <duration>", "every node's --suspect-after (e.g. 10s)")
  .option("--dead-after <duration>", "every node's --dead-after (e.g. 60s)")
  .argument(
    "[server-flags...]",
    "extra `kumo server` flags for every node, after --, e.g. -- --tick-ms 20",
  )
  .action(
    async (
      serverArgs: string[],
      o: {
        nodes: number;
        data: string;
        basePort: number;
        quiet: boolean;
        tls: boolean;
        addNode: boolean;
        suspectAfter?: string;
        deadAfter?: string;
      },
    ) => {
      await runDev({
        nodes: o.nodes,
        addNodes: o.addNode ? 1 : 0,
        data: o.data,
        basePort: o.basePort,
        quiet: o.quiet,
        tls: o.tls,
        serverArgs: [
          ...(o.suspectAfter ? ["--suspect-after", o.suspectAfter] : []),
          ...(o.deadAfter ? ["--dead-after", o.deadAfter] : []),
          ...serverArgs,
        ],
      });
    },
  );

function withClient(cmd: Command): Command {
  return cmd
    .option("--endpoint <url>", "a node's API address (env KUMO_ENDPOINT)")
    .option("--token <token>", "bearer token (env KUMO_TOKEN)")
    .option("--cluster <file>", "cluster.json from kumo dev (env KUMO_CLUSTER)", undefined)
    .option("--ca <file>", "CA certificate (PEM) to trust for https:// endpoints (env KUMO_CA)");
}

async function run(fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    console.error(`kumo: ${(e as Error).message}`);
    process.exitCode = 1;
  }
}

const kv = program.command("kv").description("read and write keys");
withClient(kv.command("put <key> [value]"))
  .description("write a value (from the argument, or standard input)")
  .option("--keyspace <name>", "keyspace", "default")
  .option("--if-revision <n>", "compare-and-set: only if the key's revision is n")
  .option("--create-only", "only if the key does not exist", false)
  .action(
    (
      key: string,
      value: string | undefined,
      o: ClientOptions & { keyspace: string; ifRevision?: string; createOnly: boolean },
    ) =>
      run(async () => {
        const c = resolveClient(o);
        let body: Uint8Array;
        if (value !== undefined) body = new TextEncoder().encode(value);
        else {
          const chunks: Buffer[] = [];
          for await (const ch of process.stdin) chunks.push(ch as Buffer);
          body = Buffer.concat(chunks);
        }
        const headers: Record<string, string> = {};
        if (o.ifRevision) headers["if-match"] = `"${o.ifRevision}"`;
        if (o.createOnly) headers["if-none-match"] = "*";
        const r = await request(c, "PUT", keyPath(o.keyspace, key), body, headers);
        await failOnError(r);
        console.log(JSON.stringify(await r.json()));
      }),
  );
withClient(kv.command("get <key>"))
  .description("print a value")
  .option("--keyspace <name>", "keyspace", "default")
  .option("--stale", "allow a possibly stale read from the nearest replica", false)
  .action((key: string, o: ClientOptions & { keyspace: string; stale: boolean }) =>
    run(async () => {
      const c = resolveClient(o);
      const r = await request(
        c,
        "GET",
        keyPath(o.keyspace, key) + (o.stale ? "?consistency=stale" : ""),
      );
      await failOnError(r);
      process.stdout.write(Buffer.from(await r.arrayBuffer()));
      if (process.stdout.isTTY) process.stdout.write("\n");
    }),
  );
withClient(kv.command("del <key>"))
  .description("delete a key")
  .option("--keyspace <name>", "keyspace", "default")
  .option("--if-revision <n>", "only if the key's revision is n")
  .action((key: string, o: ClientOptions & { keyspace: string; ifRevision?: string }) =>
    run(async () => {
      const c = resolveClient(o);
      const r = await request(
        c,
        "DELETE",
        keyPath(o.keyspace, key),
        undefined,
        o.ifRevision ? { "if-match": `"${o.ifRevision}"` } : {},
      );
      await failOnError(r);
      console.log(JSON.stringify(await r.json()));
    }),
  );
withClient(kv.command("ls [prefix]"))
  .description("list keys in order (all pages)")
  .option("--keyspace <name>", "keyspace", "default")
  .option("--limit <n>", "page size", "1000")
  .action((prefix: string | undefined, o: ClientOptions & { keyspace: string; limit: string }) =>
    run(async () => {
      const c = resolveClient(o);
      let startAfter: string | null = null;
      do {
        const q = new URLSearchParams({ prefix: prefix ?? "", limit: o.limit, keys_only: "true" });
        if (startAfter) q.set("start_after", startAfter);
        const r = await request(c, "GET", `/v1/kv/${encodeURIComponent(o.keyspace)}?${q}`);
        await failOnError(r);
        const page = (await r.json()) as {
          items: { key: string; revision: number }[];
          next: string | null;
        };
        for (const it of page.items) console.log(`${it.key}\t${it.revision}`);
        startAfter = page.next;
      } while (startAfter);
    }),
  );

const nodeCmd = program.command("node").description("operate on cluster members");
for (const [action, what] of [
  ["drain", "move every replica and leadership off a node (it stays a member)"],
  ["remove", "retire a node for good: its replicas are re-created on the others"],
  ["activate", "undo a drain"],
] as const) {
  const cmd = withClient(nodeCmd.command(`${action} <id>`))
    .description(what)
    .option("--json", "print JSON", false);
  if (action !== "activate")
    cmd
      .option("--wait", "wait until every replica has moved, with a progress bar and ETA", false)
      .option("--timeout <duration>", "give up waiting after this long (e.g. 30m)", "1h");
  cmd.action((id: string, o: ClientOptions & { json: boolean; wait?: boolean; timeout?: string }) =>
    run(async () => {
      const c = resolveClient(o);
      const r = await request(c, "POST", `/v1/nodes/${encodeURIComponent(id)}/${action}`);
      await failOnError(r);
      const body = (await r.json()) as { node: string; admin: string };
      const mode = outputMode(o);
      if (!o.wait) {
        console.log(mode.json ? JSON.stringify(body) : `${body.node}: ${body.admin}`);
        return;
      }
      const done = await waitForMoves(
        c,
        id,
        action === "remove",
        parseDuration(o.timeout ?? "1h"),
        mode,
      );
      console.log(
        mode.json
          ? JSON.stringify({ ...body, ...done })
          : `${body.node}: ${body.admin}, ${done.movedReplicas} replicas moved`,
      );
    }),
  );
}

const keyCmd = program.command("key").description("S3 access keys (admin token)");
withClient(keyCmd.command("create <name>"))
  .description("create an access key; prints its id and secret (the secret is shown only once)")
  .option(
    "--bucket <bucket:access...>",
    'grant access to a bucket ("*" for all): read, write or owner, e.g. --bucket photos:write',
  )
  .option("--create-buckets", "the key may create buckets (it owns those)", false)
  .action((name: string, o: ClientOptions & { bucket?: string[]; createBuckets: boolean }) =>
    run(async () => {
      const c = resolveClient(o);
      const buckets: Record<string, string> = {};
      for (const g of o.bucket ?? []) {
        const i = g.lastIndexOf(":");
        if (i <= 0) throw new Error(`--bucket wants BUCKET:ACCESS, got ${JSON.stringify(g)}`);
        buckets[g.slice(0, i)] = g.slice(i + 1);
      }
      const r = await request(
        c,
        "POST",
        "/v1/admin/keys",
        new TextEncoder().encode(JSON.stringify({ name, buckets, createBuckets: o.createBuckets })),
        { "content-type": "application/json" },
      );
      await failOnError(r);
      const k = (await r.json()) as { accessKeyId: string; secretAccessKey: string };
      console.log(`Access key id:     ${k.accessKeyId}`);
      console.log(`Secret access key: ${k.secretAccessKey}`);
    }),
  );
withClient(keyCmd.command("ls"))
  .description("list access keys and their grants (never their secrets)")
  .option("--json", "print JSON", false)
  .action((o: ClientOptions & { json: boolean }) =>
    run(async () => {
      const c = resolveClient(o);
      const r = await request(c, "GET", "/v1/admin/keys");
      await failOnError(r);
      const { keys } = (await r.json()) as {
        keys: {
          accessKeyId: string;
          name: string;
          grants: Record<string, string>;
          createBuckets: boolean;
        }[];
      };
      const mode = outputMode(o);
      if (mode.json) return console.log(JSON.stringify({ keys }, null, 2));
      console.log(
        renderTable(
          mode,
          ["ACCESS KEY ID", "NAME", "CREATE BUCKETS", "GRANTS"],
          keys.map((k) => [
            k.accessKeyId,
            k.name,
            k.createBuckets ? "yes" : "no",
            Object.entries(k.grants)
              .map(([b, a]) => `${b}:${a}`)
              .join(","),
          ]),
        ),
      );
    }),
  );
withClient(keyCmd.command("rm <id>"))
  .description("revoke an access key (every node refuses it within a second)")
  .action((id: string, o: ClientOptions) =>
    run(async () => {
      const c = resolveClient(o);
      const r = await request(c, "DELETE", `/v1/admin/keys/${encodeURIComponent(id)}`);
      await failOnError(r);
      console.log(`${id}: revoked`);
    }),
  );
withClient(keyCmd.command("allow <id> <bucket> <access>"))
  .description('grant read, write or owner on a bucket ("*": every bucket); "none" revokes')
  .action((id: string, bucket: string, access: string, o: ClientOptions) =>
    run(async () => {
      const c = resolveClient(o);
      const r = await request(
        c,
        "PUT",
        `/v1/admin/keys/${encodeURIComponent(id)}/grants`,
        new TextEncoder().encode(
          JSON.stringify({ bucket, access: access === "none" ? null : access }),
        ),
        { "content-type": "application/json" },
      );
      await failOnError(r);
      console.log(`${id}: ${bucket} ${access}`);
    }),
  );

addTokenCommands(program, withClient, run);

const bucketCmd = program.command("bucket").description("S3 bucket settings (admin token)");
withClient(bucketCmd.command("ls"))
  .description("list buckets with their owner and settings")
  .option("--json", "print JSON", false)
  .action((o: ClientOptions & { json: boolean }) =>
    run(async () => {
      const c = resolveClient(o);
      const r = await request(c, "GET", "/v1/admin/buckets");
      await failOnError(r);
      const { buckets } = (await r.json()) as {
        buckets: {
          name: string;
          owner: string;
          versioning?: string;
          publicRead?: boolean;
          chunkWriteQuorum?: number;
          chunkReplicas?: number;
        }[];
      };
      const mode = outputMode(o);
      if (mode.json) return console.log(JSON.stringify({ buckets }, null, 2));
      console.log(
        renderTable(
          mode,
          ["BUCKET", "OWNER", "VERSIONING", "PUBLIC READ", "CHUNK REPLICAS", "CHUNK WRITE QUORUM"],
          buckets.map((b) => [
            b.name,
            b.owner,
            b.versioning ?? "-",
            b.publicRead ? "yes" : "no",
            String(b.chunkReplicas ?? "default"),
            String(b.chunkWriteQuorum ?? "default"),
          ]),
        ),
      );
    }),
  );
withClient(bucketCmd.command("set <name>"))
  .description("change a bucket's settings")
  .option(
    "--chunk-write-quorum <n>",
    'chunk copies durable before an upload is acknowledged (1..--chunk-replicas; "default" resets)',
  )
  .option(
    "--chunk-replicas <n>",
    'chunk copies kept for new uploads (1..--chunk-replicas; "default" resets)',
  )
  .action(
    (name: string, o: ClientOptions & { chunkWriteQuorum?: string; chunkReplicas?: string }) =>
      run(async () => {
        const c = resolveClient(o);
        const settings: Record<string, unknown> = {};
        if (o.chunkWriteQuorum !== undefined)
          settings.chunkWriteQuorum =
            o.chunkWriteQuorum === "default" ? null : Number(o.chunkWriteQuorum);
        if (o.chunkReplicas !== undefined)
          settings.chunkReplicas = o.chunkReplicas === "default" ? null : Number(o.chunkReplicas);
        const r = await request(
          c,
          "PUT",
          `/v1/admin/buckets/${encodeURIComponent(name)}`,
          new TextEncoder().encode(JSON.stringify(settings)),
          { "content-type": "application/json" },
        );
        await failOnError(r);
        console.log(JSON.stringify(await r.json()));
      }),
  );

withClient(program.command("status"))
  .description("show nodes, shards and their leaders")
  .option("--json", "print the raw JSON", false)
  .action((o: ClientOptions & { json: boolean }) =>
    run(async () => {
      const c = resolveClient(o);
      const r = await request(c, "GET", "/v1/cluster");
      await failOnError(r);
      const st = (await r.json()) as {
        node: string;
        nodes: {
          id: string;
          peer: string;
          reachable?: boolean;
          self?: boolean;
          state?: string;
          admin?: string;
          labels?: Record<string, string>;
          replicas?: number;
          leaders?: number;
          version?: string | null;
          capacityBytes?: number | null;
          usedBytes?: number | null;
          draining?: boolean;
        }[];
        summary?: {
          shards: number;
          underReplicated: number;
          unavailable: number;
          movesInProgress: number;
        };
        shards: {
          id: string;
          replicas: string[];
          leader: string | null;
          term: number | null;
          commit: number | null;
        }[];
      };
      if (o.json) {
        console.log(JSON.stringify(st, null, 2));
        return;
      }
      const mode = outputMode(o);
      console.log(`as seen by ${st.node}:`);
      console.log(
        renderTable(
          mode,
          ["NODE", "PEER", "ZONE", "STATE", "VERSION", "DISK USED", "REPLICAS", "LEADERS"],
          st.nodes.map((n) => {
            const state = n.self ? "self" : (n.state ?? (n.reachable ? "alive" : "unreachable"));
            const admin =
              n.admin && n.admin !== "active"
                ? ` (${n.admin})`
                : n.draining
                  ? " (shutting down)"
                  : "";
            return [
              n.id,
              n.peer,
              n.labels?.zone ?? "-",
              { text: state + admin, style: stateStyle(state) },
              n.version ?? "-",
              // From the node's latest report to the placement leader (its data disk).
              typeof n.capacityBytes === "number" && typeof n.usedBytes === "number"
                ? `${formatBytes(n.usedBytes)} / ${formatBytes(n.capacityBytes)}`
                : "-",
              String(n.replicas ?? "-"),
              String(n.leaders ?? "-"),
            ];
          }),
        ),
      );
      if (st.summary) {
        const s = st.summary;
        const bad = (n: number) => paint(mode, n > 0 ? "yellow" : undefined, String(n));
        console.log(
          `\n${s.shards} shards: ${bad(s.underReplicated)} under-replicated, ${bad(s.unavailable)} without a leader here, ${s.movesInProgress} moves in progress (led here)`,
        );
      }
      console.log(
        `\n${renderTable(
          mode,
          ["SHARD", "LEADER", "TERM", "COMMIT", "REPLICAS"],
          st.shards.map((s) => [
            s.id,
            s.leader ? s.leader : { text: "NONE", style: "red" },
            String(s.term),
            String(s.commit),
            s.replicas.join(","),
          ]),
        )}`,
      );
    }),
  );

const s3Cmd = program.command("s3").description("objects through the S3 door (AWS SDK)");
function withS3(cmd: Command): Command {
  return cmd
    .option("--s3-endpoint <url>", "a node's S3 address (env KUMO_S3_ENDPOINT)")
    .option("--access-key <id>", "access key id (env AWS_ACCESS_KEY_ID)")
    .option("--secret-key <secret>", "secret access key (env AWS_SECRET_ACCESS_KEY)")
    .option("--cluster <file>", "cluster.json from kumo dev (env KUMO_CLUSTER)", undefined)
    .option("--ca <file>", "CA certificate (PEM) to trust for https:// endpoints (env KUMO_CA)")
    .option("--json", "print JSON (and no progress bar)", false);
}
withS3(s3Cmd.command("cp <src> <dst>"))
  .description("upload a file to s3://bucket/key or download one (streamed, progress and ETA)")
  .option("--part-size <MiB>", `multipart part size (${PART_MIB_MIN}..${PART_MIB_MAX})`, "8")
  .action((src: string, dst: string, o: S3Options & { json: boolean; partSize: string }) =>
    run(async () => {
      const mode = outputMode(o);
      const r = await s3Copy(s3ClientFor(o), src, dst, { partMiB: Number(o.partSize), mode });
      if (mode.json) console.log(JSON.stringify(r));
      else if (!process.stderr.isTTY) console.log(`${r.from} -> ${r.to} (${r.bytes} bytes)`);
    }),
  );
withS3(s3Cmd.command("ls [url]"))
  .description("list buckets, or objects and prefixes under s3://bucket/prefix")
  .action((url: string | undefined, o: S3Options & { json: boolean }) =>
    run(async () => {
      console.log(await s3List(s3ClientFor(o), url, outputMode(o)));
    }),
  );

registerBackup(program, withClient, run);

await program.parseAsync();
