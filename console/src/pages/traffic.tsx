/** Live request rates and latencies, from successive readings of every node's counters. */
import { useState } from "preact/hooks";
import { Sparkline, TimeChart } from "../charts";
import { Card, ErrorNote, NodeChip, nodeColor, Spinner, Stat, setNodeIds } from "../components";
import { ms, rate } from "../format";
import { DOORS, type DoorName, merged, useCluster } from "../store";
import { DOOR_COLORS, latencySeries, rateSeries } from "./overview";

const WINDOWS = [
  { label: "1 min", samples: 30 },
  { label: "5 min", samples: 150 },
  { label: "10 min", samples: 300 },
];

export function TrafficPage() {
  const c = useCluster();
  const [doors, setDoors] = useState<DoorName[]>(["kv", "s3"]);
  const [win, setWin] = useState(150);
  const v = c.view;
  if (!v) return c.error ? <ErrorNote error={c.error} /> : <Spinner />;
  setNodeIds(v.nodes.map((n) => n.id));
  const samples = c.samples.slice(-win);
  const times = samples.map((s) => s.t);
  const last = samples[samples.length - 1];
  const errors = samples.map((s) => merged(s, DOORS).errors);
  const latency = latencySeries(samples, doors);
  const p99 = latency[2]?.values ?? [];
  const toggle = (d: DoorName) =>
    setDoors((cur) =>
      cur.includes(d) ? (cur.length > 1 ? cur.filter((x) => x !== d) : cur) : [...cur, d],
    );
  return (
    <div class="page">
      <div class="page-head">
        <div>
          <h1>Traffic</h1>
          <p class="muted">
            Every node's request counters, read every 2 s; the console's own requests are not
            counted
          </p>
        </div>
        <div class="row">
          <div class="segmented" title="Window">
            {WINDOWS.map((w) => (
              <button
                type="button"
                key={w.label}
                class={win === w.samples ? "on" : ""}
                onClick={() => setWin(w.samples)}
              >
                {w.label}
              </button>
            ))}
          </div>
        </div>
      </div>
      <div class="stats">
        {DOORS.map((d) => (
          <Stat
            key={d}
            label={`${d === "admin" ? "Admin" : d.toUpperCase()} requests / s`}
            value={rate(last?.doors[d].rate)}
          >
            <Sparkline values={samples.map((s) => s.doors[d].rate)} color={DOOR_COLORS[d]} />
          </Stat>
        ))}
        <Stat
          label="5xx answers / s"
          value={rate(errors[errors.length - 1])}
          tone={(errors[errors.length - 1] ?? 0) > 0 ? "bad" : "good"}
        >
          <Sparkline values={errors} color="#ef4444" />
        </Stat>
        <Stat
          label="p99 (selected doors)"
          value={ms([...p99].reverse().find((x) => x !== null) ?? null)}
          hint="latest interval with requests"
        />
      </div>
      <Card title="Request rate" subtitle="requests per second by door, summed over the nodes">
        <TimeChart
          label="Request rate by door"
          times={times}
          series={rateSeries(samples)}
          format={rate}
          height={240}
        />
      </Card>
      <Card
        title="Latency"
        subtitle="from the nodes' latency histograms, interpolated inside buckets"
        actions={
          <div class="segmented" title="Doors">
            {DOORS.map((d) => (
              <button
                type="button"
                key={d}
                class={doors.includes(d) ? "on" : ""}
                onClick={() => toggle(d)}
              >
                {d === "admin" ? "admin" : d.toUpperCase()}
              </button>
            ))}
          </div>
        }
      >
        <TimeChart
          label="Latency percentiles"
          times={times}
          series={latency}
          format={ms}
          height={240}
          empty="No requests through the selected doors yet"
        />
      </Card>
      <Card title="Per node" subtitle="requests per second through each node, every door">
        <div class="table-wrap">
          <table class="table">
            <thead>
              <tr>
                <th>Node</th>
                <th class="num">Now</th>
                <th class="num">Peak</th>
                <th>History</th>
              </tr>
            </thead>
            <tbody>
              {v.nodes.map((n) => {
                const vals = samples.map((s) => s.perNode[n.id] ?? null);
                const peak = Math.max(0, ...vals.filter((x): x is number => x !== null));
                return (
                  <tr key={n.id}>
                    <td>
                      <NodeChip id={n.id} />
                    </td>
                    <td class="num">{rate(vals[vals.length - 1] ?? null)}</td>
                    <td class="num">{rate(peak)}</td>
                    <td>
                      <Sparkline values={vals} color={nodeColor(n.id)} width={420} height={28} />
                    </td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      </Card>
    </div>
  );
}
