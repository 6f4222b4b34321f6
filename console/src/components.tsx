/** The console's building blocks: pills, cards, bars, icons, dialogs and toasts. */
import type { ComponentChildren } from "preact";
import { useEffect, useState } from "preact/hooks";

// ------------------------------------------------------------------ node colours

const PALETTE = [
  "#6366f1",
  "#14b8a6",
  "#f59e0b",
  "#ec4899",
  "#8b5cf6",
  "#0ea5e9",
  "#84cc16",
  "#f97316",
  "#06b6d4",
  "#a855f7",
  "#22c55e",
  "#e11d48",
];

let known: string[] = [];

/** Sets the node ids colours are given by (sorted, so every page agrees). */
export function setNodeIds(ids: readonly string[]): void {
  known = [...ids].sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
}

export function nodeColor(id: string): string {
  let i = known.indexOf(id);
  if (i < 0) {
    let h = 0;
    for (const c of id) h = (h * 31 + c.charCodeAt(0)) >>> 0;
    i = h;
  }
  return PALETTE[i % PALETTE.length] as string;
}

// ------------------------------------------------------------------ icons

const ICONS: Record<string, string> = {
  overview: "M3 13h8V3H3v10Zm0 8h8v-6H3v6Zm10 0h8V11h-8v10Zm0-18v6h8V3h-8Z",
  keyspaces:
    "M4 6c0-1.7 3.6-3 8-3s8 1.3 8 3-3.6 3-8 3-8-1.3-8-3Zm0 0v12c0 1.7 3.6 3 8 3s8-1.3 8-3V6M4 12c0 1.7 3.6 3 8 3s8-1.3 8-3",
  ring: "M12 3a9 9 0 1 0 9 9M12 7a5 5 0 1 0 5 5M12 3v4m9 5h-4",
  traffic: "M3 17l5-6 4 4 8-10M14 5h6v6",
  buckets: "M4 7h16l-1.5 12.5a2 2 0 0 1-2 1.5h-9a2 2 0 0 1-2-1.5L4 7Zm-1-3h18v3H3V4Z",
  kv: "M7 14a4 4 0 1 1 3.9-5H21v3h-2v3h-3v-3h-5.1A4 4 0 0 1 7 14Zm0-2.5a1.5 1.5 0 1 0 0-3 1.5 1.5 0 0 0 0 3Z",
  folder: "M3 6a2 2 0 0 1 2-2h4l2 2h8a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2V6Z",
  file: "M6 2h8l6 6v12a2 2 0 0 1-2 2H6a2 2 0 0 1-2-2V4a2 2 0 0 1 2-2Zm7 1.5V9h5.5",
  upload: "M12 16V4m0 0-5 5m5-5 5 5M4 16v3a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2v-3",
  download: "M12 4v12m0 0-5-5m5 5 5-5M4 16v3a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2v-3",
  trash: "M4 7h16M9 7V4h6v3m-8 0 1 13h8l1-13",
  refresh: "M20 11a8 8 0 1 0-2.3 5.7M20 4v7h-7",
  plus: "M12 5v14M5 12h14",
  close: "M6 6l12 12M18 6 6 18",
  logout: "M15 4h3a2 2 0 0 1 2 2v12a2 2 0 0 1-2 2h-3M10 8l-4 4 4 4M6 12h10",
  crown: "M3 8l4.5 4L12 5l4.5 7L21 8l-2 11H5L3 8Z",
  search: "M11 18a7 7 0 1 1 0-14 7 7 0 0 1 0 14Zm5-2 5 5",
  arrow: "M5 12h14m-5-5 5 5-5 5",
  key: "M7 14a4 4 0 1 1 3.9-5H21v3h-2v3h-3v-3h-5.1A4 4 0 0 1 7 14Z",
};

