/** The keyspace browser: list keys by prefix, view, put and delete values. */
import { useEffect, useState } from "preact/hooks";
import {
  API,
  type ApiError,
  getJson,
  type KvEntry,
  type KvList,
  type KvValue,
  request,
  seg,
} from "../api";
import { Badge, Card, Confirm, Empty, ErrorNote, Icon, Modal, Spinner, toast } from "../components";
import { bytes, count, plural } from "../format";
import { link, navigate } from "../router";
import { useCluster } from "../store";

function b64ToBytes(s: string): Uint8Array {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function hexDump(b: Uint8Array, max = 4096): string {
  const lines: string[] = [];
  for (let i = 0; i < Math.min(b.length, max); i += 16) {
    const row = b.subarray(i, i + 16);
    const hex = [...row].map((x) => x.toString(16).padStart(2, "0")).join(" ");
    const asc = [...row]
      .map((x) => (x >= 0x20 && x < 0x7f ? String.fromCharCode(x) : "."))
      .join("");
    lines.push(`${i.toString(16).padStart(8, "0")}  ${hex.padEnd(47)}  ${asc}`);
  }
  if (b.length > max) lines.push(`… ${b.length - max} more bytes`);
  return lines.join("\n");
}

function kvPath(ks: string, key?: string): string {
  return `${API}/kv/${seg(ks)}${key === undefined ? "" : `/${seg(key)}`}`;
}

function Editor({
  keyspace,
  initialKey,
  initialValue,
  onClose,
  onSaved,
}: {
  keyspace: string;
  initialKey: string;
  initialValue: string;
  onClose: () => void;
  onSaved: (key: string) => void;
}) {
  const [key, setKey] = useState(initialKey);
  const [value, setValue] = useState(initialValue);
  const [busy, setBusy] = useState(false);
  const save = async (e: Event) => {
    e.preventDefault();
    if (!key) return;
    setBusy(true);
    try {
      const r = await getJson<{ revision: number }>(kvPath(keyspace, key), {
        method: "PUT",
        body: value,
      });
      toast(`Saved ${key} (revision ${r.revision})`);
      onSaved(key);
    } catch (err) {
      toast((err as ApiError).message, "bad");
    } finally {
      setBusy(false);
    }
  };
  return (
    <Modal
      title={initialKey ? `Edit ${initialKey}` : `New key in ${keyspace}`}
      onClose={onClose}
      wide
    >
      <form class="stack" onSubmit={save}>
        <label class="field">
          <span>Key</span>
          <input
            name="key"
            value={key}
            readOnly={initialKey !== ""}
            placeholder="config/feature-flags"
            autofocus={initialKey === ""}
            onInput={(e) => setKey((e.target as HTMLInputElement).value)}
          />
        </label>
        <label class="field">
          <span>Value (UTF-8 text)</span>
          <textarea
            name="value"
            rows={10}
            value={value}
            onInput={(e) => setValue((e.target as HTMLTextAreaElement).value)}
          />
        </label>
        <div class="row end">
          <button type="button" class="btn" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" class="btn btn-primary" disabled={busy || !key}>
            {busy ? "Saving…" : "Save"}
          </button>
        </div>
      </form>
    </Modal>
  );
}

function ValuePanel({
  keyspace,
  entry,
  onClose,
  onEdit,
  onDelete,
}: {
  keyspace: string;
  entry: KvEntry;
  onClose: () => void;
  onEdit: (text: string) => void;
  onDelete: () => void;
}) {
  const [v, setV] = useState<KvValue | null>(null);
  const [err, setErr] = useState<ApiError | null>(null);
  const [hex, setHex] = useState(false);
  useEffect(() => {
    getJson<KvValue>(kvPath(keyspace, entry.key))
      .then((x) => {
        setV(x);
        setHex(!x.text);
      })
      .catch((e: ApiError) => setErr(e));
  }, [keyspace, entry.key]);
  const raw = v ? b64ToBytes(v.value) : new Uint8Array();
  const text = v?.text ? new TextDecoder().decode(raw) : "";
  let pretty = text;
  try {
    if (/^\s*[[{]/.test(text)) pretty = JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    pretty = text;
  }
  return (
    <Modal title={entry.key} onClose={onClose} wide>
      <div class="stack">
        <ErrorNote error={err} />
        {!v && !err && <Spinner />}
        {v && (
          <>
            <div class="row">
              <Badge tone="blue">revision {v.revision}</Badge>
              <Badge>{bytes(v.size)}</Badge>
              {v.text ? <Badge tone="teal">text</Badge> : <Badge tone="amber">binary</Badge>}
              <span class="grow" />
              {v.text && (
                <div class="segmented" title="View">
                  <button type="button" class={!hex ? "on" : ""} onClick={() => setHex(false)}>
                    Text
                  </button>
                  <button type="button" class={hex ? "on" : ""} onClick={() => setHex(true)}>
                    Hex
                  </button>
                </div>
              )}
            </div>
            <pre class="preview" data-testid="kv-value">
              {hex ? hexDump(raw) : pretty}
            </pre>
            <div class="row end">
              <button type="button" class="btn btn-danger-ghost" onClick={onDelete}>
                <Icon name="trash" size={16} />
                Delete
              </button>
              {v.text && (
                <button type="button" class="btn btn-primary" onClick={() => onEdit(text)}>
                  Edit
                </button>
              )}
            </div>
          </>
        )}
      </div>
    </Modal>
  );
}

export function KvPage({ keyspace, prefix }: { keyspace?: string | undefined; prefix: string }) {
  const c = useCluster();
  const names = (c.view?.keyspaces ?? []).filter((k) => !k.system).map((k) => k.name);
  const ks = keyspace ?? names[0];
  const [list, setList] = useState<KvList | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [search, setSearch] = useState(prefix);
  const [open, setOpen] = useState<KvEntry | null>(null);
  const [editing, setEditing] = useState<{ key: string; value: string } | null>(null);
  const [removing, setRemoving] = useState<string | null>(null);

  const load = async (after?: string) => {
    if (!ks) return;
    try {
      const q = new URLSearchParams({ prefix, limit: "200" });
      if (after) q.set("after", after);
      const r = await getJson<KvList>(`${kvPath(ks)}?${q}`);
      setList((cur) => (after && cur ? { ...r, items: [...cur.items, ...r.items] } : r));
      setError(null);
    } catch (e) {
      setError(e as ApiError);
    }
  };
  useEffect(() => {
    setList(null);
    setSearch(prefix);
    void load();
  }, [ks, prefix]);

  const go = (k: string, p: string) =>
    navigate(`/kv/${encodeURIComponent(k)}${p ? `?prefix=${encodeURIComponent(p)}` : ""}`);

  if (!ks) return c.view ? <Empty title="No keyspaces" /> : <Spinner />;

  return (
    <div class="page">
      <div class="page-head">
        <div>
          <h1>KV browser</h1>
          <p class="muted">Linearizable reads and writes through this node</p>
        </div>
        <div class="row">
          <label class="select">
            <span class="muted small">Keyspace</span>
            <select
              name="keyspace"
              value={ks}
              onChange={(e) => go((e.target as HTMLSelectElement).value, "")}
            >
              {(names.includes(ks) ? names : [ks, ...names]).map((n) => (
                <option key={n} value={n}>
                  {n}
                </option>
              ))}
            </select>
          </label>
          <a class="btn" {...link(`/keyspaces/${encodeURIComponent(ks)}`)}>
            Shard map
          </a>
          <button
            type="button"
            class="btn btn-primary"
            onClick={() => setEditing({ key: "", value: "" })}
          >
            <Icon name="plus" size={16} />
            Put key
          </button>
        </div>
      </div>
      <ErrorNote error={error} />
      <Card>
        <form
          class="toolbar"
          onSubmit={(e) => {
            e.preventDefault();
            go(ks, search);
          }}
        >
          <div class="search grow">
            <Icon name="search" size={15} />
            <input
              name="prefix"
              placeholder="Key prefix, e.g. users/"
              value={search}
              onInput={(e) => setSearch((e.target as HTMLInputElement).value)}
            />
          </div>
          <button type="submit" class="btn">
            List
          </button>
          <button type="button" class="btn" onClick={() => void load()} aria-label="Refresh">
            <Icon name="refresh" size={16} />
          </button>
        </form>
        {list === null ? (
          <Spinner />
        ) : list.items.length === 0 ? (
          <Empty title={prefix ? `No keys start with “${prefix}”` : "This keyspace is empty"}>
            Put one with the button above, or <code>kumo kv put KEY VALUE</code>.
          </Empty>
        ) : (
          <div class="table-wrap">
            <table class="table hover">
              <thead>
                <tr>
                  <th>Key</th>
                  <th class="num">Revision</th>
                  <th class="num">Size</th>
                  <th>Value</th>
                  <th class="actions" />
                </tr>
              </thead>
              <tbody>
                {list.items.map((it) => (
                  <tr key={it.key} data-kv-key={it.key}>
                    <td>
                      <button
                        type="button"
                        class="obj-name linklike mono"
                        onClick={() => setOpen(it)}
                      >
                        <span class="obj-icon key">
                          <Icon name="key" size={14} />
                        </span>
                        {it.key}
                      </button>
                    </td>
                    <td class="num">{count(it.revision)}</td>
                    <td class="num">{bytes(it.size)}</td>
                    <td class="preview-cell">
                      {it.preview === null ? (
                        <span class="muted">binary</span>
                      ) : (
                        <span class="mono small">
                          {it.preview}
                          {it.size > it.preview.length ? "…" : ""}
                        </span>
                      )}
                    </td>
                    <td class="actions">
                      <button
                        type="button"
                        class="btn btn-ghost btn-icon"
                        title="Delete"
                        aria-label={`Delete ${it.key}`}
                        onClick={() => setRemoving(it.key)}
                      >
                        <Icon name="trash" size={16} />
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
        {list && (
          <div class="table-foot muted small">
            {plural(list.items.length, "key")}
            {list.next ? " shown" : ""}
            {list.next && (
              <button
                type="button"
                class="btn btn-sm"
                onClick={() => void load(list.next ?? undefined)}
              >
                Load more
              </button>
            )}
          </div>
        )}
      </Card>
      {open && (
        <ValuePanel
          keyspace={ks}
          entry={open}
          onClose={() => setOpen(null)}
          onEdit={(text) => {
            setEditing({ key: open.key, value: text });
            setOpen(null);
          }}
          onDelete={() => {
            setRemoving(open.key);
            setOpen(null);
          }}
        />
      )}
      {editing && (
        <Editor
          keyspace={ks}
          initialKey={editing.key}
          initialValue={editing.value}
          onClose={() => setEditing(null)}
          onSaved={() => {
            setEditing(null);
            void load();
          }}
        />
      )}
      {removing !== null && (
        <Confirm
          title="Delete key"
          confirm="Delete"
          onClose={() => setRemoving(null)}
          onConfirm={async () => {
            try {
              await request(kvPath(ks, removing), { method: "DELETE" });
              toast(`Deleted ${removing}`);
              await load();
            } catch (e) {
              toast((e as ApiError).message, "bad");
            }
          }}
        >
          Delete <b class="mono">{removing}</b> from <b>{ks}</b>?
        </Confirm>
      )}
    </div>
  );
}
