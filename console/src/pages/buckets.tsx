/** The bucket browser: buckets, then one bucket's objects one folder at a time. */
import { Fragment } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import {
  API,
  type ApiError,
  type Bucket,
  getJson,
  type ObjectEntry,
  type ObjectList,
  request,
  seg,
  upload,
} from "../api";
import { Badge, Card, Confirm, Empty, ErrorNote, Icon, Modal, Spinner, toast } from "../components";
import { ago, bytes, dateTime, plural } from "../format";
import { link, navigate } from "../router";
import { cluster } from "../store";

/** This node's S3 address, for the aws CLI hint. */
function s3Address(): string {
  const v = cluster.view;
  return v?.nodes.find((n) => n.self)?.s3 || "S3_ADDRESS";
}

function objectPath(bucket: string, key: string): string {
  return `${API}/objects/${seg(bucket)}/${seg(key)}`;
}

async function download(bucket: string, key: string): Promise<void> {
  const r = await request(objectPath(bucket, key));
  const blob = await r.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement("a");
  a.href = url;
  a.download = key.slice(key.lastIndexOf("/") + 1) || "download";
  document.body.appendChild(a);
  a.click();
  a.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

function BucketList() {
  const [buckets, setBuckets] = useState<Bucket[] | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [name, setName] = useState("");
  const [creating, setCreating] = useState(false);
  const [showNew, setShowNew] = useState(false);
  const [removing, setRemoving] = useState<string | null>(null);
  const load = () =>
    getJson<{ buckets: Bucket[] }>(`${API}/buckets`)
      .then((r) => {
        setBuckets(r.buckets);
        setError(null);
      })
      .catch((e: ApiError) => setError(e));
  useEffect(() => {
    void load();
  }, []);
  const create = async (e: Event) => {
    e.preventDefault();
    const n = name.trim();
    if (!n) return;
    setCreating(true);
    try {
      await request(`${API}/buckets/${seg(n)}`, { method: "PUT" });
      toast(`Bucket ${n} created`);
      setName("");
      setShowNew(false);
      await load();
    } catch (err) {
      toast((err as ApiError).message, "bad");
    } finally {
      setCreating(false);
    }
  };
  return (
    <div class="page">
      <div class="page-head">
        <div>
          <h1>Buckets</h1>
          <p class="muted">
            S3 buckets and their objects; uploads go through the node's object layer
          </p>
        </div>
        <div class="row">
          <button type="button" class="btn" onClick={() => void load()}>
            <Icon name="refresh" size={16} />
            Refresh
          </button>
          <button type="button" class="btn btn-primary" onClick={() => setShowNew(true)}>
            <Icon name="plus" size={16} />
            New bucket
          </button>
        </div>
      </div>
      <ErrorNote error={error} />
      {showNew && (
        <Modal title="New bucket" onClose={() => setShowNew(false)}>
          <form class="stack" onSubmit={create}>
            <label class="field">
              <span>Name</span>
              <input
                name="bucket"
                value={name}
                placeholder="photos"
                autofocus
                pattern="[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]"
                title="3 to 63 lowercase letters, digits, dots and hyphens"
                onInput={(e) => setName((e.target as HTMLInputElement).value)}
              />
            </label>
            <p class="muted small">
              3–63 lowercase letters, digits, dots and hyphens. It is owned by the S3 root key when
              the cluster has one.
            </p>
            <div class="row end">
              <button type="button" class="btn" onClick={() => setShowNew(false)}>
                Cancel
              </button>
              <button type="submit" class="btn btn-primary" disabled={creating || !name.trim()}>
                {creating ? "Creating…" : "Create bucket"}
              </button>
            </div>
          </form>
        </Modal>
      )}
      <Card>
        {buckets === null ? (
          <Spinner />
        ) : buckets.length === 0 ? (
          <Empty title="No buckets yet">
            Create one here, or with <code>aws s3 mb s3://NAME</code> against the S3 port.
          </Empty>
        ) : (
          <div class="table-wrap">
            <table class="table hover">
              <thead>
                <tr>
                  <th>Name</th>
                  <th>Created</th>
                  <th>Owner</th>
                  <th>Settings</th>
                  <th class="actions" />
                </tr>
              </thead>
              <tbody>
                {buckets.map((b) => (
                  <tr key={b.name} data-bucket={b.name}>
                    <td>
                      <a class="obj-name" {...link(`/buckets/${encodeURIComponent(b.name)}`)}>
                        <span class="obj-icon bucket">
                          <Icon name="buckets" size={16} />
                        </span>
                        {b.name}
                      </a>
                    </td>
                    <td title={dateTime(b.createdMs)}>{ago(b.createdMs)}</td>
                    <td class="mono small">{b.owner}</td>
                    <td>
                      <div class="row tight">
                        {b.versioning && (
                          <Badge tone="violet">versioning {b.versioning.toLowerCase()}</Badge>
                        )}
                        {b.publicRead && <Badge tone="amber">public read</Badge>}
                        {!b.versioning && !b.publicRead && <span class="muted">—</span>}
                      </div>
                    </td>
                    <td class="actions">
                      <button
                        type="button"
                        class="btn btn-ghost btn-icon"
                        title={`Delete bucket ${b.name}`}
                        aria-label={`Delete bucket ${b.name}`}
                        onClick={() => setRemoving(b.name)}
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
      </Card>
      {removing && (
        <Confirm
          title="Delete bucket"
          confirm="Delete bucket"
          onClose={() => setRemoving(null)}
          onConfirm={async () => {
            try {
              await request(`${API}/buckets/${seg(removing)}`, { method: "DELETE" });
              toast(`Bucket ${removing} deleted`);
              await load();
            } catch (err) {
              toast((err as ApiError).message, "bad");
            }
          }}
        >
          Delete the bucket <b>{removing}</b>? Only an empty bucket can be deleted.
        </Confirm>
      )}
    </div>
  );
}

interface Upload {
  name: string;
  sent: number;
  total: number;
  done: boolean;
  error?: string;
}

function isTextType(t: string, key: string): boolean {
  return (
    t.startsWith("text/") ||
    /json|xml|yaml|javascript|csv/.test(t) ||
    /\.(txt|md|json|ya?ml|csv|log|xml|html?|css|js|ts|ini|conf|toml)$/i.test(key)
  );
}

function ObjectPanel({
  bucket,
  obj,
  onClose,
  onDelete,
}: {
  bucket: string;
  obj: ObjectEntry;
  onClose: () => void;
  onDelete: () => void;
}) {
  const [preview, setPreview] = useState<
    { kind: "text"; text: string } | { kind: "image"; url: string } | null
  >(null);
  const [err, setErr] = useState<string | null>(null);
  const text = isTextType(obj.contentType, obj.key);
  const image = obj.contentType.startsWith("image/") && obj.contentType !== "image/svg+xml";
  useEffect(() => {
    let url: string | undefined;
    if ((text && obj.size <= 256 * 1024) || (image && obj.size <= 8 * 1024 * 1024)) {
      request(objectPath(bucket, obj.key))
        .then(async (r) => {
          if (text) setPreview({ kind: "text", text: await r.text() });
          else {
            url = URL.createObjectURL(await r.blob());
            setPreview({ kind: "image", url });
          }
        })
        .catch((e: ApiError) => setErr(e.message));
    }
    return () => {
      if (url) URL.revokeObjectURL(url);
    };
  }, [bucket, obj.key]);
  return (
    <Modal title={obj.key.slice(obj.key.lastIndexOf("/") + 1)} onClose={onClose} wide>
      <div class="stack">
        <dl class="props">
          <dt>Key</dt>
          <dd class="mono">{obj.key}</dd>
          <dt>Size</dt>
          <dd>
            {bytes(obj.size)} <span class="muted">({obj.size.toLocaleString("en-US")} bytes)</span>
          </dd>
          <dt>Type</dt>
          <dd class="mono">{obj.contentType}</dd>
          <dt>Modified</dt>
          <dd>{dateTime(obj.lastModifiedMs)}</dd>
          <dt>ETag</dt>
          <dd class="mono">{obj.etag}</dd>
          <dt>aws CLI</dt>
          <dd class="mono small">
            aws --endpoint-url http://{s3Address()} s3 cp s3://{bucket}/{obj.key} .
          </dd>
        </dl>
        {err && <div class="note note-bad">{err}</div>}
        {preview?.kind === "text" && <pre class="preview">{preview.text}</pre>}
        {preview?.kind === "image" && (
          <div class="preview-img">
            <img src={preview.url} alt={obj.key} />
          </div>
        )}
        <div class="row end">
          <button type="button" class="btn btn-danger-ghost" onClick={onDelete}>
            <Icon name="trash" size={16} />
            Delete
          </button>
          <button
            type="button"
            class="btn btn-primary"
            onClick={() =>
              download(bucket, obj.key).catch((e: ApiError) => toast(e.message, "bad"))
            }
          >
            <Icon name="download" size={16} />
            Download
          </button>
        </div>
      </div>
    </Modal>
  );
}

function ObjectBrowser({ bucket, prefix }: { bucket: string; prefix: string }) {
  const [list, setList] = useState<ObjectList | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [uploads, setUploads] = useState<Upload[]>([]);
  const [open, setOpen] = useState<ObjectEntry | null>(null);
  const [removing, setRemoving] = useState<ObjectEntry | null>(null);
  const [drag, setDrag] = useState(false);
  const [filter, setFilter] = useState("");
  const input = useRef<HTMLInputElement>(null);

  const load = async (after?: string) => {
    try {
      const q = new URLSearchParams({ prefix });
      if (after) q.set("after", after);
      const r = await getJson<ObjectList>(`${API}/objects/${seg(bucket)}?${q}`);
      setList((cur) =>
        after && cur
          ? {
              ...r,
              objects: [...cur.objects, ...r.objects],
              prefixes: [...cur.prefixes, ...r.prefixes],
            }
          : r,
      );
      setError(null);
    } catch (e) {
      setError(e as ApiError);
    }
  };
  useEffect(() => {
    setList(null);
    setFilter("");
    void load();
  }, [bucket, prefix]);

  const go = (p: string) =>
    navigate(
      `/buckets/${encodeURIComponent(bucket)}${p ? `?prefix=${encodeURIComponent(p)}` : ""}`,
    );

  const send = async (files: readonly File[]) => {
    const start = uploads.length;
    setUploads((u) => [
      ...u,
      ...files.map((f) => ({ name: f.name, sent: 0, total: f.size, done: false })),
    ]);
    for (const [i, f] of files.entries()) {
      const at = start + i;
      const update = (x: Partial<Upload>) =>
        setUploads((u) => u.map((y, j) => (j === at ? { ...y, ...x } : y)));
      try {
        await upload(objectPath(bucket, prefix + f.name), f, f.type, (sent, total) =>
          update({ sent, total }),
        );
        update({ done: true, sent: f.size });
        toast(`Uploaded ${f.name}`);
      } catch (e) {
        update({ done: true, error: (e as ApiError).message });
        toast(`${f.name}: ${(e as ApiError).message}`, "bad");
      }
    }
    await load();
    window.setTimeout(() => setUploads((u) => u.filter((x) => !x.done || x.error)), 4000);
  };

  const crumbs = prefix.split("/").filter((x) => x !== "");
  const f = filter.trim().toLowerCase();
  const folders = (list?.prefixes ?? []).filter((p) =>
    p.slice(prefix.length).toLowerCase().includes(f),
  );
  const objects = (list?.objects ?? []).filter((o) =>
    o.key.slice(prefix.length).toLowerCase().includes(f),
  );
  const totalBytes = objects.reduce((a, o) => a + o.size, 0);

  return (
    <div class="page">
      <div class="page-head">
        <div>
          <div class="crumbs">
            <a {...link("/buckets")}>Buckets</a>
            <span>/</span>
            <a
              href={`/console/buckets/${encodeURIComponent(bucket)}`}
              onClick={(e) => {
                e.preventDefault();
                go("");
              }}
            >
              {bucket}
            </a>
            {crumbs.map((c, i) => {
              const p = `${crumbs.slice(0, i + 1).join("/")}/`;
              return (
                <Fragment key={p}>
                  <span>/</span>
                  <a
                    href={`/console/buckets/${encodeURIComponent(bucket)}?prefix=${encodeURIComponent(p)}`}
                    onClick={(e) => {
                      e.preventDefault();
                      go(p);
                    }}
                  >
                    {c}
                  </a>
                </Fragment>
              );
            })}
          </div>
          <h1>{crumbs.length ? `${crumbs[crumbs.length - 1]}/` : bucket}</h1>
        </div>
        <div class="row">
          <div class="search">
            <Icon name="search" size={15} />
            <input
              placeholder="Filter this folder"
              value={filter}
              onInput={(e) => setFilter((e.target as HTMLInputElement).value)}
            />
          </div>
          <button type="button" class="btn" onClick={() => void load()}>
            <Icon name="refresh" size={16} />
            Refresh
          </button>
          <label class="btn btn-primary">
            <Icon name="upload" size={16} />
            Upload
            <input
              ref={input}
              type="file"
              multiple
              class="hidden-input"
              data-testid="upload-input"
              onChange={(e) => {
                const el = e.target as HTMLInputElement;
                const files = [...(el.files ?? [])];
                el.value = "";
                if (files.length) void send(files);
              }}
            />
          </label>
        </div>
      </div>
      <ErrorNote error={error} />
      {uploads.length > 0 && (
        <Card class="uploads">
          {uploads.map((u, i) => (
            <div class="upload-row" key={`${u.name}-${i}`}>
              <span class="mono small">{u.name}</span>
              <div class="meter">
                <div
                  class={`meter-fill ${u.error ? "meter-bad" : "meter-good"}`}
                  style={{ width: `${u.total ? (u.sent / u.total) * 100 : 100}%` }}
                />
              </div>
              <span class="small muted">
                {u.error ? u.error : u.done ? "done" : `${bytes(u.sent)} / ${bytes(u.total)}`}
              </span>
            </div>
          ))}
        </Card>
      )}
      <section
        class={`card dropzone${drag ? " dragging" : ""}`}
        aria-label="Objects"
        onDragOver={(e) => {
          e.preventDefault();
          setDrag(true);
        }}
        onDragLeave={() => setDrag(false)}
        onDrop={(e) => {
          e.preventDefault();
          setDrag(false);
          const files = [...(e.dataTransfer?.files ?? [])];
          if (files.length) void send(files);
        }}
      >
        {list === null ? (
          <Spinner />
        ) : folders.length + objects.length === 0 ? (
          <Empty title={f ? "Nothing matches the filter" : "This folder is empty"}>
            Drop files here or use <b>Upload</b>.
          </Empty>
        ) : (
          <div class="table-wrap">
            <table class="table hover objects">
              <thead>
                <tr>
                  <th>Name</th>
                  <th class="num">Size</th>
                  <th>Type</th>
                  <th>Modified</th>
                  <th class="actions" />
                </tr>
              </thead>
              <tbody>
                {folders.map((p) => (
                  <tr key={p} data-prefix={p}>
                    <td colSpan={5}>
                      <a
                        class="obj-name"
                        href={`/console/buckets/${encodeURIComponent(bucket)}?prefix=${encodeURIComponent(p)}`}
                        onClick={(e) => {
                          e.preventDefault();
                          go(p);
                        }}
                      >
                        <span class="obj-icon folder">
                          <Icon name="folder" size={16} />
                        </span>
                        {p.slice(prefix.length)}
                      </a>
                    </td>
                  </tr>
                ))}
                {objects.map((o) => (
                  <tr key={o.key} data-key={o.key}>
                    <td>
                      <button type="button" class="obj-name linklike" onClick={() => setOpen(o)}>
                        <span class="obj-icon file">
                          <Icon name="file" size={16} />
                        </span>
                        {o.key.slice(prefix.length)}
                      </button>
                    </td>
                    <td class="num">{bytes(o.size)}</td>
                    <td class="mono small muted">{o.contentType}</td>
                    <td title={dateTime(o.lastModifiedMs)}>{ago(o.lastModifiedMs)}</td>
                    <td class="actions">
                      <div class="row tight end">
                        <button
                          type="button"
                          class="btn btn-ghost btn-icon"
                          title="Download"
                          aria-label={`Download ${o.key}`}
                          onClick={() =>
                            download(bucket, o.key).catch((e: ApiError) => toast(e.message, "bad"))
                          }
                        >
                          <Icon name="download" size={16} />
                        </button>
                        <button
                          type="button"
                          class="btn btn-ghost btn-icon"
                          title="Delete"
                          aria-label={`Delete ${o.key}`}
                          onClick={() => setRemoving(o)}
                        >
                          <Icon name="trash" size={16} />
                        </button>
                      </div>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
        {list && (
          <div class="table-foot muted small">
            {plural(folders.length, "folder")} · {plural(objects.length, "object")} ·{" "}
            {bytes(totalBytes)}
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
      </section>
      {open && (
        <ObjectPanel
          bucket={bucket}
          obj={open}
          onClose={() => setOpen(null)}
          onDelete={() => {
            setRemoving(open);
            setOpen(null);
          }}
        />
      )}
      {removing && (
        <Confirm
          title="Delete object"
          confirm="Delete"
          onClose={() => setRemoving(null)}
          onConfirm={async () => {
            try {
              await request(objectPath(bucket, removing.key), { method: "DELETE" });
              toast(`Deleted ${removing.key}`);
              await load();
            } catch (e) {
              toast((e as ApiError).message, "bad");
            }
          }}
        >
          Delete <b class="mono">{removing.key}</b> from <b>{bucket}</b>?
        </Confirm>
      )}
    </div>
  );
}

export function BucketsPage({ bucket, prefix }: { bucket?: string | undefined; prefix: string }) {
  return bucket ? <ObjectBrowser bucket={bucket} prefix={prefix} /> : <BucketList />;
}
