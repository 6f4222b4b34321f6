/** Keyspaces and their shard maps: ranges, replicas, leaders, moves in progress. */
import type { KeyspaceView, ShardView } from "../api";
import {
  Badge,
  Card,
  Empty,
  ErrorNote,
  NodeChip,
  nodeColor,
  Pill,
  Spinner,
  setNodeIds,
} from "../components";
import { count } from "../format";
import { link } from "../router";
import { useCluster } from "../store";

function widths(ks: KeyspaceView): number[] {
  if (ks.sharding === "hash") return ks.shards.map((s) => Math.max(0.004, s.end.pos - s.start.pos));
  return ks.shards.map(() => 1 / Math.max(1, ks.shards.length));
}

export function RangeBar({ ks, compact = false }: { ks: KeyspaceView; compact?: boolean }) {
  const w = widths(ks);
  const sum = w.reduce((a, b) => a + b, 0) || 1;
  return (
    <div
      class={`rangebar${compact ? " rangebar-compact" : ""}`}
      role="img"
      aria-label={`shards of ${ks.name}`}
    >
      {ks.shards.map((s, i) => (
        <div
          key={s.id}
          class={`seg${s.leader ? "" : " seg-none"}${s.moving ? " seg-moving" : ""}${s.down.length ? " seg-degraded" : ""}`}
          style={`flex-grow:${(w[i] as number) / sum};--c:${s.leader ? nodeColor(s.leader) : "#cbd5e1"}`}
          title={`${s.id}: ${s.start.label} → ${s.end.label} · leader ${s.leader ?? "none"} · replicas ${s.replicas.join(", ")}`}
        >
          {!compact && <span>{s.id}</span>}
        </div>
      ))}
    </div>
  );
}

function Replicas({ s }: { s: ShardView }) {
  const voters = s.voters ?? s.replicas;
  const extra = voters.filter((v) => !s.replicas.includes(v));
  return (
    <div class="chips">
      {s.replicas.map((r) => (
        <NodeChip key={r} id={r} leader={r === s.leader} down={s.down.includes(r)} />
      ))}
      {extra.map((r) => (
        <span class="leaving" key={`x${r}`} title="still a voter; being removed">
          <NodeChip id={r} leader={r === s.leader} />
        </span>
      ))}
      {s.learners.map((r) => (
        <NodeChip key={`l${r}`} id={r} learner />
      ))}
    </div>
  );
}

function ShardTable({ ks }: { ks: KeyspaceView }) {
  return (
    <div class="table-wrap">
      <table class="table shard-table">
        <thead>
          <tr>
            <th>Shard</th>
            <th>Range</th>
            <th>Leader</th>
            <th>Replicas</th>
            <th class="num">Term</th>
            <th class="num">Commit</th>
            <th>Status</th>
          </tr>
        </thead>
        <tbody>
          {ks.shards.map((s) => (
            <tr key={s.id} data-shard={s.id}>
              <td class="mono">{s.id}</td>
              <td>
                <span class="range">
                  <code title={s.start.hex}>{s.start.label}</code>
                  <span class="arrow">→</span>
                  <code title={s.end.hex}>{s.end.label}</code>
                </span>
              </td>
              <td>
                {s.leader ? <NodeChip id={s.leader} leader /> : <span class="muted">none</span>}
              </td>
              <td>
                <Replicas s={s} />
              </td>
              <td class="num">{s.term ?? "—"}</td>
              <td class="num">{s.commit === null ? "—" : count(s.commit)}</td>
              <td>
                <div class="row tight">
                  <Pill state={s.health} />
                  {s.moving && <Pill state="moving" label="moving" />}
                </div>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function LeaderSpread({ ks }: { ks: KeyspaceView }) {
  const per = new Map<string, number>();
  for (const s of ks.shards) if (s.leader) per.set(s.leader, (per.get(s.leader) ?? 0) + 1);
  const max = Math.max(1, ...per.values());
  const ids = [...per.keys()].sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
  if (ids.length === 0) return <span class="muted">no leaders known</span>;
  return (
    <div class="spread">
      {ids.map((id) => (
        <div class="spread-row" key={id}>
          <NodeChip id={id} />
          <div class="spread-bar">
            <div
              style={{ width: `${((per.get(id) ?? 0) / max) * 100}%`, background: nodeColor(id) }}
            />
          </div>
          <span class="num small">{per.get(id)}</span>
        </div>
      ))}
    </div>
  );
}

function KeyspaceDetail({ ks }: { ks: KeyspaceView }) {
  const moving = ks.shards.filter((s) => s.moving).length;
  const bad = ks.shards.filter((s) => s.health !== "ok").length;
  return (
    <div class="stack" data-keyspace={ks.name}>
      <Card
        title={
          <span class="row tight">
            {ks.name}
            <Badge tone={ks.sharding === "hash" ? "violet" : "teal"}>{ks.sharding} sharding</Badge>
            {ks.system && <Badge>system</Badge>}
          </span>
        }
        subtitle={`${ks.shards.length} shards · ${ks.replicas} replicas each · ${
          bad === 0 ? "all healthy" : `${bad} need attention`
        }${moving ? ` · ${moving} moving` : ""}`}
        actions={
          !ks.system ? (
            <a class="btn btn-sm" {...link(`/kv/${encodeURIComponent(ks.name)}`)}>
              Browse keys
            </a>
          ) : undefined
        }
      >
        <div class="ks-overview">
          <div>
            <div class="label">
              {ks.sharding === "hash"
                ? "Hash space, by leader"
                : "Key space, by leader (shards drawn equal)"}
            </div>
            <RangeBar ks={ks} />
          </div>
          <div>
            <div class="label">Leaders per node</div>
            <LeaderSpread ks={ks} />
          </div>
        </div>
      </Card>
      <Card title="Shard map">
        <ShardTable ks={ks} />
      </Card>
    </div>
  );
}

export function KeyspacesPage({ name }: { name?: string | undefined }) {
  const c = useCluster();
  const v = c.view;
  if (!v) return c.error ? <ErrorNote error={c.error} /> : <Spinner />;
  setNodeIds(v.nodes.map((n) => n.id));
  const user = v.keyspaces.filter((k) => !k.system);
  const system = v.keyspaces.filter((k) => k.system);
  const selected = v.keyspaces.find((k) => k.name === name) ?? user[0] ?? v.keyspaces[0];
  const item = (k: KeyspaceView) => {
    const bad = k.shards.some((s) => s.health !== "ok");
    return (
      <a
        key={k.name}
        class={`side-item${selected?.name === k.name ? " active" : ""}`}
        {...link(`/keyspaces/${encodeURIComponent(k.name)}`)}
      >
        <span class={`status-dot ${bad ? "warn" : "good"}`} />
        <span class="side-name">{k.name}</span>
        <span class="muted small">{k.shards.length}</span>
      </a>
    );
  };
  return (
    <div class="page">
      <div class="page-head">
        <div>
          <h1>Keyspaces</h1>
          <p class="muted">Shard maps: key ranges, replicas, leaders and moves in progress</p>
        </div>
      </div>
      <ErrorNote error={c.error} />
      <div class="split">
        <aside class="side card">
          <div class="side-title">Keyspaces</div>
          {user.map(item)}
          {system.length > 0 && <div class="side-title">System</div>}
          {system.map(item)}
        </aside>
        <div>{selected ? <KeyspaceDetail ks={selected} /> : <Empty title="No keyspaces" />}</div>
      </div>
    </div>
  );
}
