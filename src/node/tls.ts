/**
 * Certificate files that are reloaded without a restart. A `TlsFiles` holds the PEM contents of a
 * certificate, its key and (optionally) a CA; it re-reads them every `reloadIntervalMs` and on
 * `check()` (SIGHUP), and tells its listeners when they changed. A replacement is taken only if
 * it is a usable pair (the key matches the certificate, the PEMs parse): a half-written or wrong
 * file is logged and the previous material keeps serving — a node never ends up with no
 * certificate, and never crashes because of a file an operator is still copying.
 *
 * Users: the client ports (https `setSecureContext`) and the gRPC transport (a grpc-js
 * certificate provider fed from `onChange`, see src/transport/grpc.ts).
 */
import { createHash, X509Certificate } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createSecureContext } from "node:tls";
import { Gauge, type Registry } from "prom-client";
import { Agent, fetch as undiciFetch } from "undici";
import { assert } from "../base/index.js";
import type { Logger } from "./log.js";

export interface TlsFilePaths {
  readonly certFile: string;
  readonly keyFile: string;
  /** PEM of the CA that peers' certificates must chain to (mTLS); none for a server-only pair. */
  readonly caFile?: string;
}

export interface TlsMaterial {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca: Buffer | undefined;
  /** Of the leaf certificate (the first in `cert`). */
  readonly notAfter: Date;
  readonly serialNumber: string;
}

export type TlsLoad =
  | { readonly ok: true; readonly material: TlsMaterial }
  | { readonly ok: false; readonly code: "UNREADABLE" | "INVALID"; readonly message: string };

/** Reads and validates the files once; never throws. */
export async function loadTlsFiles(p: TlsFilePaths): Promise<TlsLoad> {
  let cert: Buffer;
  let key: Buffer;
  let ca: Buffer | undefined;
  try {
    [cert, key, ca] = await Promise.all([
      readFile(p.certFile),
      readFile(p.keyFile),
      p.caFile === undefined ? Promise.resolve(undefined) : readFile(p.caFile),
    ]);
  } catch (e) {
    return { ok: false, code: "UNREADABLE", message: (e as Error).message };
  }
  try {
    // Throws on a PEM that does not parse and on a key that does not match the certificate:
    // the same checks a TLS handshake would hit later, made before anything is swapped.
    createSecureContext({ cert, key, ...(ca ? { ca } : {}) });
    const leaf = new X509Certificate(cert);
    if (ca) new X509Certificate(ca);
    return {
      ok: true,
      material: {
        cert,
        key,
        ca,
        notAfter: new Date(leaf.validTo),
        serialNumber: leaf.serialNumber,
      },
    };
  } catch (e) {
    return { ok: false, code: "INVALID", message: (e as Error).message };
  }
}

export interface TlsFilesOptions {
  /** Which listener these files are for, in logs and metrics ("client", "peer"). */
  readonly name: string;
  /** How often the files are re-read (they are small; a read every few seconds costs nothing). */
  readonly reloadIntervalMs: number;
  readonly log: Logger;
}

export class TlsFiles {
  private material: TlsMaterial;
  private readonly listeners = new Set<(m: TlsMaterial) => void>();
  private timer: NodeJS.Timeout | undefined;
  /** Digest of the last replacement refused, so a bad file is logged once, not every poll. */
  private refusedDigest = "";
  private checking: Promise<boolean> | undefined;
  /** Reloads taken and refused (for tests and the log). */
  reloads = 0;
  refusals = 0;

  private constructor(
    readonly paths: TlsFilePaths,
    private readonly opts: TlsFilesOptions,
    first: TlsMaterial,
  ) {
    assert(opts.reloadIntervalMs > 0, "reloadIntervalMs must be positive");
    this.material = first;
  }

  /** Loads the files; a node must not start without usable certificates, so this throws. */
  static async open(paths: TlsFilePaths, opts: TlsFilesOptions): Promise<TlsFiles> {
    const r = await loadTlsFiles(paths);
    if (!r.ok) throw new Error(`${opts.name} TLS files: ${r.message}`);
    const t = new TlsFiles(paths, opts, r.material);
    t.logLoaded("TLS certificate loaded");
    return t;
  }