export function Icon({ name, size = 18 }: { name: string; size?: number }) {
  const filled = name === "crown" || name === "folder";
  return (
    <svg
      class="icon"
      width={size}
      height={size}
      viewBox="0 0 24 24"
      aria-hidden="true"
      fill={filled ? "currentColor" : "none"}
      stroke={filled ? "none" : "currentColor"}
      stroke-width="1.8"
      stroke-linecap="round"
      stroke-linejoin="round"
    >
      <path d={ICONS[name] ?? ""} />
    </svg>
  );
}

export function Logo({ size = 28 }: { size?: number }) {
  return (
    <svg width={size} height={size} viewBox="0 0 64 64" aria-hidden="true">
      <defs>
        <linearGradient id="kumo-g" x1="0" y1="0" x2="1" y2="1">
          <stop offset="0" stop-color="#7dd3fc" />
          <stop offset="1" stop-color="#0ea5e9" />
        </linearGradient>
      </defs>
      <rect width="64" height="64" rx="16" fill="#1e293b" />
      <path
        d="M20 44h25a10 10 0 0 0 1.6-19.9A14 14 0 0 0 19.4 28 8 8 0 0 0 20 44Z"
        fill="url(#kumo-g)"
      />
    </svg>
  );
}

// ------------------------------------------------------------------ pills, chips

const STATE_LABEL: Record<string, string> = {
  alive: "alive",
  suspect: "suspect",
  dead: "dead",
  draining: "draining",
  removed: "removed",
  ok: "healthy",
  degraded: "degraded",
  "no-leader": "no leader",
  moving: "moving",
};

export function Pill({ state, label }: { state: string; label?: string }) {
  return (
    <span class={`pill pill-${state}`} data-state={state}>
      <span class="dot" />
      {label ?? STATE_LABEL[state] ?? state}
    </span>
  );
}

export function Badge({ children, tone = "gray" }: { children: ComponentChildren; tone?: string }) {
  return <span class={`badge badge-${tone}`}>{children}</span>;
}

export function NodeChip({
  id,
  leader = false,
  down = false,
  learner = false,
}: {
  id: string;
  leader?: boolean;
  down?: boolean;
  learner?: boolean;
}) {
  const c = nodeColor(id);
  return (
    <span
      class={`chip${leader ? " chip-leader" : ""}${down ? " chip-down" : ""}${learner ? " chip-learner" : ""}`}
      style={`--c:${c}`}
      title={`${id}${leader ? " (leader)" : ""}${down ? " (not alive)" : ""}${learner ? " (learner)" : ""}`}
    >
      {leader ? <Icon name="crown" size={11} /> : <span class="chip-dot" />}
      {id}
    </span>
  );
}

// ------------------------------------------------------------------ layout pieces

export function Card({
  title,
  actions,
  children,
  class: cls,
  subtitle,
}: {
  title?: ComponentChildren;
  subtitle?: ComponentChildren;
  actions?: ComponentChildren;
  children: ComponentChildren;
  class?: string;
}) {
  return (
    <section class={`card${cls ? ` ${cls}` : ""}`}>
      {title !== undefined || actions !== undefined ? (
        <header class="card-head">
          <div>
            {title !== undefined && <h2>{title}</h2>}
            {subtitle !== undefined && <p class="muted small">{subtitle}</p>}
          </div>
          {actions !== undefined && <div class="card-actions">{actions}</div>}
        </header>
      ) : null}
      {children}
    </section>
  );
}

export function Stat({
  label,
  value,
  hint,
  tone,
  children,
}: {
  label: string;
  value: ComponentChildren;
  hint?: ComponentChildren;
  tone?: "good" | "warn" | "bad";
  children?: ComponentChildren;
}) {
  return (
    <div class={`stat${tone ? ` stat-${tone}` : ""}`}>
      <div class="stat-label">{label}</div>
      <div class="stat-main">
        <div class="stat-value">{value}</div>
        {children}
      </div>
      {hint !== undefined && <div class="stat-hint">{hint}</div>}
    </div>
  );
}

