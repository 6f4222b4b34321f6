/** The cluster at a glance: nodes, shards, traffic. */
import type { ClusterNode, ClusterView } from "../api";
import { Sparkline, TimeChart } from "../charts";
import {
  Badge,
  Card,
  ErrorNote,
  Meter,
  NodeChip,
  Pill,
  Spinner,
  Stat,
  setNodeIds,
} from "../components";
import { ago, bytes, count, duration, ms, rate } from "../format";
import { link } from "../router";
import { DOORS, type DoorName, merged, quantile, type Sample, useCluster } from "../store";
import { RangeBar } from "./keyspaces";

export const DOOR_COLORS: Record<string, string> = {
  kv: "#6366f1",
  s3: "#14b8a6",
  admin: "#f59e0b",
};

export function latencySeries(
  samples: readonly Sample[],
  doors: readonly DoorName[] = ["kv", "s3"],
) {
  const q = (p: number) =>
    samples.map((s) => {
      const m = merged(s, doors);
      return quantile(s.le, m.buckets, p);
    });
  return [
    { name: "p50", color: "#22c55e", values: q(0.5), fill: false },
    { name: "p95", color: "#f59e0b", values: q(0.95), fill: false },
    { name: "p99", color: "#ef4444", values: q(0.99) },
  ];
}

export function rateSeries(samples: readonly Sample[]) {
  return DOORS.map((d) => ({
    name: d === "kv" ? "KV" : d === "s3" ? "S3" : "admin",
    color: DOOR_COLORS[d] as string,
    values: samples.map((s) => s.doors[d].rate),
  }));
}

function nodeState(n: ClusterNode): string {
  if (n.admin === "removed") return "removed";
  return n.state;
}

