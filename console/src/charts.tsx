/** Charts drawn as SVG by hand: a time-series chart with a hover read-out, and sparklines. */
import type { RefObject } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { clock } from "./format";

export interface Series {
  readonly name: string;
  readonly color: string;
  readonly values: readonly (number | null)[];
  /** Shade the area under the line (default true). */
  readonly fill?: boolean;
}

function useWidth(): [RefObject<HTMLDivElement | null>, number] {
  const ref = useRef<HTMLDivElement>(null);
  const [w, setW] = useState(600);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const ro = new ResizeObserver(() => setW(Math.max(200, Math.floor(el.clientWidth))));
    ro.observe(el);
    setW(Math.max(200, Math.floor(el.clientWidth)));
    return () => ro.disconnect();
  }, []);
  return [ref, w];
}

/** A "nice" tick step (1, 2, 2.5 or 5 times a power of ten) at least `v`. */
export function niceStep(v: number): number {
  if (!(v > 0)) return 0.25;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p * (1 + 1e-9)) return m * p;
  return 10 * p;
}

/** Axis ticks from 0 to a round top at least `v`: about four intervals of a nice step. */
export function ticksFor(value: number): number[] {
  const v = value > 0 ? value : 1;
  const step = niceStep(v / 4);
  const top = Math.max(1, Math.ceil(v / step - 1e-9)) * step;
  const out: number[] = [];
  for (let t = 0; t <= top + step / 2; t += step) out.push(Math.round(t / step) * step);
  return out;
}

