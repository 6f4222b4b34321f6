/**
 * Real network faults: every node runs in its own Linux network namespace with its own IP on a
 * bridge, so partitions drop real packets between real processes and slow links delay them in
 * the kernel. Clients (the runner) sit on the bridge in the root namespace; faults only ever
 * touch traffic between nodes, as in Jepsen, except link-level shaping (netem/tbf) which slows
 * everything the node sends.
 *
 * Tools: `ip` and `tc` (iproute2) always; `nft` when installed, for silent packet drops
 * (partitions, random loss). Without nft, partitions fall back to blackhole routes (the sender
 * gets an error instead of silence) and random loss is unavailable. `tc netem` needs the
 * kernel's sch_netem; where it is missing, delay/jitter/reorder cannot be injected and the
 * nemesis substitutes random loss (nft) and a bandwidth cap (tbf), and says so.
 *
 * Names embed the runner's pid, so leftovers of a runner that died without cleaning up are
 * recognised and removed by the next run (`sweepStale`).
 *
 * Addresses come from 198.18.0.0/15, the range reserved for network benchmarks (RFC 2544): it is
 * never a real host's address, and the namespaces get no default route, so nothing leaves the
 * bridge.
 */
import { execFile, execFileSync } from "node:child_process";
import { promisify } from "node:util";

const execFileAsync = promisify(execFile);

const IP = "/usr/sbin/ip";
const TC = "/usr/sbin/tc";
const NFT = "/usr/sbin/nft";

/**
 * Names: namespaces `kumochaos-<tag>-n<i>`, bridge `kcb<tag>`, host-side veths `kv<tag>n<i>`,
 * where tag = `<pid>x<lab number>` (interface names are limited to 15 bytes).
 */
const NS_PREFIX = "kumochaos-";
const BRIDGE_PREFIX = "kcb";
const VETH_PREFIX = "kv";
/** Labs one process may create (keeps interface names within 15 bytes). */
const LABS_PER_PROCESS_MAX = 99;
export const LAB_NODES_MAX = 9;
let labsCreated = 0;
const NFT_TABLE = "kumochaos";
/** Per-command bound: these are local kernel calls and return in milliseconds. */
const COMMAND_TIMEOUT_MS = 10_000;

export type CommandResult = { ok: true; stdout: string } | { ok: false; message: string };

function runSync(file: string, args: readonly string[], input?: string): CommandResult {
  try {
    const stdout = execFileSync(file, args, {
      encoding: "utf8",
      timeout: COMMAND_TIMEOUT_MS,
      stdio: ["pipe", "pipe", "pipe"],
      ...(input !== undefined ? { input } : {}),
    });
    return { ok: true, stdout };
  } catch (e) {
    const err = e as Error & { stderr?: string };
    return {
      ok: false,
      message: `${file} ${args.join(" ")}: ${(err.stderr || err.message).trim()}`,
    };
  }
}

