/** The chunk ring: which nodes hold each partition of the chunk-hash space. */
import { useEffect, useState } from "preact/hooks";
import { API, type ApiError, getJson, type RingView } from "../api";
import { Card, Empty, ErrorNote, NodeChip, nodeColor, Spinner, setNodeIds } from "../components";
import { useCluster } from "../store";

function arc(cx: number, cy: number, r0: number, r1: number, a0: number, a1: number): string {
  const p = (r: number, a: number) =>
    `${(cx + r * Math.sin(a)).toFixed(2)},${(cy - r * Math.cos(a)).toFixed(2)}`;
  const large = a1 - a0 > Math.PI ? 1 : 0;
  return `M${p(r1, a0)}A${r1},${r1} 0 ${large} 1 ${p(r1, a1)}L${p(r0, a1)}A${r0},${r0} 0 ${large} 0 ${p(r0, a0)}Z`;
}

function hashRange(i: number, partitions: number): string {
  const span = 2 ** 32 / partitions;
  const h = (x: number) => Math.floor(x).toString(16).padStart(8, "0");
  return `${h(i * span)} – ${h((i + 1) * span - 1)}`;
}

function Donut({
  ring,
  hover,
  setHover,
}: {
  ring: string[][];
  hover: number | null;
  setHover: (i: number | null) => void;
}) {
  const size = 420;
  const c = size / 2;
  const P = ring.length;
  const R = Math.max(1, ...ring.map((r) => r.length));
  const outer = 200;
  const width = 38;
  const gap = 6;
  const step = (2 * Math.PI) / P;
  const pad = P > 128 ? 0 : step * 0.04;
  return (
    <svg
      class="donut"
      viewBox={`0 0 ${size} ${size}`}
      role="img"
      aria-label="chunk ring"
      onMouseMove={(e) => {
        // Which partition is under the pointer: its angle from the centre, inside the rings.
        const r = (e.currentTarget as SVGSVGElement).getBoundingClientRect();
        const x = ((e.clientX - r.left) / r.width) * size - c;
        const y = ((e.clientY - r.top) / r.height) * size - c;
        const d = Math.hypot(x, y);
        if (d > outer || d < outer - R * (width + gap)) return setHover(null);
        const a = (Math.atan2(x, -y) + 2 * Math.PI) % (2 * Math.PI);
        setHover(Math.min(P - 1, Math.floor(a / step)));
      }}
      onMouseLeave={() => setHover(null)}
    >
      <title>Chunk ring</title>
      {ring.map((nodes, i) =>
        nodes.map((id, j) => {
          const r1 = outer - j * (width + gap);
          return (
            <path
              key={`${i}-${j}`}
              d={arc(c, c, r1 - width, r1, i * step + pad, (i + 1) * step - pad)}
              fill={nodeColor(id)}
              opacity={hover === null || hover === i ? (j === 0 ? 1 : 0.78 - j * 0.12) : 0.25}
            />
          );
        }),
      )}
      <circle cx={c} cy={c} r={outer - R * (width + gap) + gap - 4} fill="#fff" />
      <text x={c} y={c - 6} text-anchor="middle" class="donut-big">
        {hover === null ? P : `#${hover}`}
      </text>
      <text x={c} y={c + 16} text-anchor="middle" class="donut-small">
        {hover === null ? "partitions" : (ring[hover] ?? []).join(" · ")}
      </text>
    </svg>
  );
}

export function RingPage() {
  const c = useCluster();
  const version = c.view?.ring?.version ?? null;
  const [ring, setRing] = useState<RingView | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [hover, setHover] = useState<number | null>(null);
  useEffect(() => {
    getJson<RingView>(`${API}/ring`)
      .then((r) => {
        setRing(r);
        setError(null);
      })
      .catch((e: ApiError) => setError(e));
  }, [version]);
  if (c.view) setNodeIds(c.view.nodes.map((n) => n.id));
  if (error) return <ErrorNote error={error} />;
  if (!ring) return <Spinner />;
  const parts = ring.ring;
  const perNode = Object.entries(ring.perNode ?? {}).sort((a, b) =>
    a[0].localeCompare(b[0], "en", { numeric: true }),
  );
  const P = ring.partitions ?? 0;
  const R = ring.replicas ?? 0;
  return (
    <div class="page">
      <div class="page-head">
        <div>
          <h1>Chunk ring</h1>
          <p class="muted">
            Object chunks are named by their SHA-256; the top bits pick a partition, the ring picks
            the nodes that hold its replicas. Outer ring: first replica.
          </p>
        </div>
      </div>
      {!parts ? (
        <Card>
          <Empty title="No chunk ring yet">
            The metadata leader writes it within a few seconds of start.
          </Empty>
        </Card>
      ) : (
        <div class="grid-ring">
          <Card title={`Version ${ring.version}`} subtitle={`${P} partitions × ${R} replicas`}>
            <div class="donut-wrap">
              <Donut ring={parts} hover={hover} setHover={setHover} />
            </div>
            <div class="muted small center">
              {hover === null
                ? "Point at a partition to see where it lives"
                : `hashes ${hashRange(hover, P)}`}
            </div>
          </Card>
          <Card title="Partitions per node" subtitle="first replica, and every replica">
            <div class="table-wrap">
              <table class="table">
                <thead>
                  <tr>
                    <th>Node</th>
                    <th class="num">First</th>
                    <th class="num">All</th>
                    <th>Share of replicas</th>
                  </tr>
                </thead>
                <tbody>
                  {perNode.map(([id, n]) => {
                    const share = n.total / Math.max(1, P * R);
                    return (
                      <tr key={id} data-node={id}>
                        <td>
                          <NodeChip id={id} />
                        </td>
                        <td class="num">{n.primary}</td>
                        <td class="num">{n.total}</td>
                        <td>
                          <div class="share">
                            <div class="share-bar">
                              <div
                                style={{ width: `${share * 100}%`, background: nodeColor(id) }}
                              />
                            </div>
                            <span class="small">{(share * 100).toFixed(1)}%</span>
                          </div>
                        </td>
                      </tr>
                    );
                  })}
                </tbody>
              </table>
            </div>
            <p class="muted small">
              Adding or removing a node moves about 1/N of the partitions; a suspect node keeps its
              partitions, a dead, drained or removed one gives them up.
            </p>
          </Card>
        </div>
      )}
    </div>
  );
}
