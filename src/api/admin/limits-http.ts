/**
 * The admin HTTP API (behind the admin token):
 *
 *   GET /v1/admin/limits            → 200 {"limits":{...},"inFlight":N}
 *   PUT /v1/admin/limits  {"tokenRatePerSecond":50,...}  → 200 {"limits":{...},"inFlight":N}
 *
 * Changing limits acts on the answering node only and lasts until it restarts (the configured
 * values then apply again): limits are per node by design, and an operator who wants a change
 * everywhere sends it to every node (or changes the configuration).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { type Credentials, HttpError, readBody, requireAdmin, sendJson } from "../kv/http.js";
import { checkLimits, type LimitBounds, type Limiter, type LimitSettings } from "../limits.js";

/** A limits document is a few hundred bytes; anything much larger is not one. */
const ADMIN_BODY_BYTES_MAX = 64 << 10;

export interface AdminHttpOptions {
  /** Admin credentials (every /v1/admin/... path is checked here first). */
  readonly tokens: Credentials;
  readonly bounds: LimitBounds;
  /** Told after every change (the node logs it). */
  readonly onLimitsChanged?: (limits: LimitSettings, changes: Partial<LimitSettings>) => void;
}

export class AdminHttpApi {
  constructor(
    private readonly limiter: Limiter,
    private readonly opts: AdminHttpOptions,
  ) {}

  /** Handles /v1/admin/... ; returns false if the path is not ours. */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
    const path = url.pathname;
    if (path !== "/v1/admin" && !path.startsWith("/v1/admin/")) return false;
    await requireAdmin(this.opts.tokens, req);
    if (path !== "/v1/admin/limits") return false;
    switch (req.method) {
      case "GET":
        this.answer(res);
        return true;
      case "PUT": {
        const body = await readBody(req, ADMIN_BODY_BYTES_MAX);
        let parsed: unknown;
        try {
          parsed = JSON.parse(new TextDecoder().decode(body));
        } catch {
          throw new HttpError(400, "BAD_REQUEST", "the body must be JSON");
        }
        const checked = checkLimits(parsed, this.opts.bounds);
        if (!checked.ok) throw new HttpError(400, "BAD_REQUEST", checked.message);
        const limits = this.limiter.update(checked.changes);
        this.opts.onLimitsChanged?.(limits, checked.changes);
        this.answer(res);
        return true;
      }
      default:
        throw new HttpError(405, "METHOD_NOT_ALLOWED", "GET or PUT only", { allow: "GET, PUT" });
    }
  }

  private answer(res: ServerResponse): void {
    sendJson(res, 200, { limits: this.limiter.settings, inFlight: this.limiter.inFlight });
  }
}