export function NodesTable({ view, samples }: { view: ClusterView; samples: readonly Sample[] }) {
  const last = samples[samples.length - 1];
  return (
    <div class="table-wrap">
      <table class="table nodes-table">
        <thead>
          <tr>
            <th>Node</th>
            <th>State</th>
            <th>Zone</th>
            <th class="w-disk">Disk</th>
            <th class="num">Data</th>
            <th class="num">Replicas</th>
            <th class="num">Leaders</th>
            <th class="num">Ring</th>
            <th class="num">Req/s</th>
            <th class="num">Uptime</th>
          </tr>
        </thead>
        <tbody>
          {view.nodes.map((n) => {
            const used = n.disk ? n.disk.sizeBytes - n.disk.freeBytes : 0;
            return (
              <tr key={n.id} data-node={n.id} class={n.state !== "alive" ? `row-${n.state}` : ""}>
                <td>
                  <div class="node-cell">
                    <NodeChip id={n.id} />
                    {n.self && <Badge tone="blue">this node</Badge>}
                    {n.admin === "draining" && <Badge tone="amber">draining</Badge>}
                  </div>
                  <div class="muted mono tiny">{n.api || n.peer}</div>
                </td>
                <td>
                  <Pill state={nodeState(n)} />
                  {!n.responded && n.state === "alive" && n.error && (
                    <div class="tiny muted" title={n.error}>
                      no answer
                    </div>
                  )}
                </td>
                <td>{n.zone ? <Badge>{n.zone}</Badge> : <span class="muted">—</span>}</td>
                <td>
                  {n.disk ? (
                    <div class="disk">
                      <Meter used={used} total={n.disk.sizeBytes} />
                      <div class="tiny muted">
                        {bytes(used)} of {bytes(n.disk.sizeBytes)} · {bytes(n.disk.freeBytes)} free
                      </div>
                    </div>
                  ) : (
                    <span class="muted">—</span>
                  )}
                </td>
                <td class="num">
                  <div>{bytes(n.dataBytes)}</div>
                  {n.chunks && (
                    <div class="tiny muted">
                      {count(n.chunks.count)} chunks · {bytes(n.chunks.bytes)}
                    </div>
                  )}
                </td>
                <td class="num">{n.replicas}</td>
                <td class="num">{n.leaders}</td>
                <td class="num">{n.ringPartitions}</td>
                <td class="num">{last && n.id in last.perNode ? rate(last.perNode[n.id]) : "—"}</td>
                <td class="num">{duration(n.uptimeSeconds)}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

export function OverviewPage() {
  const c = useCluster();
  const v = c.view;
  if (!v) return c.error ? <ErrorNote error={c.error} /> : <Spinner label="Reading the cluster…" />;
  setNodeIds(v.nodes.map((n) => n.id));
  const s = v.summary;
  const samples = c.samples;
  const times = samples.map((x) => x.t);
  const total = samples.map((x) => merged(x, DOORS).rate);
  const p99 = latencySeries(samples)[2]?.values ?? [];
  const lastP99 = [...p99].reverse().find((x) => x !== null) ?? null;
  const userKs = v.keyspaces.filter((k) => !k.system);
  return (
    <div class="page">
      <div class="page-head">
        <div>
          <h1>Cluster overview</h1>
          <p class="muted">
            As node <b>{v.self}</b> sees it · updated {ago(c.updatedAt)} · refreshes every 2 s
          </p>
        </div>
      </div>
      <ErrorNote error={c.error} />
      <div class="stats">
        <Stat
          label="Nodes alive"
          value={
            <>
              {s.alive}
              <span class="of">/{s.nodes}</span>
            </>
          }
          tone={s.dead > 0 ? "bad" : s.suspect > 0 ? "warn" : "good"}
          hint={
            s.suspect + s.dead === 0
              ? "all nodes answering"
              : `${s.suspect} suspect · ${s.dead} dead`
          }
        />
        <Stat
          label="Shards"
          value={s.shards}
          tone={s.leaderless > 0 ? "bad" : s.degraded > 0 ? "warn" : "good"}
          hint={
            s.leaderless + s.degraded === 0
              ? "every shard has a leader and all replicas"
              : `${s.leaderless} without leader · ${s.degraded} degraded`
          }
        />
        <Stat
          label="Replica moves"
          value={s.moves}
          hint={s.moves === 0 ? "placement is settled" : "membership changes in progress"}
          tone={s.moves > 0 ? "warn" : undefined}
        />
        <Stat label="Requests / s" value={rate(total[total.length - 1])} hint="KV, S3 and admin">
          <Sparkline values={total} color="#6366f1" />
        </Stat>
        <Stat label="Latency p99" value={ms(lastP99)} hint="KV and S3 requests">
          <Sparkline values={p99} color="#ef4444" />
        </Stat>
      </div>

      <Card
        title="Nodes"
        subtitle="Liveness as this node sees it; capacity, data and uptime as each node reports itself"
      >
        <NodesTable view={v} samples={samples} />
      </Card>

      <div class="grid-2">
        <Card title="Request rate" subtitle="requests per second, every node">
          <TimeChart
            label="Request rate"
            times={times}
            series={rateSeries(samples)}
            format={rate}
            height={200}
          />
        </Card>
        <Card title="Latency" subtitle="KV and S3 requests, every node">
          <TimeChart
            label="Latency"
            times={times}
            series={latencySeries(samples)}
            format={ms}
            height={200}
            empty="No KV or S3 requests yet"
          />
        </Card>
      </div>

      <Card
        title="Keyspaces"
        actions={
          <a class="btn btn-sm" {...link("/keyspaces")}>
            Shard maps
          </a>
        }
      >
        <div class="ks-list">
          {userKs.map((k) => {
            const bad = k.shards.filter((x) => x.health !== "ok").length;
            return (
              <a class="ks-row" key={k.name} {...link(`/keyspaces/${encodeURIComponent(k.name)}`)}>
                <div class="ks-name">
                  <b>{k.name}</b>
                  <Badge tone={k.sharding === "hash" ? "violet" : "teal"}>{k.sharding}</Badge>
                </div>
                <div class="muted small">
                  {k.shards.length} shards · {k.replicas} replicas
                </div>
                <RangeBar ks={k} compact />
                <Pill
                  state={
                    bad === 0
                      ? "ok"
                      : k.shards.some((x) => x.health === "no-leader")
                        ? "no-leader"
                        : "degraded"
                  }
                />
              </a>
            );
          })}
        </div>
      </Card>
    </div>
  );
}
