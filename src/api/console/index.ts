/**
 * The web console (docs/console.md): a single-page app built from console/ into dist/console/,
 * served by every node under /console/ on the API port, and the JSON endpoints it reads under
 * /v1/admin/console/, behind the admin token.
 *
 *   GET /console/...                     static files (no token: they hold no data)
 *   GET /v1/admin/console/node           this node (cluster.ts)
 *   GET /v1/admin/console/cluster        every node, the shard maps, the chunk ring summary
 *   GET /v1/admin/console/ring           the chunk ring
 *   ... /v1/admin/console/buckets|objects|kv/...   the browser (browser.ts)
 *
 * Every data endpoint answers 401 without a valid admin bearer token (checked here, whatever
 * checked it before).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { fileURLToPath } from "node:url";
import { type Credentials, HttpError, requireAdmin, sendError, sendJson } from "../kv/http.js";
import { Browser, type BrowserSources } from "./browser.js";
import { type ClusterSources, ClusterViews } from "./cluster.js";
import { StaticFiles } from "./static.js";

export { type BrowserSources, CONSOLE_OWNER } from "./browser.js";
export type { ClusterSources, NodeSnapshot } from "./cluster.js";
export { CONSOLE_PREFIX, contentTypeOf, safeRelativePath } from "./static.js";

export const CONSOLE_API_PREFIX = "/v1/admin/console";

/** Where `npm run build:console` puts the page: dist/console/ (next to dist/src/). */
export const CONSOLE_DIST_DIR = fileURLToPath(new URL("../../../console/", import.meta.url));

export interface ConsoleOptions {
  /** Admin credentials (the node's authenticator; a plain list of admin tokens in tests). */
  readonly adminTokens: Credentials;
  /** The built page (CONSOLE_DIST_DIR by default). */
  readonly distDir?: string;
  readonly cluster: ClusterSources;
  /** The bucket and keyspace browser (absent: those endpoints answer 503). */
  readonly browser?: BrowserSources;
  readonly log?: { error(o: object, msg: string): void };
}

export class ConsoleApi {
  private readonly files: StaticFiles;
  private readonly views: ClusterViews;
  private readonly browser: Browser | undefined;

  constructor(private readonly opts: ConsoleOptions) {
    this.files = new StaticFiles(opts.distDir ?? CONSOLE_DIST_DIR);
    this.views = new ClusterViews(opts.cluster);
    this.browser = opts.browser ? new Browser(opts.browser) : undefined;
  }

  /**
   * Serves /console/... and /v1/admin/console/...; returns false for any other path. Errors
   * are answered here (JSON, as every admin endpoint), never thrown.
   */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
    if (await this.files.handle(req, res, url)) return true;
    // The raw path, not url.pathname: the URL parser resolves "." and ".." segments, which
    // are legal in object and KV keys.
    const path = (req.url ?? "/").split("?", 1)[0] as string;
    if (path !== CONSOLE_API_PREFIX && !path.startsWith(`${CONSOLE_API_PREFIX}/`)) return false;
    try {
      await this.api(req, res, url, path.slice(CONSOLE_API_PREFIX.length + 1));
    } catch (err) {
      if (err instanceof HttpError) sendError(res, err);
      else {
        this.opts.log?.error({ err }, "console request failed");
        sendError(res, new HttpError(500, "INTERNAL", "internal error; see the node's log"));
      }
    }
    return true;
  }

  private async api(req: IncomingMessage, res: ServerResponse, url: URL, rest: string) {
    await requireAdmin(this.opts.adminTokens, req);
    const get = () => {
      if (req.method !== "GET")
        throw new HttpError(405, "METHOD_NOT_ALLOWED", "GET only", { allow: "GET" });
    };
    switch (rest) {
      case "node":
        get();
        return sendJson(res, 200, await this.views.node(), { "cache-control": "no-store" });
      case "cluster":
        get();
        return sendJson(res, 200, await this.views.cluster(req.headers.authorization ?? ""), {
          "cache-control": "no-store",
        });
      case "ring":
        get();
        return sendJson(res, 200, this.views.ringView(), { "cache-control": "no-store" });
    }
    const m = /^(buckets|objects|kv)(?:\/(.*))?$/s.exec(rest);
    if (!m) throw new HttpError(404, "NOT_FOUND", `no console endpoint ${url.pathname}`);
    const browser = this.browser;
    if (!browser)
      throw new HttpError(503, "UNAVAILABLE", "the browser is not available on this node");
    const tail = m[2] ?? "";
    switch (m[1]) {
      case "buckets": {
        if (tail.includes("/")) throw new HttpError(404, "NOT_FOUND", "buckets/{name} only");
        let name: string | undefined;
        try {
          name = tail === "" ? undefined : decodeURIComponent(tail);
        } catch {
          throw new HttpError(400, "BAD_REQUEST", "the bucket name is not valid percent-encoding");
        }
        return browser.buckets(req, res, name);
      }
      case "objects":
        return browser.objects(req, res, url, tail);
      default:
        return browser.kv(req, res, url, tail);
    }
  }
}