  get name(): string {
    return this.opts.name;
  }

  current(): TlsMaterial {
    return this.material;
  }

  /** Calls `fn` on every accepted change; returns the unsubscribe function. */
  onChange(fn: (m: TlsMaterial) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Starts polling (the timer does not keep the process alive). */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.check(), this.opts.reloadIntervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.listeners.clear();
  }

  /** Re-reads the files now; resolves true if new material was taken. Never rejects. */
  check(): Promise<boolean> {
    // One read at a time: a SIGHUP during a poll waits for it rather than racing it.
    this.checking ??= this.checkOnce().finally(() => {
      this.checking = undefined;
    });
    return this.checking;
  }

  private async checkOnce(): Promise<boolean> {
    const r = await loadTlsFiles(this.paths);
    if (!r.ok) {
      this.refuse(r.message);
      return false;
    }
    const m = r.material;
    const cur = this.material;
    if (m.cert.equals(cur.cert) && m.key.equals(cur.key) && sameCa(m.ca, cur.ca)) {
      this.refusedDigest = "";
      return false;
    }
    this.material = m;
    this.refusedDigest = "";
    this.reloads++;
    this.logLoaded("TLS certificate reloaded");
    for (const fn of this.listeners) {
      try {
        fn(m);
      } catch (err) {
        // A listener that cannot apply it (should not happen: the pair was validated) keeps
        // what it had; the others still get the new material.
        this.opts.log.error({ err, listener: this.opts.name }, "applying a TLS reload failed");
      }
    }
    return true;
  }

  private refuse(message: string): void {
    const digest = createHash("sha256").update(message).digest("hex");
    this.refusals++;
    if (digest === this.refusedDigest) return;
    this.refusedDigest = digest;
    this.opts.log.error(
      {
        listener: this.opts.name,
        certFile: this.paths.certFile,
        keyFile: this.paths.keyFile,
        error: message,
        keptSerialNumber: this.material.serialNumber,
      },
      "TLS files not reloaded; the previous certificate keeps serving",
    );
  }

  private logLoaded(msg: string): void {
    const m = this.material;
    this.opts.log.info(
      {
        listener: this.opts.name,
        certFile: this.paths.certFile,
        serialNumber: m.serialNumber,
        notAfter: m.notAfter.toISOString(),
      },
      msg,
    );
  }
}

function sameCa(a: Buffer | undefined, b: Buffer | undefined): boolean {
  return a === undefined || b === undefined ? a === b : a.equals(b);
}

/**
 * kumo_tls_certificate_not_after_seconds{listener}: when each loaded certificate expires (Unix
 * seconds), to alert well before it does (`... - time() < 14 * 86400`).
 */
export function registerTlsMetrics(registry: Registry, files: () => readonly TlsFiles[]): void {
  const names = new Map<string, TlsFiles>();
  new Gauge({
    name: "kumo_tls_certificate_not_after_seconds",
    help: "expiry (notAfter, Unix seconds) of the TLS certificate each listener serves",
    labelNames: ["listener"],
    registers: [registry],
    collect() {
      names.clear();
      for (const f of files()) names.set(f.name, f);
      this.reset();
      for (const [listener, f] of names)
        this.set({ listener }, f.current().notAfter.getTime() / 1000);
    },
  });
}

/**
 * A `fetch` that trusts the CA `ca()` returns (re-read per request, so a reloaded CA applies),
 * verifying server certificates as usual; with no CA, the global fetch (system roots). Node's
 * built-in fetch takes no CA option; undici (the library behind it) does, through an Agent.
 */
export function fetchTrusting(ca: () => Buffer | string | undefined): typeof fetch {
  let agent: { ca: Buffer | string; agent: Agent } | undefined;
  return ((input: string | URL, init?: RequestInit) => {
    const c = ca();
    if (c === undefined) return fetch(input, init);
    if (agent?.ca !== c) {
      void agent?.agent.close();
      agent = { ca: c, agent: new Agent({ connect: { ca: c } }) };
    }
    return undiciFetch(input, {
      ...(init as Parameters<typeof undiciFetch>[1]),
      dispatcher: agent.agent,
    });
  }) as unknown as typeof fetch;
}