async function run(file: string, args: readonly string[], input?: string): Promise<CommandResult> {
  if (input !== undefined) return runSync(file, args, input); // execFile has no stdin input
  try {
    const { stdout } = await execFileAsync(file, args, { timeout: COMMAND_TIMEOUT_MS });
    return { ok: true, stdout };
  } catch (e) {
    const err = e as Error & { stderr?: string };
    return {
      ok: false,
      message: `${file} ${args.join(" ")}: ${(err.stderr || err.message).trim()}`,
    };
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Removes namespaces and bridges left behind by chaos runners that no longer exist. */
export function sweepStale(): string[] {
  const removed: string[] = [];
  const ns = runSync(IP, ["netns", "list"]);
  if (ns.ok) {
    for (const line of ns.stdout.split("\n")) {
      const name = line.split(" ")[0] ?? "";
      const m = new RegExp(`^${NS_PREFIX}(\\d+)x`).exec(name);
      if (m && !pidAlive(Number(m[1]))) {
        runSync(IP, ["netns", "del", name]);
        removed.push(name);
      }
    }
  }
  const links = runSync(IP, ["-o", "link", "show", "type", "bridge"]);
  if (links.ok) {
    for (const m of links.stdout.matchAll(
      new RegExp(`\\d+: (${BRIDGE_PREFIX}(\\d+)x\\d+)[:@]`, "g"),
    )) {
      if (!pidAlive(Number(m[2]))) {
        runSync(IP, ["link", "del", m[1] as string]);
        removed.push(m[1] as string);
      }
    }
  }
  return removed;
}

export interface Capabilities {
  /** Namespaces can be created (root, iproute2, kernel support). */
  readonly netns: true;
  /** `tc qdisc ... netem` works (kernel sch_netem). */
  readonly netem: boolean;
  /** `nft` is installed and works in a namespace. */
  readonly nft: boolean;
}

export type Probe = { ok: true; caps: Capabilities } | { ok: false; reason: string };

/**
 * Finds out what this machine can do, by trying it in a throwaway namespace (the only reliable
 * test: a binary can exist while the kernel lacks the feature, or the sandbox forbids it).
 */
export function probe(): Probe {
  if (process.platform !== "linux") return { ok: false, reason: "not Linux" };
  if (process.getuid?.() !== 0) return { ok: false, reason: "not running as root" };
  const ns = `${NS_PREFIX}${process.pid}x0-probe`;
  const add = runSync(IP, ["netns", "add", ns]);
  if (!add.ok) return { ok: false, reason: `ip netns add failed: ${add.message}` };
  try {
    const dummy = runSync(IP, ["-n", ns, "link", "add", "probe0", "type", "dummy"]);
    const link = dummy.ok ? "probe0" : "lo";
    if (link === "lo") runSync(IP, ["-n", ns, "link", "set", "lo", "up"]);
    else runSync(IP, ["-n", ns, "link", "set", "probe0", "up"]);
    const netem = runSync(TC, [
      "-n",
      ns,
      "qdisc",
      "add",
      "dev",
      link,
      "root",
      "netem",
      "delay",
      "1ms",
    ]).ok;
    const nft = runSync(IP, ["netns", "exec", ns, NFT, "-f", "-"], nftTable(["198.18.0.2"], 10)).ok;
    return { ok: true, caps: { netns: true, netem, nft } };
  } finally {
    runSync(IP, ["netns", "del", ns]);
  }
}

/** An nft table in a namespace dropping output to `peers` (all of it, or `percent` at random). */
function nftTable(peers: readonly string[], percent: number): string {
  const match = percent >= 100 ? "" : ` numgen random mod 100 < ${Math.round(percent)}`;
  return (
    `table inet ${NFT_TABLE} {\n chain out {\n  type filter hook output priority 0; policy accept;\n` +
    `  ip daddr { ${peers.join(", ")} }${match} drop\n }\n}\n`
  );
}

export interface LinkShaping {
  /** One-way delay added to every packet a node sends, and its jitter. */
  readonly delayMs: number;
  readonly jitterMs: number;
  /** Percent of packets dropped, and reordered (sent at once, ahead of delayed ones). */
  readonly lossPercent: number;
  readonly reorderPercent: number;
  /** Bandwidth cap, kbit/s (the tbf fallback when netem is missing); 0 = none. */
  readonly rateKbit: number;
}

/**
 * The namespaces, bridge and links of one chaos cluster, and the faults applied to them. Every
 * fault can be undone (`healAll`), and `destroy` removes everything synchronously so it can run
 * from an exit handler.
 */
export class NetLab {
  readonly ips: readonly string[];
  readonly gateway: string;
  private readonly ns: readonly string[];
  private readonly bridge: string;
  /** Ordered pairs (from, to) whose packets are currently dropped. */
  private readonly cuts = new Set<string>();
  /** Nodes with link shaping / an nft loss table in place. */
  private readonly shaped = new Set<number>();
  private readonly lossy = new Set<number>();
  private destroyed = false;

  private constructor(
    readonly nodeCount: number,
    readonly caps: Capabilities,
    subnet: string,
    tag: string,
  ) {
    this.bridge = `${BRIDGE_PREFIX}${tag}`;
    this.gateway = `${subnet}.1`;
    this.ns = Array.from({ length: nodeCount }, (_, i) => `${NS_PREFIX}${tag}-n${i + 1}`);
    this.ips = Array.from({ length: nodeCount }, (_, i) => `${subnet}.${11 + i}`);
  }

  /** Creates the bridge and one namespace per node; on failure removes what it made. */
  static create(
    nodeCount: number,
    caps: Capabilities,
  ): { ok: true; lab: NetLab } | { ok: false; reason: string } {
    if (nodeCount < 1 || nodeCount > LAB_NODES_MAX) {
      return { ok: false, reason: `a lab holds 1 to ${LAB_NODES_MAX} nodes` };
    }
    if (labsCreated >= LABS_PER_PROCESS_MAX)
      return { ok: false, reason: "too many labs in one process" };
    labsCreated++;
    const tag = `${process.pid}x${labsCreated}`;
    sweepStale();
    const subnet = pickSubnet();
    const lab = new NetLab(nodeCount, caps, subnet, tag);
    const steps: [string, string[]][] = [
      [IP, ["link", "add", lab.bridge, "type", "bridge"]],
      [IP, ["addr", "add", `${lab.gateway}/24`, "dev", lab.bridge]],
      [IP, ["link", "set", lab.bridge, "up"]],
    ];
    lab.ns.forEach((ns, i) => {
      const veth = `${VETH_PREFIX}${tag}n${i + 1}`;
      steps.push(
        [IP, ["netns", "add", ns]],
        [IP, ["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns]],
        [IP, ["link", "set", veth, "master", lab.bridge, "up"]],
        [IP, ["-n", ns, "addr", "add", `${lab.ips[i]}/24`, "dev", "eth0"]],
        [IP, ["-n", ns, "link", "set", "eth0", "up"]],
        [IP, ["-n", ns, "link", "set", "lo", "up"]],
      );
    });
    for (const [file, args] of steps) {
      const r = runSync(file, args);
      if (!r.ok) {
        lab.destroy();
        return { ok: false, reason: r.message };
      }
    }
    return { ok: true, lab };
  }

  /** argv prefix that runs a command inside node `i`'s namespace. */
  exec(i: number): string[] {
    return [IP, "netns", "exec", this.nsOf(i)];
  }

  private nsOf(i: number): string {
    const ns = this.ns[i];
    if (ns === undefined) throw new Error(`no node ${i} in the lab`);
    return ns;
  }

  /** Drops every packet node `from` sends to node `to` (one direction). */
  async cut(from: number, to: number): Promise<CommandResult> {
    this.cuts.add(`${from}>${to}`);
    return this.applyCuts(from);
  }

  /** Restores every link and removes all shaping and loss. */
  async healAll(): Promise<CommandResult[]> {
    const touched = new Set<number>([...this.cuts].map((c) => Number(c.split(">")[0])));
    this.cuts.clear();
    const out: CommandResult[] = [];
    for (const i of touched) out.push(await this.applyCuts(i));
    for (const i of this.shaped)
      out.push(await run(TC, ["-n", this.nsOf(i), "qdisc", "del", "dev", "eth0", "root"]));
    this.shaped.clear();
    for (const i of this.lossy)
      out.push(
        await run(IP, [
          "netns",
          "exec",
          this.nsOf(i),
          NFT,
          "delete",
          "table",
          "inet",
          `${NFT_TABLE}loss`,
        ]),
      );
    this.lossy.clear();
    return out.filter((r) => !r.ok);
  }

  /** Rewrites node `from`'s drop rules to match `cuts`. */
  private async applyCuts(from: number): Promise<CommandResult> {
    const ns = this.nsOf(from);
    const targets = [...this.cuts]
      .filter((c) => Number(c.split(">")[0]) === from)
      .map((c) => this.ips[Number(c.split(">")[1])] as string);
    if (this.caps.nft) {
      await run(IP, ["netns", "exec", ns, NFT, "delete", "table", "inet", NFT_TABLE]);
      if (targets.length === 0) return { ok: true, stdout: "" };
      return run(IP, ["netns", "exec", ns, NFT, "-f", "-"], nftTable(targets, 100));
    }
    // Fallback: blackhole routes (locally sent packets fail at once instead of vanishing).
    await run(IP, ["-n", ns, "route", "flush", "type", "blackhole"]);
    for (const ip of targets) {
      const r = await run(IP, ["-n", ns, "route", "add", "blackhole", `${ip}/32`]);
      if (!r.ok) return r;
    }
    return { ok: true, stdout: "" };
  }

  /**
   * Shapes everything node `i` sends: netem delay/jitter/loss/reorder where the kernel has it,
   * otherwise a tbf bandwidth cap (and random loss through nft, see `loss`).
   */
  async shape(i: number, s: LinkShaping): Promise<CommandResult> {
    const ns = this.nsOf(i);
    if (this.caps.netem) {
      this.shaped.add(i);
      const args = ["-n", ns, "qdisc", "replace", "dev", "eth0", "root", "netem", "limit", "10000"];
      if (s.delayMs > 0) {
        args.push("delay", `${s.delayMs}ms`);
        if (s.jitterMs > 0) args.push(`${s.jitterMs}ms`, "distribution", "normal");
      }
      if (s.lossPercent > 0) args.push("loss", `${s.lossPercent}%`);
      if (s.reorderPercent > 0 && s.delayMs > 0)
        args.push("reorder", `${s.reorderPercent}%`, "50%");
      if (s.rateKbit > 0) args.push("rate", `${s.rateKbit}kbit`);
      return run(TC, args);
    }
    if (s.rateKbit <= 0) return { ok: true, stdout: "" };
    this.shaped.add(i);
    // tbf queues what exceeds the rate (up to `latency`), which delays traffic under load.
    return run(TC, [
      "-n",
      ns,
      "qdisc",
      "replace",
      "dev",
      "eth0",
      "root",
      "tbf",
      "rate",
      `${s.rateKbit}kbit`,
      "burst",
      "16kb",
      "latency",
      "400ms",
    ]);
  }

  /** Drops `percent` of the packets node `i` sends to other nodes, at random (needs nft). */
  async loss(i: number, percent: number): Promise<CommandResult> {
    if (!this.caps.nft)
      return { ok: false, message: "nft is not installed: random loss unavailable" };
    const ns = this.nsOf(i);
    this.lossy.add(i);
    const peers = this.ips.filter((_, j) => j !== i);
    const table = nftTable(peers, percent).replace(
      `table inet ${NFT_TABLE} `,
      `table inet ${NFT_TABLE}loss `,
    );
    await run(IP, ["netns", "exec", ns, NFT, "delete", "table", "inet", `${NFT_TABLE}loss`]);
    return run(IP, ["netns", "exec", ns, NFT, "-f", "-"], table);
  }

  /** Removes the namespaces and the bridge (the veths go with them). Idempotent, synchronous. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const ns of this.ns) runSync(IP, ["netns", "del", ns]);
    runSync(IP, ["link", "del", this.bridge]);
  }
}

/** A /24 of 198.18.0.0/15 not used by any interface on this machine (e.g. another runner). */
function pickSubnet(): string {
  const addrs = runSync(IP, ["-o", "-4", "addr", "show"]);
  const used = addrs.ok ? addrs.stdout : "";
  for (let k = 0; k < 256; k++) {
    const x = (process.pid + k) % 256;
    const subnet = `198.18.${x}`;
    if (!used.includes(`${subnet}.`)) return subnet;
  }
  return "198.19.0";
}