function path(
  values: readonly (number | null)[],
  x: (i: number) => number,
  y: (v: number) => number,
): string {
  let d = "";
  let pen = false;
  values.forEach((v, i) => {
    if (v === null || !Number.isFinite(v)) {
      pen = false;
      return;
    }
    d += `${pen ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
    pen = true;
  });
  return d;
}

function area(
  values: readonly (number | null)[],
  x: (i: number) => number,
  y: (v: number) => number,
  base: number,
): string {
  // One closed shape per run of defined points.
  let d = "";
  let run: number[] = [];
  const flush = () => {
    if (run.length > 1) {
      const first = run[0] as number;
      const last = run[run.length - 1] as number;
      d += `M${x(first).toFixed(1)},${base}`;
      for (const i of run) d += `L${x(i).toFixed(1)},${y(values[i] as number).toFixed(1)}`;
      d += `L${x(last).toFixed(1)},${base}Z`;
    }
    run = [];
  };
  values.forEach((v, i) => {
    if (v === null || !Number.isFinite(v)) flush();
    else run.push(i);
  });
  flush();
  return d;
}

export function TimeChart({
  times,
  series,
  height = 220,
  format,
  empty = "Waiting for data…",
  label,
}: {
  times: readonly number[];
  series: readonly Series[];
  height?: number;
  format: (v: number) => string;
  empty?: string;
  label: string;
}) {
  const [ref, width] = useWidth();
  const [hover, setHover] = useState<number | null>(null);
  const pad = { l: 56, r: 14, t: 12, b: 26 };
  const n = times.length;
  const ticks = ticksFor(
    Math.max(0, ...series.flatMap((s) => s.values.filter((v): v is number => v !== null))),
  );
  const max = ticks[ticks.length - 1] as number;
  const iw = width - pad.l - pad.r;
  const ih = height - pad.t - pad.b;
  const x = (i: number) => pad.l + (n <= 1 ? iw : (i / (n - 1)) * iw);
  const y = (v: number) => pad.t + ih - (Math.min(v, max) / max) * ih;
  const xTicks = n > 1 ? [0, Math.floor((n - 1) / 2), n - 1] : [];
  const hasData = series.some((s) => s.values.some((v) => v !== null));
  const onMove = (e: MouseEvent) => {
    if (n < 2) return;
    const rect = (e.currentTarget as SVGElement).getBoundingClientRect();
    const px = e.clientX - rect.left;
    const i = Math.round(((px - pad.l) / iw) * (n - 1));
    setHover(Math.max(0, Math.min(n - 1, i)));
  };
  const h = hover !== null && hover < n ? hover : null;
  return (
    <div class="chart" ref={ref}>
      <div class="legend">
        {series.map((s) => {
          const v = h !== null ? s.values[h] : s.values[s.values.length - 1];
          return (
            <span class="legend-item" key={s.name}>
              <span class="swatch" style={{ background: s.color }} />
              {s.name}
              <b>{v === null || v === undefined ? "—" : format(v)}</b>
            </span>
          );
        })}
        {h !== null && <span class="legend-time">{clock(times[h] as number)}</span>}
      </div>
      <svg
        width={width}
        height={height}
        role="img"
        aria-label={label}
        onMouseMove={onMove}
        onMouseLeave={() => setHover(null)}
      >
        <title>{label}</title>
        <defs>
          {series.map((s, i) => (
            <linearGradient
              id={`g-${label.replace(/\W/g, "")}-${i}`}
              x1="0"
              y1="0"
              x2="0"
              y2="1"
              key={s.name}
            >
              <stop offset="0" stop-color={s.color} stop-opacity="0.28" />
              <stop offset="1" stop-color={s.color} stop-opacity="0.02" />
            </linearGradient>
          ))}
        </defs>
        {ticks.map((t) => (
          <g key={t}>
            <line class="grid" x1={pad.l} x2={width - pad.r} y1={y(t)} y2={y(t)} />
            <text class="axis" x={pad.l - 8} y={y(t) + 4} text-anchor="end">
              {format(t)}
            </text>
          </g>
        ))}
        {xTicks.map((i) => (
          <text
            class="axis"
            key={i}
            x={x(i)}
            y={height - 6}
            text-anchor={i === 0 ? "start" : i === n - 1 ? "end" : "middle"}
          >
            {clock(times[i] as number)}
          </text>
        ))}
        {hasData &&
          series.map((s, i) => (
            <g key={s.name}>
              {s.fill !== false && (
                <path
                  d={area(s.values, x, y, pad.t + ih)}
                  fill={`url(#g-${label.replace(/\W/g, "")}-${i})`}
                />
              )}
              <path d={path(s.values, x, y)} fill="none" stroke={s.color} stroke-width="2" />
            </g>
          ))}
        {h !== null && (
          <g>
            <line class="crosshair" x1={x(h)} x2={x(h)} y1={pad.t} y2={pad.t + ih} />
            {series.map((s) => {
              const v = s.values[h];
              return v === null || v === undefined ? null : (
                <circle
                  key={s.name}
                  cx={x(h)}
                  cy={y(v)}
                  r="3.5"
                  fill={s.color}
                  stroke="#fff"
                  stroke-width="1.5"
                />
              );
            })}
          </g>
        )}
        {!hasData && (
          <text class="chart-empty" x={pad.l + iw / 2} y={pad.t + ih / 2} text-anchor="middle">
            {empty}
          </text>
        )}
      </svg>
    </div>
  );
}

export function Sparkline({
  values,
  color = "#0ea5e9",
  width = 120,
  height = 32,
}: {
  values: readonly (number | null)[];
  color?: string;
  width?: number;
  height?: number;
}) {
  const defined = values.filter((v): v is number => v !== null);
  const max = Math.max(1e-9, ...defined);
  const n = values.length;
  const x = (i: number) => (n <= 1 ? width : (i / (n - 1)) * width);
  const y = (v: number) => height - 2 - (v / max) * (height - 4);
  return (
    <svg class="spark" width={width} height={height} aria-hidden="true">
      {defined.length > 1 && (
        <>
          <path d={area(values, x, y, height)} fill={color} opacity="0.15" />
          <path d={path(values, x, y)} fill="none" stroke={color} stroke-width="1.6" />
        </>
      )}
    </svg>
  );
}
