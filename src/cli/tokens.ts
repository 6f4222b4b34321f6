/**
 * `kumo token create|ls|rm|allow`: KV API tokens with per-keyspace grants (admin credential),
 * over /v1/admin/tokens (src/api/admin/tokens-http.ts), in the style of `kumo key ...`.
 */
import type { Command } from "commander";
import { type ClientOptions, failOnError, request, resolveClient } from "./client.js";
import { outputMode, renderTable } from "./output.js";

interface TokenView {
  id: string;
  name: string;
  grants: Record<string, string>;
  admin: boolean;
  createdMs: number;
}

const ACCESS = ["read", "write"];

/** `--keyspace orders=write` (or orders:write) → ["orders", "write"]. */
export function parseGrantFlag(g: string): [string, string] {
  const m = /^([^=:]+)[=:](read|write)$/.exec(g);
  if (!m) throw new Error(`--keyspace wants KEYSPACE=read|write, got ${JSON.stringify(g)}`);
  return [m[1] as string, m[2] as string];
}

function grantsText(grants: Record<string, string>): string {
  return Object.entries(grants)
    .map(([k, a]) => `${k}=${a}`)
    .join(",");
}

export function addTokenCommands(
  program: Command,
  withClient: (cmd: Command) => Command,
  run: (fn: () => Promise<void>) => Promise<void>,
): void {
  const tokenCmd = program
    .command("token")
    .description("KV API tokens with per-keyspace grants (admin token)");
  withClient(tokenCmd.command("create <name>"))
    .description("create a token; prints it (it is shown only once: only its hash is stored)")
    .option(
      "--keyspace <keyspace=access...>",
      'grant read or write on a keyspace ("*" for all), e.g. --keyspace orders=write',
    )
    .option("--admin", "the token may use the admin endpoints", false)
    .option("--json", "print JSON", false)
    .action(
      (name: string, o: ClientOptions & { keyspace?: string[]; admin: boolean; json: boolean }) =>
        run(async () => {
          const c = resolveClient(o);
          const grants = Object.fromEntries((o.keyspace ?? []).map(parseGrantFlag));
          const r = await request(
            c,
            "POST",
            "/v1/admin/tokens",
            new TextEncoder().encode(JSON.stringify({ name, grants, admin: o.admin })),
            { "content-type": "application/json" },
          );
          await failOnError(r);
          const t = (await r.json()) as TokenView & { token: string };
          if (o.json) return console.log(JSON.stringify(t, null, 2));
          console.log(`Token id: ${t.id}`);
          console.log(`Token:    ${t.token}`);
          console.log("(shown only once; store it now)");
        }),
    );
  withClient(tokenCmd.command("ls"))
    .description("list tokens and their grants (never their secrets)")
    .option("--json", "print JSON", false)
    .action((o: ClientOptions & { json: boolean }) =>
      run(async () => {
        const c = resolveClient(o);
        const r = await request(c, "GET", "/v1/admin/tokens");
        await failOnError(r);
        const { tokens } = (await r.json()) as { tokens: TokenView[] };
        const mode = outputMode(o);
        if (mode.json) return console.log(JSON.stringify({ tokens }, null, 2));
        console.log(
          renderTable(
            mode,
            ["ID", "NAME", "ADMIN", "GRANTS", "CREATED"],
            tokens.map((t) => [
              t.id,
              t.name,
              t.admin ? "yes" : "no",
              grantsText(t.grants),
              new Date(t.createdMs).toISOString(),
            ]),
          ),
        );
      }),
    );
  withClient(tokenCmd.command("rm <id>"))
    .description("revoke a token (refused at once by the node asked, by every node within 2 s)")
    .action((id: string, o: ClientOptions) =>
      run(async () => {
        const c = resolveClient(o);
        const r = await request(c, "DELETE", `/v1/admin/tokens/${encodeURIComponent(id)}`);
        await failOnError(r);
        console.log(`${id}: revoked`);
      }),
    );
  withClient(tokenCmd.command("allow <id> <keyspace> <access>"))
    .description('grant read or write on a keyspace ("*": every keyspace); "none" revokes it')
    .action((id: string, keyspace: string, access: string, o: ClientOptions) =>
      run(async () => {
        if (access !== "none" && !ACCESS.includes(access))
          throw new Error(`access is read, write or none, got ${JSON.stringify(access)}`);
        const c = resolveClient(o);
        const r = await request(
          c,
          "PUT",
          `/v1/admin/tokens/${encodeURIComponent(id)}/grants`,
          new TextEncoder().encode(
            JSON.stringify({ keyspace, access: access === "none" ? null : access }),
          ),
          { "content-type": "application/json" },
        );
        await failOnError(r);
        const t = (await r.json()) as TokenView;
        console.log(`${id}: ${grantsText(t.grants) || "(no grants)"}`);
      }),
    );
}
