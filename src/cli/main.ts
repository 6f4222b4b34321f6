#!/usr/bin/env node
/**
 * The `kumo` command. Until the node layer lands, `kumo dev` demonstrates the consensus core by
 * running the deterministic cluster simulator and printing what happened.
 */
import { Command } from "commander";
import { runSeed } from "../sim/sim.js";

const program = new Command().name("kumo").description("Kumo: replicated KV and S3-compatible storage");

program
  .command("dev")
  .description("run a local demonstration (for now: simulated Raft clusters under faults)")
  .option("--seeds <n>", "how many simulated clusters to run", "5")
  .action((opts: { seeds: string }) => {
    const n = Math.max(1, Number(opts.seeds) || 5);
    console.log(`Simulating ${n} Raft clusters under partitions, crashes, pauses and membership changes...`);
    let bad = 0;
    for (let seed = 1; seed <= n; seed++) {
      const r = runSeed(seed, { nodes: seed % 2 === 0 ? 5 : 3 });
      const s = r.stats;
      console.log(
        `cluster ${seed}: ${r.settings.split(" ")[0]} — ${s.opsOk} ops ok, ${s.leaderChanges} leaders, ${s.crashes} crashes, ` +
          `${s.partitions} partitions, ${s.confChanges} membership changes: ${r.violation ? `VIOLATION ${r.violation.kind}` : "linearizable, nothing lost"}`,
      );
      if (r.violation) bad++;
    }
    process.exitCode = bad > 0 ? 1 : 0;
  });

program.parse();