export function Meter({ used, total, label }: { used: number; total: number; label?: string }) {
  const f = total > 0 ? Math.min(1, used / total) : 0;
  const tone = f > 0.9 ? "bad" : f > 0.75 ? "warn" : "good";
  return (
    <div class="meter" title={label}>
      <div class={`meter-fill meter-${tone}`} style={{ width: `${(f * 100).toFixed(1)}%` }} />
    </div>
  );
}

export function Empty({ title, children }: { title: string; children?: ComponentChildren }) {
  return (
    <div class="empty">
      <div class="empty-title">{title}</div>
      {children && <div class="muted">{children}</div>}
    </div>
  );
}

export function Spinner({ label = "Loading…" }: { label?: string }) {
  return (
    <div class="loading">
      <span class="spinner" aria-hidden="true" />
      {label}
    </div>
  );
}

export function ErrorNote({ error }: { error: { message: string; code?: string } | null }) {
  if (!error) return null;
  return (
    <div class="note note-bad" role="alert">
      <strong>{error.code ?? "Error"}</strong> {error.message}
    </div>
  );
}

// ------------------------------------------------------------------ dialogs and toasts

export function Modal({
  title,
  children,
  onClose,
  wide = false,
}: {
  title: ComponentChildren;
  children: ComponentChildren;
  onClose: () => void;
  wide?: boolean;
}) {
  useEffect(() => {
    const k = (e: KeyboardEvent) => {
      if (e.key === "Escape") onClose();
    };
    window.addEventListener("keydown", k);
    return () => window.removeEventListener("keydown", k);
  }, [onClose]);
  return (
    <div class="modal-back">
      <div class={`modal${wide ? " modal-wide" : ""}`} role="dialog" aria-modal="true">
        <header class="modal-head">
          <h3>{title}</h3>
          <button type="button" class="btn btn-ghost btn-icon" aria-label="Close" onClick={onClose}>
            <Icon name="close" />
          </button>
        </header>
        <div class="modal-body">{children}</div>
      </div>
    </div>
  );
}

export function Confirm({
  title,
  children,
  confirm,
  onConfirm,
  onClose,
}: {
  title: string;
  children: ComponentChildren;
  confirm: string;
  onConfirm: () => Promise<void> | void;
  onClose: () => void;
}) {
  const [busy, setBusy] = useState(false);
  return (
    <Modal title={title} onClose={onClose}>
      <div class="stack">
        <div>{children}</div>
        <div class="row end">
          <button type="button" class="btn" onClick={onClose} disabled={busy}>
            Cancel
          </button>
          <button
            type="button"
            class="btn btn-danger"
            disabled={busy}
            onClick={async () => {
              setBusy(true);
              try {
                await onConfirm();
              } finally {
                setBusy(false);
                onClose();
              }
            }}
          >
            {busy ? "Working…" : confirm}
          </button>
        </div>
      </div>
    </Modal>
  );
}

interface ToastItem {
  id: number;
  tone: "good" | "bad" | "info";
  text: string;
}
let toasts: ToastItem[] = [];
let nextToast = 1;
const toastListeners = new Set<() => void>();

export function toast(text: string, tone: ToastItem["tone"] = "good"): void {
  const id = nextToast++;
  toasts = [...toasts, { id, tone, text }];
  for (const l of toastListeners) l();
  window.setTimeout(
    () => {
      toasts = toasts.filter((t) => t.id !== id);
      for (const l of toastListeners) l();
    },
    tone === "bad" ? 7000 : 3500,
  );
}

export function Toasts() {
  const [, set] = useState(0);
  useEffect(() => {
    const l = () => set((x) => x + 1);
    toastListeners.add(l);
    return () => {
      toastListeners.delete(l);
    };
  }, []);
  return (
    <div class="toasts" aria-live="polite">
      {toasts.map((t) => (
        <div key={t.id} class={`toast toast-${t.tone}`}>
          {t.text}
        </div>
      ))}
    </div>
  );
}
