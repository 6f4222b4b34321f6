/**
 * The console's static files (built by `npm run build:console` into dist/console/), served
 * under /console/ on the API port without a token: they hold no data, and the page asks for
 * the admin token before it fetches anything.
 *
 * - Content types from the file extension; `nosniff` on everything.
 * - Caching: files under assets/ carry a content hash in their name (Vite), so they are
 *   immutable for a year; index.html is revalidated every time (a new build shows at once).
 * - Client routes (/console/buckets/photos, ...) have no extension: they get index.html.
 * - Paths are decoded, then checked segment by segment (no "..", ".", empty, NUL or "\\"
 *   segments, no dotfiles) and resolved inside the root: nothing outside it can be named.
 * - Not built: 404 with a page saying how to build it.
 */
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { extname, join, resolve, sep } from "node:path";

export const CONSOLE_PREFIX = "/console";

const TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json",
  ".map": "application/json",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".jpg": "image/jpeg",
  ".jpeg": "image/jpeg",
  ".gif": "image/gif",
  ".webp": "image/webp",
  ".ico": "image/x-icon",
  ".woff": "font/woff",
  ".woff2": "font/woff2",
  ".txt": "text/plain; charset=utf-8",
  ".webmanifest": "application/manifest+json",
};

/** The content type of a file name (application/octet-stream when unknown). */
export function contentTypeOf(name: string): string {
  return TYPES[extname(name).toLowerCase()] ?? "application/octet-stream";
}

/**
 * The safe relative path of a request path under /console/ (already stripped of the prefix,
 * still percent-encoded), or undefined when it must be refused. "" is the index.
 */
export function safeRelativePath(encoded: string): string | undefined {
  let decoded: string;
  try {
    decoded = decodeURIComponent(encoded);
  } catch {
    return undefined;
  }
  if (decoded.includes("\0") || decoded.includes("\\")) return undefined;
  const segments = decoded.split("/");
  // A leading slash and a trailing one ("assets/") are fine; nothing in between may be empty.
  if (segments[0] === "") segments.shift();
  if (segments.length > 0 && segments[segments.length - 1] === "") segments.pop();
  for (const s of segments) {
    if (s === "" || s === "." || s === ".." || s.startsWith(".")) return undefined;
    if (s.length > 255) return undefined;
  }
  return segments.join("/");
}

const PAGE_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' blob: data:",
  "connect-src 'self'",
  "font-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const NOT_BUILT_HTML = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Kumo console not built</title>
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;color:#1f2937}
code{background:#f3f4f6;padding:.1rem .35rem;border-radius:4px}</style></head>
<body><h1>The Kumo console is not built</h1>
<p>This node serves the console from <code>dist/console/</code>, which does not exist yet.
Build it from the repository with <code>npm run build</code> (or only the console with
<code>npm run build:console</code>), then reload this page. The APIs work without it.</p></body></html>
`;

function send(
  res: ServerResponse,
  status: number,
  body: string,
  type: string,
  extra: Record<string, string> = {},
  head = false,
): void {
  const data = Buffer.from(body);
  res.writeHead(status, {
    "content-type": type,
    "content-length": data.byteLength,
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
    ...extra,
  });
  res.end(head ? undefined : data);
}

export class StaticFiles {
  private readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  /** Serves /console and /console/...; returns false for any other path. */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
    const path = url.pathname;
    if (path !== CONSOLE_PREFIX && !path.startsWith(`${CONSOLE_PREFIX}/`)) return false;
    const head = req.method === "HEAD";
    if (req.method !== "GET" && !head) {
      send(res, 405, "GET or HEAD only\n", "text/plain; charset=utf-8", { allow: "GET, HEAD" });
      return true;
    }
    if (path === CONSOLE_PREFIX) {
      res.writeHead(308, { location: `${CONSOLE_PREFIX}/${url.search}`, "content-length": 0 });
      res.end();
      return true;
    }
    const rel = safeRelativePath(path.slice(CONSOLE_PREFIX.length + 1));
    if (rel === undefined) {
      send(res, 400, "bad path\n", "text/plain; charset=utf-8", {}, head);
      return true;
    }
    const index = join(this.root, "index.html");
    if (!(await isFile(index))) {
      send(res, 404, NOT_BUILT_HTML, "text/html; charset=utf-8", {}, head);
      return true;
    }
    let file = rel === "" ? index : resolve(this.root, rel);
    if (file !== index && !file.startsWith(this.root + sep)) {
      send(res, 400, "bad path\n", "text/plain; charset=utf-8", {}, head);
      return true;
    }
    let st = await statOf(file);
    if (!st?.isFile()) {
      // A client route (no extension) is the page itself; a missing file is a 404.
      if (extname(rel) !== "") {
        send(res, 404, `no such file: ${rel}\n`, "text/plain; charset=utf-8", {}, head);
        return true;
      }
      file = index;
      st = await statOf(file);
      if (!st) {
        send(res, 404, NOT_BUILT_HTML, "text/html; charset=utf-8", {}, head);
        return true;
      }
    }
    const immutable = rel.startsWith("assets/") && file !== index;
    const etag = `"${st.size.toString(16)}-${Math.floor(st.mtimeMs).toString(16)}"`;
    const headers: Record<string, string | number> = {
      "content-type": contentTypeOf(file),
      "content-length": st.size,
      "x-content-type-options": "nosniff",
      "cache-control": immutable ? "public, max-age=31536000, immutable" : "no-cache",
      etag,
    };
    if (file === index) {
      // The page loads nothing from elsewhere and runs no inline script: a script injected
      // into it (it holds the admin token) could neither run nor send anything out.
      headers["content-security-policy"] = PAGE_CSP;
      headers["referrer-policy"] = "no-referrer";
      headers["x-frame-options"] = "DENY";
    }
    if (req.headers["if-none-match"] === etag) {
      res.writeHead(304, { etag, "cache-control": headers["cache-control"] as string });
      res.end();
      return true;
    }
    res.writeHead(200, headers);
    if (head) {
      res.end();
      return true;
    }
    await new Promise<void>((done) => {
      const s = createReadStream(file);
      s.once("error", () => {
        res.destroy();
        done();
      });
      s.once("end", done);
      res.once("close", () => {
        s.destroy();
        done();
      });
      s.pipe(res);
    });
    return true;
  }
}

async function statOf(p: string) {
  try {
    return await stat(p);
  } catch {
    return undefined;
  }
}

async function isFile(p: string): Promise<boolean> {
  return (await statOf(p))?.isFile() === true;
}
